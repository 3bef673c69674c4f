package derivation

import (
	"sort"

	"storefs/store/storepath"
)

// derivation parses one derivation object.
func (p *jsonParser) derivation() (*Derivation, error) {
	j := newJSONDrv()
	start := p.pos
	err := p.object("a derivation", func(k string, off int) error { return p.field(j, k, off) })
	if err != nil {
		return nil, err
	}
	return p.finish(j, start)
}

// finish checks that every field was there; off is where the object began.
func (p *jsonParser) finish(j *jsonDrv, off int) (*Derivation, error) {
	for _, f := range jsonFields {
		if !j.seen[f] {
			return nil, p.failAt(off, nil, "derivation has no %q", f)
		}
	}
	if j.name != nil && *j.name != j.d.Name() {
		return nil, p.failAt(off, nil, "derivation \"name\" %q differs from env var name %q", *j.name, j.d.Name())
	}
	return j.d, nil
}

// field parses the value of the derivation field key.
func (p *jsonParser) field(j *jsonDrv, key string, off int) error {
	d := j.d
	j.seen[key] = true
	var err error
	switch key {
	case "outputs":
		return p.object("outputs", func(id string, off int) error {
			o, err := p.output(id)
			d.Outputs[id] = o
			return err
		})
	case "inputSrcs":
		d.InputSrcs = []storepath.Path{}
		err := p.strings("inputSrcs", func(s string, off int) error {
			sp, err := p.dir.Parse(s)
			if err != nil {
				return p.failAt(off, err, "input source")
			}
			d.InputSrcs = append(d.InputSrcs, sp)
			return nil
		})
		if err != nil {
			return err
		}
		storepath.Sort(d.InputSrcs)
		for i := 1; i < len(d.InputSrcs); i++ {
			if d.InputSrcs[i] == d.InputSrcs[i-1] {
				return p.failAt(off, nil, "input source %s listed twice", d.InputSrcs[i])
			}
		}
		if len(d.InputSrcs) == 0 {
			d.InputSrcs = nil
		}
		return nil
	case "inputDrvs":
		return p.object("inputDrvs", func(k string, off int) error {
			dp, err := p.dir.Parse(k)
			if err != nil {
				return p.failAt(off, err, "input derivation")
			}
			if !dp.IsDerivation() {
				return p.failAt(off, nil, "input derivation %s is not a .drv path", k)
			}
			if _, dup := d.InputDrvs[dp]; dup {
				return p.failAt(off, nil, "input derivation %s listed twice", k)
			}
			var outs []string
			err = p.strings("the output names of "+dp.Base(), func(s string, _ int) error {
				outs = append(outs, s)
				return nil
			})
			if err != nil {
				return err
			}
			sort.Strings(outs)
			for i := 1; i < len(outs); i++ {
				if outs[i] == outs[i-1] {
					return p.failAt(off, nil, "input derivation %s: output %q listed twice", k, outs[i])
				}
			}
			d.InputDrvs[dp] = outs
			return nil
		})
	case "system":
		d.System, err = p.str("system")
	case "builder":
		d.Builder, err = p.str("builder")
	case "args":
		return p.strings("args", func(s string, _ int) error {
			d.Args = append(d.Args, s)
			return nil
		})
	case "env":
		return p.object("env", func(k string, _ int) error {
			v, err := p.str("the value of env var " + k)
			d.Env[k] = v
			return err
		})
	case "name":
		var name string
		name, err = p.str("name")
		j.name = &name
	default:
		return p.failAt(off, nil, "unknown derivation field %q", key)
	}
	return err
}

// output parses the object of output id: "path" (optional), and "hashAlgo"
// and "hash" for a fixed output.
func (p *jsonParser) output(id string) (Output, error) {
	var o Output
	var algo, hash string
	start := p.pos
	err := p.object("output "+id, func(k string, off int) error {
		switch k {
		case "path":
			s, err := p.str("path of output " + id)
			if err != nil {
				return err
			}
			if o.Path, err = p.dir.Parse(s); err != nil {
				return p.failAt(off, err, "path of output %q", id)
			}
			return nil
		case "hashAlgo":
			var err error
			algo, err = p.str("hashAlgo of output " + id)
			return err
		case "hash":
			var err error
			hash, err = p.str("hash of output " + id)
			return err
		}
		return p.failAt(off, nil, "unknown field %q in output %q", k, id)
	})
	if err != nil {
		return o, err
	}
	if o.Hash, o.Recursive, err = parseFixed(algo, hash, false); err != nil {
		return o, p.failAt(start, err, "output %q", id)
	}
	return o, nil
}
