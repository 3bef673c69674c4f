package nar

import (
	"errors"
	"fmt"
)

// Error is every error of reading, restoring or listing a NAR: what went
// wrong (Err), where in the archive (Offset, in bytes from its start) and in
// which entry (Path, "" for the root node).
type Error struct {
	Offset int64
	Path   string
	Err    error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("nar offset %d (root): %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("nar offset %d (entry %q): %v", e.Offset, e.Path, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinels a caller may test with errors.Is.
var (
	// ErrTruncated: the archive ended before its closing ")".
	ErrTruncated = errors.New("archive truncated")
	// ErrTrailingData: bytes follow the archive where none may.
	ErrTrailingData = errors.New("trailing data after the archive")
)
