// Package goals is the build engine: Nix's worker and goals, in Go. A
// request to make a path valid becomes a goal; goals wait on goals; a
// finished goal wakes everything waiting on it.
//
// # Goals
//
//   - A derivationGoal (derivation_goal.go) makes the wanted outputs of a
//     derivation valid (drv!out, or the one output a lookup names; all of
//     them when none is named): load the derivation (substituting the .drv
//     if need be); wanted outputs valid already -> done; a failure
//     remembered within the failure TTL -> fail fast; substitute the
//     wanted outputs; if a cache lacks one, hand over to the build goal.
//     A cache that has an output but cannot deliver it (a corrupt NAR, a
//     refused signature, a network error) is a SubstitutionError unless
//     Options.Fallback is set, as in Nix.
//   - A buildGoal (build_goal.go) builds every output of one derivation,
//     for all the derivation goals that need it: refuse what this machine
//     cannot build (BuildChecker: another system, missing features;
//     MaxJobs 0: no local builds) before anything is built for it; take
//     temporary roots for the .drv, its outputs and its inputs; realise
//     the wanted outputs of the input derivations and the input sources;
//     take a build slot and the outputs' locks; check validity again
//     ("someone beat us to it"); build; register.
//   - A substitution goal (substitution_goal.go) makes one path valid from a
//     binary cache: query, its references first, then the path itself.
//
// Each goal is a chain of named states (methods), run in the goal's own
// goroutine.
//
// # Invariants
//
//  1. One goal per path at a time in a Worker: the map Worker.goals, guarded
//     by Worker.mu, is the only way to start one (keys in want), so ten
//     requests for a path make one goal, one build, and every requester
//     gets the one result. Across
//     processes the store's path locks give the same: a goal takes its
//     outputs' locks, then checks validity again, and for a failure that
//     another process remembered meanwhile, before building.
//  2. A goal runs while someone wants it. Each requester holds a reference;
//     when a requester's context ends it lets go (returning at once), and
//     when the last one has gone the goal's context is cancelled (killing
//     its builder) and the goal leaves the map at once, so a new request
//     starts afresh. Worker.Wait returns once every goal has wound down: a
//     command calls it before exiting, so no builder outlives it.
//  3. No more than MaxJobs builders run at once (build slots), no more
//     than MaxSubstitutionJobs fetches from caches, and no more than that
//     many narinfo queries (query slots). A build slot is given back
//     when the builder's last process is gone (BuildOptions.BuilderDone),
//     so the next builder runs while the outputs are hashed and
//     registered; the output locks are held until they are valid.
//  4. A failed build (a *BuildError: the builder ran, or its outputs were
//     refused) is remembered in the store (failures bucket) with its reason
//     and status, so requests within FailureTTL fail fast with the same
//     message and exit status; ClearFailures forgets. Cancellations, setup
//     errors, "cannot build here" and the machine's failures (out of space
//     or memory: the Builder returns them as plain errors, never as
//     *BuildError) are not remembered. A goal that fails
//     because an input failed says which (DependencyError).
//  5. Exit statuses are Nix's (errors.go): 100 the builder failed, 101 timed
//     out, 102 hash mismatch, or'ed across failures; 1 when no failure is a
//     build failure (outputs refused, a log past max-build-log-size, bad
//     input).
//
// # Requests
//
// What a requester asks (keep-going, fallback, timeouts, cores, no
// substitutes, no local builds, its own substituter) is a Request carried
// by its context (WithRequest); Options.Request is the default. A goal
// takes the Request of the requester that starts it and passes it to the
// goals it starts; a requester that joins a running goal shares its
// result. So two daemon clients, or a `storefs realise` and the mount, ask
// with their own options of one worker, one set of slots and one goal per
// path. A lookup through the mount also carries its caller's uid
// (WithCaller, Request.Caller, CallerOf), by which a substituter bounds
// the cache queries one user causes.
//
// # Lock order
//
// Worker.mu is never held while waiting for anything else. A build goal
// takes its temporary roots (the store's gc lock, shared, for a moment)
// before it waits for inputs, a build slot before the store's path locks,
// and its outputs' locks all at once, in the store's order
// (store/lock.go). A substitution goal holds a query slot only while it
// queries, and a substitution slot before the path's lock.
//
// # Temporary roots
//
// A build goal names its .drv, outputs and inputs as temporary roots of
// the store before it checks they are valid, and holds them until it has
// ended, so a garbage collection during the build keeps the input closure
// (the collector keeps the closure of every root). An input a collection
// took between its goal and the rooting is realised again.
//
// # Seams
//
// goals defines what it needs from the outside, Builder (optionally a
// BuildChecker) and Substituter (interfaces.go); realise/ implements them
// and cmd/storefs wires them in. Tests inject fakes through the same seams.
package goals
