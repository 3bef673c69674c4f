// Package fusefs serves the store dir through FUSE (go-fuse v2): valid
// paths are served from the backing directory, and a lookup of a path that
// is not valid yet but can be realised blocks until the goal engine has
// made it valid.
//
// # The root
//
// The root directory holds exactly the valid paths: Readdir lists them,
// and Lookup of `<hash>-<name>`
//   - serves it when it is valid;
//   - otherwise asks the Realiser (goals.Worker.Realise) and waits: an
//     output of a known derivation is built, a path a substituter has is
//     fetched, and the lookup returns once the path is registered;
//   - answers ENOENT for a name that is not a store path, or that nothing
//     can realise, and remembers that for NegativeTTL (in the kernel, as a
//     negative dentry, and here).
//
// # Error handling
//
// At the FUSE boundary only an errno goes back; the detail goes to the log
// and to Status (toErrno in errno.go is the one translation). A failed
// realisation is EIO; the engine remembers the failure, so a repeated
// lookup within the failure TTL fails fast.
//
// # Kernel caching
//
// Valid paths never change, so entries and attributes under them are
// cached for EntryTimeout (long), file contents are kept in the page cache
// (FOPEN_KEEP_CACHE) and directory listings are cached (FOPEN_CACHE_DIR).
// File reads use FUSE passthrough where the kernel supports it (6.9+):
// reads go to the backing file without a round trip through this process.
// The root alone changes (paths become valid, or are deleted by GC): its
// attributes are not cached, and its listing is not kept.
//
// # Interrupts
//
// Each FUSE request runs in its own goroutine, so a blocked lookup never
// holds up others. When the process blocked in a lookup is interrupted
// (Ctrl-C), go-fuse cancels the request's context: the lookup returns
// EINTR at once, and the goal goes on while any other requester waits
// (goals, invariant 2).
//
// # Deadlocks
//
//  1. A builder that read its inputs through this mount could wait on a
//     lookup that waits on its own build. Builders never do: the sandbox
//     bind-mounts inputs from the backing directory.
//  2. A mount with SingleThreaded would serialise lookups behind a build.
//     Never set it.
//  3. Entry timeouts of 0 make the kernel repeat a lookup that is still
//     running; timeouts are always positive.
//  4. /proc/sys/fs/fuse/default_request_timeout > 0 makes the kernel abort
//     the whole connection when one request outlives it, and a build is one
//     long lookup. Mount checks it and warns.
package fusefs
