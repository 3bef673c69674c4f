// Package storepath is Nix's store path: `<storeDir>/<hash part>-<name>`,
// its validation, and how each kind of path is computed from what it holds
// (docs/formats.md, "Store paths").
//
// A Path is the base name only (hash part and name), as in Nix; a Dir prints
// and parses full paths, and is part of every path computation, since the
// store dir is hashed into each path. Every Path value that exists has passed
// validation: construct one with ParseBase, Dir.Parse or Dir.Make*.
package storepath

import (
	"crypto/sha256"
	"fmt"
	"path"
	"sort"
	"strings"

	"storefs/store/nixbase32"
	"storefs/store/nixhash"
)

// HashLen is the length of a path's hash part in nix32 symbols (20 bytes).
const HashLen = 32

// MaxNameLen is the longest name Nix accepts.
const MaxNameLen = 211

// Path is a store path's base name, `<hash part>-<name>`.
type Path struct{ base string }

// Base returns `<hash part>-<name>`.
func (p Path) Base() string { return p.base }

// HashPart returns the 32 nix32 symbols that identify the path.
func (p Path) HashPart() string { return p.base[:HashLen] }

// Name returns the name after the hash part.
func (p Path) Name() string { return p.base[HashLen+1:] }

// IsZero reports whether p is the zero Path.
func (p Path) IsZero() bool { return p.base == "" }

// IsDerivation reports whether p names a derivation (`.drv`).
func (p Path) IsDerivation() bool { return strings.HasSuffix(p.base, ".drv") }

func (p Path) String() string { return p.base }

// ValidateName checks a store path name against Nix's rules: 1 to 211
// characters of A-Z a-z 0-9 and `+-._?=`.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("store path name is empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("store path name %.40q... is %d characters long, more than %d", name, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("store path name %q has invalid character %q at offset %d", name, name[i], i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("+-._?=", c) >= 0
}

// ValidateHashPart checks that s is 32 nix32 symbols.
func ValidateHashPart(s string) error {
	if len(s) != HashLen {
		return fmt.Errorf("store path hash part %q has %d characters, want %d", s, len(s), HashLen)
	}
	for i := 0; i < len(s); i++ {
		if !nixbase32.ValidByte(s[i]) {
			return fmt.Errorf("store path hash part %q has invalid character %q at offset %d", s, s[i], i)
		}
	}
	return nil
}

// ParseBase parses `<hash part>-<name>`.
func ParseBase(base string) (Path, error) {
	if len(base) < HashLen+2 || base[HashLen] != '-' {
		return Path{}, fmt.Errorf("store path %q is not <32-char hash>-<name>", base)
	}
	if err := ValidateHashPart(base[:HashLen]); err != nil {
		return Path{}, err
	}
	if err := ValidateName(base[HashLen+1:]); err != nil {
		return Path{}, fmt.Errorf("store path %q: %w", base, err)
	}
	return Path{base}, nil
}

// Dir is a store directory such as /store: absolute, clean, not the root.
type Dir string

// DefaultDir is storefs's store dir.
const DefaultDir Dir = "/store"

// ParseDir checks that s can be a store dir.
func ParseDir(s string) (Dir, error) {
	if !path.IsAbs(s) || path.Clean(s) != s || s == "/" {
		return "", fmt.Errorf("store dir %q must be an absolute, clean path other than /", s)
	}
	return Dir(s), nil
}

// Print returns the full path of p in d.
func (d Dir) Print(p Path) string { return string(d) + "/" + p.base }

// Parse parses a full store path in d. A path below a store path (its
// contents) is refused; see ParsePrefix for that.
func (d Dir) Parse(full string) (Path, error) {
	base, ok := strings.CutPrefix(full, string(d)+"/")
	if !ok {
		return Path{}, fmt.Errorf("path %q is not in the store %s", full, d)
	}
	if strings.IndexByte(base, '/') >= 0 {
		return Path{}, fmt.Errorf("path %q is below a store path, not a store path", full)
	}
	return ParseBase(base)
}

// ParsePrefix parses a path in d that may lie below a store path, returning
// the store path and the rest (empty, or starting with /).
func (d Dir) ParsePrefix(full string) (Path, string, error) {
	base, ok := strings.CutPrefix(full, string(d)+"/")
	if !ok {
		return Path{}, "", fmt.Errorf("path %q is not in the store %s", full, d)
	}
	rest := ""
	if i := strings.IndexByte(base, '/'); i >= 0 {
		base, rest = base[:i], base[i:]
	}
	p, err := ParseBase(base)
	return p, rest, err
}

// PrintAll prints paths in full, sorted as Nix sorts them.
func (d Dir) PrintAll(ps []Path) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = d.Print(p)
	}
	sort.Strings(out)
	return out
}

// Sort sorts paths by base name, which is Nix's order within one store dir.
func Sort(ps []Path) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].base < ps[j].base })
}

// Make computes the path of type typ (`text:...`, `source:...`,
// `output:out`) whose inner hash is inner: the nix32 of the 20-byte
// compression of sha256("<typ>:sha256:<hex inner>:<dir>:<name>").
func (d Dir) Make(typ string, inner nixhash.Hash, name string) (Path, error) {
	if err := ValidateName(name); err != nil {
		return Path{}, err
	}
	fp := typ + ":" + inner.Algo.String() + ":" + inner.Hex() + ":" + string(d) + ":" + name
	sum := sha256.Sum256([]byte(fp))
	return Path{nixbase32.EncodeToString(nixhash.Compress(sum[:], 20)) + "-" + name}, nil
}

func refsType(typ string, d Dir, refs []Path, self bool) string {
	full := d.PrintAll(refs)
	var b strings.Builder
	b.WriteString(typ)
	for _, r := range full {
		b.WriteByte(':')
		b.WriteString(r)
	}
	if self {
		b.WriteString(":self")
	}
	return b.String()
}

// MakeText computes the path of text (a .drv, or a file added with
// references) whose sha256 is textHash.
func (d Dir) MakeText(name string, textHash nixhash.Hash, refs []Path) (Path, error) {
	if textHash.Algo != nixhash.SHA256 {
		return Path{}, fmt.Errorf("text path %q: hash must be sha256, not %s", name, textHash.Algo)
	}
	return d.Make(refsType("text", d, refs, false), textHash, name)
}

// MakeFixed computes a content-addressed path of a fixed-output or added
// path: `source` for recursive sha256 (with references and self), else
// `output:out` over `fixed:out:<r:?><algo>:<hex>:`, which can have no
// references.
func (d Dir) MakeFixed(name string, recursive bool, h nixhash.Hash, refs []Path, self bool) (Path, error) {
	if recursive && h.Algo == nixhash.SHA256 {
		return d.Make(refsType("source", d, refs, self), h, name)
	}
	if len(refs) > 0 || self {
		return Path{}, fmt.Errorf("fixed-output path %q: only recursive sha256 paths may have references", name)
	}
	inner := sha256.Sum256([]byte("fixed:out:" + MethodPrefix(recursive) + h.Algo.String() + ":" + h.Hex() + ":"))
	ih, _ := nixhash.New(nixhash.SHA256, inner[:])
	return d.Make("output:out", ih, name)
}

// MethodPrefix is `r:` for recursive (NAR) hashing, else empty.
func MethodPrefix(recursive bool) string {
	if recursive {
		return "r:"
	}
	return ""
}

// OutputName returns the name of output id of a derivation named drvName.
func OutputName(drvName, id string) string {
	if id == "out" {
		return drvName
	}
	return drvName + "-" + id
}

// MakeOutput computes the path of input-addressed output id of a derivation
// named drvName whose hashDerivationModulo is hashModulo.
func (d Dir) MakeOutput(id string, hashModulo nixhash.Hash, drvName string) (Path, error) {
	return d.Make("output:"+id, hashModulo, OutputName(drvName, id))
}
