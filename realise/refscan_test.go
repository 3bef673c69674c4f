package realise

import (
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
