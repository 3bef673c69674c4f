// Package nixbase32 implements Nix's base-32 encoding (docs/formats.md,
// "nix-base32").
//
// It is not RFC 4648 base32: the alphabet omits e, o, u and t, and the
// symbols are written from the most significant 5-bit group of the hash read
// as a little-endian bit string, so the last symbol holds the lowest bits.
// Decoding is strict: a symbol outside the alphabet, a wrong length, or bits
// set beyond the end of the hash are errors, so every byte string has exactly
// one encoding and every encoding one byte string.
package nixbase32

import (
	"fmt"
)

// Alphabet is the symbol set, in value order.
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

var decodeTable = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(Alphabet); i++ {
		t[Alphabet[i]] = int8(i)
	}
	return t
}()

// EncodedLen returns the number of symbols that encode n bytes.
func EncodedLen(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// DecodedLen returns the number of bytes that n symbols encode.
func DecodedLen(n int) int {
	return n * 5 / 8
}

// EncodeToString returns the nix32 encoding of b.
func EncodeToString(b []byte) string {
	out := make([]byte, EncodedLen(len(b)))
	Encode(out, b)
	return string(out)
}

// Encode writes the encoding of src to dst, which must have room for
// EncodedLen(len(src)) bytes.
func Encode(dst, src []byte) {
	n := EncodedLen(len(src))
	for k := n - 1; k >= 0; k-- {
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		v := src[i] >> j
		if i+1 < len(src) && j > 3 {
			v |= src[i+1] << (8 - j)
		}
		dst[n-1-k] = Alphabet[v&0x1f]
	}
}

// ValidByte reports whether c is a nix32 symbol.
func ValidByte(c byte) bool {
	return decodeTable[c] >= 0
}

// DecodeString decodes s, which must be a canonical encoding of a whole
// number of bytes.
func DecodeString(s string) ([]byte, error) {
	n := DecodedLen(len(s))
	if EncodedLen(n) != len(s) {
		return nil, fmt.Errorf("nix32 %q: length %d encodes no whole number of bytes", s, len(s))
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		c := s[len(s)-1-k]
		d := decodeTable[c]
		if d < 0 {
			return nil, fmt.Errorf("nix32 %q: invalid character %q at offset %d", s, c, len(s)-1-k)
		}
		v := uint16(d)
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(v << j)
		if hi := byte(v >> (8 - j)); j > 3 {
			if i+1 < n {
				out[i+1] |= hi
			} else if hi != 0 {
				return nil, fmt.Errorf("nix32 %q: non-zero padding bits in the first character", s)
			}
		}
	}
	return out, nil
}
