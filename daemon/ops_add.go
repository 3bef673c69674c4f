package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"storefs/store"
	"storefs/store/nixhash"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// maxText bounds a text added with AddToStore or AddTextToStore (a .drv,
// a builtins.toFile): it is held in memory.
const maxText = 64 << 20

// upload reads a framed payload with fn and, whatever fn did, reads the
// stream to its end chunk (the client sends it all before it listens). A
// payload that cannot be read to its end ends the connection.
func (c *Conn) upload(field string, fn func(r io.Reader) error) error {
	fr := wire.NewFramedReader(c.r, field)
	err := fn(fr)
	if derr := fr.Drain(); derr != nil {
		return &fatal{derr}
	}
	if err != nil && wire.IsProtocolError(err) {
		// Malformed inside the payload, but the payload was read to its
		// end: the connection is still in step.
		return errors.New(err.Error())
	}
	return err
}

// parseMethod parses AddToStore's content-address method: text:sha256,
// fixed:<algo> or fixed:r:<algo>.
func parseMethod(s string) (text, recursive bool, algo nixhash.Algo, err error) {
	rest, ok := strings.CutPrefix(s, "text:")
	if ok {
		text = true
	} else if rest, ok = strings.CutPrefix(s, "fixed:"); ok {
		rest, recursive = strings.CutPrefix(rest, "r:")
	} else {
		return false, false, 0, fmt.Errorf("content-address method %q: want text:sha256, fixed:<algo> or fixed:r:<algo>", s)
	}
	algo, err = nixhash.ParseAlgo(rest)
	if err == nil && text && algo != nixhash.SHA256 {
		err = fmt.Errorf("content-address method %q: text needs sha256", s)
	}
	return text, recursive, algo, err
}

func opAddToStore(ctx context.Context, c *Conn) error {
	name, err := c.r.String("name", wire.MaxSmall)
	if err != nil {
		return err
	}
	method, err := c.r.String("camStr", wire.MaxSmall)
	if err != nil {
		return err
	}
	refs, err := c.r.Paths("references", c.dir)
	if err != nil {
		return err
	}
	repair, err := c.r.Bool("repair")
	if err != nil {
		return err
	}
	c.startWork() // as Nix: before the payload, so errors keep the connection
	var info *store.PathInfo
	err = c.upload("payload", func(r io.Reader) error {
		if repair && !c.peer.Trusted {
			return errNotTrusted("repair paths")
		}
		if err := storepath.ValidateName(name); err != nil {
			return fmt.Errorf("adding %q: %w", name, err)
		}
		text, recursive, algo, err := parseMethod(method)
		if err != nil {
			return fmt.Errorf("adding %q: %w", name, err)
		}
		if text {
			data, err := io.ReadAll(io.LimitReader(r, maxText+1))
			if err != nil {
				return err
			}
			if len(data) > maxText {
				return fmt.Errorf("adding %q: text larger than %d bytes", name, maxText)
			}
			info, err = c.s.AddText(ctx, name, data, refs)
			return err
		}
		if len(refs) > 0 {
			return fmt.Errorf("adding %q: a fixed-output path with references is not supported", name)
		}
		if recursive {
			info, err = c.addRecursive(ctx, name, algo, r)
			return err
		}
		tmp, err := c.s.NewTemp()
		if err != nil {
			return err
		}
		defer removeTree(tmp)
		src := filepath.Join(tmp, name)
		if err := writeFile(r, src); err != nil {
			return fmt.Errorf("adding %q: %w", name, err)
		}
		info, err = c.s.AddPath(ctx, src, false, algo)
		return err
	})
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.Path(c.dir, info.Path)
	c.writeInfo(info)
	return nil
}

func writeFile(r io.Reader, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// addRecursive adds the NAR that is the whole of r as a recursive
// fixed-output path: unpacked once, hashed on the way, registered as it is.
func (c *Conn) addRecursive(ctx context.Context, name string, algo nixhash.Algo, r io.Reader) (*store.PathInfo, error) {
	in, err := c.newIncoming(true)
	if err != nil {
		return nil, err
	}
	defer in.close()
	h := algo.New()
	br := bufio.NewReaderSize(io.TeeReader(r, h), 1<<16)
	dst := filepath.Join(in.tmp, "0")
	got, err := receiveNAR(br, dst)
	if err != nil {
		return nil, fmt.Errorf("adding %q: %w", name, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("adding %q: data after the NAR", name)
	}
	ca := storepath.ContentAddress{Recursive: true, Hash: nixhash.FromHasher(algo, h)}
	p, err := c.dir.MakeCA(name, ca, nil, false)
	if err != nil {
		return nil, fmt.Errorf("adding %q: %w", name, err)
	}
	info := store.PathInfo{Path: p, NarHash: got.narHash, NarSize: got.narSize, CA: ca}
	in.regs = append(in.regs, store.Registration{Info: info, Contents: dst})
	if err := in.register(ctx); err != nil {
		return nil, err
	}
	return c.s.Info(p)
}

func opAddTextToStore(ctx context.Context, c *Conn) error {
	name, err := c.r.String("name", wire.MaxSmall)
	if err != nil {
		return err
	}
	text, err := c.r.Bytes("text", maxText)
	if err != nil {
		return err
	}
	refs, err := c.r.Paths("references", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	if err := storepath.ValidateName(name); err != nil {
		return fmt.Errorf("adding %q: %w", name, err)
	}
	info, err := c.s.AddText(ctx, name, text, refs)
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.Path(c.dir, info.Path)
	return nil
}

// removeTree removes scratch contents, read-only directories included.
func removeTree(p string) {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	os.RemoveAll(p)
}
