package main

import "golang.org/x/sys/unix"

// sysChmod is chmod(2), which newer architectures do not have.
const sysChmod = unix.SYS_CHMOD
