package store

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Open removes the temporary logs of dead processes (a build killed
// mid-way) and keeps those of live ones.
func TestOpenCleansLogTemps(t *testing.T) {
	state := t.TempDir()
	s, err := Open("/store", state, Options{})
	must(t, err)
	live, err := s.NewLogTemp("abc-x.drv")
	must(t, err)
	live.Close()
	self := strconv.Itoa(os.Getpid())
	logs := s.LogsDir()
	for _, c := range []struct {
		name string
		kept bool
	}{
		{filepath.Base(live.Name()), true},
		{"abc-x.drv." + self + "-1.tmp", true},
		{"abc-x.drv.999999999-12.tmp", false}, // no such process
		{"abc-x.drv.1234.tmp", false},         // made before names had a pid
		{"abc-x.drv.tmp", false},
		{".tmp", false},
		{"abc-x.drv.x-1.tmp", false},
		{"abc-x.drv.gz", true}, // a finished log
		{"abc-x.drv.999999999-1.tmp.gz", true},
	} {
		must(t, os.WriteFile(filepath.Join(logs, c.name), []byte("log"), 0o644))
		defer func() {
			_, err := os.Lstat(filepath.Join(logs, c.name))
			if c.kept != (err == nil) {
				t.Errorf("%s: kept %v, want %v", c.name, err == nil, c.kept)
			}
		}()
	}
	s, err = Open("/store", state, Options{})
	must(t, err)
	s.Close()
}
