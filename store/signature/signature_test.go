package signature

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// Made by Nix 2.8: `nix-store --generate-binary-cache-key test-cache-1 sk pk`
// (the same files as store/narinfo/testdata/test-cache-1.*), and the Sig
// line `nix copy --to 'file://DIR?secret-key=sk'` wrote for
// /store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo, over its fingerprint.
const (
	nixPublic  = "test-cache-1:pRYrmaDuzftXgUHHhcJ6bd6hpmXHEQVRk7nJ7p8kaec="
	nixSecret  = "test-cache-1:t8se0Rffmo74RTNY7nrQwWCA2IjSU4f5pQOubewcAYGlFiuZoO7N+1eBQceFwnpt3qGmZccRBVGTucnunyRp5w=="
	nixSig     = "test-cache-1:7iRAg8gRzpqg/7v/AGMhi7C6fL/5Eud3RDjZAPR47fiMblnCUgiIFljkDW5eYntDhELgY+aMpPuX/1DXA6Q3Ag=="
	nixMessage = "1;/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo;sha256:1342i57jds7glvkgklvi00kn1dsljsf2syhdf6r85qzpfnagppr2;528;/store/7r7cqiqf9ij7nlgf033alwajnvs7ylcg-hello.txt"
	// Another Nix-made key; its name sorts first.
	otherPublic = "aaa-other-2:YI5GxVRVqquAwxvdpF7PEytsgBWjmpfJRHHT91iVk9c="
)

func mustPublic(t *testing.T, s string) PublicKey {
	t.Helper()
	k, err := ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNixKeys(t *testing.T) {
	pub := mustPublic(t, nixPublic)
	sec, err := ParseSecretKey(nixSecret)
	if err != nil {
		t.Fatal(err)
	}
	if pub.String() != nixPublic || sec.Encode() != nixSecret {
		t.Errorf("keys do not print back: %s / %s", pub, sec.Encode())
	}
	if got := sec.Public().String(); got != nixPublic {
		t.Errorf("public key of Nix's secret key = %s, Nix says %s", got, nixPublic)
	}
	if sec.Name() != "test-cache-1" || pub.Name() != "test-cache-1" || len(pub.Bytes()) != 32 {
		t.Errorf("names %q %q, public key %d bytes", sec.Name(), pub.Name(), len(pub.Bytes()))
	}
	if s := sec.String(); strings.Contains(s, "t8se0") {
		t.Errorf("SecretKey.String reveals the key: %s", s)
	}
	// Key files with a trailing newline are accepted, as by Nix.
	if _, err := ParseSecretKey(nixSecret + "\n"); err != nil {
		t.Error(err)
	}
	if _, err := ParsePublicKey(nixPublic + "\n"); err != nil {
		t.Error(err)
	}
}

func TestNixSignature(t *testing.T) {
	sig, err := ParseSignature(nixSig)
	if err != nil {
		t.Fatal(err)
	}
	if sig.String() != nixSig {
		t.Errorf("signature prints as %s", sig)
	}
	trusted := []PublicKey{mustPublic(t, otherPublic), mustPublic(t, nixPublic)}
	k, err := Verify([]byte(nixMessage), sig, trusted)
	if err != nil || k.Name() != "test-cache-1" {
		t.Fatalf("Nix's signature: key %q, %v", k.Name(), err)
	}
	// ed25519 is deterministic: signing the same message with Nix's secret
	// key must give Nix's signature byte for byte.
	sec, _ := ParseSecretKey(nixSecret)
	mine, err := Sign(sec, []byte(nixMessage))
	if err != nil {
		t.Fatal(err)
	}
	if mine.String() != nixSig {
		t.Errorf("storefs signature\n %s\nNix's\n %s", mine, nixSig)
	}
	// One changed byte of the message.
	_, err = Verify([]byte(strings.Replace(nixMessage, "528", "529", 1)), sig, trusted)
	var bad *BadSignatureError
	if !errors.As(err, &bad) || bad.KeyName != "test-cache-1" || !strings.Contains(err.Error(), `bad signature by trusted key "test-cache-1"`) {
		t.Errorf("altered message: %v", err)
	}
	// Only the other key trusted.
	_, err = Verify([]byte(nixMessage), sig, trusted[:1])
	var untrusted *UntrustedKeyError
	if !errors.As(err, &untrusted) || untrusted.KeyName != "test-cache-1" || !strings.Contains(err.Error(), `signed by an untrusted key "test-cache-1"`) {
		t.Errorf("untrusted: %v", err)
	}
	if _, err := Verify([]byte(nixMessage), sig, nil); !errors.As(err, &untrusted) {
		t.Errorf("no trusted keys: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	sec, err := Generate("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseSecretKey(sec.Encode())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(sec.Public().String())
	if err != nil {
		t.Fatal(err)
	}
	sig, err := Sign(again, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify([]byte("hello"), sig, []PublicKey{pub}); err != nil {
		t.Error(err)
	}
	// Two keys with one name: a signature by the second verifies with it.
	other, _ := Generate("cache.example.org-1")
	if _, err := Verify([]byte("hello"), sig, []PublicKey{other.Public()}); err == nil {
		t.Error("another key with the same name verified the signature")
	}
	if k, err := Verify([]byte("hello"), sig, []PublicKey{other.Public(), pub}); err != nil || k.String() != pub.String() {
		t.Errorf("second key of the same name: %v", err)
	}
	if a, b := sec.Encode(), other.Encode(); a == b {
		t.Error("two generated keys are equal")
	}
	for _, name := range []string{"", "a:b", "a b", "tab\t", "nl\n", "\x00", "bad\xff"} {
		if _, err := Generate(name); err == nil {
			t.Errorf("Generate(%q) succeeded", name)
		}
	}
	if _, err := Sign(SecretKey{}, []byte("x")); err == nil {
		t.Error("signing with the zero key succeeded")
	}
	if _, err := Verify([]byte("x"), sig, []PublicKey{{}}); err == nil {
		t.Error("the zero public key verified")
	}
}

func TestParsePublicKeys(t *testing.T) {
	keys, err := ParsePublicKeys(" " + nixPublic + "\n\t" + otherPublic + " ")
	if err != nil || len(keys) != 2 || keys[1].Name() != "aaa-other-2" {
		t.Fatalf("%v %v", keys, err)
	}
	if _, err := ParsePublicKeys(nixPublic + " nope"); err == nil || !strings.Contains(err.Error(), "key 2 of the list") {
		t.Errorf("bad list: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	pubB64 := nixPublic[len("test-cache-1:"):]
	secB64 := nixSecret[len("test-cache-1:"):]
	// Nix's secret key with its public half replaced by another key's.
	sec, _ := ParseSecretKey(nixSecret)
	mixedKey := append(append([]byte(nil), sec.key[:32]...), mustPublic(t, otherPublic).Bytes()...)
	mixed := "k:" + base64.StdEncoding.EncodeToString(mixedKey)
	tests := []struct {
		parse func(string) error
		in    string
		want  string
	}{
		{pubErr, "", "public key \"\" has no colon"},
		{pubErr, "nocolon", "has no colon"},
		{pubErr, ":" + pubB64, "empty key name"},
		{pubErr, "k:", `public key "k": nothing after the colon`},
		{pubErr, "k:" + pubB64[:40], `public key "k": base64 decodes to 30 bytes, want 32`},
		{pubErr, "k:" + pubB64[:41], `public key "k": bad base64`},
		{pubErr, "k:" + pubB64[:20] + "\n" + pubB64[20:], `public key "k": bad base64: line break at offset 20`},
		{pubErr, "k:" + pubB64 + "\r\n", `public key "k": bad base64: line break at offset 44`},
		{pubErr, "k:" + pubB64 + " ", `public key "k": bad base64`},
		{pubErr, "k:" + strings.TrimRight(pubB64, "="), `public key "k": bad base64`},
		{pubErr, "k:" + secB64, `public key "k": base64 decodes to 64 bytes, want 32`},
		{pubErr, "k:AAAA", `public key "k": base64 decodes to 3 bytes, want 32`},
		{secErr, "", "secret key has no colon"},
		{secErr, ":" + secB64, "secret key has an empty key name"},
		{secErr, "k:", `secret key "k": nothing after the colon`},
		{secErr, "k:" + pubB64, `secret key "k": base64 decodes to 32 bytes, want 64`},
		{secErr, "k:" + secB64[:20] + "!" + secB64[21:], `secret key "k": bad base64`},
		{secErr, mixed, `secret key "k": its last 32 bytes are not the public key`},
		{sigErr, "k" + pubB64, "signature \"k" + pubB64[:10]},
		{sigErr, ":" + pubB64, "signature has an empty key name"},
		{sigErr, "k:" + pubB64, `signature "k": base64 decodes to 32 bytes, want 64`},
		{sigErr, "k:" + nixSig[13:] + "\n", `signature "k": bad base64: line break`},
		{sigErr, "k:", `signature "k": nothing after the colon`},
	}
	for _, tt := range tests {
		err := tt.parse(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to contain %q", tt.in, err, tt.want)
		}
		// Secret key material never appears in an error.
		if err != nil && strings.Contains(err.Error(), secB64[:20]) {
			t.Errorf("%q: error reveals the secret key: %v", tt.in, err)
		}
	}
}

func pubErr(s string) error { _, err := ParsePublicKey(s); return err }
func secErr(s string) error { _, err := ParseSecretKey(s); return err }
func sigErr(s string) error { _, err := ParseSignature(s); return err }
