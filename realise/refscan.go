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
}

func newRefScanner(candidates []storepath.Path) *refScanner {
	r := &refScanner{want: make(map[string]storepath.Path, len(candidates)), found: map[storepath.Path]bool{}}
	for _, p := range candidates {
		r.want[p.HashPart()] = p
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
		if p, ok := r.want[string(b[i:i+n])]; ok {
			r.found[p] = true
		}
		i++
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
