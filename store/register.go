package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"storefs/store/storepath"
)

// NewTemp makes an empty scratch directory on the backing directory's
// filesystem; put contents inside it (at any name) and pass that path to
// Register. Its name carries the pid so that Open can tell leftovers of dead
// processes from scratch space in use.
func (s *Store) NewTemp() (string, error) {
	return os.MkdirTemp(filepath.Join(s.State, tmpDir), strconv.Itoa(os.Getpid())+"-")
}

// Registration is one path to make valid: its info and where its contents
// are now (a path on the backing filesystem, normally under NewTemp).
type Registration struct {
	Info     PathInfo
	Contents string

	// outputs are a .drv's outputs by id when its adder has checked them
	// already (AddDerivation), so that registering it does not read and
	// hash its contents again; nil: they are read from the contents.
	outputs map[string]storepath.Path
}

// Register makes the paths valid, all in one transaction: it canonicalises
// and fsyncs their contents, moves them into the backing directory and
// commits their records. Each path's references must be valid already or
// registered in the same call. A path that is valid already is left as it
// is (its contents are removed). The caller holds the paths' locks.
//
// The cost is per call, not per path (one syncfs, two directory fsyncs and
// one commit), so callers with many paths register them together.
func (s *Store) Register(regs ...Registration) error {
	todo := make([]Registration, 0, len(regs))
	err := s.view(func(tx *bolt.Tx) error {
		paths := tx.Bucket(bucketPaths)
		for _, r := range regs {
			if paths.Get([]byte(r.Info.Path.Base())) != nil {
				removeAllForce(r.Contents)
				continue
			}
			todo = append(todo, r)
		}
		return nil
	})
	if err != nil || len(todo) == 0 {
		return err
	}
	for _, r := range todo {
		if err := Canonicalise(r.Contents); err != nil {
			return fmt.Errorf("registering %s: %w", s.Print(r.Info.Path), err)
		}
	}
	// Contents must be on the backing directory's filesystem (they are
	// renamed into it), so one syncfs makes them all durable.
	if err := syncFS(s.BackingDir()); err != nil {
		return err
	}
	marker, err := s.markPending(todo)
	if err != nil {
		return err
	}
	err = s.moveAndCommit(todo)
	if err != nil {
		for _, r := range todo {
			removeAllForce(s.RealPath(r.Info.Path))
		}
	}
	s.clearPending(marker)
	return err
}

// moveAndCommit renames the contents into the backing directory, makes the
// renames durable and commits the records. On error the caller removes the
// entries (the pending marker covers a crash before that).
func (s *Store) moveAndCommit(todo []Registration) error {
	for _, r := range todo {
		dst := s.RealPath(r.Info.Path)
		// Under the lock, an entry with no record is a crashed writer's.
		if err := removeAllForce(dst); err != nil {
			return fmt.Errorf("registering %s: removing leftover: %w", s.Print(r.Info.Path), err)
		}
		if err := os.Rename(r.Contents, dst); err != nil {
			return fmt.Errorf("registering %s: %w", s.Print(r.Info.Path), err)
		}
	}
	if err := syncDir(s.BackingDir()); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return s.putRecords(tx, todo) })
}

// putRecords checks references and writes the records and indexes.
func (s *Store) putRecords(tx *bolt.Tx, regs []Registration) error {
	paths := tx.Bucket(bucketPaths)
	batch := make(map[storepath.Path]bool, len(regs))
	for _, r := range regs {
		batch[r.Info.Path] = true
	}
	now := time.Now()
	for _, r := range regs {
		info := r.Info
		for _, ref := range info.References {
			if !batch[ref] && paths.Get([]byte(ref.Base())) == nil {
				return fmt.Errorf("reference %s of path %s is not a valid path", s.Print(ref), s.Print(info.Path))
			}
		}
		if info.RegistrationTime.IsZero() {
			info.RegistrationTime = now
		}
		storepath.Sort(info.References)
		rec, err := encodeRecord(&info)
		if err != nil {
			return err
		}
		if err := paths.Put([]byte(info.Path.Base()), rec); err != nil {
			return err
		}
		for _, ref := range info.References {
			if err := tx.Bucket(bucketReferrers).Put(pairKey(ref.Base(), info.Path.Base()), nil); err != nil {
				return err
			}
		}
		if info.Path.IsDerivation() {
			if err := s.putDrvOutputs(tx, info.Path, r.outputs); err != nil {
				return err
			}
		}
	}
	return nil
}

// putDrvOutputs indexes the outputs of a derivation being registered:
// outputs if known, else read from its contents (already in the backing
// directory) and checked.
func (s *Store) putDrvOutputs(tx *bolt.Tx, drv storepath.Path, outputs map[string]storepath.Path) error {
	if outputs == nil {
		var err error
		if outputs, err = s.readDrvOutputs(drv); err != nil {
			return fmt.Errorf("registering %s: %w", s.Print(drv), err)
		}
	}
	for id, out := range outputs {
		if err := tx.Bucket(bucketDrvOutputs).Put(pairKey(drv.Base(), id), []byte(out.Base())); err != nil {
			return err
		}
		if err := tx.Bucket(bucketOutputDrvs).Put(pairKey(out.Base(), drv.Base()), []byte(id)); err != nil {
			return err
		}
	}
	return nil
}

// cleanup removes what crashed processes left: backing entries named by
// pending markers that got no record, and scratch directories of dead
// processes.
func (s *Store) cleanup() error {
	if err := s.cleanupPending(); err != nil {
		return err
	}
	tmp := filepath.Join(s.State, tmpDir)
	names, err := readDirNames(tmp)
	if err != nil {
		return err
	}
	for _, name := range names {
		pid, _, _ := strings.Cut(name, "-")
		if n, err := strconv.Atoi(pid); err == nil && processAlive(n) {
			continue
		}
		if err := removeAllForce(filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("cleaning up scratch %s: %w", name, err)
		}
	}
	return s.cleanupLogTemps()
}

// NewLogTemp creates logs/<name>.<pid>-<random>.tmp, where a log is
// written before it is renamed into place; the pid lets Open tell the
// leftovers of dead processes (killed mid-build) from logs being written.
func (s *Store) NewLogTemp(name string) (*os.File, error) {
	return os.CreateTemp(s.LogsDir(), name+"."+strconv.Itoa(os.Getpid())+"-*.tmp")
}

// cleanupLogTemps removes the logs/*.tmp files of dead processes, and
// those whose name carries no pid (made before names had one).
func (s *Store) cleanupLogTemps() error {
	names, err := readDirNames(s.LogsDir())
	if err != nil {
		return err
	}
	for _, name := range names {
		rest, ok := strings.CutSuffix(name, ".tmp")
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(rest, '.'); i >= 0 {
			pid, _, hasPid := strings.Cut(rest[i+1:], "-")
			if n, err := strconv.Atoi(pid); hasPid && err == nil && processAlive(n) {
				continue
			}
		}
		if err := os.Remove(filepath.Join(s.LogsDir(), name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("cleaning up build log leftover %s: %w", filepath.Join(s.LogsDir(), name), err)
		}
	}
	return nil
}

func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeAllForce removes a tree even where canonical modes (0555
// directories) would stop a non-root user.
func removeAllForce(p string) error {
	filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o755)
		}
		return nil
	})
	err := os.RemoveAll(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// syncFS makes everything written to p's filesystem durable. One syncfs
// beats an fsync per file for trees of many small files, and covers every
// path of a batch at once.
func syncFS(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", p, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", p, err)
	}
	return nil
}
