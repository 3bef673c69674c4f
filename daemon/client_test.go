package daemon

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"storefs/store"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// fakeEngine realises nothing; it records what was asked.
type fakeEngine struct {
	mu    sync.Mutex
	asked []string
	err   error
}

func (e *fakeEngine) BuildDerivation(ctx context.Context, drv storepath.Path, wanted ...string) (map[string]storepath.Path, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asked = append(e.asked, "build "+drv.Base())
	return nil, e.err
}

func (e *fakeEngine) Realise(ctx context.Context, p storepath.Path) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asked = append(e.asked, "realise "+p.Base())
	return e.err
}

// testServer is a Server over a fresh store (store dir /store).
func testServer(t testing.TB) *Server {
	t.Helper()
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		problems, err := s.Check(store.CheckOptions{Contents: true})
		if err != nil || len(problems) > 0 {
			t.Errorf("store check after the test: %v %v", err, problems)
		}
		// Nothing partial is left in scratch space.
		if ents, _ := os.ReadDir(filepath.Join(s.State, "tmp")); len(ents) > 0 {
			t.Errorf("scratch space left behind: %d entries", len(ents))
		}
	})
	return &Server{Store: s, Engine: &fakeEngine{}}
}

// client speaks the protocol to one connection of srv.
type client struct {
	t    *testing.T
	nc   net.Conn
	r    *wire.Reader
	w    *wire.Writer
	done chan error // the server side's end

	payload *wire.Writer // an AddMultipleToStore payload being made
}

func (c *client) startPayload(b *bytes.Buffer) { c.payload = wire.NewWriter(b) }

func dial(t *testing.T, srv *Server, trusted bool) *client {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sc, cc := mk(fds[0]), mk(fds[1])
	c := &client{t: t, nc: cc, r: wire.NewReader(cc), w: wire.NewWriter(cc), done: make(chan error, 1)}
	go func() {
		err := srv.NewConn(Peer{UID: 0, User: "root", Trusted: trusted}).Serve(context.Background(), sc)
		sc.Close()
		c.done <- err
	}()
	t.Cleanup(func() { cc.Close() })
	return c
}

func (c *client) handshake() {
	c.t.Helper()
	c.w.U64(workerMagic1)
	c.flush()
	if m := c.u64(); m != workerMagic2 {
		c.t.Fatalf("magic %#x", m)
	}
	if v := c.u64(); v != protocolVersion {
		c.t.Fatalf("version %#x", v)
	}
	c.w.U64(protocolVersion)
	c.w.U64(0)
	c.w.U64(0)
	c.flush()
	if v := c.str(); v != NixVersion {
		c.t.Fatalf("version string %q", v)
	}
	if msg, ok := c.stderr(); !ok {
		c.t.Fatalf("handshake: %s", msg)
	}
}

func (c *client) flush() {
	c.t.Helper()
	if err := c.w.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) u64() uint64 {
	c.t.Helper()
	n, err := c.r.U64("reply")
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func (c *client) str() string {
	c.t.Helper()
	s, err := c.r.String("reply", 1<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

func (c *client) strs() []string {
	c.t.Helper()
	s, err := c.r.Strings("reply", 1<<20, 1<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// stderr reads the log stream to its end: ok at STDERR_LAST, or the
// message of STDERR_ERROR.
func (c *client) stderr() (string, bool) {
	c.t.Helper()
	for {
		switch tag := c.u64(); tag {
		case stderrLast:
			return "", true
		case stderrError:
			if s := c.str(); s != "Error" {
				c.t.Fatalf("error type %q", s)
			}
			c.u64()
			c.str()
			msg := c.str()
			if pos := c.u64(); pos != 0 {
				c.t.Fatalf("havePos %d", pos)
			}
			for n := c.u64(); n > 0; n-- {
				c.u64()
				c.str()
			}
			return msg, false
		case stderrNext:
			c.str()
		case stderrStartActivity:
			c.u64()
			c.u64()
			c.u64()
			c.str()
			c.fields()
			c.u64()
		case stderrStopActivity:
			c.u64()
		case stderrResult:
			c.u64()
			c.u64()
			c.fields()
		default:
			c.t.Fatalf("unknown stderr tag %#x", tag)
		}
	}
}

func (c *client) fields() {
	for n := c.u64(); n > 0; n-- {
		if c.u64() == 0 {
			c.u64()
		} else {
			c.str()
		}
	}
}

// ok reads a successful reply's log stream.
func (c *client) ok() {
	c.t.Helper()
	if msg, ok := c.stderr(); !ok {
		c.t.Fatalf("error from the daemon: %s", msg)
	}
}

// closed waits for the server to end the connection.
func (c *client) closed() error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(10 * time.Second):
		c.t.Fatal("the daemon did not close the connection")
		return nil
	}
}

// narOf is the NAR of a regular file with these contents.
func narOf(t *testing.T, contents string) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := nar.Dump(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// framed writes data as a framed stream in chunks of n.
func (c *client) framed(data []byte, n int) {
	for len(data) > 0 {
		k := min(n, len(data))
		c.w.U64(uint64(k))
		c.w.Write(data[:k])
		data = data[k:]
	}
	c.w.U64(0)
}

// fixedPath is the flat sha256 fixed-output path of contents.
func fixedPath(t *testing.T, name, contents string) (storepath.Path, storepath.ContentAddress) {
	t.Helper()
	ca := storepath.ContentAddress{Hash: nixhash.Sum(nixhash.SHA256, []byte(contents))}
	p, err := storepath.Dir("/store").MakeCA(name, ca, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return p, ca
}
