package daemon

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"storefs/store"
	"storefs/store/nar"
	"storefs/store/nixbase32"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// tempRoots are the connection's temporary roots, made on first use.
func (c *Conn) tempRoots(ctx context.Context) (*store.TempRoots, error) {
	if c.roots == nil {
		tr, err := c.s.NewTempRoots(ctx)
		if err != nil {
			return nil, err
		}
		c.roots = tr
	}
	return c.roots, nil
}

func opAddTempRoot(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	tr, err := c.tempRoots(ctx)
	if err != nil {
		return err
	}
	if err := tr.Add(ctx, p); err != nil {
		return err
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}

// autoRootsDir holds the indirect roots: symlinks to the symlinks a client
// made (a result link), which the collector follows.
const autoRootsDir = "auto"

func opAddIndirectRoot(ctx context.Context, c *Conn) error {
	link, err := c.r.String("path", wire.MaxPathLen)
	if err != nil {
		return err
	}
	c.startWork()
	if !filepath.IsAbs(link) || strings.HasPrefix(link, string(c.dir)+"/") {
		return fmt.Errorf("indirect root %q must be an absolute path outside the store %s", link, c.dir)
	}
	link = filepath.Clean(link)
	sum := sha256.Sum256([]byte(link))
	dir := filepath.Join(c.s.RootsDir(), autoRootsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("indirect root %s: %w", link, err)
	}
	name := filepath.Join(dir, nixbase32.EncodeToString(sum[:20]))
	tmp := name + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(link, tmp); err != nil {
		return fmt.Errorf("indirect root %s: %w", link, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("indirect root %s: %w", link, err)
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}

// opFindRoots answers every gc root as (link, store path); an indirect
// root is named by the client's link, as Nix names it.
func opFindRoots(ctx context.Context, c *Conn) error {
	c.startWork()
	roots, err := c.s.Roots()
	if err != nil {
		return err
	}
	type pair struct{ link, target string }
	var out []pair
	auto := filepath.Join(c.s.RootsDir(), autoRootsDir) + "/"
	for p, links := range roots {
		for _, l := range links {
			if strings.HasPrefix(l, auto) {
				if t, err := os.Readlink(l); err == nil {
					l = t
				}
			}
			out = append(out, pair{l, c.dir.Print(p)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].target != out[j].target {
			return out[i].target < out[j].target
		}
		return out[i].link < out[j].link
	})
	c.stopWork()
	c.w.U64(uint64(len(out)))
	for _, p := range out {
		c.w.String(p.link)
		c.w.String(p.target)
	}
	return nil
}

// The actions of CollectGarbage.
const (
	gcReturnLive     = 0
	gcReturnDead     = 1
	gcDeleteDead     = 2
	gcDeleteSpecific = 3
)

func opCollectGarbage(ctx context.Context, c *Conn) error {
	action, err := c.r.Int("action")
	if err != nil {
		return err
	}
	paths, err := c.r.Paths("pathsToDelete", c.dir)
	if err != nil {
		return err
	}
	ignoreLiveness, err := c.r.Bool("ignoreLiveness")
	if err != nil {
		return err
	}
	maxFreed, err := c.r.U64("maxFreed")
	if err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		if _, err := c.r.U64("obsolete"); err != nil {
			return err
		}
	}
	c.startWork()
	if ignoreLiveness {
		return fmt.Errorf("collecting garbage: ignoring liveness is not allowed")
	}
	var res []storepath.Path
	var freed uint64
	switch action {
	case gcReturnDead, gcReturnLive:
		dead, err := c.s.GC(ctx, store.GCOptions{DryRun: true})
		if err != nil {
			return err
		}
		res = dead.Deleted
		if action == gcReturnLive {
			isDead := map[storepath.Path]bool{}
			for _, p := range dead.Deleted {
				isDead[p] = true
			}
			res = nil
			if err := c.s.ForEachPath(func(p storepath.Path) error {
				if !isDead[p] {
					res = append(res, p)
				}
				return nil
			}); err != nil {
				return err
			}
		}
	case gcDeleteDead:
		r, err := c.s.GC(ctx, store.GCOptions{MaxFreed: maxFreed})
		if err != nil {
			return err
		}
		res, freed = r.Deleted, r.Freed
	case gcDeleteSpecific:
		var sizes uint64
		for _, p := range paths {
			if info, err := c.s.Info(p); err == nil {
				sizes += info.NarSize
			}
		}
		if err := c.s.DeleteSpecific(ctx, paths); err != nil {
			return err
		}
		res, freed = paths, sizes
	default:
		return fmt.Errorf("collecting garbage: unknown action %d", action)
	}
	c.stopWork()
	c.writeSet(res)
	c.w.U64(freed)
	c.w.U64(0)
	return nil
}

func opNarFromPath(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	if _, err := c.s.Info(p); err != nil {
		return err
	}
	c.stopWork()
	// After STDERR_LAST nothing but the NAR may follow: an error now can
	// only end the connection.
	if err := nar.Dump(c.w, c.s.RealPath(p)); err != nil {
		return &fatal{fmt.Errorf("dumping %s: %w", c.dir.Print(p), err)}
	}
	return nil
}
