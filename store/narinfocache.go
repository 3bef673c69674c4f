package store

// The narinfo cache remembers what binary caches answered, so that asking
// again within a TTL costs no network (as Nix's narinfo disk cache):
//
//	narinfoCache                         made on first use
//	└── <cache URL> 0x00 <name> -> JSON of narInfoCacheRecord
//
// <name> is a store path's hash part for a narinfo lookup, "nix-cache-info"
// for the cache's own description, or "forgotten" for when its answers were
// last forgotten (a hash part is 32 nix32 characters, so they never
// collide). A record with found=false is a
// miss: the cache answered 404. The caller decides how long an answer stays
// fresh (realise: one hour for a miss, a month for a hit, as Nix), and
// sweeps stale answers out with ExpireNarInfoCache; bbolt reuses the pages
// they held, so the file stops growing once answers expire as fast as new
// ones come (the file itself is not shrunk: other processes open it for
// every transaction, and replacing it under them could lose their writes).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucketNarInfoCache = []byte("narinfoCache")

// NarInfoCacheName is the name under which a cache's nix-cache-info is
// remembered.
const NarInfoCacheName = "nix-cache-info"

// NarInfoCacheEntry is one remembered answer of a binary cache.
type NarInfoCacheEntry struct {
	Cache string    // the cache's URL, as configured
	Name  string    // a hash part, or NarInfoCacheName
	Time  time.Time // when the cache answered
	Found bool      // false: the cache does not have it
	Data  []byte    // the file, when Found
}

type narInfoCacheRecord struct {
	Time  int64  `json:"time"`
	Found bool   `json:"found"`
	Data  string `json:"data,omitempty"`
}

func narInfoCacheKey(cache, name string) []byte { return pairKey(cache, name) }

// LookupNarInfoCache returns the remembered answer of cache for name, or nil.
func (s *Store) LookupNarInfoCache(cache, name string) (*NarInfoCacheEntry, error) {
	var e *NarInfoCacheEntry
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNarInfoCache)
		if b == nil {
			return nil
		}
		v := b.Get(narInfoCacheKey(cache, name))
		if v == nil {
			return nil
		}
		var r narInfoCacheRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("narinfo cache record of %s in %s: %w", name, cache, err)
		}
		e = &NarInfoCacheEntry{Cache: cache, Name: name, Time: time.Unix(r.Time, 0), Found: r.Found}
		if r.Found {
			e.Data = []byte(r.Data)
		}
		return nil
	})
	return e, err
}

// PutNarInfoCache remembers answers, all in one transaction.
func (s *Store) PutNarInfoCache(entries ...NarInfoCacheEntry) error {
	if len(entries) == 0 {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNarInfoCache)
		if err != nil {
			return err
		}
		for _, e := range entries {
			r := narInfoCacheRecord{Time: e.Time.Unix(), Found: e.Found}
			if e.Found {
				r.Data = string(e.Data)
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put(narInfoCacheKey(e.Cache, e.Name), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// narInfoForgottenName is the record of when a cache's answers were last
// forgotten, so that answers other processes hold in memory can be judged.
const narInfoForgottenName = "forgotten"

// ForgetNarInfoCache forgets the answers of cache for names, or all of its
// answers when names is empty (after writing to the cache, say), and
// records when (NarInfoCacheForgotten).
func (s *Store) ForgetNarInfoCache(cache string, names ...string) error {
	return s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNarInfoCache)
		if err != nil {
			return err
		}
		v, err := json.Marshal(narInfoCacheRecord{Time: time.Now().Unix()})
		if err != nil {
			return err
		}
		if err := b.Put(narInfoCacheKey(cache, narInfoForgottenName), v); err != nil {
			return err
		}
		if len(names) > 0 {
			for _, n := range names {
				if err := b.Delete(narInfoCacheKey(cache, n)); err != nil {
					return err
				}
			}
			return nil
		}
		var keys [][]byte
		err = forEachPair(b, cache, func(second string, _ []byte) error {
			if second != narInfoForgottenName {
				keys = append(keys, narInfoCacheKey(cache, second))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// NarInfoCacheForgotten is when ForgetNarInfoCache last forgot answers of
// cache (in any process), or the zero time. An answer remembered in memory
// before then is stale.
func (s *Store) NarInfoCacheForgotten(cache string) (time.Time, error) {
	e, err := s.LookupNarInfoCache(cache, narInfoForgottenName)
	if err != nil || e == nil {
		return time.Time{}, err
	}
	return e.Time, nil
}

// NarInfoCacheExpiry says which remembered answers are stale: those older
// than Negative (misses), Positive (narinfos) or CacheInfo
// (nix-cache-info) at Now. A TTL of 0 or less makes every answer of its
// kind stale.
type NarInfoCacheExpiry struct {
	Now                           time.Time
	Negative, Positive, CacheInfo time.Duration
	// Every skips the sweep when one (by any process) ended less than
	// this long before Now; 0 sweeps always.
	Every time.Duration
}

// keySweep (an empty cache URL, which no cache has) records when the
// narinfo cache was last swept.
var keySweep = pairKey("", "sweep")

// ExpireNarInfoCache deletes the stale answers, in one transaction, and
// returns how many. A store with no stale answer is not written to but
// for the time of the sweep, when Every asks for it.
func (s *Store) ExpireNarInfoCache(e NarInfoCacheExpiry) (int, error) {
	stale := func(k, v []byte) bool {
		if bytes.Equal(k, keySweep) {
			return false
		}
		var r narInfoCacheRecord
		if json.Unmarshal(v, &r) != nil {
			return true
		}
		ttl := e.Positive
		switch _, name, _ := splitPairKey(k); {
		case name == narInfoForgottenName:
			ttl = max(e.Negative, e.Positive)
		case name == NarInfoCacheName:
			ttl = e.CacheInfo
		case !r.Found:
			ttl = e.Negative
		}
		return ttl <= 0 || e.Now.Sub(time.Unix(r.Time, 0)) >= ttl
	}
	any, recent := false, false
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNarInfoCache)
		if b == nil {
			return nil
		}
		if v := b.Get(keySweep); v != nil && e.Every > 0 {
			var r narInfoCacheRecord
			if json.Unmarshal(v, &r) == nil && e.Now.Sub(time.Unix(r.Time, 0)) < e.Every {
				recent = true
				return nil
			}
		}
		return b.ForEach(func(k, v []byte) error {
			if stale(k, v) {
				any = true
				return errStop
			}
			return nil
		})
	})
	if err != nil && err != errStop {
		return 0, err
	}
	if recent || !any && e.Every <= 0 {
		return 0, nil
	}
	n := 0
	err = s.update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNarInfoCache)
		if err != nil {
			return err
		}
		if e.Every > 0 {
			v, err := json.Marshal(narInfoCacheRecord{Time: e.Now.Unix()})
			if err != nil {
				return err
			}
			if err := b.Put(keySweep, v); err != nil {
				return err
			}
		}
		if !any {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; {
			if stale(k, v) {
				key := append([]byte(nil), k...)
				if err := c.Delete(); err != nil {
					return err
				}
				n++
				k, v = c.Seek(key) // the next key after the deleted one
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
	return n, err
}

var errStop = errors.New("stop")
