package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storefs/store/wire"
)

// A differential test: the same raw requests to real `nix-daemon --stdio`
// (a trusted session on a Nix store with the same store dir) and to
// storefs daemon, their replies reduced to what must agree (docs/daemon.md
// lists what may differ: registration times, ultimate, messages).

type wireClient struct {
	r *wire.Reader
	w *wire.Writer
}

func (c *wireClient) handshake() error {
	c.w.U64(0x6e697863)
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.r.U64("magic")
	c.r.U64("version")
	c.w.U64(0x122)
	c.w.U64(0)
	c.w.U64(0)
	if err := c.w.Flush(); err != nil {
		return err
	}
	c.r.String("nix version", 100)
	_, err := c.stderr()
	return err
}

// stderr reads a log stream: "" at STDERR_LAST, "error" at STDERR_ERROR.
func (c *wireClient) stderr() (string, error) {
	for {
		tag, err := c.r.U64("stderr tag")
		if err != nil {
			return "", err
		}
		switch tag {
		case 0x616c7473:
			return "", nil
		case 0x63787470:
			c.r.String("type", 100)
			c.r.U64("level")
			c.r.String("name", 100)
			c.r.String("message", 1<<20)
			c.r.U64("havePos")
			n, _ := c.r.U64("traces")
			for ; n > 0; n-- {
				c.r.U64("pos")
				c.r.String("trace", 1<<20)
			}
			return "error", nil
		case 0x6f6c6d67:
			c.r.String("line", 1<<20)
		case 0x53545254:
			c.r.U64("id")
			c.r.U64("level")
			c.r.U64("type")
			c.r.String("text", 1<<20)
			c.fields()
			c.r.U64("parent")
		case 0x53544f50:
			c.r.U64("id")
		case 0x52534c54:
			c.r.U64("id")
			c.r.U64("type")
			c.fields()
		default:
			return "", fmt.Errorf("unknown stderr tag %#x", tag)
		}
	}
}

func (c *wireClient) fields() {
	n, _ := c.r.U64("fields")
	for ; n > 0; n-- {
		if t, _ := c.r.U64("type"); t == 0 {
			c.r.U64("int")
		} else {
			c.r.String("string", 1<<20)
		}
	}
}

// step is one request and how to read its result into a transcript line.
type step struct {
	name   string
	send   func(w *wire.Writer)
	result func(r *wire.Reader) string
}

// transcript runs the steps on one connection and describes each reply.
func transcript(t *testing.T, rw io.ReadWriter, steps []step) []string {
	c := &wireClient{r: wire.NewReader(rw), w: wire.NewWriter(rw)}
	if err := c.handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	var out []string
	for _, s := range steps {
		s.send(c.w)
		if err := c.w.Flush(); err != nil {
			return append(out, s.name+": closed")
		}
		kind, err := c.stderr()
		switch {
		case err != nil:
			return append(out, s.name+": closed")
		case kind == "error":
			// Probe: a daemon that goes on answers it; one that ends the
			// connection sends its second error and closes.
			c.w.U64(1)
			c.w.String(missingProbe)
			c.w.Flush()
			k2, err := c.stderr()
			switch {
			case err != nil:
				return append(out, s.name+": error, closed")
			case k2 == "error":
				if _, err := c.r.U64("more"); err != nil {
					return append(out, s.name+": error, error, closed")
				}
				return append(out, s.name+": error, error, not closed")
			}
			c.r.U64("probe")
			out = append(out, s.name+": error, goes on")
		default:
			out = append(out, s.name+": "+s.result(c.r))
		}
	}
	return out
}

// missingProbe is a path valid nowhere, set per test.
var missingProbe string

func TestDaemonDifferential(t *testing.T) {
	e := newDaemonEnv(t)
	sd := e.storeDir
	missingProbe = sd + "/00000000000000000000000000000000-probe"
	text := "hello"
	missing := sd + "/00000000000000000000000000000000-missing"
	u64 := func(r *wire.Reader) string { n, _ := r.U64("n"); return fmt.Sprint(n) }
	strs := func(r *wire.Reader) string { s, _ := r.Strings("s", 1<<16, 1<<16); return strings.Join(s, " ") }
	info := func(r *wire.Reader) string {
		d, _ := r.String("deriver", 1<<16)
		h, _ := r.String("narHash", 1<<16)
		refs, _ := r.Strings("refs", 1<<16, 1<<16)
		r.U64("registrationTime")
		n, _ := r.U64("narSize")
		r.U64("ultimate")
		sigs, _ := r.Strings("sigs", 1<<16, 1<<16)
		ca, _ := r.String("ca", 1<<16)
		return fmt.Sprintf("deriver=%q narHash=%s refs=%v narSize=%d sigs=%v ca=%s", d, h, refs, n, sigs, ca)
	}
	var added string
	addText := step{"AddToStore text", func(w *wire.Writer) {
		w.U64(7)
		w.String("t.txt")
		w.String("text:sha256")
		w.Strings(nil)
		w.U64(0)
		w.U64(uint64(len(text)))
		w.Write([]byte(text))
		w.U64(0)
	}, func(r *wire.Reader) string {
		p, _ := r.String("path", 1<<16)
		added = p
		return p + " " + info(r)
	}}
	steps := []step{
		{"IsValidPath missing", func(w *wire.Writer) { w.U64(1); w.String(missing) }, u64},
		{"QueryPathInfo missing", func(w *wire.Writer) { w.U64(26); w.String(missing) }, u64},
		addText,
		{"QueryPathInfo added", func(w *wire.Writer) { w.U64(26); w.String(added) }, func(r *wire.Reader) string { return u64(r) + " " + info(r) }},
		{"QueryValidPaths", func(w *wire.Writer) { w.U64(31); w.Strings([]string{added, missing}); w.U64(0) }, strs},
		{"QueryPathFromHashPart", func(w *wire.Writer) {
			w.U64(29)
			w.String(strings.SplitN(filepath.Base(added), "-", 2)[0])
		}, func(r *wire.Reader) string { s, _ := r.String("path", 1<<16); return s }},
		{"QueryReferrers", func(w *wire.Writer) { w.U64(6); w.String(added) }, strs},
		{"QueryValidDerivers", func(w *wire.Writer) { w.U64(33); w.String(added) }, strs},
		{"QuerySubstitutablePaths", func(w *wire.Writer) { w.U64(32); w.Strings([]string{missing}) }, strs},
		{"AddTempRoot", func(w *wire.Writer) { w.U64(11); w.String(added) }, u64},
		{"CollectGarbage returnDead", func(w *wire.Writer) {
			w.U64(20)
			w.U64(1)
			w.Strings(nil)
			for i := 0; i < 5; i++ {
				w.U64(0)
			}
		}, func(r *wire.Reader) string { return strs(r) + " " + u64(r) + " " + u64(r) }},
		{"QueryAllValidPaths", func(w *wire.Writer) { w.U64(23) }, strs},
		{"OptimiseStore", func(w *wire.Writer) { w.U64(34) }, u64},
		{"VerifyStore", func(w *wire.Writer) { w.U64(35); w.U64(1); w.U64(0) }, u64},
	}
	// What a wrong NAR hash does, and an unknown op, a bad path.
	nar := narOfText(text)
	// addNar sends AddToStoreNar of path claiming the NAR nar (a wrong
	// hash) and sending body in one frame.
	addNar := func(name, path string, body []byte) step {
		return step{name, func(w *wire.Writer) {
			w.U64(39)
			w.String(sd + "/" + path)
			w.String("")
			w.String(strings.Repeat("ab", 32))
			w.Strings(nil)
			w.U64(0)
			w.U64(uint64(len(nar)))
			w.U64(0)
			w.Strings(nil)
			w.String("")
			w.U64(0)
			w.U64(1)
			w.U64(uint64(len(body)))
			w.Write(body)
			w.U64(0)
		}, nil}
	}
	wrongHash := addNar("AddToStoreNar wrong hash", strings.Repeat("1", 32)+"-x", nar)
	cutNar := addNar("AddToStoreNar truncated NAR", strings.Repeat("2", 32)+"-x", nar[:len(nar)-16])
	emptyMulti := step{"AddMultipleToStore of nothing", func(w *wire.Writer) {
		w.U64(44)
		w.U64(0)
		w.U64(1)
		w.U64(8)
		w.U64(0)
		w.U64(0)
	}, func(r *wire.Reader) string { return "ok" }}
	steps = append(steps, emptyMulti)
	fatal := map[string][]step{
		"truncated NAR": {cutNar},
		"unknown op":    {{"op 99", func(w *wire.Writer) { w.U64(99) }, nil}},
		"bad path":      {{"IsValidPath bad", func(w *wire.Writer) { w.U64(1); w.String("/not/a/store/path") }, nil}},
		"wrong hash":    {wrongHash},
	}

	real := func(steps []step) []string {
		cmd := exec.Command("nix-daemon", "--stdio")
		cmd.Env = e.ref.env
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		defer func() { timer.Stop(); stdin.Close(); cmd.Wait() }()
		return transcript(t, struct {
			io.Reader
			io.Writer
		}{stdout, stdin}, steps)
	}
	ours := func(steps []step) []string {
		nc, err := net.Dial("unix", e.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		return transcript(t, nc, steps)
	}
	compare := func(name string, steps []step) {
		want := strings.Join(real(steps), "\n")
		t.Logf("%s, nix-daemon:\n%s", name, want)
		got := strings.Join(ours(steps), "\n")
		if got != want {
			t.Errorf("%s:\nstorefs daemon:\n%s\nnix-daemon:\n%s", name, got, want)
		}
	}
	compare("queries and adds", steps)
	for name, s := range fatal {
		compare(name, s)
	}
}

// narOfText is the NAR of a regular file holding s.
func narOfText(s string) []byte {
	var b []byte
	str := func(x string) {
		n := len(x)
		var l [8]byte
		for i := range l {
			l[i] = byte(uint64(n) >> (8 * i))
		}
		b = append(b, l[:]...)
		b = append(b, x...)
		b = append(b, make([]byte, (8-n%8)%8)...)
	}
	for _, x := range []string{"nix-archive-1", "(", "type", "regular", "contents", s, ")"} {
		str(x)
	}
	return b
}
