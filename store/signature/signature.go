package signature

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
)

// Signature is a detached ed25519 signature with the name of the key that
// made it, `<key name>:<base64 64 bytes>` (a narinfo's Sig line).
type Signature struct {
	KeyName string
	Sig     []byte
}

// String is the text form Nix writes.
func (s Signature) String() string {
	return s.KeyName + ":" + base64.StdEncoding.EncodeToString(s.Sig)
}

// ParseSignature parses `<key name>:<base64 64-byte signature>`.
func ParseSignature(s string) (Signature, error) {
	name, sig, err := splitKey("signature", s, ed25519.SignatureSize, true)
	if err != nil {
		return Signature{}, err
	}
	return Signature{name, sig}, nil
}

// Sign signs message with secret. It fails only for the zero SecretKey.
func Sign(secret SecretKey, message []byte) (Signature, error) {
	if len(secret.key) != ed25519.PrivateKeySize {
		return Signature{}, fmt.Errorf("signing with %v: not a usable key", secret)
	}
	return Signature{secret.name, ed25519.Sign(secret.key, message)}, nil
}

// UntrustedKeyError is a signature by a key that is not among the trusted
// ones (which may be fine: a path is often signed by several caches).
type UntrustedKeyError struct{ KeyName string }

func (e *UntrustedKeyError) Error() string {
	return fmt.Sprintf("signed by an untrusted key %q", e.KeyName)
}

// BadSignatureError is a signature that names a trusted key but does not
// verify with it: the data or the signature was altered, or the signer used
// another key with the same name.
type BadSignatureError struct{ KeyName string }

func (e *BadSignatureError) Error() string {
	return fmt.Sprintf("bad signature by trusted key %q", e.KeyName)
}

// Verify checks sig over message against the trusted keys and returns the
// key that verified it. Keys are matched by name, as Nix does; when several
// trusted keys share the name, any of them may verify. The error is an
// *UntrustedKeyError when no trusted key has the signature's name, a
// *BadSignatureError when one has but the signature does not verify.
func Verify(message []byte, sig Signature, trusted []PublicKey) (PublicKey, error) {
	named := false
	for _, k := range trusted {
		if k.name != sig.KeyName || k.IsZero() {
			continue
		}
		named = true
		// ed25519.Verify panics on a public key of the wrong length; keys
		// from this package never have one, but a zero-length slice is a
		// zero key, skipped above.
		if len(k.key) == ed25519.PublicKeySize && ed25519.Verify(k.key, message, sig.Sig) {
			return k, nil
		}
	}
	if !named {
		return PublicKey{}, &UntrustedKeyError{sig.KeyName}
	}
	return PublicKey{}, &BadSignatureError{sig.KeyName}
}
