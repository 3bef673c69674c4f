package sandbox

import "golang.org/x/sys/unix"

// syscallTables: AArch64 only (it has no chmod nor socketcall); 32-bit ARM
// builders get ENOSYS for every call.
var syscallTables = []syscallTable{
	{arch: unix.AUDIT_ARCH_AARCH64, chmod: -1, fchmod: unix.SYS_FCHMOD,
		fchmodat: unix.SYS_FCHMODAT, fchmodat2: unix.SYS_FCHMODAT2,
		setxattr: unix.SYS_SETXATTR, lsetxattr: unix.SYS_LSETXATTR, fsetxattr: unix.SYS_FSETXATTR, setxattrat: unix.SYS_SETXATTRAT,
		socket: unix.SYS_SOCKET, socketpair: unix.SYS_SOCKETPAIR, socketcall: -1,
		ioURing: [3]int32{unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER}},
}
