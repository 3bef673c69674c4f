package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperTree builds a static Go program of this module (its import path)
// into a tree bin/<name>, adds the tree to both stores of e and returns
// its store path.
func (e *buildEnv) helperTree(t *testing.T, pkg, name string) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), name)
	bin := filepath.Join(tree, "bin", name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	p := e.n.line(t, "nix-store", "--add", tree)
	if got := strings.TrimSpace(string(e.sfs(t, "add", tree))); got != p {
		t.Fatalf("storefs add of %s gave %s, nix-store --add %s", tree, got, p)
	}
	return p
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randomTag(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// backingContent is what the backing directory holds for a store path (a
// flat file).
func (e *buildEnv) backingContent(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.state, "store", strings.TrimPrefix(p, storeDir+"/")))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestFixedOutputDescriptorPassing runs the CVE-2024-27297 attack: two
// fixed-output builds at once, the victim hands a descriptor of its output
// over an abstract unix socket, and the accomplice writes through it once
// the victim's output is registered; where socket(AF_UNIX) is refused,
// both try datagram sockets from socketpair. The registered output must
// still be what its hash says, and verify --check-contents clean. Either
// wall stops it: the sandbox refuses unix sockets that can reach another
// process to fixed-output builds, and realise copies a fixed output into
// fresh files before checking it.
func TestFixedOutputDescriptorPassing(t *testing.T) {
	e := newBuildEnv(t)
	fp := e.helperTree(t, "storefs/integration/internal/fdpass", "fdpass")
	tag := randomTag(t)
	sock := "storefs-test-fdpass-" + tag
	accContent := "accomplice " + tag
	expr := fmt.Sprintf(`let fp = builtins.storePath "%s"; in {
  victim = mk { name = "victim-%s"; args = ["-c" "${fp}/bin/fdpass victim %s $out fixed"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%s"; };
  accomplice = mk { name = "accomplice-%s"; args = ["-c" "${fp}/bin/fdpass accomplice %s $out '%s' EVIL"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%s"; };
}`, fp, tag, sock, sha256Hex("fixed"), tag, sock, accContent, sha256Hex(accContent))
	drvs := e.instantiate(t, expr, "victim", "accomplice")
	e.addDrvs(t, drvs...)
	r := e.sfsResult(t, "realise", "--max-jobs", "2", drvs[0], drvs[1])
	logs := string(e.sfs(t, "log", drvs[0])) + string(e.sfs(t, "log", drvs[1]))
	t.Logf("the builders said:\n%s", logs)
	if r.code != 0 {
		t.Fatalf("realise: exit %d\n%s", r.code, r.stderr)
	}
	outs := strings.Fields(string(r.stdout))
	if len(outs) != 2 {
		t.Fatalf("realise printed %q", r.stdout)
	}
	// The accomplice waits until the victim's output is registered or
	// removed, and a second more, then writes; its build ends after that.
	if got := e.backingContent(t, outs[0]); got != "fixed" {
		t.Errorf("the victim's registered output holds %q, its hash says %q", got, "fixed")
	}
	for _, w := range []string{"victim: socket: operation not permitted", "accomplice: socket: operation not permitted",
		"victim: socketpair dgram: operation not permitted", "accomplice: socketpair dgram: operation not permitted"} {
		if !strings.Contains(logs, w) {
			t.Errorf("the builders' logs do not say %q", w)
		}
	}
	e.checkVerify(t)
}

// TestFixedOutputHeldDescriptor: a process that opened a fixed output's
// file while the build ran (here the test itself, as root on the host)
// writes through its descriptor after the output is registered; the
// registered contents must not change. Only the copy into fresh files
// stops this one.
func TestFixedOutputHeldDescriptor(t *testing.T) {
	e := newBuildEnv(t)
	tag := randomTag(t)
	drvs := e.instantiate(t, fmt.Sprintf(`{
  held = mk { name = "held-%s"; args = ["-c" "printf fixed > $out; echo written; sleep 3"];
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%s"; };
}`, tag, sha256Hex("fixed")), "held")
	e.addDrvs(t, drvs...)
	out := e.outputsOf(t, drvs[0])[0]
	base := filepath.Base(out)

	var (
		wg      sync.WaitGroup
		held    *os.File
		holdErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The builder writes its output at <scratch>/sandbox-*/store/<base>
		// under the state dir's tmp/.
		pattern := filepath.Join(e.state, "tmp", "*", "sandbox-*", "store", base)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if m, _ := filepath.Glob(pattern); len(m) == 1 {
				if st, err := os.Stat(m[0]); err == nil && st.Size() == int64(len("fixed")) {
					held, holdErr = os.OpenFile(m[0], os.O_WRONLY, 0)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		holdErr = fmt.Errorf("the output never appeared at %s", pattern)
	}()
	r := e.sfsResult(t, "realise", drvs[0])
	wg.Wait()
	if r.code != 0 {
		t.Fatalf("realise: exit %d\n%s", r.code, r.stderr)
	}
	if holdErr != nil {
		t.Fatalf("opening the output during the build: %v", holdErr)
	}
	defer held.Close()
	if _, err := held.WriteAt([]byte("EVIL!"), 0); err != nil {
		t.Fatal(err)
	}
	if got := e.backingContent(t, out); got != "fixed" {
		t.Errorf("the registered output holds %q after a write through a descriptor opened during the build, want %q", got, "fixed")
	}
	e.checkVerify(t)
}
