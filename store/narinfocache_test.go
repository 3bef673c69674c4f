package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNarInfoCache(t *testing.T) {
	s, err := Open("/store", t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const cache, other = "http://cache.example", "http://cache.example.other"
	if e, err := s.LookupNarInfoCache(cache, "x"); err != nil || e != nil {
		t.Fatalf("lookup before any put: %v %v", e, err)
	}
	now := time.Unix(1700000000, 0)
	err = s.PutNarInfoCache(
		NarInfoCacheEntry{Cache: cache, Name: "hit", Time: now, Found: true, Data: []byte("StorePath: ...\n")},
		NarInfoCacheEntry{Cache: cache, Name: "miss", Time: now.Add(time.Hour)},
		NarInfoCacheEntry{Cache: other, Name: "hit", Time: now, Found: true, Data: []byte("other")},
	)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.LookupNarInfoCache(cache, "hit")
	if err != nil || e == nil || !e.Found || string(e.Data) != "StorePath: ...\n" || !e.Time.Equal(now) {
		t.Errorf("hit: %+v %v", e, err)
	}
	e, err = s.LookupNarInfoCache(cache, "miss")
	if err != nil || e == nil || e.Found || e.Data != nil || !e.Time.Equal(now.Add(time.Hour)) {
		t.Errorf("miss: %+v %v", e, err)
	}
	if err := s.ForgetNarInfoCache(cache, "miss"); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.LookupNarInfoCache(cache, "miss"); e != nil {
		t.Errorf("forgotten miss still there: %+v", e)
	}
	// Forgetting a whole cache leaves another whose URL it prefixes.
	if err := s.ForgetNarInfoCache(cache); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.LookupNarInfoCache(cache, "hit"); e != nil {
		t.Errorf("forgotten cache still answers: %+v", e)
	}
	if e, _ := s.LookupNarInfoCache(other, "hit"); e == nil || string(e.Data) != "other" {
		t.Errorf("the other cache lost its answer: %+v", e)
	}
	probs, err := s.Check(CheckOptions{})
	if err != nil || len(probs) != 0 {
		t.Errorf("check: %v %v", probs, err)
	}
}

// Stale answers are deleted, each kind after its own TTL, and the pages
// they held are reused: a database that expires as fast as it is filled
// stops growing.
func TestExpireNarInfoCache(t *testing.T) {
	s, err := Open("/store", t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const cache = "http://cache.example"
	now := time.Unix(1700000000, 0)
	exp := NarInfoCacheExpiry{Now: now, Negative: time.Hour, Positive: 30 * 24 * time.Hour, CacheInfo: 7 * 24 * time.Hour}
	must(t, s.PutNarInfoCache(
		NarInfoCacheEntry{Cache: cache, Name: "old-miss", Time: now.Add(-2 * time.Hour)},
		NarInfoCacheEntry{Cache: cache, Name: "new-miss", Time: now.Add(-time.Minute)},
		NarInfoCacheEntry{Cache: cache, Name: "old-hit", Time: now.Add(-31 * 24 * time.Hour), Found: true, Data: []byte("x")},
		NarInfoCacheEntry{Cache: cache, Name: "hit", Time: now.Add(-2 * time.Hour), Found: true, Data: []byte("x")},
		NarInfoCacheEntry{Cache: cache, Name: NarInfoCacheName, Time: now.Add(-8 * 24 * time.Hour), Found: true, Data: []byte("StoreDir: /store\n")},
	))
	n, err := s.ExpireNarInfoCache(exp)
	must(t, err)
	if n != 3 {
		t.Errorf("expired %d answers, want 3", n)
	}
	for name, want := range map[string]bool{"old-miss": false, "new-miss": true, "old-hit": false, "hit": true, NarInfoCacheName: false} {
		e, err := s.LookupNarInfoCache(cache, name)
		must(t, err)
		if (e != nil) != want {
			t.Errorf("%s: kept %v, want %v", name, e != nil, want)
		}
	}
	if n, err := s.ExpireNarInfoCache(exp); err != nil || n != 0 {
		t.Errorf("second sweep: %d, %v", n, err)
	}

	// Rounds of misses, each expired before the next: the file stops growing.
	db := filepath.Join(s.State, dbFile)
	var sizes []int64
	for round := 0; round < 6; round++ {
		var es []NarInfoCacheEntry
		for i := 0; i < 2000; i++ {
			es = append(es, NarInfoCacheEntry{Cache: cache, Name: fmt.Sprintf("%032d", round*2000+i), Time: now})
		}
		must(t, s.PutNarInfoCache(es...))
		now = now.Add(2 * time.Hour)
		_, err := s.ExpireNarInfoCache(NarInfoCacheExpiry{Now: now, Negative: time.Hour, Positive: time.Hour, CacheInfo: time.Hour})
		must(t, err)
		st, err := os.Stat(db)
		must(t, err)
		sizes = append(sizes, st.Size())
	}
	t.Logf("database size after each round of 2000 misses, then expiry: %v", sizes)
	if sizes[5] > sizes[1] {
		t.Errorf("the database grew from %d to %d bytes though every answer expired", sizes[1], sizes[5])
	}
}

// With Every, a sweep is skipped while another (by any process) is recent.
func TestExpireNarInfoCacheEvery(t *testing.T) {
	s, err := Open("/store", t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	old := NarInfoCacheEntry{Cache: "http://c", Name: "m", Time: now.Add(-2 * time.Hour)}
	e := NarInfoCacheExpiry{Now: now, Negative: time.Hour, Positive: time.Hour, CacheInfo: time.Hour, Every: time.Hour}
	must(t, s.PutNarInfoCache(old))
	if n, err := s.ExpireNarInfoCache(e); err != nil || n != 1 {
		t.Fatalf("first sweep: %d %v", n, err)
	}
	must(t, s.PutNarInfoCache(old))
	e.Now = now.Add(30 * time.Minute)
	if n, err := s.ExpireNarInfoCache(e); err != nil || n != 0 {
		t.Errorf("sweep within Every: %d %v, want it skipped", n, err)
	}
	e.Now = now.Add(61 * time.Minute)
	if n, err := s.ExpireNarInfoCache(e); err != nil || n != 1 {
		t.Errorf("sweep after Every: %d %v", n, err)
	}
	if e, err := s.LookupNarInfoCache("", "sweep"); err != nil || e == nil {
		t.Errorf("the sweep record: %v %v", e, err)
	}
}
