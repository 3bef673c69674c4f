package store

// Temporary roots keep paths alive while a process still needs them: an
// import whose later paths refer to earlier ones, a build whose inputs must
// stay. Each holder has a file temproots/<pid>-<random>, one base name a
// line, which it keeps flocked (exclusive) while it lives; the garbage
// collector takes the file of a dead holder for its own and removes it.
//
// The gc lock (gc.lock) orders holders and collectors: a collection holds
// it exclusively from reading the roots until its last deletion, and a
// holder appends names under it shared. So a name is either read by the
// collection or added after it, and a holder that adds a root to a path
// and then finds the path valid can rely on it until it closes its roots.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"storefs/store/storepath"
)

const (
	tempRootsDir = "temproots"
	gcLockFile   = "gc.lock"
)

// lockGC takes the gc lock, shared or exclusive, and returns its release.
func (s *Store) lockGC(ctx context.Context, exclusive bool) (func(), error) {
	name := filepath.Join(s.State, gcLockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("gc lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := flockWait(ctx, int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("gc lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// TempRoots is one holder's set of temporary roots. Safe for concurrent
// use.
type TempRoots struct {
	s    *Store
	mu   sync.Mutex // guards f and have
	f    *os.File
	have map[storepath.Path]bool
}

// NewTempRoots starts an empty set of temporary roots; Close ends it.
func (s *Store) NewTempRoots(ctx context.Context) (*TempRoots, error) {
	unlock, err := s.lockGC(ctx, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Made and locked under the gc lock, so no collector can find it
	// unlocked and take it for a dead holder's.
	f, err := os.CreateTemp(filepath.Join(s.State, tempRootsDir), strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, fmt.Errorf("temporary roots: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("temporary roots %s: %w", f.Name(), err)
	}
	return &TempRoots{s: s, f: f, have: map[storepath.Path]bool{}}, nil
}

// Add makes ps temporary roots. It waits while a collection runs; a path
// valid once Add returns stays valid until Close.
func (tr *TempRoots) Add(ctx context.Context, ps ...storepath.Path) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.f == nil {
		return fmt.Errorf("temporary roots: closed")
	}
	var b bytes.Buffer
	for _, p := range ps {
		if !tr.have[p] {
			b.WriteString(p.Base())
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return nil
	}
	unlock, err := tr.s.lockGC(ctx, false)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := tr.f.Write(b.Bytes()); err != nil {
		return fmt.Errorf("temporary roots %s: %w", tr.f.Name(), err)
	}
	for _, p := range ps {
		tr.have[p] = true
	}
	return nil
}

// Close drops the roots.
func (tr *TempRoots) Close() error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.f == nil {
		return nil
	}
	os.Remove(tr.f.Name())
	err := tr.f.Close()
	tr.f = nil
	return err
}

// readTempRoots returns the temporary roots of live holders and removes
// the files of dead ones. The caller holds the gc lock exclusively.
func (s *Store) readTempRoots() (map[storepath.Path]bool, error) {
	dir := filepath.Join(s.State, tempRootsDir)
	names, err := readDirNames(dir)
	if err != nil {
		return nil, err
	}
	roots := map[storepath.Path]bool{}
	for _, name := range names {
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("temporary roots %s: %w", p, err)
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p) // its holder is gone
			f.Close()
			continue
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("temporary roots %s: %w", p, err)
		}
		for _, line := range strings.Split(b.String(), "\n") {
			if r, err := storepath.ParseBase(line); err == nil {
				roots[r] = true
			}
		}
	}
	return roots, nil
}
