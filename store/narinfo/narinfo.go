// Package narinfo reads and writes a binary cache's metadata files
// (docs/formats.md, "Binary caches"): `<hash part>.narinfo`, which describes
// one store path and where its compressed NAR lies, and `nix-cache-info`,
// which describes the cache. It also makes and checks a narinfo's
// signatures, over the fingerprint Nix signs.
//
// Parse follows Nix 2.8's src/libstore/nar-info.cc, and Print writes exactly
// the bytes Nix writes for the same information: `nix copy --to file://...`
// output parses and prints back byte for byte (testdata/). Where Nix 2.8's
// reader is loose about the shape of a file, storefs is stricter and says
// where the file is wrong:
//   - every line is `Key: value` and ends in a newline (Nix skips the byte
//     after the colon, whatever it is, and merges a line without a colon
//     into the next one);
//   - a Sig must parse as a signature (Nix keeps any string and fails only
//     when checking it).
//
// As in Nix: unknown keys are ignored; a repeated single-valued key keeps
// its last value, except References and CA, which are errors when given
// twice with a non-empty value; Sig lines accumulate; a missing Compression
// means bzip2; `Deriver: unknown-deriver` means no deriver; StorePath, URL,
// NarHash and a positive NarSize are required.
//
// Invariant: a NarInfo returned by Parse has its References and Sigs
// sorted (references by base name, signatures by text) and without
// duplicates, as Nix's sets keep them, so Parse(Print(x)) equals x.
package narinfo

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"storefs/store/nixhash"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// NarInfo is the contents of a `.narinfo` file.
type NarInfo struct {
	StorePath   storepath.Path
	URL         string // where the (compressed) NAR is, relative to the cache
	Compression string // none, xz, zstd, bzip2, br, ...: not checked here
	FileHash    nixhash.Hash
	FileSize    uint64 // 0 with a zero FileHash means not given
	NarHash     nixhash.Hash
	NarSize     uint64
	References  []storepath.Path
	Deriver     storepath.Path // zero when absent
	System      string         // Nix 2.8 reads and writes it; nix copy leaves it out
	Sigs        []signature.Signature
	CA          storepath.ContentAddress
}

// Parse parses a narinfo whose store paths lie in storeDir. where names the
// file in errors (a URL or a path).
func Parse(data []byte, storeDir storepath.Dir, where string) (*NarInfo, error) {
	ni := &NarInfo{}
	var haveNarSize bool
	rest := string(data)
	for n := 1; rest != ""; n++ {
		eol := strings.IndexByte(rest, '\n')
		if eol < 0 {
			return nil, fmt.Errorf("narinfo %s line %d: no newline at the end of the line", where, n)
		}
		line := rest[:eol]
		rest = rest[eol+1:]
		colon := strings.IndexByte(line, ':')
		if colon <= 0 || colon+1 >= len(line) || line[colon+1] != ' ' {
			return nil, fmt.Errorf("narinfo %s line %d: %.80q is not `Key: value`", where, n, line)
		}
		key, value := line[:colon], line[colon+2:]
		bad := func(err error) error {
			return fmt.Errorf("narinfo %s line %d: bad %s %.200q: %w", where, n, key, value, err)
		}
		var err error
		switch key {
		case "StorePath":
			ni.StorePath, err = storeDir.Parse(value)
		case "URL":
			ni.URL = value
		case "Compression":
			ni.Compression = value
		case "FileHash":
			ni.FileHash, err = nixhash.Parse(value)
		case "FileSize":
			ni.FileSize, err = strconv.ParseUint(value, 10, 64)
		case "NarHash":
			ni.NarHash, err = nixhash.Parse(value)
		case "NarSize":
			ni.NarSize, err = strconv.ParseUint(value, 10, 64)
			haveNarSize = true
		case "References":
			if len(ni.References) > 0 {
				return nil, fmt.Errorf("narinfo %s line %d: a second References line", where, n)
			}
			ni.References, err = parseRefs(value)
		case "Deriver":
			if value != "unknown-deriver" {
				ni.Deriver, err = storepath.ParseBase(value)
			}
		case "System":
			ni.System = value
		case "Sig":
			var sig signature.Signature
			sig, err = signature.ParseSignature(value)
			ni.Sigs = append(ni.Sigs, sig)
		case "CA":
			if value == "" {
				break // Nix reads an empty CA as none
			}
			if !ni.CA.IsZero() {
				return nil, fmt.Errorf("narinfo %s line %d: a second CA line", where, n)
			}
			ni.CA, err = storepath.ParseContentAddress(value)
		}
		if err != nil {
			return nil, bad(err)
		}
	}
	switch {
	case ni.StorePath.IsZero():
		return nil, fmt.Errorf("narinfo %s: no StorePath", where)
	case ni.URL == "":
		return nil, fmt.Errorf("narinfo %s: no URL (or an empty one)", where)
	case ni.NarHash.IsZero():
		return nil, fmt.Errorf("narinfo %s: no NarHash", where)
	case !haveNarSize:
		return nil, fmt.Errorf("narinfo %s: no NarSize", where)
	case ni.NarSize == 0:
		return nil, fmt.Errorf("narinfo %s: NarSize is 0", where)
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	ni.References = sortedRefs(ni.References)
	ni.Sigs = sortedSigs(ni.Sigs)
	return ni, nil
}

// parseRefs parses space-separated base names; runs of spaces are one
// separator, as in Nix's tokenizeString.
func parseRefs(value string) ([]storepath.Path, error) {
	var refs []storepath.Path
	for _, f := range strings.Split(value, " ") {
		if f == "" {
			continue
		}
		p, err := storepath.ParseBase(f)
		if err != nil {
			return nil, err
		}
		refs = append(refs, p)
	}
	return refs, nil
}

// sortedRefs returns refs sorted by base name without duplicates, in a new
// slice (nil when empty).
func sortedRefs(refs []storepath.Path) []storepath.Path {
	if len(refs) == 0 {
		return nil
	}
	out := append([]storepath.Path(nil), refs...)
	storepath.Sort(out)
	j := 0
	for i, p := range out {
		if i == 0 || p != out[j-1] {
			out[j] = p
			j++
		}
	}
	return out[:j]
}

// sortedSigs returns sigs sorted by text without duplicates, in a new slice
// (nil when empty): the order of Nix's std::set<std::string>.
func sortedSigs(sigs []signature.Signature) []signature.Signature {
	if len(sigs) == 0 {
		return nil
	}
	type entry struct {
		text string
		sig  signature.Signature
	}
	es := make([]entry, len(sigs))
	for i, s := range sigs {
		es[i] = entry{s.String(), s}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].text < es[j].text })
	out := make([]signature.Signature, 0, len(es))
	for i, e := range es {
		if i == 0 || e.text != es[i-1].text {
			out = append(out, e.sig)
		}
	}
	return out
}
