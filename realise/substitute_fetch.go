package realise

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"path/filepath"

	"storefs/goals"
	"storefs/store"
	"storefs/store/nar"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// MismatchError is a download that does not match its narinfo: the file's
// hash or size, or the NAR's. Nothing of it is registered.
type MismatchError struct {
	Path       string // the full store path
	URL        string // the file's URL
	What       string // "FileHash", "FileSize", "NarHash", "NarSize"
	Want, Got  string
	Compressed bool
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s mismatch for %s in %s: the narinfo says %s, the download has %s", e.What, e.Path, e.URL, e.Want, e.Got)
}

// Fetch downloads p from the candidates Query found, best first, until one
// verifies, and registers it. The caller holds p's lock and has made p's
// references valid.
func (sub *Substituter) Fetch(ctx context.Context, p storepath.Path, s *goals.Substitute) error {
	src, ok := s.Source.(*source)
	if !ok || len(src.candidates) == 0 {
		return fmt.Errorf("substituting %s: not a substitute found by this substituter", sub.Store.Print(p))
	}
	var errs []error
	for _, c := range src.candidates {
		err := sub.fetchOne(ctx, p, c)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, fmt.Errorf("from %s: %w", c.cache.URL, err))
		if len(src.candidates) > 1 {
			sub.warn(fmt.Sprintf("substituting %s from %s failed: %v", sub.Store.Print(p), c.cache.URL, err))
		}
	}
	return fmt.Errorf("substituting %s: %w", sub.Store.Print(p), errors.Join(errs...))
}

// fetchOne downloads, checks and registers p from one cache, in one
// streaming pass and without a temporary NAR file.
func (sub *Substituter) fetchOne(ctx context.Context, p storepath.Path, c candidate) error {
	ni := c.ni
	url := c.cache.URL + "/" + ni.URL
	full := sub.Store.Print(p)
	body, err := c.cache.backend.open(ctx, ni.URL)
	if err != nil {
		if errors.Is(err, errNotInCache) {
			return fmt.Errorf("the narinfo names %s, which the cache does not have: %w", url, err)
		}
		return err
	}
	defer body.Close()

	file := &hashingReader{r: body, h: sha256.New(), limit: ni.FileSize, url: url, what: "its FileSize"}
	if ni.FileSize == 0 {
		file.limit, file.what = maxFileSize(ni.NarSize), "what its NarSize allows"
	}
	if sub.opts.OnProgress != nil {
		file.progress = func(n uint64) { sub.opts.OnProgress(p, n, ni.FileSize) }
	}
	dec, err := decompressor(ni.Compression, file)
	if err != nil {
		return fmt.Errorf("decompressing %s: %w", url, err)
	}
	defer dec.Close()
	narStream := &boundedReader{r: dec, left: ni.NarSize, url: url}

	tmp, err := sub.Store.NewTemp()
	if err != nil {
		return err
	}
	defer forceRemove(tmp)
	contents := filepath.Join(tmp, p.Base())
	nr := nar.NewReader(bufio.NewReaderSize(fullReader{narStream}, 1<<20))
	nr.LimitPath(sub.Store.MaxNARPath())
	if err := nar.RestoreFrom(nr, contents); err != nil {
		return file.cause(fmt.Errorf("unpacking %s (%s): %w", url, ni.Compression, err))
	}
	if err := nr.CheckEOF(); err != nil {
		return file.cause(fmt.Errorf("unpacking %s (%s): %w", url, ni.Compression, err))
	}
	if got := uint64(nr.NarSize()); got != ni.NarSize {
		return &MismatchError{Path: full, URL: url, What: "NarSize", Want: fmt.Sprint(ni.NarSize), Got: fmt.Sprint(got)}
	}
	if got := nr.NarHash(); got != ni.NarHash {
		return &MismatchError{Path: full, URL: url, What: "NarHash", Want: ni.NarHash.String(), Got: got.String()}
	}
	// The rest of the file (a compressor's trailer) is part of its hash.
	if _, err := io.Copy(io.Discard, file); err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	file.report()
	if err := checkFile(ni, file, full, url); err != nil {
		return err
	}
	info, err := sub.unsignedFields(ni, contents, full)
	if err != nil {
		return err
	}
	return sub.Store.Register(store.Registration{Info: *info, Contents: contents})
}

// unsignedFields makes the record of a downloaded path whose NAR matched
// the narinfo. The signature covers the path, NarHash, NarSize and
// References; what else is recorded is checked here first (as Nix does
// not): a CA must make the path and the contents must hash to it, else it
// is dropped (a CA that makes the path but not the contents refuses the
// path); a Deriver must be a .drv; a Sig that names a trusted key but does
// not verify is dropped (others are kept for whoever trusts their key).
func (sub *Substituter) unsignedFields(ni *narinfo.NarInfo, contents, full string) (*store.PathInfo, error) {
	info := &store.PathInfo{
		Path:       ni.StorePath,
		NarHash:    ni.NarHash,
		NarSize:    ni.NarSize,
		References: ni.References,
		CA:         ni.CA,
	}
	if err := sub.Store.CheckContentAddress(info, contents); err != nil {
		if !errors.Is(err, store.ErrAddressNotPath) {
			return nil, fmt.Errorf("narinfo of %s: %w", full, err)
		}
		sub.warn(fmt.Sprintf("narinfo of %s: ignoring its CA field: %v", full, err))
		info.CA = storepath.ContentAddress{}
	}
	if !ni.Deriver.IsZero() {
		if ni.Deriver.IsDerivation() {
			info.Deriver = ni.Deriver
		} else {
			sub.warn(fmt.Sprintf("narinfo of %s: ignoring its Deriver %s, which is not a .drv", full, ni.Deriver))
		}
	}
	fp, err := ni.Fingerprint(sub.Store.Dir)
	if err != nil {
		return nil, err
	}
	for _, s := range ni.Sigs {
		_, err := signature.Verify([]byte(fp), s, sub.opts.TrustedKeys)
		var bad *signature.BadSignatureError
		if errors.As(err, &bad) {
			sub.warn(fmt.Sprintf("narinfo of %s: ignoring a bad signature by %s", full, bad.KeyName))
			continue
		}
		info.Sigs = append(info.Sigs, s.String())
	}
	return info, nil
}

// checkFile compares the downloaded file with FileSize and FileHash, when
// the narinfo gives them.
func checkFile(ni *narinfo.NarInfo, file *hashingReader, full, url string) error {
	if ni.FileSize != 0 && file.n != ni.FileSize {
		return &MismatchError{Path: full, URL: url, What: "FileSize", Want: fmt.Sprint(ni.FileSize), Got: fmt.Sprint(file.n), Compressed: true}
	}
	if !ni.FileHash.IsZero() {
		h := file.h
		if ni.FileHash.Algo != nixhash.SHA256 {
			return fmt.Errorf("narinfo of %s: FileHash %s is not a sha256", full, ni.FileHash)
		}
		if got := nixhash.FromHasher(nixhash.SHA256, h); got != ni.FileHash {
			return &MismatchError{Path: full, URL: url, What: "FileHash", Want: ni.FileHash.String(), Got: got.String(), Compressed: true}
		}
	}
	return nil
}

// maxFileSize bounds the file of a NAR of narSize bytes when the narinfo
// gives no FileSize: no compressor Nix uses makes a file grow by more than
// a few percent (stored blocks, headers), so a file beyond this is not a
// compression of that NAR, and reading stops there rather than draining
// whatever the cache sends (zstd skippable frames, say).
func maxFileSize(narSize uint64) uint64 {
	if narSize > math.MaxUint64/2 {
		return math.MaxUint64 - 1
	}
	return narSize + narSize/16 + 1<<20
}

// hashingReader hashes and counts the file as it is read, refuses to read
// more than limit bytes (it never asks the source for more than one byte
// past limit), and reports progress about every MiB.
type hashingReader struct {
	r        io.Reader
	h        hash.Hash
	n        uint64
	limit    uint64
	url      string
	what     string // what limit is, for the error
	progress func(n uint64)
	reported uint64
	tooLong  error // set once the file went past limit
}

// cause is err, or the file's being too long when it was, which a
// decompressor may have reported as a mere unexpected EOF.
func (r *hashingReader) cause(err error) error {
	if r.tooLong != nil {
		return r.tooLong
	}
	return err
}

const progressEvery = 1 << 20

func (r *hashingReader) Read(p []byte) (int, error) {
	if r.n <= r.limit && r.limit-r.n < uint64(len(p)) {
		p = p[:r.limit-r.n+1]
	}
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += uint64(n)
	if r.n > r.limit {
		r.tooLong = fmt.Errorf("%s is longer than %s (%d bytes)", r.url, r.what, r.limit)
		return n, r.tooLong
	}
	if r.progress != nil && r.n-r.reported >= progressEvery {
		r.report()
	}
	return n, err
}

func (r *hashingReader) report() {
	if r.progress != nil && r.n != r.reported {
		r.reported = r.n
		r.progress(r.n)
	}
}

// fullReader fills each buffer it is given, so that the NAR reader's
// buffer holds large pieces and files are written in large writes even
// from a decoder that returns a few KiB per call (ulikunitz/xz does).
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := f.r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 && n > 0 {
			break
		}
	}
	return n, nil
}

// boundedReader refuses to decompress more than the narinfo's NarSize, so a
// small file that expands without end is stopped at once.
type boundedReader struct {
	r    io.Reader
	left uint64
	url  string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left == 0 {
		// One byte more than NarSize is an error; EOF here is fine.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%s decompresses to more than its NarSize", b.url)
		}
		return 0, err
	}
	if uint64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= uint64(n)
	return n, err
}
