package realise

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"storefs/goals"
	"storefs/store"
)

// What one user's lookups can cost. Lookups through the mount carry the
// uid of the process that made them (goals.CallerOf); each narinfo query
// that goes over the network takes a token from that uid's bucket, which
// holds QueryBurst tokens and refills at QueryRate a second. A query that
// would wait more than maxQueryWait for its token is not made: the path
// counts as in no cache (as when the caches are down), so a flood of
// random names costs the caches at most QueryRate queries a second per
// uid. Requests without a caller (storefs realise, the daemon's own) are
// not bounded.
//
// Misses are remembered in memory (at most maxMemoryMisses, for
// NegativeTTL, and not past the cache's store.NarInfoCacheForgotten, which
// storefs copy --to sets in whatever process); only those of requests
// without a caller are also written to the store's narinfo cache, so that
// no user's lookups grow the database. The database's narinfo cache is swept of answers older than
// their TTL at most once every expireEvery.

const (
	// DefaultQueryRate and the burst it allows: a cold closure of a few
	// hundred paths goes at full speed, a flood is slowed to the rate.
	DefaultQueryRate = 20
	queryBurstSecs   = 10
	maxQueryWait     = time.Second
	maxMemoryMisses  = 1 << 16
	maxBuckets       = 1 << 12
	expireEvery      = time.Hour
)

// errRateLimited says a caller's lookups exceeded the query rate; the
// query was not made.
var errRateLimited = errors.New("over the narinfo query rate")

// RateError is a query not made because its caller's lookups exceeded
// the query rate. It counts as a miss.
type RateError struct {
	UID  uint32
	Rate float64
	// Warn is set on the first refusal of a uid in a minute: the one to
	// tell the operator about.
	Warn bool
}

func (e *RateError) Error() string {
	return fmt.Sprintf("binary caches not asked: uid %d's lookups exceed %g queries a second (narinfo-query-rate)", e.UID, e.Rate)
}

func (e *RateError) Unwrap() error { return errRateLimited }

// limiter is a token bucket per uid.
type limiter struct {
	rate  float64 // tokens a second
	burst float64

	mu      sync.Mutex // guards buckets
	buckets map[uint32]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	warned time.Time // when a refusal was last warned about
}

// rateWarnEvery is how often one uid's refusals are warned about.
const rateWarnEvery = time.Minute

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate, burst: max(1, rate*queryBurstSecs), buckets: map[uint32]*bucket{}}
}

// wait takes a token for uid, sleeping for it if it comes within
// maxQueryWait; otherwise it returns a *RateError at once.
func (l *limiter) wait(ctx context.Context, uid uint32, now time.Time) error {
	l.mu.Lock()
	b := l.buckets[uid]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			// Full buckets are the same as none: forget them.
			for u, o := range l.buckets {
				if o.tokens+now.Sub(o.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, u)
				}
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[uid] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	b.tokens--
	var delay time.Duration
	if b.tokens < 0 {
		delay = time.Duration(-b.tokens / l.rate * float64(time.Second))
		if delay > maxQueryWait {
			b.tokens++
			warn := now.Sub(b.warned) >= rateWarnEvery
			if warn {
				b.warned = now
			}
			l.mu.Unlock()
			return &RateError{UID: uid, Rate: l.rate, Warn: warn}
		}
	}
	l.mu.Unlock()
	if delay == 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// misses remembers caches' misses in memory.
type misses struct {
	mu sync.Mutex // guards m
	m  map[string]time.Time
}

func missKey(cache, hashPart string) string { return cache + "\x00" + hashPart }

// get returns when key's miss was remembered, if within ttl.
func (m *misses) get(key string, now time.Time, ttl time.Duration) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[key]
	if ok && now.Sub(t) >= ttl {
		delete(m.m, key)
		ok = false
	}
	return t, ok
}

func (m *misses) add(key string, now time.Time, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]time.Time{}
	}
	if len(m.m) >= maxMemoryMisses {
		for k, t := range m.m {
			if now.Sub(t) >= ttl {
				delete(m.m, k)
			}
		}
		for k := range m.m { // still full: drop any half
			if len(m.m) < maxMemoryMisses/2 {
				break
			}
			delete(m.m, k)
		}
	}
	m.m[key] = now
}

// limit takes a query token for ctx's caller, if it has one.
func (sub *Substituter) limit(ctx context.Context) error {
	if sub.limiter == nil {
		return nil
	}
	c, ok := goals.CallerOf(ctx)
	if !ok {
		return nil
	}
	return sub.limiter.wait(ctx, c.UID, sub.opts.Now())
}

// maybeExpire sweeps the store's narinfo cache of stale answers, at most
// once every expireEvery: the store remembers when any process last did,
// and this Substituter asks it at most that often.
func (sub *Substituter) maybeExpire() {
	now := sub.opts.Now()
	sub.expireMu.Lock()
	due := now.Sub(sub.lastExpire) >= expireEvery
	if due {
		sub.lastExpire = now
	}
	sub.expireMu.Unlock()
	if !due {
		return
	}
	_, err := sub.Store.ExpireNarInfoCache(store.NarInfoCacheExpiry{
		Now: now, Negative: sub.opts.NegativeTTL, Positive: sub.opts.PositiveTTL, CacheInfo: DefaultCacheInfoTTL, Every: expireEvery,
	})
	if err != nil {
		sub.warn(fmt.Sprintf("expiring the narinfo cache: %v", err))
	}
}
