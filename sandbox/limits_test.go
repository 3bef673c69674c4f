package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// promptly is how soon Run must return once a build is to end: generous,
// for a loaded machine, and far below the 1000 s the sleepers would take.
const promptly = 3 * time.Second

// forever is a builder that forks a sleeper, then never ends on its own.
const forever = `sleep 1000 & echo started; sleep 1000; wait`

// killed checks a build ended by a limit: the outcome, the error it gives,
// how promptly Run returned, and that nothing of it is left.
func killed(t *testing.T, b *build, r runEnd, want Outcome, sentinel error, from time.Time, within time.Duration) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if r.res.Outcome != want {
		t.Fatalf("outcome %v, want %v (%+v)\n%s", r.res.Outcome, want, r.res, b.log)
	}
	err := r.res.Err()
	if !errors.Is(err, sentinel) {
		t.Errorf("Err() = %v, want errors.Is %v", err, sentinel)
	}
	if took := r.at.Sub(from); took > within {
		t.Errorf("Run returned %v after it should have ended, want within %v", took, within)
	}
	b.noneLeft(t)
}

func TestTimeout(t *testing.T) {
	b := newBuild(t, forever)
	b.Timeout = 300 * time.Millisecond
	start := time.Now()
	r := <-b.start(context.Background())
	killed(t, b, r, TimedOut, ErrTimedOut, start.Add(b.Timeout), promptly)
	if got := r.res.Err().Error(); got != "builder timed out after 300ms" {
		t.Errorf("error: %q", got)
	}
}

// Output resets the silence timer; silence past MaxSilent kills.
func TestMaxSilent(t *testing.T) {
	b := newBuild(t, `sleep 1000 & for i in 1 2 3 4 5 6 7 8 9 10; do echo tick $i; sleep 0.2; done; sleep 1000`)
	b.MaxSilent = time.Second
	start := time.Now()
	r := <-b.start(context.Background())
	if !strings.Contains(b.log.String(), "tick 10") {
		t.Fatalf("killed while it was talking: %v\n%s", r.res, b.log)
	}
	// The last tick comes after 9 sleeps of 0.2 s.
	killed(t, b, r, Silent, ErrSilent, start.Add(1800*time.Millisecond+b.MaxSilent), promptly)
	if r.res.Duration < 1800*time.Millisecond+b.MaxSilent {
		t.Errorf("killed after %v, before %v of silence", r.res.Duration, b.MaxSilent)
	}
	if got := r.res.Err().Error(); got != "builder timed out after 1s of silence" {
		t.Errorf("error: %q", got)
	}
}

func TestCancel(t *testing.T) {
	b := newBuild(t, forever)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	end := b.start(ctx)
	b.waitLog(t, "started")
	at := time.Now()
	cancel()
	r := <-end
	killed(t, b, r, Cancelled, ErrCancelled, at, promptly)
	if !errors.Is(r.res.Err(), context.Canceled) {
		t.Errorf("Err() = %v, want errors.Is context.Canceled", r.res.Err())
	}
}

// A context already done starts nothing.
func TestCancelledBeforeStart(t *testing.T) {
	b := newBuild(t, "mkdir $out")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, b.Spec)
	if err != nil || res.Outcome != Cancelled {
		t.Fatalf("Run: %+v, %v", res, err)
	}
	if _, err := os.Lstat(b.Outputs[0].Host); !os.IsNotExist(err) {
		t.Errorf("the builder ran: its output exists (%v)", err)
	}
}

func TestExitCode(t *testing.T) {
	b := newBuild(t, "mkdir $out; echo failing >&2; exit 3")
	res := b.run(t)
	if res.Outcome != Exited || res.ExitCode != 3 || res.Success() {
		t.Fatalf("result %+v, want exit code 3", res)
	}
	err := res.Err()
	if !errors.Is(err, ErrFailed) || err.Error() != "builder failed with exit code 3" {
		t.Errorf("Err() = %v", err)
	}
	// A failed build's outputs are still handed over, for keep-failed.
	if fi, err := os.Stat(b.Outputs[0].Host); err != nil || !fi.IsDir() {
		t.Errorf("the failed build's output: %v", err)
	}
}

// A builder killed by a signal it did not ask for (the builder is pid 1 of
// its namespace, so only the kernel or a host process can: here the host
// kills it, as a user's kill -9 would).
func TestSignaled(t *testing.T) {
	b := newBuild(t, `sleep 1000 & echo started; wait`)
	end := b.start(context.Background())
	b.waitLog(t, "started")
	pids := hostProcs(t, b.HostUID)
	var shell int
	for pid, status := range pids {
		if strings.Contains(status, "NSpid:\t") && strings.Contains(status, "\t1\n") {
			if f := strings.Fields(status[strings.Index(status, "NSpid:"):]); len(f) > 2 && f[2] == "1" {
				shell = pid
			}
		}
	}
	if shell == 0 {
		t.Fatalf("no pid 1 among the build's processes %v", pids)
	}
	if err := syscall.Kill(shell, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := <-end
	if r.err != nil || r.res.Outcome != Signaled || r.res.Signal != 9 {
		t.Fatalf("result %+v, %v; want killed by signal 9", r.res, r.err)
	}
	if got := r.res.Err().Error(); got != "builder was killed by signal 9 (killed)" {
		t.Errorf("error: %q", got)
	}
	b.noneLeft(t)
}

// When the process running Run dies, its builds die with it.
func TestParentDeath(t *testing.T) {
	b := newBuild(t, forever)
	spec := *b.Spec
	spec.Log = nil
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0])
	parent.Env = append(os.Environ(), parentSpecEnv+"="+string(data))
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "started\n" {
		parent.Process.Kill()
		t.Fatalf("the build said %q, %v", line, err)
	}
	if n := len(hostProcs(t, b.HostUID)); n < 2 {
		t.Errorf("%d processes of host uid %d run, want the shell and its sleepers", n, b.HostUID)
	}
	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(promptly)
	for len(hostProcs(t, b.HostUID)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.noneLeft(t)
}

// A builder that writes more than MaxLogSize is killed, as Nix's
// max-build-log-size; one that stays under it is not.
func TestMaxLogSize(t *testing.T) {
	b := newBuild(t, `sleep 1000 & i=0; while [ $i -lt 100000 ]; do echo line $i of a builder that talks too much; i=$((i+1)); done; echo done > $out; sleep 1000`)
	b.MaxLogSize = 10000
	r := <-b.start(context.Background())
	killed(t, b, r, LogLimit, ErrLogLimit, time.Now(), promptly)
	if got := r.res.Err().Error(); got != "builder killed after writing more than 10000 bytes of log output" {
		t.Errorf("error: %q", got)
	}
	if strings.Contains(b.log.String(), "line 99999") {
		t.Error("the builder ran to its end")
	}

	b = newBuild(t, `echo short; echo done > $out`)
	b.MaxLogSize = 10000
	if res := b.mustSucceed(t); res.Outcome != Exited {
		t.Errorf("a builder under the limit: %v", res)
	}
	b = newBuild(t, "")
	b.MaxLogSize = -1
	if _, err := Run(context.Background(), b.Spec); !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "max log size -1") {
		t.Errorf("a negative max log size: %v", err)
	}
}
