package realise

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCachePath(t *testing.T) {
	for _, p := range []string{"nar/1fjni62dl9y43g4w72yqblvlw18dc9fdsnda3af3dbfiidlaald5.nar.xz", "x.narinfo", "a/b/c", "nix-cache-info", "a..b", "..."} {
		if err := checkCachePath(p); err != nil {
			t.Errorf("%q refused: %v", p, err)
		}
	}
	for _, c := range []struct{ path, want string }{
		{"", "empty path"},
		{"../x", `"../x" has a ".." segment: it may not leave the cache`},
		{"nar/../../etc/passwd", `has a ".." segment`},
		{"nar/./x", `has a "." segment`},
		{"/etc/passwd", `"/etc/passwd" is absolute`},
		{"nar//x", "has an empty segment"},
		{"nar/", "has an empty segment"},
		{"https://evil.example/x.nar", `the character ':'`},
		{"nar/x.nar?a=b", `the character '?'`},
		{"nar/%2e%2e/x", `the character '%'`},
		{`nar\..\x`, `the character '\\'`},
		{"nar/x\x00", `the character '\x00'`},
		{"nar/x y", `the character ' '`},
		{strings.Repeat("a", 1025), "path of 1025 bytes is too long"},
	} {
		err := checkCachePath(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkCachePath(%.40q) = %v, want an error containing %q", c.path, err, c.want)
		}
	}
}

func FuzzCheckCachePath(f *testing.F) {
	for _, s := range []string{"nar/abc.nar.xz", "../x", "/x", "a//b", "a/./b", "nar/%2e", "a\\b", "..", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if checkCachePath(p) != nil {
			return
		}
		root := "/cache/root"
		j := filepath.Join(root, p)
		if !strings.HasPrefix(j, root+"/") || filepath.Clean(p) != p {
			t.Errorf("accepted %q, which resolves to %q", p, j)
		}
	})
}

// Every decompressor refuses garbage with an error, never a panic, and the
// bound at NarSize holds whatever the stream expands to.
func FuzzDecompress(f *testing.F) {
	for _, c := range Compressions {
		var buf bytes.Buffer
		w, err := compressor(c, &buf)
		if err != nil {
			f.Fatal(err)
		}
		w.Write(bytes.Repeat([]byte("nix-archive-1 "), 100))
		w.Close()
		f.Add(c, buf.Bytes(), uint16(64))
		f.Add(c, buf.Bytes()[:buf.Len()/2], uint16(2000))
	}
	f.Add("xz", []byte("garbage"), uint16(10))
	f.Fuzz(func(t *testing.T, c string, data []byte, limit uint16) {
		if checkCompression(c) != nil || c == "bzip2" && len(data) > 1<<16 {
			return
		}
		d, err := decompressor(c, bytes.NewReader(data))
		if err != nil {
			return
		}
		defer d.Close()
		b := &boundedReader{r: d, left: uint64(limit), url: "fuzz"}
		n, _ := io.Copy(io.Discard, b)
		if n > int64(limit) {
			t.Errorf("%s: read %d bytes past the bound %d", c, n, limit)
		}
	})
}
