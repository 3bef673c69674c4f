// Package fusefs serves the store dir through FUSE (go-fuse v2): valid
// paths are served from the backing directory, and a lookup of a path that
// is not valid yet but can be realised blocks until the goal engine has
// made it valid.
//
// # Invariants
//
//  1. Only valid paths are served: the root lists the entries of the
//     backing directory that have a record, and a lookup serves a name only
//     once the store says it is valid (docs/design.md, "Invariants", 2).
//  2. The mount is read-only at every level: the superblock and the mount
//     are read-only (every write call fails with EROFS in the VFS), and
//     Open refuses write flags.
//  3. What is below a valid path never changes, so the kernel may cache it
//     all, for ever: entries, attributes, negative entries, file pages and
//     directory listings. Only the root changes.
//
// # The root
//
// The root directory holds exactly the valid paths. Lookup of
// `<hash>-<name>`
//   - serves it when it is valid;
//   - otherwise asks the Realiser (goals.Worker.Realise) and waits: an
//     output of a known derivation is built, a path a substituter has is
//     fetched, and the lookup returns once the path is registered (the
//     realisation's context carries the looking-up process's uid, through
//     Options.WithCaller, so that the substituter can bound one user's
//     cache queries);
//   - answers ENOENT for a name that is not a store path, or that nothing
//     can realise, and remembers that for NegativeTTL (in the kernel, as a
//     negative dentry, and here).
//
// The kernel keeps the root's listing too (see "Kernel caching and
// speed"); the root's mtime is the database's, so a listing taken after a
// path became valid, through this mount or any other process, shows it
// within NegativeTTL, and at once when a lookup here made it valid.
//
// # Error handling
//
// At the FUSE boundary only an errno goes back; the detail goes to the log
// and to Options.OnFailure (toErrno in errno.go is the one translation). A
// failed realisation is EIO; the engine remembers the failure, so a
// repeated lookup within the failure TTL fails fast. A valid path missing
// from the backing directory is EIO, never ENOENT. The mount has no
// extended attributes: getxattr and listxattr fail with ENOTSUP (the
// kernel stops asking after the first), except that the VFS itself answers
// ENODATA for user.* on a symlink.
//
// # Kernel caching and speed
//
// Entries and attributes are cached for EntryTimeout (an hour). The mount
// is "no-open" and "no-opendir": Open and the first OPENDIR answer ENOSYS,
// after which the kernel opens files and directories without a round trip,
// keeps file pages (FOPEN_KEEP_CACHE) and directory listings
// (FOPEN_CACHE_DIR), and sends READ and READDIR without a handle
// (opendir.go, read.go). Flush answers ENOSYS too, so close costs nothing.
// Measured here (BenchmarkMount, a 2-CPU VM): opening and reading 20,000
// small files warm takes 1.0-1.3x native (go-fuse's plain loopback:
// 14-16x), find 0.6-0.7x native (loopback: 10-13x).
//
// The price is sequential reads of big files: cold, every byte is copied
// once more, into this mount's page cache (60% of the server's time goes
// to that memcpy); warm, that page cache is made of 4 KiB pages (FUSE on
// this 6.18 kernel has no large folios, ext4 has), so a 1 GiB read runs at
// 0.4-0.6 of native speed either way. Options.Passthrough (storefs mount
// --passthrough) trades the other way: every open is a round trip that
// registers the backing file for FUSE passthrough (kernel 6.9+), reads run
// at native speed (1.0), but opening many small files is 10x native.
// Passthrough and no-open cannot be mixed: the kernel turns no-open on for
// the whole connection.
//
// # Interrupts
//
// Each FUSE request runs in its own goroutine, so a blocked lookup never
// holds up others (mount with SingleThreaded never). When the process
// blocked in a lookup is interrupted (Ctrl-C), go-fuse cancels the
// request's context: the lookup returns EINTR at once. Its goal goes on
// while any other requester waits (goals, invariant 2), and for
// InterruptGrace beyond: the kernel lets one lookup of a name run at a
// time, and makes other processes looking up the same name wait for it
// uninterruptibly, then ask again. Within the grace they find the goal
// still running instead of starting it afresh. Such a waiting process
// cannot be interrupted until the lookup it waits behind ends: the
// kernel's limit, not ours.
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
//  5. A lookup holds the root's inode lock shared for as long as it blocks,
//     and the kernel takes it exclusively to drop a cached entry
//     (NotifyEntry, NotifyDelete). A writer waiting for an rwsem stops new
//     readers, so one such notification during a build would make every
//     new lookup in the root wait for the build (TestMountConcurrency
//     caught it). The mount never sends them: negative entries expire
//     after NegativeTTL. Content notifications (NotifyContent), which
//     drop the root's attributes and listing, take no inode lock.
//  6. Unmounting while lookups wait for builds would wait for the builds:
//     Shutdown first makes every pending lookup fail (EIO) and lets the
//     goals stop.
//  7. Left open, the kernel's: a call that creates a name in the store dir
//     (open with O_CREAT, mkdir, mknod, symlink, link) takes the root's
//     lock exclusively before the VFS fails it with EROFS. During a build
//     such a call waits for the build, and new lookups in the root wait
//     behind it (measured: a `touch /store/x` during a 4 s build held up
//     the read of another path for 4 s). Nothing should create names in
//     a read-only store; nothing here can shorten a lookup that builds.
//
// # Lock order
//
// FS.negMu and fdCache.mu are leaves: nothing else is taken while they are
// held. node.listMu is held only while reading one backing directory.
package fusefs
