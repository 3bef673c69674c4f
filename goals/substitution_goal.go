package goals

import (
	"context"
	"errors"
	"fmt"

	"storefs/store/storepath"
)

// runSubstitutionGoal makes p valid from a binary cache: query (under a
// query slot), then the references (each its own goal), then p itself
// under a substitution slot and its lock.
func (w *Worker) runSubstitutionGoal(ctx context.Context, p storepath.Path) error {
	if ok, err := w.store.IsValid(p); err != nil || ok {
		return err
	}
	subst := w.substituter(ctx)
	if subst == nil {
		return fmt.Errorf("%s: %w", w.store.Print(p), ErrNoSubstitute)
	}
	if err := acquire(ctx, w.querySlots); err != nil {
		return err
	}
	sub, err := subst.Query(ctx, p)
	<-w.querySlots
	if err != nil {
		return err
	}
	return w.substReferences(ctx, p, subst, sub)
}

// substReferences substitutes every reference of p first.
func (w *Worker) substReferences(ctx context.Context, p storepath.Path, subst Substituter, sub *Substitute) error {
	var refs []storepath.Path
	for _, r := range sub.References {
		if r != p {
			refs = append(refs, r)
		}
	}
	errs := waitAll(ctx, w.request(ctx).KeepGoing, refs, func(ctx context.Context, r storepath.Path) error {
		if err := w.substitute(ctx, r); err != nil {
			if ctx.Err() != nil {
				return err
			}
			if errors.Is(err, ErrNoSubstitute) {
				// No cache has the reference, but one has p: that must
				// not read as "no substituter has p" (ErrUnknownPath).
				err = fmt.Errorf("%w: %v, yet the narinfo of %s names it as a reference", ErrIncompleteClosure, err, w.store.Print(p))
			}
			return depError(w.store.Dir, p, r, err)
		}
		return nil
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return w.fetch(ctx, p, subst, sub)
}

// fetch takes a substitution slot and p's lock and fetches p unless it
// became valid meanwhile.
func (w *Worker) fetch(ctx context.Context, p storepath.Path, subst Substituter, sub *Substitute) error {
	if err := acquire(ctx, w.substSlots); err != nil {
		return err
	}
	defer func() { <-w.substSlots }()
	lock, err := w.store.Lock(ctx, p)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if ok, err := w.store.IsValid(p); err != nil || ok {
		return err
	}
	w.event(Event{Kind: SubstitutionStarted, Path: p})
	if err := subst.Fetch(ctx, p, sub); err != nil {
		w.event(Event{Kind: SubstitutionFailed, Path: p, Err: err})
		return err
	}
	w.event(Event{Kind: SubstitutionFinished, Path: p})
	return nil
}
