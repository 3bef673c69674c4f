package derivation

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Derivation is a parsed derivation. See the package comment for its
// invariants.
type Derivation struct {
	// Outputs by id ("out", "dev", ...).
	Outputs map[string]Output
	// InputDrvs maps each input derivation to the sorted names of the
	// outputs used.
	InputDrvs map[storepath.Path][]string
	// InputSrcs are the input sources, sorted.
	InputSrcs []storepath.Path
	System    string
	Builder   string
	Args      []string
	Env       map[string]string
}

// Output is one output of a derivation.
type Output struct {
	// Path is the output's store path; zero until computed.
	Path storepath.Path
	// Hash is the declared content hash of a fixed-output derivation's
	// output, zero otherwise; Recursive says it hashes the output's NAR
	// (`r:` in hashAlgo) rather than the flat file.
	Hash      nixhash.Hash
	Recursive bool
}

// IsFixed reports whether the output has a declared content hash.
func (o Output) IsFixed() bool { return !o.Hash.IsZero() }

// HashAlgo is the ATerm and JSON "hashAlgo" field: `[r:]<algo>`, or empty.
func (o Output) HashAlgo() string {
	if !o.IsFixed() {
		return ""
	}
	return storepath.MethodPrefix(o.Recursive) + o.Hash.Algo.String()
}

// HashHex is the ATerm and JSON "hash" field: the hex digest, or empty.
func (o Output) HashHex() string {
	if !o.IsFixed() {
		return ""
	}
	return o.Hash.Hex()
}

// Name is the derivation's name, env["name"].
func (d *Derivation) Name() string { return d.Env["name"] }

// IsFixedOutput reports whether d is a fixed-output derivation: one whose
// outputs (after Validate: its only output, "out") declare a content hash.
func (d *Derivation) IsFixedOutput() bool {
	for _, o := range d.Outputs {
		if o.IsFixed() {
			return true
		}
	}
	return false
}

// OutputIDs returns the output ids, sorted.
func (d *Derivation) OutputIDs() []string { return sortedKeys(d.Outputs) }

// References are the paths the .drv file refers to: its input sources and
// input derivations, sorted.
func (d *Derivation) References() []storepath.Path {
	refs := make([]storepath.Path, 0, len(d.InputSrcs)+len(d.InputDrvs))
	seen := make(map[storepath.Path]bool, cap(refs))
	for _, p := range d.InputSrcs {
		if !seen[p] {
			seen[p] = true
			refs = append(refs, p)
		}
	}
	for p := range d.InputDrvs {
		if !seen[p] {
			seen[p] = true
			refs = append(refs, p)
		}
	}
	storepath.Sort(refs)
	return refs
}

// Path computes the store path of d's .drv file in dir: text named
// `<name>.drv` whose references are d.References(). Output paths must be
// filled in first, since they are part of the file.
func (d *Derivation) Path(dir storepath.Dir) (storepath.Path, error) {
	name := d.Name()
	if name == "" {
		return storepath.Path{}, fmt.Errorf("derivation has no name (env var \"name\")")
	}
	for id, o := range d.Outputs {
		if o.Path.IsZero() {
			return storepath.Path{}, fmt.Errorf("derivation %q: output %q has no path yet", name, id)
		}
	}
	sum := sha256.New()
	d.WriteATerm(sum, dir) // a sha256 does not fail
	h := nixhash.FromHasher(nixhash.SHA256, sum)
	p, err := dir.MakeText(name+".drv", h, d.References())
	if err != nil {
		return storepath.Path{}, fmt.Errorf("derivation %q: %w", name, err)
	}
	return p, nil
}

// Validate checks what a derivation must mean, beyond its form: a valid name,
// at least one output, output ids that make valid path names (and are not
// "drv"), a fixed-output derivation with exactly one output "out", input
// derivations that are .drv paths naming at least one output each, an env
// var for every output, and a system without quotes or backslashes (Nix
// writes it unescaped).
func (d *Derivation) Validate() error {
	name := d.Name()
	if _, ok := d.Env["name"]; !ok {
		return fmt.Errorf("derivation has no env var \"name\"")
	}
	if name == "" {
		return fmt.Errorf("derivation name is empty")
	}
	if err := storepath.ValidateName(name + ".drv"); err != nil {
		return fmt.Errorf("derivation name %q: %w", name, err)
	}
	if strings.ContainsAny(d.System, "\"\\") {
		return fmt.Errorf("derivation %q: system %q holds a quote or backslash, which Nix writes unescaped and cannot read back", name, d.System)
	}
	if len(d.Outputs) == 0 {
		return fmt.Errorf("derivation %q has no outputs", name)
	}
	fixed := 0
	for _, id := range d.OutputIDs() {
		o := d.Outputs[id]
		if err := validateOutputID(name, id); err != nil {
			return err
		}
		if o.IsFixed() {
			fixed++
		} else if o.Recursive {
			return fmt.Errorf("derivation %q: output %q is recursive (r:) but has no hash", name, id)
		}
		if _, ok := d.Env[id]; !ok {
			return fmt.Errorf("derivation %q: output %q has no env var %q", name, id, id)
		}
	}
	if fixed > 0 {
		if len(d.Outputs) != 1 {
			return fmt.Errorf("derivation %q: a fixed-output derivation must have one output, not %d (%v)", name, len(d.Outputs), d.OutputIDs())
		}
		if _, ok := d.Outputs["out"]; !ok {
			return fmt.Errorf("derivation %q: the output of a fixed-output derivation must be named \"out\", not %q", name, d.OutputIDs()[0])
		}
	}
	for _, p := range sortedPaths(d.InputDrvs) {
		if !p.IsDerivation() {
			return fmt.Errorf("derivation %q: input derivation %s is not a .drv path", name, p)
		}
		outs := d.InputDrvs[p]
		if len(outs) == 0 {
			return fmt.Errorf("derivation %q: input derivation %s names no outputs", name, p)
		}
		for i, o := range outs {
			if o == "" || storepath.ValidateName(o) != nil {
				return fmt.Errorf("derivation %q: input derivation %s: bad output name %q", name, p, o)
			}
			if i > 0 && outs[i-1] >= o {
				return fmt.Errorf("derivation %q: input derivation %s: output names not sorted and unique: %q after %q", name, p, o, outs[i-1])
			}
		}
	}
	for i, p := range d.InputSrcs {
		if i > 0 && d.InputSrcs[i-1].Base() >= p.Base() {
			return fmt.Errorf("derivation %q: input sources not sorted and unique: %s after %s", name, p, d.InputSrcs[i-1])
		}
	}
	return nil
}

func validateOutputID(name, id string) error {
	if id == "" {
		return fmt.Errorf("derivation %q: output id is empty", name)
	}
	if id == "drv" {
		return fmt.Errorf("derivation %q: invalid output id \"drv\"", name)
	}
	if err := storepath.ValidateName(id); err != nil {
		return fmt.Errorf("derivation %q: output id %q: %w", name, id, err)
	}
	if err := storepath.ValidateName(storepath.OutputName(name, id)); err != nil {
		return fmt.Errorf("derivation %q: output %q: %w", name, id, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedPaths(m map[storepath.Path][]string) []storepath.Path {
	ps := make([]storepath.Path, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	storepath.Sort(ps)
	return ps
}
