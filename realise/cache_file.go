package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// fileCache reads a cache directory. Files are opened through an os.Root,
// so neither ".." nor a symlink inside the cache reaches outside it.
type fileCache struct {
	dir string

	mu   sync.Mutex // guards root
	root *os.Root
}

func (f *fileCache) remote() bool { return false }

func (f *fileCache) open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.root == nil {
		r, err := os.OpenRoot(f.dir)
		if err != nil {
			f.mu.Unlock()
			return nil, fmt.Errorf("binary cache directory %s: %w", f.dir, err)
		}
		f.root = r
	}
	root := f.root
	f.mu.Unlock()
	file, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s/%s: %w", f.dir, name, errNotInCache)
	}
	if err != nil {
		return nil, fmt.Errorf("binary cache %s: %w", f.dir, err)
	}
	st, err := file.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s/%s is not a regular file", f.dir, name)
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return &ctxReader{ctx: ctx, r: file}, nil
}

// ctxReader stops reading when ctx ends, so a cancelled substitution from a
// large local file stops promptly.
type ctxReader struct {
	ctx context.Context
	r   io.ReadCloser
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (c *ctxReader) Close() error { return c.r.Close() }
