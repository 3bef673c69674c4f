package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"storefs/store/narinfo"
	"storefs/store/storepath"
)

// Cache is one binary cache (docs/formats.md, "Binary caches"): a
// directory (file://DIR) or an HTTP root (http://..., https://...). Every
// file is read below its root and nowhere else.
//
// A cache that could not be reached (refused, timed out, a 5xx that
// persisted) is down: it is skipped, as if it had nothing, until
// RetryDown has passed, and then one caller tries it again while the
// others still skip it (Nix disables such a cache for 60 s). A cache whose
// nix-cache-info is wrong (none, another store dir) is not asked until
// the same time has passed.
type Cache struct {
	// URL is the cache as configured, without a trailing slash. It names the
	// cache in errors and in the store's narinfo cache.
	URL string

	backend cacheBackend

	// mu guards the fields below. It is never held across I/O: a caller
	// that finds nix-cache-info being read waits on infoDone, and can be
	// cancelled while it waits.
	mu        sync.Mutex
	info      *narinfo.CacheInfo
	infoErr   error         // a wrong nix-cache-info, believed until infoRetry
	infoRetry time.Time     // when a wrong nix-cache-info is read again
	infoDone  chan struct{} // closed when the read in flight ends; nil: none
	downErr   error         // why the cache was last found down; nil: up
	downUntil time.Time     // skipped until then
	probing   bool          // one caller is trying the cache again
}

// DownError is what a cache that is down answers without being asked.
type DownError struct {
	URL   string
	Until time.Time
	Err   error // why it was found down
}

func (e *DownError) Error() string {
	return fmt.Sprintf("binary cache %s is skipped until %s: %v", e.URL, e.Until.Format(time.TimeOnly), e.Err)
}

func (e *DownError) Unwrap() error { return e.Err }

// admit says whether a caller may use the network to ask c now: nil if
// so (probe: it is the one caller trying a down cache again, and must call
// c.report), or a *DownError if c is skipped.
func (c *Cache) admit(now time.Time) (probe bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.downErr == nil:
		return false, nil
	case now.Before(c.downUntil) || c.probing:
		return false, &DownError{URL: c.URL, Until: c.downUntil, Err: c.downErr}
	}
	c.probing = true
	return true, nil
}

// report records how asking c went: err nil or an answer (a miss, a wrong
// file) brings it up; an error that says the cache could not answer takes
// it down until now+retry; a cancellation changes nothing.
func (c *Cache) report(ctx context.Context, probe bool, err error, now time.Time, retry time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if probe {
		c.probing = false
	}
	switch {
	case ctx.Err() != nil:
	case err == nil || !unavailable(err):
		c.downErr = nil
	default:
		c.downErr, c.downUntil = err, now.Add(retry)
	}
}

// unavailable tells an error that says a cache could not answer from an
// answer (a miss, a file refused).
func unavailable(err error) bool {
	var de *DownError
	return errors.As(err, &de) || !errors.Is(err, errNotInCache) && !isTrustProblem(err)
}

// cacheBackend reads files of a cache.
type cacheBackend interface {
	// open returns the file at name, a path relative to the root that
	// checkCachePath accepted. A file the cache does not have is an error
	// wrapping errNotInCache.
	open(ctx context.Context, name string) (io.ReadCloser, error)
	// remote says whether the cache's answers are worth remembering in the
	// store's narinfo cache (asking again costs network).
	remote() bool
}

// errNotInCache says a cache has no such file (HTTP 404, ENOENT).
var errNotInCache = errors.New("not in the cache")

// maxSmallFile bounds a narinfo or nix-cache-info: they are a few hundred
// bytes, and a cache must not make us hold gigabytes.
const maxSmallFile = 1 << 20

// OpenCache makes the Cache at url; nothing is read until it is used.
func OpenCache(url string, opts HTTPOptions) (*Cache, error) {
	url = strings.TrimRight(url, "/")
	switch {
	case strings.HasPrefix(url, "file://"):
		dir := strings.TrimPrefix(url, "file://")
		if dir == "" {
			dir = "/"
		}
		if !strings.HasPrefix(dir, "/") {
			return nil, fmt.Errorf("binary cache %q: a file:// cache needs an absolute directory (file:///path)", url)
		}
		if strings.ContainsAny(dir, "?#") {
			return nil, fmt.Errorf("binary cache %q: parameters (?...) are not supported; use the command's flags", url)
		}
		return &Cache{URL: url, backend: &fileCache{dir: dir}}, nil
	case strings.HasPrefix(url, "http://"), strings.HasPrefix(url, "https://"):
		b, err := newHTTPCache(url, opts)
		if err != nil {
			return nil, err
		}
		return &Cache{URL: url, backend: b}, nil
	}
	return nil, fmt.Errorf("binary cache %q: unsupported URL scheme (want file://, http:// or https://)", url)
}

// readSmall reads a whole small file of the cache: a backend that can
// bound a query's time (smallReader) does.
func (c *Cache) readSmall(ctx context.Context, name string) ([]byte, error) {
	if sr, ok := c.backend.(smallReader); ok {
		return sr.readSmall(ctx, name, maxSmallFile)
	}
	r, err := c.backend.open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxSmallFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s: %w", c.URL, name, err)
	}
	if len(data) > maxSmallFile {
		return nil, fmt.Errorf("%s/%s is larger than %d bytes", c.URL, name, maxSmallFile)
	}
	return data, nil
}

// smallReader reads a small file (a narinfo, nix-cache-info) whole, within
// a bound on time of its own.
type smallReader interface {
	readSmall(ctx context.Context, name string, max int) ([]byte, error)
}

// checkCachePath refuses a path inside a cache that could leave its root,
// such as a narinfo's URL: it must be relative, made of non-empty segments
// of [A-Za-z0-9._+=~-] other than "." and "..". Nix's own URLs
// (`nar/<nix32>.nar.xz`) are far inside this; a scheme, a query, a
// percent-escape or a backslash is refused rather than interpreted.
func checkCachePath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if len(p) > 1024 {
		return fmt.Errorf("path of %d bytes is too long", len(p))
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			if strings.HasPrefix(p, "/") {
				return fmt.Errorf("%.200q is absolute: it must be relative to the cache", p)
			}
			return fmt.Errorf("%.200q has an empty segment", p)
		case ".", "..":
			return fmt.Errorf("%.200q has a %q segment: it may not leave the cache", p, seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+=~-", c) >= 0) {
				return fmt.Errorf("%.200q has the character %q, which a cache path may not hold", p, c)
			}
		}
	}
	return nil
}

// CacheInfo reads the cache's nix-cache-info and checks that its store dir
// is dir. A good one is kept for the Cache's life; a failure is not (see
// Substituter for when a cache is asked again).
func (c *Cache) CacheInfo(ctx context.Context, dir storepath.Dir) (*narinfo.CacheInfo, error) {
	return c.cacheInfo(ctx, dir, nil, nil, time.Now, DefaultRetryDown)
}

// cacheInfo is CacheInfo with a memory outside the Cache: recall returns a
// nix-cache-info remembered earlier, if any; remember keeps one just read.
// One caller reads at a time; the others wait for its result (or their
// ctx), holding no lock. A wrong nix-cache-info is believed for retry.
func (c *Cache) cacheInfo(ctx context.Context, dir storepath.Dir, recall func() []byte, remember func([]byte), now func() time.Time, retry time.Duration) (*narinfo.CacheInfo, error) {
	for {
		c.mu.Lock()
		switch {
		case c.info != nil:
			c.mu.Unlock()
			return c.info, nil
		case c.infoErr != nil && now().Before(c.infoRetry):
			err := c.infoErr
			c.mu.Unlock()
			return nil, err
		case c.infoDone != nil:
			done := c.infoDone
			c.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.infoDone = done
		c.mu.Unlock()
		info, err := c.readCacheInfo(ctx, dir, recall, remember, now, retry)
		c.mu.Lock()
		c.infoDone = nil
		close(done)
		switch {
		case err == nil:
			c.info = info
		case ctx.Err() == nil && !unavailable(err):
			c.infoErr, c.infoRetry = err, now().Add(retry)
		}
		c.mu.Unlock()
		return info, err
	}
}

// readCacheInfo recalls or reads nix-cache-info, asking the network only
// if the cache is not down.
func (c *Cache) readCacheInfo(ctx context.Context, dir storepath.Dir, recall func() []byte, remember func([]byte), now func() time.Time, retry time.Duration) (*narinfo.CacheInfo, error) {
	if recall != nil {
		if data := recall(); data != nil {
			if info, err := c.parseCacheInfo(data, dir); err == nil {
				return info, nil
			}
		}
	}
	probe, err := c.admit(now())
	if err != nil {
		return nil, err
	}
	data, err := c.readSmall(ctx, narinfoCacheInfoFile)
	if errors.Is(err, errNotInCache) {
		err = refuse(fmt.Errorf("%s is not a binary cache: it has no nix-cache-info", c.URL))
	}
	c.report(ctx, probe, err, now(), retry)
	if err != nil {
		return nil, err
	}
	info, err := c.parseCacheInfo(data, dir)
	if err == nil && remember != nil {
		remember(data)
	}
	return info, err
}

const narinfoCacheInfoFile = "nix-cache-info"

func (c *Cache) parseCacheInfo(data []byte, dir storepath.Dir) (*narinfo.CacheInfo, error) {
	info, err := narinfo.ParseCacheInfo(data, c.URL+"/"+narinfoCacheInfoFile)
	if err != nil {
		return nil, refuse(err)
	}
	if info.StoreDir != dir {
		return nil, refuse(fmt.Errorf("binary cache %s is for the store dir %s, not %s: its paths cannot be used here", c.URL, info.StoreDir, dir))
	}
	if !info.HasPriority {
		info.Priority = 50 // Nix's default
	}
	return info, nil
}
