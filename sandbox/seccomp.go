package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter is Nix's (local-derivation-goal.cc, setupSeccomp) and
// more. Nix's rules: a builder may not make setuid or setgid files (chmod
// and friends fail with EPERM) nor set extended attributes (ENOTSUP), so
// that what it leaves in the store is the same on every machine. Ours
// besides:
//
//   - setxattrat (Linux 6.13) is refused as setxattr is: it is another
//     way to the same attribute.
//   - io_uring_setup, io_uring_enter and io_uring_register fail with
//     ENOSYS (what a kernel without io_uring says, so programs fall back):
//     an io_uring runs operations (setxattr, socket, openat...) in the
//     kernel without the system calls this filter sees.
//   - In a build with the host's network (fixed-output), socket(AF_UNIX,
//     ...) and socketpair(AF_UNIX, SOCK_DGRAM, ...) fail with EPERM, and so
//     do socketcall(SYS_SOCKET, ...) and socketcall(SYS_SOCKETPAIR, ...) of
//     the i386 ABI, whose arguments the filter cannot read (32-bit
//     fixed-output builders that create sockets through socketcall have
//     none). A datagram socket from socketpair would do as well as one from
//     socket: connect(AF_UNSPEC) dissolves its pair, and it can then be
//     bound to an abstract name and receive from anyone, or send to any
//     named socket. Such a
//     build shares the host's abstract unix socket namespace, which belongs
//     to the network namespace: without the rule two fixed-output builds
//     running at once (or a build and any local user) could pass file
//     descriptors to each other (SCM_RIGHTS), and one could rewrite the
//     other's output after it was checked (the CVE-2024-27297 class). The
//     builder can still reach the network (AF_INET, AF_INET6), and
//     socketpair(AF_UNIX, SOCK_STREAM or SOCK_SEQPACKET, ...), whose two
//     ends stay connected to each other for good, still works.
//     Why not a network namespace of its own with a route out instead:
//     docs/design.md, "Fixed-output builds".

// syscallTable names the numbers of the filtered system calls of one ABI;
// -1 is a call the ABI does not have.
type syscallTable struct {
	arch                                       uint32
	chmod, fchmod, fchmodat, fchmodat2         int32
	setxattr, lsetxattr, fsetxattr, setxattrat int32
	socket, socketpair, socketcall             int32
	ioURing                                    [3]int32 // io_uring_setup, io_uring_enter, io_uring_register
	onlyBelow                                  uint32   // numbers at or above fail with ENOSYS (x32 on amd64); 0: none
}

// filterOptions are the rules that depend on the build.
type filterOptions struct {
	// noUnixSockets refuses to create AF_UNIX sockets (builds that share
	// the host's network namespace).
	noUnixSockets bool
}

const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16 // 8 bytes each; the low 32 bits come first (little endian)
	modeSetid       = unix.S_ISUID | unix.S_ISGID
	socketcallSock  = 1 // SYS_SOCKET, socketcall's first argument for socket(2)
	socketcallPair  = 8 // SYS_SOCKETPAIR
	sockTypeMask    = 0xf
)

func bpfStmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func bpfJump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retErrno  = unix.SECCOMP_RET_ERRNO
	ldAbs     = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeq       = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jge       = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	jset      = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	andK      = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	ret       = unix.BPF_RET | unix.BPF_K
	errEPERM  = retErrno | uint32(unix.EPERM)
	errENOTSP = retErrno | uint32(unix.ENOTSUP)
	errENOSYS = retErrno | uint32(unix.ENOSYS)
)

// block is the filter of one ABI; it expects the syscall number's arch in
// the accumulator and falls through when the arch is another.
func (t syscallTable) block(opts filterOptions) []unix.SockFilter {
	var body []unix.SockFilter
	body = append(body, bpfStmt(ldAbs, seccompDataNr))
	if t.onlyBelow != 0 {
		body = append(body, bpfJump(jge, t.onlyBelow, 0, 1), bpfStmt(ret, errENOSYS))
	}
	// argIs refuses call nr with errno when its argument arg has a bit of
	// mask set (jset) or equals value (jeq), and allows it otherwise.
	argIs := func(nr int32, arg uint32, op uint16, k uint32, errno uint32) {
		if nr < 0 {
			return
		}
		body = append(body,
			bpfJump(jeq, uint32(nr), 0, 4),
			bpfStmt(ldAbs, seccompDataArgs+8*arg),
			bpfJump(op, k, 0, 1),
			bpfStmt(ret, errno),
			bpfStmt(ret, retAllow))
	}
	argIs(t.chmod, 1, jset, modeSetid, errEPERM)
	argIs(t.fchmod, 1, jset, modeSetid, errEPERM)
	argIs(t.fchmodat, 2, jset, modeSetid, errEPERM)
	argIs(t.fchmodat2, 2, jset, modeSetid, errEPERM)
	if opts.noUnixSockets {
		argIs(t.socket, 0, jeq, unix.AF_UNIX, errEPERM)
		if t.socketcall >= 0 {
			body = append(body,
				bpfJump(jeq, uint32(t.socketcall), 0, 5),
				bpfStmt(ldAbs, seccompDataArgs),
				bpfJump(jeq, socketcallSock, 2, 0),
				bpfJump(jeq, socketcallPair, 1, 0),
				bpfStmt(ret, retAllow),
				bpfStmt(ret, errEPERM))
		}
		// socketpair(AF_UNIX, SOCK_DGRAM, ...): such a socket, freed from
		// its pair by connect(AF_UNSPEC), can be bound to a name and
		// receive from anyone, or send to any named socket. Stream and
		// seqpacket pairs stay connected to each other for good.
		if t.socketpair >= 0 {
			body = append(body,
				bpfJump(jeq, uint32(t.socketpair), 0, 7),
				bpfStmt(ldAbs, seccompDataArgs),
				bpfJump(jeq, unix.AF_UNIX, 0, 4),
				bpfStmt(ldAbs, seccompDataArgs+8),
				bpfStmt(andK, sockTypeMask),
				bpfJump(jeq, unix.SOCK_DGRAM, 0, 1),
				bpfStmt(ret, errEPERM),
				bpfStmt(ret, retAllow))
		}
	}
	refuse := func(errno uint32, nrs ...int32) {
		for _, nr := range nrs {
			if nr >= 0 {
				body = append(body, bpfJump(jeq, uint32(nr), 0, 1), bpfStmt(ret, errno))
			}
		}
	}
	refuse(errENOTSP, t.setxattr, t.lsetxattr, t.fsetxattr, t.setxattrat)
	refuse(errENOSYS, t.ioURing[:]...)
	body = append(body, bpfStmt(ret, retAllow))
	return append([]unix.SockFilter{bpfJump(jeq, t.arch, 0, uint8(len(body)))}, body...)
}

// seccompFilter is the whole program: the ABIs of this architecture, and
// ENOSYS for any other (it could bypass the rules with its own numbers).
func seccompFilter(opts filterOptions) []unix.SockFilter {
	prog := []unix.SockFilter{bpfStmt(ldAbs, seccompDataArch)}
	for _, t := range syscallTables {
		prog = append(prog, t.block(opts)...)
	}
	return append(prog, bpfStmt(ret, errENOSYS))
}

// installSeccomp loads the filter on this thread (no_new_privs is set).
func installSeccomp(opts filterOptions) error {
	if len(syscallTables) == 0 {
		return fmt.Errorf("no system call numbers for %s", runtime.GOARCH)
	}
	prog := seccompFilter(opts)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
}
