package realise

import (
	"storefs/store/nixbase32"
	"storefs/store/storepath"
)

// refScanner finds which of a set of store paths a byte stream mentions: a
// path is referred to when its 32-character hash part appears anywhere
// (docs/formats.md, "References"). It is an io.Writer so it can sit beside
// the NAR hasher and see each byte once.
type refScanner struct {
	want  map[string]storepath.Path // hash part -> path
	found map[storepath.Path]bool
	tail  []byte // the last HashLen-1 bytes seen, for hashes split across writes
	// prefixes has bit k set when some wanted hash starts with the three
	// symbols whose alphabet indexes make k (5 bits each): most windows of
	// nix32 symbols (decimal or hex text) are ruled out by one bit test
	// instead of a map lookup.
	prefixes [1 << 15 / 64]uint64
}

// symbolIndex is each byte's index in the nix32 alphabet, or -1.
var symbolIndex = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(nixbase32.Alphabet); i++ {
		t[nixbase32.Alphabet[i]] = int8(i)
	}
	return t
}()

// prefixKey is the bit of prefixes for a window starting with b[0:3], all
// nix32 symbols.
func prefixKey(b []byte) int {
	return int(symbolIndex[b[0]])<<10 | int(symbolIndex[b[1]])<<5 | int(symbolIndex[b[2]])
}

func newRefScanner(candidates []storepath.Path) *refScanner {
	r := &refScanner{want: make(map[string]storepath.Path, len(candidates)), found: map[storepath.Path]bool{}}
	for _, p := range candidates {
		h := p.HashPart()
		r.want[h] = p
		k := prefixKey([]byte(h))
		r.prefixes[k/64] |= 1 << (k % 64)
	}
	return r
}

func (r *refScanner) Write(p []byte) (int, error) {
	const n = storepath.HashLen
	// A hash split across writes lies in tail + the first n-1 bytes of p.
	if len(r.tail) > 0 {
		head := p
		if len(head) > n-1 {
			head = head[:n-1]
		}
		joined := append(append(make([]byte, 0, len(r.tail)+len(head)), r.tail...), head...)
		r.scan(joined)
	}
	r.scan(p)
	if len(p) >= n-1 {
		r.tail = append(r.tail[:0], p[len(p)-(n-1):]...)
	} else {
		r.tail = append(r.tail, p...)
		if len(r.tail) > n-1 {
			r.tail = r.tail[len(r.tail)-(n-1):]
		}
	}
	return len(p), nil
}

// scan looks at every n-byte window of b made only of nix32 symbols. On a
// symbol outside the alphabet it skips past it, so most bytes of ordinary
// data are looked at once.
func (r *refScanner) scan(b []byte) {
	const n = storepath.HashLen
	for i := 0; i+n <= len(b); {
		j := n - 1
		for j >= 0 && nixbase32.ValidByte(b[i+j]) {
			j--
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		// Every symbol of b[i:i+n] is valid; so, while the next byte is,
		// is every symbol of each following window.
		for {
			if k := prefixKey(b[i:]); r.prefixes[k/64]&(1<<(k%64)) != 0 {
				if p, ok := r.want[string(b[i:i+n])]; ok {
					r.found[p] = true
				}
			}
			i++
			if i+n > len(b) || !nixbase32.ValidByte(b[i+n-1]) {
				break
			}
		}
	}
}

// Found returns the candidates seen.
func (r *refScanner) Found() []storepath.Path {
	out := make([]storepath.Path, 0, len(r.found))
	for p := range r.found {
		out = append(out, p)
	}
	storepath.Sort(out)
	return out
}
