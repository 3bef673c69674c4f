package daemon

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzOps drives the operation decoder with any bytes after a handshake:
// no panic, and the connection ends.
func FuzzOps(f *testing.F) {
	var hs bytes.Buffer
	for _, v := range []uint64{workerMagic1, protocolVersion, 0, 0} {
		var b [8]byte
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		hs.Write(b[:])
	}
	seed := func(op uint64, rest ...[]byte) []byte {
		b := append([]byte{}, le(op)...)
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	str := func(s string) []byte {
		return append(append(le(uint64(len(s))), s...), make([]byte, (8-len(s)%8)%8)...)
	}
	p := "/store/" + somePath("x").Base()
	f.Add(seed(1, str(p)))
	f.Add(seed(7, str("n"), str("text:sha256"), le(0), le(0), le(3), []byte("abc"), le(0)))
	f.Add(seed(39, str(p), str(""), str("00"), le(0), le(0), le(8), le(0), le(0), str(""), le(0), le(1), le(0)))
	f.Add(seed(44, le(0), le(1), le(8), le(0), le(0)))
	f.Add(seed(19, le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(0), le(1), str("a"), str("b")))
	f.Add(seed(9, le(1), str(p+"!out"), le(0)))
	f.Add(seed(20, le(1), le(0), le(0), le(0), le(0), le(0), le(0)))
	srv := testServer(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		rw := struct {
			io.Reader
			io.Writer
		}{io.MultiReader(bytes.NewReader(hs.Bytes()), bytes.NewReader(in)), io.Discard}
		err := srv.NewConn(Peer{Trusted: true}).Serve(t.Context(), rw)
		if err != nil && strings.Contains(err.Error(), "panic") {
			t.Fatal(err)
		}
	})
}
