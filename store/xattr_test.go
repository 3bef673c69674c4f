package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"storefs/store/nar"
	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Registration removes every extended attribute (a builder may have set
// one past the seccomp filter), and verify reports one that appears
// later.
func TestCanonicalRemovesXattrs(t *testing.T) {
	s := testStore(t)
	tmp, err := s.NewTemp()
	must(t, err)
	src := filepath.Join(tmp, "x")
	must(t, os.Rename(tree(t, "x", "x"), src))
	set := map[string]string{ // entry -> attribute
		"":        "user.dir",
		"file":    "user.injected",
		"sub":     "user.sub",
		"sub/exe": "trusted.root-only",
		"link":    "trusted.on-a-symlink", // user.* is not allowed on symlinks
	}
	for entry, attr := range set {
		p := filepath.Join(src, entry)
		if err := unix.Lsetxattr(p, attr, []byte("v"), 0); err != nil {
			t.Fatalf("setting %s on %s: %v", attr, p, err)
		}
	}
	h := nixhash.SHA256.New()
	cw := &countWriter{w: h}
	must(t, nar.Dump(cw, src))
	p, err := storepath.ParseBase("0123456789abcdfghijklmnpqrsvwxyz-x")
	must(t, err)
	must(t, s.Register(Registration{Info: PathInfo{Path: p, NarHash: nixhash.FromHasher(nixhash.SHA256, h), NarSize: cw.n}, Contents: src}))
	real := s.RealPath(p)
	for entry := range set {
		q := filepath.Join(real, entry)
		names, err := listXattrs(q)
		if err != nil || len(names) != 0 {
			t.Errorf("%s keeps extended attributes %v (%v)", q, names, err)
		}
	}
	// A path changed behind the store's back is reported.
	must(t, unix.Lsetxattr(filepath.Join(real, "file"), "user.later", []byte("v"), 0))
	probs, err := s.Check(CheckOptions{Contents: true})
	must(t, err)
	if len(probs) != 1 || !strings.Contains(probs[0].What, "has extended attribute user.later") {
		t.Errorf("check: %v, want one problem naming user.later", probs)
	}
	must(t, unix.Lremovexattr(filepath.Join(real, "file"), "user.later"))
}
