package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter is Nix's (local-derivation-goal.cc, setupSeccomp): a
// builder may not make setuid or setgid files (chmod and friends fail with
// EPERM) nor set extended attributes (ENOTSUP), so that what it leaves in
// the store is the same on every machine.

// syscallTable names the numbers of the filtered system calls of one ABI;
// -1 is a call the ABI does not have.
type syscallTable struct {
	arch                               uint32
	chmod, fchmod, fchmodat, fchmodat2 int32
	setxattr, lsetxattr, fsetxattr     int32
	onlyBelow                          uint32 // numbers at or above fail with ENOSYS (x32 on amd64); 0: none
}

const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16 // 8 bytes each; the low 32 bits come first (little endian)
	modeSetid       = unix.S_ISUID | unix.S_ISGID
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
	ret       = unix.BPF_RET | unix.BPF_K
	errEPERM  = retErrno | uint32(unix.EPERM)
	errENOTSP = retErrno | uint32(unix.ENOTSUP)
	errENOSYS = retErrno | uint32(unix.ENOSYS)
)

// block is the filter of one ABI; it expects the syscall number's arch in
// the accumulator and falls through when the arch is another.
func (t syscallTable) block() []unix.SockFilter {
	var body []unix.SockFilter
	body = append(body, bpfStmt(ldAbs, seccompDataNr))
	if t.onlyBelow != 0 {
		body = append(body, bpfJump(jge, t.onlyBelow, 0, 1), bpfStmt(ret, errENOSYS))
	}
	mode := func(nr int32, arg uint32) {
		if nr < 0 {
			return
		}
		body = append(body,
			bpfJump(jeq, uint32(nr), 0, 4),
			bpfStmt(ldAbs, seccompDataArgs+8*arg),
			bpfJump(jset, modeSetid, 0, 1),
			bpfStmt(ret, errEPERM),
			bpfStmt(ret, retAllow))
	}
	mode(t.chmod, 1)
	mode(t.fchmod, 1)
	mode(t.fchmodat, 2)
	mode(t.fchmodat2, 2)
	for _, nr := range []int32{t.setxattr, t.lsetxattr, t.fsetxattr} {
		if nr >= 0 {
			body = append(body, bpfJump(jeq, uint32(nr), 0, 1), bpfStmt(ret, errENOTSP))
		}
	}
	body = append(body, bpfStmt(ret, retAllow))
	return append([]unix.SockFilter{bpfJump(jeq, t.arch, 0, uint8(len(body)))}, body...)
}

// seccompFilter is the whole program: the ABIs of this architecture, and
// ENOSYS for any other (it could bypass the rules with its own numbers).
func seccompFilter() []unix.SockFilter {
	prog := []unix.SockFilter{bpfStmt(ldAbs, seccompDataArch)}
	for _, t := range syscallTables {
		prog = append(prog, t.block()...)
	}
	return append(prog, bpfStmt(ret, errENOSYS))
}

// installSeccomp loads the filter on this thread (no_new_privs is set).
func installSeccomp() error {
	if len(syscallTables) == 0 {
		return fmt.Errorf("no system call numbers for %s", runtime.GOARCH)
	}
	prog := seccompFilter()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
}
