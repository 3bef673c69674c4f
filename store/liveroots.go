package store

// Runtime roots keep alive what live processes use, as Nix's
// findRuntimeRoots does: a path is a root while some process on the machine
// (in this pid namespace or below it) has one of its files open, executes
// it, maps it (a shared library), has its current directory or root in it,
// or names it in its environment. They are read from /proc at each
// collection, under the gc lock: a process that starts using a path after
// the scan is not protected, as in Nix (a build goal's temporary roots are
// what protects a build's inputs). Both the store dir (what processes see,
// through the mount or in a sandbox) and the backing directory (what the
// mount's daemon and host tools open) count. A store path names no store:
// two stores with one store dir on a machine (tests do that) keep each
// other's paths in use.
//
// Cost: one readlink per descriptor, three per process, and a read of its
// maps and environ; processes that vanish or deny us are skipped. 86
// processes took 5.6 ms here (BenchmarkRuntimeRoots).

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"storefs/store/storepath"
)

// procDir is where the processes are listed; a variable for tests.
var procDir = "/proc"

// runtimeRoots returns the hash parts of the store paths that live
// processes use. Errors reading one process (it ended, it is not ours to
// read) skip that process: the scan never fails.
func (s *Store) runtimeRoots() map[string]bool {
	found := map[string]bool{}
	prefixes := [][]byte{[]byte(string(s.Dir) + "/"), []byte(s.BackingDir() + "/")}
	scan := func(data []byte) { scanHashParts(data, prefixes, found) }
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return found
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		for _, link := range []string{"exe", "cwd", "root"} {
			if target, err := os.Readlink(filepath.Join(dir, link)); err == nil {
				scan([]byte(target))
			}
		}
		if fds, err := readDirNames(filepath.Join(dir, "fd")); err == nil {
			for _, fd := range fds {
				if target, err := os.Readlink(filepath.Join(dir, "fd", fd)); err == nil {
					scan([]byte(target))
				}
			}
		}
		for _, file := range []string{"maps", "environ"} {
			if data, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				scan(data)
			}
		}
	}
	return found
}

// scanHashParts adds to found the hash part after each occurrence of a
// prefix in data that is followed by a well-formed hash part and a dash.
func scanHashParts(data []byte, prefixes [][]byte, found map[string]bool) {
	for _, prefix := range prefixes {
		rest := data
		for {
			i := bytes.Index(rest, prefix)
			if i < 0 {
				break
			}
			rest = rest[i+len(prefix):]
			if len(rest) > storepath.HashLen && rest[storepath.HashLen] == '-' {
				h := string(rest[:storepath.HashLen])
				if storepath.ValidateHashPart(h) == nil {
					found[h] = true
				}
			}
		}
	}
}
