package realise

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"storefs/store/storepath"
)

func TestRefScanner(t *testing.T) {
	a, _ := storepath.ParseBase("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	b, _ := storepath.ParseBase("7rrx1afrzyb3vj81nl0vz42sf3vmaxyn-t.txt")
	c, _ := storepath.ParseBase("wsahbxs83r9rqq5rqilj4bz2lldrkncq-hi.txt")
	data := "xx/store/" + a.Base() + "/bin\x00" + strings.Repeat("z", 40) + b.HashPart() + "!" + c.HashPart()[:31]
	for split := 0; split <= len(data); split++ {
		for _, chunk := range []int{1, 7, 31, 32, 33, 1000} {
			r := newRefScanner([]storepath.Path{a, b, c})
			rest := data
			first := rest[:split]
			rest = rest[split:]
			r.Write([]byte(first))
			for len(rest) > 0 {
				k := min(chunk, len(rest))
				r.Write([]byte(rest[:k]))
				rest = rest[k:]
			}
			got := r.Found()
			if len(got) != 2 || got[0] != b || got[1] != a {
				t.Fatalf("split %d chunk %d: found %v, want [%s %s]", split, chunk, got, b, a)
			}
		}
	}
}

// BenchmarkRefScanner scans data where every byte is a nix32 symbol (the
// worst case: no byte lets the scanner skip ahead) and ordinary text.
func BenchmarkRefScanner(b *testing.B) {
	var cands []storepath.Path
	for i := range 200 {
		p, err := storepath.ParseBase(fmt.Sprintf("%032d-p%d", i, i))
		if err != nil {
			b.Fatal(err)
		}
		cands = append(cands, p)
	}
	for _, c := range []struct{ name, unit string }{
		{"digits", "1234567890"},
		{"text", "the quick brown fox jumps over the lazy dog.\n"},
	} {
		data := []byte(strings.Repeat(c.unit, (1<<20)/len(c.unit)))
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			r := newRefScanner(cands)
			for b.Loop() {
				r.Write(data)
			}
		})
	}
}

// FuzzRefScanner compares the scanner, fed in two writes split anywhere,
// with a plain search for each hash part.
func FuzzRefScanner(f *testing.F) {
	a, _ := storepath.ParseBase("sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	b, _ := storepath.ParseBase("7rrx1afrzyb3vj81nl0vz42sf3vmaxyn-t.txt")
	c, _ := storepath.ParseBase("00000000000000000000000000000000-zeros")
	cands := []storepath.Path{a, b, c}
	f.Add([]byte("/store/"+a.Base()), 3)
	f.Add([]byte(strings.Repeat("0", 40)+b.HashPart()), 20)
	f.Add([]byte("sy1pf09am17617zf6qgqfdwjx6axhsb"), 0)
	f.Add([]byte("7rrx1afrzyb3vj81nl0vz42sf3vmaxy7rrx1afrzyb3vj81nl0vz42sf3vmaxyn"), 31)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		r := newRefScanner(cands)
		r.Write(data[:split])
		r.Write(data[split:])
		var want []storepath.Path
		for _, p := range cands {
			if bytes.Contains(data, []byte(p.HashPart())) {
				want = append(want, p)
			}
		}
		storepath.Sort(want)
		got := r.Found()
		if len(got) != len(want) {
			t.Fatalf("found %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("found %v, want %v", got, want)
			}
		}
	})
}
