package daemon

import (
	"context"
	"fmt"
	"strings"

	"storefs/store/derivation"
	"storefs/store/nixhash"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// maxEnv bounds a BasicDerivation's environment and arguments.
const maxEnv = 1 << 16

// readBasicDerivation reads a derivation as BuildDerivation sends it: no
// input derivations, only input sources (docs/daemon.md).
func (c *Conn) readBasicDerivation() (*derivation.Derivation, error) {
	r := c.r
	d := &derivation.Derivation{Outputs: map[string]derivation.Output{}, InputDrvs: map[storepath.Path][]string{}, Env: map[string]string{}}
	n, err := r.Count("outputs", 1024)
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		id, err := r.String("output name", wire.MaxSmall)
		if err != nil {
			return nil, err
		}
		var o derivation.Output
		if o.Path, err = r.OptPath("output path", c.dir); err != nil {
			return nil, err
		}
		start := r.Offset()
		algo, err := r.String("output hashAlgo", wire.MaxSmall)
		if err != nil {
			return nil, err
		}
		hash, err := r.String("output hash", wire.MaxSmall)
		if err != nil {
			return nil, err
		}
		if algo != "" || hash != "" {
			rest, rec := strings.CutPrefix(algo, "r:")
			a, err := nixhash.ParseAlgo(rest)
			if err != nil {
				return nil, r.Errorf("output hashAlgo", start, "output %q: %v", id, err)
			}
			if o.Hash, err = nixhash.ParseDigest(a, hash); err != nil {
				return nil, r.Errorf("output hash", start, "output %q: %v", id, err)
			}
			o.Recursive = rec
		}
		d.Outputs[id] = o
	}
	if d.InputSrcs, err = r.Paths("inputSrcs", c.dir); err != nil {
		return nil, err
	}
	storepath.Sort(d.InputSrcs)
	if d.System, err = r.String("platform", wire.MaxSmall); err != nil {
		return nil, err
	}
	if d.Builder, err = r.String("builder", wire.MaxPathLen); err != nil {
		return nil, err
	}
	if d.Args, err = r.Strings("args", maxEnv, 1<<20); err != nil {
		return nil, err
	}
	ne, err := r.Count("env", maxEnv)
	if err != nil {
		return nil, err
	}
	for i := 0; i < ne; i++ {
		k, err := r.String("env name", wire.MaxSmall)
		if err != nil {
			return nil, err
		}
		v, err := r.String("env value", 1<<24)
		if err != nil {
			return nil, err
		}
		d.Env[k] = v
	}
	return d, nil
}

func opBuildDerivation(ctx context.Context, c *Conn) error {
	start := c.r.Offset()
	drvPath, err := c.r.Path("drvPath", c.dir)
	if err != nil {
		return err
	}
	if !drvPath.IsDerivation() {
		return c.r.Errorf("drvPath", start, "%s is not a .drv", c.dir.Print(drvPath))
	}
	d, err := c.readBasicDerivation()
	if err != nil {
		return err
	}
	mode, err := c.readBuildMode()
	if err != nil {
		return err
	}
	c.startWork()
	if err := c.checkMode(mode); err != nil {
		return err
	}
	if !d.IsFixedOutput() && !c.peer.Trusted {
		return errNotTrusted("build input-addressed derivations")
	}
	drv, err := c.derivationFor(ctx, drvPath, d)
	if err != nil {
		return err
	}
	r := c.realise(ctx, []target{{raw: c.dir.Print(drv) + "!*", path: drv, drv: true}})[0]
	c.stopWork()
	c.writeResult(r)
	return nil
}

// derivationFor is the valid derivation to build for a BuildDerivation:
// drvPath if it is valid here; for a fixed-output derivation, else, the
// one sent (its outputs do not depend on its inputs' derivations).
func (c *Conn) derivationFor(ctx context.Context, drvPath storepath.Path, d *derivation.Derivation) (storepath.Path, error) {
	if ok, err := c.s.IsValid(drvPath); err != nil || ok {
		return drvPath, err
	}
	if !d.IsFixedOutput() {
		return storepath.Path{}, fmt.Errorf("derivation %s is not valid in this store; add it first (nix copy --to)", c.dir.Print(drvPath))
	}
	if d.Env["name"] == "" {
		d.Env["name"] = strings.TrimSuffix(drvPath.Name(), ".drv")
	}
	info, err := c.s.AddDerivation(ctx, d)
	if err != nil {
		return storepath.Path{}, fmt.Errorf("derivation %s: %w", c.dir.Print(drvPath), err)
	}
	return info.Path, nil
}

func opQueryMissing(ctx context.Context, c *Conn) error {
	ts, err := c.readTargets("targets")
	if err != nil {
		return err
	}
	c.startWork()
	m := &missing{c: c, willBuild: map[storepath.Path]bool{}, unknown: map[storepath.Path]bool{}, seen: map[string]bool{}}
	for _, t := range ts {
		if err := m.visit(t); err != nil {
			return err
		}
	}
	c.stopWork()
	c.writeSet(keys(m.willBuild))
	c.w.Strings(nil) // willSubstitute: the daemon does not ask caches ahead
	c.writeSet(keys(m.unknown))
	c.w.U64(0)
	c.w.U64(0)
	return nil
}

// missing works out what realising targets would build.
type missing struct {
	c         *Conn
	willBuild map[storepath.Path]bool
	unknown   map[storepath.Path]bool
	seen      map[string]bool
}

func (m *missing) visit(t target) error {
	key := t.path.Base() + "!" + strings.Join(t.outputs, ",")
	if !t.drv {
		key = t.path.Base()
	}
	if m.seen[key] {
		return nil
	}
	m.seen[key] = true
	s := m.c.s
	if !t.drv {
		ok, err := s.IsValid(t.path)
		if err != nil || ok {
			return err
		}
		ds, err := s.Derivers(t.path)
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			m.unknown[t.path] = true
			return nil
		}
		return m.visit(target{path: ds[0].Drv, drv: true, outputs: []string{ds[0].ID}})
	}
	if ok, err := s.IsValid(t.path); err != nil || !ok {
		if err == nil {
			m.unknown[t.path] = true
		}
		return err
	}
	outs, err := s.DerivationOutputs(t.path)
	if err != nil {
		return err
	}
	wanted := t.outputs
	if len(wanted) == 0 {
		wanted = keysOf(outs)
	}
	need := false
	for _, id := range wanted {
		if p, ok := outs[id]; ok {
			if v, err := s.IsValid(p); err != nil || !v {
				need = true
			}
		}
	}
	if !need {
		return nil
	}
	m.willBuild[t.path] = true
	d, err := s.ReadDerivation(t.path)
	if err != nil {
		return err
	}
	for in, ids := range d.InputDrvs {
		if err := m.visit(target{path: in, drv: true, outputs: ids}); err != nil {
			return err
		}
	}
	for _, src := range d.InputSrcs {
		if err := m.visit(target{path: src}); err != nil {
			return err
		}
	}
	return nil
}

func keys(m map[storepath.Path]bool) []storepath.Path {
	out := make([]storepath.Path, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	return out
}

func keysOf(m map[string]storepath.Path) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
