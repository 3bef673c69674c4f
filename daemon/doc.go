// Package daemon is the daemon side of Nix's worker protocol 1.34 (0x122),
// as Nix 2.8 speaks it (docs/daemon.md): stock nix-store, nix-instantiate,
// nix-build, nix and nix copy clients use a storefs store through it, with
// NIX_REMOTE=unix://<socket>.
//
// One connection is one Conn: the handshake (magic, version, the version
// string, the first STDERR_LAST), then operations one at a time until the
// client closes. An operation's arguments are read first; then the work
// starts (startWork), during which only log messages (STDERR_NEXT,
// START_ACTIVITY, RESULT, STOP_ACTIVITY) go to the client; then STDERR_LAST
// and the result, or STDERR_ERROR instead of both.
//
// # Invariants
//
//  1. Nothing partial is registered. An upload (AddToStore, AddToStoreNar,
//     AddMultipleToStore) is unpacked into scratch space and checked whole
//     (grammar, NAR hash and size, content address, signatures) before one
//     Register makes it valid; a failure or a vanished client leaves
//     nothing behind but scratch space, which the store removes.
//  2. The stream stays in step or the connection ends. A framed upload is
//     read to its end chunk even when the work fails (Nix's client is
//     still sending); a field that cannot be decoded ends the connection,
//     after STDERR_ERROR when the client can still read it, as Nix does.
//     A failed operation on a well-formed request gets one STDERR_ERROR and
//     the connection goes on.
//  3. One connection's failure (a panic too) never touches another nor the
//     Server: each runs in its own goroutine with its own temporary roots,
//     which end with it.
//  4. Trust comes from the peer's credentials (SO_PEERCRED) only. An
//     untrusted client cannot repair, add signatures, skip signature checks,
//     build input-addressed derivations with BuildDerivation, nor set
//     settings other than the few Nix lets untrusted users set.
//
// # Consumers' interfaces
//
// The engine is Engine, defined here and implemented by *goals.Worker; the
// store is *store.Store.
//
// # Locks
//
// Conn.mu guards the writer and the work state, so that log messages from
// a build's goroutines and the operation's own replies never interleave.
// Server.logMu guards the log subscriptions; a builder's line is only
// queued under it (buildlog.go), and each operation's sink writes to its
// client from a goroutine of its own, taking Conn.mu. Server.mu guards only
// the set of connections. Conn.mu is held while writing to its client, so
// a client that stops reading stalls only its own connection; no lock is
// held while waiting for the store or the engine.
//
// # Cancellation
//
// An operation's work ends when its client hangs up (hangup.go watches the
// socket while nothing reads it), when the Server stops (Serve cancels
// every connection's work before closing them), or, without keep-going,
// when another target of the same request failed. The engine stops a goal
// that no one wants any more.
package daemon
