package store

// The database (bbolt, `<state dir>/db`). Keys are store path base names
// (`<hash part>-<name>`), so a prefix seek on a hash part finds its path.
// A pair key joins its two halves with 0x00, which no base name holds.
//
//	db
//	├── meta
//	│   └── "version" -> "1"                          schemaVersion
//	├── paths                                       one entry per valid path
//	│   └── <base> -> JSON of pathRecord
//	│       {"narHash": "sha256:<nix32>", "narSize": <bytes>,
//	│        "references": [<base>...] (sorted, may hold <base> itself),
//	│        "deriver": <drv base>, "sigs": ["<key name>:<base64>"...],
//	│        "ca": "text:sha256:<nix32>" | "fixed:[r:]<algo>:<nix32>",
//	│        "registrationTime": <unix seconds>}      empty fields left out
//	├── referrers                                   reverse references
//	│   └── <referenced base> 0x00 <referrer base> -> ""
//	├── drvOutputs                                  derivation -> its outputs
//	│   └── <drv base> 0x00 <output id> -> <output base>
//	├── outputDrvs                                  output -> the derivations that produce it
//	│   └── <output base> 0x00 <drv base> -> <output id>
//	├── failures                                    failures.go; made on first use
//	│   └── <drv base> -> JSON of Failure
//	│       {"time": <RFC 3339>, "message": <why, with the log's last lines>,
//	│        "status": <exit status: 100, 101, 102...>}
//	└── narinfoCache                                narinfocache.go; made on first use
//	    └── <cache URL> 0x00 <hash part> | "nix-cache-info" | "forgotten" -> JSON of narInfoCacheRecord
//	        {"time": <unix seconds>, "found": <false: the cache answered 404>,
//	         "data": <the narinfo or nix-cache-info text, when found>}
//
// Every write happens in one transaction, so the indexes always agree with
// `paths`; Check verifies that they do. failures and narinfoCache are
// memory, not state: deleting either loses nothing a path's validity
// depends on.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

var (
	bucketMeta       = []byte("meta")
	bucketPaths      = []byte("paths")
	bucketReferrers  = []byte("referrers")
	bucketDrvOutputs = []byte("drvOutputs")
	bucketOutputDrvs = []byte("outputDrvs")

	keyVersion = []byte("version")
)

const schemaVersion = "1"

var allBuckets = [][]byte{bucketMeta, bucketPaths, bucketReferrers, bucketDrvOutputs, bucketOutputDrvs}

// pathRecord is how a PathInfo is kept in `paths`.
type pathRecord struct {
	NarHash      string   `json:"narHash"`
	NarSize      uint64   `json:"narSize"`
	References   []string `json:"references,omitempty"`
	Deriver      string   `json:"deriver,omitempty"`
	Sigs         []string `json:"sigs,omitempty"`
	CA           string   `json:"ca,omitempty"`
	Registration int64    `json:"registrationTime"`
}

func encodeRecord(info *PathInfo) ([]byte, error) {
	r := pathRecord{
		NarHash:      info.NarHash.String(),
		NarSize:      info.NarSize,
		Sigs:         info.Sigs,
		CA:           info.CA.String(),
		Registration: info.RegistrationTime.Unix(),
	}
	for _, ref := range info.References {
		r.References = append(r.References, ref.Base())
	}
	if !info.Deriver.IsZero() {
		r.Deriver = info.Deriver.Base()
	}
	return json.Marshal(r)
}

func decodeRecord(p storepath.Path, data []byte) (*PathInfo, error) {
	var r pathRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("database record of %s: %w", p, err)
	}
	info := &PathInfo{Path: p, NarSize: r.NarSize, Sigs: r.Sigs, RegistrationTime: time.Unix(r.Registration, 0)}
	var err error
	if info.NarHash, err = nixhash.Parse(r.NarHash); err != nil {
		return nil, fmt.Errorf("database record of %s: narHash: %w", p, err)
	}
	for _, s := range r.References {
		ref, err := storepath.ParseBase(s)
		if err != nil {
			return nil, fmt.Errorf("database record of %s: reference: %w", p, err)
		}
		info.References = append(info.References, ref)
	}
	if r.Deriver != "" {
		if info.Deriver, err = storepath.ParseBase(r.Deriver); err != nil {
			return nil, fmt.Errorf("database record of %s: deriver: %w", p, err)
		}
	}
	if r.CA != "" {
		if info.CA, err = storepath.ParseContentAddress(r.CA); err != nil {
			return nil, fmt.Errorf("database record of %s: %w", p, err)
		}
	}
	return info, nil
}

func pairKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

func splitPairKey(k []byte) (string, string, bool) {
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return "", "", false
	}
	return string(k[:i]), string(k[i+1:]), true
}

// forEachPair calls fn for every key `<first> 0x00 <second>` of b.
func forEachPair(b *bolt.Bucket, first string, fn func(second string, v []byte) error) error {
	prefix := pairKey(first, "")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(string(k[len(prefix):]), v); err != nil {
			return err
		}
	}
	return nil
}

// initDB makes the buckets of a new database. A database that has them
// already is only read, so that commands that only read never wait for
// the write lock nor sync anything.
func (s *Store) initDB() error {
	if _, err := os.Stat(filepath.Join(s.State, dbFile)); err == nil {
		ready := false
		err := s.view(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil {
					return nil
				}
			}
			ready = true
			return checkVersion(tx.Bucket(bucketMeta).Get(keyVersion))
		})
		if err != nil || ready {
			return err
		}
	}
	return s.update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("creating bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyVersion); v != nil {
			return checkVersion(v)
		}
		return meta.Put(keyVersion, []byte(schemaVersion))
	})
}

func checkVersion(v []byte) error {
	if string(v) != schemaVersion {
		return fmt.Errorf("database schema version %q, this storefs reads %q", v, schemaVersion)
	}
	return nil
}
