package sandbox

import "golang.org/x/sys/unix"

// syscallTables: x86-64, and i386 (int 0x80 from a 32-bit builder, with
// numbers from the kernel's syscall_32.tbl). x32 (numbers with bit 30 set)
// gets ENOSYS rather than a table of its own. Calls added since Linux 5.1
// have one number on every ABI (io_uring 425-427, setxattrat 463).
var syscallTables = []syscallTable{
	{arch: unix.AUDIT_ARCH_X86_64, chmod: unix.SYS_CHMOD, fchmod: unix.SYS_FCHMOD,
		fchmodat: unix.SYS_FCHMODAT, fchmodat2: unix.SYS_FCHMODAT2,
		setxattr: unix.SYS_SETXATTR, lsetxattr: unix.SYS_LSETXATTR, fsetxattr: unix.SYS_FSETXATTR, setxattrat: unix.SYS_SETXATTRAT,
		socket: unix.SYS_SOCKET, socketpair: unix.SYS_SOCKETPAIR, socketcall: -1,
		ioURing:   [3]int32{unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER},
		onlyBelow: 0x40000000},
	{arch: unix.AUDIT_ARCH_I386, chmod: 15, fchmod: 94, fchmodat: 306, fchmodat2: 452,
		setxattr: 226, lsetxattr: 227, fsetxattr: 228, setxattrat: 463,
		socket: 359, socketpair: 360, socketcall: 102,
		ioURing: [3]int32{425, 426, 427}},
}
