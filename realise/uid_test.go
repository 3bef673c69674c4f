package realise

import (
	"testing"

	"storefs/store"
)

// Two stores on one machine never hand out the same build uid at once:
// the locks are machine-wide, not in a store's state dir.
func TestBuildUIDsMachineWide(t *testing.T) {
	var builders []*Builder
	for range 2 {
		s, err := store.Open("/store", t.TempDir(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		builders = append(builders, &Builder{Store: s})
	}
	seen := map[int]int{}
	for i := range 6 {
		uid, release, err := builders[i%2].takeUID()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if prev, ok := seen[uid]; ok {
			t.Errorf("uid %d handed to store %d while store %d holds it", uid, i%2, prev)
		}
		seen[uid] = i % 2
	}
}
