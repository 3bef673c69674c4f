package fusefs

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"storefs/store"
	"storefs/store/storepath"
)

// Realiser makes a path valid, blocking until it is or until ctx ends
// (goals.Worker implements it). It returns an error that Options.IsUnknown
// recognises when nothing can realise the path.
type Realiser interface {
	Realise(ctx context.Context, p storepath.Path) error
}

// Options tune the mount. Zero values mean the defaults.
type Options struct {
	// NegativeTTL is how long a name that nothing can realise is
	// answered with ENOENT without asking again (default 1 s).
	NegativeTTL time.Duration
	// EntryTimeout is how long the kernel caches entries and attributes
	// (valid paths are immutable; default 1 h).
	EntryTimeout time.Duration
	// InterruptGrace is how long an interrupted lookup still wants its
	// path (default 500 ms): a process that waited in the kernel behind
	// it asks again within it and finds the goal still running.
	InterruptGrace time.Duration
	// Passthrough makes every open of a file a FUSE OPEN that registers
	// the backing file for kernel passthrough (cold reads of big files
	// at the backing disk's speed). Without it the mount is "no-open":
	// opens never leave the kernel, which is what makes opening many
	// small files nearly as fast as native (see doc.go).
	Passthrough bool
	// MaxOpenFiles bounds the backing files held open for reads in
	// no-open mode (default 128).
	MaxOpenFiles int
	// IsUnknown tells a realisation error that means "no such path".
	IsUnknown func(error) bool
	// OnFailure hears every failed realisation (for status and logs).
	OnFailure func(p storepath.Path, err error)
	// WithCaller, if set, marks the context of a lookup's realisation
	// with the uid of the process that looked up (goals.WithCaller), so
	// that what it causes can be bounded per user.
	WithCaller func(ctx context.Context, uid uint32) context.Context
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
	root     *root
	fds      *fdCache
	dbFile   string      // the store's database (docs/design.md, "Places on disk"): its mtime is the root's
	mounted  atomic.Bool // the root may send notifications to the kernel

	// ctx ends at Shutdown: every pending realisation then gives up.
	ctx      context.Context
	shutdown context.CancelFunc

	lookups, realisations, interrupted atomic.Uint64 // for Stats

	negMu sync.Mutex           // guards neg
	neg   map[string]time.Time // name -> when its ENOENT expires
}

// Stats counts what reached the root since the mount.
type Stats struct {
	Lookups      uint64 `json:"lookups"`      // LOOKUPs of names in the store dir (the kernel answers repeats itself)
	Realisations uint64 `json:"realisations"` // lookups that asked the Realiser
	Interrupted  uint64 `json:"interrupted"`  // lookups interrupted while they waited
}

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	return Stats{Lookups: f.lookups.Load(), Realisations: f.realisations.Load(), Interrupted: f.interrupted.Load()}
}

// New makes the filesystem over s.
func New(s *store.Store, r Realiser, opts Options) *FS {
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = time.Second
	}
	if opts.EntryTimeout <= 0 {
		opts.EntryTimeout = time.Hour
	}
	if opts.InterruptGrace <= 0 {
		opts.InterruptGrace = 500 * time.Millisecond
	}
	if opts.MaxOpenFiles <= 0 {
		opts.MaxOpenFiles = 128
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.IsUnknown == nil {
		opts.IsUnknown = func(error) bool { return false }
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &FS{store: s, realiser: r, opts: opts, neg: map[string]time.Time{},
		fds: newFdCache(opts.MaxOpenFiles), ctx: ctx, shutdown: cancel,
		dbFile: filepath.Join(s.State, "db")}
	f.root = &root{fsys: f}
	return f
}

// Mount mounts the filesystem read-only at dir (normally the store dir)
// and serves it until the server is unmounted.
func (f *FS) Mount(dir string) (*fuse.Server, error) {
	if t := requestTimeout(); t > 0 {
		f.opts.Logf("warning: /proc/sys/fs/fuse/default_request_timeout is %d s: the kernel aborts the mount when a build outlives it", t)
	}
	long, neg := f.opts.EntryTimeout, f.opts.NegativeTTL
	opts := &fs.Options{
		EntryTimeout:    &long,
		AttrTimeout:     &long,
		NegativeTimeout: &neg,
		MountOptions: fuse.MountOptions{
			FsName:     "storefs",
			Name:       "storefs",
			AllowOther: os.Geteuid() == 0,
			// "ro" makes the superblock read-only, MS_RDONLY the mount:
			// every write call fails with EROFS in the VFS, before FUSE.
			Options:          []string{"ro", "default_permissions"},
			DirectMountFlags: syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
			DirectMount:      true,
			// Reads of up to 1 MiB less two pages per request: go-fuse
			// splices a reply through a pipe, which holds at most 1 MiB
			// (fs.pipe-max-size) with the header and a spare page; a
			// full 1 MiB read falls back to a copy (and a log line).
			MaxWrite: 1<<20 - 8<<10,
			// getxattr and listxattr fail with ENOTSUP, after the first
			// call without a round trip.
			DisableXAttrs:        true,
			EnableSymlinkCaching: true,
			Debug:                f.opts.Debug,
		},
		Logger: log.New(logWriter{f.opts.Logf}, "", 0),
	}
	server, err := fuse.NewServer(&noOpendir{fs.NewNodeFS(f.root, opts)}, dir, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mounting %s: %w", dir, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mounting %s: %w", dir, err)
	}
	f.mounted.Store(true)
	return server, nil
}

// Shutdown makes every lookup that waits for a realisation give up (with
// EIO) and every later one fail at once; the goals stop unless someone
// else wants them. Call it before unmounting.
func (f *FS) Shutdown() {
	f.shutdown()
}

// Added tells the mount that paths became valid behind its back (through
// the daemon socket): its own remembered ENOENTs of them go, and the
// kernel's copy of the root's listing. The kernel's negative entries of
// them are left to expire (NegativeTTL): dropping one takes the root's
// lock exclusively, which would queue every new lookup behind any build a
// lookup waits for (deadlock 5 in doc.go).
func (f *FS) Added(paths ...storepath.Path) {
	for _, p := range paths {
		f.forgetNegative(p.Base())
	}
	if len(paths) > 0 {
		f.rootChanged()
	}
}

// rootChanged drops the kernel's copy of the root's attributes and
// listing, after a lookup made a path valid. It takes no lock the kernel
// holds during a lookup, but goes out after the reply all the same.
func (f *FS) rootChanged() {
	if f.mounted.Load() {
		go f.root.NotifyContent(0, 0)
	}
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

func (f *FS) forgetNegative(name string) {
	f.negMu.Lock()
	delete(f.neg, name)
	f.negMu.Unlock()
}

// ForgetNegative drops remembered ENOENTs, e.g. after a derivation that
// produces them was added.
func (f *FS) ForgetNegative() {
	f.negMu.Lock()
	f.neg = map[string]time.Time{}
	f.negMu.Unlock()
}
