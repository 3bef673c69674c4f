package goals

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestExitStatus(t *testing.T) {
	be := func(status int) error { return &BuildError{Drv: "/store/x.drv", Status: status, Message: "m"} }
	dep := func(err error) error { return &DependencyError{Path: "/store/top.drv", Dep: "/store/x.drv", Err: err} }
	for _, c := range []struct {
		name string
		errs []error
		want int
	}{
		{"none", nil, 1},
		{"plain error", []error{errors.New("disk full")}, 1},
		{"build failed", []error{be(StatusBuildFailed)}, 100},
		{"timed out", []error{be(StatusTimedOut)}, 101},
		{"hash mismatch", []error{be(StatusHashMismatch)}, 102},
		{"outputs rejected", []error{be(StatusOutputRejected)}, 1},
		{"timeout and mismatch", []error{be(StatusTimedOut), be(StatusHashMismatch)}, 103},
		{"through a dependency", []error{dep(be(StatusTimedOut))}, 101},
		{"joined", []error{errors.Join(dep(be(StatusBuildFailed)), dep(be(StatusHashMismatch)))}, 102 | 100},
		{"wrapped", []error{fmt.Errorf("realising: %w", be(StatusBuildFailed))}, 100},
		{"rejected beside a failure", []error{be(StatusOutputRejected), be(StatusBuildFailed)}, 100},
	} {
		if got := ExitStatus(c.errs...); got != c.want {
			t.Errorf("%s: ExitStatus = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestBuildErrorMessage(t *testing.T) {
	e := &BuildError{Drv: "/store/abc-x.drv", Status: StatusBuildFailed, Message: "builder failed with exit code 3", LogTail: []string{"one", "two"}}
	want := "build of /store/abc-x.drv failed: builder failed with exit code 3; last 2 log lines:\n> one\n> two"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	e.Cached = true
	if !strings.Contains(e.Error(), "--retry-failed") || !strings.Contains(e.Error(), "/store/abc-x.drv") {
		t.Errorf("a remembered failure says %q", e.Error())
	}
	d := &DependencyError{Path: "/store/top.drv", Dep: "/store/abc-x.drv", Err: e}
	if !errors.Is(d, e) || !strings.HasPrefix(d.Error(), "cannot realise /store/top.drv: dependency /store/abc-x.drv failed: ") {
		t.Errorf("DependencyError says %q", d.Error())
	}
}
