package daemon

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/store/nixbase32"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

const (
	opIsValid  = 1
	opAddStore = 7
	opQPI      = 26
	opAddNar   = 39
	opAddMulti = 44
	opAddSigs  = 37
	opBuildDrv = 36
	opSetOpts  = 19
)

// somePath is an input-addressed-looking path named name.
func somePath(name string) storepath.Path {
	h := nixhash.Sum(nixhash.SHA256, []byte(name))
	p, err := storepath.ParseBase(nixbase32.EncodeToString(h.Digest()[:20]) + "-" + name)
	if err != nil {
		panic(err)
	}
	return p
}

func (c *client) isValid(p string) bool {
	c.t.Helper()
	c.w.U64(opIsValid)
	c.w.String(p)
	c.flush()
	c.ok()
	return c.u64() != 0
}

// addNar sends AddToStoreNar of a file with contents, claiming narHash.
func (c *client) addNar(p storepath.Path, contents string, hash nixhash.Hash, ca string, dontCheck bool, cut int) {
	n := narOf(c.t, contents)
	c.w.U64(opAddNar)
	c.w.String("/store/" + p.Base())
	c.w.String("")
	c.w.String(hash.Hex())
	c.w.Strings(nil)
	c.w.U64(0)
	c.w.U64(uint64(len(n)))
	c.w.U64(0)
	c.w.Strings(nil)
	c.w.String(ca)
	c.w.U64(0)
	c.w.Bool(dontCheck)
	if cut > 0 {
		n = n[:cut]
	}
	c.framed(n, 7)
	c.flush()
}

func TestHandshakeQueryClose(t *testing.T) {
	c := dial(t, testServer(t), true)
	c.handshake()
	if c.isValid("/store/" + somePath("x").Base()) {
		t.Fatal("an empty store has a valid path")
	}
	c.nc.Close()
	if err := c.closed(); err != nil {
		t.Fatalf("a client closing between operations is not an error: %v", err)
	}
}

func TestBadMagic(t *testing.T) {
	c := dial(t, testServer(t), true)
	c.w.U64(0x1234)
	c.flush()
	if err := c.closed(); err == nil || !strings.Contains(err.Error(), "not a Nix client") {
		t.Fatalf("bad magic: %v", err)
	}
}

// Errors before the work starts (an unknown op, an argument that does not
// decode) are sent twice and end the connection, as Nix's daemon does.
func TestFatalErrors(t *testing.T) {
	tests := []struct {
		name string
		send func(c *client)
		want string
	}{
		{"unknown op", func(c *client) { c.w.U64(99) }, "invalid operation 99"},
		{"not a store path", func(c *client) { c.w.U64(opIsValid); c.w.String("/not/a/store/path") }, `worker op 1 (IsValidPath) field "path"`},
		{"bad hash part", func(c *client) { c.w.U64(opIsValid); c.w.String("/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x") }, "invalid character 'e'"},
		{"oversized name", func(c *client) { c.w.U64(opAddStore); c.w.U64(1 << 40) },
			`worker op 7 (AddToStore) field "name" is 1099511627776 bytes long, more than 65536`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, testServer(t), true)
			c.handshake()
			tt.send(c)
			c.flush()
			for i := 0; i < 2; i++ {
				msg, ok := c.stderr()
				if ok || !strings.Contains(msg, tt.want) {
					t.Fatalf("error %d: %q, want one containing %q", i+1, msg, tt.want)
				}
			}
			if err := c.closed(); err == nil {
				t.Fatal("the connection ended without an error")
			}
		})
	}
}

// An operation number that Nix cannot read (over 32 bits) ends the
// connection at once: there is no operation to answer.
func TestOpTooLarge(t *testing.T) {
	c := dial(t, testServer(t), true)
	c.handshake()
	c.w.U64(1 << 33)
	c.flush()
	if err := c.closed(); err == nil || !strings.Contains(err.Error(), `field "operation" is 8589934592`) {
		t.Fatalf("op 1<<33: %v", err)
	}
}

func TestAddToStoreNar(t *testing.T) {
	srv := testServer(t)
	c := dial(t, srv, true)
	c.handshake()
	good := narOf(t, "hello\n")
	hash := nixhash.Sum(nixhash.SHA256, good)
	p := somePath("hello")

	// A wrong hash: one error, nothing registered, the connection goes on.
	c.addNar(p, "hello\n", nixhash.Sum(nixhash.SHA256, []byte("other")), "", true, 0)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "hash mismatch") {
		t.Fatalf("wrong narHash: %q", msg)
	}
	// A NAR cut short inside complete frames.
	c.addNar(p, "hello\n", hash, "", true, 40)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "truncated") {
		t.Fatalf("truncated NAR: %q", msg)
	}
	// Unsigned and not content-addressed, with the check asked for.
	c.addNar(p, "hello\n", hash, "", false, 0)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "signature") {
		t.Fatalf("unsigned: %q", msg)
	}
	if c.isValid("/store/" + p.Base()) {
		t.Fatal("a refused upload made the path valid")
	}
	c.addNar(p, "hello\n", hash, "", true, 0)
	c.ok()
	if !c.isValid("/store/" + p.Base()) {
		t.Fatal("the upload did not make the path valid")
	}
	c.w.U64(opQPI)
	c.w.String("/store/" + p.Base())
	c.flush()
	c.ok()
	if c.u64() != 1 {
		t.Fatal("QueryPathInfo: not valid")
	}
	if d := c.str(); d != "" {
		t.Fatalf("deriver %q", d)
	}
	if h := c.str(); h != hash.Hex() {
		t.Fatalf("narHash %q, want %q", h, hash.Hex())
	}
	c.strs()
	c.u64()
	if n := c.u64(); n != uint64(len(good)) {
		t.Fatalf("narSize %d", n)
	}
}

// A content-addressed upload needs no signature, even from an untrusted
// client, but its contents must match its address.
func TestAddToStoreNarCA(t *testing.T) {
	c := dial(t, testServer(t), false)
	c.handshake()
	hash := nixhash.Sum(nixhash.SHA256, narOf(t, "data"))
	p, ca := fixedPath(t, "data", "data")
	q, _ := fixedPath(t, "other", "other")
	// The address of another path's contents.
	wrong := fmt.Sprintf("fixed:%s", nixhash.Sum(nixhash.SHA256, []byte("other")))
	c.addNar(q, "data", hash, wrong, true, 0)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "mismatch") {
		t.Fatalf("wrong content address: %q", msg)
	}
	c.addNar(p, "data", hash, ca.String(), false, 0)
	c.ok()
	if !c.isValid("/store/" + p.Base()) {
		t.Fatal("not valid")
	}
}

// A client that vanishes mid-upload leaves nothing; others go on.
func TestDisconnectMidUpload(t *testing.T) {
	srv := testServer(t)
	c := dial(t, srv, true)
	c.handshake()
	good := narOf(t, strings.Repeat("x", 100000))
	p := somePath("big")
	c.w.U64(opAddNar)
	c.w.String("/store/" + p.Base())
	c.w.String("")
	c.w.String(nixhash.Sum(nixhash.SHA256, good).Hex())
	c.w.Strings(nil)
	c.w.U64(0)
	c.w.U64(uint64(len(good)))
	c.w.U64(0)
	c.w.Strings(nil)
	c.w.String("")
	c.w.U64(0)
	c.w.U64(1)
	c.w.U64(uint64(len(good)))
	c.w.Write(good[:50000])
	c.flush()
	c.nc.Close()
	if err := c.closed(); err == nil {
		t.Fatal("a vanished client's upload ended without an error")
	}
	if ok, _ := srv.Store.IsValid(p); ok {
		t.Fatal("half an upload is valid")
	}
	d := dial(t, srv, true)
	d.handshake()
	if d.isValid("/store/" + p.Base()) {
		t.Fatal("another connection sees half an upload")
	}
}

func multiEntry(c *client, p storepath.Path, refs []string, contents string, hash *nixhash.Hash) {
	n := narOf(c.t, contents)
	h := nixhash.Sum(nixhash.SHA256, n)
	if hash != nil {
		h = *hash
	}
	c.payload.String("/store/" + p.Base())
	c.payload.String("")
	c.payload.String(h.Hex())
	c.payload.Strings(refs)
	c.payload.U64(0)
	c.payload.U64(uint64(len(n)))
	c.payload.U64(1)
	c.payload.Strings(nil)
	c.payload.String("")
	c.payload.Write(n)
}

func TestAddMultipleToStore(t *testing.T) {
	srv := testServer(t)
	c := dial(t, srv, true)
	c.handshake()
	a, b := somePath("a"), somePath("b")
	bad := nixhash.Sum(nixhash.SHA256, []byte("bad"))
	missing := "/store/" + somePath("missing").Base()
	send := func(second *nixhash.Hash, refs ...string) {
		var buf bytes.Buffer
		c.startPayload(&buf)
		c.payload.U64(2)
		multiEntry(c, a, nil, "a", nil)
		multiEntry(c, b, append([]string{"/store/" + a.Base()}, refs...), "b", second)
		c.payload.Flush()
		c.w.U64(opAddMulti)
		c.w.U64(0)
		c.w.U64(1)
		c.framed(buf.Bytes(), 100)
		c.flush()
	}
	send(&bad)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "hash mismatch") {
		t.Fatalf("a bad second path: %q", msg)
	}
	if c.isValid("/store/"+a.Base()) || c.isValid("/store/"+b.Base()) {
		t.Fatal("a failed AddMultipleToStore registered a path")
	}
	// The second path's reference is not valid: the whole batch fails at
	// registration, in one transaction.
	send(nil, missing)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "not a valid path") {
		t.Fatalf("a reference not valid: %q", msg)
	}
	if c.isValid("/store/"+a.Base()) || c.isValid("/store/"+b.Base()) {
		t.Fatal("a failed AddMultipleToStore registered a path")
	}
	send(nil)
	c.ok()
	if !c.isValid("/store/"+a.Base()) || !c.isValid("/store/"+b.Base()) {
		t.Fatal("AddMultipleToStore did not register both paths")
	}
	refs, _ := srv.Store.Referrers(a)
	if len(refs) != 1 || refs[0] != b {
		t.Fatalf("referrers of a: %v", refs)
	}
}

func TestAddToStoreMethods(t *testing.T) {
	c := dial(t, testServer(t), true)
	c.handshake()
	add := func(name, method string, payload []byte) string {
		c.w.U64(opAddStore)
		c.w.String(name)
		c.w.String(method)
		c.w.Strings(nil)
		c.w.U64(0)
		c.framed(payload, 3)
		c.flush()
		c.ok()
		p := c.str()
		c.str() // deriver
		c.str() // narHash
		c.strs()
		c.u64()
		c.u64()
		c.u64()
		c.strs()
		if ca := c.str(); !strings.HasPrefix(ca, strings.SplitN(method, ":", 2)[0]) {
			t.Errorf("%s: ca %q", method, ca)
		}
		return p
	}
	flat, _ := fixedPath(t, "f", "contents")
	if got := add("f", "fixed:sha256", []byte("contents")); got != "/store/"+flat.Base() {
		t.Errorf("flat: %s, want %s", got, flat.Base())
	}
	text := storepath.ContentAddress{Text: true, Hash: nixhash.Sum(nixhash.SHA256, []byte("text"))}
	tp, _ := storepath.Dir("/store").MakeCA("t", text, nil, false)
	if got := add("t", "text:sha256", []byte("text")); got != "/store/"+tp.Base() {
		t.Errorf("text: %s, want %s", got, tp.Base())
	}
	n := narOf(t, "rec")
	rec := storepath.ContentAddress{Recursive: true, Hash: nixhash.Sum(nixhash.SHA256, n)}
	rp, _ := storepath.Dir("/store").MakeCA("r", rec, nil, false)
	if got := add("r", "fixed:r:sha256", n); got != "/store/"+rp.Base() {
		t.Errorf("recursive: %s, want %s", got, rp.Base())
	}
	rec1 := storepath.ContentAddress{Recursive: true, Hash: nixhash.Sum(nixhash.SHA1, n)}
	rp1, _ := storepath.Dir("/store").MakeCA("r1", rec1, nil, false)
	if got := add("r1", "fixed:r:sha1", n); got != "/store/"+rp1.Base() {
		t.Errorf("recursive sha1: %s, want %s", got, rp1.Base())
	}
	// A bad NAR in a complete payload: one error, the connection goes on.
	c.w.U64(opAddStore)
	c.w.String("r2")
	c.w.String("fixed:r:sha256")
	c.w.Strings(nil)
	c.w.U64(0)
	c.framed([]byte("not a nar at all"), 4)
	c.flush()
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "r2") {
		t.Fatalf("bad NAR: %q", msg)
	}
	if !c.isValid("/store/" + rp.Base()) {
		t.Fatal("the connection did not go on")
	}
}

func TestUntrusted(t *testing.T) {
	c := dial(t, testServer(t), false)
	c.handshake()
	c.w.U64(opAddSigs)
	c.w.String("/store/" + somePath("x").Base())
	c.w.Strings([]string{"k:sig"})
	c.flush()
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "not a trusted user") {
		t.Fatalf("AddSignatures: %q", msg)
	}
	// dontCheckSigs means nothing from an untrusted client.
	n := narOf(t, "u")
	c.addNar(somePath("u"), "u", nixhash.Sum(nixhash.SHA256, n), "", true, 0)
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "signature") {
		t.Fatalf("untrusted unsigned upload: %q", msg)
	}
	// An input-addressed BuildDerivation.
	c.w.U64(opBuildDrv)
	c.w.String("/store/" + somePath("d.drv").Base())
	c.w.U64(1)
	c.w.String("out")
	c.w.String("/store/" + somePath("d").Base())
	c.w.String("")
	c.w.String("")
	c.w.Strings(nil)
	c.w.String("x86_64-linux")
	c.w.String("/bin/sh")
	c.w.Strings(nil)
	c.w.U64(0)
	c.w.U64(0)
	c.flush()
	if msg, ok := c.stderr(); ok || !strings.Contains(msg, "input-addressed") {
		t.Fatalf("BuildDerivation: %q", msg)
	}
	if c.isValid("/store/" + somePath("u").Base()) {
		t.Fatal("valid")
	}
}

func TestApplyOverride(t *testing.T) {
	srv := &Server{TrustedSubstituters: []string{"https://cache.example"}}
	o := defaultOptions()
	if msg := srv.applyOverride(&o, false, "max-jobs", "3"); msg == "" || o.MaxJobs != -1 {
		t.Errorf("untrusted max-jobs: %q, %d", msg, o.MaxJobs)
	}
	if msg := srv.applyOverride(&o, false, "timeout", "9"); msg != "" || o.Timeout.Seconds() != 9 {
		t.Errorf("untrusted timeout: %q, %v", msg, o.Timeout)
	}
	if msg := srv.applyOverride(&o, false, "substituters", "https://cache.example https://evil.example"); msg == "" || len(o.Substituters) != 1 {
		t.Errorf("untrusted substituters: %q, %v", msg, o.Substituters)
	}
	if msg := srv.applyOverride(&o, true, "max-jobs", "3"); msg != "" || o.MaxJobs != 3 {
		t.Errorf("trusted max-jobs: %q, %d", msg, o.MaxJobs)
	}
}

func TestAuthorize(t *testing.T) {
	srv := &Server{}
	if p, err := srv.Authorize(0, 0, 1); err != nil || !p.Trusted {
		t.Errorf("root by default: %+v, %v", p, err)
	}
	if p, err := srv.Authorize(65534, 65534, 1); err != nil || p.Trusted {
		t.Errorf("nobody by default: %+v, %v", p, err)
	}
	srv = &Server{TrustedUsers: []string{"@root"}, AllowedUsers: []string{"someone"}}
	if p, err := srv.Authorize(0, 0, 1); err != nil || !p.Trusted {
		t.Errorf("root by its group: %+v, %v", p, err)
	}
	if _, err := srv.Authorize(65534, 65534, 1); err == nil || !strings.Contains(err.Error(), "may not connect") {
		t.Errorf("nobody not allowed: %v", err)
	}
}

// Many connections at once, each adding and querying: no interference.
func TestConcurrentConnections(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := testServer(t)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		c := dial(t, srv, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.handshake()
			for j := 0; j < 10; j++ {
				contents := fmt.Sprint(i, "-", j%3)
				p, ca := fixedPath(t, "f", contents)
				c.addNar(p, contents, nixhash.Sum(nixhash.SHA256, narOf(t, contents)), ca.String(), false, 0)
				c.ok()
				if !c.isValid("/store/" + p.Base()) {
					t.Errorf("%s not valid", p.Base())
				}
			}
			c.nc.Close()
			if err := c.closed(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Every connection's goroutines are gone with it.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the connections closed, %d before", n, before)
	}
}

func le(n uint64) []byte {
	var b [8]byte
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return b[:]
}
