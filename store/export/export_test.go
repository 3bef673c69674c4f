package export

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"storefs/store/nar"
	"storefs/store/storepath"
)

const dir = storepath.Dir("/store")

func mustPath(t testing.TB, s string) storepath.Path {
	t.Helper()
	p, err := dir.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stream makes an export stream of two small paths, the second referring
// to the first.
func stream(t testing.TB) []byte {
	t.Helper()
	tmp := t.TempDir()
	os.WriteFile(filepath.Join(tmp, "a"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(tmp, "b"), []byte("hello /store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt"), 0o644)
	u := mustPath(t, "/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	v := mustPath(t, "/store/7rrx1afrzyb3vj81nl0vz42sf3vmaxyn-t.txt")
	var buf bytes.Buffer
	w := NewWriter(&buf, dir)
	if err := w.Add(&Entry{Path: u}, func(w io.Writer) error { return nar.Dump(w, filepath.Join(tmp, "a")) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(&Entry{Path: v, References: []storepath.Path{u}, Deriver: mustPath(t, "/store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv")},
		func(w io.Writer) error { return nar.Dump(w, filepath.Join(tmp, "b")) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads a stream, discarding contents, and returns its entries.
func readAll(data []byte) ([]*Entry, error) {
	r := NewReader(bytes.NewReader(data), dir)
	var out []*Entry
	for {
		nr, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for {
			_, err := nr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return out, r.Fail(err)
			}
		}
		e, err := r.Trailer()
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

func TestRoundTrip(t *testing.T) {
	es, err := readAll(stream(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[1].Path.Name() != "t.txt" || len(es[1].References) != 1 || es[1].Deriver.Name() != "a.drv" || !es[0].Deriver.IsZero() {
		t.Fatalf("entries = %+v", es)
	}
}

func TestMalformed(t *testing.T) {
	good := stream(t)
	le := func(n uint64) []byte { b := make([]byte, 8); binary.LittleEndian.PutUint64(b, n); return b }
	// The offset of the first path's magic: 8 bytes of marker plus its NAR.
	magicAt := bytes.Index(good, le(Magic))
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "path 1, offset 0: stream truncated in the path marker"},
		{"bad marker", le(7), "path marker is 7"},
		{"truncated nar", good[:40], "path 1"},
		{"bad nar magic", bytes.Replace(good, []byte("nix-archive-1"), []byte("nix-archive-2"), 1), "path 1, offset 8: in its NAR: nar offset 0 (root): not a NAR"},
		{"bad nar in path 2", func() []byte {
			i := bytes.LastIndex(good, []byte("nix-archive-1"))
			b := append([]byte{}, good...)
			b[i+3] = 'X'
			return b
		}(), "path 2, offset"},
		{"truncated trailer", good[:magicAt+4], "stream truncated in the magic"},
		{"bad magic", append(append(append([]byte{}, good[:magicAt]...), le(0x1234)...), good[magicAt+8:]...), "magic is 0x1234"},
		{"no end", good[:len(good)-8], "path 3, offset"},
		{"trailing", append(append([]byte{}, good...), 1), "trailing data after the end of the stream"},
		{"huge string", append(append(append([]byte{}, good[:magicAt+8]...), le(1<<62)...), good[magicAt+16:]...), "store path is 4611686018427387904 bytes long"},
		{"bad path", bytes.Replace(good, []byte("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt"), []byte("sy1pf09am17617zf6qgqfdwjx6axhsb9-u txt"), 1), "invalid character ' '"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAll(c.data)
			var ee *Error
			if err == nil || !errors.As(err, &ee) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want *Error containing %q", err, c.want)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	f.Add(stream(f))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any input reads, or fails with an *Error naming where; none
		// panics or allocates without bound.
		es, err := readAll(data)
		var ee *Error
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("error %v (%T) is not an *Error", err, err)
		}
		for _, e := range es {
			if e.Path.IsZero() {
				t.Fatalf("entry without a path: %+v", e)
			}
		}
	})
}
