// Package sandbox runs one builder isolated, as Nix 2.8's sandbox does
// (local-derivation-goal.cc): in new user, mount, pid, network, uts and ipc
// namespaces, in a root that holds exactly its inputs, as uid 1000 and gid
// 100 inside and an unprivileged uid and gid outside. realise/ decides what
// a build gets (the input closure, the environment, the output paths); this
// package provides the mechanism and nothing else, using only the standard
// library and x/sys/unix.
//
// Invariants:
//   - The builder never runs as root on the host: its processes have
//     Spec.HostUID and Spec.HostGID (never 0) as every uid and gid, no
//     supplementary groups, no capabilities in any namespace, no_new_privs,
//     and a seccomp filter; every mount it sees is nosuid.
//   - It sees only its inputs (read-only), /build, the store dir it writes
//     its outputs in, /tmp, a minimal /dev, its own /proc and /etc files.
//   - It has no network but its own loopback unless Spec.Network is set.
//     With Spec.Network it shares the host's network namespace but cannot
//     create unix sockets that can reach another process (seccomp: no
//     socket(AF_UNIX), no datagram socketpair), so it cannot meet another
//     build or a host process through an abstract socket name and pass or
//     receive file descriptors.
//   - Its processes and threads are at most Spec.MaxProcesses at once, and
//     its memory at most Spec.MaxMemory: a cgroup of its own where the host
//     allows one, else RLIMIT_NPROC of its host uid (cgroup.go).
//   - No process of a build outlives Run: the builder is pid 1 of its pid
//     namespace, and when pid 1 ends the kernel kills the whole namespace;
//     Run kills pid 1 for the limits and waits until all of it is gone.
//
// # How a build runs
//
// Go cannot fork without exec, so the sandbox has an init stage: Run
// re-executes the running binary (/proc/self/exe) with argv[0]
// "storefs-sandbox-init", and the package's init function (MaybeRunInit)
// recognises it and runs the stage instead of the program, before main or
// TestMain: any binary that links the package can run builds.
//
//  1. Run checks the Spec and makes the scratch dir (root, store, tmp, the
//     input mount points) on the scratch filesystem, and the skeleton of the
//     root (/etc, /dev, mount points) on a detached tmpfs (fsopen, fsmount),
//     all as host root.
//  2. It starts the init stage with exec.Cmd: CLONE_NEWUSER|NEWNS|NEWPID|
//     NEWUTS|NEWIPC (and NEWNET), uid map 1000 -> HostUID and gid map
//     100 -> HostGID (one id each; setgroups allowed), a new session, SIGKILL
//     as parent death signal, and as ambient capabilities those the stage
//     needs (SYS_ADMIN, NET_ADMIN, SETUID, SETGID, SETPCAP), valid in the
//     new user namespace only.
//     Extra files: fd 3 reports a setup failure, fd 4 carries the config
//     (JSON) and then tells the stage its parent lives, fd 5 is the root.
//     Before it sends the config, Run moves the stage into the build's
//     cgroup, if any (the stage waits for the config before anything).
//  3. The stage, pid 1 of the new pid namespace, makes every mount private,
//     attaches the root tmpfs (move_mount), bind-mounts the store dir,
//     each input (read-only), /build, /tmp and the devices, mounts /dev/shm,
//     a new devpts and a new proc, brings lo up, sets the host name
//     (localhost) and domain name ((none)), pivots into the root
//     (pivot_root(".", ".") then a lazy unmount of the old root) and makes
//     the root read-only.
//  4. It drops the bounding set, the supplementary groups, becomes 1000:100,
//     clears ambient, inheritable, permitted and effective capabilities,
//     sets no_new_privs and the parent death signal again, changes to
//     /build, sets what Nix sets (umask 022, core size 0, no address space
//     randomisation, the 32-bit personality for Spec.Linux32), loads the
//     seccomp filter (Nix's: no setuid or setgid modes, no extended
//     attributes; ours: no io_uring, and with Network no AF_UNIX sockets
//     but stream pairs; seccomp.go) and execs the builder, argv[0] its base name,
//     with exactly Spec.Env. Stdin is /dev/null, stdout and stderr the log
//     pipe. fd 3 is close-on-exec: end of file there without a report means
//     the builder runs.
//  5. Run copies the log to Spec.Log and enforces Timeout (from the start),
//     MaxSilent (from the builder's start or its last output), MaxLogSize
//     (bytes of output, as Nix's max-build-log-size) and the context's
//     cancellation by SIGKILL to pid 1 (through a pidfd).
//  6. When pid 1 is reaped every process of the namespace is gone; Run moves
//     what the builder made at each output path to its host path (rename),
//     removes the scratch dir and returns the Result.
//
// # Files
//
// The builder writes its outputs into the store dir it sees, which is
// scratch/store on the host (mode 1775, group nixbld inside), as in Nix,
// where the chroot's store dir is writable by the build group. It cannot
// be a tmpfs: outputs can be gigabytes. An output need not be a directory;
// an output the builder did not make is absent after Run. The caller then
// checks, canonicalises (setuid bits, times, owners) and registers.
//
// # Errors
//
// A sandbox that could not be made, a builder that could not be executed
// (missing, not executable) or outputs that could not be moved give a
// *SetupError naming the step and its paths, e.g. "sandbox: bind-mounting
// input /var/lib/storefs/store/x at /store/x: permission denied", with the
// errno kept for errors.Is. A builder that ran gives a Result: exit code,
// or killed by a signal, by the timeout, by silence, or by cancellation;
// Result.Err turns it into a *BuildError matching ErrFailed, ErrTimedOut,
// ErrSilent, ErrCancelled or ErrLogLimit.
//
// # Known pitfalls
//
//  1. The init stage's uid is host root, unmapped in its user namespace. It
//     cannot create files on a filesystem mounted in that namespace (their
//     owner would be unmapped: EOVERFLOW), which is why Run makes every file
//     and mount point first, as host root, the root on a tmpfs of its own.
//     It reaches host paths only as their owner (root) or through "other"
//     permission bits: an input below a directory owned by another user with
//     mode 0700 fails to mount with EACCES (keep the state dir owned by
//     root), and it enters the build user's /build (0700) only after
//     becoming that user.
//  2. Capabilities do not survive execve for a non-root uid. Without
//     ambient capabilities the re-executed stage would have none, even in
//     its own user namespace, and could mount nothing. After the stage the
//     builder must have none: the bounding, ambient and inheritable sets
//     are cleared before its exec, not just the uid changed.
//  3. Remounting a bind mount read-only with mount(MS_REMOUNT) in a user
//     namespace fails (EPERM) unless it repeats the locked atime flags of
//     the source; mount_setattr changes only the attributes named.
//  4. A change of uid clears the parent death signal, so the stage sets it
//     again after becoming 1000, then checks on fd 4 that the parent did not
//     die before (Go's own check after SysProcAttr.Pdeathsig does nothing
//     here: under CLONE_NEWPID getppid is 0, and the SIGKILL it then sends
//     itself is ignored by pid 1). The signal follows the thread that
//     started the child: storefs must not end threads (a goroutine that
//     exits while locked with runtime.LockOSThread).
//  5. The builder is pid 1: signals it has no handler for are ignored when
//     they come from inside (kill $$ does nothing), as in Nix; the kernel
//     kills the whole namespace when it exits, so background processes
//     never survive a build, and a process that reparents to it must be
//     reaped by it (shells do).
//  6. A new proc may be mounted in a user namespace only if the host's
//     /proc is fully visible (no mount hides part of it): some container
//     runtimes mask /proc paths, and the sandbox then fails to start with
//     EPERM at "mounting a new proc at /proc".
//  7. Each input costs a mkdir and an rmdir on the scratch filesystem (its
//     mount point lives in the writable store dir); on the disk here that
//     is about 0.2 ms each way, so a closure of 1000 paths adds about 0.3 s.
//     Nix pays the same.
//  8. The credentials, capabilities, no_new_privs and seccomp filter of the
//     stage are set on its one locked thread; execve keeps only that thread.
//  9. exec.Cmd.Env must be an empty slice, not nil (nil inherits the
//     parent's environment, which the stage would then see); the builder's
//     environment travels in the config, never in the stage's own.
package sandbox
