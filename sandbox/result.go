package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"
)

// Outcome is how a builder's run ended.
type Outcome int

const (
	Exited    Outcome = iota // the builder exited by itself; see ExitCode
	Signaled                 // the builder died of a signal it did not ask for (SIGSEGV...); see Signal
	TimedOut                 // killed after Spec.Timeout
	Silent                   // killed after Spec.MaxSilent without output
	Cancelled                // killed because the context was cancelled
	LogLimit                 // killed after writing more than Spec.MaxLogSize bytes of log output
)

func (o Outcome) String() string {
	switch o {
	case Exited:
		return "exited"
	case Signaled:
		return "signaled"
	case TimedOut:
		return "timed out"
	case Silent:
		return "silent"
	case Cancelled:
		return "cancelled"
	case LogLimit:
		return "log limit"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what happened to a builder that started.
type Result struct {
	Outcome  Outcome
	ExitCode int            // when Exited
	Signal   syscall.Signal // when Signaled
	// Duration runs from starting the sandbox to the end of its last
	// process.
	Duration time.Duration
	// Limit is the limit that killed it (TimedOut, Silent).
	Limit time.Duration
	// MaxLogSize is the log size that killed it (LogLimit), in bytes.
	MaxLogSize int64
	// LimitsHit names the limits of the build's cgroup that its processes
	// ran into ("its limit of 50 processes and threads"), which may be why
	// it failed; none where no cgroup held it.
	LimitsHit []string
	// cause is the context's error when Cancelled.
	cause error
}

// Sentinels for errors.Is on Result.Err.
var (
	ErrFailed    = errors.New("builder failed")
	ErrTimedOut  = errors.New("builder timed out")
	ErrSilent    = errors.New("builder was silent too long")
	ErrCancelled = errors.New("build cancelled")
	ErrLogLimit  = errors.New("builder wrote too much log output")
	// ErrSetup marks every *SetupError.
	ErrSetup = errors.New("sandbox setup failed")
)

// Success reports whether the builder exited with status 0.
func (r *Result) Success() bool { return r.Outcome == Exited && r.ExitCode == 0 }

// Err is nil for a builder that exited 0, else a *BuildError saying why it
// did not (errors.Is matches ErrFailed, ErrTimedOut, ErrSilent or
// ErrCancelled or ErrLogLimit, and for a cancellation the context's error
// too).
func (r *Result) Err() error {
	if r.Success() {
		return nil
	}
	return &BuildError{Result: *r}
}

// BuildError is a builder that ran but did not succeed.
type BuildError struct{ Result Result }

func (e *BuildError) Error() string {
	msg := e.message()
	if len(e.Result.LimitsHit) > 0 && (e.Result.Outcome == Exited || e.Result.Outcome == Signaled) {
		msg += " after reaching " + strings.Join(e.Result.LimitsHit, " and ")
	}
	return msg
}

func (e *BuildError) message() string {
	r := e.Result
	switch r.Outcome {
	case Exited:
		return fmt.Sprintf("builder failed with exit code %d", r.ExitCode)
	case Signaled:
		return fmt.Sprintf("builder was killed by signal %d (%v)", int(r.Signal), r.Signal)
	case TimedOut:
		return fmt.Sprintf("builder timed out after %v", r.Limit)
	case Silent:
		return fmt.Sprintf("builder timed out after %v of silence", r.Limit)
	case Cancelled:
		return fmt.Sprintf("build cancelled: %v", r.cause)
	case LogLimit:
		return fmt.Sprintf("builder killed after writing more than %d bytes of log output", r.MaxLogSize)
	}
	return "builder failed: " + r.Outcome.String()
}

func (e *BuildError) Unwrap() []error {
	switch e.Result.Outcome {
	case TimedOut:
		return []error{ErrTimedOut}
	case Silent:
		return []error{ErrSilent}
	case LogLimit:
		return []error{ErrLogLimit}
	case Cancelled:
		if e.Result.cause != nil {
			return []error{ErrCancelled, e.Result.cause}
		}
		return []error{ErrCancelled}
	}
	return []error{ErrFailed}
}

// SetupError is a sandbox that could not be made or cleaned up: the step
// that failed (naming its paths) and the cause, often a unix.Errno.
type SetupError struct {
	What string // e.g. "bind-mounting input /var/lib/storefs/store/x at /store/x"
	Err  error
}

func (e *SetupError) Error() string { return "sandbox: " + e.What + ": " + e.Err.Error() }

func (e *SetupError) Unwrap() []error { return []error{ErrSetup, e.Err} }
