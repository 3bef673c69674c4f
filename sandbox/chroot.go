package sandbox

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

// Mount attributes (mount_setattr) of each kind of bind mount.
const (
	attrInput = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrRW    = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV
	attrDev   = unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC
)

// chroot lays out the builder's root in the host directory root, which
// exists and is empty, and returns the mounts the init stage must make, in
// order. Everything here is done on the host as root, because the init
// stage's uid is not mapped in its user namespace and so cannot create
// files; it only mounts onto what is made here.
//
//	root/              0750 root:HostGID, bound onto itself (nosuid, nodev)
//	  <StoreDir>/      1775 root:HostGID: the builder creates its outputs here
//	    <input>        empty dir or file (mount point, read-only bind), or a copied symlink
//	  build/           mount point of BuildDir (read-write)
//	  tmp/             1777
//	  etc/             passwd, group, hosts (and, with Network, the host's
//	                   resolv.conf, services, hosts and an nsswitch.conf)
//	  dev/             null zero full random urandom tty (binds), shm (tmpfs),
//	                   pts (new devpts), ptmx -> pts/ptmx, fd, stdin, stdout, stderr
//	  proc/            a new proc for the pid namespace
func chroot(s *Spec, root string) ([]initMount, error) {
	fail := func(what string, err error) error { return &SetupError{What: what, Err: err} }
	in := func(p string) string { return filepath.Join(root, p) }
	var mounts []initMount
	bind := func(what, src, dst string, attr uint64) {
		mounts = append(mounts, initMount{What: what, Source: src, Target: dst, Attr: attr})
	}

	if err := own(root, 0o750, 0, s.HostGID); err != nil {
		return nil, fail("making the chroot "+root, err)
	}
	bind("bind-mounting the chroot "+root+" onto itself", root, root, attrRW)

	store := in(s.StoreDir)
	if err := os.MkdirAll(filepath.Dir(store), 0o755); err != nil {
		return nil, fail("making the store dir "+s.StoreDir+" in the chroot", err)
	}
	if err := mkdir(store, 0o1775, 0, s.HostGID); err != nil {
		return nil, fail("making the store dir "+s.StoreDir+" in the chroot", err)
	}
	for _, m := range s.Inputs {
		fi, err := os.Lstat(m.Host)
		if err != nil {
			return nil, fail("input "+m.Path, err)
		}
		dst := in(m.Path)
		switch {
		case fi.IsDir():
			err = os.Mkdir(dst, 0o555)
		case fi.Mode().IsRegular():
			err = os.WriteFile(dst, nil, 0o444)
		case fi.Mode()&fs.ModeSymlink != 0:
			// A bind mount would follow the link on the host, where its
			// target (a logical store path) means something else.
			var target string
			if target, err = os.Readlink(m.Host); err == nil {
				err = os.Symlink(target, dst)
			}
			if err != nil {
				return nil, fail("copying input symlink "+m.Host+" to "+m.Path, err)
			}
			continue
		default:
			err = fmt.Errorf("host path %s is a %v, not a file, directory or symlink", m.Host, fi.Mode().Type())
			return nil, fail("input "+m.Path, err)
		}
		if err != nil {
			return nil, fail("making the mount point of input "+m.Path, err)
		}
		bind("bind-mounting input "+m.Host+" at "+m.Path, m.Host, dst, attrInput)
	}

	if err := mkdir(in(BuildTop), 0o700, 0, 0); err != nil {
		return nil, fail("making the mount point "+BuildTop, err)
	}
	bind("bind-mounting the build dir "+s.BuildDir+" at "+BuildTop, s.BuildDir, in(BuildTop), attrRW)
	if err := mkdir(in("/tmp"), 0o1777, 0, 0); err != nil {
		return nil, fail("making /tmp in the chroot", err)
	}

	etc := map[string]string{"passwd": etcPasswd, "group": etcGroup, "hosts": etcHosts}
	if s.Network {
		etc["nsswitch.conf"] = etcNsswitch
		for _, name := range []string{"resolv.conf", "services", "hosts"} {
			data, err := os.ReadFile("/etc/" + name)
			if os.IsNotExist(err) {
				delete(etc, name)
				continue
			}
			if err != nil {
				return nil, fail("copying the host's /etc/"+name, err)
			}
			etc[name] = string(data)
		}
	}
	if err := os.Mkdir(in("/etc"), 0o755); err != nil {
		return nil, fail("making /etc in the chroot", err)
	}
	for name, content := range etc {
		if err := os.WriteFile(in("/etc/"+name), []byte(content), 0o644); err != nil {
			return nil, fail("writing /etc/"+name+" in the chroot", err)
		}
	}

	dev := in("/dev")
	for _, d := range []string{dev, dev + "/shm", dev + "/pts", in("/proc")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fail("making "+d, err)
		}
	}
	for _, name := range devices {
		if err := os.WriteFile(dev+"/"+name, nil, 0o644); err != nil {
			return nil, fail("making the mount point /dev/"+name, err)
		}
		bind("bind-mounting the host's /dev/"+name, "/dev/"+name, dev+"/"+name, attrDev)
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"},
		{"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], dev+"/"+l[1]); err != nil {
			return nil, fail("making /dev/"+l[1], err)
		}
	}
	mounts = append(mounts,
		initMount{What: "mounting a tmpfs at /dev/shm", Source: "tmpfs", Target: dev + "/shm", FSType: "tmpfs",
			Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777,size=50%"},
		initMount{What: "mounting a new devpts at /dev/pts", Source: "devpts", Target: dev + "/pts", FSType: "devpts",
			Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620"},
		initMount{What: "mounting a new proc at /proc", Source: "proc", Target: in("/proc"), FSType: "proc",
			Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	)
	return mounts, nil
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
