package sandbox

import "golang.org/x/sys/unix"

// syscallTables: AArch64 only (it has no chmod); 32-bit ARM builders get
// ENOSYS for every call.
var syscallTables = []syscallTable{
	{arch: unix.AUDIT_ARCH_AARCH64, chmod: -1, fchmod: unix.SYS_FCHMOD,
		fchmodat: unix.SYS_FCHMODAT, fchmodat2: unix.SYS_FCHMODAT2,
		setxattr: unix.SYS_SETXATTR, lsetxattr: unix.SYS_LSETXATTR, fsetxattr: unix.SYS_FSETXATTR},
}
