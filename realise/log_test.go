package realise

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"storefs/store"
)

// A log keeps its first bytes, then says how much it dropped, then the
// last lines; with no cap it keeps everything.
func TestBuildLogKeep(t *testing.T) {
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	drv := mustPath(t, "00000000000000000000000000000000-x.drv")
	var all bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&all, "line %d of a talkative builder\n", i)
	}
	all.WriteString("no newline at the end")
	for _, c := range []struct {
		keep int64
		cut  bool
	}{{1000, true}, {-1, false}, {int64(all.Len()), false}, {int64(all.Len() - 1), true}} {
		l, err := openLog(s, drv, c.keep, nil)
		if err != nil {
			t.Fatal(err)
		}
		data := all.Bytes()
		for len(data) > 0 { // in pieces that split lines
			n := min(len(data), 777)
			if _, err := l.Write(data[:n]); err != nil {
				t.Fatal(err)
			}
			data = data[n:]
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := ReadLog(s, drv, &got); err != nil {
			t.Fatal(err)
		}
		if !c.cut {
			if got.String() != all.String() {
				t.Errorf("keep %d: the log is not the whole output (%d bytes of %d)", c.keep, got.Len(), all.Len())
			}
			continue
		}
		head, rest, ok := strings.Cut(got.String(), "\n[storefs: ")
		if !ok || head != all.String()[:c.keep] {
			t.Errorf("keep %d: the log does not start with the first %d bytes then the marker:\n%.300s", c.keep, c.keep, got.String())
			continue
		}
		if want := fmt.Sprintf("%d more bytes of log output not kept", int64(all.Len())-c.keep); !strings.HasPrefix(rest, want) {
			t.Errorf("keep %d: the marker does not say %q: %.200s", c.keep, want, rest)
		}
		if !strings.HasSuffix(rest, "line 1999 of a talkative builder\nno newline at the end\n") {
			t.Errorf("keep %d: the log does not end with the last lines:\n%s", c.keep, rest)
		}
		if lines := strings.Count(rest, "\n"); lines > LogTailLines+2 {
			t.Errorf("keep %d: %d lines after the cut, want at most the last %d", c.keep, lines, LogTailLines+1)
		}
	}
}
