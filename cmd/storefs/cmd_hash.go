package main

import (
	"context"
	"fmt"
	"io"

	"storefs/store/nar"
	"storefs/store/nixhash"
)

// hashCmd is `storefs hash`: hashes as Nix computes them.
type hashCmd struct {
	Path hashPathCmd `cmd:"" help:"Print the sha256 of the NAR of each path (nix-hash --type sha256 PATH)."`
}

type hashPathCmd struct {
	Format string   `name:"format" enum:"nix32,hex,sri,base64" default:"nix32" help:"How to print the hash: nix32 (sha256:<nix32>, as Nix's database and narinfo hold it), hex (sha256:<hex>), base64 (sha256:<base64>) or sri (sha256-<base64>)."`
	Paths  []string `arg:"" name:"path" help:"Files, directories or symlinks to hash (symlinks are hashed, not followed)."`
}

func (c *hashPathCmd) Help() string {
	return `Prints one line per path: the narHash Nix would record for it, e.g.
sha256:1l1wmw098rzi4wivbj81xmd9gds4196bm20ia04z4pdprxx3xd76. nix-hash --type
sha256 --base32 PATH prints the same digest without the 'sha256:' prefix.`
}

func (c *hashPathCmd) Run(io stdio, ctx context.Context) error {
	return runHashPath(ctx, io.out, c.Paths, nixhash.Format(c.Format))
}

// runHashPath prints the NAR hash of each path in format f.
func runHashPath(ctx context.Context, out io.Writer, paths []string, f nixhash.Format) error {
	for _, p := range paths {
		h, err := narHash(ctx, p)
		if err != nil {
			return err
		}
		s, err := h.Format(f)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(out, s); err != nil {
			return err
		}
	}
	return nil
}

// narHash is the sha256 of the NAR of path, streamed.
func narHash(ctx context.Context, path string) (nixhash.Hash, error) {
	w := nixhash.SHA256.New()
	if err := nar.Dump(ctxWriter{ctx, w}, path); err != nil {
		return nixhash.Hash{}, err
	}
	return nixhash.FromHasher(nixhash.SHA256, w), nil
}
