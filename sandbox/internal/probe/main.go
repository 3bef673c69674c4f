// Command probe tries, inside a sandbox, the system calls that busybox
// cannot make, and prints one line per call: its name and the error
// ("ok" for none). Tests in package sandbox build it statically and run it
// as a builder.
//
//	probe PATH   try setxattr, lsetxattr, fsetxattr, then chmod, fchmod,
//	             fchmodat and fchmodat2 to 04755 and 0755 on PATH (a file)
package main

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe PATH")
		os.Exit(2)
	}
	path := os.Args[1]
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	fd := int(f.Fd())
	report := func(name string, err error) {
		if err == nil {
			fmt.Println(name, "ok")
		} else {
			fmt.Println(name, unix.ErrnoName(err.(unix.Errno)))
		}
	}
	report("setxattr", unix.Setxattr(path, "user.probe", []byte("x"), 0))
	report("lsetxattr", unix.Lsetxattr(path, "user.probe", []byte("x"), 0))
	report("fsetxattr", unix.Fsetxattr(fd, "user.probe", []byte("x"), 0))
	p, _ := unix.BytePtrFromString(path)
	cwd := unix.AT_FDCWD
	for _, mode := range []uintptr{0o4755, 0o2755, 0o755} {
		calls := []struct {
			name     string
			nr, a, b uintptr
			c        uintptr
		}{
			{"fchmod", unix.SYS_FCHMOD, uintptr(fd), mode, 0},
			{"fchmodat", unix.SYS_FCHMODAT, uintptr(cwd), uintptr(unsafe.Pointer(p)), mode},
			{"fchmodat2", unix.SYS_FCHMODAT2, uintptr(cwd), uintptr(unsafe.Pointer(p)), mode},
		}
		if sysChmod >= 0 {
			calls = append(calls, struct {
				name     string
				nr, a, b uintptr
				c        uintptr
			}{"chmod", uintptr(sysChmod), uintptr(unsafe.Pointer(p)), mode, 0})
		}
		for _, c := range calls {
			var err error
			if _, _, e := unix.Syscall6(c.nr, c.a, c.b, c.c, 0, 0, 0); e != 0 {
				err = e
			}
			report(fmt.Sprintf("%s %o", c.name, mode), err)
		}
	}
}
