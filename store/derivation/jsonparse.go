package derivation

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"storefs/store/storepath"
)

// ParseJSON reads derivations in the JSON form of `nix show-derivation`:
// either the whole map from .drv path to derivation, or one bare derivation
// object. It returns them in the order of their keys (sorted by path).
//
// JSON is read as JSON: members may come in any order and whitespace is
// free, but a key may not repeat, every field of Nix 2.8's form is required
// (an optional "name" must equal env["name"]), and unknown fields are
// refused. Lists that are sets (inputSrcs, each input's output names) are
// sorted and may not hold duplicates. Strings may hold any bytes, as Nix
// writes them, but no raw control characters. An output's "path" may be
// left out, to be computed by Hasher.Fill; a fixed-output hash may be in any
// form Nix reads (hex, nix32, base64). When every output path is given, a
// map key must be the derivation's own .drv path.
func ParseJSON(data []byte, dir storepath.Dir) ([]*Derivation, error) {
	p := &jsonParser{cursor{b: data, dir: dir, format: "derivation JSON"}}
	var bare *jsonDrv
	type keyed struct {
		key string
		off int
		d   *Derivation
	}
	var entries []keyed
	p.ws()
	start := p.pos
	err := p.object("the top level", func(key string, off int) error {
		if strings.HasPrefix(key, "/") {
			if bare != nil {
				return p.failAt(off, nil, "key %q: a derivation object holds no paths as keys", key)
			}
			d, err := p.derivation()
			if err != nil {
				return err
			}
			entries = append(entries, keyed{key, off, d})
			return nil
		}
		if entries != nil {
			return p.failAt(off, nil, "key %q in a map of .drv paths", key)
		}
		if bare == nil {
			bare = newJSONDrv()
		}
		return p.field(bare, key, off)
	})
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos != len(p.b) {
		return nil, p.failAt(p.pos, nil, "%d bytes after the end of the JSON value", len(p.b)-p.pos)
	}
	if bare != nil {
		d, err := p.finish(bare, start)
		if err != nil {
			return nil, err
		}
		return []*Derivation{d}, nil
	}
	if len(entries) == 0 {
		return nil, p.failAt(0, nil, "no derivation in {}")
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	out := make([]*Derivation, len(entries))
	for i, e := range entries {
		kp, err := dir.Parse(e.key)
		if err != nil {
			return nil, p.failAt(e.off, err, "key")
		}
		if !kp.IsDerivation() {
			return nil, p.failAt(e.off, nil, "key %q is not a .drv path", e.key)
		}
		if complete(e.d) {
			got, err := e.d.Path(dir)
			if err != nil {
				return nil, p.failAt(e.off, err, "derivation %s", e.key)
			}
			if got != kp {
				return nil, p.failAt(e.off, nil, "key %s is not the path of its derivation, %s", e.key, dir.Print(got))
			}
		}
		out[i] = e.d
	}
	return out, nil
}

func complete(d *Derivation) bool {
	for _, o := range d.Outputs {
		if o.Path.IsZero() {
			return false
		}
	}
	return true
}

// jsonDrv collects the fields of one derivation object.
type jsonDrv struct {
	d    *Derivation
	seen map[string]bool
	name *string
}

func newJSONDrv() *jsonDrv {
	return &jsonDrv{d: &Derivation{
		Outputs:   map[string]Output{},
		InputDrvs: map[storepath.Path][]string{},
		Env:       map[string]string{},
	}, seen: map[string]bool{}}
}

var jsonFields = []string{"outputs", "inputSrcs", "inputDrvs", "system", "builder", "args", "env"}

type jsonParser struct{ cursor }

func (p *jsonParser) ws() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) expect(c byte, where string) error {
	p.ws()
	if p.pos >= len(p.b) || p.b[p.pos] != c {
		return p.failAt(p.pos, nil, "expected '%c' %s, found %s", c, where, p.found())
	}
	p.pos++
	return nil
}

// object parses `{"k": v, ...}`, calling member after each key and its
// colon to parse the value. Repeated keys are refused.
func (p *jsonParser) object(what string, member func(key string, off int) error) error {
	if err := p.expect('{', "to open "+what); err != nil {
		return err
	}
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == '}' {
		p.pos++
		return nil
	}
	keys := map[string]bool{}
	for {
		p.ws()
		off := p.pos
		k, err := p.str("a key in " + what)
		if err != nil {
			return err
		}
		if keys[k] {
			return p.failAt(off, nil, "key %q repeated in %s", k, what)
		}
		keys[k] = true
		if err := p.expect(':', "after key "+fmt.Sprintf("%q", k)); err != nil {
			return err
		}
		p.ws()
		if err := member(k, off); err != nil {
			return err
		}
		p.ws()
		if p.pos < len(p.b) && p.b[p.pos] == ',' {
			p.pos++
			continue
		}
		return p.expect('}', "or ',' in "+what)
	}
}

// strings parses an array of strings, calling elem with each.
func (p *jsonParser) strings(what string, elem func(s string, off int) error) error {
	if err := p.expect('[', "to open "+what); err != nil {
		return err
	}
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == ']' {
		p.pos++
		return nil
	}
	for {
		p.ws()
		off := p.pos
		s, err := p.str("an element of " + what)
		if err != nil {
			return err
		}
		if err := elem(s, off); err != nil {
			return err
		}
		p.ws()
		if p.pos < len(p.b) && p.b[p.pos] == ',' {
			p.pos++
			continue
		}
		return p.expect(']', "or ',' in "+what)
	}
}

// str parses a JSON string. Bytes other than quotes, backslashes and control
// characters are taken as they are, valid UTF-8 or not, as Nix writes them.
func (p *jsonParser) str(what string) (string, error) {
	p.ws()
	start := p.pos
	if p.pos >= len(p.b) || p.b[p.pos] != '"' {
		return "", p.failAt(p.pos, nil, "expected a string (%s), found %s", what, p.found())
	}
	p.pos++
	// As the ATerm parser does: a string without escapes is one copy of
	// its bytes, and one with escapes one allocation of at most its raw
	// length (escapes only shrink), so a long env var costs its length
	// once, not the doublings of a growing buffer.
	n, plain := jsonStrLen(p.b[p.pos:])
	if plain {
		s := string(p.b[p.pos : p.pos+n])
		p.pos += n + 1
		return s, nil
	}
	var sb strings.Builder
	if n > 0 {
		sb.Grow(n)
	}
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		switch {
		case c == '"':
			p.pos++
			return sb.String(), nil
		case c < 0x20:
			return "", p.failAt(p.pos, nil, "raw control character %q in a string (%s)", c, what)
		case c != '\\':
			end := p.pos + 1
			for end < len(p.b) && p.b[end] != '"' && p.b[end] != '\\' && p.b[end] >= 0x20 {
				end++
			}
			sb.Write(p.b[p.pos:end])
			p.pos = end
			continue
		}
		if p.pos+1 >= len(p.b) {
			break
		}
		e := p.b[p.pos+1]
		if r, ok := jsonEscapes[e]; ok {
			sb.WriteByte(r)
			p.pos += 2
			continue
		}
		if e != 'u' {
			return "", p.failAt(p.pos, nil, "invalid escape %q in a string (%s)", p.b[p.pos:p.pos+2], what)
		}
		r, err := p.hex4(what)
		if err != nil {
			return "", err
		}
		if utf16.IsSurrogate(r) {
			off := p.pos
			r2, err := p.hex4(what)
			if err != nil || r >= 0xdc00 {
				return "", p.failAt(off-6, nil, "unpaired surrogate \\u%04x in a string (%s)", r, what)
			}
			if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
				return "", p.failAt(off-6, nil, "unpaired surrogate in a string (%s)", what)
			}
		}
		sb.WriteString(string(r))
	}
	return "", p.failAt(start, nil, "unterminated string (%s)", what)
}

// jsonStrLen is the raw length of the JSON string that starts b (up to
// the first '"' no backslash escapes), or -1 if no such '"' ends it, and
// whether the string holds no backslash and no control character, so that
// its bytes are its value.
func jsonStrLen(b []byte) (int, bool) {
	plain := true
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i, plain
		case c == '\\':
			plain = false
			i++
		case c < 0x20:
			plain = false
		}
	}
	return -1, false
}

var jsonEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 parses `\uXXXX` at p.pos.
func (p *jsonParser) hex4(what string) (rune, error) {
	if p.pos+6 > len(p.b) || p.b[p.pos] != '\\' || p.b[p.pos+1] != 'u' {
		return 0, p.failAt(p.pos, nil, "expected \\uXXXX in a string (%s), found %s", what, p.found())
	}
	var r rune
	for _, c := range p.b[p.pos+2 : p.pos+6] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, p.failAt(p.pos, nil, "bad \\u escape %q in a string (%s)", p.b[p.pos:p.pos+6], what)
		}
		r = r<<4 | rune(v)
	}
	p.pos += 6
	return r, nil
}
