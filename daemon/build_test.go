package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storefs/store/derivation"
	"storefs/store/nixhash"
	"storefs/store/storepath"
	"storefs/store/wire"
)

func TestAddBuildLog(t *testing.T) {
	srv := testServer(t)
	srv.NixLogDir = t.TempDir()
	drv := somePath("x.drv")
	for _, trusted := range []bool{false, true} {
		c := dial(t, srv, trusted)
		c.handshake()
		c.w.U64(45)
		c.w.String(drv.Base())
		c.framed([]byte("line 1\nline 2\n"), 5)
		c.flush()
		msg, ok := c.stderr()
		if !trusted {
			if ok || !strings.Contains(msg, "not a trusted user") {
				t.Fatalf("untrusted AddBuildLog: %q", msg)
			}
			continue
		}
		if !ok {
			t.Fatalf("AddBuildLog: %s", msg)
		}
		c.u64()
	}
	data, err := os.ReadFile(nixLogPath(srv.NixLogDir, drv))
	if err != nil || string(data) != "line 1\nline 2\n" {
		t.Fatalf("the log where nix log reads it: %q, %v", data, err)
	}
}

// blockingEngine builds until its context ends.
type blockingEngine struct {
	started, cancelled chan struct{}
	fail               error
	opts               chan ClientOptions // if set, hears the client's options
}

func (e *blockingEngine) BuildDerivation(ctx context.Context, drv storepath.Path, wanted ...string) (map[string]storepath.Path, error) {
	if e.opts != nil {
		o, _ := OptionsFromContext(ctx)
		e.opts <- o
	}
	if e.fail != nil && strings.HasSuffix(drv.Name(), "fails.drv") {
		return nil, e.fail
	}
	e.started <- struct{}{}
	<-ctx.Done()
	e.cancelled <- struct{}{}
	return nil, ctx.Err()
}

func (e *blockingEngine) Realise(ctx context.Context, p storepath.Path) error { return nil }

func addDrv(t *testing.T, srv *Server, name string) storepath.Path {
	t.Helper()
	d := &derivation.Derivation{Outputs: map[string]derivation.Output{"out": {}}, InputDrvs: map[storepath.Path][]string{},
		System: "x86_64-linux", Builder: "/bin/sh", Env: map[string]string{"name": name, "out": "", "builder": "/bin/sh", "system": "x86_64-linux"}}
	info, err := srv.Store.AddDerivation(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return info.Path
}

func (c *client) buildPaths(paths ...string) {
	c.w.U64(9)
	c.w.Strings(paths)
	c.w.U64(0)
	c.flush()
}

// A client that hangs up while its build runs stops wanting it.
func TestHangupCancelsBuild(t *testing.T) {
	srv := testServer(t)
	eng := &blockingEngine{started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
	srv.Engine = eng
	drv := addDrv(t, srv, "slow")
	c := dial(t, srv, true)
	c.handshake()
	c.buildPaths("/store/" + drv.Base() + "!out")
	<-eng.started
	c.nc.Close()
	select {
	case <-eng.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the build went on after its client hung up")
	}
	c.closed()
}

// Without keep-going, one failed target stops the others; with it, they
// go on.
func TestKeepGoing(t *testing.T) {
	for _, keepGoing := range []bool{false, true} {
		srv := testServer(t)
		eng := &blockingEngine{started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1), fail: fmt.Errorf("it fails")}
		srv.Engine = eng
		slow, fails := addDrv(t, srv, "slow"), addDrv(t, srv, "fails")
		c := dial(t, srv, true)
		c.handshake()
		c.w.U64(opSetOpts)
		kg := uint64(0)
		if keepGoing {
			kg = 1
		}
		for _, v := range []uint64{0, kg, 0, 0, 1, 0, 1, 7, 0, 0, 0, 1, 0} {
			c.w.U64(v)
		}
		c.flush()
		c.ok()
		c.buildPaths("/store/"+slow.Base()+"!out", "/store/"+fails.Base()+"!out")
		<-eng.started
		select {
		case <-eng.cancelled:
			if keepGoing {
				t.Fatal("with keep-going, a failure stopped another target")
			}
			if msg, ok := c.stderr(); ok || !strings.Contains(msg, "it fails") {
				t.Fatalf("BuildPaths: %q", msg)
			}
		case <-time.After(time.Second):
			if !keepGoing {
				t.Fatal("without keep-going, a failure did not stop the other target")
			}
			c.nc.Close()
			<-eng.cancelled
		}
		c.nc.Close()
		c.closed()
	}
}

// loggingEngine prints lines as a builder would while it builds.
type loggingEngine struct {
	srv    *Server
	lines  int
	took   chan time.Duration
	events bool // also say when the build starts and ends
}

func (e *loggingEngine) BuildDerivation(ctx context.Context, drv storepath.Path, wanted ...string) (map[string]storepath.Path, error) {
	start := time.Now()
	if e.events {
		e.srv.BuildStarted(drv)
	}
	for i := 0; i < e.lines; i++ {
		e.srv.LogLine(drv, fmt.Sprintf("line %d", i))
	}
	if e.events {
		e.srv.BuildEnded(drv, nil)
	}
	e.took <- time.Since(start)
	return nil, nil
}

func (e *loggingEngine) Realise(ctx context.Context, p storepath.Path) error { return nil }

// A build's lines reach the client inside its build activity, in order,
// with the progress of the request's builds.
func TestBuildLogLines(t *testing.T) {
	for _, events := range []bool{false, true} {
		t.Run(fmt.Sprint("events=", events), func(t *testing.T) { testBuildLogLines(t, events) })
	}
}

func testBuildLogLines(t *testing.T, events bool) {
	srv := testServer(t)
	eng := &loggingEngine{srv: srv, lines: 3, took: make(chan time.Duration, 1), events: events}
	srv.Engine = eng
	drv := addDrv(t, srv, "logs")
	c := dial(t, srv, true)
	c.handshake()
	c.buildPaths("/store/" + drv.Base() + "!out")
	var got []string
	var act, builds uint64
	var progress []string
	for done := false; !done; {
		switch tag := c.u64(); tag {
		case stderrStartActivity:
			id := c.u64()
			c.u64()
			typ := c.u64()
			text := c.str()
			c.fields()
			c.u64()
			switch {
			case typ == actBuilds:
				builds = id
			case typ == actBuild && strings.Contains(text, drv.Base()):
				act = id
			default:
				t.Fatalf("activity type %d %q", typ, text)
			}
		case stderrResult:
			id, typ := c.u64(), c.u64()
			switch {
			case id == builds && typ == resProgress:
				var p []string
				for n := c.u64(); n > 0; n-- {
					c.u64()
					p = append(p, fmt.Sprint(c.u64()))
				}
				progress = append(progress, strings.Join(p, "/"))
			case id == act && typ == resBuildLog:
				c.u64() // one field
				c.u64() // a string
				got = append(got, c.str())
			default:
				t.Fatalf("result type %d of activity %d", typ, id)
			}
		case stderrStopActivity:
			switch id := c.u64(); id {
			case act:
				got = append(got, "stop")
			case builds:
				got = append(got, "builds stop")
			default:
				t.Fatalf("stop of activity %d", id)
			}
		case stderrLast:
			done = true
		default:
			t.Fatalf("tag %#x", tag)
		}
	}
	// done/expected/running/failed: the build counts as running from its
	// first line; the fake engine reports no end.
	want := "0/1/0/0 0/1/1/0"
	if events {
		want += " 1/1/0/0"
	}
	if strings.Join(progress, " ") != want {
		t.Errorf("progress: %v, want %s", progress, want)
	}
	if strings.Join(got, ",") != "line 0,line 1,line 2,stop,builds stop" {
		t.Fatalf("log stream: %v", got)
	}
	c.u64()
}

// A client that does not read never holds up the builder's output.
func TestBuildLogSlowClient(t *testing.T) {
	srv := testServer(t)
	eng := &loggingEngine{srv: srv, lines: 200000, took: make(chan time.Duration, 1)}
	srv.Engine = eng
	drv := addDrv(t, srv, "noisy")
	c := dial(t, srv, true)
	c.handshake()
	c.buildPaths("/store/" + drv.Base() + "!out") // and never read
	select {
	case d := <-eng.took:
		t.Logf("200000 lines to a client that does not read: %v", d)
	case <-time.After(10 * time.Second):
		t.Fatal("the builder's output waited for a client that does not read")
	}
	c.nc.Close()
	c.closed()
}

// Closing the listener stops the builds of the connections still open, and
// Serve returns once they have ended.
func TestServeStopCancelsBuilds(t *testing.T) {
	srv := testServer(t)
	eng := &blockingEngine{started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1)}
	srv.Engine = eng
	drv := addDrv(t, srv, "slow")
	sock := filepath.Join(t.TempDir(), "s")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &client{t: t, nc: nc, r: wire.NewReader(nc), w: wire.NewWriter(nc)}
	c.handshake()
	c.buildPaths("/store/" + drv.Base() + "!out")
	<-eng.started
	l.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-eng.cancelled:
	default:
		t.Fatal("Serve returned with a build still running")
	}
}

// The build operations hand the client's options to the engine.
func TestOptionsReachEngine(t *testing.T) {
	srv := testServer(t)
	eng := &blockingEngine{started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1), opts: make(chan ClientOptions, 1)}
	srv.Engine = eng
	drv := addDrv(t, srv, "slow")
	c := dial(t, srv, true)
	c.handshake()
	c.w.U64(opSetOpts)
	for _, v := range []uint64{0, 1, 1, 2, 7, 30, 1, 7, 0, 0, 4, 1} {
		c.w.U64(v)
	}
	c.w.U64(1)
	c.w.String("timeout")
	c.w.String("9")
	c.flush()
	c.ok()
	c.buildPaths("/store/" + drv.Base() + "!out")
	o := <-eng.opts
	<-eng.started
	if !o.KeepGoing || !o.Fallback || o.MaxJobs != 7 || o.MaxSilentTime != 30*time.Second || o.Cores != 4 || o.Timeout != 9*time.Second {
		t.Errorf("options the engine got: %+v", o)
	}
	c.nc.Close()
	<-eng.cancelled
	c.closed()
}

// An untrusted client may BuildDerivation a fixed-output derivation the
// store does not have: it is added from what was sent, then built.
func TestBuildDerivationFixedOutput(t *testing.T) {
	srv := testServer(t)
	eng := &fakeEngine{}
	srv.Engine = eng
	c := dial(t, srv, false)
	c.handshake()
	h := nixhash.Sum(nixhash.SHA256, []byte("fixed"))
	out, err := storepath.Dir("/store").MakeFixed("fod", false, h, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	c.w.U64(opBuildDrv)
	c.w.String("/store/" + somePath("fod.drv").Base()) // not valid here
	c.w.U64(1)
	c.w.String("out")
	c.w.String("/store/" + out.Base())
	c.w.String("sha256")
	c.w.String(h.Hex())
	c.w.Strings(nil)
	c.w.String("x86_64-linux")
	c.w.String("/bin/sh")
	c.w.Strings([]string{"-c", "true"})
	env := [][2]string{{"builder", "/bin/sh"}, {"name", "fod"}, {"out", "/store/" + out.Base()}, {"outputHash", h.Hex()},
		{"outputHashAlgo", "sha256"}, {"outputHashMode", "flat"}, {"system", "x86_64-linux"}}
	c.w.U64(uint64(len(env)))
	for _, kv := range env {
		c.w.String(kv[0])
		c.w.String(kv[1])
	}
	c.w.U64(0)
	c.flush()
	c.ok()
	status := c.u64()
	c.str()
	for i := 0; i < 4; i++ {
		c.u64()
	}
	for n := c.u64(); n > 0; n-- {
		c.str()
		c.str()
	}
	if status != statusBuilt {
		t.Fatalf("status %d", status)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if len(eng.asked) != 1 || !strings.HasPrefix(eng.asked[0], "build ") || !strings.HasSuffix(eng.asked[0], "-fod.drv") {
		t.Fatalf("the engine was asked %v", eng.asked)
	}
	drv, _ := storepath.ParseBase(strings.TrimPrefix(eng.asked[0], "build "))
	outs, err := srv.Store.DerivationOutputs(drv)
	if err != nil || outs["out"] != out {
		t.Fatalf("the added derivation's outputs: %v, %v", outs, err)
	}
}
