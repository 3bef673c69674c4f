// Package realise does one step of the goal engine: it runs one
// derivation's builder in the sandbox and registers the outputs (Builder),
// or fetches one path from a binary cache (substitute*.go, cache*.go).
//
// # A build, step by step (Builder.Build)
//
//  1. Refuse what cannot be built here (CanBuild, asked by the goal before
//     the inputs are built): another system, or required system features
//     this machine lacks, with Nix's message.
//  2. Compute the inputs' closure: the input sources and the wanted outputs
//     of the input derivations, with everything they refer to. Only these
//     paths are mounted in the sandbox, read-only, from the backing
//     directory (the builder never reads through the FUSE mount). A builder
//     outside the closure is refused.
//  3. Take a build user: a host uid no other build on the machine uses, of
//     any store, in any process (an flock per uid in DefaultBuildUsersDir).
//  4. Make the environment Nix gives a builder (docs/formats.md, "Builder
//     environment"; Nix 2.8's initEnv) and a fresh build directory,
//     mounted at /build.
//  5. Run the builder (sandbox.Run) with its log going to the build log
//     (logs/<drv>.gz) and a ring of its last lines. A builder that cannot
//     be executed fails as the builder (100), as in Nix.
//  6. Copy each fixed output into fresh files and remove the original
//     (fresh.go), so that no descriptor a process was handed during the
//     build reaches what is checked and registered.
//  7. Check the outputs (outputs.go): each exists; a fixed output has its
//     declared hash and no references; references are the hash parts of
//     the closure and outputs found in the output's NAR (one pass computes
//     the NAR hash, the size and the references); the outputs do not refer
//     to each other in a cycle; allowedReferences, allowedRequisites,
//     disallowedReferences and disallowedRequisites hold.
//  8. Register every output in one transaction, deriver the .drv. The store
//     canonicalises the contents.
//
// Failures of the build itself are *goals.BuildError with Nix's statuses
// (100 failed, 101 timed out, 102 hash mismatch; outputs refused: Nix exits
// 1) and the log's last lines. Everything else is a plain error, which goals
// never remembers: a sandbox that could not be made, and the machine's
// failures (resource.go): a builder that failed while the scratch
// filesystem was full, an output that could not be read or copied for want
// of space, memory or descriptors, or for an I/O error.
package realise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"storefs/goals"
	"storefs/sandbox"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/nixbase32"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// LogTailLines is how many of a failed build's last log lines are reported.
const LogTailLines = 25

// Builder builds derivations in the sandbox; it implements goals.Builder.
type Builder struct {
	Store *store.Store
	// System is the platform this machine builds for, e.g. x86_64-linux.
	System string
	// UIDBase is the first of the unprivileged host uids (and gids) that
	// builders run as, one per concurrent build across every process
	// (0: DefaultUIDBase).
	UIDBase int
	// BuildUsersDir holds the locks of the build uids in use, one file per
	// uid, shared by every store on the machine ("": DefaultBuildUsersDir).
	BuildUsersDir string
	// OnLogLine, if set, hears each line a builder prints.
	OnLogLine func(drv storepath.Path, line string)
	// MaxLogSize kills a builder that writes more than this many bytes of
	// log output, as Nix's max-build-log-size (0: no limit).
	MaxLogSize int64
	// LogKeep is how much of a build's output its log keeps: the first
	// LogKeep bytes, then a line saying how much was dropped, then the last
	// LogTailLines lines (0: DefaultLogKeep; negative: everything).
	LogKeep int64
	// MaxProcesses bounds the processes (and threads) of one build at once
	// (0: DefaultMaxProcesses, negative: no limit), and MaxMemory its
	// memory in bytes (0: no limit), with a cgroup where the host allows
	// one (sandbox/cgroup.go).
	MaxProcesses int
	MaxMemory    int64
}

// HostSystem is Nix's name for this machine's platform.
func HostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// DefaultMaxProcesses is how many processes and threads one build may
// have at once unless told otherwise: a fork bomb once made 3,000 and
// could take all of a host's pids (32768 here); 4096 leaves room for
// several builds at once and is far more than a parallel build needs.
const DefaultMaxProcesses = 4096

// DefaultUIDBase is the first host uid builders run as.
const DefaultUIDBase = 872000

// DefaultBuildUsersDir is where build uids are locked, machine-wide: every
// storefs store on the machine, whatever its state dir, takes its build
// uids from the same locks, as Nix's build-users-group makes one pool per
// machine. Two stores must never run builders as one host user at the same
// time: each could then signal, ptrace or write into the other's builds.
// It is under /run because the locks are only ever held by live processes
// (flocks): a tmpfs emptied at boot keeps no stale files, and it is the
// machine's, not a store's.
const DefaultBuildUsersDir = "/run/storefs/build-users"

var (
	_ goals.Builder      = (*Builder)(nil)
	_ goals.BuildChecker = (*Builder)(nil)
)

// CanBuild refuses a derivation for another system, or one that requires
// system features this machine lacks, with Nix's message.
func (b *Builder) CanBuild(drv storepath.Path, d *derivation.Derivation) error {
	return checkPlatform(b.Store.Print(drv), d, b.system())
}

func (b *Builder) system() string {
	if b.System != "" {
		return b.System
	}
	return HostSystem()
}

// Build runs the builder of d (stored at drv) and registers its outputs.
func (b *Builder) Build(ctx context.Context, drv storepath.Path, d *derivation.Derivation, opts goals.BuildOptions) error {
	s := b.Store
	drvName := s.Print(drv)
	if err := b.CanBuild(drv, d); err != nil {
		return err
	}
	closure, err := b.inputClosure(d)
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	if err := b.checkBuilder(d, closure); err != nil {
		return &goals.BuildError{Drv: drvName, Status: goals.StatusBuildFailed, Message: err.Error()}
	}
	uid, release, err := b.takeUID()
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	defer release()

	scratch, err := s.NewTemp()
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	defer forceRemove(scratch)
	buildDir := filepath.Join(scratch, "build")
	if err := os.Mkdir(buildDir, 0o700); err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	outDir := filepath.Join(scratch, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	if err := os.Chown(buildDir, uid, uid); err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	env, err := builderEnv(s.Dir, d, buildDir, opts.Cores)
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	spec := &sandbox.Spec{
		Builder:    d.Builder,
		Args:       d.Args,
		Env:        env,
		StoreDir:   string(s.Dir),
		BuildDir:   buildDir,
		Network:    d.IsFixedOutput(),
		HostUID:    uid,
		HostGID:    uid,
		Timeout:    opts.Timeout,
		MaxSilent:  opts.MaxSilent,
		MaxLogSize: b.MaxLogSize,
		MaxMemory:  b.MaxMemory,
		KVM:        hasKVM(),
		Linux32:    d.System == "i686-linux" && b.system() == "x86_64-linux",
	}
	switch {
	case b.MaxProcesses == 0:
		spec.MaxProcesses = DefaultMaxProcesses
	case b.MaxProcesses > 0:
		spec.MaxProcesses = b.MaxProcesses
	}
	for _, p := range closure {
		spec.Inputs = append(spec.Inputs, sandbox.Mount{Host: s.RealPath(p), Path: s.Print(p)})
	}
	outputs := map[string]string{} // id -> host path of the output
	for _, id := range d.OutputIDs() {
		p := d.Outputs[id].Path
		outputs[id] = filepath.Join(outDir, p.Base())
		spec.Outputs = append(spec.Outputs, sandbox.Mount{Host: outputs[id], Path: s.Print(p)})
	}
	log, err := openLog(s, drv, b.LogKeep, func(line string) {
		if b.OnLogLine != nil {
			b.OnLogLine(drv, line)
		}
	})
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	spec.Log = log
	oomBefore := oomKills()
	res, err := sandbox.Run(ctx, spec)
	if opts.BuilderDone != nil {
		opts.BuilderDone() // its processes are gone: the next may start
	}
	if cerr := log.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if msg, ok := execFailure(err, d.Builder); ok {
			// The builder's fault, not the sandbox's: Nix reports it as a
			// builder that failed.
			return &goals.BuildError{Drv: drvName, Status: goals.StatusBuildFailed, Message: msg, LogTail: log.Tail()}
		}
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	if res.Outcome == sandbox.Cancelled && ctx.Err() != nil {
		return ctx.Err()
	}
	if failed := buildFailure(drvName, res, log.Tail()); failed != nil {
		if why, full := fullFilesystem(scratch); full {
			return machineFailure(drvName, failed, "while "+why)
		}
		if killedByHostOOM(res, oomBefore) {
			return machineFailure(drvName, failed, "by the kernel for want of memory on the machine")
		}
		return failed
	}
	if d.IsFixedOutput() {
		fresh := filepath.Join(scratch, "fresh")
		if err := os.Mkdir(fresh, 0o700); err != nil {
			return fmt.Errorf("building %s: %w", drvName, err)
		}
		outName := func(id string) string { return s.Print(d.Outputs[id].Path) }
		if err := freshOutputs(drvName, d, outputs, fresh, outName); err != nil {
			var be *goals.BuildError
			if errors.As(err, &be) {
				be.LogTail = log.Tail()
			}
			return err
		}
	}
	regs, err := b.checkOutputs(drv, d, outputs, closure)
	if err != nil {
		var be *goals.BuildError
		if errors.As(err, &be) {
			be.LogTail = log.Tail()
		}
		return err
	}
	return s.Register(regs...)
}

// buildFailure turns an unsuccessful sandbox result into a BuildError
// with Nix's status.
func buildFailure(drv string, res *sandbox.Result, tail []string) *goals.BuildError {
	if res.Success() {
		return nil
	}
	be := &goals.BuildError{Drv: drv, Status: goals.StatusBuildFailed, Message: res.Err().Error(), LogTail: tail}
	switch res.Outcome {
	case sandbox.TimedOut, sandbox.Silent:
		be.Status = goals.StatusTimedOut
	case sandbox.LogLimit:
		be.Status = goals.StatusLogLimit
	}
	return be
}

// inputClosure is the closure of the input sources and of the wanted
// outputs of the input derivations.
func (b *Builder) inputClosure(d *derivation.Derivation) ([]storepath.Path, error) {
	s := b.Store
	roots := append([]storepath.Path(nil), d.InputSrcs...)
	for in, ids := range d.InputDrvs {
		outs, err := s.DerivationOutputs(in)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			p, ok := outs[id]
			if !ok {
				return nil, fmt.Errorf("input derivation %s has no output %q", s.Print(in), id)
			}
			roots = append(roots, p)
		}
	}
	closure, err := s.Requisites(roots)
	if err != nil {
		return nil, fmt.Errorf("an input is missing: %w", err)
	}
	return closure, nil
}

// checkBuilder refuses a builder that the sandbox will not hold.
func (b *Builder) checkBuilder(d *derivation.Derivation, closure []storepath.Path) error {
	dir := b.Store.Dir
	if !strings.HasPrefix(d.Builder, string(dir)+"/") {
		return fmt.Errorf("builder %q is not in the store %s, so the sandbox does not hold it", d.Builder, dir)
	}
	p, _, err := dir.ParsePrefix(d.Builder)
	if err != nil {
		return fmt.Errorf("builder %q: %w", d.Builder, err)
	}
	for _, c := range closure {
		if c == p {
			return nil
		}
	}
	return fmt.Errorf("builder %q is not in the closure of the derivation's inputs", d.Builder)
}

// builderEnv is the environment Nix gives a builder (Nix 2.8's initEnv),
// in its order of precedence: defaults, then the derivation's env, then
// the build dir variables. passAsFile attributes become files in the
// build dir, mode 0644 as Nix writes them. A fixed-output derivation
// also gets NIX_OUTPUT_CHECKED=1 and the values its impureEnvVars name,
// from this process's environment.
func builderEnv(dir storepath.Dir, d *derivation.Derivation, buildDir string, cores int) ([]string, error) {
	const top = "/build"
	env := map[string]string{
		"PATH":            "/path-not-set",
		"HOME":            "/homeless-shelter",
		"NIX_STORE":       string(dir),
		"NIX_BUILD_CORES": strconv.Itoa(cores),
	}
	passAsFile := map[string]bool{}
	for _, name := range strings.Fields(d.Env["passAsFile"]) {
		passAsFile[name] = true
	}
	for k, v := range d.Env {
		if !passAsFile[k] {
			env[k] = v
			continue
		}
		sum := nixhash.Sum(nixhash.SHA256, []byte(k))
		fn := filepath.Join(buildDir, ".attr-"+nixbase32.EncodeToString(sum.Digest()))
		if err := os.WriteFile(fn, []byte(v), 0o644); err != nil {
			return nil, fmt.Errorf("passAsFile %q: %w", k, err)
		}
		if err := os.Chmod(fn, 0o644); err != nil { // whatever the umask
			return nil, fmt.Errorf("passAsFile %q: %w", k, err)
		}
		env[k+"Path"] = top + "/" + filepath.Base(fn)
	}
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"} {
		env[k] = top
	}
	if d.IsFixedOutput() {
		env["NIX_OUTPUT_CHECKED"] = "1"
		for _, k := range strings.Fields(d.Env["impureEnvVars"]) {
			env[k] = os.Getenv(k)
		}
	}
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// systemFeatures are the features Nix 2.8 gives a Linux machine by
// default, as it prints them; kvm only where /dev/kvm exists (builds then
// get /dev/kvm, as in Nix).
func systemFeatures() []string {
	f := []string{"benchmark", "big-parallel", "nixos-test"}
	if hasKVM() {
		f = append(f, "kvm")
	}
	sort.Strings(f)
	return f
}

func hasKVM() bool {
	_, err := os.Stat("/dev/kvm")
	return err == nil
}

// extraPlatforms are the systems this machine also builds for, as Nix
// 2.8's default extra-platforms: i686-linux on x86_64-linux, built with
// the 32-bit personality.
func extraPlatforms(system string) []string {
	if system == "x86_64-linux" {
		return []string{"i686-linux"}
	}
	return nil
}

// checkPlatform refuses a derivation for another system, or one that
// requires system features this machine lacks, with Nix's message. It is
// not a build failure (nothing ran), so it is not remembered and exits 1.
func checkPlatform(drvName string, d *derivation.Derivation, system string) error {
	have := systemFeatures()
	required := strings.Fields(d.Env["requiredSystemFeatures"])
	sort.Strings(required)
	required = slices.Compact(required)
	missing := false
	for _, f := range required {
		if !slices.Contains(have, f) {
			missing = true
		}
	}
	if (d.System == system || slices.Contains(extraPlatforms(system), d.System)) && !missing {
		return nil
	}
	return fmt.Errorf("a '%s' with features {%s} is required to build '%s', but I am a '%s' with features {%s}",
		d.System, strings.Join(required, ", "), drvName, system, strings.Join(have, ", "))
}

// execFailure recognises a sandbox that could not execute the builder
// (missing, not executable, not a program) and says so as Nix does. Not
// the machine's failures (out of memory, of descriptors...): those are
// setup errors, never remembered.
func execFailure(err error, builder string) (string, bool) {
	var se *sandbox.SetupError
	if !errors.As(err, &se) || !strings.HasPrefix(se.What, "executing builder") || isResourceError(se.Err) {
		return "", false
	}
	return fmt.Sprintf("executing '%s': %v", builder, se.Err), true
}

// maxUIDs bounds the host uids tried for builders: more concurrent builds
// than this on one machine is a mistake.
const maxUIDs = 4096

// takeUID hands out an unprivileged host uid that no other build uses, in
// this process or any other on the machine, of this store or another: each
// uid is held by an flock on <BuildUsersDir>/uid-<n>.lock, as Nix's user
// pool does.
func (b *Builder) takeUID() (int, func(), error) {
	base := b.UIDBase
	if base == 0 {
		base = DefaultUIDBase
	}
	dir := b.BuildUsersDir
	if dir == "" {
		dir = DefaultBuildUsersDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("build users directory: %w", err)
	}
	for uid := base; uid < base+maxUIDs; uid++ {
		name := filepath.Join(dir, fmt.Sprintf("uid-%d.lock", uid))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return 0, nil, fmt.Errorf("build user lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if err == unix.EWOULDBLOCK {
				continue
			}
			return 0, nil, fmt.Errorf("build user lock %s: %w", name, err)
		}
		return uid, func() { f.Close() }, nil
	}
	return 0, nil, fmt.Errorf("all %d build users from uid %d are busy (locks in %s)", maxUIDs, base, dir)
}

func forceRemove(p string) {
	filepath.WalkDir(p, func(path string, de os.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			os.Chmod(path, 0o755)
		}
		return nil
	})
	os.RemoveAll(p)
}
