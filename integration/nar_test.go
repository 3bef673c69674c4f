package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// narTrees builds the trees the NAR oracle test archives, by name.
func narTrees(t *testing.T) map[string]string {
	t.Helper()
	base := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	trees := map[string]string{}
	add := func(name string) string {
		p := filepath.Join(base, name)
		trees[name] = p
		return p
	}
	must(os.Mkdir(add("empty-dir"), 0o755))
	must(os.WriteFile(add("empty-file"), nil, 0o644))
	must(os.WriteFile(add("executable"), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	must(os.Symlink("/absolute/elsewhere", add("symlink-absolute")))
	must(os.Symlink("../no/such/file", add("symlink-dangling")))

	mixed := add("mixed")
	must(os.MkdirAll(filepath.Join(mixed, "sub/empty"), 0o755))
	names := []string{"with space", "new\nline", "tab\there", "cr\rx", "\xff\xfe high bytes",
		"ünïcödé-ß-日本語", "quote\"s", "back\\slash", "-dash", "...", ".hidden", "a=b+c?", "<&>",
		"\x01ctrl\x1f", strings.Repeat("L", 255), "a", "a b", "a-b", "a.b", "B", "exact8!!"}
	for i, n := range names {
		content := strings.Repeat(fmt.Sprintf("%d:%q;", i, n), i)
		must(os.WriteFile(filepath.Join(mixed, n), []byte(content), 0o644))
		must(os.WriteFile(filepath.Join(mixed, "sub", n), []byte(content[:len(content)/2]), 0o600|os.FileMode(i%2)*0o100))
	}
	must(os.WriteFile(filepath.Join(mixed, "sub/exec"), []byte("x"), 0o700))
	must(os.WriteFile(filepath.Join(mixed, "sub/group-exec-only"), []byte("x"), 0o614))
	must(os.Symlink("/absolute/target", filepath.Join(mixed, "abs-link")))
	must(os.Symlink("dangling/\xff target with space", filepath.Join(mixed, "odd-link")))
	must(os.Symlink("sub", filepath.Join(mixed, "dir-link")))

	deep := add("deep")
	p := deep
	for i := range 200 {
		p = filepath.Join(p, fmt.Sprintf("d%d", i%10))
	}
	must(os.MkdirAll(p, 0o755))
	must(os.WriteFile(filepath.Join(p, "bottom"), []byte("deep"), 0o644))

	big := add("big-file")
	f, err := os.Create(big)
	must(err)
	chunk := make([]byte, 1<<20)
	for i := range 100 {
		for j := 0; j < len(chunk); j += 8 {
			binary.LittleEndian.PutUint64(chunk[j:], uint64(i*len(chunk)+j)*0x9E3779B97F4A7C15)
		}
		_, err := f.Write(chunk)
		must(err)
	}
	must(f.Close())

	many := add("many-small")
	for i := range 5000 {
		d := filepath.Join(many, fmt.Sprintf("d%02d", i%40))
		must(os.MkdirAll(d, 0o755))
		must(os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), bytes.Repeat([]byte{byte(i)}, i%3000), 0o644|os.FileMode(i%3)*0o100))
	}
	return trees
}

// Every tree: storefs and Nix write the same NAR, the same hash and the same
// listing, and each restores what the other dumps.
func TestNarAgainstNix(t *testing.T) {
	needTool(t, "nix-store")
	needTool(t, "nix-hash")
	needTool(t, "nix")
	env := os.Environ()
	work := t.TempDir()
	for name, path := range narTrees(t) {
		t.Run(name, func(t *testing.T) {
			nixNar := mustRun(t, env, nil, "nix-store", "--dump", path)
			ours := storefs(t, nil, "nar", "dump", path)
			if !bytes.Equal(ours, nixNar) {
				t.Fatalf("storefs nar dump differs from nix-store --dump (%d vs %d bytes, first difference at %d)",
					len(ours), len(nixNar), firstDiff(ours, nixNar))
			}

			nixHash := strings.TrimSpace(string(mustRun(t, env, nil, "nix-hash", "--type", "sha256", "--base32", path)))
			if got := strings.TrimSpace(string(storefs(t, nil, "hash", "path", path))); got != "sha256:"+nixHash {
				t.Errorf("storefs hash path %s, nix-hash sha256:%s", got, nixHash)
			}

			restored := filepath.Join(work, name)
			storefs(t, bytes.NewReader(nixNar), "nar", "restore", restored)
			if again := mustRun(t, env, nil, "nix-store", "--dump", restored); !bytes.Equal(again, nixNar) {
				t.Errorf("nix-store --dump of storefs's restore differs (first difference at %d)", firstDiff(again, nixNar))
			}
			nixRestored := filepath.Join(work, name+".nix")
			mustRun(t, env, bytes.NewReader(ours), "nix-store", "--restore", nixRestored)
			if again := storefs(t, nil, "nar", "dump", nixRestored); !bytes.Equal(again, nixNar) {
				t.Errorf("storefs nar dump of Nix's restore differs (first difference at %d)", firstDiff(again, nixNar))
			}

			narFile := filepath.Join(work, name+".nar")
			if err := os.WriteFile(narFile, nixNar, 0o644); err != nil {
				t.Fatal(err)
			}
			nixLs := mustRun(t, env, nil, "nix", "--extra-experimental-features", "nix-command", "nar", "ls", "-R", "-l", narFile, "/")
			if ls := storefs(t, nil, "nar", "ls", narFile); !bytes.Equal(ls, nixLs) {
				t.Errorf("storefs nar ls differs from nix nar ls -R -l:\n%q\n%q", head(ls), head(nixLs))
			}
			nixJSON := mustRun(t, env, nil, "nix", "--extra-experimental-features", "nix-command", "nar", "ls", "-R", "--json", narFile, "/")
			want := `{"version":1,"root":` + string(nixJSON) + `}`
			if got := storefs(t, nil, "nar", "ls", "--json", narFile); string(got) != want {
				t.Errorf("storefs nar ls --json differs from nix nar ls --json:\n%q\n%q", head(got), head([]byte(want)))
			}
		})
	}
}

// The listing is the .ls file nix copy writes with write-nar-listing=true.
func TestNarListingAgainstNixCopy(t *testing.T) {
	n := newNixStore(t)
	tree := narTrees(t)["mixed"]
	p := n.line(t, "nix-store", "--add", tree)
	cache := filepath.Join(t.TempDir(), "cache")
	n.run(t, nil, "nix", "copy", "--to", "file://"+cache+"?write-nar-listing=true&compression=none", p)
	hashPart := strings.TrimPrefix(p, storeDir+"/")[:32]
	want, err := os.ReadFile(filepath.Join(cache, hashPart+".ls"))
	if err != nil {
		t.Fatal(err)
	}
	nar := storefs(t, nil, "nar", "dump", n.realPath(p))
	narFile := filepath.Join(t.TempDir(), "x.nar")
	os.WriteFile(narFile, nar, 0o644)
	if got := storefs(t, nil, "nar", "ls", "--json", narFile); !bytes.Equal(got, want) {
		t.Errorf("storefs nar ls --json differs from the .ls nix copy wrote:\n%q\n%q", got, want)
	}
}

// narTok writes NAR tokens, for archives Nix would never write.
type narTok struct{ bytes.Buffer }

func (b *narTok) s(ss ...string) *narTok {
	for _, s := range ss {
		binary.Write(&b.Buffer, binary.LittleEndian, uint64(len(s)))
		b.WriteString(s)
		b.Write(make([]byte, -len(s)&7))
	}
	return b
}

func (b *narTok) file(name, contents string) *narTok {
	return b.s("entry", "(", "name", name, "node", "(", "type", "regular", "contents", contents, ")", ")")
}

// Hostile archives through the binary: exit non-zero, one line on stderr,
// nothing left behind, inside or outside the target.
func TestNarRestoreHostile(t *testing.T) {
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func() *narTok { return new(narTok).s("nix-archive-1", "(", "type", "directory") }
	cases := map[string]*narTok{
		"dot-dot entry":      start().file("..", "pwned").s(")"),
		"slash in a name":    start().file("a/b", "pwned").s(")"),
		"absolute name":      start().file("/tmp/pwned", "pwned").s(")"),
		"duplicate entries":  start().file("a", "1").file("a", "2").s(")"),
		"unsorted entries":   start().file("b", "1").file("a", "2").s(")"),
		"truncated":          start().file("a", "1").s("entry", "(", "name"),
		"trailing garbage":   start().file("a", "1").s(")", "more"),
		"empty symlink":      start().s("entry", "(", "name", "l", "node", "(", "type", "symlink", "target", "", ")", ")", ")"),
		"NUL in a name":      start().file("a\x00b", "x").s(")"),
		"unknown node type":  start().s("entry", "(", "name", "f", "node", "(", "type", "fifo", ")", ")", ")"),
		"entry over symlink": start().s("entry", "(", "name", "a", "node", "(", "type", "symlink", "target", victim, ")", ")").s("entry", "(", "name", "a", "node", "(", "type", "directory").file("x", "pwned").s(")", ")", ")"),
		"through symlink ..": start().s("entry", "(", "name", "b", "node", "(", "type", "symlink", "target", "..", ")", ")").file("b/x", "pwned").s(")"),
	}
	size := start().s("entry", "(", "name", "big", "node", "(", "type", "regular", "contents")
	binary.Write(&size.Buffer, binary.LittleEndian, uint64(1)<<63)
	cases["size 2^63"] = size
	for name, nar := range cases {
		t.Run(name, func(t *testing.T) {
			parent := filepath.Join(base, "parent")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(parent)
			r := storefsResult(t, bytes.NewReader(nar.Bytes()), "nar", "restore", filepath.Join(parent, "target"))
			if r.code == 0 {
				t.Fatal("storefs nar restore accepted a hostile NAR")
			}
			if lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n"); len(lines) != 1 ||
				!strings.Contains(lines[0], "nar offset ") {
				t.Errorf("stderr is not one line naming the offset: %q", r.stderr)
			}
			for _, dir := range []string{parent, victim} {
				if left, _ := os.ReadDir(dir); len(left) != 0 {
					t.Errorf("left in %s: %v", dir, left)
				}
			}
			if left, _ := os.ReadDir(base); len(left) != 2 {
				t.Errorf("left next to the target: %v", left)
			}
			if _, err := os.Lstat("/tmp/pwned"); err == nil {
				t.Error("/tmp/pwned was written")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// head is the start of a long output, for messages.
func head(b []byte) []byte {
	if len(b) > 2000 {
		return b[:2000]
	}
	return b
}
