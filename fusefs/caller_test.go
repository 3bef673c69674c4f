package fusefs

import (
	"context"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"storefs/store"
	"storefs/store/storepath"
)

type callerKey struct{}

// uidRealiser records the uid its context carries.
type uidRealiser struct{ got chan any }

func (r uidRealiser) Realise(ctx context.Context, p storepath.Path) error {
	r.got <- ctx.Value(callerKey{})
	return nil
}

// A lookup's realisation carries the uid of the process that looked up,
// through Options.WithCaller.
func TestRealiseCarriesCaller(t *testing.T) {
	s, err := store.Open("/store", t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := uidRealiser{got: make(chan any, 1)}
	f := New(s, r, Options{WithCaller: func(ctx context.Context, uid uint32) context.Context {
		return context.WithValue(ctx, callerKey{}, uid)
	}})
	p, _ := storepath.ParseBase("00000000000000000000000000000000-x")
	lookup := &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: 1234}}, Cancel: make(chan struct{})}
	if err := f.realise(lookup, p); err != nil {
		t.Fatal(err)
	}
	if got := <-r.got; got != uint32(1234) {
		t.Errorf("the realisation's context carries %v, want uid 1234", got)
	}
}
