package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"storefs/store/storepath"
)

func le(n uint64) []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	return b[:]
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

const testPath = "/store/ffffffffffffffffffffffffffffffff-hello"

// The hex examples of PROTOCOLS.md 1.1, as Nix writes them.
func TestWriterBytes(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.U64(1)
	w.String("hello")
	w.String("")
	w.Strings([]string{"a", "bc"})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := cat(le(1), le(5), []byte("hello\x00\x00\x00"), le(0),
		le(2), le(1), []byte("a\x00\x00\x00\x00\x00\x00\x00"), le(2), []byte("bc\x00\x00\x00\x00\x00\x00"))
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("got\n%x\nwant\n%x", b.Bytes(), want)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := storepath.Dir("/store")
	p, err := dir.Parse(testPath)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := NewWriter(&b)
	w.U64(1 << 40)
	w.Bool(true)
	w.Bytes([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8})
	w.Paths(dir, []storepath.Path{p, p})
	w.Path(dir, storepath.Path{})
	fw := NewFramedWriter(w)
	payload := bytes.Repeat([]byte("0123456789"), 10000) // several chunks
	fw.Write(payload)
	fw.Close()
	w.String("after")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&b)
	if n, err := r.U64("n"); err != nil || n != 1<<40 {
		t.Fatalf("U64 = %d, %v", n, err)
	}
	if v, err := r.Bool("b"); err != nil || !v {
		t.Fatalf("Bool = %v, %v", v, err)
	}
	if v, err := r.Bytes("bytes", 9); err != nil || len(v) != 9 || v[8] != 8 {
		t.Fatalf("Bytes = %v, %v", v, err)
	}
	if ps, err := r.Paths("paths", dir); err != nil || len(ps) != 2 || ps[1] != p {
		t.Fatalf("Paths = %v, %v", ps, err)
	}
	if q, err := r.OptPath("opt", dir); err != nil || !q.IsZero() {
		t.Fatalf("OptPath = %v, %v", q, err)
	}
	got, err := io.ReadAll(NewFramedReader(r, "payload"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("framed payload: %d bytes, %v", len(got), err)
	}
	if s, err := r.String("after", 10); err != nil || s != "after" {
		t.Fatalf("String after the frames = %q, %v", s, err)
	}
	if r.Offset() != int64(b.Cap()-b.Len()) && r.Offset() == 0 {
		t.Fatalf("offset %d", r.Offset())
	}
}

// Every bad input is refused with an error naming the field, its place
// and the cause.
func TestBadInputs(t *testing.T) {
	dir := storepath.Dir("/store")
	str := func(s string) []byte {
		return cat(le(uint64(len(s))), []byte(s), make([]byte, (8-len(s)%8)%8))
	}
	tests := []struct {
		name    string
		in      []byte
		read    func(r *Reader) error
		wantErr error
		want    string
	}{
		{"empty u64", nil, func(r *Reader) error { _, err := r.U64("op"); return err }, ErrTruncated, `stream truncated in worker op 7 (AddToStore) field "op" (byte 0)`},
		{"short u64", []byte{1, 2, 3}, func(r *Reader) error { _, err := r.U64("op"); return err }, ErrTruncated, `field "op"`},
		{"int over 32 bits", le(1 << 32), func(r *Reader) error { _, err := r.Int("verbosity"); return err }, ErrTooLarge, `field "verbosity" is 4294967296, more than 4294967295`},
		{"huge string", le(1 << 40), func(r *Reader) error { _, err := r.String("name", MaxSmall); return err }, ErrTooLong,
			`worker op 7 (AddToStore) field "name" is 1099511627776 bytes long, more than 65536 (byte 0)`},
		{"string without its bytes", le(5), func(r *Reader) error { _, err := r.String("name", 10); return err }, ErrTruncated, `field "name"`},
		{"string cut in its padding", cat(le(5), []byte("hello\x00")), func(r *Reader) error { _, err := r.String("name", 10); return err }, ErrTruncated, `field "name"`},
		{"non-zero padding", cat(le(5), []byte("hello\x00\x01\x00")), func(r *Reader) error { _, err := r.String("name", 10); return err }, ErrPadding, `non-zero padding after worker op 7 (AddToStore) field "name"`},
		{"huge count", le(1 << 62), func(r *Reader) error { _, err := r.Strings("refs", 10, 10); return err }, ErrTooLong, `field "refs" has 4611686018427387904 elements, more than 10`},
		{"bad element", cat(le(2), str("a"), le(100)), func(r *Reader) error { _, err := r.Strings("refs", 10, 10); return err }, ErrTooLong, `field "refs[1]" is 100 bytes long`},
		{"not a store path", str("/not/a/store/path"), func(r *Reader) error { _, err := r.Path("path", dir); return err }, ErrBadValue, `field "path" (byte 0): `},
		{"bad hash in a path", str("/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"), func(r *Reader) error { _, err := r.Path("path", dir); return err }, ErrBadValue, `field "path" (byte 0): `},
		{"empty path", str(""), func(r *Reader) error { _, err := r.Path("path", dir); return err }, ErrBadValue, `field "path"`},
		{"second path bad", cat(le(2), str(testPath), str("/nix/store/x")), func(r *Reader) error { _, err := r.Paths("paths", dir); return err }, ErrBadValue, `field "paths[1]"`},
		{"frame without its end", cat(le(3), []byte("abc")), func(r *Reader) error { _, err := io.ReadAll(NewFramedReader(r, "nar")); return err }, ErrTruncated, `field "nar chunk length" (byte 11)`},
		{"frame shorter than its length", cat(le(10), []byte("abc")), func(r *Reader) error { _, err := io.ReadAll(NewFramedReader(r, "nar")); return err }, ErrTruncated, `stream truncated in worker op 7 (AddToStore) field "nar"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in))
			r.SetContext("worker op 7 (AddToStore)")
			err := tt.read(r)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			}
			if !IsProtocolError(err) {
				t.Errorf("error %v is not an *Error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDrain(t *testing.T) {
	in := cat(le(3), []byte("abc"), le(2), []byte("de"), le(0), le(42))
	r := NewReader(bytes.NewReader(in))
	f := NewFramedReader(r, "nar")
	var one [1]byte
	if _, err := f.Read(one[:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Drain(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.U64("next"); err != nil || n != 42 {
		t.Fatalf("after Drain: %d, %v", n, err)
	}
}

// FuzzReader reads any input as a sequence of fields and frames; it must
// never panic nor allocate past the limits, and a Writer's output must
// read back as it was written.
func FuzzReader(f *testing.F) {
	f.Add(cat(le(1), le(5), []byte("hello\x00\x00\x00"), le(3), []byte("abc"), le(0)))
	f.Add(cat(le(2), le(1), []byte("a\x00\x00\x00\x00\x00\x00\x00"), le(2), []byte("bc\x00\x00\x00\x00\x00\x00")))
	f.Add(le(1 << 40))
	f.Fuzz(func(t *testing.T, in []byte) {
		dir := storepath.Dir("/store")
		r := NewReader(bytes.NewReader(in))
		for i := 0; ; i++ {
			var err error
			switch i % 5 {
			case 0:
				_, err = r.Int("int")
			case 1:
				_, err = r.Strings("strings", 64, 64)
			case 2:
				_, err = r.Paths("paths", dir)
			case 3:
				_, err = io.Copy(io.Discard, NewFramedReader(r, "frames"))
			case 4:
				_, err = r.Bytes("bytes", 1<<10)
			}
			if err != nil {
				if !IsProtocolError(err) {
					t.Fatalf("error %v is not an *Error", err)
				}
				return
			}
		}
	})
}

// The end of the stream before a field's first byte is a clean end (io.EOF)
// and still a truncation, in one line.
func TestCleanEnd(t *testing.T) {
	r := NewReader(bytes.NewReader(nil))
	_, err := r.U64("operation")
	if !errors.Is(err, io.EOF) || !errors.Is(err, ErrTruncated) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("end before a field: %q", err)
	}
	r = NewReader(bytes.NewReader([]byte{1}))
	if _, err := r.U64("operation"); errors.Is(err, io.EOF) || !errors.Is(err, ErrTruncated) {
		t.Fatalf("end inside a field: %q", err)
	}
}
