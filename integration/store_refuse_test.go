package integration

// What the store refuses (bad streams, bad derivations, a bad gc root) and
// what its garbage collector deletes.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"storefs/store"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// TestStoreRefusesBadInput: each bad input gives one clear line and
// registers nothing.
func TestStoreRefusesBadInput(t *testing.T) {
	n := newNixStore(t)
	needTool(t, "nix-instantiate")
	drvPath := n.line(t, "nix-instantiate", "-E",
		`derivation { name = "x"; system = "x86_64-linux"; builder = "/bin/sh"; args = ["-c" "echo > $out"]; }`)
	drvData, err := os.ReadFile(n.realPath(drvPath))
	if err != nil {
		t.Fatal(err)
	}
	outPath := strings.TrimSpace(n.line(t, "nix-store", "-q", "--outputs", drvPath))
	// The same derivation claiming another output path (one hash character
	// changed), stored at the text path of those contents.
	wrongOut := outPath[:len(storeDir)+1] + flipNix32(outPath[len(storeDir)+1]) + outPath[len(storeDir)+2:]
	wrongDrv := bytes.ReplaceAll(drvData, []byte(outPath), []byte(wrongOut))
	wrongDrvPath, err := storepath.Dir(storeDir).MakeCA("x.drv",
		storepath.ContentAddress{Text: true, Hash: nixhash.Sum(nixhash.SHA256, wrongDrv)}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	wrongDrvFile := filepath.Join(t.TempDir(), "wrong.drv")
	if err := os.WriteFile(wrongDrvFile, wrongDrv, 0o644); err != nil {
		t.Fatal(err)
	}

	three, _ := fileStream([]string{"one", "two", "three refers to the others"}, map[int][]int{2: {0, 1}})
	single := func(write func(*narWriter), path string, refs []storepath.Path) []byte {
		var buf bytes.Buffer
		b := newStreamBuilder(&buf)
		b.NAR(write)
		b.Trailer(path, refs, "")
		b.Close()
		return buf.Bytes()
	}
	file := func(data []byte) func(*narWriter) {
		return func(nw *narWriter) { nw.fileBytes(data, false) }
	}
	var missing storepath.Path
	{
		b := newStreamBuilder(&bytes.Buffer{})
		missing = b.Add("gone", nil, "", file([]byte("not in the store")))
	}

	cases := []struct {
		name  string
		stdin []byte
		args  []string
		want  string
	}{
		{"truncated stream", three[:len(three)/2], []string{"import"}, "truncated"},
		{"stream without its end", three[:len(three)-8], []string{"import"}, "stream truncated in the path marker"},
		{"malformed NAR", bytes.Replace(three, []byte("nix-archive-1"), []byte("nix-archive-2"), 2), []string{"import"}, "nar offset"},
		{"unsorted directory", single(func(nw *narWriter) {
			nw.open("directory")
			for _, name := range []string{"b", "a"} {
				nw.entry(name)
				nw.fileBytes([]byte(name), false)
				nw.close()
			}
			nw.close()
		}, storeDir+"/"+missing.Base(), nil), []string{"import"}, "sorted"},
		{"derivation not at its text address", single(file(append([]byte(nil), wrongDrv...)), drvPath, nil),
			[]string{"import"}, "its contents and references make the text path " + storeDir + "/" + wrongDrvPath.Base()},
		{"derivation with wrong outputs", single(file(wrongDrv), storeDir+"/"+wrongDrvPath.Base(), nil),
			[]string{"import"}, `output "out" has path "` + wrongOut + `", but its computed path is ` + outPath},
		{"derivation add with wrong outputs", nil, []string{"derivation", "add", wrongDrvFile},
			`output "out" has path "` + wrongOut + `", but its computed path is ` + outPath},
		{"missing reference", single(file([]byte("refers to gone")), storeDir+"/"+missing.Base()[:33]+"refers",
			[]storepath.Path{missing}), []string{"import"}, "reference " + storeDir + "/" + missing.Base() + " is not a valid path nor earlier in the stream"},
		{"invalid name in the trailer", single(file([]byte("x")), storeDir+"/"+missing.Base()[:33]+"bad name", nil),
			[]string{"import"}, `store path name "bad name" has invalid character ' '`},
		{"gc root outside the store", nil, []string{"gc"}, "gcroots/evil points to /etc, outside the store"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSfsStore(t)
			base, _ := fileStream([]string{"already here", "and this"}, map[int][]int{1: {0}})
			s.run(t, bytes.NewReader(base), "import")
			if c.name == "gc root outside the store" {
				if err := os.Symlink("/etc", filepath.Join(s.state, "gcroots", "evil")); err != nil {
					t.Fatal(err)
				}
			}
			before, backing := s.valid(t), s.backing(t)
			r := s.result(t, bytes.NewReader(c.stdin), c.args...)
			msg := string(r.stderr)
			if r.code != 1 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "storefs: ") || !strings.Contains(msg, c.want) {
				t.Errorf("exit %d, stderr %q: want exit 1 and one line with %q", r.code, msg, c.want)
			}
			t.Logf("%s", msg)
			if after := s.valid(t); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("valid paths changed: %v, were %v", after, before)
			}
			if after := s.backing(t); strings.Join(after, " ") != strings.Join(backing, " ") {
				t.Errorf("backing directory changed: %v, was %v", after, backing)
			}
			s.verify(t)
			if left := dirNames(t, filepath.Join(s.state, "tmp")); len(left) != 0 {
				t.Errorf("scratch left behind: %v", left)
			}
		})
	}
}

// flipNix32 returns another nix32 character.
func flipNix32(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// TestStoreGC: roots keep their closure; unrooted paths go oldest first,
// referrers before what they refer to; --max-freed stops early, --dry-run
// deletes nothing; delete refuses live paths; a locked path stays; an
// import running alongside collections keeps every path it needs.
func TestStoreGC(t *testing.T) {
	s := newSfsStore(t)
	imp := func(files []string, refs map[int][]int) []string {
		t.Helper()
		data, ps := fileStream(files, refs)
		s.run(t, bytes.NewReader(data), "import")
		return ps
	}
	kept := imp([]string{"y", "x refers to y", "r refers to x"}, map[int][]int{1: {0}, 2: {1}})
	s.run(t, nil, "add-root", kept[2])
	// Registration times are in seconds: a second apart, oldest first.
	u1 := imp([]string{"u1 " + strings.Repeat("1", 1000)}, nil)[0]
	time.Sleep(1100 * time.Millisecond)
	u2 := imp([]string{"u2 " + strings.Repeat("2", 2000)}, nil)[0]
	time.Sleep(1100 * time.Millisecond)
	u34 := imp([]string{"u3", "u4 refers to u3"}, map[int][]int{1: {0}})
	u3, u4 := u34[0], u34[1]
	all := s.valid(t)

	lines := func(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }
	if got, want := lines(s.run(t, nil, "gc", "--dry-run")), strings.Join([]string{u1, u2, u4, u3}, " "); got != want {
		t.Errorf("gc --dry-run printed %s\nwant %s", got, want)
	}
	if got := s.valid(t); strings.Join(got, " ") != strings.Join(all, " ") {
		t.Errorf("gc --dry-run deleted %v", got)
	}

	for _, c := range []struct{ path, want string }{
		{u3, "cannot delete " + u3 + ": still referenced by " + u4},
		{kept[0], "cannot delete " + kept[0] + ": still referenced by " + kept[1]},
		{kept[2], "cannot delete " + kept[2] + ": it is a gc root"},
	} {
		r := s.result(t, nil, "delete", c.path)
		if r.code != 1 || !strings.Contains(string(r.stderr), c.want) {
			t.Errorf("delete %s: exit %d, %q; want %q", c.path, r.code, r.stderr, c.want)
		}
	}

	info := pathInfos(t, s.run(t, nil, "path-info", "--json", u1))
	size := uint64(info[u1]["narSize"].(float64))
	if got := lines(s.run(t, nil, "gc", "--max-freed", strconv.FormatUint(size+1, 10))); got != u1+" "+u2 {
		t.Errorf("gc --max-freed %d deleted %s, want %s %s", size+1, got, u1, u2)
	}

	// A path whose lock is held (as by an add or build in progress) stays,
	// and so does what it refers to.
	st, err := store.Open(storeDir, s.state, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p4, err := storepath.Dir(storeDir).Parse(u4)
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.Lock(context.Background(), p4)
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(s.run(t, nil, "gc")); got != "" {
		t.Errorf("gc with %s locked deleted %s", u4, got)
	}
	l.Unlock()
	st.Close()
	if got := lines(s.run(t, nil, "gc")); got != u4+" "+u3 {
		t.Errorf("gc deleted %s, want %s %s", got, u4, u3)
	}
	if got := s.valid(t); strings.Join(got, " ") != strings.Join(sortedCopy(kept), " ") {
		t.Errorf("after gc: %v, want the root's closure %v", got, kept)
	}
	s.verify(t)

	gcDuringImport(t, s)
}

// gcDuringImport collects garbage over and over while an import runs whose
// later paths refer to earlier ones: the import must still succeed.
func gcDuringImport(t *testing.T, s *sfsStore) {
	streamFile, paths := genStream(t, t.TempDir(), streamSpec{Paths: 800, Bytes: 60 << 20, Seed: 11})
	f, err := os.Open(streamFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(storefsBin, s.args("import")...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var gcs, deleted int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			r := s.result(t, nil, "gc")
			if r.code != 0 {
				t.Errorf("gc during import: exit %d: %s", r.code, r.stderr)
				return
			}
			gcs++
			deleted += len(strings.Fields(string(r.stdout)))
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatalf("import alongside gc: %v: %s", err, errb.Bytes())
	}
	if got := strings.Fields(out.String()); len(got) != len(paths) {
		t.Errorf("import printed %d paths, want %d", len(got), len(paths))
	}
	t.Logf("%d collections ran during the import and deleted %d paths", gcs, deleted)
	s.verify(t)
}

func sortedCopy(ps []string) []string {
	out := append([]string(nil), ps...)
	sort.Strings(out)
	return out
}

// TestStoreVerify: verify names each broken rule with its path and exits 1;
// --repair fixes what it can and exits 0 only when nothing is left.
func TestStoreVerify(t *testing.T) {
	s := newSfsStore(t)
	data, ps := fileStream([]string{"kept", "to be changed"}, nil)
	s.run(t, bytes.NewReader(data), "import")
	s.verify(t)
	base := func(p string) string { return strings.TrimPrefix(p, storeDir+"/") }
	stray := filepath.Join(s.state, "store", "stray")
	if err := os.WriteFile(stray, []byte("no record"), 0o444); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(s.state, "store", base(ps[1]))
	if err := os.Chmod(changed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, []byte("to be CHANGED"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect := func(args []string, code int, want ...string) {
		t.Helper()
		r := s.result(t, nil, args...)
		if r.code != code {
			t.Errorf("%s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, code, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(string(r.stderr), w) {
				t.Errorf("%s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
			}
		}
	}
	expect([]string{"verify"}, 1, stray+": backing entry has no database record")
	expect([]string{"verify", "--check-contents"}, 1,
		stray+": backing entry has no database record",
		ps[1]+": contents have NAR hash",
		ps[1]+": not canonical: "+changed+" has mode -rw-r--r--")
	// The stray entry goes and the modes are fixed; the changed contents
	// cannot be repaired.
	expect([]string{"verify", "--check-contents", "--repair"}, 1, "after repair: "+ps[1]+": contents have NAR hash")
	if _, err := os.Lstat(stray); !os.IsNotExist(err) {
		t.Errorf("stray entry survived --repair: %v", err)
	}
	expect([]string{"verify"}, 0)
}
