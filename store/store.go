// Package store is the one place that decides what is valid: the database of
// valid paths (bbolt) and the backing directory that holds their contents.
// The formats live in its subpackages (nixbase32, nixhash, storepath, nar,
// derivation, narinfo, signature, export).
//
// # Libraries
//
// None of github.com/nix-community/go-nix is used. It is untagged and marked
// experimental, and where it overlaps with what storefs needs it is not
// right: its ATerm parser does not unescape strings nor its writer escape
// them (so .drv paths differ from Nix's), its NAR reader accepts `.`, `..`,
// empty and duplicate names and makes about 34 read syscalls per small
// file, its narinfo parser refuses unknown keys (Nix ignores them) and
// panics on a narinfo without NarHash, and its store paths assume
// /nix/store. The formats are small enough to own, each checked against
// Nix 2.8 itself.
//
// # Invariants
//
//  1. A path is valid exactly when it has a record in the database. A record
//     is committed only after the path's contents are complete, canonical
//     (mtime 1, modes 0444/0555, no setuid, setgid or sticky bits, no
//     extended attributes but security.selinux, owned by root) and fsynced
//     in the backing directory, and after every reference is valid (or
//     registered in the same transaction).
//  2. A crash at any instant leaves a path valid or absent. Contents move into
//     the backing directory by one rename, after a marker in pending/ names
//     them (pending.go); the next Open removes any named entry that got no
//     record.
//  3. One writer per path across goroutines, Stores and processes: Lock
//     takes an open file description lock on the path's byte of
//     locks/paths.<nn>, released when its holder unlocks or dies
//     (lock.go). Register, Delete and cleanup hold it; a LockAll of any
//     number of paths holds at most 16 descriptors.
//  4. Indexes (referrers, derivation outputs both ways) change in the same
//     transaction as the records they index. Every valid .drv has its
//     outputs recorded, however it came (AddDerivation, Import, AddPath).
//  5. The garbage collector deletes nothing that a gc root, a live
//     process's temporary root (temproots.go), a path a live process uses
//     (open, executed, mapped, its cwd, root or environment: liveroots.go)
//     or a valid path not deleted before it still needs, nor a path whose
//     lock is held.
//
// # Batches
//
// Register takes many paths at once and pays per call, not per path: one
// syncfs, one pending marker, two directory fsyncs and one commit. Import
// registers a stream in batches while it reads the next one.
//
// # Processes
//
// bbolt allows one writing process at a time (it flocks the database file).
// A Store therefore opens the database only for the length of each
// transaction, the mount's daemon too, so several storefs processes can add
// paths at once; each transaction is short. Commands that only read never
// open it for writing.
//
// # Lock order
//
// The gc lock (gc.lock, shared by holders adding temporary roots,
// exclusive for a collection) comes first; then path locks, taken by
// one LockAll call in descending order of their lock bytes (lock.go),
// never while another path lock is held; then the database. The database is never held while
// waiting for a lock, nor is a path lock held while waiting for the gc
// lock.
package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"storefs/store/derivation"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// PathInfo is what the store knows of a valid path.
type PathInfo struct {
	Path             storepath.Path
	NarHash          nixhash.Hash // sha256 of the path's NAR
	NarSize          uint64
	References       []storepath.Path // sorted; may include Path itself
	Deriver          storepath.Path   // zero when unknown
	Sigs             []string         // `<key name>:<base64>`
	CA               storepath.ContentAddress
	RegistrationTime time.Time
}

// ErrNotValid says a path has no record.
var ErrNotValid = errors.New("not a valid path")

// Store is a store dir with its state directory.
type Store struct {
	Dir   storepath.Dir
	State string // the state directory

	hasher *derivation.Hasher // memoises hashDerivationModulo of .drvs; safe for concurrent use
}

// Options tune Open. There are none yet.
type Options struct{}

// Layout of the state directory.
const (
	dbFile     = "db"
	backingDir = "store"
	tmpDir     = "tmp"
	pendingDir = "pending"
	locksDir   = "locks"
	rootsDir   = "gcroots"
	logsDir    = "logs"
	buildsDir  = "builds"
)

// Open opens (creating if needed) the store whose contents live under
// stateDir, and removes what crashed processes left behind.
func Open(dir storepath.Dir, stateDir string, opts Options) (*Store, error) {
	if _, err := storepath.ParseDir(string(dir)); err != nil {
		return nil, err
	}
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"", backingDir, tmpDir, pendingDir, locksDir, rootsDir, tempRootsDir, logsDir, buildsDir} {
		if err := os.MkdirAll(filepath.Join(stateDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	s := &Store{Dir: dir, State: stateDir}
	s.hasher = derivation.NewHasher(dir, s.readDerivation)
	if err := s.initDB(); err != nil {
		return nil, err
	}
	if err := s.cleanup(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close releases the store. The database is open only during a
// transaction, so nothing is held between calls; callers close the store
// all the same.
func (s *Store) Close() error { return nil }

func (s *Store) openDB(readOnly bool) (*bolt.DB, error) {
	p := filepath.Join(s.State, dbFile)
	if readOnly {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("database %s: %w", p, err)
		}
	}
	db, err := bolt.Open(p, 0o644, &bolt.Options{ReadOnly: readOnly, Timeout: 0})
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", p, err)
	}
	return db, nil
}

// withDB runs fn on the database, opened for the call.
func (s *Store) withDB(write bool, fn func(*bolt.DB) error) error {
	db, err := s.openDB(!write)
	if err != nil {
		return err
	}
	err = fn(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return s.withDB(false, func(db *bolt.DB) error { return db.View(fn) })
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.withDB(true, func(db *bolt.DB) error { return db.Update(fn) })
}

// RealPath is where the contents of p live (the backing directory).
func (s *Store) RealPath(p storepath.Path) string {
	return filepath.Join(s.State, backingDir, p.Base())
}

// BackingDir is the directory holding the contents of valid paths.
func (s *Store) BackingDir() string { return filepath.Join(s.State, backingDir) }

// RootsDir holds the garbage collector's roots.
func (s *Store) RootsDir() string { return filepath.Join(s.State, rootsDir) }

// LogsDir holds build logs.
func (s *Store) LogsDir() string { return filepath.Join(s.State, logsDir) }

// BuildsDir is scratch space for builds.
func (s *Store) BuildsDir() string { return filepath.Join(s.State, buildsDir) }

// Print is the full path of p in the store dir.
func (s *Store) Print(p storepath.Path) string { return s.Dir.Print(p) }
