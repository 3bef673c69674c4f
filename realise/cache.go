package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"storefs/store/narinfo"
	"storefs/store/storepath"
)

// Cache is one binary cache (docs/formats.md, "Binary caches"): a
// directory (file://DIR) or an HTTP root (http://..., https://...). Every
// file is read below its root and nowhere else.
type Cache struct {
	// URL is the cache as configured, without a trailing slash. It names the
	// cache in errors and in the store's narinfo cache.
	URL string

	backend cacheBackend

	mu      sync.Mutex // guards info and infoErr
	info    *narinfo.CacheInfo
	infoErr error
	warned  atomic.Bool // a warning that the cache is down was given
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

// readSmall reads a whole small file of the cache.
func (c *Cache) readSmall(ctx context.Context, name string) ([]byte, error) {
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

// CacheInfo reads the cache's nix-cache-info once and checks that its store
// dir is dir. A failure other than a cancellation is kept: a cache that is
// down or for another store is not asked again by this Cache.
func (c *Cache) CacheInfo(ctx context.Context, dir storepath.Dir) (*narinfo.CacheInfo, error) {
	return c.cacheInfo(ctx, dir, nil, nil)
}

// cacheInfo is CacheInfo with a memory outside the Cache: recall returns a
// nix-cache-info remembered earlier, if any; remember keeps one just read.
func (c *Cache) cacheInfo(ctx context.Context, dir storepath.Dir, recall func() []byte, remember func([]byte)) (*narinfo.CacheInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.info != nil || c.infoErr != nil {
		return c.info, c.infoErr
	}
	if recall != nil {
		if data := recall(); data != nil {
			if info, err := c.parseCacheInfo(data, dir); err == nil {
				c.info = info
				return info, nil
			}
		}
	}
	data, err := c.readSmall(ctx, narinfoCacheInfoFile)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		if errors.Is(err, errNotInCache) {
			err = refuse(fmt.Errorf("%s is not a binary cache: it has no nix-cache-info", c.URL))
		}
		c.infoErr = err
		return nil, err
	}
	info, err := c.parseCacheInfo(data, dir)
	c.info, c.infoErr = info, err
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
