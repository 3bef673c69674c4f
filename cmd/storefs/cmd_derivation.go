package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"storefs/store/derivation"
	"storefs/store/storepath"
)

// derivationCmd groups the commands on derivations.
type derivationCmd struct {
	Show derivationShowCmd `cmd:"" help:"Print .drv files as JSON, byte for byte as 'nix show-derivation' (Nix 2.8) prints them."`
	Add  derivationAddCmd  `cmd:"" help:"Add derivations (ATerm .drv or the JSON form) to the store, checked, and print their .drv paths."`
}

type derivationShowCmd struct {
	Check bool     `default:"true" negatable:"" help:"Compute every output path (loading input derivations from the files given and from the directories that hold them) and refuse a derivation whose recorded paths differ (${default})."`
	Files []string `arg:"" name:"file" help:"A .drv file; it need not be in the store: its key is the store path its contents hash to under --store-dir."`
}

func (c *derivationShowCmd) Run(g *Globals, io stdio, ctx context.Context) error {
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	return runDerivationShow(ctx, dir, c.Files, c.Check, io.out)
}

// runDerivationShow reads the .drv files and writes them to out as
// `nix show-derivation` does: one JSON object keyed by each derivation's
// store path in dir, sorted, each once.
func runDerivationShow(ctx context.Context, dir storepath.Dir, files []string, check bool, out io.Writer) error {
	ld := &drvFiles{dir: dir, byPath: map[storepath.Path]*derivation.Derivation{}}
	var drvs []*derivation.Derivation
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, _, err := ld.read(f)
		if err != nil {
			return err
		}
		ld.dirs = append(ld.dirs, filepath.Dir(f))
		drvs = append(drvs, d)
	}
	if check {
		h := derivation.NewHasher(dir, ld.resolve)
		for i, d := range drvs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := h.Check(d); err != nil {
				return fmt.Errorf("%s: %w", files[i], err)
			}
		}
	}
	js, err := derivation.ShowJSON(dir, drvs...)
	if err != nil {
		return err
	}
	_, err = out.Write(js)
	return err
}

// drvFiles reads .drv files and finds input derivations among them and in
// the directories that hold them, under their store path's base name.
type drvFiles struct {
	dir    storepath.Dir
	dirs   []string
	byPath map[storepath.Path]*derivation.Derivation
}

// read parses the .drv file f and computes its store path. A file named
// like a store path must be the derivation of that path.
func (l *drvFiles) read(f string) (*derivation.Derivation, storepath.Path, error) {
	data, err := os.ReadFile(f)
	if err != nil {
		return nil, storepath.Path{}, err
	}
	d, err := derivation.Parse(data, l.dir)
	if err != nil {
		return nil, storepath.Path{}, fmt.Errorf("%s: %w", f, err)
	}
	p, err := d.Path(l.dir)
	if err != nil {
		return nil, storepath.Path{}, fmt.Errorf("%s: %w", f, err)
	}
	if named, err := storepath.ParseBase(filepath.Base(f)); err == nil && named != p {
		return nil, storepath.Path{}, fmt.Errorf("%s: named %s but its contents are the derivation %s", f, named, l.dir.Print(p))
	}
	l.byPath[p] = d
	return d, p, nil
}

func (l *drvFiles) resolve(p storepath.Path) (*derivation.Derivation, error) {
	if d, ok := l.byPath[p]; ok {
		return d, nil
	}
	for _, dir := range l.dirs {
		f := filepath.Join(dir, p.Base())
		if _, err := os.Lstat(f); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		d, _, err := l.read(f)
		return d, err
	}
	return nil, fmt.Errorf("not among the files given nor next to them (give it, or use --no-check)")
}
