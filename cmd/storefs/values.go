package main

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
)

// The value types of flags and settings. Each parses text as Nix spells
// the setting, and as storefs also allows; the command line, STOREFS_*
// variables and the config file all go through the same UnmarshalText, so
// a value means the same wherever it is written. Their Decode methods only
// give kong's errors about a missing value a word for what is expected.

// duration is a length of time: a bare number is seconds, as Nix's
// timeout, max-silent-time and narinfo-cache-*-ttl are, and a Go duration
// (10m, 1h30m, 500ms) is also accepted. Negative lengths are refused.
type duration time.Duration

func (d *duration) UnmarshalText(text []byte) error {
	s := string(text)
	if isDigits(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return fmt.Errorf("%q seconds is too long", s)
		}
		*d = duration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: want seconds (as in Nix: 30) or a number with a unit (10m, 1h30m)", s)
	}
	if v < 0 {
		return fmt.Errorf("%q: a duration must not be negative", s)
	}
	*d = duration(v)
	return nil
}

func (d *duration) Decode(ctx *kong.DecodeContext) error { return decodeText(ctx, "seconds", d) }

func (d duration) String() string { return time.Duration(d).String() }

// maxJobs is Nix's max-jobs: a number of builds, or auto for one per core.
// auto is resolved here, so the engine gets a plain number; 0 is passed on
// as 0 (no local builds).
type maxJobs int

func (j *maxJobs) UnmarshalText(text []byte) error {
	s := string(text)
	if s == "auto" {
		*j = maxJobs(runtime.NumCPU())
		return nil
	}
	n, err := strconv.Atoi(s)
	if !isDigits(s) || err != nil {
		return fmt.Errorf("%q is not a number of jobs: want auto or a whole number (0: no local builds)", s)
	}
	*j = maxJobs(n)
	return nil
}

func (j *maxJobs) Decode(ctx *kong.DecodeContext) error { return decodeText(ctx, "jobs", j) }

// byteSize is a number of bytes with an optional K, M, G or T (either
// case; powers of 1024), as nix-store --gc --max-freed takes it. As in
// Nix, a negative number counts as 0. set tells 0 given from not given.
type byteSize struct {
	n   uint64
	set bool
}

func (b *byteSize) UnmarshalText(text []byte) error {
	s := string(text)
	num, shift := s, 0
	if s != "" {
		if u := s[len(s)-1]; 'a' <= u|0x20 && u|0x20 <= 'z' { // an ASCII letter
			i := strings.IndexByte("KMGT", u&^0x20)
			if i < 0 {
				return fmt.Errorf("%q: unknown unit %q (want K, M, G or T)", s, string(u))
			}
			num, shift = s[:len(s)-1], 10*(i+1)
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Errorf("%q is too large", s)
		}
		return fmt.Errorf("%q is not a whole number of bytes (with K, M, G or T if wanted)", s)
	}
	if n < 0 {
		n = 0
	}
	if uint64(n) > math.MaxUint64>>shift {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize{n: uint64(n) << shift, set: true}
	return nil
}

func (b *byteSize) Decode(ctx *kong.DecodeContext) error { return decodeText(ctx, "bytes", b) }

// decodeText parses the next value on kong's command line with u.
func decodeText(ctx *kong.DecodeContext, what string, u encoding.TextUnmarshaler) error {
	var s string
	if err := ctx.Scan.PopValueInto(what, &s); err != nil {
		return err
	}
	return u.UnmarshalText([]byte(s))
}

// parseBool is a boolean setting as Nix reads one.
func parseBool(s string) (bool, error) {
	switch s {
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean: want true or false", s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
