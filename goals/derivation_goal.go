package goals

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// derivationGoal makes the outputs of one derivation valid. Its states run
// in order; each either finishes the goal or moves to the next.
type derivationGoal struct {
	w       *Worker
	drvPath storepath.Path
	drv     *derivation.Derivation
	outputs map[string]storepath.Path
}

func (g *derivationGoal) print(p storepath.Path) string { return g.w.store.Print(p) }

// init loads the derivation, substituting the .drv itself if it is not
// valid.
func (g *derivationGoal) init(ctx context.Context) (map[string]storepath.Path, error) {
	s := g.w.store
	if ok, err := s.IsValid(g.drvPath); err != nil {
		return nil, err
	} else if !ok {
		if g.w.subst == nil {
			return nil, fmt.Errorf("cannot build %s: the derivation is %w (storefs derivation add adds it)", g.print(g.drvPath), store.ErrNotValid)
		}
		if err := g.w.substitute(ctx, g.drvPath); err != nil {
			return nil, fmt.Errorf("derivation %s is not valid and cannot be substituted: %w", g.print(g.drvPath), err)
		}
	}
	d, err := s.ReadDerivation(g.drvPath)
	if err != nil {
		return nil, err
	}
	g.drv = d
	g.outputs = make(map[string]storepath.Path, len(d.Outputs))
	for id, o := range d.Outputs {
		g.outputs[id] = o.Path
	}
	return g.haveDerivation(ctx)
}

// haveDerivation finishes at once if every output is valid, and fails fast
// if the build failed within the failure TTL.
func (g *derivationGoal) haveDerivation(ctx context.Context) (map[string]storepath.Path, error) {
	if done, err := g.allValid(); err != nil || done {
		return g.outputs, err
	}
	if err := g.rememberedFailure(); err != nil {
		return nil, err
	}
	return g.trySubstitute(ctx)
}

// rememberedFailure is the build's failure if one is remembered within
// the failure TTL.
func (g *derivationGoal) rememberedFailure() error {
	ttl := g.w.opts.FailureTTL
	if ttl <= 0 {
		return nil
	}
	f, err := g.w.store.LookupFailure(g.drvPath)
	if err != nil {
		return err
	}
	if f != nil && time.Since(f.Time) < ttl {
		return &BuildError{Drv: g.print(g.drvPath), Status: f.Status, Message: f.Message, Cached: true}
	}
	return nil
}

// trySubstitute fetches the invalid outputs from binary caches, as Nix
// does before building; if any cannot be substituted, the goal builds.
func (g *derivationGoal) trySubstitute(ctx context.Context) (map[string]storepath.Path, error) {
	if g.w.subst == nil {
		return g.realiseInputs(ctx)
	}
	missing, err := g.invalidOutputs()
	if err != nil {
		return nil, err
	}
	errs := waitAll(ctx, true, missing, func(ctx context.Context, p storepath.Path) error {
		return g.w.substitute(ctx, p)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) == 0 {
		return g.outputs, nil
	}
	return g.realiseInputs(ctx)
}

// realiseInputs makes the input derivations' outputs and the input sources
// valid, once it is known that this machine can build the derivation.
func (g *derivationGoal) realiseInputs(ctx context.Context) (map[string]storepath.Path, error) {
	if c, ok := g.w.builder.(BuildChecker); ok {
		if err := c.CanBuild(g.drvPath, g.drv); err != nil {
			return nil, err
		}
	}
	type input struct {
		p     storepath.Path
		isDrv bool
	}
	var inputs []input
	for p := range g.drv.InputDrvs {
		inputs = append(inputs, input{p, true})
	}
	for _, p := range g.drv.InputSrcs {
		inputs = append(inputs, input{p, false})
	}
	errs := waitAll(ctx, g.w.opts.KeepGoing, inputs, func(ctx context.Context, in input) error {
		var err error
		if in.isDrv {
			_, err = g.w.BuildDerivation(ctx, in.p)
		} else {
			err = g.w.Realise(ctx, in.p)
		}
		if err != nil && ctx.Err() == nil {
			return depError(g.w.store.Dir, g.drvPath, in.p, err)
		}
		return err
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return g.tryToBuild(ctx)
}

// tryToBuild takes a build slot and the output locks, and builds unless
// another goal or process made the outputs valid meanwhile.
func (g *derivationGoal) tryToBuild(ctx context.Context) (map[string]storepath.Path, error) {
	if err := acquire(ctx, g.w.buildSlots); err != nil {
		return nil, err
	}
	freeSlot := sync.OnceFunc(func() { <-g.w.buildSlots })
	defer freeSlot()
	outs := make([]storepath.Path, 0, len(g.outputs))
	for _, p := range g.outputs {
		outs = append(outs, p)
	}
	unlock, err := g.w.store.LockAll(ctx, outs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if done, err := g.allValid(); err != nil || done {
		return g.outputs, err // someone beat us to it
	}
	// Or another process built it and failed while we waited for the
	// locks: one build for many requests, failed or not.
	if err := g.rememberedFailure(); err != nil {
		return nil, err
	}
	return g.build(ctx, freeSlot)
}

// build runs the builder; on failure the failure is remembered. The build
// slot is freed as soon as the builder has exited (freeSlot).
func (g *derivationGoal) build(ctx context.Context, freeSlot func()) (map[string]storepath.Path, error) {
	g.w.event(Event{Kind: BuildStarted, Path: g.drvPath})
	opts := BuildOptions{Cores: g.w.opts.Cores, Timeout: g.w.opts.Timeout, MaxSilent: g.w.opts.MaxSilent, BuilderDone: freeSlot}
	err := g.w.builder.Build(ctx, g.drvPath, g.drv, opts)
	if err == nil {
		if done, verr := g.allValid(); verr != nil || !done {
			err = fmt.Errorf("builder of %s returned without registering every output", g.print(g.drvPath))
			if verr != nil {
				err = verr
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = stopped(ctx)
		}
		g.w.event(Event{Kind: BuildFailed, Path: g.drvPath, Err: err})
		var be *BuildError
		if errors.As(err, &be) { // the build ran and failed, whoever still waits
			msg := be.Detail()
			if rerr := g.w.store.RecordFailure(g.drvPath, store.Failure{Time: time.Now(), Message: msg, Status: be.Status}); rerr != nil {
				return nil, errors.Join(err, rerr)
			}
		}
		return nil, err
	}
	g.w.event(Event{Kind: BuildFinished, Path: g.drvPath})
	return g.outputs, nil
}

func (g *derivationGoal) invalidOutputs() ([]storepath.Path, error) {
	var out []storepath.Path
	for _, id := range g.drv.OutputIDs() {
		p := g.outputs[id]
		ok, err := g.w.store.IsValid(p)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (g *derivationGoal) allValid() (bool, error) {
	missing, err := g.invalidOutputs()
	return len(missing) == 0, err
}
