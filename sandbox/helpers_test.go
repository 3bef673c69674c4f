package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain need not call MaybeRunInit: the package's init function did.
func TestMain(m *testing.M) {
	if spec := os.Getenv(parentSpecEnv); spec != "" {
		os.Exit(runAsParent(spec))
	}
	os.Exit(m.Run())
}

// parentSpecEnv makes the test binary run one build (the JSON Spec) with
// its log on stdout, for TestParentDeath to kill.
const parentSpecEnv = "STOREFS_SANDBOX_TEST_PARENT_SPEC"

func runAsParent(specJSON string) int {
	var s Spec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s.Log = os.Stdout
	res, err := Run(context.Background(), &s)
	fmt.Fprintln(os.Stderr, res, err)
	return 0
}

const (
	storeDir  = "/store"
	bbBase    = "0123456789abcdfghijklmnpqrsvwxyz-busybox" // the nix32 alphabet is a fine hash
	outBase   = "zyxwvsrqpnmlkjihgfdcba9876543210-out"
	bbBin     = storeDir + "/" + bbBase + "/bin"
	outPath   = storeDir + "/" + outBase
	shell     = bbBin + "/sh"
	buildUIDs = 1000 // each test binary uses host uids firstUID + [0, buildUIDs)
)

// firstUID depends on the pid so that test binaries running at once (go
// test -count, two packages) do not count each other's processes.
var (
	firstUID = 100000 + os.Getpid()%1000*buildUIDs
	nextUID  atomic.Int32
)

// build is one test build: a spec with busybox as its only input and one
// output, in a fresh temp dir.
type build struct {
	*Spec
	dir string
	log *syncBuffer
}

// syncBuffer is a log that tests may read while the build runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// busyboxInput makes <dir>/inputs/<bbBase>/bin/busybox with sh and the
// applets tests use as symlinks to it.
func busyboxInput(t testing.TB, dir string) string {
	t.Helper()
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed as the test builder (make deps installs it): %v", err)
	}
	top := filepath.Join(dir, "inputs", bbBase)
	bin := filepath.Join(top, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(bin, "sh")); err != nil {
		t.Fatal(err)
	}
	return top
}

func newBuild(t testing.TB, script string) *build {
	t.Helper()
	dir := t.TempDir()
	bb := busyboxInput(t, dir)
	buildDir := filepath.Join(dir, "build")
	if err := os.Mkdir(buildDir, 0o700); err != nil {
		t.Fatal(err)
	}
	uid := firstUID + int(nextUID.Add(1))%buildUIDs
	log := &syncBuffer{}
	return &build{
		Spec: &Spec{
			Builder:  shell,
			Args:     []string{"-c", script},
			Env:      []string{"PATH=" + bbBin, "out=" + outPath, "HOME=/homeless-shelter", "NIX_BUILD_TOP=/build"},
			StoreDir: storeDir,
			Inputs:   []Mount{{Host: bb, Path: storeDir + "/" + bbBase}},
			BuildDir: buildDir,
			Outputs:  []Mount{{Host: filepath.Join(dir, "out"), Path: outPath}},
			Log:      log,
			HostUID:  uid,
			HostGID:  uid,
			Timeout:  time.Minute,
		},
		dir: dir,
		log: log,
	}
}

// run runs the build and fails the test on a setup error.
func (b *build) run(t testing.TB) *Result {
	t.Helper()
	res, err := Run(context.Background(), b.Spec)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, b.log)
	}
	return res
}

// mustSucceed runs the build and fails the test unless the builder exits 0.
func (b *build) mustSucceed(t testing.TB) *Result {
	t.Helper()
	res := b.run(t)
	if err := res.Err(); err != nil {
		t.Fatalf("build: %v\nlog:\n%s", err, b.log)
	}
	return res
}

// output reads a file of the output on the host.
func (b *build) output(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(b.Outputs[0].Host, name))
	if err != nil {
		t.Fatalf("reading output %s: %v\nlog:\n%s", name, err, b.log)
	}
	return strings.TrimSuffix(string(data), "\n")
}

// hostProcs lists the host's processes whose real, effective, saved or
// filesystem uid is uid, with their status lines.
func hostProcs(t testing.TB, uid int) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	found := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone meanwhile
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" && slices.Contains(f[1:], strconv.Itoa(uid)) {
				found[pid] = string(data)
			}
		}
	}
	return found
}

// noneLeft fails the test if a process of the build's host uid remains.
func (b *build) noneLeft(t testing.TB) {
	t.Helper()
	if left := hostProcs(t, b.HostUID); len(left) > 0 {
		t.Fatalf("processes of host uid %d survived the build: %v", b.HostUID, slices.Collect(maps.Keys(left)))
	}
}

// waitLog waits until the build's log contains s.
func (b *build) waitLog(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", s, b.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs the build in the background; the channel yields its end.
func (b *build) start(ctx context.Context) <-chan runEnd {
	ch := make(chan runEnd, 1)
	go func() {
		res, err := Run(ctx, b.Spec)
		ch <- runEnd{res, err, time.Now()}
	}()
	return ch
}

type runEnd struct {
	res *Result
	err error
	at  time.Time
}
