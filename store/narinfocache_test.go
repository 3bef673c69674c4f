package store

import (
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
