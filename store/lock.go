package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"storefs/store/storepath"
)

// Path locks are open file description (OFD) locks, fcntl(2)'s
// F_OFD_SETLK, on one byte each: the byte at lockOffset(p), 62 bits of a
// hash of p's hash part, stands for p. Its top shardBits bits choose one of lockShards
// files locks/paths.<nn> (hex), since the kernel keeps one list of locks
// per file and walks it on every lock taken: 20,000 bytes in one file cost
// seconds, spread over 16 a fraction of one (BenchmarkLockAll20000). A
// lock belongs to the open file description it was taken on, not to a
// process or a thread, so
//
//   - two holders exclude each other whether they are processes, Stores of
//     one process or goroutines of one Store, since each Lock and LockAll
//     call opens the files anew;
//   - a holder that dies lets go: the kernel closes its descriptors and the
//     last close of a description drops its locks. A child forked while a
//     lock is held shares the description until it execs (descriptors are
//     close-on-exec), which can delay the release, never lose it. Nothing
//     may dup a lock descriptor: the lock would outlive Unlock;
//   - a LockAll call holds at most lockShards descriptors however many
//     paths it locks, a single Lock one, and the files stay empty (locks
//     past the end of a file are allowed).
//
// Bytes are taken in descending order of offset (the lock order; the
// kernel inserts a description's new lock below its others fastest).
// Two paths share a byte only if 62 bits of their hashes collide (about
// one pair among 2^31 paths, or a collision made on purpose). Sharing
// cannot deadlock: one LockAll that names both takes the byte once (a
// description never conflicts with itself), and every holder takes its
// bytes in the one order, so no two wait on each other. Its one cost is
// that a holder of one path makes the other look locked: a writer of the
// other waits, gc keeps it for a while. Hence two rules for holders, which
// every caller keeps: no holder takes a second lock while it holds one
// (that would need the order kept across calls, and a shared byte would
// make it wait on itself), and no holder waits, lock held, for work that
// needs another path's lock (a build goal realises its inputs before it
// locks its outputs; a fetch waits for nothing but its cache).
const (
	locksFile  = "paths"
	shardBits  = 4
	lockShards = 1 << shardBits
	shardShift = 62 - shardBits
)

// PathLock is a held lock on one store path (or several, from LockAll).
type PathLock struct {
	fds []int // one per shard file, each its own description
}

// lockFilePath is the shard file that holds the byte at off.
func (s *Store) lockFilePath(off int64) string {
	return filepath.Join(s.State, locksDir, fmt.Sprintf("%s.%02x", locksFile, off>>shardShift))
}

// lockOffset is the byte that stands for p: 62 bits of the sha256 of its
// hash part. A hash part is a hash already, but one made by hand (tests,
// tools) may differ from another in its last bits only; hashing it again
// spreads any two hash parts over the whole range. Its top bits choose
// the shard file.
func lockOffset(p storepath.Path) int64 {
	sum := sha256.Sum256([]byte(p.HashPart()))
	return int64(binary.LittleEndian.Uint64(sum[:8]) >> 2)
}

// openShard opens a new description of the shard file holding off, to take
// locks on.
func (s *Store) openShard(off int64) (int, error) {
	name := s.lockFilePath(off)
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, fmt.Errorf("opening the lock file %s: %w", name, err)
	}
	return fd, nil
}

// tryByte takes the byte at off on fd's description if no other
// description holds it; it reports false if one does.
func tryByte(fd int, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: off, Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		switch err {
		case nil:
			return true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EACCES:
			return false, nil
		}
		return false, err
	}
}

// waitByte takes the byte at off, polling so that ctx can end the wait.
func waitByte(ctx context.Context, fd int, off int64) error {
	delay := time.Millisecond
	for {
		ok, err := tryByte(fd, off)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// Lock takes p's lock, waiting until it is free or ctx is done.
func (s *Store) Lock(ctx context.Context, p storepath.Path) (*PathLock, error) {
	off := lockOffset(p)
	fd, err := s.openShard(off)
	if err != nil {
		return nil, err
	}
	if err := waitByte(ctx, fd, off); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("waiting for the lock on %s: %w", s.Print(p), err)
	}
	return &PathLock{fds: []int{fd}}, nil
}

// TryLock takes p's lock if it is free, and returns nil if it is not.
func (s *Store) TryLock(p storepath.Path) (*PathLock, error) {
	off := lockOffset(p)
	fd, err := s.openShard(off)
	if err != nil {
		return nil, err
	}
	ok, err := tryByte(fd, off)
	if err != nil || !ok {
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("locking %s in %s: %w", s.Print(p), s.lockFilePath(off), err)
		}
		return nil, nil
	}
	return &PathLock{fds: []int{fd}}, nil
}

// LockAll takes the locks of ps, waiting, in descending order of offset
// (the lock order), on one description per shard file: at most
// lockShards descriptors for any number of paths, one for a single path.
func (s *Store) LockAll(ctx context.Context, ps []storepath.Path) (func(), error) {
	offs := make([]int64, len(ps))
	for i, p := range ps {
		offs[i] = lockOffset(p)
	}
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(offs[b], offs[a]) })
	l := &PathLock{}
	fd, shard := -1, int64(-1)
	for k, i := range order {
		off := offs[i]
		if k > 0 && offs[order[k-1]] == off {
			continue // the same path twice, or two that share a byte
		}
		if off>>shardShift != shard {
			var err error
			if fd, err = s.openShard(off); err != nil {
				l.Unlock()
				return nil, err
			}
			shard = off >> shardShift
			l.fds = append(l.fds, fd)
		}
		if err := waitByte(ctx, fd, off); err != nil {
			l.Unlock()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", s.Print(ps[i]), err)
		}
	}
	return l.Unlock, nil
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

// Unlock releases the lock (every path it holds): closing the only
// descriptor of its description drops the description's locks.
func (l *PathLock) Unlock() {
	if l == nil {
		return
	}
	for _, fd := range l.fds {
		unix.Close(fd)
	}
	l.fds = nil
}
