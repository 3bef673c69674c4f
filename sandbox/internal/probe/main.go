// Command probe tries, inside a sandbox, the system calls that busybox
// cannot make, and prints one line per call: its name and the error
// ("ok" for none). Tests in package sandbox build it statically and run it
// as a builder.
//
//	probe PATH   try setxattr, lsetxattr, fsetxattr and setxattrat, then
//	             chmod, fchmod, fchmodat and fchmodat2 to 04755 and 0755 on
//	             PATH (a file), then io_uring_setup, socket(AF_UNIX),
//	             socketpair(AF_UNIX) of streams and of datagrams, and
//	             socket(AF_INET)
//	probe fork N PROG
//	             start PROG sleep 30 (busybox) N times, as fast as it can,
//	             and print "forked K of N" when done or when a start fails;
//	             the children die with the build
package main

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "fork" {
		forkMany(os.Args[2], os.Args[3])
		return
	}
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
	report("setxattrat", setxattrat(path))
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
	report("io_uring_setup", ioURingSetup())
	report("socket AF_UNIX", socket(func() (int, error) { return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0) }))
	report("socketpair AF_UNIX", socket(func() (int, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fds[1])
		}
		return fds[0], err
	}))
	report("socketpair AF_UNIX dgram", socket(func() (int, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			unix.Close(fds[1])
		}
		return fds[0], err
	}))
	report("socket AF_INET", socket(func() (int, error) { return unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0) }))
}

// setxattrat sets user.probe on path through setxattrat(2) (Linux 6.13).
func setxattrat(path string) error {
	p, _ := unix.BytePtrFromString(path)
	name, _ := unix.BytePtrFromString("user.probe")
	val := []byte("x")
	// struct xattr_args { __aligned_u64 value; __u32 size; __u32 flags; }
	args := struct {
		value       uint64
		size, flags uint32
	}{uint64(uintptr(unsafe.Pointer(&val[0]))), 1, 0}
	cwd := unix.AT_FDCWD
	_, _, e := unix.Syscall6(unix.SYS_SETXATTRAT, uintptr(cwd), uintptr(unsafe.Pointer(p)), 0,
		uintptr(unsafe.Pointer(name)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if e != 0 {
		return e
	}
	return nil
}

// ioURingSetup asks for an io_uring of one entry.
func ioURingSetup() error {
	var params [120]byte // struct io_uring_params, zeroed
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	return nil
}

func socket(make func() (int, error)) error {
	fd, err := make()
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// forkMany starts prog as "sleep 30" n times and says how many started.
func forkMany(count, prog string) {
	n, _ := strconv.Atoi(count)
	k := 0
	var err error
	for ; k < n; k++ {
		var p *os.Process
		if p, err = os.StartProcess(prog, []string{"sleep", "30"}, &os.ProcAttr{}); err != nil {
			break
		}
		p.Release()
	}
	fmt.Printf("forked %d of %d (%v)\n", k, n, err)
}
