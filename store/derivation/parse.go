package derivation

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// ParseError is a .drv or JSON derivation that could not be read: where, and
// what was wrong there.
type ParseError struct {
	Format string // "derivation" (ATerm) or "derivation JSON"
	Offset int    // byte offset in the input
	Msg    string
	Err    error // the underlying error, if any
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("%s offset %d: %s", e.Format, e.Offset, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ParseError) Unwrap() error { return e.Err }

// Parse reads a .drv file whose paths are in dir. It accepts exactly the
// canonical form Nix writes (see the package comment), so that
// Parse(b).ATerm(dir) == b; it does not Validate.
func Parse(data []byte, dir storepath.Dir) (*Derivation, error) {
	p := &parser{cursor{b: data, dir: dir, format: "derivation"}}
	d, err := p.derivation()
	if err != nil {
		return nil, err
	}
	return d, nil
}

// cursor is the position in the input shared by the ATerm and JSON parsers,
// and how they report an error there.
type cursor struct {
	b      []byte
	pos    int
	dir    storepath.Dir
	format string // "derivation" or "derivation JSON", for errors
}

type parser struct{ cursor }

func (c *cursor) failAt(off int, err error, format string, args ...any) error {
	return &ParseError{Format: c.format, Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// found describes the input at the current position, for errors.
func (c *cursor) found() string {
	if c.pos >= len(c.b) {
		return "end of input"
	}
	rest := c.b[c.pos:]
	if len(rest) > 16 {
		return fmt.Sprintf("%q...", rest[:16])
	}
	return fmt.Sprintf("%q", rest)
}

func (p *parser) expect(lit, where string) error {
	if !bytes.HasPrefix(p.b[p.pos:], []byte(lit)) {
		return p.failAt(p.pos, nil, "expected %q %s, found %s", lit, where, p.found())
	}
	p.pos += len(lit)
	return nil
}

// list parses `[item,item,...]`, calling item for each element.
func (p *parser) list(what string, item func() error) error {
	if err := p.expect("[", "to open "+what); err != nil {
		return err
	}
	if p.pos < len(p.b) && p.b[p.pos] == ']' {
		p.pos++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.pos >= len(p.b) {
			return p.failAt(p.pos, nil, "expected ',' or ']' in %s, found end of input", what)
		}
		switch p.b[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return nil
		default:
			return p.failAt(p.pos, nil, "expected ',' or ']' in %s, found %s", what, p.found())
		}
	}
}

// str parses a quoted string. Fields Nix writes with escapes (escaped) may
// hold exactly the escapes Nix writes; the others may hold no backslash.
func (p *parser) str(what string, escaped bool) (string, error) {
	start := p.pos
	if err := p.expect(`"`, "to open "+what); err != nil {
		return "", err
	}
	from := p.pos
	// Size the result first, so that a long string costs one allocation
	// of its length (not the doublings of a growing buffer), and one
	// without escapes is a single copy of its bytes.
	n, plain := unescapedLen(p.b[from:], escaped)
	if plain {
		p.pos = from + n + 1
		return string(p.b[from : from+n]), nil
	}
	var sb strings.Builder
	if n > 0 {
		sb.Grow(n)
	}
	for p.pos < len(p.b) {
		c := p.b[p.pos]
		switch {
		case c == '"':
			sb.Write(p.b[from:p.pos])
			p.pos++
			return sb.String(), nil
		case c == '\\' && !escaped:
			return "", p.failAt(p.pos, nil, "backslash in %s, which Nix writes unescaped (it would read the backslash as an escape)", what)
		case c == '\\':
			sb.Write(p.b[from:p.pos])
			if p.pos+1 >= len(p.b) {
				return "", p.failAt(p.pos, nil, "unterminated escape in %s", what)
			}
			switch e := p.b[p.pos+1]; e {
			case '"', '\\':
				sb.WriteByte(e)
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			default:
				return "", p.failAt(p.pos, nil, "escape %q in %s is not one Nix writes (\\\" \\\\ \\n \\r \\t)", p.b[p.pos:p.pos+2], what)
			}
			p.pos += 2
			from = p.pos
		case escaped && (c == '\n' || c == '\r' || c == '\t'):
			return "", p.failAt(p.pos, nil, "raw %q in %s, which Nix writes escaped", c, what)
		default:
			p.pos++
		}
	}
	return "", p.failAt(start, nil, "unterminated string (%s)", what)
}

// unescapedLen is the length of the string that starts b once unescaped
// (up to the first '"' that no backslash escapes), or -1 if no such '"'
// ends it, and whether str may take its bytes as they are: no backslash,
// and in a field Nix escapes no raw newline, carriage return or tab. It
// does not check the escapes; str does.
func unescapedLen(b []byte, escaped bool) (int, bool) {
	n, plain := 0, true
	for {
		i := bytes.IndexAny(b, "\"\\\n\r\t")
		if i < 0 {
			return -1, false
		}
		n += i
		switch b[i] {
		case '"':
			return n, plain
		case '\\':
			plain = false
			if i+1 >= len(b) {
				return -1, false
			}
			n++
			b = b[i+2:]
		default:
			plain = plain && !escaped
			n++
			b = b[i+1:]
		}
	}
}

// path parses a quoted store path in p.dir.
func (p *parser) path(what string) (storepath.Path, error) {
	off := p.pos
	s, err := p.str(what, false)
	if err != nil {
		return storepath.Path{}, err
	}
	sp, err := p.dir.Parse(s)
	if err != nil {
		return storepath.Path{}, p.failAt(off, err, "%s", what)
	}
	return sp, nil
}

func (p *parser) derivation() (*Derivation, error) {
	d := &Derivation{
		Outputs:   map[string]Output{},
		InputDrvs: map[storepath.Path][]string{},
		Env:       map[string]string{},
	}
	if err := p.expect("Derive(", "at the start of a derivation"); err != nil {
		return nil, err
	}
	prev := ""
	err := p.list("outputs", func() error {
		off := p.pos
		id, o, err := p.output()
		if err != nil {
			return err
		}
		if len(d.Outputs) > 0 && id <= prev {
			return p.failAt(off, nil, "outputs not sorted and unique: %q after %q", id, prev)
		}
		d.Outputs[id], prev = o, id
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(",", "after outputs"); err != nil {
		return nil, err
	}
	var prevDrv storepath.Path
	err = p.list("inputDrvs", func() error {
		off := p.pos
		if err := p.expect("(", "to open an input derivation"); err != nil {
			return err
		}
		dp, err := p.path("input derivation path")
		if err != nil {
			return err
		}
		if !dp.IsDerivation() {
			return p.failAt(off+1, nil, "input derivation %s is not a .drv path", dp)
		}
		if !prevDrv.IsZero() && dp.Base() <= prevDrv.Base() {
			return p.failAt(off, nil, "inputDrvs not sorted and unique: %s after %s", dp, prevDrv)
		}
		if err := p.expect(",", "after the input derivation path"); err != nil {
			return err
		}
		var outs []string
		err = p.list("output names of "+dp.Base(), func() error {
			off := p.pos
			o, err := p.str("output name", false)
			if err != nil {
				return err
			}
			if len(outs) > 0 && o <= outs[len(outs)-1] {
				return p.failAt(off, nil, "output names of %s not sorted and unique: %q after %q", dp, o, outs[len(outs)-1])
			}
			outs = append(outs, o)
			return nil
		})
		if err != nil {
			return err
		}
		d.InputDrvs[dp], prevDrv = outs, dp
		return p.expect(")", "to close an input derivation")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(",", "after inputDrvs"); err != nil {
		return nil, err
	}
	err = p.list("inputSrcs", func() error {
		off := p.pos
		sp, err := p.path("input source")
		if err != nil {
			return err
		}
		if n := len(d.InputSrcs); n > 0 && sp.Base() <= d.InputSrcs[n-1].Base() {
			return p.failAt(off, nil, "inputSrcs not sorted and unique: %s after %s", sp, d.InputSrcs[n-1])
		}
		d.InputSrcs = append(d.InputSrcs, sp)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(",", "after inputSrcs"); err != nil {
		return nil, err
	}
	if d.System, err = p.str("system", false); err != nil {
		return nil, err
	}
	if err := p.expect(",", "after system"); err != nil {
		return nil, err
	}
	if d.Builder, err = p.str("builder", true); err != nil {
		return nil, err
	}
	if err := p.expect(",", "after builder"); err != nil {
		return nil, err
	}
	err = p.list("args", func() error {
		a, err := p.str("arg", true)
		d.Args = append(d.Args, a)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(",", "after args"); err != nil {
		return nil, err
	}
	prev = ""
	err = p.list("env", func() error {
		off := p.pos
		if err := p.expect("(", "to open an env var"); err != nil {
			return err
		}
		k, err := p.str("env var name", true)
		if err != nil {
			return err
		}
		if len(d.Env) > 0 && k <= prev {
			return p.failAt(off, nil, "env not sorted and unique: %q after %q", k, prev)
		}
		if err := p.expect(",", "after env var name"); err != nil {
			return err
		}
		v, err := p.str("value of env var "+k, true)
		if err != nil {
			return err
		}
		d.Env[k], prev = v, k
		return p.expect(")", "to close an env var")
	})
	if err != nil {
		return nil, err
	}
	if err := p.expect(")", "to close the derivation"); err != nil {
		return nil, err
	}
	if p.pos != len(p.b) {
		return nil, p.failAt(p.pos, nil, "%d bytes after the end of the derivation", len(p.b)-p.pos)
	}
	return d, nil
}

// output parses `("id","path","hashAlgo","hash")`.
func (p *parser) output() (string, Output, error) {
	var o Output
	if err := p.expect("(", "to open an output"); err != nil {
		return "", o, err
	}
	id, err := p.str("output id", false)
	if err != nil {
		return "", o, err
	}
	if err := p.expect(",", "after output id"); err != nil {
		return "", o, err
	}
	pathOff := p.pos
	s, err := p.str("path of output "+id, false)
	if err != nil {
		return "", o, err
	}
	if s == "" {
		return "", o, p.failAt(pathOff, nil, "output %q has no path (deferred and floating content-addressed outputs are not supported)", id)
	}
	if o.Path, err = p.dir.Parse(s); err != nil {
		return "", o, p.failAt(pathOff, err, "path of output %q", id)
	}
	if err := p.expect(",", "after output path"); err != nil {
		return "", o, err
	}
	algoOff := p.pos
	algo, err := p.str("hashAlgo of output "+id, false)
	if err != nil {
		return "", o, err
	}
	if err := p.expect(",", "after hashAlgo"); err != nil {
		return "", o, err
	}
	hashOff := p.pos
	hs, err := p.str("hash of output "+id, false)
	if err != nil {
		return "", o, err
	}
	if err := p.expect(")", "to close an output"); err != nil {
		return "", o, err
	}
	o.Hash, o.Recursive, err = parseFixed(algo, hs, true)
	if err != nil {
		off := algoOff
		if algo != "" && hs != "" {
			off = hashOff
		}
		return "", o, p.failAt(off, err, "output %q", id)
	}
	return id, o, nil
}

// parseFixed reads an output's hashAlgo and hash fields. With strict (the
// ATerm) the hash must be lower-case hex, the only form Nix writes; JSON
// input may use any form Nix parses.
func parseFixed(algo, hs string, strict bool) (nixhash.Hash, bool, error) {
	if algo == "" && hs == "" {
		return nixhash.Hash{}, false, nil
	}
	if algo == "" {
		return nixhash.Hash{}, false, fmt.Errorf("hash %q without hashAlgo", hs)
	}
	if hs == "" || hs == "impure" {
		return nixhash.Hash{}, false, fmt.Errorf("hashAlgo %q without a hash (floating content-addressed and impure outputs are not supported)", algo)
	}
	name, recursive := strings.CutPrefix(algo, "r:")
	a, err := nixhash.ParseAlgo(name)
	if err != nil {
		return nixhash.Hash{}, false, fmt.Errorf("hashAlgo %q: %w", algo, err)
	}
	if !strict {
		h, err := nixhash.ParseDigest(a, hs)
		return h, recursive, err
	}
	if len(hs) != 2*a.Size() {
		return nixhash.Hash{}, false, fmt.Errorf("%s hash %q has %d characters, want %d lower-case hex digits", a, hs, len(hs), 2*a.Size())
	}
	for i := 0; i < len(hs); i++ {
		if c := hs[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return nixhash.Hash{}, false, fmt.Errorf("%s hash %q: %q at %d is not a lower-case hex digit", a, hs, c, i)
		}
	}
	digest, _ := hex.DecodeString(hs)
	h, err := nixhash.New(a, digest)
	return h, recursive, err
}
