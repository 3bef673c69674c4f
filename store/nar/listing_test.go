package nar

import (
	"bytes"
	"strings"
	"testing"
)

// The listing of Nix's NAR is, byte for byte, the .ls file nix copy wrote.
func TestListMatchesNix(t *testing.T) {
	r := NewReader(bytes.NewReader(readTestdata(t, "tree.nar")))
	l, err := List(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.CheckEOF(); err != nil {
		t.Fatal(err)
	}
	got, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := readTestdata(t, "tree.ls"); !bytes.Equal(got, want) {
		t.Errorf("listing differs from Nix's:\n got %s\nwant %s", got, want)
	}
	n, err := l.Lookup("/dir/sub/n")
	if err != nil || n.Type != TypeRegular || n.Size != 6 || n.NarOffset != 1096 {
		t.Errorf("Lookup /dir/sub/n: %+v, %v", n, err)
	}
	for _, p := range []string{"/dir/missing", "/file/x"} {
		if _, err := l.Lookup(p); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("Lookup %s: %v", p, err)
		}
	}
	if n, err := l.Lookup("/"); err != nil || n != l.Root {
		t.Errorf("Lookup /: %v", err)
	}
}

// Names and targets are quoted as Nix 2.8 quotes them; want is what
// `nix copy --to file://...?write-nar-listing=true` wrote for such a tree.
func TestListJSONQuoting(t *testing.T) {
	b := new(builder)
	b.magic().dir()
	for _, n := range []string{"<&>", "c\x01\x08\x0c\x7f", "nl\nx", "q\"b\\c", "t\tr\r"} {
		b.fileEntry(n, "a")
	}
	b.entry("z").symlink("t\"a\nrget").end()
	for _, n := range []string{"\xc3\xa9", "\xff\xfe"} {
		b.fileEntry(n, "a")
	}
	b.end()
	l, err := List(NewReader(bytes.NewReader(b.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.MarshalJSON()
	for _, want := range []string{
		`"<&>":{"type":"regular","size":1,"narOffset":`,
		`"c\u0001\u0008\u000c` + "\x7f" + `":`,
		`"nl\nx":`, `"q\"b\\c":`, `"t\tr\r":`, "\"\xc3\xa9\":", "\"\xff\xfe\":",
		`"z":{"type":"symlink","target":"t\"a\nrget"}`,
	} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("listing %q lacks %q", got, want)
		}
	}
}

func TestListNeedsFreshReader(t *testing.T) {
	r := NewReader(bytes.NewReader(readTestdata(t, "tree.nar")))
	r.Next()
	if _, err := List(r); err == nil {
		t.Error("List of a Reader already advanced succeeded")
	}
}
