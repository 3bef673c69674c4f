// Package nar reads and writes Nix archives (NAR), the serialisation of a
// file, directory or symlink that Nix hashes (narHash), ships in binary
// caches and restores into the store. The format is specified in
// docs/formats.md, "NAR"; in short every token is a string (u64
// little-endian length, the bytes, zero padding to a multiple of 8) and
//
//	nar   = "nix-archive-1" node
//	node  = "(" "type" ( "regular" ["executable" ""] "contents" <bytes>
//	                   | "symlink" "target" <target>
//	                   | "directory" { "entry" "(" "name" <n> "node" node ")" } ) ")"
//
// # Parts
//
//   - Dump writes the NAR of a path on disk (lstat, never following
//     symlinks), streaming, with small files read ahead concurrently.
//   - Reader is a strict streaming parser in the style of archive/tar: Next
//     returns each node in archive order, Read the current file's contents.
//     It counts and hashes exactly the archive's bytes (NarSize, NarHash).
//   - Restore and RestoreFrom unpack a NAR into a new directory tree, creating
//     every entry relative to its parent's directory file descriptor; small
//     files and the pieces of large ones are written by goroutines while
//     the archive is read on.
//   - List builds the `.ls` listing of binary caches in one pass.
//
// # Paths
//
// A Header's Path is "" for the root node and the slash-joined entry names
// below it otherwise ("a", "a/b"): never a leading "/" or "./".
//
// # Invariants
//
//   - The Reader accepts only canonical archives: the magic, the exact token
//     sequence of the grammar, zero padding, entry names sorted bytewise,
//     unique, and never "", ".", "..", nor containing "/" or NUL; non-empty
//     symlink targets without NUL; bounded name (255 bytes), target (4095
//     bytes) and file sizes (below 2^63). A non-canonical archive cannot have
//     a stable narHash, so this is stricter than Nix 2.8, which restores
//     unsorted entries and ignores bytes after the archive.
//   - Every error of the Reader and List, and every error of Restore but
//     "the target already exists", is an *Error naming the byte offset in
//     the NAR and the entry; a Reader's error sticks.
//   - The Reader never consumes a byte past the archive's end from a
//     *bufio.Reader it is given, so a caller can go on reading what follows
//     (the export stream). Other sources are wrapped in a buffer of its own.
//   - Restore never writes outside its target, never over an existing file,
//     and leaves nothing behind when it fails. Files get mode 0444 or 0555,
//     directories 0555; times are left as they are.
package nar
