package realise

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"storefs/store"
	"storefs/store/nar"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// CacheWriteOptions tune WriteFileCache.
type CacheWriteOptions struct {
	Compression     string              // none, xz, zstd, bzip2, br; "" means xz, as Nix
	SecretKey       signature.SecretKey // signs each narinfo unless zero
	WriteNarListing bool                // also write <hash part>.ls, as Nix's write-nar-listing
	Jobs            int                 // paths compressed at once; 0 means the number of CPUs
	// OnPath, if set, hears of each path written or found in the cache
	// already.
	OnPath func(p storepath.Path, written bool)
}

// WriteFileCache writes the valid paths ps (not their closure: the caller
// chooses) into the binary cache directory dir as `nix copy --to file://dir`
// does: nix-cache-info with the store's StoreDir, each NAR compressed under
// nar/<file hash>.nar<ext>, and a narinfo per path, written last and in
// reference order, so a reader never sees a narinfo whose NAR or
// references are missing. A path whose narinfo is there already is kept.
// Every file is written under a temporary name and renamed into place.
func WriteFileCache(ctx context.Context, s *store.Store, dir string, ps []storepath.Path, opts CacheWriteOptions) error {
	if opts.Compression == "" {
		opts.Compression = "xz"
	}
	if err := checkCompression(opts.Compression); err != nil {
		return err
	}
	if opts.Jobs <= 0 {
		opts.Jobs = runtime.NumCPU()
	}
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		return fmt.Errorf("binary cache %s: %w", dir, err)
	}
	if err := writeCacheInfo(dir, s.Dir); err != nil {
		return err
	}
	var todo []storepath.Path
	for _, p := range ps {
		if _, err := os.Stat(filepath.Join(dir, p.HashPart()+".narinfo")); err == nil {
			if opts.OnPath != nil {
				opts.OnPath(p, false)
			}
			continue
		}
		todo = append(todo, p)
	}
	infos := make([]*narinfo.NarInfo, len(todo))
	listings := make([][]byte, len(todo))
	errs := make([]error, len(todo))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(opts.Jobs, len(todo)) {
		wg.Go(func() {
			for i := range jobs {
				infos[i], listings[i], errs[i] = writeNar(ctx, s, dir, todo[i], opts)
			}
		})
	}
	for i := range todo {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, i := range referenceOrder(todo, infos) {
		p := todo[i]
		if listings[i] != nil {
			if err := writeFileAtomic(filepath.Join(dir, p.HashPart()+".ls"), listings[i]); err != nil {
				return err
			}
		}
		data, err := infos[i].Print(s.Dir)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, p.HashPart()+".narinfo"), data); err != nil {
			return err
		}
		if opts.OnPath != nil {
			opts.OnPath(p, true)
		}
	}
	return nil
}

// referenceOrder orders the indexes of ps so that references come first.
func referenceOrder(ps []storepath.Path, infos []*narinfo.NarInfo) []int {
	index := make(map[storepath.Path]int, len(ps))
	for i, p := range ps {
		index[p] = i
	}
	done := make([]bool, len(ps))
	var order []int
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true
		for _, r := range infos[i].References {
			if j, ok := index[r]; ok {
				visit(j)
			}
		}
		order = append(order, i)
	}
	for i := range ps {
		visit(i)
	}
	return order
}

// writeCacheInfo writes nix-cache-info unless it exists, and refuses a
// cache for another store dir.
func writeCacheInfo(dir string, storeDir storepath.Dir) error {
	p := filepath.Join(dir, narinfoCacheInfoFile)
	data, err := os.ReadFile(p)
	if err == nil {
		info, err := narinfo.ParseCacheInfo(data, p)
		if err != nil {
			return err
		}
		if info.StoreDir != storeDir {
			return fmt.Errorf("binary cache %s is for the store dir %s, not %s", dir, info.StoreDir, storeDir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data, err = (&narinfo.CacheInfo{StoreDir: storeDir}).Print()
	if err != nil {
		return err
	}
	return writeFileAtomic(p, data)
}

// writeNar compresses p's NAR into the cache and returns its narinfo (and
// its listing, if wanted). One pass: dump -> (NAR hash, listing) and
// compress -> (file hash) -> a temporary file.
func writeNar(ctx context.Context, s *store.Store, dir string, p storepath.Path, opts CacheWriteOptions) (*narinfo.NarInfo, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	info, err := s.Info(p)
	if err != nil {
		return nil, nil, fmt.Errorf("copying %s: %w", s.Print(p), err)
	}
	tmp, err := os.CreateTemp(filepath.Join(dir, "nar"), ".tmp-*")
	if err != nil {
		return nil, nil, fmt.Errorf("binary cache %s: %w", dir, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	fileHash := sha256.New()
	fileCount := &teeCounter{w: io.MultiWriter(tmp, fileHash)}
	comp, err := compressor(opts.Compression, fileCount)
	if err != nil {
		return nil, nil, err
	}
	narHash := sha256.New()
	narCount := &teeCounter{w: io.MultiWriter(comp, narHash)}
	var w io.Writer = narCount

	var listing []byte
	var listErr error
	var pw *io.PipeWriter
	listed := make(chan struct{})
	if opts.WriteNarListing {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		w = io.MultiWriter(narCount, pw)
		go func() {
			defer close(listed)
			l, err := nar.List(nar.NewReader(pr))
			if err == nil {
				listing, err = json.Marshal(l)
			}
			listErr = err
			pr.CloseWithError(err)
			io.Copy(io.Discard, pr)
		}()
	} else {
		close(listed)
	}
	dumpErr := nar.Dump(w, s.RealPath(p))
	closeErr := comp.Close()
	if pw != nil {
		pw.CloseWithError(dumpErr)
	}
	<-listed
	if err := errors.Join(dumpErr, closeErr, listErr); err != nil {
		return nil, nil, fmt.Errorf("copying %s: %w", s.Print(p), err)
	}
	if got := nixhash.FromHasher(nixhash.SHA256, narHash); got != info.NarHash || narCount.n != info.NarSize {
		return nil, nil, fmt.Errorf("copying %s: its contents have NAR hash %s and size %d, but the database says %s and %d (run storefs verify --check-contents)",
			s.Print(p), got, narCount.n, info.NarHash, info.NarSize)
	}
	fh := nixhash.FromHasher(nixhash.SHA256, fileHash)
	rel := "nar/" + fh.Nix32() + ".nar" + narExtension(opts.Compression)
	if err := tmp.Chmod(0o644); err != nil {
		return nil, nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, nil, fmt.Errorf("binary cache %s: %w", dir, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, rel)); err != nil {
		return nil, nil, fmt.Errorf("binary cache %s: %w", dir, err)
	}
	ni := &narinfo.NarInfo{
		StorePath: p, URL: rel, Compression: opts.Compression,
		FileHash: fh, FileSize: fileCount.n, NarHash: info.NarHash, NarSize: info.NarSize,
		References: info.References, Deriver: info.Deriver, CA: info.CA,
	}
	for _, text := range info.Sigs {
		sig, err := signature.ParseSignature(text)
		if err != nil {
			return nil, nil, fmt.Errorf("signature of %s in the database: %w", s.Print(p), err)
		}
		ni.Sigs = append(ni.Sigs, sig)
	}
	if !opts.SecretKey.IsZero() {
		if err := ni.Sign(s.Dir, opts.SecretKey); err != nil {
			return nil, nil, err
		}
	}
	return ni, listing, nil
}

type teeCounter struct {
	w io.Writer
	n uint64
}

func (c *teeCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

// writeFileAtomic writes data to path through a temporary file and a
// rename, so readers see the old file or the whole new one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
