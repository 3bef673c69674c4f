package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// testNodes makes n files with distinct contents and their nodes.
func testNodes(t *testing.T, n int) ([]*node, [][]byte) {
	t.Helper()
	dir := t.TempDir()
	var nodes []*node
	var data [][]byte
	for i := 0; i < n; i++ {
		content := bytes.Repeat([]byte(fmt.Sprintf("file %d;", i)), 1000+i)
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(p, content, 0o444); err != nil {
			t.Fatal(err)
		}
		nd := &node{real: p}
		if err := syscall.Lstat(p, &nd.st); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
		data = append(data, content)
	}
	return nodes, data
}

func isOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

func readResult(t *testing.T, r fuse.ReadResult) []byte {
	t.Helper()
	got, st := r.Bytes(make([]byte, r.Size()))
	if !st.Ok() {
		t.Fatalf("Bytes: %v", st)
	}
	return got
}

// An evicted backing file stays open until the last reply that uses it is
// done: go-fuse splices from the fd after Read returned.
func TestFdCacheKeepsFdsInUse(t *testing.T) {
	nodes, data := testNodes(t, 3)
	c := newFdCache(2)
	r0, errno := c.read(nodes[0], make([]byte, 100), 10)
	if errno != 0 {
		t.Fatal(errno)
	}
	fd0 := r0.(*fdResult).b.fd
	for _, n := range nodes[1:] { // evicts nodes[0]'s file
		r, errno := c.read(n, make([]byte, 10), 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		r.Done()
	}
	if nodes[0].fd != nil {
		t.Fatalf("node 0 still has a cached file after two others")
	}
	if !isOpen(fd0) {
		t.Fatalf("fd %d was closed while a reply used it", fd0)
	}
	if got := readResult(t, r0); !bytes.Equal(got, data[0][10:110]) {
		t.Errorf("read %q, want %q", got, data[0][10:110])
	}
	r0.Done()
	r0.Done() // a second Done is harmless
	if isOpen(fd0) {
		t.Errorf("fd %d stayed open after its last user", fd0)
	}
	if c.lru.Len() != 2 {
		t.Errorf("%d files cached, want 2", c.lru.Len())
	}
	c.forget(nodes[2])
	if c.lru.Len() != 1 || nodes[2].fd != nil {
		t.Errorf("forget left %d files cached (node 2's: %v)", c.lru.Len(), nodes[2].fd)
	}
}

func TestFdCacheReadBounds(t *testing.T) {
	nodes, data := testNodes(t, 1)
	c := newFdCache(4)
	size := int64(len(data[0]))
	for _, tc := range []struct {
		off  int64
		n    int
		want []byte
	}{
		{0, 10, data[0][:10]},
		{size - 5, 100, data[0][size-5:]},
		{size, 100, nil},
		{size + 100, 100, nil},
		{0, 0, nil},
	} {
		r, errno := c.read(nodes[0], make([]byte, tc.n), tc.off)
		if errno != 0 {
			t.Fatalf("read %d at %d: %v", tc.n, tc.off, errno)
		}
		if got := readResult(t, r); !bytes.Equal(got, tc.want) || r.Size() != len(tc.want) {
			t.Errorf("read %d at %d: %d bytes (size %d), want %d", tc.n, tc.off, len(got), r.Size(), len(tc.want))
		}
		r.Done()
	}
}

// Many readers of more files than the cache holds: every read returns the
// right bytes, and at the end only the cache's own files are open.
func TestFdCacheConcurrent(t *testing.T) {
	nodes, data := testNodes(t, 20)
	c := newFdCache(3)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := (g*7 + i) % len(nodes)
				off := int64(i % 50)
				r, errno := c.read(nodes[k], make([]byte, 64), off)
				if errno != 0 {
					t.Errorf("read: %v", errno)
					return
				}
				got, _ := r.Bytes(make([]byte, 64))
				if !bytes.Equal(got, data[k][off:off+64]) {
					t.Errorf("node %d at %d: %q", k, off, got)
				}
				r.Done()
			}
		}()
	}
	wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Len() > 3 {
		t.Errorf("%d files cached, more than 3", c.lru.Len())
	}
	for e := c.lru.Front(); e != nil; e = e.Next() {
		if b := e.Value.(*backingFile); b.users != 0 || !isOpen(b.fd) {
			t.Errorf("cached file %d: %d users, open %v", b.fd, b.users, isOpen(b.fd))
		}
	}
}
