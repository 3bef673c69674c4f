package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"storefs/store/nar"
)

// narCmd is `storefs nar`: Nix archives, as nix-store --dump/--restore and
// nix nar ls handle them.
type narCmd struct {
	Dump    narDumpCmd    `cmd:"" help:"Write the NAR of a file, directory or symlink to stdout (nix-store --dump)."`
	Restore narRestoreCmd `cmd:"" help:"Unpack a NAR read from stdin into a new path (nix-store --restore)."`
	Ls      narLsCmd      `cmd:"" help:"List the tree in a NAR file with types and sizes (nix nar ls --recursive --long)."`
}

type narDumpCmd struct {
	Path string `arg:"" help:"The file, directory or symlink to archive (symlinks are archived, not followed)."`
}

func (c *narDumpCmd) Help() string {
	return `The output is byte for byte what 'nix-store --dump PATH' writes. Only file
types, the owner's executable bit, contents and symlink targets are recorded;
a device, fifo or socket in the tree is an error.`
}

func (c *narDumpCmd) Run(io stdio, ctx context.Context) error {
	return runNarDump(ctx, io.out, c.Path)
}

// runNarDump writes the NAR of path to out.
func runNarDump(ctx context.Context, out io.Writer, path string) error {
	return nar.Dump(ctxWriter{ctx, out}, path)
}

type narRestoreCmd struct {
	Path string `arg:"" help:"Where to unpack the archive; it must not exist."`
}

func (c *narRestoreCmd) Help() string {
	return `Unlike Nix 2.8, which restores unsorted entries and ignores bytes after the
archive, storefs refuses any archive that is not canonical, and anything
following it. Files get mode 0444 (0555 when executable), directories 0555.
On any error nothing is left behind, and the error names the byte offset in
the archive.`
}

func (c *narRestoreCmd) Run(io stdio, ctx context.Context) error {
	return runNarRestore(ctx, io.in, c.Path)
}

// runNarRestore unpacks the NAR in in to target. A fault of the archive
// says that it was read from stdin to make target; the other errors name
// target already.
func runNarRestore(ctx context.Context, in io.Reader, target string) error {
	err := nar.Restore(ctxReader{ctx, in}, target)
	var ne *nar.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("restoring the NAR on stdin into %s: %w", target, err)
	}
	return err
}

type narLsCmd struct {
	JSON bool   `name:"json" help:"Print the listing as the .ls file of a binary cache (write-nar-listing): {\"version\":1,\"root\":...}, without a trailing newline."`
	File string `arg:"" help:"The NAR file ('-' for stdin)."`
	Path string `arg:"" optional:"" default:"/" help:"The path inside the archive to list (${default})."`
}

func (c *narLsCmd) Help() string {
	return `Without --json, each line is what 'nix nar ls --recursive --long FILE PATH'
prints: the mode, the size right-aligned in 20 columns, and the path relative
to PATH ('./a/b'), followed by ' -> TARGET' for symlinks. The whole archive
is checked, and trailing bytes after it are an error.`
}

func (c *narLsCmd) Run(io stdio, ctx context.Context) error {
	in, name := io.in, "stdin"
	if c.File != "-" {
		f, err := os.Open(c.File)
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, c.File
	}
	if err := runNarLs(ctx, in, io.out, c.Path, c.JSON); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// runNarLs lists the node at path of the NAR read from in.
func runNarLs(ctx context.Context, in io.Reader, out io.Writer, path string, asJSON bool) error {
	r := nar.NewReader(ctxReader{ctx, in})
	l, err := nar.List(r)
	if err != nil {
		return err
	}
	if err := r.CheckEOF(); err != nil {
		return err
	}
	n, err := l.Lookup(path)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := (&nar.Listing{Root: n}).MarshalJSON()
		_, err = out.Write(b)
		return err
	}
	var sb strings.Builder
	if n.Type == nar.TypeDirectory {
		listEntries(&sb, n, ".")
	} else {
		listLine(&sb, n, baseNameOf(path))
	}
	_, err = io.WriteString(out, sb.String())
	return err
}

// baseNameOf is Nix's baseNameOf: the part after the last "/", "" for "/".
func baseNameOf(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return ""
	}
	return path.Base(p)
}

// listEntries prints the entries of a directory as Nix's `ls -R -l` does.
func listEntries(sb *strings.Builder, n *nar.Node, rel string) {
	for _, e := range n.Entries {
		listLine(sb, e.Node, rel+"/"+e.Name)
	}
}

func listLine(sb *strings.Builder, n *nar.Node, rel string) {
	mode, size := "dr-xr-xr-x", int64(0)
	switch n.Type {
	case nar.TypeRegular:
		mode, size = "-r--r--r--", n.Size
		if n.Executable {
			mode = "-r-xr-xr-x"
		}
	case nar.TypeSymlink:
		mode = "lrwxrwxrwx"
	}
	fmt.Fprintf(sb, "%s %20d %s", mode, size, rel)
	if n.Type == nar.TypeSymlink {
		sb.WriteString(" -> " + n.Target)
	}
	sb.WriteByte('\n')
	if n.Type == nar.TypeDirectory {
		listEntries(sb, n, rel)
	}
}

// ctxWriter and ctxReader stop a long copy once ctx is done (Ctrl-C).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
