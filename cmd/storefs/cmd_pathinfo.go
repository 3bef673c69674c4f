package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"storefs/store"
	"storefs/store/storepath"
)

// pathInfoCmd is `nix path-info`.
type pathInfoCmd struct {
	JSON        bool     `name:"json" help:"Print a JSON array of path info objects, as nix path-info --json."`
	Size        bool     `short:"s" help:"Print each path's NAR size."`
	ClosureSize bool     `name:"closure-size" short:"S" help:"Print the total NAR size of each path's closure."`
	Recursive   bool     `short:"r" help:"Apply to the closure of the paths."`
	All         bool     `help:"Apply to every valid path."`
	Paths       []string `arg:"" optional:"" help:"Store paths."`
}

func (c *pathInfoCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		if c.All {
			if len(ps) > 0 {
				return errors.New("path-info: --all takes no paths")
			}
			err := s.ForEach(func(info *store.PathInfo) error {
				ps = append(ps, info.Path)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return runPathInfo(s, io, c, ps)
	})
}

// pathInfoJSON has nix path-info --json's keys in its order.
type pathInfoJSON struct {
	Path             string    `json:"path"`
	Valid            *bool     `json:"valid,omitempty"`
	NarHash          string    `json:"narHash,omitempty"`
	NarSize          uint64    `json:"narSize,omitempty"`
	References       *[]string `json:"references,omitempty"` // [] when valid and empty
	CA               string    `json:"ca,omitempty"`
	ClosureSize      *uint64   `json:"closureSize,omitempty"`
	Deriver          string    `json:"deriver,omitempty"`
	RegistrationTime int64     `json:"registrationTime,omitempty"`
	Signatures       []string  `json:"signatures,omitempty"`
}

func runPathInfo(s *store.Store, io stdio, c *pathInfoCmd, ps []storepath.Path) error {
	if c.Recursive {
		var err error
		if ps, err = s.Requisites(ps); err != nil {
			return err
		}
	}
	set := map[storepath.Path]bool{}
	for _, p := range ps {
		set[p] = true
	}
	if c.JSON {
		// nix path-info --json prints a set: by base name, each once.
		ps = ps[:0]
		for p := range set {
			ps = append(ps, p)
		}
		storepath.Sort(ps)
	} else {
		// Lines come references first, as nix path-info prints them.
		var err error
		if ps, err = topoSortPaths(s, set); err != nil {
			return err
		}
	}
	closureSize := func(p storepath.Path) (uint64, error) {
		req, err := s.Requisites([]storepath.Path{p})
		var n uint64
		for _, r := range req {
			info, err := s.Info(r)
			if err != nil {
				return 0, err
			}
			n += info.NarSize
		}
		return n, err
	}
	if c.JSON {
		out := make([]pathInfoJSON, 0, len(ps))
		for _, p := range ps {
			info, err := s.Info(p)
			if errors.Is(err, store.ErrNotValid) {
				f := false
				out = append(out, pathInfoJSON{Path: s.Print(p), Valid: &f})
				continue
			}
			if err != nil {
				return err
			}
			refs := s.Dir.PrintAll(info.References)
			j := pathInfoJSON{
				Path: s.Print(p), NarHash: info.NarHash.SRI(), NarSize: info.NarSize,
				References: &refs, CA: info.CA.String(),
				RegistrationTime: info.RegistrationTime.Unix(), Signatures: info.Sigs,
			}
			if !info.Deriver.IsZero() {
				j.Deriver = s.Print(info.Deriver)
			}
			if c.ClosureSize {
				n, err := closureSize(p)
				if err != nil {
					return err
				}
				j.ClosureSize = &n
			}
			out = append(out, j)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(out); err != nil {
			return err
		}
		_, err := io.out.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		return err
	}
	width := 0
	for _, p := range ps {
		width = max(width, len(s.Print(p)))
	}
	for _, p := range ps {
		info, err := s.Info(p)
		if err != nil {
			return err
		}
		line := s.Print(p)
		if c.Size || c.ClosureSize {
			line += strings.Repeat(" ", width-len(line))
		}
		if c.Size {
			line += fmt.Sprintf("\t%11d", info.NarSize)
		}
		if c.ClosureSize {
			n, err := closureSize(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf("\t%11d", n)
		}
		fmt.Fprintln(io.out, line)
	}
	return nil
}
