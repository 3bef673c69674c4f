package derivation

import (
	"io"

	"storefs/store/storepath"
)

// ATerm prints d as Nix writes its .drv file (docs/formats.md,
// "Derivations"): one line, no trailing newline. A zero output path prints
// as "".
func (d *Derivation) ATerm(dir storepath.Dir) []byte {
	var a atermWriter
	d.writeATerm(&a, dir, false, d.inputEntries(dir))
	return a.buf
}

// WriteATerm prints d's ATerm, as ATerm does, to w, holding no more than a
// buffer of it at a time however long its strings: a derivation with a
// 200 MB env var is hashed and stored without a copy of its file.
func (d *Derivation) WriteATerm(w io.Writer, dir storepath.Dir) error {
	a := atermWriter{w: w}
	d.writeATerm(&a, dir, false, d.inputEntries(dir))
	return a.flush()
}

func (d *Derivation) inputEntries(dir storepath.Dir) []inputEntry {
	inputs := make([]inputEntry, 0, len(d.InputDrvs))
	for _, p := range sortedPaths(d.InputDrvs) {
		inputs = append(inputs, inputEntry{dir.Print(p), d.InputDrvs[p]})
	}
	return inputs
}

// inputEntry is one element of the inputDrvs list as printed: a .drv path,
// or (for hashDerivationModulo) the hex hash standing in for it.
type inputEntry struct {
	key     string
	outputs []string
}

// atermFlushAt is how much an atermWriter with a Writer buffers.
const atermFlushAt = 64 << 10

// atermWriter collects printed bytes in buf; with a Writer w it passes
// them on whenever buf holds atermFlushAt bytes. It keeps w's first error
// and then writes nothing more.
type atermWriter struct {
	w   io.Writer // nil: everything stays in buf
	buf []byte
	err error
}

func (a *atermWriter) flush() error {
	if a.w != nil && a.err == nil && len(a.buf) > 0 {
		_, a.err = a.w.Write(a.buf)
	}
	a.buf = a.buf[:0]
	return a.err
}

func (a *atermWriter) maybeFlush() {
	if a.w != nil && len(a.buf) >= atermFlushAt {
		a.flush()
	}
}

func (a *atermWriter) byte(c byte) { a.buf = append(a.buf, c) }

// bytes writes s as it is, through buf a piece at a time (a Writer
// given a string, such as a hash, would copy it whole).
func (a *atermWriter) bytes(s string) {
	if a.w == nil {
		a.buf = append(a.buf, s...)
		return
	}
	for len(s) > 0 {
		n := min(len(s), max(atermFlushAt-len(a.buf), 0))
		a.buf = append(a.buf, s[:n]...)
		s = s[n:]
		a.maybeFlush()
	}
}

func (a *atermWriter) raw(s string) {
	a.byte('"')
	a.bytes(s)
	a.byte('"')
}

func (a *atermWriter) escaped(s string) {
	a.byte('"')
	from := 0
	for i := 0; i < len(s); i++ {
		var e byte
		switch c := s[i]; c {
		case '"', '\\':
			e = c
		case '\n':
			e = 'n'
		case '\r':
			e = 'r'
		case '\t':
			e = 't'
		default:
			continue
		}
		a.bytes(s[from:i])
		a.buf = append(a.buf, '\\', e)
		from = i + 1
	}
	a.bytes(s[from:])
	a.byte('"')
}

// writeATerm prints d with the given inputDrvs list (sorted by key). With
// mask, output paths and the env vars named after outputs are printed empty,
// as hashDerivationModulo needs to compute d's own output paths.
//
// Nix writes output ids, paths, hash fields, output names and the system
// without escaping (printUnquotedString in Nix's derivations.cc) and escapes
// only the builder, args and env; so does this.
func (d *Derivation) writeATerm(a *atermWriter, dir storepath.Dir, mask bool, inputs []inputEntry) {
	a.bytes("Derive([")
	for i, id := range d.OutputIDs() {
		o := d.Outputs[id]
		if i > 0 {
			a.byte(',')
		}
		a.byte('(')
		a.raw(id)
		a.byte(',')
		if mask || o.Path.IsZero() {
			a.raw("")
		} else {
			a.raw(dir.Print(o.Path))
		}
		a.byte(',')
		a.raw(o.HashAlgo())
		a.byte(',')
		a.raw(o.HashHex())
		a.byte(')')
	}
	a.bytes("],[")
	for i, in := range inputs {
		if i > 0 {
			a.byte(',')
		}
		a.byte('(')
		a.raw(in.key)
		a.bytes(",[")
		for j, o := range in.outputs {
			if j > 0 {
				a.byte(',')
			}
			a.raw(o)
		}
		a.bytes("])")
	}
	a.bytes("],[")
	for i, p := range d.InputSrcs {
		if i > 0 {
			a.byte(',')
		}
		a.raw(dir.Print(p))
	}
	a.bytes("],")
	a.raw(d.System)
	a.byte(',')
	a.escaped(d.Builder)
	a.bytes(",[")
	for i, arg := range d.Args {
		if i > 0 {
			a.byte(',')
		}
		a.escaped(arg)
	}
	a.bytes("],[")
	for i, k := range sortedKeys(d.Env) {
		if i > 0 {
			a.byte(',')
		}
		a.byte('(')
		a.escaped(k)
		a.byte(',')
		v := d.Env[k]
		if _, isOutput := d.Outputs[k]; mask && isOutput {
			v = ""
		}
		a.escaped(v)
		a.byte(')')
	}
	a.bytes("])")
}
