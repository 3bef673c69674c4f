package goals

import (
	"context"
	"time"
)

// Request is what one requester asks of the goals it starts: a client of
// the daemon (its SetOptions), a `storefs realise` through a running
// mount (its flags). Options.Request holds the defaults.
//
// A goal runs with the Request of the requester that started it, and so do
// the goals it starts in turn; a requester that joins a running goal gets
// its result as it is (Nix's daemon, with one worker per client, has no
// such sharing to decide).
type Request struct {
	Cores     int           // NIX_BUILD_CORES; 0 means the number of cores
	KeepGoing bool          // build what can be built; otherwise stop at the first failure
	Timeout   time.Duration // per build; 0: none
	MaxSilent time.Duration // per build; 0: none
	// Fallback builds a derivation whose wanted outputs a cache has but
	// could not deliver (a corrupt NAR, a network error); without it that
	// is an error, as in Nix.
	Fallback bool
	// NoSubstitutes: nothing is fetched from caches (Nix's
	// use-substitutes false).
	NoSubstitutes bool
	// NoLocalBuilds: nothing is built on this machine (max-jobs 0 for this
	// request), whatever the worker's build slots.
	NoLocalBuilds bool
	// Substituter, if set, replaces the worker's (a client's own
	// substituters).
	Substituter Substituter
	// Caller is who asked, when the mount knows it (WithCaller); nil
	// otherwise. A substituter bounds the cache queries one uid causes.
	Caller *Caller
}

// Caller is the process whose lookup through the mount asked for a path.
type Caller struct{ UID uint32 }

type callerKey struct{}

// WithCaller marks requests with ctx as coming from uid (the mount's
// lookups); the goals they start carry it in their Request.Caller.
func WithCaller(ctx context.Context, uid uint32) context.Context {
	return context.WithValue(ctx, callerKey{}, Caller{UID: uid})
}

// CallerOf is the caller of the request or goal that ctx belongs to, if
// known.
func CallerOf(ctx context.Context) (Caller, bool) {
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		return c, true
	}
	if r, ok := ctx.Value(requestKey{}).(Request); ok && r.Caller != nil {
		return *r.Caller, true
	}
	return Caller{}, false
}

type requestKey struct{}

// WithRequest makes the goals that requests with ctx start run with r
// instead of the worker's defaults.
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// request is the Request in ctx, or the worker's defaults.
func (w *Worker) request(ctx context.Context) Request {
	r, ok := ctx.Value(requestKey{}).(Request)
	if !ok {
		r = w.opts.Request
	}
	if c, ok := ctx.Value(callerKey{}).(Caller); ok {
		r.Caller = &c
	}
	return r
}

// substituter is the substituter of ctx's request; nil: none.
func (w *Worker) substituter(ctx context.Context) Substituter {
	r := w.request(ctx)
	switch {
	case r.NoSubstitutes:
		return nil
	case r.Substituter != nil:
		return r.Substituter
	}
	return w.subst
}
