package realise

// # Substitution (Substituter, implementing goals.Substituter)
//
// Query asks every cache for a path's narinfo at once. A remote cache's
// answers, hits and misses, are remembered in the store (narinfoCache
// bucket) for PositiveTTL and NegativeTTL, so a repeated lookup of a
// missing name costs no network. A narinfo is used only if it describes
// the path asked for, its URL stays inside the cache, its compression is
// known, and (unless RequireSigs is off) a trusted key signed it; caches
// are tried in order of Priority (lower first), then as configured.
//
// A lookup never waits long for a cache. An HTTP query (a narinfo,
// nix-cache-info) has HTTPOptions.QueryTimeout from connecting to its last
// byte and is retried only after a 5xx or 429 answer. A cache that could
// not be reached (refused, timed out, a persistent 5xx) is down: it counts
// as not having the path, it is warned about once, and it is skipped
// without being asked for RetryDown (60 s, as Nix); then one lookup asks
// it again while the others still skip it. Only answers are remembered in
// the store: a down cache's silence is not a miss. No lock is held across
// network I/O (see Cache).
//
// Fetch (substitute_fetch.go) streams each candidate's NAR in one pass:
// download -> hash the file -> decompress -> bound at NarSize -> hash the
// NAR and restore it under a store.NewTemp directory. Anything that does not
// match the narinfo discards the directory, and the next cache is tried;
// only a path whose every hash matched is registered.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"storefs/goals"
	"storefs/store"
	"storefs/store/narinfo"
	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// Nix's narinfo-cache-negative-ttl and narinfo-cache-positive-ttl, and how
// long a cache's nix-cache-info is remembered.
const (
	DefaultNegativeTTL  = time.Hour
	DefaultPositiveTTL  = 30 * 24 * time.Hour
	DefaultCacheInfoTTL = 7 * 24 * time.Hour
	// DefaultRetryDown is how long a cache that could not be reached is
	// skipped, as Nix disables one for 60 s.
	DefaultRetryDown = 60 * time.Second
)

// SubstituterOptions configure a Substituter.
type SubstituterOptions struct {
	TrustedKeys []signature.PublicKey
	// RequireSigs refuses a narinfo without a good signature by a trusted
	// key (Nix's require-sigs, on by default there too).
	RequireSigs bool
	HTTP        HTTPOptions
	// NegativeTTL and PositiveTTL are how long a remote cache's miss and
	// hit are believed; 0 means the defaults, <0 not remembered at all.
	NegativeTTL, PositiveTTL time.Duration
	// OnProgress, if set, hears how many bytes of a path's file have been
	// read (total is FileSize, 0 when the narinfo does not say), about
	// every MiB and once at the end. Calls come from many goroutines.
	OnProgress func(p storepath.Path, done, total uint64)
	// OnWarning, if set, hears about caches that could not be asked (down,
	// not answering): such a cache counts as not having the path.
	OnWarning func(msg string)
	// QueryRate bounds the narinfo queries per second that the lookups of
	// one uid (goals.CallerOf) may cause, with a burst of ten seconds'
	// worth; 0 means DefaultQueryRate, <0 no bound.
	QueryRate float64
	// RetryDown is how long a cache that could not be reached is skipped
	// before it is asked again (DefaultRetryDown when 0).
	RetryDown time.Duration
	// Now is the clock for the TTLs and RetryDown; nil means time.Now.
	Now func() time.Time
}

// Substituter fetches paths from binary caches into a store; it implements
// goals.Substituter. It is safe for concurrent use.
type Substituter struct {
	Store  *store.Store
	Caches []*Cache // as configured; the order breaks ties of priority
	opts   SubstituterOptions

	limiter *limiter // nil: queries are not bounded
	misses  misses   // misses remembered in memory

	expireMu   sync.Mutex // guards lastExpire
	lastExpire time.Time
}

var _ goals.Substituter = (*Substituter)(nil)

// NewSubstituter makes a Substituter of the caches at urls for s.
func NewSubstituter(s *store.Store, urls []string, opts SubstituterOptions) (*Substituter, error) {
	sub := &Substituter{Store: s, opts: opts}
	if sub.opts.Now == nil {
		sub.opts.Now = time.Now
	}
	if sub.opts.NegativeTTL == 0 {
		sub.opts.NegativeTTL = DefaultNegativeTTL
	}
	if sub.opts.PositiveTTL == 0 {
		sub.opts.PositiveTTL = DefaultPositiveTTL
	}
	if sub.opts.RetryDown <= 0 {
		sub.opts.RetryDown = DefaultRetryDown
	}
	if sub.opts.QueryRate == 0 {
		sub.opts.QueryRate = DefaultQueryRate
	}
	sub.limiter = newLimiter(sub.opts.QueryRate)
	seen := map[string]bool{}
	for _, u := range urls {
		c, err := OpenCache(u, opts.HTTP)
		if err != nil {
			return nil, err
		}
		if !seen[c.URL] {
			seen[c.URL] = true
			sub.Caches = append(sub.Caches, c)
		}
	}
	return sub, nil
}

// candidate is one cache's narinfo for a path, accepted by Query.
type candidate struct {
	cache    *Cache
	priority int
	ni       *narinfo.NarInfo
}

// source is what Query leaves in goals.Substitute.Source: the candidates,
// best first, all with the same references.
type source struct{ candidates []candidate }

// TrustError is a narinfo that Query refused: not signed by a trusted key,
// for another path, with a URL leaving the cache, and so on.
type TrustError struct {
	Cache string // the cache's URL
	Path  string // the full store path asked for
	Err   error
}

func (e *TrustError) Error() string {
	return fmt.Sprintf("refusing %s from %s: %v", e.Path, e.Cache, e.Err)
}

func (e *TrustError) Unwrap() error { return e.Err }

// Query asks every cache for p in parallel and returns the best candidate's
// information. It returns an error wrapping goals.ErrNoSubstitute when no
// cache has p; a cache that has p but was refused makes an error that says
// why (a *TrustError), so that a user sees an untrusted key by name.
func (sub *Substituter) Query(ctx context.Context, p storepath.Path) (*goals.Substitute, error) {
	type answer struct {
		ni       *narinfo.NarInfo
		priority int
		err      error
		down     bool // the cache itself could not be read
	}
	answers := make([]answer, len(sub.Caches))
	var wg sync.WaitGroup
	for i, c := range sub.Caches {
		wg.Go(func() {
			a := &answers[i]
			info, err := sub.cacheInfo(ctx, c)
			if err != nil {
				a.err, a.down = err, true
				return
			}
			a.priority = info.Priority
			a.ni, a.err = sub.lookup(ctx, c, p)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var cands []candidate
	var refused []error
	var limited error // a query not made for the caller's rate
	for i, a := range answers {
		c := sub.Caches[i]
		switch {
		case a.err != nil && isTrustProblem(a.err):
			refused = append(refused, &TrustError{Cache: c.URL, Path: sub.Store.Print(p), Err: a.err})
		case a.err != nil && errors.Is(a.err, errRateLimited):
			limited = a.err
			if re := new(RateError); errors.As(a.err, &re) && re.Warn {
				sub.warn(fmt.Sprintf("%v: lookups count as misses (warned once a minute)", a.err))
			}
		case a.err != nil && errors.As(a.err, new(*DownError)):
			// Skipped without asking; its warning was given when it
			// went down.
		case a.err != nil && a.down:
			sub.warn(fmt.Sprintf("binary cache %s is not used for %v: %v", c.URL, sub.opts.RetryDown, a.err))
		case a.err != nil:
			sub.warn(fmt.Sprintf("cannot ask binary cache %s for %s (it is not used for %v): %v", c.URL, sub.Store.Print(p), sub.opts.RetryDown, a.err))
		case a.ni != nil:
			if err := sub.accept(p, a.ni); err != nil {
				refused = append(refused, &TrustError{Cache: c.URL, Path: sub.Store.Print(p), Err: err})
				continue
			}
			cands = append(cands, candidate{cache: c, priority: a.priority, ni: a.ni})
		}
	}
	if len(cands) == 0 {
		if len(refused) > 0 {
			return nil, errors.Join(refused...)
		}
		if limited != nil {
			return nil, fmt.Errorf("%s: %v: %w", sub.Store.Print(p), limited, goals.ErrNoSubstitute)
		}
		return nil, fmt.Errorf("%s: %w", sub.Store.Print(p), goals.ErrNoSubstitute)
	}
	for _, err := range refused {
		sub.warn(err.Error())
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].priority < cands[j].priority })
	// Every candidate must need the same references: the goal engine makes
	// the first one's valid before Fetch, which may fall back to the others.
	best := cands[0]
	kept := cands[:1]
	for _, c := range cands[1:] {
		if sameRefs(c.ni.References, best.ni.References) {
			kept = append(kept, c)
		}
	}
	return &goals.Substitute{
		References: best.ni.References,
		Deriver:    best.ni.Deriver,
		NarSize:    best.ni.NarSize,
		Source:     &source{candidates: kept},
	}, nil
}

func sameRefs(a, b []storepath.Path) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// errTrust marks errors that are a cache's fault, not its availability: a
// malformed narinfo or nix-cache-info, or one for another store dir.
var errTrust = errors.New("refused")

type trustProblem struct{ err error }

func (t trustProblem) Error() string   { return t.err.Error() }
func (t trustProblem) Unwrap() []error { return []error{t.err, errTrust} }
func refuse(err error) error           { return trustProblem{err} }

// isTrustProblem tells a cache's wrong answer (a malformed, unsigned or
// misdirected file, another store dir, an HTTP 4xx other than 404), which
// is an error, from a cache that could not answer (down, 5xx, stalled),
// which is a warning and counts as a miss, as in Nix.
func isTrustProblem(err error) bool {
	var se *HTTPStatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != 429 {
		return true
	}
	return errors.Is(err, errTrust)
}

func (sub *Substituter) warn(msg string) {
	if sub.opts.OnWarning != nil {
		sub.opts.OnWarning(msg)
	}
}

// accept checks a narinfo for p: it describes p, its URL stays inside the
// cache, its compression is known, and a trusted key signed it.
func (sub *Substituter) accept(p storepath.Path, ni *narinfo.NarInfo) error {
	dir := sub.Store.Dir
	if ni.StorePath != p {
		return fmt.Errorf("its narinfo describes %s instead", dir.Print(ni.StorePath))
	}
	if err := checkCachePath(ni.URL); err != nil {
		return fmt.Errorf("NAR URL: %w", err)
	}
	if err := checkCompression(ni.Compression); err != nil {
		return err
	}
	if ni.NarHash.Algo != nixhash.SHA256 {
		return fmt.Errorf("NarHash %s is not a sha256", ni.NarHash)
	}
	if !sub.opts.RequireSigs {
		return nil
	}
	if _, err := ni.Verify(dir, sub.opts.TrustedKeys); err != nil {
		var se *narinfo.SignatureError
		if errors.As(err, &se) {
			names := se.KeyNames()
			trusted := make([]string, len(sub.opts.TrustedKeys))
			for i, k := range sub.opts.TrustedKeys {
				trusted[i] = k.Name()
			}
			if len(names) == 0 {
				return fmt.Errorf("it is not signed, and signatures are required (--no-require-sigs turns this off)")
			}
			return fmt.Errorf("no good signature by a trusted key: signed with %s; trusted keys: [%s] (add the cache's key to --trusted-public-keys): %w",
				strings.Join(names, ", "), strings.Join(trusted, " "), err)
		}
		return err
	}
	return nil
}

// cacheInfo is c's nix-cache-info, remembered in the store for remote
// caches.
func (sub *Substituter) cacheInfo(ctx context.Context, c *Cache) (*narinfo.CacheInfo, error) {
	var recall func() []byte
	var remember func([]byte)
	if c.backend.remote() && sub.opts.PositiveTTL > 0 {
		recall = func() []byte {
			e, err := sub.Store.LookupNarInfoCache(c.URL, store.NarInfoCacheName)
			if err != nil || e == nil || !e.Found || sub.opts.Now().Sub(e.Time) >= DefaultCacheInfoTTL {
				return nil
			}
			return e.Data
		}
		remember = func(data []byte) {
			sub.Store.PutNarInfoCache(store.NarInfoCacheEntry{Cache: c.URL, Name: store.NarInfoCacheName, Time: sub.opts.Now(), Found: true, Data: data})
		}
	}
	return c.cacheInfo(ctx, sub.Store.Dir, recall, remember, sub.opts.Now, sub.opts.RetryDown)
}

// lookup returns c's narinfo for p, nil if c does not have it: from
// memory or the store's narinfo cache when they know, else from c, within
// its caller's query rate.
func (sub *Substituter) lookup(ctx context.Context, c *Cache, p storepath.Path) (*narinfo.NarInfo, error) {
	name := p.HashPart() + ".narinfo"
	where := c.URL + "/" + name
	remember := c.backend.remote()
	key := missKey(c.URL, p.HashPart())
	if remember {
		if t, ok := sub.misses.get(key, sub.opts.Now(), sub.opts.NegativeTTL); ok && sub.opts.NegativeTTL > 0 {
			forgot, err := sub.Store.NarInfoCacheForgotten(c.URL)
			if err != nil {
				return nil, err
			}
			if t.After(forgot.Add(time.Second)) { // forgot has whole seconds
				return nil, nil
			}
		}
		e, err := sub.Store.LookupNarInfoCache(c.URL, p.HashPart())
		if err != nil {
			return nil, err
		}
		if e != nil {
			age := sub.opts.Now().Sub(e.Time)
			if !e.Found && sub.opts.NegativeTTL > 0 && age < sub.opts.NegativeTTL {
				return nil, nil
			}
			if e.Found && sub.opts.PositiveTTL > 0 && age < sub.opts.PositiveTTL {
				return sub.parse(e.Data, where)
			}
		}
	}
	if err := sub.limit(ctx); err != nil {
		return nil, err
	}
	probe, err := c.admit(sub.opts.Now())
	if err != nil {
		return nil, err
	}
	data, err := c.readSmall(ctx, name)
	c.report(ctx, probe, err, sub.opts.Now(), sub.opts.RetryDown)
	found := err == nil
	if err != nil && !errors.Is(err, errNotInCache) {
		return nil, err
	}
	switch {
	case !remember:
	case !found && sub.opts.NegativeTTL > 0:
		sub.misses.add(key, sub.opts.Now(), sub.opts.NegativeTTL)
		if _, user := goals.CallerOf(ctx); user {
			break // a user's misses stay in memory
		}
		fallthrough
	case found && sub.opts.PositiveTTL > 0:
		e := store.NarInfoCacheEntry{Cache: c.URL, Name: p.HashPart(), Time: sub.opts.Now(), Found: found, Data: data}
		if err := sub.Store.PutNarInfoCache(e); err != nil {
			return nil, err
		}
		sub.maybeExpire()
	}
	if !found {
		return nil, nil
	}
	return sub.parse(data, where)
}

func (sub *Substituter) parse(data []byte, where string) (*narinfo.NarInfo, error) {
	ni, err := narinfo.Parse(data, sub.Store.Dir, where)
	if err != nil {
		return nil, refuse(err)
	}
	return ni, nil
}
