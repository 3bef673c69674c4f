package narinfo

import (
	"fmt"
	"strconv"
	"strings"

	"storefs/store/signature"
	"storefs/store/storepath"
)

// Print writes ni as Nix 2.8 writes a narinfo (NarInfo::to_string): the
// keys in this order, `References: ` with a trailing space when there are
// none, FileHash and FileSize when known, Deriver, System and CA only when
// present, one Sig line per signature, sorted. It refuses what Parse would
// refuse (a missing required field) and any value holding a line break,
// which would forge other lines; so whatever Print writes, Parse reads back
// as ni.
func (ni *NarInfo) Print(storeDir storepath.Dir) ([]byte, error) {
	if err := ni.check(); err != nil {
		return nil, err
	}
	compression := ni.Compression
	if compression == "" {
		compression = "bzip2" // what Parse makes of a missing one, as Nix
	}
	var b strings.Builder
	line := func(key, value string) {
		b.WriteString(key)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteByte('\n')
	}
	line("StorePath", storeDir.Print(ni.StorePath))
	line("URL", ni.URL)
	line("Compression", compression)
	if !ni.FileHash.IsZero() {
		line("FileHash", ni.FileHash.String())
	}
	if !ni.FileHash.IsZero() || ni.FileSize != 0 {
		line("FileSize", strconv.FormatUint(ni.FileSize, 10))
	}
	line("NarHash", ni.NarHash.String())
	line("NarSize", strconv.FormatUint(ni.NarSize, 10))
	refs := sortedRefs(ni.References)
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Base()
	}
	line("References", strings.Join(names, " "))
	if !ni.Deriver.IsZero() {
		line("Deriver", ni.Deriver.Base())
	}
	if ni.System != "" {
		line("System", ni.System)
	}
	for _, s := range sortedSigs(ni.Sigs) {
		line("Sig", s.String())
	}
	if !ni.CA.IsZero() {
		line("CA", ni.CA.String())
	}
	return []byte(b.String()), nil
}

// check refuses a NarInfo that Print cannot write faithfully.
func (ni *NarInfo) check() error {
	switch {
	case ni.StorePath.IsZero():
		return fmt.Errorf("narinfo: no StorePath")
	case ni.URL == "":
		return fmt.Errorf("narinfo for %s: no URL", ni.StorePath)
	case ni.NarHash.IsZero():
		return fmt.Errorf("narinfo for %s: no NarHash", ni.StorePath)
	case ni.NarSize == 0:
		return fmt.Errorf("narinfo for %s: NarSize is 0", ni.StorePath)
	}
	for _, f := range []struct{ key, value string }{
		{"URL", ni.URL}, {"Compression", ni.Compression}, {"System", ni.System},
	} {
		if strings.ContainsAny(f.value, "\n") {
			return fmt.Errorf("narinfo for %s: %s %.80q holds a line break", ni.StorePath, f.key, f.value)
		}
	}
	for _, s := range ni.Sigs {
		if _, err := signature.ParseSignature(s.String()); err != nil {
			return fmt.Errorf("narinfo for %s: %w", ni.StorePath, err)
		}
	}
	return nil
}

// Fingerprint is the text Nix signs for a path (ValidPathInfo::fingerprint):
// `1;<store path>;<NarHash as algo:nix32>;<NarSize>;<references, full
// paths, sorted, comma-separated>`. Nix 2.8 prints the NarHash with its own
// algorithm, which is sha256 in every narinfo Nix writes; it refuses to
// fingerprint a path of unknown size (NarSize 0), and so does this.
func (ni *NarInfo) Fingerprint(storeDir storepath.Dir) (string, error) {
	if ni.StorePath.IsZero() || ni.NarHash.IsZero() || ni.NarSize == 0 {
		return "", fmt.Errorf("cannot fingerprint %q: StorePath, NarHash and NarSize are required", ni.StorePath)
	}
	return "1;" + storeDir.Print(ni.StorePath) + ";" + ni.NarHash.String() + ";" +
		strconv.FormatUint(ni.NarSize, 10) + ";" +
		strings.Join(storeDir.PrintAll(sortedRefs(ni.References)), ","), nil
}

// Sign adds secret's signature of the fingerprint to Sigs, as `nix store
// sign` and `nix copy --to '...?secret-key=...'` do. A signature already
// there is not added twice.
func (ni *NarInfo) Sign(storeDir storepath.Dir, secret signature.SecretKey) error {
	fp, err := ni.Fingerprint(storeDir)
	if err != nil {
		return err
	}
	sig, err := signature.Sign(secret, []byte(fp))
	if err != nil {
		return err
	}
	ni.Sigs = sortedSigs(append(ni.Sigs, sig))
	return nil
}

// SignatureError says why none of a narinfo's signatures was accepted. Errs
// holds one error per signature, each a *signature.UntrustedKeyError or a
// *signature.BadSignatureError, so errors.As finds them.
type SignatureError struct {
	StorePath string // full path
	Errs      []error
}

func (e *SignatureError) Error() string {
	if len(e.Errs) == 0 {
		return fmt.Sprintf("%s has no signatures", e.StorePath)
	}
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("%s has no valid signature by a trusted key: %s", e.StorePath, strings.Join(msgs, "; "))
}

func (e *SignatureError) Unwrap() []error { return e.Errs }

// KeyNames are the names of the keys the path was signed with.
func (e *SignatureError) KeyNames() []string {
	var names []string
	for _, err := range e.Errs {
		switch err := err.(type) {
		case *signature.UntrustedKeyError:
			names = append(names, err.KeyName)
		case *signature.BadSignatureError:
			names = append(names, err.KeyName)
		}
	}
	return names
}

// Verify returns the first trusted key that made a good signature of the
// fingerprint, or a *SignatureError. Unlike Nix, it does not accept an
// unsigned content-addressed path: see IsContentAddressed for that policy.
func (ni *NarInfo) Verify(storeDir storepath.Dir, trusted []signature.PublicKey) (signature.PublicKey, error) {
	fp, err := ni.Fingerprint(storeDir)
	if err != nil {
		return signature.PublicKey{}, err
	}
	serr := &SignatureError{StorePath: storeDir.Print(ni.StorePath)}
	for _, s := range ni.Sigs {
		k, err := signature.Verify([]byte(fp), s, trusted)
		if err == nil {
			return k, nil
		}
		serr.Errs = append(serr.Errs, err)
	}
	return signature.PublicKey{}, serr
}

// IsContentAddressed reports whether the CA field, the name and the
// references determine exactly StorePath (ValidPathInfo::isContentAddressed).
// Nix trusts such a path without a signature: its contents are checked
// against its name when the NAR hash is.
func (ni *NarInfo) IsContentAddressed(storeDir storepath.Dir) bool {
	if ni.CA.IsZero() || ni.StorePath.IsZero() {
		return false
	}
	var refs []storepath.Path
	self := false
	for _, r := range sortedRefs(ni.References) {
		if r == ni.StorePath {
			self = true
		} else {
			refs = append(refs, r)
		}
	}
	p, err := storeDir.MakeCA(ni.StorePath.Name(), ni.CA, refs, self)
	return err == nil && p == ni.StorePath
}
