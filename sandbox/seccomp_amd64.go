package sandbox

import "golang.org/x/sys/unix"

// syscallTables: x86-64, and i386 (int 0x80 from a 32-bit builder, with
// numbers from the kernel's syscall_32.tbl). x32 (numbers with bit 30 set)
// gets ENOSYS rather than a table of its own.
var syscallTables = []syscallTable{
	{arch: unix.AUDIT_ARCH_X86_64, chmod: unix.SYS_CHMOD, fchmod: unix.SYS_FCHMOD,
		fchmodat: unix.SYS_FCHMODAT, fchmodat2: unix.SYS_FCHMODAT2,
		setxattr: unix.SYS_SETXATTR, lsetxattr: unix.SYS_LSETXATTR, fsetxattr: unix.SYS_FSETXATTR,
		onlyBelow: 0x40000000},
	{arch: unix.AUDIT_ARCH_I386, chmod: 15, fchmod: 94, fchmodat: 306, fchmodat2: 452,
		setxattr: 226, lsetxattr: 227, fsetxattr: 228},
}
