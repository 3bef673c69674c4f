package realise

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"storefs/sandbox"
)

// The builder's faults are build failures (remembered); the machine's are
// not.
func TestExecFailureIsTheBuildersOnly(t *testing.T) {
	for _, c := range []struct {
		errno    unix.Errno
		builders bool
	}{
		{unix.ENOENT, true}, {unix.EACCES, true}, {unix.ENOEXEC, true}, {unix.ENOTDIR, true}, {unix.ELOOP, true}, {unix.E2BIG, true},
		{unix.ENOMEM, false}, {unix.EAGAIN, false}, {unix.EMFILE, false}, {unix.ENFILE, false}, {unix.ENOSPC, false}, {unix.EIO, false},
	} {
		err := &sandbox.SetupError{What: "executing builder /store/b/bin/sh", Err: c.errno}
		if _, ok := execFailure(err, "/store/b/bin/sh"); ok != c.builders {
			t.Errorf("exec failing with %v: the builder's fault %v, want %v", c.errno, ok, c.builders)
		}
	}
}

func TestIsResourceError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{unix.ENOSPC, true},
		{&os.PathError{Op: "write", Path: "/x", Err: unix.ENOSPC}, true},
		{fmt.Errorf("restoring: %w", &os.PathError{Op: "open", Path: "/x", Err: unix.EMFILE}), true},
		{unix.EDQUOT, true}, {unix.EIO, true}, {unix.ENOMEM, true},
		{unix.ENOENT, false}, {unix.EACCES, false}, {errors.New("no space left on device"), false}, {nil, false},
	} {
		if got := isResourceError(c.err); got != c.want {
			t.Errorf("isResourceError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestFullFilesystem(t *testing.T) {
	if why, full := fullFilesystem(t.TempDir()); full {
		t.Errorf("the test's temp dir counts as full: %s", why)
	}
	if _, full := fullFilesystem("/nonexistent/x"); full {
		t.Error("a missing dir counts as full")
	}
}

func TestKilledByHostOOM(t *testing.T) {
	now := oomKills()
	if now < 0 {
		t.Fatal("no oom_kill in /proc/vmstat")
	}
	for _, c := range []struct {
		res    sandbox.Result
		before int64
		want   bool
	}{
		{sandbox.Result{Outcome: sandbox.Signaled, Signal: syscall.SIGKILL}, now - 1, true},
		{sandbox.Result{Outcome: sandbox.Signaled, Signal: syscall.SIGKILL}, now, false},     // no kill meanwhile
		{sandbox.Result{Outcome: sandbox.Signaled, Signal: syscall.SIGKILL}, -1, false},      // count unknown
		{sandbox.Result{Outcome: sandbox.Signaled, Signal: syscall.SIGSEGV}, now - 1, false}, // its own crash
		{sandbox.Result{Outcome: sandbox.Exited, ExitCode: 137}, now - 1, false},             // a shell's report of a kill is its exit
		{sandbox.Result{Outcome: sandbox.TimedOut}, now - 1, false},                          // we killed it
		{sandbox.Result{Outcome: sandbox.Signaled, Signal: syscall.SIGKILL, LimitsHit: []string{"its limit of 1 bytes of memory"}}, now - 1, false},
	} {
		if got := killedByHostOOM(&c.res, c.before); got != c.want {
			t.Errorf("%+v, count before %d (now %d): %v, want %v", c.res, c.before, now, got, c.want)
		}
	}
}
