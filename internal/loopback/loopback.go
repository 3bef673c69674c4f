// Package loopback has the test peers that fail on purpose: an address
// nothing listens on, and a server that accepts connections and never
// answers. The substituter tests and the integration tests share them.
package loopback

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// FreeAddr is a loopback address (host:port) nothing listens on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Silent starts a server on loopback that accepts connections and never
// answers, until the test ends; it returns its http:// URL and the count
// of connections it accepted.
func Silent(t testing.TB) (url string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String(), accepted
}
