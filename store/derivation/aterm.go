package derivation

import (
	"storefs/store/storepath"
)

// ATerm prints d as Nix writes its .drv file (docs/formats.md,
// "Derivations"): one line, no trailing newline. A zero output path prints
// as "".
func (d *Derivation) ATerm(dir storepath.Dir) []byte {
	inputs := make([]inputEntry, 0, len(d.InputDrvs))
	for _, p := range sortedPaths(d.InputDrvs) {
		inputs = append(inputs, inputEntry{dir.Print(p), d.InputDrvs[p]})
	}
	return d.appendATerm(nil, dir, false, inputs)
}

// inputEntry is one element of the inputDrvs list as printed: a .drv path,
// or (for hashDerivationModulo) the hex hash standing in for it.
type inputEntry struct {
	key     string
	outputs []string
}

// appendATerm prints d with the given inputDrvs list (sorted by key). With
// mask, output paths and the env vars named after outputs are printed empty,
// as hashDerivationModulo needs to compute d's own output paths.
//
// Nix writes output ids, paths, hash fields, output names and the system
// without escaping (printUnquotedString in Nix's derivations.cc) and escapes
// only the builder, args and env; so does this.
func (d *Derivation) appendATerm(b []byte, dir storepath.Dir, mask bool, inputs []inputEntry) []byte {
	b = append(b, "Derive(["...)
	for i, id := range d.OutputIDs() {
		o := d.Outputs[id]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendRaw(b, id)
		b = append(b, ',')
		if mask || o.Path.IsZero() {
			b = appendRaw(b, "")
		} else {
			b = appendRaw(b, dir.Print(o.Path))
		}
		b = append(b, ',')
		b = appendRaw(b, o.HashAlgo())
		b = append(b, ',')
		b = appendRaw(b, o.HashHex())
		b = append(b, ')')
	}
	b = append(b, "],["...)
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendRaw(b, in.key)
		b = append(b, ",["...)
		for j, o := range in.outputs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendRaw(b, o)
		}
		b = append(b, "])"...)
	}
	b = append(b, "],["...)
	for i, p := range d.InputSrcs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRaw(b, dir.Print(p))
	}
	b = append(b, "],"...)
	b = appendRaw(b, d.System)
	b = append(b, ',')
	b = appendEscaped(b, d.Builder)
	b = append(b, ",["...)
	for i, a := range d.Args {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEscaped(b, a)
	}
	b = append(b, "],["...)
	for i, k := range sortedKeys(d.Env) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '(')
		b = appendEscaped(b, k)
		b = append(b, ',')
		v := d.Env[k]
		if _, isOutput := d.Outputs[k]; mask && isOutput {
			v = ""
		}
		b = appendEscaped(b, v)
		b = append(b, ')')
	}
	return append(b, "])"...)
}

func appendRaw(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendEscaped(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
