package integration

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStoreCrashDuringImport kills `storefs import` of a large stream with
// SIGKILL at random moments. After each kill, `storefs verify
// --check-contents` must be clean: every path is valid and complete, or
// absent, and the next start removed the leftovers. Half the kills come
// at a random time; the others when the backing directory reaches a
// random number of entries (plus a few milliseconds), which is when a
// batch is being renamed into place and committed. When an import got
// through, a collection (of random size) makes room for the next. At the
// end an import runs to completion and every path of the stream is valid.
//
// STOREFS_CRASH_SEED repeats a run (its seed is logged); STOREFS_CRASH_TRIALS
// sets the number of kills (50).
func TestStoreCrashDuringImport(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STOREFS_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("STOREFS_CRASH_SEED: %v", err)
		}
	}
	trials := 50
	if v := os.Getenv("STOREFS_CRASH_TRIALS"); v != "" {
		var err error
		if trials, err = strconv.Atoi(v); err != nil {
			t.Fatalf("STOREFS_CRASH_TRIALS: %v", err)
		}
	}
	t.Logf("seed %d (STOREFS_CRASH_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	streamFile, paths := genStream(t, t.TempDir(), streamSpec{Paths: 200, Bytes: 64 << 20, Seed: seed, Files: 8})
	importFrom := func(s *sfsStore) *exec.Cmd {
		f, err := os.Open(streamFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		cmd := exec.Command(storefsBin, s.args("import")...)
		cmd.Stdin = f
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// A whole import, timed, so that the timed kills spread over one.
	start := time.Now()
	if err := importFrom(newSfsStore(t)).Wait(); err != nil {
		t.Fatalf("import: %v", err)
	}
	whole := time.Since(start)

	s := newSfsStore(t)
	backing := filepath.Join(s.state, "store")
	var killed, finished, collections, leftovers int
	var verifying time.Duration
	progress := make([]int, 0, trials)
	valid := 0
	for trial := range trials {
		cmd := importFrom(s)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if trial%2 == 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(whole))))
		} else {
			// The backing directory holds the valid paths now (verify
			// removed any leftovers): wait for one of the paths to come.
			target := valid + 1 + rng.IntN(len(paths)-valid)
			jitter := time.Duration(rng.Int64N(int64(5 * time.Millisecond)))
			waitForEntries(backing, target, exited)
			time.Sleep(jitter)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err := <-exited
		if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
			killed++
		} else if err == nil {
			finished++
		} else {
			t.Fatalf("trial %d: import failed on its own: %v: %s", trial, err, cmd.Stderr.(*bytes.Buffer).Bytes())
		}
		entries := len(dirNames(t, backing))
		start := time.Now()
		r := s.result(t, nil, "verify", "--check-contents")
		verifying += time.Since(start)
		if r.code != 0 {
			t.Fatalf("trial %d: verify --check-contents: exit %d\n%s", trial, r.code, r.stderr)
		}
		valid = len(s.valid(t))
		progress = append(progress, valid)
		if entries > valid {
			leftovers++ // killed between a rename and its commit
		}
		if valid == len(paths) {
			s.run(t, nil, "gc", "--max-freed", strconv.FormatInt(1+rng.Int64N(64<<20), 10))
			collections++
			valid = len(s.valid(t))
		}
	}
	t.Logf("a whole import took %v; %d of %d imports killed, %d finished first; %d kills left entries with no record; %d collections; verify took %v in all; valid paths after each: %v",
		whole, killed, trials, finished, leftovers, collections, verifying, progress)
	if killed < trials/2 {
		t.Errorf("only %d of %d kills hit a running import", killed, trials)
	}

	f, err := os.Open(streamFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := s.run(t, f, "import")
	if got := strings.Fields(string(out)); strings.Join(got, " ") != strings.Join(paths, " ") {
		t.Errorf("final import printed %d paths, want the stream's %d in order", len(got), len(paths))
	}
	want := append([]string(nil), paths...)
	sort.Strings(want)
	if got := s.valid(t); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%d valid paths after the final import, want %d", len(got), len(want))
	}
	if got := s.backing(t); len(got) != len(paths) {
		t.Errorf("backing directory holds %d entries, want %d", len(got), len(paths))
	}
	s.verify(t)
}

// waitForEntries returns once dir has at least n entries or the process
// has exited (its exit stays in exited).
func waitForEntries(dir string, n int, exited chan error) {
	for {
		select {
		case err := <-exited:
			exited <- err
			return
		default:
		}
		if d, err := os.Open(dir); err == nil {
			names, _ := d.Readdirnames(-1)
			d.Close()
			if len(names) >= n {
				return
			}
		}
		time.Sleep(500 * time.Microsecond)
	}
}
