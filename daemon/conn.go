package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"

	"storefs/store"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// The handshake's numbers (docs/daemon.md, "Handshake").
const (
	workerMagic1    = 0x6e697863
	workerMagic2    = 0x6478696f
	protocolVersion = 0x122 // 1.34
	minClient       = 0x10a // the oldest client Nix 2.8 serves
	// NixVersion is what the handshake says the daemon is: the Nix
	// version whose protocol it speaks (nix store ping prints it).
	NixVersion = "2.8.0"
)

// Engine realises paths: it is the goal engine, *goals.Worker.
type Engine interface {
	// BuildDerivation makes the wanted outputs of drv valid (all when
	// none is named) and returns every output by id.
	BuildDerivation(ctx context.Context, drv storepath.Path, wanted ...string) (map[string]storepath.Path, error)
	// Realise makes p valid: by its derivation if the store knows one,
	// else by substitution.
	Realise(ctx context.Context, p storepath.Path) error
}

// Peer is who is on the other end of a connection.
type Peer struct {
	UID, GID uint32
	PID      int32
	User     string // "" when the uid has no name
	Trusted  bool
}

// Conn is one client connection. Its methods other than the log ones
// (Log, StartActivity, Result, StopActivity) are called only from the
// goroutine that runs Serve.
type Conn struct {
	srv    *Server
	s      *store.Store
	dir    storepath.Dir
	peer   Peer
	r      *wire.Reader
	client uint64 // the client's protocol version

	mu      sync.Mutex // guards w, working, queued, opts.Verbosity reads by Log
	w       *wire.Writer
	working bool     // between startWork and stopWork
	replied bool     // stopWork was called: the result is being written
	queued  []string // log lines from outside the work window
	opts    ClientOptions

	nc    net.Conn         // the socket, when Serve got one: its hang-up cancels builds
	roots *store.TempRoots // this connection's temporary roots; nil until the first
	sink  *logSink         // the build logs of the operation being served, if it builds
	op    uint64           // the operation being served
}

// fatal is an error after which the stream is out of step: the connection
// ends after telling the client, if it can still hear.
type fatal struct{ err error }

func (f *fatal) Error() string { return f.err.Error() }
func (f *fatal) Unwrap() error { return f.err }

// Serve speaks the protocol on rw until the client closes or the stream
// breaks, and closes nothing itself. The error is nil for a client that
// closed between operations.
func (c *Conn) Serve(ctx context.Context, rw io.ReadWriter) (err error) {
	c.r = wire.NewReader(rw)
	c.w = wire.NewWriter(rw)
	c.nc, _ = rw.(net.Conn)
	c.dir = c.s.Dir
	c.opts = defaultOptions()
	defer func() {
		if c.roots != nil {
			c.roots.Close()
		}
		if p := recover(); p != nil {
			err = fmt.Errorf("worker op %d (%s): panic: %v\n%s", c.op, opName(c.op), p, debug.Stack())
		}
	}()
	if err := c.handshake(); err != nil || c.client == 0 {
		return err
	}
	for {
		c.r.SetContext("worker protocol")
		op, err := c.r.Int("operation")
		if err != nil {
			if errors.Is(err, io.EOF) { // closed between operations
				return nil
			}
			return err
		}
		c.op = op
		if err := c.serveOp(ctx, op); err != nil {
			return err
		}
	}
}

func (c *Conn) handshake() error {
	c.r.SetContext("worker handshake")
	magic, err := c.r.U64("magic")
	if errors.Is(err, io.EOF) {
		return nil // connected and left: a probe, not an error
	}
	if err != nil {
		return err
	}
	if magic != workerMagic1 {
		return fmt.Errorf("worker handshake: magic is %#x, want %#x: not a Nix client", magic, workerMagic1)
	}
	c.w.U64(workerMagic2)
	c.w.U64(protocolVersion)
	if err := c.w.Flush(); err != nil {
		return err
	}
	if c.client, err = c.r.Int("client version"); err != nil {
		return err
	}
	if c.client < minClient || c.client>>8 != 1 {
		return fmt.Errorf("worker handshake: client version %#x is not supported (want 1.10 or later)", c.client)
	}
	if minor(c.client) >= 14 {
		affinity, err := c.r.U64("cpu affinity flag")
		if err != nil {
			return err
		}
		if affinity != 0 {
			if _, err := c.r.U64("cpu affinity"); err != nil {
				return err
			}
		}
	}
	if minor(c.client) >= 11 {
		if _, err := c.r.U64("reserve space"); err != nil {
			return err
		}
	}
	if minor(c.client) >= 33 {
		c.w.String(NixVersion)
	}
	c.startWork()
	c.stopWork()
	return c.w.Flush()
}

func minor(v uint64) uint64 { return v & 0xff }

// working returns a context for the work of a long operation: it ends
// when the client hangs up.
func (c *Conn) watch(ctx context.Context) (context.Context, func()) {
	if c.nc == nil {
		return ctx, func() {}
	}
	return watchHangup(ctx, c.nc)
}

// serveOp serves one operation. A nil error means the connection goes on.
func (c *Conn) serveOp(ctx context.Context, op uint64) error {
	h, ok := ops[op]
	name := opName(op)
	c.r.SetContext(fmt.Sprintf("worker op %d (%s)", op, name))
	if !ok {
		// As Nix: an error before the work starts is sent twice (the
		// operation's handler and the connection's), then the end.
		msg := fmt.Sprintf("invalid operation %d", op)
		c.sendError(msg)
		c.sendError(msg)
		return fmt.Errorf("worker protocol: %s", msg)
	}
	c.mu.Lock()
	c.replied = false
	c.mu.Unlock()
	err := h(ctx, c)
	c.mu.Lock()
	started, replied := c.working, c.replied
	c.mu.Unlock()
	if err == nil {
		return c.w.Flush()
	}
	if replied {
		// Part of the result is out: nothing else can be said.
		return err
	}
	var f *fatal
	if !started || errors.As(err, &f) || wire.IsProtocolError(err) {
		// The arguments could not be read: the stream is out of step.
		if !isGone(err) {
			c.sendError(errorText(err))
			if !started {
				c.sendError(errorText(err))
			}
		}
		return err
	}
	c.sendError(errorText(err))
	return c.w.Err()
}

// isGone reports whether the client has gone (nothing can be sent).
func isGone(err error) bool {
	var ne net.Error
	return errors.Is(err, wire.ErrTruncated) || errors.Is(err, io.ErrClosedPipe) || errors.As(err, &ne)
}
