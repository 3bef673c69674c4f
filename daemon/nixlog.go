package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"storefs/store/storepath"
	"storefs/store/wire"
)

// `nix log` reads a build log from the client's own log dir, never through
// the socket: <NIX_LOG_DIR>/drvs/<first 2 characters>/<rest of the base
// name>, uncompressed (or .bz2). So that a client with NIX_LOG_DIR set to
// Server.NixLogDir finds them, the daemon puts there, uncompressed, the
// log of each derivation a client's request built, and each log a trusted
// client sends with AddBuildLog.

// nixLogPath is where `nix log` looks for drv's log under dir.
func nixLogPath(dir string, drv storepath.Path) string {
	b := drv.Base()
	return filepath.Join(dir, "drvs", b[:2], b[2:])
}

// publishLog copies drv's build log where Nix clients read it, once.
func (srv *Server) publishLog(drv storepath.Path) {
	if srv.NixLogDir == "" || srv.ReadLog == nil {
		return
	}
	dst := nixLogPath(srv.NixLogDir, drv)
	if _, err := os.Stat(dst); err == nil {
		return
	}
	err := writeAtomic(dst, func(w io.Writer) error { return srv.ReadLog(drv, w) })
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // no log: the build never ran
		srv.logf("daemon: publishing the build log of %s: %v", srv.Store.Print(drv), err)
	}
}

// writeAtomic writes a file through a temporary one renamed into place,
// so a reader never sees half of it.
func writeAtomic(dst string, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".tmp-*")
	if err != nil {
		return err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// maxLog bounds a log sent with AddBuildLog.
const maxLog = 1 << 30

func opAddBuildLog(ctx context.Context, c *Conn) error {
	start := c.r.Offset()
	base, err := c.r.String("drv path", wire.MaxSmall)
	if err != nil {
		return err
	}
	drv, err := storepath.ParseBase(base)
	if err != nil {
		return c.r.Errorf("drv path", start, "%v", err)
	}
	c.startWork()
	err = c.upload("log", func(r io.Reader) error {
		if !c.peer.Trusted {
			return errNotTrusted("add build logs")
		}
		if c.srv.NixLogDir == "" {
			return fmt.Errorf("build log of %s: this daemon keeps no logs for Nix clients", c.dir.Print(drv))
		}
		return writeAtomic(nixLogPath(c.srv.NixLogDir, drv), func(w io.Writer) error {
			n, err := io.Copy(w, io.LimitReader(r, maxLog+1))
			if err == nil && n > maxLog {
				err = fmt.Errorf("build log of %s: larger than %d bytes", c.dir.Print(drv), maxLog)
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}
