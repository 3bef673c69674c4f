package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"storefs/store/derivation"
	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// AddPath copies the tree at src into the store as a content-addressed path,
// as `nix-store --add` (recursive sha256) and `nix-store --add-fixed`
// (recursive or flat, any algorithm) do, and returns its info. The name is
// src's base name. It is a no-op if the path is valid already.
func (s *Store) AddPath(ctx context.Context, src string, recursive bool, algo nixhash.Algo) (*PathInfo, error) {
	name := filepath.Base(src)
	if err := storepath.ValidateName(name); err != nil {
		return nil, fmt.Errorf("adding %s: %w", src, err)
	}
	var flat nixhash.Hash
	if !recursive {
		h, err := hashFile(src, algo)
		if err != nil {
			return nil, fmt.Errorf("adding %s: %w", src, err)
		}
		flat = h
	}
	tmp, err := s.NewTemp()
	if err != nil {
		return nil, err
	}
	defer removeAllForce(tmp)
	contents := filepath.Join(tmp, "contents")
	narHash, narSize, caHash, err := copyTree(src, contents, algo, recursive)
	if err != nil {
		return nil, fmt.Errorf("adding %s: %w", src, err)
	}
	if !recursive {
		caHash = flat
	}
	ca := storepath.ContentAddress{Recursive: recursive, Hash: caHash}
	p, err := s.Dir.MakeCA(name, ca, nil, false)
	if err != nil {
		return nil, fmt.Errorf("adding %s: %w", src, err)
	}
	info := PathInfo{Path: p, NarHash: narHash, NarSize: narSize, CA: ca}
	if err := s.registerLocked(ctx, Registration{Info: info, Contents: contents}); err != nil {
		return nil, err
	}
	return s.Info(p)
}

// AddText adds data as a text path (a .drv, or a file with references) and
// returns its info.
func (s *Store) AddText(ctx context.Context, name string, data []byte, refs []storepath.Path) (*PathInfo, error) {
	return s.addText(ctx, name, nixhash.Sum(nixhash.SHA256, data), refs, nil, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// addText adds the text whose sha256 is hash as a text path; write prints
// the text, streaming, only if the path is not valid yet. What write
// prints is hashed again and refused unless it is the text hashed.
//
// outputs are those of the .drv being added, checked by the caller; nil
// for any other text.
func (s *Store) addText(ctx context.Context, name string, hash nixhash.Hash, refs []storepath.Path, outputs map[string]storepath.Path, write func(io.Writer) error) (*PathInfo, error) {
	ca := storepath.ContentAddress{Text: true, Hash: hash}
	p, err := s.Dir.MakeCA(name, ca, refs, false)
	if err != nil {
		return nil, err
	}
	if ok, err := s.IsValid(p); err != nil || ok {
		if err != nil {
			return nil, err
		}
		return s.Info(p)
	}
	tmp, err := s.NewTemp()
	if err != nil {
		return nil, err
	}
	defer removeAllForce(tmp)
	contents := filepath.Join(tmp, "contents")
	if err := writeText(contents, hash, write); err != nil {
		return nil, fmt.Errorf("writing the contents of %s: %w", s.Print(p), err)
	}
	h := nixhash.SHA256.New()
	cw := &countWriter{w: h}
	if err := nar.Dump(cw, contents); err != nil {
		return nil, err
	}
	info := PathInfo{Path: p, NarHash: nixhash.FromHasher(nixhash.SHA256, h), NarSize: cw.n, References: refs, CA: ca}
	if err := s.registerLocked(ctx, Registration{Info: info, Contents: contents, outputs: outputs}); err != nil {
		return nil, err
	}
	return s.Info(p)
}

// writeText creates the file name with what write prints, which must hash
// to want.
func writeText(name string, want nixhash.Hash, write func(io.Writer) error) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	h := nixhash.SHA256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := nixhash.FromHasher(nixhash.SHA256, h); got != want {
		return fmt.Errorf("the text printed has hash %s, not the %s it was added with", got, want)
	}
	return nil
}

// registerLocked takes the paths' locks and registers them.
func (s *Store) registerLocked(ctx context.Context, regs ...Registration) error {
	ps := make([]storepath.Path, len(regs))
	for i, r := range regs {
		ps[i] = r.Info.Path
	}
	unlock, err := s.LockAll(ctx, ps)
	if err != nil {
		return err
	}
	defer unlock()
	return s.Register(regs...)
}

// copyTree copies src to dst through a NAR stream, so that dst holds exactly
// what a NAR records, and returns the NAR's sha256 and size, and (when
// recursive) the NAR's hash in algo.
func copyTree(src, dst string, algo nixhash.Algo, recursive bool) (nixhash.Hash, uint64, nixhash.Hash, error) {
	pr, pw := io.Pipe()
	narH := nixhash.SHA256.New()
	var caH = narH
	writers := []io.Writer{narH}
	if recursive && algo != nixhash.SHA256 {
		caH = algo.New()
		writers = append(writers, caH)
	}
	cw := &countWriter{w: io.MultiWriter(writers...)}
	dumped := make(chan error, 1)
	go func() {
		err := nar.Dump(io.MultiWriter(pw, cw), src)
		pw.CloseWithError(err)
		dumped <- err
	}()
	err := nar.Restore(pr, dst)
	pr.CloseWithError(err)
	// A failed dump (src missing, a fifo in the tree) is the cause, not
	// the archive it cut short; a dump that failed only because the
	// restore had stopped reading wraps the restore's error.
	if derr := <-dumped; derr != nil && (err == nil || !errors.Is(derr, err)) {
		err = derr
	}
	if err != nil {
		return nixhash.Hash{}, 0, nixhash.Hash{}, err
	}
	return nixhash.FromHasher(nixhash.SHA256, narH), cw.n, nixhash.FromHasher(algo, caH), nil
}

func hashFile(p string, algo nixhash.Algo) (nixhash.Hash, error) {
	f, err := os.Open(p)
	if err != nil {
		return nixhash.Hash{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nixhash.Hash{}, err
	}
	if !st.Mode().IsRegular() {
		return nixhash.Hash{}, fmt.Errorf("flat hashing needs a regular file, %s is a %s", p, st.Mode().Type())
	}
	h := algo.New()
	if _, err := io.Copy(h, f); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.FromHasher(algo, h), nil
}

// AddDerivation checks a derivation (every output path must be the computed
// one; outputs with no path yet are computed, as nix-instantiate does),
// adds it as `<name>.drv` with its input sources and input derivations as
// references, records its outputs, and returns the .drv's info. Every input
// must be valid.
func (s *Store) AddDerivation(ctx context.Context, d *derivation.Derivation) (*PathInfo, error) {
	for _, ref := range d.References() {
		if ok, err := s.IsValid(ref); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("input %s of derivation %q is not a valid path", s.Print(ref), d.Name())
			}
			return nil, err
		}
	}
	var err error
	if needsFill(d) {
		err = s.hasher.Fill(d)
	}
	if err == nil {
		err = s.hasher.Check(d)
	}
	if err != nil {
		return nil, err
	}
	// The .drv is printed twice, into its hash and into its file, and
	// never held whole: its env may hold hundreds of megabytes.
	h := nixhash.SHA256.New()
	if err := d.WriteATerm(h, s.Dir); err != nil {
		return nil, err
	}
	outputs := make(map[string]storepath.Path, len(d.Outputs))
	for id, o := range d.Outputs {
		outputs[id] = o.Path
	}
	return s.addText(ctx, d.Name()+".drv", nixhash.FromHasher(nixhash.SHA256, h), d.References(), outputs, func(w io.Writer) error {
		return d.WriteATerm(w, s.Dir)
	})
}

func needsFill(d *derivation.Derivation) bool {
	for _, o := range d.Outputs {
		if o.Path.IsZero() {
			return true
		}
	}
	return false
}
