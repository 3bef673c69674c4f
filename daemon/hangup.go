package daemon

import (
	"context"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// A client that goes away while its build runs (Ctrl-C on nix-build closes
// the socket) must stop wanting it: the engine stops a goal that no one
// wants. Nothing reads the socket while an operation works, so the hang-up
// is watched for with poll(2).

// watchHangup returns a context that ends with ctx or when the peer of nc
// hangs up, and its stop function.
func watchHangup(ctx context.Context, nc net.Conn) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return ctx, cancel // a pipe (tests, stdio): no hang-up to see
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx, cancel
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			hung := false
			raw.Control(func(fd uintptr) {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
				if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
					hung = true
				}
			})
			if hung {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return ctx, func() { cancel(); <-done }
}
