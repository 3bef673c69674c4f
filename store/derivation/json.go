package derivation

import (
	"sort"

	"storefs/store/storepath"
)

// ShowJSON prints derivations as `nix show-derivation` (Nix 2.8) prints
// them: one object mapping each .drv path (d.Path(dir), sorted, each once)
// to the derivation, indented by two spaces per level, empty objects and
// lists as {} and [], and a final newline. A fixed-output derivation's
// output path is computed from its hash, as Nix prints it.
//
// Strings are escaped as Nix's own JSON writer does (libutil/json.cc):
// `\"`, `\\`, `\n`, `\r`, `\t`, other bytes below 0x20 as `\u00XX`, and every
// other byte as is, so the output is not valid UTF-8 when a string is not.
func ShowJSON(dir storepath.Dir, drvs ...*Derivation) ([]byte, error) {
	type keyed struct {
		path storepath.Path
		d    *Derivation
	}
	all := make([]keyed, 0, len(drvs))
	for _, d := range drvs {
		p, err := d.Path(dir)
		if err != nil {
			return nil, err
		}
		all = append(all, keyed{p, d})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].path.Base() < all[j].path.Base() })
	w := &jsonWriter{}
	w.open('{')
	for i, k := range all {
		if i > 0 && k.path == all[i-1].path {
			continue
		}
		w.key(dir.Print(k.path))
		if err := k.d.writeJSON(w, dir); err != nil {
			return nil, err
		}
	}
	w.close('}')
	return append(w.b, '\n'), nil
}

func (d *Derivation) writeJSON(w *jsonWriter, dir storepath.Dir) error {
	w.open('{')
	w.key("outputs")
	w.open('{')
	for _, id := range d.OutputIDs() {
		o := d.Outputs[id]
		w.key(id)
		w.open('{')
		p := o.Path
		if o.IsFixed() {
			fp, err := d.FixedOutputPath(dir)
			if err != nil {
				return err
			}
			p = fp
		}
		if !p.IsZero() {
			w.key("path")
			w.str(dir.Print(p))
		}
		if o.IsFixed() {
			w.key("hashAlgo")
			w.str(o.HashAlgo())
			w.key("hash")
			w.str(o.HashHex())
		}
		w.close('}')
	}
	w.close('}')
	w.key("inputSrcs")
	w.open('[')
	for _, p := range d.InputSrcs {
		w.elem()
		w.str(dir.Print(p))
	}
	w.close(']')
	w.key("inputDrvs")
	w.open('{')
	for _, p := range sortedPaths(d.InputDrvs) {
		w.key(dir.Print(p))
		w.open('[')
		for _, o := range d.InputDrvs[p] {
			w.elem()
			w.str(o)
		}
		w.close(']')
	}
	w.close('}')
	w.key("system")
	w.str(d.System)
	w.key("builder")
	w.str(d.Builder)
	w.key("args")
	w.open('[')
	for _, a := range d.Args {
		w.elem()
		w.str(a)
	}
	w.close(']')
	w.key("env")
	w.open('{')
	for _, k := range sortedKeys(d.Env) {
		w.key(k)
		w.str(d.Env[k])
	}
	w.close('}')
	w.close('}')
	return nil
}

// jsonWriter writes indented JSON the way Nix 2.8's JSONWriter does: each
// member or element on its own line, indented two spaces per open level;
// a container with no members closes on the line it opened.
type jsonWriter struct {
	b     []byte
	empty []bool // per open container: nothing written in it yet
}

func (w *jsonWriter) open(c byte) {
	w.b = append(w.b, c)
	w.empty = append(w.empty, true)
}

func (w *jsonWriter) close(c byte) {
	n := len(w.empty) - 1
	wasEmpty := w.empty[n]
	w.empty = w.empty[:n]
	if !wasEmpty {
		w.newline()
	}
	w.b = append(w.b, c)
}

func (w *jsonWriter) newline() {
	w.b = append(w.b, '\n')
	for range len(w.empty) {
		w.b = append(w.b, ' ', ' ')
	}
}

// elem starts an element of the innermost container.
func (w *jsonWriter) elem() {
	n := len(w.empty) - 1
	if !w.empty[n] {
		w.b = append(w.b, ',')
	}
	w.empty[n] = false
	w.newline()
}

func (w *jsonWriter) key(k string) {
	w.elem()
	w.str(k)
	w.b = append(w.b, ':', ' ')
}

func (w *jsonWriter) str(s string) {
	const hexDigits = "0123456789abcdef"
	w.b = append(w.b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			w.b = append(w.b, '\\', c)
		case c == '\n':
			w.b = append(w.b, '\\', 'n')
		case c == '\r':
			w.b = append(w.b, '\\', 'r')
		case c == '\t':
			w.b = append(w.b, '\\', 't')
		case c < 0x20:
			w.b = append(w.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			w.b = append(w.b, c)
		}
	}
	w.b = append(w.b, '"')
}
