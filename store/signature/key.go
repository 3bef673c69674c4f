// Package signature is Nix's ed25519 signing of binary cache contents: the
// text forms of public keys, secret keys and detached signatures
// (docs/formats.md, "Binary caches"), key generation, signing and
// verification against a set of trusted keys.
//
// Text forms, all `<key name>:<standard padded base64>`:
//
//	public key  name:<32-byte ed25519 public key>
//	secret key  name:<64-byte ed25519 private key>  (seed then public key, as libsodium and crypto/ed25519 store it)
//	signature   name:<64-byte ed25519 signature>
//
// `nix-store --generate-binary-cache-key` and `nix key` write keys without a
// trailing newline; key parsers accept trailing newlines, as Nix does, since
// hand-made key files often end in one.
//
// Invariants: a PublicKey or SecretKey that exists came from a parser or from
// Generate, so its key has the right length and a secret key's public half
// matches its seed. A key name is never empty and never contains a colon.
// Errors about a secret key never quote the key material.
package signature

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode"
)

// PublicKey is a named ed25519 public key, `<name>:<base64 32 bytes>`.
type PublicKey struct {
	name string
	key  ed25519.PublicKey
}

// Name is the key's name, e.g. `cache.nixos.org-1`.
func (k PublicKey) Name() string { return k.name }

// Bytes is the 32-byte ed25519 public key.
func (k PublicKey) Bytes() []byte { return append([]byte(nil), k.key...) }

// IsZero reports whether k is the zero PublicKey.
func (k PublicKey) IsZero() bool { return k.name == "" }

// String is the text form Nix writes: `<name>:<base64>`.
func (k PublicKey) String() string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(k.key)
}

// SecretKey is a named ed25519 private key, `<name>:<base64 64 bytes>`.
// Its String method does not reveal the key; Encode does.
type SecretKey struct {
	name string
	key  ed25519.PrivateKey
}

// Name is the key's name; signatures made with the key carry it.
func (k SecretKey) Name() string { return k.name }

// IsZero reports whether k is the zero SecretKey.
func (k SecretKey) IsZero() bool { return k.name == "" }

// Encode is the text form Nix writes to a secret key file:
// `<name>:<base64 64 bytes>`, without a newline.
func (k SecretKey) Encode() string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(k.key)
}

// String names the key without revealing it, so a key that reaches a log
// or an error message stays secret.
func (k SecretKey) String() string { return fmt.Sprintf("secret key %q", k.name) }

// Public returns the public key of k, with the same name.
func (k SecretKey) Public() PublicKey {
	if k.IsZero() {
		return PublicKey{}
	}
	return PublicKey{k.name, append(ed25519.PublicKey(nil), k.key[ed25519.SeedSize:]...)}
}

// Generate makes a new key pair named name from crypto/rand. The name must
// be usable wherever Nix puts key names: not empty, no colon (the separator),
// no whitespace or control characters (nix.conf lists keys separated by
// spaces).
func Generate(name string) (SecretKey, error) {
	if err := checkNewName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generating key %q: %w", name, err)
	}
	return SecretKey{name, priv}, nil
}

func checkNewName(name string) error {
	if name == "" {
		return fmt.Errorf("key name is empty")
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("key name %q: %q is not allowed in a key name", name, r)
		}
	}
	return nil
}

// splitKey splits `<name>:<base64>` and decodes the base64 to want bytes.
// what is "public key", "secret key" or "signature"; quote says whether
// the text may appear in errors.
func splitKey(what, s string, want int, quote bool) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		if quote {
			return "", nil, fmt.Errorf("%s %.80q has no colon: want <key name>:<base64>", what, s)
		}
		return "", nil, fmt.Errorf("%s has no colon: want <key name>:<base64>", what)
	}
	if name == "" {
		return "", nil, fmt.Errorf("%s has an empty key name: want <key name>:<base64>", what)
	}
	if b64 == "" {
		return "", nil, fmt.Errorf("%s %q: nothing after the colon: want <key name>:<base64>", what, name)
	}
	// encoding/base64 skips line breaks even when strict; the text forms
	// have none.
	if i := strings.IndexAny(b64, "\r\n"); i >= 0 {
		return "", nil, fmt.Errorf("%s %q: bad base64: line break at offset %d", what, name, i)
	}
	data, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		if quote {
			return "", nil, fmt.Errorf("%s %q: bad base64 %.100q: %w", what, name, b64, err)
		}
		return "", nil, fmt.Errorf("%s %q: bad base64: %w", what, name, err)
	}
	if len(data) != want {
		return "", nil, fmt.Errorf("%s %q: base64 decodes to %d bytes, want %d", what, name, len(data), want)
	}
	return name, data, nil
}

// ParsePublicKey parses `<name>:<base64 32-byte key>`, as in
// trusted-public-keys and a public key file.
func ParsePublicKey(s string) (PublicKey, error) {
	name, key, err := splitKey("public key", strings.TrimRight(s, "\n"), ed25519.PublicKeySize, true)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{name, key}, nil
}

// ParsePublicKeys parses a whitespace-separated list of public keys, as in
// nix.conf's trusted-public-keys.
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var keys []PublicKey
	for i, f := range strings.Fields(s) {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d of the list: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ParseSecretKey parses `<name>:<base64 64-byte key>`, the contents of a
// secret key file. The key's public half must match its seed: a key whose
// halves disagree would make signatures nobody can verify.
func ParseSecretKey(s string) (SecretKey, error) {
	name, key, err := splitKey("secret key", strings.TrimRight(s, "\n"), ed25519.PrivateKeySize, false)
	if err != nil {
		return SecretKey{}, err
	}
	want := ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
	if !ed25519.PublicKey(want[ed25519.SeedSize:]).Equal(ed25519.PublicKey(key[ed25519.SeedSize:])) {
		return SecretKey{}, fmt.Errorf("secret key %q: its last 32 bytes are not the public key of its first 32", name)
	}
	return SecretKey{name, key}, nil
}
