package goals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/storepath"
)

// derivationGoal makes the wanted outputs of one derivation valid: by
// substitution when a cache has them, else by the derivation's build goal
// (build_goal.go), which builds every output. Its states run in order; each
// either finishes the goal or moves to the next.
type derivationGoal struct {
	w       *Worker
	drvPath storepath.Path
	wanted  []string // output ids; nil: every output
	drv     *derivation.Derivation
	outputs map[string]storepath.Path // every output, by id
}

func (g *derivationGoal) print(p storepath.Path) string { return g.w.store.Print(p) }

// init loads the derivation, substituting the .drv itself if it is not
// valid, and checks that the wanted outputs exist.
func (g *derivationGoal) init(ctx context.Context) (map[string]storepath.Path, error) {
	d, err := g.w.loadDerivation(ctx, g.drvPath)
	if err != nil {
		return nil, err
	}
	g.drv = d
	g.outputs = make(map[string]storepath.Path, len(d.Outputs))
	for id, o := range d.Outputs {
		g.outputs[id] = o.Path
	}
	if g.wanted == nil {
		g.wanted = d.OutputIDs()
	}
	for _, id := range g.wanted {
		if _, ok := d.Outputs[id]; !ok {
			return nil, fmt.Errorf("derivation %s has no output %q (it has %s)", g.print(g.drvPath), id, strings.Join(d.OutputIDs(), ", "))
		}
	}
	return g.haveDerivation(ctx)
}

// loadDerivation reads the derivation at drv, substituting the .drv first
// if it is not valid.
func (w *Worker) loadDerivation(ctx context.Context, drv storepath.Path) (*derivation.Derivation, error) {
	if ok, err := w.store.IsValid(drv); err != nil {
		return nil, err
	} else if !ok {
		if w.substituter(ctx) == nil {
			return nil, fmt.Errorf("cannot build %s: the derivation is %w (storefs derivation add adds it)", w.store.Print(drv), store.ErrNotValid)
		}
		if err := w.substitute(ctx, drv); err != nil {
			return nil, fmt.Errorf("derivation %s is not valid and cannot be substituted: %w", w.store.Print(drv), err)
		}
	}
	return w.store.ReadDerivation(drv)
}

// haveDerivation finishes at once if every wanted output is valid, and
// fails fast if the build failed within the failure TTL.
func (g *derivationGoal) haveDerivation(ctx context.Context) (map[string]storepath.Path, error) {
	missing, err := g.w.invalid(g.outputs, g.wanted)
	if err != nil || len(missing) == 0 {
		return g.outputs, err
	}
	if err := g.w.rememberedFailure(g.drvPath); err != nil {
		return nil, err
	}
	return g.trySubstitute(ctx, missing)
}

// rememberedFailure is the build's failure if one is remembered within
// the failure TTL.
func (w *Worker) rememberedFailure(drv storepath.Path) error {
	ttl := w.opts.FailureTTL
	if ttl <= 0 {
		return nil
	}
	f, err := w.store.LookupFailure(drv)
	if err != nil {
		return err
	}
	if f != nil && time.Since(f.Time) < ttl {
		return &BuildError{Drv: w.store.Print(drv), Status: f.Status, Message: f.Message, Cached: true}
	}
	return nil
}

// trySubstitute fetches the invalid wanted outputs from binary caches, as
// Nix does before building. An output that no cache has (or whose
// references no cache has) is built; one that
// a cache has but could not deliver (a corrupt NAR, a refused signature, a
// network error) is an error unless Fallback is set.
func (g *derivationGoal) trySubstitute(ctx context.Context, missing []storepath.Path) (map[string]storepath.Path, error) {
	if g.w.substituter(ctx) == nil {
		return g.build(ctx)
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
	if !g.w.request(ctx).Fallback {
		var failed []error
		for _, err := range errs {
			if !errors.Is(err, ErrNoSubstitute) && !errors.Is(err, ErrIncompleteClosure) {
				failed = append(failed, err)
			}
		}
		if len(failed) > 0 {
			return nil, &SubstitutionError{Drv: g.print(g.drvPath), Err: errors.Join(failed...)}
		}
	}
	return g.build(ctx)
}

// build hands over to the derivation's build goal, shared by every
// derivation goal of this derivation, whatever outputs they want.
func (g *derivationGoal) build(ctx context.Context) (map[string]storepath.Path, error) {
	if err := g.w.build(ctx, g.drvPath, g.drv); err != nil {
		return nil, err
	}
	missing, err := g.w.invalid(g.outputs, g.wanted)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("building %s left %s invalid", g.print(g.drvPath), g.print(missing[0]))
	}
	return g.outputs, nil
}

// invalid returns the paths of the outputs ids (of outputs) that are not
// valid, in the order of ids.
func (w *Worker) invalid(outputs map[string]storepath.Path, ids []string) ([]storepath.Path, error) {
	ps := make([]storepath.Path, len(ids))
	for i, id := range ids {
		ps[i] = outputs[id]
	}
	return w.invalidPaths(ps)
}

// wantedKey names a derivation goal: the .drv and the sorted output ids
// it wants ("*" for all).
func wantedKey(drv storepath.Path, wanted []string) string {
	if len(wanted) == 0 {
		return "drv:" + drv.Base() + "!*"
	}
	ids := slices.Clone(wanted)
	slices.Sort(ids)
	return "drv:" + drv.Base() + "!" + strings.Join(slices.Compact(ids), ",")
}

// SubstitutionError is a derivation whose wanted outputs a cache has but
// could not deliver; Options.Fallback builds it instead.
type SubstitutionError struct {
	Drv string // the .drv path
	Err error  // why each substitution failed
}

func (e *SubstitutionError) Error() string {
	return fmt.Sprintf("substituting the outputs of %s failed (--fallback builds it instead): %v", e.Drv, e.Err)
}

func (e *SubstitutionError) Unwrap() error { return e.Err }
