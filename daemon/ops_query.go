package daemon

import (
	"context"
	"errors"
	"sort"

	"storefs/store"
	"storefs/store/storepath"
	"storefs/store/wire"
)

func opIsValidPath(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	ok, err := c.s.IsValid(p)
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.Bool(ok)
	return nil
}

func opHasSubstitutes(ctx context.Context, c *Conn) error {
	if _, err := c.r.Path("path", c.dir); err != nil {
		return err
	}
	c.startWork()
	c.stopWork()
	c.w.Bool(false)
	return nil
}

// opQuerySubstitutablePathInfo is the pre-1.12 form of the query: no
// substitute is ever known here (see opQuerySubstitutablePaths).
func opQuerySubstitutablePathInfo(ctx context.Context, c *Conn) error {
	if _, err := c.r.Path("path", c.dir); err != nil {
		return err
	}
	c.startWork()
	c.stopWork()
	c.w.U64(0)
	return nil
}

func opQueryValidPaths(ctx context.Context, c *Conn) error {
	ps, err := c.r.Paths("paths", c.dir)
	if err != nil {
		return err
	}
	// The substitute flag asks to substitute first; storefs substitutes on
	// access (or EnsurePath), so it answers what is valid now.
	if _, err := c.r.Bool("substitute"); err != nil {
		return err
	}
	c.startWork()
	var valid []storepath.Path
	for _, p := range ps {
		ok, err := c.s.IsValid(p)
		if err != nil {
			return err
		}
		if ok {
			valid = append(valid, p)
		}
	}
	c.stopWork()
	c.writeSet(valid)
	return nil
}

// writeSet writes paths as Nix writes a set: sorted, each once.
func (c *Conn) writeSet(ps []storepath.Path) {
	strs := c.dir.PrintAll(ps)
	sort.Strings(strs)
	out := strs[:0]
	for i, s := range strs {
		if i == 0 || s != strs[i-1] {
			out = append(out, s)
		}
	}
	c.w.Strings(out)
}

// writeInfo writes a ValidPathInfo without its path.
func (c *Conn) writeInfo(info *store.PathInfo) {
	c.w.Path(c.dir, info.Deriver)
	c.w.String(info.NarHash.Hex())
	c.writeSet(info.References)
	c.w.U64(uint64(info.RegistrationTime.Unix()))
	c.w.U64(info.NarSize)
	c.w.Bool(false) // ultimate: not recorded
	sigs := append([]string{}, info.Sigs...)
	sort.Strings(sigs)
	c.w.Strings(sigs)
	c.w.String(info.CA.String())
}

func opQueryPathInfo(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	info, err := c.s.Info(p)
	if errors.Is(err, store.ErrNotValid) {
		c.stopWork()
		c.w.Bool(false)
		return nil
	}
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.Bool(true)
	c.writeInfo(info)
	return nil
}

func opQueryReferrers(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	refs, err := c.s.Referrers(p)
	if err != nil {
		return err
	}
	c.stopWork()
	c.writeSet(refs)
	return nil
}

func opQueryValidDerivers(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	ds, err := c.s.Derivers(p)
	if err != nil {
		return err
	}
	var valid []storepath.Path
	for _, d := range ds {
		ok, err := c.s.IsValid(d.Drv)
		if err != nil {
			return err
		}
		if ok {
			valid = append(valid, d.Drv)
		}
	}
	c.stopWork()
	c.writeSet(valid)
	return nil
}

func opQueryPathFromHashPart(ctx context.Context, c *Conn) error {
	h, err := c.r.String("hash part", wire.MaxSmall)
	if err != nil {
		return err
	}
	c.startWork()
	var p storepath.Path
	if storepath.ValidateHashPart(h) == nil {
		if p, err = c.s.PathFromHashPart(h); err != nil {
			return err
		}
	}
	c.stopWork()
	c.w.Path(c.dir, p)
	return nil
}

func opQueryAllValidPaths(ctx context.Context, c *Conn) error {
	c.startWork()
	var all []storepath.Path
	if err := c.s.ForEachPath(func(p storepath.Path) error {
		all = append(all, p)
		return nil
	}); err != nil {
		return err
	}
	c.stopWork()
	c.writeSet(all)
	return nil
}

func opQueryDerivationOutputMap(ctx context.Context, c *Conn) error {
	drv, err := c.r.Path("drv path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	outs, err := c.s.DerivationOutputs(drv)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(outs))
	for id := range outs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	c.stopWork()
	c.w.U64(uint64(len(ids)))
	for _, id := range ids {
		c.w.String(id)
		c.w.Path(c.dir, outs[id])
	}
	return nil
}

// storefs answers substitution queries with nothing: its substituters are
// consulted on access, and a client that is told nothing builds through
// the daemon, which then substitutes where it can.
func opQuerySubstitutablePaths(ctx context.Context, c *Conn) error {
	if _, err := c.r.Paths("paths", c.dir); err != nil {
		return err
	}
	c.startWork()
	c.stopWork()
	c.w.Strings(nil)
	return nil
}

func opQuerySubstitutablePathInfos(ctx context.Context, c *Conn) error {
	n, err := c.r.Count("paths", wire.MaxPaths)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if _, err := c.r.Path("path", c.dir); err != nil {
			return err
		}
		if _, err := c.r.String("ca", wire.MaxSmall); err != nil {
			return err
		}
	}
	c.startWork()
	c.stopWork()
	c.w.U64(0)
	return nil
}

func opQueryRealisation(ctx context.Context, c *Conn) error {
	if _, err := c.r.String("drv output", wire.MaxSmall); err != nil {
		return err
	}
	c.startWork()
	c.stopWork()
	c.w.Strings(nil) // no content-addressed derivations: never a realisation
	return nil
}

func opRegisterDrvOutput(ctx context.Context, c *Conn) error {
	c.startWork() // as Nix: before the argument
	if _, err := c.r.String("realisation", 1<<20); err != nil {
		return &fatal{err}
	}
	c.stopWork()
	return nil
}

func opOptimiseStore(ctx context.Context, c *Conn) error {
	c.startWork()
	// Nothing to do: contents are not deduplicated; saying so is the
	// truthful answer ("0 bytes freed").
	c.stopWork()
	c.w.U64(1)
	return nil
}

func opSyncWithGC(ctx context.Context, c *Conn) error {
	c.startWork()
	c.stopWork()
	c.w.U64(1)
	return nil
}

func opVerifyStore(ctx context.Context, c *Conn) error {
	contents, err := c.r.Bool("checkContents")
	if err != nil {
		return err
	}
	repair, err := c.r.Bool("repair")
	if err != nil {
		return err
	}
	c.startWork()
	if repair && !c.peer.Trusted {
		return errNotTrusted("repair the store")
	}
	problems, err := c.s.Check(store.CheckOptions{Contents: contents})
	if err != nil {
		return err
	}
	for _, p := range problems {
		c.Log(verbosityError, "error: "+p.String())
	}
	if repair && len(problems) > 0 {
		if err := c.s.Repair(); err != nil {
			return err
		}
	}
	c.stopWork()
	c.w.Bool(len(problems) > 0)
	return nil
}

func opAddSignatures(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	sigs, err := c.r.Strings("sigs", 1024, wire.MaxSmall)
	if err != nil {
		return err
	}
	c.startWork()
	if !c.peer.Trusted {
		return errNotTrusted("add signatures")
	}
	if err := c.s.AddSignatures(p, sigs); err != nil {
		return err
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}
