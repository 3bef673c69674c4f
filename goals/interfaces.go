package goals

import (
	"context"
	"errors"
	"time"

	"storefs/store/derivation"
	"storefs/store/storepath"
)

// Builder runs one derivation's builder and registers its outputs.
type Builder interface {
	// Build builds the derivation d stored at drv, all of whose inputs are
	// valid, and registers every output, with drv as deriver, before it
	// returns nil. The caller holds a build slot and the outputs' locks.
	// A failure of the build itself is a *BuildError, and only that: a
	// failure that may not happen again (the sandbox could not be made, the
	// disk was full) is a plain error, which is not remembered. ctx ending
	// kills the builder's whole process tree before Build returns.
	Build(ctx context.Context, drv storepath.Path, d *derivation.Derivation, opts BuildOptions) error
}

// BuildChecker is a Builder that can tell beforehand that it cannot build
// a derivation at all. A build goal asks it before it realises the
// inputs, so that nothing is built in vain.
type BuildChecker interface {
	// CanBuild says why d cannot be built here (another system, missing
	// system features), or nil. The error is not a build failure and is
	// not remembered.
	CanBuild(drv storepath.Path, d *derivation.Derivation) error
}

// BuildOptions are the limits a build runs under.
type BuildOptions struct {
	Cores     int           // NIX_BUILD_CORES
	Timeout   time.Duration // 0: none
	MaxSilent time.Duration // 0: none
	// BuilderDone, if set, is called once the builder's last process is
	// gone, before the outputs are checked and registered: the goal gives
	// its build slot back then, so that the next builder runs while this
	// one's outputs are hashed and synced to disk. Calling it more than
	// once is harmless.
	BuilderDone func()
}

// Substituter fetches paths from binary caches.
type Substituter interface {
	// Query says whether some cache has p, and what p refers to. It returns
	// an error wrapping ErrNoSubstitute when none has it.
	Query(ctx context.Context, p storepath.Path) (*Substitute, error)
	// Fetch downloads, verifies and registers p, whose references are all
	// valid. The caller holds p's lock.
	Fetch(ctx context.Context, p storepath.Path, sub *Substitute) error
}

// Substitute is what a cache knows of a path.
type Substitute struct {
	References []storepath.Path
	Deriver    storepath.Path
	NarSize    uint64
	// Source is the substituter's own record (a narinfo and its cache).
	Source any
}

// ErrNoSubstitute says no substituter has a path.
var ErrNoSubstitute = errors.New("no substituter has it")

// ErrIncompleteClosure says a cache has a path but no cache has one of its
// references. A derivation goal builds then, as when no cache has the
// output (Nix counts it so too).
var ErrIncompleteClosure = errors.New("incomplete closure in the binary caches")

// ErrUnknownPath says a path is not valid, no known derivation produces it
// and no substituter has it.
var ErrUnknownPath = errors.New("not valid, not an output of a known derivation, and no substituter has it")
