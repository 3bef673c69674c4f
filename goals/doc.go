// Package goals is the build engine: Nix's worker and goals, in Go. A
// request to make a path valid becomes a goal; goals wait on goals; a
// finished goal wakes everything waiting on it.
//
// # Goals
//
//   - A DerivationGoal (derivation_goal.go) makes a derivation's outputs
//     valid: load the derivation; outputs valid already -> done; a failure
//     remembered within the failure TTL -> fail fast; try to substitute the
//     outputs; realise the input derivations and input sources; take a build
//     slot and the outputs' locks; check validity again ("someone beat us to
//     it"); build; register.
//   - A SubstitutionGoal (substitution_goal.go) makes one path valid from a
//     binary cache: its references first, then the path itself.
//
// Each goal is a chain of named states (methods), run in the goal's own
// goroutine.
//
// # Invariants
//
//  1. One goal per path at a time in a Worker: the map Worker.goals, guarded
//     by Worker.mu, is the only way to start one, so ten requests for a
//     path make one build and every requester gets the one result. Across
//     processes the store's path locks give the same: a goal takes its
//     outputs' locks, then checks validity again before building.
//  2. A goal runs while someone wants it. Each requester holds a reference;
//     when a requester's context ends it lets go, and when the last one has
//     gone the goal's context is cancelled (killing its builder) and the goal
//     leaves the map at once, so a new request starts afresh.
//  3. No more than MaxJobs builders run at once (build slots), and no more
//     than MaxSubstitutionJobs substitutions.
//  4. A failed build is remembered in the store (failures bucket) with its
//     reason and status, so requests within FailureTTL fail fast;
//     ClearFailures forgets. A goal that fails because an input failed says
//     which.
//
// # Lock order
//
// Worker.mu is never held while waiting for anything else. A goal takes a
// build slot before the store's path locks, and path locks in sorted order.
//
// # Seams
//
// goals defines what it needs from the outside, Builder and Substituter
// (interfaces.go); realise/ implements them and cmd/storefs wires them in.
// Tests inject fakes through the same seams.
package goals
