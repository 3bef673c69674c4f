package narinfo

import (
	"fmt"
	"strconv"
	"strings"

	"storefs/store/storepath"
)

// CacheInfo is a binary cache's `nix-cache-info` file: `Key: value` lines.
// `nix copy --to file://` writes only StoreDir; cache.nixos.org also has
// `WantMassQuery: 1` and `Priority: 40`.
type CacheInfo struct {
	StoreDir      storepath.Dir // the store dir of every path in the cache
	WantMassQuery bool          // the cache is cheap to ask about many paths
	Priority      int           // lower is preferred; only if HasPriority
	HasPriority   bool
}

// ParseCacheInfo parses a nix-cache-info file; where names it in errors.
//
// As Nix 2.8 (BinaryCacheStore::init): lines are split at the first colon,
// values trimmed of spaces, empty lines skipped, unknown keys ignored, and
// a repeated key keeps its last value. Stricter than Nix, which skips such
// lines or ignores such values: a non-empty line without a colon, a
// WantMassQuery other than 0 or 1, a Priority that is not an integer and a
// missing StoreDir are errors (a cache that does not say its store dir
// cannot be checked against ours).
func ParseCacheInfo(data []byte, where string) (*CacheInfo, error) {
	ci := &CacheInfo{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("nix-cache-info %s line %d: %.80q is not `Key: value`", where, n, line)
		}
		value = strings.TrimSpace(value)
		var err error
		switch key {
		case "StoreDir":
			ci.StoreDir, err = storepath.ParseDir(value)
		case "WantMassQuery":
			switch value {
			case "1":
				ci.WantMassQuery = true
			case "0":
				ci.WantMassQuery = false
			default:
				err = fmt.Errorf("want 0 or 1")
			}
		case "Priority":
			var p int64
			p, err = strconv.ParseInt(value, 10, 32)
			ci.Priority, ci.HasPriority = int(p), true
		}
		if err != nil {
			return nil, fmt.Errorf("nix-cache-info %s line %d: bad %s %.80q: %w", where, n, key, value, err)
		}
	}
	if ci.StoreDir == "" {
		return nil, fmt.Errorf("nix-cache-info %s: no StoreDir", where)
	}
	return ci, nil
}

// Print writes ci as Nix and cache.nixos.org do: StoreDir, then
// WantMassQuery and Priority when set.
func (ci *CacheInfo) Print() ([]byte, error) {
	if _, err := storepath.ParseDir(string(ci.StoreDir)); err != nil {
		return nil, fmt.Errorf("nix-cache-info: %w", err)
	}
	if strings.Contains(string(ci.StoreDir), "\n") {
		return nil, fmt.Errorf("nix-cache-info: store dir %q holds a line break", ci.StoreDir)
	}
	if int64(ci.Priority) != int64(int32(ci.Priority)) {
		return nil, fmt.Errorf("nix-cache-info: Priority %d does not fit in 32 bits", ci.Priority)
	}
	s := "StoreDir: " + string(ci.StoreDir) + "\n"
	if ci.WantMassQuery {
		s += "WantMassQuery: 1\n"
	}
	if ci.HasPriority {
		s += "Priority: " + strconv.Itoa(ci.Priority) + "\n"
	}
	return []byte(s), nil
}
