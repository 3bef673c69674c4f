package signature

import "testing"

func FuzzParsePublicKey(f *testing.F) {
	for _, s := range []string{nixPublic, nixPublic + "\n", otherPublic, "", ":", "k:", "k:AAAA", nixSecret, "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		again, err := ParsePublicKey(k.String())
		if err != nil || again.String() != k.String() || len(k.Bytes()) != 32 {
			t.Fatalf("%q parsed, printed as %q, which gives %v", s, k, err)
		}
	})
}

func FuzzParseSecretKey(f *testing.F) {
	for _, s := range []string{nixSecret, nixSecret + "\n", nixPublic, "", ":", "k:", "k:AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseSecretKey(s)
		if err != nil {
			return
		}
		again, err := ParseSecretKey(k.Encode())
		if err != nil || again.Encode() != k.Encode() {
			t.Fatalf("%q parsed, encoded, and gives %v", s, err)
		}
		sig, err := Sign(k, []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify([]byte(s), sig, []PublicKey{k.Public()}); err != nil {
			t.Fatalf("a parsed key's signature does not verify: %v", err)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	pub, err := ParsePublicKey(nixPublic)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{nixSig, nixPublic, "", ":", "k:", nixSig + "\n", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignature(s)
		if err != nil {
			return
		}
		if sig.String() != s {
			t.Fatalf("%q parsed and printed as %q", s, sig)
		}
		// Verifying an arbitrary signature never panics.
		Verify([]byte(s), sig, []PublicKey{pub})
	})
}
