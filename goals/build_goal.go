package goals

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// buildGoal builds one derivation: every output, from its inputs. It is
// started by a derivation goal that could not substitute what it wants,
// and shared by all of them. While it runs it holds temporary roots for
// the .drv, its outputs and its inputs, so that a garbage collection
// cannot delete an input under the builder.
type buildGoal struct {
	w       *Worker
	drvPath storepath.Path
	drv     *derivation.Derivation
	roots   *store.TempRoots
}

// ErrNoLocalBuilds says a derivation must be built but max-jobs is 0.
var ErrNoLocalBuilds = errors.New("max-jobs is 0, so nothing is built on this machine (raise --max-jobs to build it)")

// build runs the build goal of drv (d is its derivation).
func (w *Worker) build(ctx context.Context, drv storepath.Path, d *derivation.Derivation) error {
	_, err := w.want(ctx, "build:"+drv.Base(), func(ctx context.Context) (map[string]storepath.Path, error) {
		g := &buildGoal{w: w, drvPath: drv, drv: d}
		return nil, g.init(ctx)
	})
	return err
}

func (g *buildGoal) print(p storepath.Path) string { return g.w.store.Print(p) }

// init refuses what this machine cannot build before anything is built
// for it, and takes the goal's temporary roots.
func (g *buildGoal) init(ctx context.Context) error {
	if c, ok := g.w.builder.(BuildChecker); ok {
		if err := c.CanBuild(g.drvPath, g.drv); err != nil {
			return err
		}
	}
	if g.w.opts.MaxJobs == 0 || g.w.request(ctx).NoLocalBuilds {
		return fmt.Errorf("cannot build %s: %w", g.print(g.drvPath), ErrNoLocalBuilds)
	}
	roots, err := g.w.store.NewTempRoots(ctx)
	if err != nil {
		return fmt.Errorf("building %s: %w", g.print(g.drvPath), err)
	}
	defer roots.Close()
	g.roots = roots
	paths := []storepath.Path{g.drvPath}
	for _, o := range g.drv.Outputs {
		paths = append(paths, o.Path)
	}
	if err := roots.Add(ctx, paths...); err != nil {
		return fmt.Errorf("building %s: %w", g.print(g.drvPath), err)
	}
	return g.realiseInputs(ctx)
}

// realiseInputs makes the wanted outputs of the input derivations and the
// input sources valid. Each is made a temporary root before it is found
// valid, and realised again if a collection took it in between.
func (g *buildGoal) realiseInputs(ctx context.Context) error {
	type input struct {
		p      storepath.Path
		isDrv  bool
		wanted []string
	}
	var inputs []input
	for p, outs := range g.drv.InputDrvs {
		inputs = append(inputs, input{p, true, outs})
	}
	for _, p := range g.drv.InputSrcs {
		inputs = append(inputs, input{p: p})
	}
	errs := waitAll(ctx, g.w.request(ctx).KeepGoing, inputs, func(ctx context.Context, in input) error {
		var err error
		if in.isDrv {
			err = g.realiseInputDrv(ctx, in.p, in.wanted)
		} else {
			err = g.realiseRooted(ctx, []storepath.Path{in.p}, func(ctx context.Context) error { return g.w.Realise(ctx, in.p) })
		}
		if err != nil && ctx.Err() == nil {
			return depError(g.w.store.Dir, g.drvPath, in.p, err)
		}
		return err
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return g.tryToBuild(ctx)
}

// realiseInputDrv makes the wanted outputs of the input derivation drv
// valid and roots them.
func (g *buildGoal) realiseInputDrv(ctx context.Context, drv storepath.Path, wanted []string) error {
	if err := g.roots.Add(ctx, drv); err != nil {
		return err
	}
	var paths []storepath.Path
	realise := func(ctx context.Context) error {
		outs, err := g.w.BuildDerivation(ctx, drv, wanted...)
		if err != nil {
			return err
		}
		paths = paths[:0]
		for id, p := range outs {
			if len(wanted) == 0 || slices.Contains(wanted, id) {
				paths = append(paths, p)
			}
		}
		return nil
	}
	if err := realise(ctx); err != nil {
		return err
	}
	return g.realiseRooted(ctx, paths, realise)
}

// realiseRooted makes paths temporary roots and realises them until they
// are valid with the roots in place (a collection may delete a path after
// its goal made it valid and before it was rooted here).
func (g *buildGoal) realiseRooted(ctx context.Context, paths []storepath.Path, realise func(context.Context) error) error {
	for try := 0; ; try++ {
		if err := g.roots.Add(ctx, paths...); err != nil {
			return err
		}
		missing, err := g.w.invalidPaths(paths)
		if err != nil || len(missing) == 0 {
			return err
		}
		if try == 3 {
			return fmt.Errorf("%s became invalid again after it was realised", g.print(missing[0]))
		}
		if err := realise(ctx); err != nil {
			return err
		}
	}
}

func (w *Worker) invalidPaths(ps []storepath.Path) ([]storepath.Path, error) {
	var out []storepath.Path
	for _, p := range ps {
		ok, err := w.store.IsValid(p)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// tryToBuild takes a build slot and the output locks, and builds unless
// another goal or process made the outputs valid meanwhile.
func (g *buildGoal) tryToBuild(ctx context.Context) error {
	if err := acquire(ctx, g.w.buildSlots); err != nil {
		return err
	}
	freeSlot := sync.OnceFunc(func() { <-g.w.buildSlots })
	defer freeSlot()
	outs := make([]storepath.Path, 0, len(g.drv.Outputs))
	for _, o := range g.drv.Outputs {
		outs = append(outs, o.Path)
	}
	unlock, err := g.w.store.LockAll(ctx, outs)
	if err != nil {
		return err
	}
	defer unlock()
	if missing, err := g.w.invalidPaths(outs); err != nil || len(missing) == 0 {
		return err // someone beat us to it
	}
	// Or another process built it and failed while we waited for the
	// locks: one build for many requests, failed or not.
	if err := g.w.rememberedFailure(g.drvPath); err != nil {
		return err
	}
	return g.run(ctx, outs, freeSlot)
}

// run runs the builder; on failure the failure is remembered. The build
// slot is freed as soon as the builder has exited (freeSlot).
func (g *buildGoal) run(ctx context.Context, outs []storepath.Path, freeSlot func()) error {
	w := g.w
	w.event(Event{Kind: BuildStarted, Path: g.drvPath})
	r := w.request(ctx)
	cores := r.Cores
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	opts := BuildOptions{Cores: cores, Timeout: r.Timeout, MaxSilent: r.MaxSilent, BuilderDone: freeSlot}
	err := w.builder.Build(ctx, g.drvPath, g.drv, opts)
	if err == nil {
		if missing, verr := w.invalidPaths(outs); verr != nil {
			err = verr
		} else if len(missing) > 0 {
			err = fmt.Errorf("builder of %s returned without registering %s", g.print(g.drvPath), g.print(missing[0]))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = stopped(ctx)
		}
		w.event(Event{Kind: BuildFailed, Path: g.drvPath, Err: err})
		var be *BuildError
		if errors.As(err, &be) { // the build ran and failed, whoever still waits
			msg := be.Detail()
			if rerr := w.store.RecordFailure(g.drvPath, store.Failure{Time: time.Now(), Message: msg, Status: be.Status}); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return err
	}
	w.event(Event{Kind: BuildFinished, Path: g.drvPath})
	return nil
}
