package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"storefs/store/storepath"
)

// PathLock is a held lock on one store path, exclusive across threads and
// processes (an flock on its own open file description).
type PathLock struct {
	f    *os.File
	name string
}

func (s *Store) lockFile(p storepath.Path) string {
	return filepath.Join(s.State, locksDir, p.Base()+".lock")
}

// Lock takes p's lock, waiting until it is free or ctx is done.
func (s *Store) Lock(ctx context.Context, p storepath.Path) (*PathLock, error) {
	wait := time.Millisecond
	for {
		l, err := s.TryLock(p)
		if err != nil || l != nil {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the lock on %s: %w", s.Print(p), ctx.Err())
		case <-time.After(wait):
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// TryLock takes p's lock if it is free, and returns nil if it is not.
func (s *Store) TryLock(p storepath.Path) (*PathLock, error) {
	name := s.lockFile(p)
	for {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, nil
			}
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		// The holder before us may have unlinked the file as it let go; a
		// lock on an unlinked file excludes nobody, so take a fresh one.
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if st.Nlink > 0 {
			return &PathLock{f: f, name: name}, nil
		}
		f.Close()
	}
}

// LockAll takes the locks of ps in sorted order (the lock order), waiting.
func (s *Store) LockAll(ctx context.Context, ps []storepath.Path) (func(), error) {
	sorted := append([]storepath.Path(nil), ps...)
	storepath.Sort(sorted)
	var held []*PathLock
	release := func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Unlock()
		}
	}
	for i, p := range sorted {
		if i > 0 && sorted[i-1] == p {
			continue
		}
		l, err := s.Lock(ctx, p)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, l)
	}
	return release, nil
}

// flockWait takes an flock on fd (LOCK_SH or LOCK_EX), polling so that ctx
// can end the wait.
func flockWait(ctx context.Context, fd int, how int) error {
	wait := time.Millisecond
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err != unix.EWOULDBLOCK {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if wait < 100*time.Millisecond {
			wait *= 2
		}
	}
}

// Unlock releases the lock and removes its file, so locks do not pile up.
func (l *PathLock) Unlock() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.name)
	l.f.Close()
	l.f = nil
}
