package fusefs

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"storefs/store"
	"storefs/store/storepath"
)

// Realiser makes a path valid, blocking until it is or until ctx ends
// (goals.Worker implements it). It returns an error that IsUnknown
// recognises when nothing can realise the path.
type Realiser interface {
	Realise(ctx context.Context, p storepath.Path) error
}

// Options tune the mount.
type Options struct {
	// NegativeTTL is how long a name that nothing can realise is
	// answered with ENOENT without asking again.
	NegativeTTL time.Duration
	// EntryTimeout is how long the kernel caches entries and attributes
	// below the root (valid paths are immutable).
	EntryTimeout time.Duration
	// IsUnknown tells a realisation error that means "no such path".
	IsUnknown func(error) bool
	// OnFailure hears every failed realisation (for status and logs).
	OnFailure func(p storepath.Path, err error)
	// Logf logs; nil means the standard logger.
	Logf func(format string, args ...any)
	// Debug logs every FUSE request.
	Debug bool
}

// FS is the filesystem: the store and what realises paths.
type FS struct {
	store    *store.Store
	realiser Realiser
	opts     Options

	negMu sync.Mutex           // guards neg
	neg   map[string]time.Time // name -> when its ENOENT expires
}

// New makes the filesystem over s.
func New(s *store.Store, r Realiser, opts Options) *FS {
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = time.Second
	}
	if opts.EntryTimeout <= 0 {
		opts.EntryTimeout = time.Hour
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.IsUnknown == nil {
		opts.IsUnknown = func(error) bool { return false }
	}
	return &FS{store: s, realiser: r, opts: opts, neg: map[string]time.Time{}}
}

// Mount mounts the filesystem read-only at dir (normally the store dir)
// and serves it until the server is unmounted.
func (f *FS) Mount(dir string) (*fuse.Server, error) {
	if t := requestTimeout(); t > 0 {
		f.opts.Logf("warning: /proc/sys/fs/fuse/default_request_timeout is %d s: the kernel aborts the mount when a build outlives it", t)
	}
	neg := f.opts.NegativeTTL
	attr := time.Duration(0)
	opts := &fs.Options{
		// The root's own entries change; what is below them does not.
		EntryTimeout:    &f.opts.EntryTimeout,
		AttrTimeout:     &attr,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName:                   "storefs",
			Name:                     "storefs",
			AllowOther:               os.Geteuid() == 0,
			Options:                  []string{"ro", "default_permissions"},
			MaxReadAhead:             1 << 20,
			DisableXAttrs:            true,
			Debug:                    f.opts.Debug,
			DirectMount:              true,
			ExplicitDataCacheControl: false,
		},
		Logger: log.New(logWriter{f.opts.Logf}, "", 0),
	}
	server, err := fs.Mount(dir, &root{fsys: f}, opts)
	if err != nil {
		return nil, fmt.Errorf("mounting %s: %w", dir, err)
	}
	return server, nil
}

type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	w.logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// requestTimeout reads the kernel's FUSE request timeout (0: none).
func requestTimeout() int {
	data, err := os.ReadFile("/proc/sys/fs/fuse/default_request_timeout")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return n
}

// negative reports whether name was recently found to be unrealisable.
func (f *FS) negative(name string) bool {
	f.negMu.Lock()
	defer f.negMu.Unlock()
	exp, ok := f.neg[name]
	if ok && time.Now().After(exp) {
		delete(f.neg, name)
		return false
	}
	return ok
}

func (f *FS) rememberNegative(name string) {
	f.negMu.Lock()
	defer f.negMu.Unlock()
	now := time.Now()
	if len(f.neg) > 100000 { // a scan of random names must not grow this without bound
		for k, exp := range f.neg {
			if now.After(exp) {
				delete(f.neg, k)
			}
		}
	}
	f.neg[name] = now.Add(f.opts.NegativeTTL)
}

// ForgetNegative drops remembered ENOENTs, e.g. after a derivation that
// produces them was added.
func (f *FS) ForgetNegative() {
	f.negMu.Lock()
	f.neg = map[string]time.Time{}
	f.negMu.Unlock()
}
