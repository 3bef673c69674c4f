package goals

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"storefs/store"
	"storefs/store/storepath"
)

// Options tune a Worker.
type Options struct {
	MaxJobs             int           // build slots; 0: no local builds (Nix's max-jobs 0)
	MaxSubstitutionJobs int           // substitutions at once, and cache queries at once; 0 means 16
	FailureTTL          time.Duration // how long a failure makes requests fail fast; 0 or less: not at all (failures are still recorded)
	Observer            Observer      // progress; may be nil
	Request                           // what a request asks unless it says otherwise (WithRequest)
}

// Observer hears about goals as they run. Calls may come from many
// goroutines at once.
type Observer interface {
	Event(Event)
}

// EventKind says what happened.
type EventKind int

// The events.
const (
	BuildStarted EventKind = iota
	BuildFinished
	BuildFailed
	SubstitutionStarted
	SubstitutionFinished
	SubstitutionFailed
)

// Event is one step of a goal.
type Event struct {
	Kind EventKind
	Path storepath.Path // the .drv of a build, the path of a substitution
	Err  error          // for failures
}

// Worker runs goals. It is safe for concurrent use; the mount and the
// command line call the same Realise.
type Worker struct {
	store   *store.Store
	builder Builder
	subst   Substituter // nil: no substitution
	opts    Options

	buildSlots chan struct{}
	substSlots chan struct{} // fetches from caches
	querySlots chan struct{} // narinfo queries

	mu    sync.Mutex       // guards goals
	goals map[string]*goal // goal key (see want) -> the running goal

	// onWant, if set (by tests), hears each request of a goal: started
	// says whether it started the goal or joined a running one.
	onWant func(key string, started bool)

	running sync.WaitGroup // one count per goal goroutine, for Wait
}

// New makes a Worker over s. subst may be nil.
func New(s *store.Store, b Builder, subst Substituter, opts Options) *Worker {
	opts.MaxJobs = max(opts.MaxJobs, 0)
	if opts.MaxSubstitutionJobs <= 0 {
		opts.MaxSubstitutionJobs = 16
	}
	return &Worker{
		store: s, builder: b, subst: subst, opts: opts,
		buildSlots: make(chan struct{}, opts.MaxJobs),
		substSlots: make(chan struct{}, opts.MaxSubstitutionJobs),
		querySlots: make(chan struct{}, opts.MaxSubstitutionJobs),
		goals:      map[string]*goal{},
	}
}

// Store is the store the worker realises into.
func (w *Worker) Store() *store.Store { return w.store }

func (w *Worker) event(e Event) {
	if w.opts.Observer != nil {
		w.opts.Observer.Event(e)
	}
}

// goal is one running goal: its result, and who still wants it.
type goal struct {
	done    chan struct{} // closed when the goal has finished
	outputs map[string]storepath.Path
	err     error

	refs   int // requesters still waiting; guarded by Worker.mu
	cancel context.CancelCauseFunc
}

// want runs the goal named key (starting it with run unless it is running)
// and waits for its result or for ctx to end. Keys are
//
//	drv:<drv base>!<wanted ids, sorted, or *>  a derivationGoal
//	build:<drv base>                          a buildGoal
//	sub:<path base>                           a substitution goal
func (w *Worker) want(ctx context.Context, key string, run func(ctx context.Context) (map[string]storepath.Path, error)) (map[string]storepath.Path, error) {
	if ctx.Err() != nil {
		return nil, stopped(ctx) // a goal nobody waits for would start and stop at once
	}
	w.mu.Lock()
	g := w.goals[key]
	started := g == nil
	if started {
		// The goal outlives any one requester, but runs with the
		// starter's request.
		gctx, cancel := context.WithCancelCause(WithRequest(context.Background(), w.request(ctx)))
		g = &goal{done: make(chan struct{}), cancel: cancel}
		w.goals[key] = g
		w.running.Add(1)
		go func() {
			defer w.running.Done()
			outs, err := run(gctx)
			w.mu.Lock()
			g.outputs, g.err = outs, err
			if w.goals[key] == g {
				delete(w.goals, key)
			}
			w.mu.Unlock()
			cancel(nil)
			close(g.done)
		}()
	}
	g.refs++
	w.mu.Unlock()
	if w.onWant != nil {
		w.onWant(key, started)
	}

	select {
	case <-g.done:
		w.release(key, g)
		return g.outputs, g.err
	case <-ctx.Done():
		w.release(key, g)
		return nil, stopped(ctx)
	}
}

// ErrNoRequester is why a goal stops when everyone who wanted it has
// given up (errors.Is context.Canceled).
var ErrNoRequester = fmt.Errorf("nobody wants it any more: %w", context.Canceled)

// stopped is why a requester gave up: the context's error (errors.Is
// context.Canceled or DeadlineExceeded), saying its cause if it has one,
// e.g. "interrupt signal received".
func stopped(ctx context.Context) error {
	err := ctx.Err()
	cause := context.Cause(ctx)
	switch {
	case cause == nil || cause == err:
		return err
	case errors.Is(cause, err):
		return cause
	}
	return fmt.Errorf("%v: %w", cause, err)
}

// release drops one requester; the last one out cancels the goal and takes
// it out of the map, so a later request starts a fresh goal.
func (w *Worker) release(key string, g *goal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g.refs--
	if g.refs == 0 {
		if w.goals[key] == g {
			delete(w.goals, key)
		}
		g.cancel(ErrNoRequester)
	}
}

// Wait returns when every goal has finished. A requester that gives up
// (its context ends) returns at once, while the goal it leaves behind is
// still killing its builder; a command calls Wait before it exits, so that
// no builder outlives it and no scratch space is left behind.
func (w *Worker) Wait() { w.running.Wait() }

// Running returns the keys of the goals running now, for status reports.
func (w *Worker) Running() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.goals))
	for k := range w.goals {
		out = append(out, k)
	}
	return out
}

// Realise makes p valid: at once if it is; by the derivation that
// produces it, if the store knows one (substituting that output first,
// building only if no cache has it); by substitution otherwise. It returns
// an error wrapping ErrUnknownPath when none of these can be tried.
func (w *Worker) Realise(ctx context.Context, p storepath.Path) error {
	if ok, err := w.store.IsValid(p); err != nil || ok {
		return err
	}
	derivers, err := w.store.Derivers(p)
	if err != nil {
		return err
	}
	if len(derivers) > 0 {
		var errs []error
		for _, d := range derivers {
			_, err := w.BuildDerivation(ctx, d.Drv, d.ID)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if w.substituter(ctx) == nil {
		return fmt.Errorf("%s: %w", w.store.Print(p), ErrUnknownPath)
	}
	err = w.substitute(ctx, p)
	if errors.Is(err, ErrNoSubstitute) {
		return fmt.Errorf("%s: %w", w.store.Print(p), ErrUnknownPath)
	}
	return err
}

// BuildDerivation makes the wanted outputs of the derivation at drv valid
// (every output when none is named), by substitution or by building it,
// and returns all of its outputs by id. Only the wanted ones are valid
// then.
func (w *Worker) BuildDerivation(ctx context.Context, drv storepath.Path, wanted ...string) (map[string]storepath.Path, error) {
	return w.want(ctx, wantedKey(drv, wanted), func(ctx context.Context) (map[string]storepath.Path, error) {
		g := &derivationGoal{w: w, drvPath: drv, wanted: wanted}
		return g.init(ctx)
	})
}

// substitute runs the substitution goal of p.
func (w *Worker) substitute(ctx context.Context, p storepath.Path) error {
	_, err := w.want(ctx, "sub:"+p.Base(), func(ctx context.Context) (map[string]storepath.Path, error) {
		return nil, w.runSubstitutionGoal(ctx, p)
	})
	return err
}

// acquire takes a slot from sem, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitAll runs fn for each item concurrently. Without keepGoing it returns
// at the first failure, cancelling the others (they stop unless someone
// else wants them); with it, it waits for all and returns every failure.
func waitAll[T any](ctx context.Context, keepGoing bool, items []T, fn func(context.Context, T) error) []error {
	if len(items) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(items))
	for _, it := range items {
		go func() { errc <- fn(ctx, it) }()
	}
	var errs []error
	for range items {
		if err := <-errc; err != nil {
			errs = append(errs, err)
			if !keepGoing {
				return errs
			}
		}
	}
	return errs
}
