package realise

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"storefs/internal/nginxtest"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

func serveFile(t *testing.T, dir string) string { return "file://" + dir }

func TestSubstituterFile(t *testing.T) { runSubstituterSuite(t, serveFile) }

func TestSubstituterNginx(t *testing.T) {
	runSubstituterSuite(t, func(t *testing.T, dir string) string { return nginxtest.Serve(t, dir) })
}

func TestSubstituterHTTPTest(t *testing.T) {
	runSubstituterSuite(t, func(t *testing.T, dir string) string {
		srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
		t.Cleanup(srv.Close)
		return srv.URL
	})
}

// faultServer serves a cache directory and lets a test break chosen
// requests.
type faultServer struct {
	*httptest.Server
	dir   string
	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request, n int) bool // n counts requests for r's path; true: handled
	count map[string]int
	log   []string
	conns atomic.Int64 // connections accepted
}

func newFaultServer(t *testing.T, dir string) *faultServer {
	fs := &faultServer{dir: dir, count: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	fs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		fs.count[r.URL.Path]++
		n := fs.count[r.URL.Path]
		fs.log = append(fs.log, r.URL.Path+" "+r.Header.Get("Range"))
		fault := fs.fault
		fs.mu.Unlock()
		if fault != nil && fault(w, r, n) {
			return
		}
		files.ServeHTTP(w, r)
	}))
	// Set before Start: the server reads it from its own goroutines.
	fs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fs.conns.Add(1)
		}
	}
	fs.Start()
	t.Cleanup(fs.Close)
	return fs
}

func (fs *faultServer) requests(path string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.count[path]
}

func (fs *faultServer) total() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.log)
}

// halfBody sends the headers of the whole file and half of its bytes.
func halfBody(t *testing.T, w http.ResponseWriter, file string) []byte {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Error(err)
		return nil
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(200)
	w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	return data
}

func TestHTTPFaults(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := f.writeCache(t, "zstd", f.trusted)
	bigNar := "/" + readNarInfo(t, dir, f.big).URL
	treeInfo := "/" + f.tree.HashPart() + ".narinfo"

	t.Run("500-then-success", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if (r.URL.Path == treeInfo || r.URL.Path == bigNar) && n <= 2 {
				http.Error(w, "overloaded", 503)
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		for _, p := range []storepath.Path{f.tree, f.big} {
			if err := d.w.Realise(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.requests(treeInfo); n != 3 {
			t.Errorf("narinfo asked %d times, want 3 (two 503s, then success)", n)
		}
		if n := srv.requests(bigNar); n != 3 {
			t.Errorf("NAR asked %d times, want 3", n)
		}
	})
	t.Run("500-for-ever", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == bigNar {
				http.Error(w, "broken", 500)
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		wantErr(t, d.w.Realise(ctx, f.big), "HTTP 500 Internal Server Error", "after 3 retries")
		if n := srv.requests(bigNar); n != 4 {
			t.Errorf("NAR asked %d times, want 4", n)
		}
	})
	t.Run("403-is-an-error", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == treeInfo {
				http.Error(w, "no", 403)
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		wantErr(t, d.w.Realise(ctx, f.tree), "refusing /store/"+f.tree.Base(), treeInfo+": HTTP 403 Forbidden")
		if n := srv.requests(treeInfo); n != 1 {
			t.Errorf("asked %d times after a 403, want once", n)
		}
	})
	t.Run("stall-then-resume", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == bigNar && n == 1 {
				halfBody(t, w, filepath.Join(dir, bigNar))
				time.Sleep(2 * fastHTTP.StallTimeout)
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		start := time.Now()
		if err := d.w.Realise(ctx, f.big); err != nil {
			t.Fatal(err)
		}
		sameInfo(t, f.src, d.s, f.big, "trusted-1")
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %v", el)
		}
		srv.mu.Lock()
		resumed := strings.Join(srv.log, "\n")
		srv.mu.Unlock()
		if !strings.Contains(resumed, bigNar+" bytes=") {
			t.Errorf("no Range request after the stall:\n%s", resumed)
		}
	})
	t.Run("stall-for-ever", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == bigNar {
				w.WriteHeader(200)
				w.Write([]byte("x"))
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		start := time.Now()
		wantErr(t, d.w.Realise(ctx, f.big), "no data for 300ms: stalled")
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("gave up after %v", el)
		}
	})
	t.Run("broken-connection-then-resume", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path == bigNar && n == 1 {
				halfBody(t, w, filepath.Join(dir, bigNar))
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			}
			return false
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		if err := d.w.Realise(ctx, f.big); err != nil {
			t.Fatal(err)
		}
		if n := srv.requests(bigNar); n != 2 {
			t.Errorf("NAR asked %d times, want 2", n)
		}
	})
	t.Run("no-range-support", func(t *testing.T) {
		srv := newFaultServer(t, dir)
		srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.URL.Path != bigNar {
				return false
			}
			if n == 1 {
				halfBody(t, w, filepath.Join(dir, bigNar))
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return true
			}
			data, _ := os.ReadFile(filepath.Join(dir, bigNar)) // ignores Range: 200 and all of it
			w.Write(data)
			return true
		}
		d := newDest(t, f, []string{srv.URL}, nil)
		if err := d.w.Realise(ctx, f.big); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("connection-refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		d := newDest(t, f, []string{"http://" + addr}, nil)
		err := d.w.Realise(ctx, f.tree)
		warned := d.warnings
		wantErr(t, err, "not valid")
		if len(warned) != 1 || !strings.Contains(warned[0], "is not used") || !strings.Contains(warned[0], "connection refused") {
			t.Errorf("warnings %q", warned)
		}
	})
}

// A remote cache's answers are remembered: a miss for NegativeTTL, a hit
// for PositiveTTL, and nix-cache-info too; nothing goes over the network
// while they are fresh.
func TestNarInfoCacheTTL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := f.writeCache(t, "none", f.trusted)
	// The cache lacks tree at first.
	treeInfo := filepath.Join(dir, f.tree.HashPart()+".narinfo")
	saved, err := os.ReadFile(treeInfo)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(treeInfo)
	srv := newFaultServer(t, dir)
	var now atomic.Int64
	now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	clock := func() time.Time { return time.Unix(now.Load(), 0) }
	d := newDest(t, f, []string{srv.URL}, func(o *SubstituterOptions) { o.Now = clock })

	if _, err := d.sub.Query(ctx, f.tree); err == nil {
		t.Fatal("found a path the cache lacks")
	}
	first := srv.total()
	if first != 2 {
		t.Errorf("%d requests for the first lookup, want 2 (nix-cache-info, narinfo)", first)
	}
	os.WriteFile(treeInfo, saved, 0o644)

	// A new Substituter (a new process) over the same store: no network.
	sub2, err := NewSubstituter(d.s, []string{srv.URL}, SubstituterOptions{TrustedKeys: []signature.PublicKey{f.trusted.Public()}, RequireSigs: true, Now: clock, HTTP: fastHTTP})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub2.Query(ctx, f.tree); err == nil {
		t.Error("a remembered miss was not used")
	}
	if n := srv.total(); n != first {
		t.Errorf("%d more requests for a remembered miss", n-first)
	}
	now.Add(int64(DefaultNegativeTTL/time.Second) + 1)
	if _, err := sub2.Query(ctx, f.tree); err != nil {
		t.Errorf("after the negative TTL: %v", err)
	}
	afterHit := srv.total()
	// The hit is remembered for a month, even if the cache loses it.
	os.Remove(treeInfo)
	now.Add(int64(29 * 24 * time.Hour / time.Second))
	sub3, _ := NewSubstituter(d.s, []string{srv.URL}, SubstituterOptions{TrustedKeys: []signature.PublicKey{f.trusted.Public()}, RequireSigs: true, Now: clock, HTTP: fastHTTP})
	if _, err := sub3.Query(ctx, f.tree); err != nil {
		t.Errorf("remembered hit: %v", err)
	}
	if n := srv.total(); n != afterHit+1 { // nix-cache-info is older than 7 days
		t.Errorf("%d requests for a remembered hit, want 1 (nix-cache-info)", n-afterHit)
	}
	now.Add(int64(2 * 24 * time.Hour / time.Second))
	if _, err := sub3.Query(ctx, f.tree); err == nil {
		t.Error("a hit older than the positive TTL was used")
	}
}

// Connections are kept alive: a closure of many files needs few of them.
func TestHTTPKeepAlive(t *testing.T) {
	f := newFixture(t)
	dir := f.writeCache(t, "xz", f.trusted)
	srv := newFaultServer(t, dir)
	d := newDest(t, f, []string{srv.URL}, nil)
	for _, p := range []storepath.Path{f.refs, f.big} {
		if err := d.w.Realise(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d connections for %d requests", srv.conns.Load(), srv.total())
	// nix-cache-info, then up to two lookups and fetches at a time.
	if n, reqs := srv.conns.Load(), srv.total(); n > 4 || reqs < 9 {
		t.Errorf("%d connections for %d requests", n, reqs)
	}
}

// A zstd file followed by skippable frames without end: the download stops
// at FileSize when the narinfo gives it, and otherwise at the bound its
// NarSize allows, instead of reading whatever the server sends.
func TestFileStopsAtItsSize(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name     string
		fileSize bool
		want     string
	}{
		{"with-FileSize", true, "longer than its FileSize"},
		{"without-FileSize", false, "longer than what its NarSize allows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := f.writeCache(t, "zstd", f.trusted)
			if !c.fileSize {
				editNarInfo(t, dir, f.text, nil, func(ni *narinfo.NarInfo) { ni.FileSize, ni.FileHash = 0, nixhash.Hash{} })
			}
			ni := readNarInfo(t, dir, f.text)
			narURL := "/" + ni.URL
			srv := newFaultServer(t, dir)
			var sent atomic.Int64
			srv.fault = func(w http.ResponseWriter, r *http.Request, n int) bool {
				if r.URL.Path != narURL {
					return false
				}
				data, err := os.ReadFile(filepath.Join(dir, ni.URL))
				if err != nil {
					t.Error(err)
					return true
				}
				w.WriteHeader(200)
				w.Write(data)
				// Skippable frames (magic 0x184D2A50), 64 KiB each, for ever.
				frame := make([]byte, 8+64<<10)
				copy(frame, []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 1, 0})
				for r.Context().Err() == nil {
					if _, err := w.Write(frame); err != nil {
						return true
					}
					sent.Add(int64(len(frame)))
				}
				return true
			}
			d := newDest(t, f, []string{srv.URL}, nil)
			start := time.Now()
			err := d.w.Realise(context.Background(), f.text)
			el := time.Since(start)
			t.Logf("NarSize %d, FileSize %d: gave up after %v, the server sent %d bytes of skippable frames", ni.NarSize, ni.FileSize, el, sent.Load())
			wantErr(t, err, c.want)
			if el > 20*time.Second {
				t.Errorf("took %v", el)
			}
		})
	}
}
