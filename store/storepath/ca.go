package storepath

import (
	"fmt"
	"strings"

	"storefs/store/nixhash"
)

// ContentAddress says how a path's name was derived from its contents, as in
// the CA field of a narinfo and Nix's database: `text:sha256:<nix32>` for
// text, `fixed:[r:]<algo>:<nix32>` for fixed-output and added paths.
type ContentAddress struct {
	Text      bool // text hashing (a .drv or text with references)
	Recursive bool // NAR hashing; only when !Text
	Hash      nixhash.Hash
}

// IsZero reports whether there is no content address.
func (ca ContentAddress) IsZero() bool { return ca.Hash.IsZero() }

func (ca ContentAddress) String() string {
	switch {
	case ca.IsZero():
		return ""
	case ca.Text:
		return "text:" + ca.Hash.String()
	default:
		return "fixed:" + MethodPrefix(ca.Recursive) + ca.Hash.String()
	}
}

// ParseContentAddress parses the CA form.
func ParseContentAddress(s string) (ContentAddress, error) {
	var ca ContentAddress
	rest, ok := strings.CutPrefix(s, "text:")
	if ok {
		ca.Text = true
	} else if rest, ok = strings.CutPrefix(s, "fixed:"); ok {
		rest, ca.Recursive = strings.CutPrefix(rest, "r:")
	} else {
		return ca, fmt.Errorf("content address %q: want text:... or fixed:...", s)
	}
	h, err := nixhash.Parse(rest)
	if err != nil {
		return ca, fmt.Errorf("content address %q: %w", s, err)
	}
	if ca.Text && h.Algo != nixhash.SHA256 {
		return ca, fmt.Errorf("content address %q: text hash must be sha256", s)
	}
	ca.Hash = h
	return ca, nil
}

// MakeCA computes the path that a content address, name and references
// determine; self is whether the path refers to itself.
func (d Dir) MakeCA(name string, ca ContentAddress, refs []Path, self bool) (Path, error) {
	if ca.Text {
		if self {
			return Path{}, fmt.Errorf("text path %q cannot refer to itself", name)
		}
		return d.MakeText(name, ca.Hash, refs)
	}
	return d.MakeFixed(name, ca.Recursive, ca.Hash, refs, self)
}
