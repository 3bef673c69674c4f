package store

// Pending markers make invariant 2 hold across crashes. Before contents
// move into the backing directory (Register) or leave it (Delete), a marker
// file in pending/ names their paths, one base name a line, and is fsynced;
// it is removed once the records are committed. A marker left by a crash
// names entries that may have no record: the next Open removes those,
// taking each path's lock first, so a live writer of the same path is
// never disturbed (a writer holds its paths' locks until it removes its
// marker). One marker per batch, not per path: creating files is what
// costs on a busy filesystem.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"storefs/store/storepath"
)

// markPending writes and syncs a marker naming the paths and returns it.
func (s *Store) markPending(regs []Registration) (string, error) {
	var b bytes.Buffer
	for _, r := range regs {
		b.WriteString(r.Info.Path.Base())
		b.WriteByte('\n')
	}
	dir := filepath.Join(s.State, pendingDir)
	f, err := os.CreateTemp(dir, "batch-")
	if err != nil {
		return "", fmt.Errorf("pending marker: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("pending marker %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// clearPending removes a marker once its paths' records are committed (or
// the registration failed and its entries were removed). Losing the
// removal in a crash is harmless: the next Open finds the paths valid.
func (s *Store) clearPending(marker string) {
	os.Remove(marker)
}

// cleanupPending removes the backing entries that markers of dead writers
// name and that have no record.
func (s *Store) cleanupPending() error {
	dir := filepath.Join(s.State, pendingDir)
	names, err := readDirNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		marker := filepath.Join(dir, name)
		data, err := os.ReadFile(marker)
		if err != nil {
			if os.IsNotExist(err) {
				continue // its writer finished meanwhile
			}
			return fmt.Errorf("pending marker %s: %w", marker, err)
		}
		busy := false
		for _, line := range strings.Split(string(data), "\n") {
			p, err := storepath.ParseBase(line)
			if err != nil {
				continue // a line cut short by a crash names nothing moved yet
			}
			done, err := s.cleanupPath(p)
			if err != nil {
				return err
			}
			busy = busy || !done
		}
		if !busy {
			os.Remove(marker)
		}
	}
	return nil
}

// cleanupPath removes p's backing entry if p has no record, unless p's lock
// is held (its writer is alive); it reports whether it could look.
func (s *Store) cleanupPath(p storepath.Path) (bool, error) {
	l, err := s.TryLock(p)
	if err != nil || l == nil {
		return false, err
	}
	defer l.Unlock()
	ok, err := s.IsValid(p)
	if err == nil && !ok {
		err = removeAllForce(s.RealPath(p))
	}
	if err != nil {
		return false, fmt.Errorf("cleaning up %s: %w", s.Print(p), err)
	}
	return true, nil
}
