package sandbox

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// What the builder is inside the sandbox, as in Nix.
const (
	BuildUID  = 1000     // the build user, nixbld
	BuildGID  = 100      // the build group, nixbld
	BuildTop  = "/build" // where Spec.BuildDir appears; the builder's cwd
	Hostname  = "localhost"
	Domain    = "(none)" // the kernel's default domain name
	buildUser = "nixbld"
)

// reserved are the top-level directories the sandbox makes itself; the store
// dir may not be one of them or lie under one.
var reserved = []string{BuildTop, "/dev", "/proc", "/etc", "/tmp"}

// Mount shows a host file or directory at a logical path inside the sandbox.
type Mount struct {
	Host string // absolute path on the host
	Path string // absolute path inside the sandbox, e.g. /store/<hash>-<name>
}

// Spec is one build: what to run and exactly what it may see.
type Spec struct {
	// Builder is the program to run, as a path inside the sandbox (usually
	// in an input). Its argv[0] is its base name, as in Nix.
	Builder string
	// Args are the arguments after argv[0].
	Args []string
	// Env is the builder's whole environment, "NAME=value" each; nothing is
	// added (realise/ computes Nix's variables).
	Env []string
	// StoreDir is the logical store dir, e.g. /store. Inside the sandbox it
	// is a directory the builder may create entries in (mode 1775, group
	// nixbld), holding the inputs.
	StoreDir string
	// Inputs are the paths of the input closure: each Host (a directory or
	// a file in the backing directory, or a symlink, which is copied) is
	// mounted read-only at Path, which must be directly under StoreDir.
	Inputs []Mount
	// BuildDir is a host directory mounted read-write at /build. Run makes
	// it and everything in it owned by HostUID:HostGID, mode 0700 at the top.
	BuildDir string
	// Outputs name what the builder must create: Path is the logical output
	// path (directly under StoreDir), Host where Run moves whatever the
	// builder left at Path when it ends, whatever its exit status. Host
	// must not exist; its directory must, on the filesystem of ScratchDir
	// (outputs are renamed, never copied). An output the builder did not
	// create is simply absent at Host.
	Outputs []Mount
	// ScratchDir is the host directory that holds what the builder writes
	// besides BuildDir: the store dir it sees (where it makes its outputs)
	// and /tmp. It must not exist; Run creates it and removes it when done.
	// Empty means a fresh directory beside BuildDir.
	ScratchDir string
	// Network keeps the host's network (fixed-output derivations), with the
	// host's /etc/resolv.conf, /etc/services and /etc/hosts, but no unix
	// sockets (socket(AF_UNIX, ...) and datagram socketpairs fail with
	// EPERM): their abstract names are the host's. Otherwise the builder has only its own loopback
	// interface.
	Network bool
	// KVM also binds the host's /dev/kvm, as Nix does on a machine with the
	// kvm system feature.
	KVM bool
	// Linux32 runs the builder with the 32-bit personality (uname says
	// i686), as Nix does for an i686-linux derivation on x86_64-linux.
	Linux32 bool
	// Log receives the builder's stdout and stderr (nil discards them).
	// Writes come from one goroutine; a Write that blocks blocks the
	// builder (the pipe fills) and Run's return.
	Log io.Writer
	// HostUID and HostGID are what the build user and group are on the
	// host: unprivileged, never 0, and one pair per concurrent build, so
	// builds cannot touch each other's processes or files.
	HostUID, HostGID int
	// Timeout bounds the whole run, MaxSilent the time without output on
	// Log; zero means no limit.
	Timeout, MaxSilent time.Duration
	// MaxLogSize kills the builder once it has written more than this many
	// bytes to its stdout and stderr, as Nix's max-build-log-size; zero
	// means no limit.
	MaxLogSize int64
	// MaxProcesses bounds the processes and threads of the build at once
	// (a cgroup's pids.max, else RLIMIT_NPROC of the build user: cgroup.go);
	// MaxMemory its memory in bytes (memory.max; only with a cgroup). Zero
	// means no limit.
	MaxProcesses int
	MaxMemory    int64
}

// check refuses a spec the sandbox cannot run faithfully, naming what is wrong.
func (s *Spec) check() error {
	bad := func(format string, a ...any) error {
		return &SetupError{What: "checking the build spec", Err: fmt.Errorf(format, a...)}
	}
	if err := absClean("store dir", s.StoreDir); err != nil {
		return bad("%w", err)
	}
	if s.StoreDir == "/" {
		return bad("store dir %q: must not be the root", s.StoreDir)
	}
	for _, r := range reserved {
		if s.StoreDir == r || strings.HasPrefix(s.StoreDir, r+"/") || strings.HasPrefix(r, s.StoreDir+"/") {
			return bad("store dir %q: clashes with the sandbox's own %s", s.StoreDir, r)
		}
	}
	if err := absClean("builder", s.Builder); err != nil {
		return bad("%w", err)
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("argument %d %q: contains a NUL byte", i+1, a)
		}
	}
	for _, e := range s.Env {
		if strings.IndexByte(e, 0) >= 0 {
			return bad("environment entry %q: contains a NUL byte", e)
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return bad("environment entry %q: not NAME=value", e)
		}
	}
	if s.HostUID <= 0 || s.HostGID <= 0 || s.HostUID >= 1<<32-1 || s.HostGID >= 1<<32-1 {
		return bad("host uid %d, gid %d: the builder must run as an unprivileged host user (1 to 2^32-2)", s.HostUID, s.HostGID)
	}
	if s.Timeout < 0 || s.MaxSilent < 0 {
		return bad("timeout %v, max silent time %v: must not be negative", s.Timeout, s.MaxSilent)
	}
	if s.MaxLogSize < 0 {
		return bad("max log size %d: must not be negative", s.MaxLogSize)
	}
	if s.MaxProcesses < 0 || s.MaxMemory < 0 {
		return bad("max processes %d, max memory %d: must not be negative", s.MaxProcesses, s.MaxMemory)
	}
	if err := absClean("build dir", s.BuildDir); err != nil {
		return bad("%w", err)
	}
	if fi, err := os.Stat(s.BuildDir); err != nil {
		return bad("build dir: %w", err)
	} else if !fi.IsDir() {
		return bad("build dir %s: not a directory", s.BuildDir)
	}
	if s.ScratchDir != "" {
		if err := absClean("scratch dir", s.ScratchDir); err != nil {
			return bad("%w", err)
		}
	}
	seen := map[string]string{}
	claim := func(kind string, m Mount) error {
		if err := absClean(kind+" host path", m.Host); err != nil {
			return err
		}
		if err := absClean(kind, m.Path); err != nil {
			return err
		}
		base := filepath.Base(m.Path)
		if filepath.Dir(m.Path) != s.StoreDir || base == "." || base == ".." {
			return fmt.Errorf("%s %s: not directly under the store dir %s", kind, m.Path, s.StoreDir)
		}
		if prev, ok := seen[m.Path]; ok {
			return fmt.Errorf("%s %s: already given as %s", kind, m.Path, prev)
		}
		seen[m.Path] = kind
		return nil
	}
	for _, in := range s.Inputs {
		if err := claim("input", in); err != nil {
			return bad("%w", err)
		}
	}
	for _, out := range s.Outputs {
		if err := claim("output", out); err != nil {
			return bad("%w", err)
		}
		if _, err := os.Lstat(out.Host); err == nil {
			return bad("output %s: host path %s already exists", out.Path, out.Host)
		} else if !os.IsNotExist(err) {
			return bad("output %s: %w", out.Path, err)
		}
		if fi, err := os.Stat(filepath.Dir(out.Host)); err != nil {
			return bad("output %s: %w", out.Path, err)
		} else if !fi.IsDir() {
			return bad("output %s: %s is not a directory", out.Path, filepath.Dir(out.Host))
		}
	}
	return nil
}

func absClean(what, p string) error {
	if p == "" {
		return fmt.Errorf("%s: empty", what)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%s %q: contains a NUL byte", what, p)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q: not an absolute, clean path", what, p)
	}
	return nil
}
