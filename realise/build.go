// Package realise does one step of the goal engine: it runs one
// derivation's builder in the sandbox and registers the outputs (Builder),
// and (in a later part) fetches one path from a binary cache.
//
// # A build, step by step (Builder.Build)
//
//  1. Refuse what cannot be built here: another system, a builder outside
//     the inputs' closure.
//  2. Compute the inputs' closure: the input sources and the wanted outputs
//     of the input derivations, with everything they refer to. Only these
//     paths are mounted in the sandbox, read-only, from the backing
//     directory (the builder never reads through the FUSE mount).
//  3. Make the environment Nix gives a builder (docs/formats.md, "Builder
//     environment") and a fresh build directory, mounted at /build.
//  4. Run the builder (sandbox.Run) with its log going to the build log
//     (logs/<drv>.gz) and a ring of its last lines.
//  5. Check the outputs: each exists; a fixed output has its declared hash;
//     references are the hash parts of the closure and outputs found in the
//     output's NAR (one pass computes the NAR hash, the size and the
//     references); allowedReferences, allowedRequisites,
//     disallowedReferences and disallowedRequisites hold.
//  6. Register every output in one transaction, deriver the .drv. The store
//     canonicalises the contents.
//
// Failures of the build itself are *goals.BuildError with Nix's statuses
// (100 failed, 101 timed out, 102 hash mismatch) and the log's last lines.
package realise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

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
	// builders run as, one per concurrent build.
	UIDBase int
	// OnLogLine, if set, hears each line a builder prints.
	OnLogLine func(drv storepath.Path, line string)

	mu       sync.Mutex // guards uidsUsed
	uidsUsed map[int]bool
}

// HostSystem is Nix's name for this machine's platform.
func HostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// DefaultUIDBase is the first host uid builders run as.
const DefaultUIDBase = 872000

var _ goals.Builder = (*Builder)(nil)

// Build runs the builder of d (stored at drv) and registers its outputs.
func (b *Builder) Build(ctx context.Context, drv storepath.Path, d *derivation.Derivation, opts goals.BuildOptions) error {
	s := b.Store
	drvName := s.Print(drv)
	system := b.System
	if system == "" {
		system = HostSystem()
	}
	if d.System != system {
		return &goals.BuildError{Drv: drvName, Status: goals.StatusBuildFailed,
			Message: fmt.Sprintf("a %q derivation cannot be built on this %q machine", d.System, system)}
	}
	closure, err := b.inputClosure(d)
	if err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	if err := b.checkBuilder(d, closure); err != nil {
		return &goals.BuildError{Drv: drvName, Status: goals.StatusBuildFailed, Message: err.Error()}
	}
	uid, release := b.takeUID()
	defer release()

	scratch, err := s.NewTemp()
	if err != nil {
		return err
	}
	defer forceRemove(scratch)
	buildDir := filepath.Join(scratch, "build")
	if err := os.Mkdir(buildDir, 0o700); err != nil {
		return err
	}
	outDir := filepath.Join(scratch, "out")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(buildDir, uid, uid); err != nil {
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	env, err := builderEnv(s.Dir, d, buildDir, opts.Cores)
	if err != nil {
		return &goals.BuildError{Drv: drvName, Status: goals.StatusBuildFailed, Message: err.Error()}
	}
	spec := &sandbox.Spec{
		Builder:   d.Builder,
		Args:      d.Args,
		Env:       env,
		StoreDir:  string(s.Dir),
		BuildDir:  buildDir,
		Network:   d.IsFixedOutput(),
		HostUID:   uid,
		HostGID:   uid,
		Timeout:   opts.Timeout,
		MaxSilent: opts.MaxSilent,
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
	log, err := openLog(s, drv, func(line string) {
		if b.OnLogLine != nil {
			b.OnLogLine(drv, line)
		}
	})
	if err != nil {
		return err
	}
	spec.Log = log
	res, err := sandbox.Run(ctx, spec)
	if cerr := log.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("building %s: %w", drvName, err)
	}
	if res.Outcome == sandbox.Cancelled && ctx.Err() != nil {
		return ctx.Err()
	}
	if failed := buildFailure(drvName, res, log.Tail()); failed != nil {
		return failed
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
func buildFailure(drv string, res *sandbox.Result, tail []string) error {
	if res.Success() {
		return nil
	}
	be := &goals.BuildError{Drv: drv, Status: goals.StatusBuildFailed, Message: res.Err().Error(), LogTail: tail}
	if res.Outcome == sandbox.TimedOut || res.Outcome == sandbox.Silent {
		be.Status = goals.StatusTimedOut
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

// builderEnv is the environment Nix gives a builder, in Nix's order of
// precedence: defaults, then the derivation's env, then the build dir
// variables. passAsFile attributes become files in the build dir.
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
		fn := ".attr-" + nixbase32.EncodeToString(sum.Digest())
		if err := os.WriteFile(filepath.Join(buildDir, fn), []byte(v), 0o444); err != nil {
			return nil, err
		}
		env[k+"Path"] = top + "/" + fn
	}
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"} {
		env[k] = top
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

// takeUID hands out an unprivileged host uid no other build is using.
func (b *Builder) takeUID() (int, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.uidsUsed == nil {
		b.uidsUsed = map[int]bool{}
	}
	base := b.UIDBase
	if base == 0 {
		base = DefaultUIDBase
	}
	uid := base
	for b.uidsUsed[uid] {
		uid++
	}
	b.uidsUsed[uid] = true
	return uid, func() {
		b.mu.Lock()
		delete(b.uidsUsed, uid)
		b.mu.Unlock()
	}
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
