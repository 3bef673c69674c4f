package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// initArg0 is the argv[0] by which the re-executed binary knows it is the
// init stage of a sandbox.
const initArg0 = "storefs-sandbox-init"

// The init stage's file descriptors (exec.Cmd.ExtraFiles).
const (
	fdStatus = 3 // write end: an initFailure, or EOF when the builder is exec'd
	fdConfig = 4 // read end: the initConfig, then open until the parent dies
	fdRoot   = 5 // the detached root tmpfs
)

// initConfig is everything the init stage does, decided by the parent.
type initConfig struct {
	Root     string // host path where the root tmpfs is attached
	Mounts   []initMount
	Loopback bool // bring up lo (the build has its own network namespace)
	// NoUnixSockets refuses socket(AF_UNIX, ...) (the build shares the
	// host's network namespace, and with it the abstract socket names).
	NoUnixSockets bool
	Builder       string
	Argv          []string
	Env           []string
	UID, GID      int  // inside
	Linux32       bool // PER_LINUX32
	// NProc is the builder's RLIMIT_NPROC (0: unchanged), where no cgroup
	// bounds its processes.
	NProc int
}

// initMount is one mount: attaching the root tmpfs (Move), a new
// filesystem (FSType, with Flags and Data), or else a bind mount of Source,
// then given the attributes Attr (mount_setattr).
type initMount struct {
	What   string // the step, for errors
	Source string `json:",omitempty"`
	Target string
	Move   bool    `json:",omitempty"`
	FSType string  `json:",omitempty"`
	Flags  uintptr `json:",omitempty"`
	Data   string  `json:",omitempty"`
	Attr   uint64  `json:",omitempty"`
}

// initFailure is what the init stage reports before it exits 1.
type initFailure struct {
	What  string
	Errno int    // 0 when Msg is not an errno
	Msg   string // the error text
}

// The init stage takes over before main or TestMain run, and before any
// package that imports this one is initialised: every binary that links
// the package (storefs, the test binaries of packages that call Run) can
// be re-executed as an init stage, and none can forget to.
func init() { MaybeRunInit() }

// MaybeRunInit runs the sandbox's init stage and never returns when this
// process is one (Run re-executes /proc/self/exe with a special argv[0]);
// otherwise it returns at once. The package's init function calls it;
// calling it again first thing in main is harmless.
func MaybeRunInit() {
	if len(os.Args) == 0 || os.Args[0] != initArg0 {
		return
	}
	// Credentials, capabilities, seccomp and no_new_privs below are set on
	// this thread only, and it is this thread that calls execve.
	runtime.LockOSThread()
	unix.CloseOnExec(fdStatus)
	unix.CloseOnExec(fdConfig)
	unix.CloseOnExec(fdRoot)
	err := errors.New("the init stage returned")
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("init stage panicked: %v", r)
			}
		}()
		err = runInit()
	}()
	f := initFailure{What: "running the init stage", Msg: err.Error()}
	var se *SetupError
	if errors.As(err, &se) {
		f.What, f.Msg = se.What, se.Err.Error()
		var errno unix.Errno
		if errors.As(se.Err, &errno) {
			f.Errno = int(errno)
		}
	}
	data, _ := json.Marshal(f)
	unix.Write(fdStatus, data)
	os.Exit(1)
}

// runInit sets up the sandbox from inside its namespaces and execs the
// builder; it returns only on failure. It runs as pid 1 of the new pid
// namespace, with host uid 0 unmapped in its user namespace and the
// capabilities it needs in that namespace only (ambient, from Run).
func runInit() error {
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		return &SetupError{What: what, Err: err}
	}
	// Kept to the end: its finalizer would close fdConfig.
	config := os.NewFile(fdConfig, "config")
	defer runtime.KeepAlive(config)
	var c initConfig
	if err := step("reading the sandbox config", json.NewDecoder(config).Decode(&c)); err != nil {
		return err
	}
	// Mounts must not propagate back to the host; MS_PRIVATE is local to
	// this namespace.
	if err := step("making / private", unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")); err != nil {
		return err
	}
	for _, m := range c.Mounts {
		if err := mount(m); err != nil {
			return step(m.What, err)
		}
	}
	if c.Loopback {
		if err := step("bringing up the loopback interface lo", loopbackUp()); err != nil {
			return err
		}
	}
	if err := step("setting the host name", unix.Sethostname([]byte(Hostname))); err != nil {
		return err
	}
	if err := step("setting the domain name", unix.Setdomainname([]byte(Domain))); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on the new one; unmounting
	// "." then detaches it, so no path leads back to the host.
	if err := step("entering the chroot "+c.Root, unix.Chdir(c.Root)); err != nil {
		return err
	}
	if err := step("pivoting the root to "+c.Root, unix.PivotRoot(".", ".")); err != nil {
		return err
	}
	if err := step("detaching the host's root", unix.Unmount(".", unix.MNT_DETACH)); err != nil {
		return err
	}
	// Every mount point exists now; writable places are mounts of their own.
	if err := step("making the root read-only", unix.MountSetattr(-1, "/", 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})); err != nil {
		return err
	}
	if err := step("closing the root tmpfs", unix.Close(fdRoot)); err != nil {
		return err
	}
	if err := becomeBuildUser(c.UID, c.GID); err != nil {
		return err
	}
	// Only the build user may enter the build dir (mode 0700).
	if err := step("changing to "+BuildTop, unix.Chdir(BuildTop)); err != nil {
		return err
	}
	// Changing the uid cleared the parent death signal that Run asked for.
	if err := step("setting the parent death signal", unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)); err != nil {
		return err
	}
	// The parent holds the config pipe's write end until the builder runs:
	// a hang-up means it died before the death signal was set again.
	pfd := []unix.PollFd{{Fd: fdConfig, Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 0); err != nil {
		return step("checking the parent is alive", err)
	} else if n > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
		return step("checking the parent is alive", errors.New("it is gone"))
	}
	if err := step("setting the umask, resource limits and personality", nixProcess(c.Linux32, c.NProc)); err != nil {
		return err
	}
	// Only stdin, stdout and stderr may reach the builder: every other
	// descriptor (the status pipe, whatever the Go runtime opened) closes on
	// exec, and the status pipe's closing tells Run the exec succeeded.
	if err := step("marking descriptors close-on-exec", unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)); err != nil {
		return err
	}
	if err := step("installing the seccomp filter", installSeccomp(filterOptions{noUnixSockets: c.NoUnixSockets})); err != nil {
		return err
	}
	err := unix.Exec(c.Builder, c.Argv, c.Env)
	return step("executing builder "+c.Builder, err)
}

func mount(m initMount) error {
	if m.Move {
		return unix.MoveMount(fdRoot, "", unix.AT_FDCWD, m.Target, unix.MOVE_MOUNT_F_EMPTY_PATH)
	}
	if m.FSType != "" {
		return unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
	}
	if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	if m.Attr == 0 {
		return nil
	}
	// mount_setattr changes only the named attributes: a remount with
	// MS_RDONLY would also have to repeat the atime flags, which are locked
	// in a user namespace (EPERM otherwise).
	return unix.MountSetattr(-1, m.Target, 0, &unix.MountAttr{Attr_set: m.Attr})
}

// loopbackUp brings up lo, the only interface of a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// becomeBuildUser switches to the build user and drops every capability
// for good: after execve the builder has none, in any namespace, and
// cannot gain any (no_new_privs; setuid bits are ignored, nosuid too).
func becomeBuildUser(uid, gid int) error {
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		return &SetupError{What: what, Err: err}
	}
	// The bounding set first: dropping it needs CAP_SETPCAP, which the
	// uid change might take away.
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return step(fmt.Sprintf("dropping capability %d from the bounding set", c), err)
		}
	}
	// Host root's supplementary groups (group 0) must not follow the
	// builder; Run allows setgroups in the namespace for this.
	if err := step("dropping supplementary groups", unix.Setgroups(nil)); err != nil {
		return err
	}
	if err := step(fmt.Sprintf("setting gid %d", gid), unix.Setresgid(gid, gid, gid)); err != nil {
		return err
	}
	if err := step(fmt.Sprintf("setting uid %d", uid), unix.Setresuid(uid, uid, uid)); err != nil {
		return err
	}
	if err := step("clearing ambient capabilities", unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var none [2]unix.CapUserData
	if err := step("clearing capabilities", unix.Capset(&hdr, &none[0])); err != nil {
		return err
	}
	return step("setting no_new_privs", unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
}

// Personality flags (linux/personality.h; not in x/sys/unix).
const (
	perLinux32      = 0x0008
	addrNoRandomize = 0x0040000
	personalityRead = 0xffffffff
)

// nixProcess gives the builder what Nix's does besides the sandbox: umask
// 022, no core dumps (soft limit 0), no address space randomisation, and
// for a 32-bit platform the 32-bit personality (uname says i686); and ours:
// at most nproc tasks of the build user, when nproc > 0.
func nixProcess(linux32 bool, nproc int) error {
	unix.Umask(0o022)
	var core unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, nil, &core); err != nil {
		return err
	}
	core.Cur = 0
	if err := unix.Prlimit(0, unix.RLIMIT_CORE, &core, nil); err != nil {
		return err
	}
	if nproc > 0 {
		lim := unix.Rlimit{Cur: uint64(nproc), Max: uint64(nproc)}
		if err := unix.Prlimit(0, unix.RLIMIT_NPROC, &lim, nil); err != nil {
			return err
		}
	}
	cur, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, personalityRead, 0, 0)
	if errno != 0 {
		return errno
	}
	p := cur | addrNoRandomize
	if linux32 {
		p = p&^0xff | perLinux32 // the low byte is the execution domain
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, p, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// argv0 is the builder's argv[0]: its base name, as Nix gives it.
func argv0(builder string) string { return filepath.Base(builder) }
