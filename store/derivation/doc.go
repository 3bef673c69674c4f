// Package derivation reads, writes and hashes Nix derivations: the ATerm
// `.drv` file, the JSON form `nix show-derivation` (Nix 2.8) prints, and the
// paths that follow from them (docs/formats.md, "Derivations" and
// "Derivation hashing").
//
// # The value
//
// A Derivation is the parsed file: outputs by id, input derivations by path
// with the output names used, input sources, system, builder, args and env.
// Its name is env["name"], as nix-instantiate writes it. A fixed-output
// derivation has one output, "out", whose Hash is the declared content hash
// and whose Recursive flag is the `r:` prefix of the hash algorithm; the ATerm
// fields "hashAlgo" and "hash" are printed from these two, so they round trip
// byte for byte (see Canonical form).
//
// Output paths may be zero while a derivation is being made (from JSON, or by
// a caller); Hasher.Fill computes them. Everything else must be complete.
//
// # Canonical form
//
// Parse accepts exactly the bytes Nix 2.8 writes, and (*Derivation).ATerm
// prints them again: Parse(b).ATerm() == b for every b that Parse accepts.
// So Parse refuses, naming the byte offset and what it expected:
//   - outputs, inputDrvs, each output-name list, inputSrcs and env that are
//     not sorted or hold duplicates. Nix 2.8 reads such a file (it puts the
//     entries into ordered maps, the last duplicate env entry winning), but
//     writes it back differently, so the file could not have the store path
//     its contents hash to;
//   - escapes Nix does not write (`\a` for `a`; Nix reads it as `a`), and a
//     raw newline, carriage return or tab where Nix writes `\n`, `\r`, `\t`;
//   - a backslash in the fields Nix writes without escaping (output ids,
//     paths, hash algorithms and hashes, output names, system): Nix would read
//     it back as an escape;
//   - a fixed-output hash that is not lower-case hex of its algorithm's
//     length, and an unknown algorithm;
//   - outputs with no path (Nix's deferred, floating content-addressed and
//     impure outputs, all experimental in Nix 2.8): not supported;
//   - invalid store paths, input derivations that are not `.drv` paths,
//     truncated input and bytes after the closing parenthesis.
//
// Parse checks the form; Validate checks the meaning (a name, good output
// ids, one output "out" when fixed-output); Hasher.Check also computes every
// output path and compares it with the recorded one.
//
// # Hashes and paths
//
// An output's path depends on hashDerivationModulo of its derivation, which
// depends on that of every input derivation, recursively. A Hasher loads
// input derivations through a Resolver and remembers each one's hash by path,
// so a graph is hashed once per node, not once per route to it. The .drv
// path itself depends only on the derivation's own bytes and references
// (Derivation.Path).
//
// # Memory
//
// An env var may hold hundreds of megabytes (a whole file passed as a
// string). Nothing here copies a string more than once: Parse and
// ParseJSON measure each string before they copy it, so it costs one
// allocation of its length; hashing (HashModulo, OutputPaths, Check, Path)
// prints the ATerm into the hash through a 64 KiB buffer, never whole;
// WriteATerm does the same into any Writer. Only ATerm returns the whole
// file, for callers that want the bytes. A derivation of a string of size
// S therefore costs S once parsed, plus the S bytes of its input while
// Parse runs (TestDerivationAddBigEnvMemory in cmd/storefs bounds storefs
// derivation add at 3S).
package derivation
