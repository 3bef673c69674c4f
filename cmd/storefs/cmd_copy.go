package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"storefs/goals"
	"storefs/realise"
	"storefs/store"
	"storefs/store/derivation"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// substFlags choose the binary caches a command substitutes from; realise
// and copy --from share them.
type substFlags struct {
	Substituters        []string `name:"substituters" sep:" " placeholder:"URL" help:"Binary caches to substitute from (file://DIR, http://..., https://...); space-separated or repeated."`
	TrustedPublicKeys   []string `name:"trusted-public-keys" sep:" " placeholder:"KEY" help:"Keys (NAME:BASE64) whose signatures make a cache's narinfo trusted; space-separated or repeated."`
	NoRequireSigs       bool     `name:"no-require-sigs" help:"Accept narinfos without a good signature by a trusted key (NAR hashes are still checked)."`
	MaxSubstitutionJobs int      `name:"max-substitution-jobs" default:"16" help:"Substitutions to run at once."`
	NegativeTTL         duration `name:"narinfo-cache-negative-ttl" default:"3600" placeholder:"SECONDS" help:"How long a remote cache's answer that it lacks a path is believed: seconds, or with a unit (${default}; 0: not remembered)."`
	PositiveTTL         duration `name:"narinfo-cache-positive-ttl" default:"2592000" placeholder:"SECONDS" help:"How long a remote cache's narinfo is believed: seconds, or with a unit (${default}, 30 days; 0: not remembered)."`
	ConnectTimeout      duration `name:"connect-timeout" default:"5" placeholder:"SECONDS" help:"How long connecting to an HTTP cache may take (${default} s; 0: the default)."`
	QueryTimeout        duration `name:"narinfo-query-timeout" default:"5" placeholder:"SECONDS" help:"How long an HTTP cache may take to answer a narinfo or nix-cache-info query, connecting included; a cache that does not answer in time is down (${default} s; 0: the default)."`
	QueryRate           int      `name:"narinfo-query-rate" default:"20" placeholder:"N" help:"Narinfo queries a second that one user's lookups through the mount may cause, with a burst of ten seconds' worth; lookups beyond it count as in no cache (${default}; 0: no bound)."`
	RetryDown           duration `name:"substituter-retry-after" default:"60" placeholder:"SECONDS" help:"How long a cache that could not be reached is skipped before it is asked again, as Nix disables one for 60 s (${default}; 0: the default)."`
}

// substituter makes the Substituter the flags describe, with extra caches
// first; nil when there are no caches.
func (f *substFlags) substituter(s *store.Store, prog *progress, extra ...string) (*realise.Substituter, error) {
	urls := append(extra, f.Substituters...)
	if len(urls) == 0 {
		return nil, nil
	}
	opts, err := f.options()
	if err != nil {
		return nil, err
	}
	if prog != nil {
		opts.OnProgress = prog.fetchProgress()
		opts.OnWarning = func(msg string) { prog.warn(msg) }
	}
	return realise.NewSubstituter(s, urls, opts)
}

// options are the Substituter's options for these flags.
func (f *substFlags) options() (realise.SubstituterOptions, error) {
	keys, err := signature.ParsePublicKeys(strings.Join(f.TrustedPublicKeys, " "))
	if err != nil {
		return realise.SubstituterOptions{}, fmt.Errorf("--trusted-public-keys: %w", err)
	}
	return realise.SubstituterOptions{TrustedKeys: keys, RequireSigs: !f.NoRequireSigs,
		NegativeTTL: ttl(f.NegativeTTL), PositiveTTL: ttl(f.PositiveTTL),
		HTTP:      realise.HTTPOptions{ConnectTimeout: time.Duration(f.ConnectTimeout), QueryTimeout: time.Duration(f.QueryTimeout)},
		RetryDown: time.Duration(f.RetryDown), QueryRate: queryRate(f.QueryRate)}, nil
}

// queryRate is narinfo-query-rate as SubstituterOptions takes it: there
// 0 means the default and a negative value no bound, which 0 means here.
func queryRate(n int) float64 {
	if n <= 0 {
		return -1
	}
	return float64(n)
}

// ttl is a narinfo TTL as SubstituterOptions takes it: there 0 means the
// default and a negative value "not remembered", which a setting of 0 means
// in Nix.
func ttl(d duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// fetchProgress reports long downloads: on a terminal in the status line,
// elsewhere as a plain line every few seconds per path.
func (p *progress) fetchProgress() func(storepath.Path, uint64, uint64) {
	var mu sync.Mutex
	last := map[storepath.Path]time.Time{}
	return func(path storepath.Path, done, total uint64) {
		text := fmt.Sprintf("%.1f MiB", float64(done)/(1<<20))
		if total > 0 {
			text = fmt.Sprintf("%.1f of %.1f MiB", float64(done)/(1<<20), float64(total)/(1<<20))
		}
		if p.tty {
			p.logLine(path, text)
			return
		}
		mu.Lock()
		now := time.Now()
		due := now.Sub(last[path]) >= 5*time.Second && (total == 0 || done < total)
		if last[path].IsZero() {
			last[path], due = now, false // not for the first MiB
		} else if due {
			last[path] = now
		}
		if total > 0 && done >= total {
			delete(last, path)
		}
		mu.Unlock()
		if due {
			p.mu.Lock()
			fmt.Fprintf(p.w, "fetching %s: %s\n", p.s.Print(path), text)
			p.mu.Unlock()
		}
	}
}

func (p *progress) warn(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.w, "warning: %s\n", msg)
}

// copyCmd is `nix copy`: paths with their closures into a file:// binary
// cache, or from a binary cache into the store.
type copyCmd struct {
	To              string     `name:"to" placeholder:"file://DIR" xor:"dir" help:"Write the paths' closure into this binary cache directory."`
	From            string     `name:"from" placeholder:"URL" xor:"dir" help:"Substitute the paths (and their closures) from this binary cache."`
	SecretKeyFile   string     `name:"secret-key-file" type:"path" placeholder:"FILE" help:"With --to: sign each narinfo with this key (as nix-store --generate-binary-cache-key writes it)."`
	Compression     string     `name:"compression" default:"xz" enum:"none,xz,zstd,bzip2,br" help:"With --to: how NARs are compressed (${enum}; default ${default})."`
	WriteNarListing bool       `name:"write-nar-listing" help:"With --to: also write each path's .ls listing of its NAR."`
	Subst           substFlags `embed:""`
	Paths           []string   `arg:"" help:"Store paths (with --from they need not be valid yet)."`
}

func (c *copyCmd) Help() string {
	return `With --to file://DIR, the closure of the paths is written as nix copy --to
file://DIR writes it: nix-cache-info, nar/<file hash>.nar.<ext> and
<hash>.narinfo (and <hash>.ls with --write-nar-listing), so real Nix
substitutes from it. Paths already in the cache are kept.

With --from URL, the paths and everything they refer to are substituted from
URL (and any --substituters), each checked against its narinfo's hashes and
signatures (--trusted-public-keys); nothing is built.`
}

func (c *copyCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	if c.To == "" && c.From == "" {
		return errors.New("copy: give --to file://DIR or --from URL")
	}
	return g.withPaths(c.Paths, func(s *store.Store, ps []storepath.Path) error {
		if c.To != "" {
			return runCopyTo(ctx, s, io, c, ps)
		}
		return runCopyFrom(ctx, s, io, c, ps)
	})
}

// runCopyTo writes the closure of ps into the cache c.To.
func runCopyTo(ctx context.Context, s *store.Store, io stdio, c *copyCmd, ps []storepath.Path) error {
	dir, ok := strings.CutPrefix(c.To, "file://")
	if !ok || !strings.HasPrefix(dir, "/") || strings.ContainsAny(dir, "?#") {
		return fmt.Errorf("--to %q: storefs writes only to file:///absolute/dir caches, without parameters (use --compression, --secret-key-file, --write-nar-listing)", c.To)
	}
	opts := realise.CacheWriteOptions{Compression: c.Compression, WriteNarListing: c.WriteNarListing}
	if c.SecretKeyFile != "" {
		text, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return fmt.Errorf("--secret-key-file: %w", err)
		}
		if opts.SecretKey, err = signature.ParseSecretKey(string(text)); err != nil {
			return fmt.Errorf("--secret-key-file %s: %w", c.SecretKeyFile, err)
		}
	}
	closure, err := s.Requisites(ps)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	opts.OnPath = func(p storepath.Path, written bool) {
		if written {
			mu.Lock()
			fmt.Fprintf(io.err, "copied %s\n", s.Print(p))
			mu.Unlock()
		}
	}
	if err := realise.WriteFileCache(ctx, s, dir, closure, opts); err != nil {
		return err
	}
	// Misses remembered for this cache are out of date now.
	return s.ForgetNarInfoCache(strings.TrimRight(c.To, "/"))
}

// runCopyFrom substitutes ps and their closures through the goal engine,
// with a builder that refuses to build.
func runCopyFrom(ctx context.Context, s *store.Store, io stdio, c *copyCmd, ps []storepath.Path) error {
	prog := newProgress(io.err, s)
	sub, err := c.Subst.substituter(s, prog, c.From)
	if err != nil {
		return err
	}
	w := goals.New(s, noBuilder{s.Dir}, sub, goals.Options{MaxSubstitutionJobs: c.Subst.MaxSubstitutionJobs, Observer: prog})
	targets := make([]realiseTarget, len(ps))
	for i, p := range ps {
		targets[i] = realiseTarget{arg: s.Print(p), path: p}
	}
	return runRealise(ctx, w, stdio{in: io.in, out: discard{}, err: io.err}, targets, false, false)
}

// noBuilder is the Builder of copy --from, which only substitutes.
type noBuilder struct{ dir storepath.Dir }

func (b noBuilder) Build(_ context.Context, drv storepath.Path, _ *derivation.Derivation, _ goals.BuildOptions) error {
	return fmt.Errorf("copy --from does not build, and no binary cache has every output of %s", b.dir.Print(drv))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
