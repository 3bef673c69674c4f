package nixbase32_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"storefs/store/nixbase32"
)

func TestKnown(t *testing.T) {
	// nix-hash --type sha256 --to-base32 <hex>, Nix 2.8.
	raw, _ := hex.DecodeString("992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513")
	if got, want := nixbase32.EncodeToString(raw), "04rmhy6rn9kryhm4fn2r8ihwyhf0aacl7g4vmhvdvzkibi2r6alr"; got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
	if got := nixbase32.EncodeToString([]byte{0x1f}); got != "0z" {
		t.Errorf("Encode(0x1f) = %s, want 0z", got)
	}
}

func TestRoundTrip(t *testing.T) {
	for n := 0; n <= 64; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := nixbase32.EncodeToString(b)
		if len(s) != nixbase32.EncodedLen(n) {
			t.Fatalf("len %d: encoded length %d, want %d", n, len(s), nixbase32.EncodedLen(n))
		}
		back, err := nixbase32.DecodeString(s)
		if err != nil || !bytes.Equal(back, b) {
			t.Fatalf("len %d: %q decoded to %x, %v", n, s, back, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0", "length 1 encodes no whole number of bytes"},
		{"0e", "invalid character 'e' at offset 1"},
		{"u0", "invalid character 'u' at offset 0"},
		{"z0", "non-zero padding bits"},
	} {
		_, err := nixbase32.DecodeString(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("DecodeString(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("04rmhy6rn9kryhm4fn2r8ihwyhf0aacl7g4vmhvdvzkibi2r6alr")
	f.Add("0z")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := nixbase32.DecodeString(s)
		if err != nil {
			return
		}
		if back := nixbase32.EncodeToString(b); back != s {
			t.Fatalf("%q decoded and re-encoded to %q", s, back)
		}
	})
}
