package derivation

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

// Resolver loads the derivation stored at a .drv path (from the store's
// database, or from files). The Hasher trusts it to return the derivation
// whose path is p; it does Validate what it gets.
type Resolver func(p storepath.Path) (*Derivation, error)

// Hasher computes hashDerivationModulo and output paths in one store dir
// (docs/formats.md, "Derivation hashing"). It loads input derivations
// with its Resolver and remembers each one's hash by path, so every
// derivation of a graph is loaded and hashed once however many routes lead
// to it. It is safe for concurrent use; two goroutines may both hash a
// derivation not yet remembered, to the same result.
type Hasher struct {
	dir     storepath.Dir
	resolve Resolver

	mu    sync.Mutex // guards known
	known map[storepath.Path]knownDrv
}

// knownDrv is what hashing an input derivation needs to remember of it.
type knownDrv struct {
	hash    nixhash.Hash // hashDerivationModulo, outputs not masked
	outputs []string     // its output ids
}

// NewHasher returns a Hasher for dir that loads input derivations with
// resolve.
func NewHasher(dir storepath.Dir, resolve Resolver) *Hasher {
	return &Hasher{dir: dir, resolve: resolve, known: map[storepath.Path]knownDrv{}}
}

// Dir is the store dir the Hasher computes paths in.
func (h *Hasher) Dir() storepath.Dir { return h.dir }

// HashPath returns hashDerivationModulo of the derivation at p, loading it
// (and its inputs) unless already known.
func (h *Hasher) HashPath(p storepath.Path) (nixhash.Hash, error) {
	k, err := h.hashPath(p, map[storepath.Path]bool{})
	return k.hash, err
}

// HashModulo computes hashDerivationModulo of d. With mask, d's output paths
// and the env vars named after its outputs count as empty, as when its own
// output paths are computed; input derivations are never masked.
//
// A fixed-output derivation's hash is sha256 of
// `fixed:out:<[r:]algo>:<hex>:<output path>`. Any other's is sha256 of its
// ATerm with each input derivation's path replaced by the hex of that
// input's hash, the list re-sorted by it, and inputs that hash alike merged
// into one entry with the union of their output names, as Nix 2.8 does.
func (h *Hasher) HashModulo(d *Derivation, mask bool) (nixhash.Hash, error) {
	return h.hashModulo(d, mask, map[storepath.Path]bool{})
}

func (h *Hasher) hashPath(p storepath.Path, loading map[storepath.Path]bool) (knownDrv, error) {
	h.mu.Lock()
	k, ok := h.known[p]
	h.mu.Unlock()
	if ok {
		return k, nil
	}
	if loading[p] {
		return knownDrv{}, fmt.Errorf("input derivation %s depends on itself", h.dir.Print(p))
	}
	if h.resolve == nil {
		return knownDrv{}, fmt.Errorf("input derivation %s: no way to load input derivations", h.dir.Print(p))
	}
	d, err := h.resolve(p)
	if err != nil {
		return knownDrv{}, fmt.Errorf("loading input derivation %s: %w", h.dir.Print(p), err)
	}
	if err := d.Validate(); err != nil {
		return knownDrv{}, fmt.Errorf("input derivation %s: %w", h.dir.Print(p), err)
	}
	loading[p] = true
	hash, err := h.hashModulo(d, false, loading)
	delete(loading, p)
	if err != nil {
		return knownDrv{}, fmt.Errorf("input derivation %s: %w", h.dir.Print(p), err)
	}
	k = knownDrv{hash, d.OutputIDs()}
	h.mu.Lock()
	h.known[p] = k
	h.mu.Unlock()
	return k, nil
}

func (h *Hasher) hashModulo(d *Derivation, mask bool, loading map[storepath.Path]bool) (nixhash.Hash, error) {
	if d.IsFixedOutput() {
		o, ok := d.Outputs["out"]
		if !ok || len(d.Outputs) != 1 {
			return nixhash.Hash{}, fmt.Errorf("derivation %q: a fixed-output derivation must have exactly one output, \"out\" (has %v)", d.Name(), d.OutputIDs())
		}
		p, err := d.FixedOutputPath(h.dir)
		if err != nil {
			return nixhash.Hash{}, err
		}
		return sha(("fixed:out:" + o.HashAlgo() + ":" + o.HashHex() + ":" + h.dir.Print(p))), nil
	}
	byHash := map[string]map[string]bool{}
	for _, ip := range sortedPaths(d.InputDrvs) {
		k, err := h.hashPath(ip, loading)
		if err != nil {
			return nixhash.Hash{}, err
		}
		key := k.hash.Hex()
		if byHash[key] == nil {
			byHash[key] = map[string]bool{}
		}
		for _, o := range d.InputDrvs[ip] {
			if i := sort.SearchStrings(k.outputs, o); i == len(k.outputs) || k.outputs[i] != o {
				return nixhash.Hash{}, fmt.Errorf("derivation %q: input derivation %s has no output %q", d.Name(), h.dir.Print(ip), o)
			}
			byHash[key][o] = true
		}
	}
	inputs := make([]inputEntry, 0, len(byHash))
	for _, key := range sortedKeys(byHash) {
		inputs = append(inputs, inputEntry{key, sortedKeys(byHash[key])})
	}
	// Streamed into the hash, never held whole: a sha256 does not fail.
	sum := sha256.New()
	a := atermWriter{w: sum}
	d.writeATerm(&a, h.dir, mask, inputs)
	a.flush()
	return nixhash.FromHasher(nixhash.SHA256, sum), nil
}

func sha(s string) nixhash.Hash {
	sum := sha256.Sum256([]byte(s))
	hash, _ := nixhash.New(nixhash.SHA256, sum[:])
	return hash
}

// FixedOutputPath computes the path of a fixed-output derivation's output
// "out" from its declared hash, as Nix does whatever path the file records.
func (d *Derivation) FixedOutputPath(dir storepath.Dir) (storepath.Path, error) {
	o, ok := d.Outputs["out"]
	if !ok || !o.IsFixed() {
		return storepath.Path{}, fmt.Errorf("derivation %q is not fixed-output", d.Name())
	}
	p, err := dir.MakeFixed(d.Name(), o.Recursive, o.Hash, nil, false)
	if err != nil {
		return storepath.Path{}, fmt.Errorf("derivation %q: output \"out\": %w", d.Name(), err)
	}
	return p, nil
}

// OutputPaths computes the path of every output of d: from the declared hash
// when fixed-output, else from d's hashDerivationModulo with its outputs
// masked. The recorded paths play no part, and neither does whether d has
// the env vars named after its outputs yet.
func (h *Hasher) OutputPaths(d *Derivation) (map[string]storepath.Path, error) {
	name := d.Name()
	for _, id := range d.OutputIDs() {
		if err := validateOutputID(name, id); err != nil {
			return nil, err
		}
	}
	if d.IsFixedOutput() {
		if len(d.Outputs) != 1 {
			return nil, fmt.Errorf("derivation %q: a fixed-output derivation must have one output, not %d (%v)", name, len(d.Outputs), d.OutputIDs())
		}
		p, err := d.FixedOutputPath(h.dir)
		if err != nil {
			return nil, err
		}
		return map[string]storepath.Path{"out": p}, nil
	}
	// Nix hashes with an env var for every output, so make one where it is
	// missing: the paths are then those Fill records.
	for id := range d.Outputs {
		if _, ok := d.Env[id]; !ok {
			c := *d
			c.Env = make(map[string]string, len(d.Env)+len(d.Outputs))
			for k, v := range d.Env {
				c.Env[k] = v
			}
			for id := range d.Outputs {
				c.Env[id] = c.Env[id]
			}
			d = &c
			break
		}
	}
	hm, err := h.HashModulo(d, true)
	if err != nil {
		return nil, err
	}
	paths := make(map[string]storepath.Path, len(d.Outputs))
	for id := range d.Outputs {
		p, err := h.dir.MakeOutput(id, hm, name)
		if err != nil {
			return nil, fmt.Errorf("derivation %q: output %q: %w", name, id, err)
		}
		paths[id] = p
	}
	return paths, nil
}

// Fill computes d's output paths and records them in its outputs and in the
// env vars named after them, as nix-instantiate does, then validates d.
func (h *Hasher) Fill(d *Derivation) error {
	paths, err := h.OutputPaths(d)
	if err != nil {
		return err
	}
	if d.Env == nil {
		d.Env = map[string]string{}
	}
	for id, p := range paths {
		o := d.Outputs[id]
		o.Path = p
		d.Outputs[id] = o
		d.Env[id] = h.dir.Print(p)
	}
	return d.Validate()
}

// OutputMismatchError is a derivation whose recorded output path, or env var
// named after an output, is not the path computed for that output.
type OutputMismatchError struct {
	Derivation string // its name
	Output     string // output id
	EnvVar     bool   // the env var, not the outputs list, is wrong
	Recorded   string // what the derivation says ("" if missing)
	Computed   string // the full computed path
}

func (e *OutputMismatchError) Error() string {
	if e.EnvVar {
		return fmt.Sprintf("derivation %q: env var %q is %q, but output %q has path %s", e.Derivation, e.Output, e.Recorded, e.Output, e.Computed)
	}
	return fmt.Sprintf("derivation %q: output %q has path %q, but its computed path is %s", e.Derivation, e.Output, e.Recorded, e.Computed)
}

// Check validates d and computes its output paths, refusing it unless each
// output's recorded path and its env var equal the computed path.
func (h *Hasher) Check(d *Derivation) error {
	if err := d.Validate(); err != nil {
		return err
	}
	paths, err := h.OutputPaths(d)
	if err != nil {
		return err
	}
	for _, id := range d.OutputIDs() {
		want := h.dir.Print(paths[id])
		if rec := d.Outputs[id].Path; rec != paths[id] {
			got := ""
			if !rec.IsZero() {
				got = h.dir.Print(rec)
			}
			return &OutputMismatchError{Derivation: d.Name(), Output: id, Recorded: got, Computed: want}
		}
		if v := d.Env[id]; v != want {
			return &OutputMismatchError{Derivation: d.Name(), Output: id, EnvVar: true, Recorded: v, Computed: want}
		}
	}
	return nil
}
