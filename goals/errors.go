package goals

import (
	"fmt"
	"strings"

	"storefs/store/storepath"
)

// Statuses of a failed build, as Nix's: a builder that failed (100),
// timed out (101) or made a fixed output with another hash (102). Their
// low bits are or'ed into the exit code (103 is a timeout and a hash
// mismatch). A builder that succeeded but whose outputs were refused
// (missing, a reference cycle, a broken reference rule) is
// StatusOutputRejected, which adds no bit: Nix exits 1 then. So is a
// builder killed for writing more than max-build-log-size (StatusLogLimit,
// Nix's LogLimitExceeded).
const (
	StatusOutputRejected = 1
	StatusLogLimit       = 1
	StatusBuildFailed    = 0x64 // 100
	StatusTimedOut       = 0x65 // 101
	StatusHashMismatch   = 0x66 // 102
)

// ExitStatus combines the statuses of every BuildError in errs (looking
// through DependencyErrors and joined errors) as Nix does: 1 when none
// is a build failure.
func ExitStatus(errs ...error) int {
	mask := 0
	var walk func(err error)
	walk = func(err error) {
		if be, ok := err.(*BuildError); ok {
			if be.Status >= StatusBuildFailed && be.Status < 0x70 {
				mask |= be.Status &^ 0x60
			}
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	for _, err := range errs {
		walk(err)
	}
	if mask == 0 {
		return 1
	}
	return mask | 0x60
}

// BuildError is a build that ran and failed (or was remembered to have).
type BuildError struct {
	Drv     string // the .drv path
	Status  int    // StatusBuildFailed, StatusTimedOut, StatusHashMismatch, StatusOutputRejected, StatusLogLimit
	Message string // what went wrong, e.g. "builder exited with code 1"
	LogTail []string
	Cached  bool // failed fast: remembered from an earlier build
}

func (e *BuildError) Error() string {
	if e.Cached {
		return fmt.Sprintf("build of %s failed earlier (remembered; storefs realise --retry-failed forgets): %s", e.Drv, e.Detail())
	}
	return fmt.Sprintf("build of %s failed: %s", e.Drv, e.Detail())
}

// Detail is the message and the log's last lines.
func (e *BuildError) Detail() string {
	if len(e.LogTail) == 0 {
		return e.Message
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s; last %d log lines:", e.Message, len(e.LogTail))
	for _, l := range e.LogTail {
		b.WriteString("\n> ")
		b.WriteString(l)
	}
	return b.String()
}

// ExitCode makes a failed realise exit as Nix's would.
func (e *BuildError) ExitCode() int { return ExitStatus(e) }

// DependencyError is a goal that failed because a goal it waited on did.
type DependencyError struct {
	Path string // what could not be realised
	Dep  string // the dependency that failed
	Err  error  // its error
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("cannot realise %s: dependency %s failed: %v", e.Path, e.Dep, e.Err)
}

func (e *DependencyError) Unwrap() error { return e.Err }

// ExitCode is that of the failed dependency.
func (e *DependencyError) ExitCode() int { return ExitStatus(e) }

func depError(dir storepath.Dir, p, dep storepath.Path, err error) error {
	return &DependencyError{Path: dir.Print(p), Dep: dir.Print(dep), Err: err}
}
