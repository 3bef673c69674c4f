package sandbox

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The files Nix 2.8 writes into the chroot's /etc (local-derivation-goal.cc):
// root and nobody exist so that tools looking them up find them.
var (
	etcPasswd = fmt.Sprintf("root:x:0:0:Nix build user:%[3]s:/noshell\n"+
		"%[4]s:x:%[1]d:%[2]d:Nix build user:%[3]s:/noshell\n"+
		"nobody:x:65534:65534:Nobody:/:/noshell\n", BuildUID, BuildGID, BuildTop, buildUser)
	etcGroup = fmt.Sprintf("root:x:0:\n%s:!:%d:\nnogroup:x:65534:\n", buildUser, BuildGID)
	etcHosts = "127.0.0.1 localhost\n::1 localhost\n"
	// Fixed-output builds resolve names with files and DNS only, as in Nix.
	etcNsswitch = "hosts: files dns\nservices: files\n"
)

// devices are bound from the host's /dev; everything else in /dev is made.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

func devicesOf(s *Spec) []string {
	if s.KVM {
		return append(devices[:len(devices):len(devices)], "kvm")
	}
	return devices
}

// Mount attributes (mount_setattr) of each kind of bind mount.
const (
	attrInput = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrRW    = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrDev   = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
)

// The scratch directory's entries (Spec.ScratchDir).
const (
	scratchRoot  = "root"  // where the init stage attaches the root tmpfs
	scratchStore = "store" // the store dir the builder sees: inputs and outputs
	scratchTmp   = "tmp"   // /tmp
)

// layout makes the builder's file system and returns the root (a detached
// tmpfs, not yet visible anywhere) and the mounts the init stage must make,
// in order. What the builder may write lives in the scratch directory, which
// exists and is empty; the rest is the tmpfs, so that a build costs few
// operations on the scratch filesystem (metadata operations on a disk are
// slow: the tmpfs saves about 25 creations and removals per build).
//
// Everything is made here on the host as root, because the init stage's uid
// is not mapped in its user namespace and so cannot create files; it only
// mounts onto what is made here.
//
//	/                  the tmpfs, 0750 root:HostGID, read-only once set up
//	  <StoreDir>       bind of scratch/store, 1775 root:HostGID: the builder
//	                   creates its outputs here
//	    <input>        read-only bind onto an empty directory or file in
//	                   scratch/store, or a copied symlink
//	  build/           bind of BuildDir
//	  tmp/             bind of scratch/tmp, 1777
//	  etc/             passwd, group, hosts (with Network: the host's
//	                   resolv.conf, services, hosts, and an nsswitch.conf)
//	  dev/             null zero full random urandom tty [kvm] (binds), shm
//	                   (tmpfs), pts (new devpts), ptmx -> /dev/pts/ptmx, fd,
//	                   stdin, stdout, stderr
//	  proc/            a new proc for the pid namespace
func layout(s *Spec, scratch string) (*os.File, []initMount, error) {
	fail := func(what string, err error) error { return &SetupError{What: what, Err: err} }
	if err := own(scratch, 0o700, 0, 0); err != nil {
		return nil, nil, fail("making the scratch dir "+scratch, err)
	}
	store := filepath.Join(scratch, scratchStore)
	for _, d := range []struct {
		name string
		mode uint32
		gid  int
	}{{scratchRoot, 0o700, 0}, {scratchStore, 0o1775, s.HostGID}, {scratchTmp, 0o1777, 0}} {
		if err := mkdir(filepath.Join(scratch, d.name), d.mode, 0, d.gid); err != nil {
			return nil, nil, fail("making "+d.name+" in the scratch dir "+scratch, err)
		}
	}
	root, err := newRoot(s)
	if err != nil {
		return nil, nil, err
	}
	at := filepath.Join(scratch, scratchRoot)
	in := func(p string) string { return filepath.Join(at, p) }
	mounts := []initMount{{What: "attaching the root tmpfs at " + at, Target: at, Move: true}}
	bind := func(what, src, dst string, attr uint64) {
		mounts = append(mounts, initMount{What: what, Source: src, Target: dst, Attr: attr})
	}
	bind("bind-mounting the store dir "+store+" at "+s.StoreDir, store, in(s.StoreDir), attrRW)
	for _, m := range s.Inputs {
		dst := filepath.Join(store, filepath.Base(m.Path))
		bound, err := mountPoint(m.Host, dst)
		if err != nil {
			root.Close()
			return nil, nil, fail("input "+m.Path, err)
		}
		if bound {
			bind("bind-mounting input "+m.Host+" at "+m.Path, m.Host, in(m.Path), attrInput)
		}
	}
	bind("bind-mounting the build dir "+s.BuildDir+" at "+BuildTop, s.BuildDir, in(BuildTop), attrRW)
	bind("bind-mounting "+filepath.Join(scratch, scratchTmp)+" at /tmp", filepath.Join(scratch, scratchTmp), in("/tmp"), attrRW)
	for _, name := range devicesOf(s) {
		bind("bind-mounting the host's /dev/"+name, "/dev/"+name, in("/dev/"+name), attrDev)
	}
	mounts = append(mounts,
		initMount{What: "mounting a tmpfs at /dev/shm", Source: "tmpfs", Target: in("/dev/shm"), FSType: "tmpfs",
			Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777,size=50%"},
		initMount{What: "mounting a new devpts at /dev/pts", Source: "devpts", Target: in("/dev/pts"), FSType: "devpts",
			Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620"},
		initMount{What: "mounting a new proc at /proc", Source: "proc", Target: in("/proc"), FSType: "proc",
			Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	)
	return root, mounts, nil
}

// mountPoint makes at dst what input host is mounted on: an empty directory
// or file, or for a symlink a copy (a bind mount would follow the link on
// the host, where its target, a logical store path, means something else).
// It reports whether dst is to be bind-mounted.
func mountPoint(host, dst string) (bool, error) {
	fi, err := os.Lstat(host)
	if err != nil {
		return false, err
	}
	switch {
	case fi.IsDir():
		return true, os.Mkdir(dst, 0o555)
	case fi.Mode().IsRegular():
		return true, os.WriteFile(dst, nil, 0o444)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err == nil {
			err = os.Symlink(target, dst)
		}
		return false, err
	}
	return false, fmt.Errorf("host path %s is a %v, not a file, directory or symlink", host, fi.Mode().Type())
}

// newRoot makes the root tmpfs, detached (fsopen, fsmount): it is in no
// mount namespace until the init stage attaches it in its own, so it needs
// no cleanup and no host path can reach it.
func newRoot(s *Spec) (*os.File, error) {
	fail := func(what string, err error) (*os.File, error) {
		return nil, &SetupError{What: what, Err: err}
	}
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fail("making the root tmpfs (fsopen)", err)
	}
	defer unix.Close(fsfd)
	for _, kv := range [][2]string{{"mode", "0750"}, {"uid", "0"}, {"gid", strconv.Itoa(s.HostGID)}, {"size", "4m"}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return fail("making the root tmpfs (option "+kv[0]+"="+kv[1]+")", err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("making the root tmpfs", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fail("making the root tmpfs (fsmount)", err)
	}
	root := os.NewFile(uintptr(mfd), "root tmpfs")
	if err := skeleton(int(root.Fd()), s); err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// skeleton fills the root tmpfs through its file descriptor.
func skeleton(fd int, s *Spec) error {
	var err error
	step := func(what string, f func() error) {
		if err == nil {
			if e := f(); e != nil {
				err = &SetupError{What: what, Err: e}
			}
		}
	}
	dir := func(rel string, mode uint32) {
		step("making /"+rel+" in the root tmpfs", func() error {
			if err := unix.Mkdirat(fd, rel, 0o700); err != nil {
				return err
			}
			return unix.Fchmodat(fd, rel, mode, 0)
		})
	}
	file := func(rel, content string) {
		step("writing /"+rel+" in the root tmpfs", func() error {
			f, err := unix.Openat(fd, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err != nil {
				return err
			}
			defer unix.Close(f)
			for b := []byte(content); len(b) > 0; {
				n, err := unix.Write(f, b)
				if err != nil {
					return err
				}
				b = b[n:]
			}
			return nil
		})
	}
	symlink := func(target, rel string) {
		step("making /"+rel+" in the root tmpfs", func() error { return unix.Symlinkat(target, fd, rel) })
	}

	// The store dir's parents (e.g. /nix of /nix/store), then the mount points.
	parts := strings.Split(strings.TrimPrefix(s.StoreDir, "/"), "/")
	for i := range parts {
		dir(strings.Join(parts[:i+1], "/"), 0o755)
	}
	dir(strings.TrimPrefix(BuildTop, "/"), 0o700)
	dir("tmp", 0o1777)
	dir("proc", 0o555)
	dir("dev", 0o755)
	dir("dev/shm", 0o1777)
	dir("dev/pts", 0o755)
	for _, name := range devicesOf(s) {
		file("dev/"+name, "")
	}
	symlink("/dev/pts/ptmx", "dev/ptmx")
	symlink("/proc/self/fd", "dev/fd")
	for i, name := range []string{"stdin", "stdout", "stderr"} {
		symlink(fmt.Sprintf("/proc/self/fd/%d", i), "dev/"+name)
	}

	dir("etc", 0o755)
	etc := map[string]string{"passwd": etcPasswd, "group": etcGroup, "hosts": etcHosts}
	if s.Network {
		etc["nsswitch.conf"] = etcNsswitch
		for _, name := range []string{"resolv.conf", "services", "hosts"} {
			data, rerr := os.ReadFile("/etc/" + name)
			if os.IsNotExist(rerr) {
				delete(etc, name)
				continue
			}
			step("copying the host's /etc/"+name, func() error { return rerr })
			etc[name] = string(data)
		}
	}
	for name, content := range etc {
		file("etc/"+name, content)
	}
	return err
}

// mkdir makes a directory with exactly mode (no umask) and owner.
func mkdir(p string, mode uint32, uid, gid int) error {
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	return own(p, mode, uid, gid)
}

// own sets owner and mode; mode is raw (os.FileMode has no 01000 bit).
func own(p string, mode uint32, uid, gid int) error {
	if err := os.Lchown(p, uid, gid); err != nil {
		return err
	}
	return unix.Chmod(p, mode)
}

// giveBuildDir hands the build dir, and whatever the caller put in it, to
// the build user.
func giveBuildDir(s *Spec) error {
	err := filepath.WalkDir(s.BuildDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, s.HostUID, s.HostGID)
	})
	if err == nil {
		err = os.Chmod(s.BuildDir, 0o700)
	}
	if err != nil {
		return &SetupError{What: "giving the build dir " + s.BuildDir + " to the build user", Err: err}
	}
	return nil
}
