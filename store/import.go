package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"storefs/store/derivation"
	"storefs/store/export"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// A batch of imported paths is cut at whichever bound comes first. Each
// batch costs one syncfs and one commit, so batches make many small paths
// cheap; the bounds keep scratch space, open lock files and the delay
// before a path turns valid small.
const (
	importBatchPaths = 256
	importBatchBytes = 64 << 20 // NAR bytes
	importBatchAge   = time.Second
)

// Import adds every path of a `nix-store --export` stream and returns them,
// in stream order.
//
// Each NAR is checked as it is restored (grammar, hash and size computed on
// the way). A path's references must be valid or come earlier in the
// stream. A .drv must be the text path of its contents (or, as `nix-store
// --add` makes it, their source path) and name its outputs' computed paths;
// its outputs are recorded. A path whose name is its contents' source,
// text or flat sha256 address gets that content address. A path valid
// already is left as it is.
//
// Paths become valid in batches, in stream order: while one batch is
// synced and committed, the next is read. An error stops the import: the
// batch being read is dropped, so a bad stream leaves at most a prefix of
// its paths valid (a stream shorter than one batch, none), and never a
// path whose entry was incomplete or wrong.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]storepath.Path, error) {
	tmp, err := s.NewTemp()
	if err != nil {
		return nil, err
	}
	defer removeAllForce(tmp)
	im := &importer{
		ctx:      ctx,
		s:        s,
		er:       export.NewReader(r, s.Dir),
		tmp:      tmp,
		seen:     map[storepath.Path]bool{},
		drvFiles: map[storepath.Path]string{},
		valid:    map[storepath.Path]bool{},
	}
	im.hasher = derivation.NewHasher(s.Dir, im.readDerivation)
	// The stream's paths and the valid paths it refers to stay alive
	// until the import ends, whatever a concurrent collection does.
	if im.roots, err = s.NewTempRoots(ctx); err != nil {
		return nil, err
	}
	defer im.roots.Close()

	batches := make(chan []Registration, 1)
	var (
		mu        sync.Mutex // guards done and commitErr
		done      []storepath.Path
		commitErr error
	)
	failed := make(chan struct{})
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		for batch := range batches {
			mu.Lock()
			ok := commitErr == nil
			mu.Unlock()
			if !ok {
				continue // drain; the contents go with tmp
			}
			err := im.register(ctx, batch)
			mu.Lock()
			if err != nil {
				commitErr = fmt.Errorf("import: %w", err)
				close(failed)
			} else {
				for _, r := range batch {
					done = append(done, r.Info.Path)
				}
			}
			mu.Unlock()
		}
	}()

	readErr := im.run(ctx, batches, failed)
	close(batches)
	<-committed
	mu.Lock()
	defer mu.Unlock()
	if readErr != nil {
		return done, fmt.Errorf("import: %w", readErr)
	}
	return done, commitErr
}

// importer reads a stream into batches of registrations.
type importer struct {
	ctx    context.Context
	s      *Store
	er     *export.Reader
	tmp    string
	hasher *derivation.Hasher // knows the stream's .drvs before they commit
	roots  *TempRoots
	n      int // paths read

	seen     map[storepath.Path]bool   // every path read so far
	drvFiles map[storepath.Path]string // .drvs read so far: their scratch file
	valid    map[storepath.Path]bool   // references found valid

	batch      []Registration
	batchBytes uint64
	batchStart time.Time
}

// register makes a batch temporary roots and registers it.
func (im *importer) register(ctx context.Context, batch []Registration) error {
	ps := make([]storepath.Path, len(batch))
	for i, r := range batch {
		ps[i] = r.Info.Path
	}
	if err := im.roots.Add(ctx, ps...); err != nil {
		return err
	}
	return im.s.registerLocked(ctx, batch...)
}

// run reads paths until the stream ends, an error, or failed closes,
// handing each full batch (and the last) to batches.
func (im *importer) run(ctx context.Context, batches chan<- []Registration, failed <-chan struct{}) error {
	flush := func() bool {
		if len(im.batch) == 0 {
			return true
		}
		select {
		case batches <- im.batch:
		case <-failed:
			return false
		}
		im.batch, im.batchBytes = nil, 0
		return true
	}
	for {
		select {
		case <-failed:
			return nil
		default:
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := im.next()
		if err == io.EOF {
			flush()
			return nil
		}
		if err != nil {
			return err
		}
		if len(im.batch) >= importBatchPaths || im.batchBytes >= importBatchBytes ||
			len(im.batch) > 0 && time.Since(im.batchStart) >= importBatchAge {
			if !flush() {
				return nil
			}
		}
	}
}

// next reads, restores and checks one path and adds it to the batch.
func (im *importer) next() error {
	nr, err := im.er.Next()
	if err != nil {
		return err
	}
	contents := filepath.Join(im.tmp, strconv.Itoa(im.n))
	im.n++
	nr.LimitPath(im.s.MaxNARPath())
	if err := nar.RestoreFrom(nr, contents); err != nil {
		return im.er.Fail(err)
	}
	e, err := im.er.Trailer()
	if err != nil {
		removeAllForce(contents)
		return err
	}
	if im.seen[e.Path] { // twice in one stream: the first one counts
		return removeAllForce(contents)
	}
	info := PathInfo{Path: e.Path, NarHash: nr.NarHash(), NarSize: uint64(nr.NarSize()), References: e.References, Deriver: e.Deriver}
	if err := im.check(&info, contents); err != nil {
		removeAllForce(contents)
		return im.er.Fail(fmt.Errorf("%s: %w", im.s.Print(info.Path), err))
	}
	im.seen[e.Path] = true
	if len(im.batch) == 0 {
		im.batchStart = time.Now()
	}
	im.batch = append(im.batch, Registration{Info: info, Contents: contents})
	im.batchBytes += info.NarSize
	return nil
}

// check refuses a path whose references are unknown or whose address is
// wrong, and records its content address.
func (im *importer) check(info *PathInfo, contents string) error {
	var others []storepath.Path
	self := false
	for _, ref := range info.References {
		switch {
		case ref == info.Path:
			self = true
			continue
		case im.seen[ref] || im.valid[ref]:
		default:
			// Rooted first: once found valid, it stays so.
			if err := im.roots.Add(im.ctx, ref); err != nil {
				return err
			}
			ok, err := im.s.IsValid(ref)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("reference %s is not a valid path nor earlier in the stream", im.s.Print(ref))
			}
			im.valid[ref] = true
		}
		others = append(others, ref)
	}
	ca, err := inferCA(im.s.Dir, info, contents, others, self)
	if err != nil {
		return err
	}
	info.CA = ca
	if !info.Path.IsDerivation() {
		return nil
	}
	if ca.IsZero() {
		return drvAddressError(im.s.Dir, info.Path, contents, others)
	}
	im.drvFiles[info.Path] = contents
	d, err := im.readDerivation(info.Path)
	if err != nil {
		return err
	}
	return im.hasher.Check(d)
}

// readDerivation loads a .drv of the stream from its scratch file (or, once
// committed, the backing directory) or a valid one.
func (im *importer) readDerivation(p storepath.Path) (*derivation.Derivation, error) {
	if f, ok := im.drvFiles[p]; ok {
		data, err := readSmallFile(f)
		if errors.Is(err, os.ErrNotExist) {
			return im.s.readDerivation(p) // its batch committed meanwhile
		}
		if err != nil {
			return nil, err
		}
		return derivation.Parse(data, im.s.Dir)
	}
	return im.s.readDerivation(p)
}

// pathMax is Linux's PATH_MAX, with its NUL.
const pathMax = 4096

// MaxNARPath is the longest path inside a NAR (Header.Path) that the store
// accepts: with the longest base name, the entry's path in the backing
// directory and in the store dir must both fit in PATH_MAX, or nothing
// could reach it by name (verify, the mount, a builder).
func (s *Store) MaxNARPath() int {
	prefix := max(len(s.BackingDir()), len(s.Dir)) + 1 + storepath.HashLen + 1 + storepath.MaxNameLen + 1
	return pathMax - 1 - prefix
}

// textProbeMax bounds the files whose flat hash Import computes to find a
// text or flat content address (toFile texts and .drvs are small).
const textProbeMax = 1 << 20

// inferCA returns the content address that makes info.Path from its
// contents, if there is one: the source address (NAR hash, as nix-store
// --add), or for a single small file the text address (as a .drv or
// builtins.toFile) or the flat sha256 fixed-output address.
func inferCA(dir storepath.Dir, info *PathInfo, contents string, others []storepath.Path, self bool) (storepath.ContentAddress, error) {
	name := info.Path.Name()
	try := func(ca storepath.ContentAddress, refs []storepath.Path, self bool) bool {
		p, err := dir.MakeCA(name, ca, refs, self)
		return err == nil && p == info.Path
	}
	if ca := (storepath.ContentAddress{Recursive: true, Hash: info.NarHash}); try(ca, others, self) {
		return ca, nil
	}
	st, err := os.Lstat(contents)
	if err != nil {
		return storepath.ContentAddress{}, err
	}
	if !st.Mode().IsRegular() || self || st.Size() > textProbeMax && !info.Path.IsDerivation() {
		return storepath.ContentAddress{}, nil
	}
	data, err := readSmallFile(contents)
	if err != nil {
		return storepath.ContentAddress{}, err
	}
	h := nixhash.Sum(nixhash.SHA256, data)
	// A text path is a plain file: its address hashes the bytes only, so
	// an executable bit in the NAR would go unchecked. (A flat fixed path
	// may be executable: Nix 2.8's add-fixed keeps the bit.)
	if ca := (storepath.ContentAddress{Text: true, Hash: h}); st.Mode()&0o100 == 0 && try(ca, others, false) {
		return ca, nil
	}
	if ca := (storepath.ContentAddress{Hash: h}); len(others) == 0 && try(ca, nil, false) {
		return ca, nil
	}
	return storepath.ContentAddress{}, nil
}

// drvAddressError explains why a .drv is refused: the text path its
// contents make is another.
func drvAddressError(dir storepath.Dir, p storepath.Path, contents string, refs []storepath.Path) error {
	data, err := readSmallFile(contents)
	if err != nil {
		return err
	}
	want, err := dir.MakeCA(p.Name(), storepath.ContentAddress{Text: true, Hash: nixhash.Sum(nixhash.SHA256, data)}, refs, false)
	if err != nil {
		return err
	}
	if st, err := os.Lstat(contents); err == nil && st.Mode()&0o100 != 0 {
		return fmt.Errorf("its NAR marks it executable, which a text path never is: %w", ErrAddressMismatch)
	}
	return fmt.Errorf("its contents and references make the text path %s: %w", dir.Print(want), ErrAddressMismatch)
}

// ErrAddressMismatch says a content-addressed path's contents do not make
// its address.
var ErrAddressMismatch = errors.New("content address mismatch")

// readSmallFile reads a derivation's contents, refusing anything huge.
func readSmallFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const max = 64 << 20
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && len(data) > max {
		err = fmt.Errorf("derivation larger than %d bytes", max)
	}
	return data, err
}
