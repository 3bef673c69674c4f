// Package nixhash is Nix's hash value: an algorithm (md5, sha1, sha256,
// sha512) and a digest, parsed from and printed to the forms Nix uses
// (docs/formats.md, "Hashes"): `algo:<nix32>`, `algo:<hex>`, `algo:<base64>`
// and SRI `algo-<base64>`.
//
// A Hash is a plain value (comparable, usable as a map key). Parsing checks
// that the digest has exactly the algorithm's length, so a Hash that exists
// is always well formed.
package nixhash

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	"storefs/store/nixbase32"
)

// Algo is a hash algorithm Nix knows.
type Algo uint8

// The algorithms, in Nix's order.
const (
	MD5 Algo = iota + 1
	SHA1
	SHA256
	SHA512
)

var algoNames = [...]string{MD5: "md5", SHA1: "sha1", SHA256: "sha256", SHA512: "sha512"}
var algoSizes = [...]int{MD5: md5.Size, SHA1: sha1.Size, SHA256: sha256.Size, SHA512: sha512.Size}

// ParseAlgo returns the algorithm named s ("sha256", ...).
func ParseAlgo(s string) (Algo, error) {
	for a, n := range algoNames {
		if n != "" && n == s {
			return Algo(a), nil
		}
	}
	return 0, fmt.Errorf("unknown hash algorithm %q (want md5, sha1, sha256 or sha512)", s)
}

func (a Algo) String() string {
	if a < MD5 || a > SHA512 {
		return fmt.Sprintf("Algo(%d)", uint8(a))
	}
	return algoNames[a]
}

// Size is the digest length in bytes.
func (a Algo) Size() int { return algoSizes[a] }

// New returns a hasher for the algorithm.
func (a Algo) New() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA512:
		return sha512.New()
	}
	panic("nixhash: invalid algorithm " + a.String())
}

// maxSize is the largest digest (sha512).
const maxSize = sha512.Size

// Hash is a digest with its algorithm. The zero Hash is "no hash".
type Hash struct {
	Algo   Algo
	digest [maxSize]byte
}

// New makes a Hash from a digest, which must have the algorithm's length.
func New(a Algo, digest []byte) (Hash, error) {
	if a < MD5 || a > SHA512 {
		return Hash{}, fmt.Errorf("invalid hash algorithm %d", a)
	}
	if len(digest) != a.Size() {
		return Hash{}, fmt.Errorf("%s digest has %d bytes, want %d", a, len(digest), a.Size())
	}
	h := Hash{Algo: a}
	copy(h.digest[:], digest)
	return h, nil
}

// Sum hashes data.
func Sum(a Algo, data []byte) Hash {
	w := a.New()
	w.Write(data)
	return FromHasher(a, w)
}

// FromHasher makes a Hash from a finished hasher of algorithm a.
func FromHasher(a Algo, w hash.Hash) Hash {
	h := Hash{Algo: a}
	w.Sum(h.digest[:0])
	return h
}

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h.Algo == 0 }

// Digest returns the raw digest.
func (h Hash) Digest() []byte {
	if h.Algo == 0 {
		return nil
	}
	return h.digest[:h.Algo.Size()]
}

// Nix32 is the digest in nix-base32, without the algorithm.
func (h Hash) Nix32() string { return nixbase32.EncodeToString(h.Digest()) }

// Hex is the digest in lower-case hex, without the algorithm.
func (h Hash) Hex() string { return hex.EncodeToString(h.Digest()) }

// Base64 is the digest in standard padded base64, without the algorithm.
func (h Hash) Base64() string { return base64.StdEncoding.EncodeToString(h.Digest()) }

// String is the form Nix stores in its database and narinfo: `algo:<nix32>`.
func (h Hash) String() string {
	if h.IsZero() {
		return ""
	}
	return h.Algo.String() + ":" + h.Nix32()
}

// SRI is the Subresource Integrity form `algo-<base64>`.
func (h Hash) SRI() string { return h.Algo.String() + "-" + h.Base64() }

// Format names a printed form of a hash.
type Format string

// The printed forms.
const (
	FormatNix32  Format = "nix32"
	FormatHex    Format = "hex"
	FormatBase64 Format = "base64"
	FormatSRI    Format = "sri"
)

// Format prints h in form f; every form but SRI is prefixed `algo:`.
func (h Hash) Format(f Format) (string, error) {
	switch f {
	case FormatNix32:
		return h.String(), nil
	case FormatHex:
		return h.Algo.String() + ":" + h.Hex(), nil
	case FormatBase64:
		return h.Algo.String() + ":" + h.Base64(), nil
	case FormatSRI:
		return h.SRI(), nil
	}
	return "", fmt.Errorf("unknown hash format %q (want nix32, hex, base64 or sri)", f)
}

// Parse reads a hash that names its algorithm: `algo:<digest>` with the
// digest in nix32, hex or base64, or SRI `algo-<base64>`.
func Parse(s string) (Hash, error) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		a, err := ParseAlgo(s[:i])
		if err != nil {
			return Hash{}, fmt.Errorf("hash %q: %w", s, err)
		}
		return ParseDigest(a, s[i+1:])
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		a, err := ParseAlgo(s[:i])
		if err != nil {
			return Hash{}, fmt.Errorf("hash %q: %w", s, err)
		}
		return parseBase64(a, s[i+1:])
	}
	return Hash{}, fmt.Errorf("hash %q: no algorithm (want algo:digest or SRI algo-base64)", s)
}

// ParseDigest reads a digest of algorithm a, telling nix32, hex and base64
// apart by length, as Nix does.
func ParseDigest(a Algo, s string) (Hash, error) {
	if a < MD5 || a > SHA512 {
		return Hash{}, fmt.Errorf("invalid hash algorithm %d", a)
	}
	n := a.Size()
	switch len(s) {
	case hex.EncodedLen(n):
		d, err := hex.DecodeString(s)
		if err != nil {
			return Hash{}, fmt.Errorf("%s hash %q: bad hex: %w", a, s, err)
		}
		return New(a, d)
	case nixbase32.EncodedLen(n):
		d, err := nixbase32.DecodeString(s)
		if err != nil {
			return Hash{}, fmt.Errorf("%s hash: %w", a, err)
		}
		return New(a, d)
	case base64.StdEncoding.EncodedLen(n):
		return parseBase64(a, s)
	}
	return Hash{}, fmt.Errorf("%s hash %q: length %d fits none of nix32 (%d), hex (%d) or base64 (%d)",
		a, s, len(s), nixbase32.EncodedLen(n), hex.EncodedLen(n), base64.StdEncoding.EncodedLen(n))
}

func parseBase64(a Algo, s string) (Hash, error) {
	d, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return Hash{}, fmt.Errorf("%s hash %q: bad base64: %w", a, s, err)
	}
	if len(d) != a.Size() {
		return Hash{}, fmt.Errorf("%s hash %q: base64 decodes to %d bytes, want %d", a, s, len(d), a.Size())
	}
	return New(a, d)
}

// Compress folds a digest to n bytes by XOR-ing byte i into slot i mod n, as
// Nix does to make the 20-byte hash part of a store path.
func Compress(digest []byte, n int) []byte {
	out := make([]byte, n)
	for i, b := range digest {
		out[i%n] ^= b
	}
	return out
}
