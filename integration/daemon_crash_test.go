package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storefs/store/wire"
)

// kill -9 of the daemon in the middle of an AddMultipleToStore leaves a
// sound store and nothing of the upload; the same upload then succeeds.
func TestDaemonKilledMidUpload(t *testing.T) {
	e := newDaemonEnv(t)
	// Two paths: a small one, then one of 4 MB that refers to it.
	small := narOfText("small\n")
	big := narOfText(strings.Repeat("0123456789abcdef", 1<<18))
	smallPath := e.storeDir + "/" + strings.Repeat("a", 32) + "-small"
	bigPath := e.storeDir + "/" + strings.Repeat("b", 32) + "-big"
	var payload bytes.Buffer
	pw := wire.NewWriter(&payload)
	pw.U64(2)
	entry := func(p string, refs []string, n []byte) {
		h := sha256.Sum256(n)
		pw.String(p)
		pw.String("")
		pw.String(hex.EncodeToString(h[:]))
		pw.Strings(refs)
		pw.U64(0)
		pw.U64(uint64(len(n)))
		pw.U64(0)
		pw.Strings(nil)
		pw.String("")
		pw.Write(n)
	}
	entry(smallPath, nil, small)
	entry(bigPath, []string{smallPath}, big)
	pw.Flush()

	upload := func(cut int) *wireClient {
		nc, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(60 * time.Second))
		c := &wireClient{r: wire.NewReader(nc), w: wire.NewWriter(nc)}
		if err := c.handshake(); err != nil {
			t.Fatal(err)
		}
		c.w.U64(44)
		c.w.U64(0)
		c.w.U64(1) // dontCheckSigs: root is trusted
		data := payload.Bytes()[:cut]
		for len(data) > 0 {
			k := min(len(data), 32<<10)
			c.w.U64(uint64(k))
			c.w.Write(data[:k])
			data = data[k:]
		}
		if cut == payload.Len() {
			c.w.U64(0)
		}
		if err := c.w.Flush(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	upload(payload.Len() / 2)
	// Let the daemon unpack what it has, then crash it mid-upload.
	time.Sleep(300 * time.Millisecond)
	e.kill()

	e.start(t)
	storefs(t, nil, "--store-dir", e.storeDir, "--state-dir", e.state, "verify", "--check-contents")
	if ents, _ := os.ReadDir(filepath.Join(e.state, "tmp")); len(ents) > 0 {
		t.Errorf("scratch space of the killed daemon is left: %d entries", len(ents))
	}
	for _, p := range []string{smallPath, bigPath} {
		if r := e.nixResult(t, "nix-store", "--check-validity", p); r.code == 0 {
			t.Errorf("%s is valid after the daemon was killed mid-upload", p)
		}
	}

	c := upload(payload.Len())
	if kind, err := c.stderr(); err != nil || kind != "" {
		t.Fatalf("the retried upload: %q, %v", kind, err)
	}
	for _, p := range []string{smallPath, bigPath} {
		e.nix(t, "nix-store", "--check-validity", p)
	}
	if got := e.nix(t, "nix-store", "-q", "--references", bigPath); got != smallPath {
		t.Errorf("references of %s: %q", bigPath, got)
	}
}
