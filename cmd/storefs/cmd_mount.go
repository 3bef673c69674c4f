package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"storefs/fusefs"
	"storefs/goals"
	"storefs/realise"
	"storefs/store"
)

// mountCmd serves the store dir through FUSE until unmounted or signalled.
type mountCmd struct {
	MaxJobs       int           `name:"max-jobs" short:"j" default:"0" help:"Builds to run at once (0: one per core)."`
	Cores         int           `default:"0" help:"NIX_BUILD_CORES given to builders (0: all cores)."`
	MaxSilentTime time.Duration `name:"max-silent-time" help:"Kill a builder that prints nothing for this long (0: never)."`
	Timeout       time.Duration `help:"Kill a builder that runs longer than this (0: never)."`
	FailureTTL    time.Duration `name:"failure-ttl" default:"10m" help:"How long a failed realisation is remembered."`
	NegativeTTL   time.Duration `name:"negative-ttl" default:"1s" help:"How long a name nothing can realise is answered ENOENT without asking again."`
	Debug         bool          `help:"Log every FUSE request."`
}

func (c *mountCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	logger := log.New(io.err, "storefs: ", log.LstdFlags)
	if err := clearStaleMount(string(dir), logger); err != nil {
		return err
	}
	s, err := store.Open(dir, g.StateDir, store.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	status := newDaemonStatus(s)
	b := &realise.Builder{Store: s}
	w := goals.New(s, b, nil, goals.Options{
		MaxJobs: c.MaxJobs, Cores: c.Cores, FailureTTL: c.FailureTTL,
		Timeout: c.Timeout, MaxSilent: c.MaxSilentTime, Observer: status,
	})
	fsys := fusefs.New(s, w, fusefs.Options{
		NegativeTTL: c.NegativeTTL,
		IsUnknown:   func(err error) bool { return errors.Is(err, goals.ErrUnknownPath) },
		OnFailure:   status.failed,
		Logf:        logger.Printf,
		Debug:       c.Debug,
	})
	server, err := fsys.Mount(string(dir))
	if err != nil {
		return err
	}
	logger.Printf("serving %s from %s", dir, s.BackingDir())
	sock, err := serveDaemon(s, w, status, fsys, logger)
	if err != nil {
		server.Unmount()
		return err
	}
	defer sock.Close()
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done:
		logger.Printf("%s was unmounted", dir)
	case <-ctx.Done():
		logger.Printf("unmounting %s", dir)
		if err := unmount(string(dir), server.Unmount); err != nil {
			return err
		}
		<-done
	}
	return nil
}

// unmount unmounts the server, lazily if something still uses the mount.
func unmount(dir string, plain func() error) error {
	if err := plain(); err == nil {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// clearStaleMount makes dir a usable mount point: it creates it, and
// detaches a FUSE mount whose server has died (stat fails with ENOTCONN).
func clearStaleMount(dir string, logger *log.Logger) error {
	var st unix.Stat_t
	err := unix.Stat(dir, &st)
	switch {
	case err == nil:
		if isMountedStorefs(dir) {
			return fmt.Errorf("%s is already served by a running storefs (storefs umount stops it)", dir)
		}
		return nil
	case errors.Is(err, unix.ENOENT):
		return os.MkdirAll(dir, 0o755)
	case errors.Is(err, unix.ENOTCONN):
		logger.Printf("clearing the stale mount at %s left by a crash", dir)
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("clearing the stale mount at %s: %w", dir, err)
		}
		return nil
	default:
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
}

// isMountedStorefs reports whether dir is a live storefs mount.
func isMountedStorefs(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			for i, x := range f {
				if x == "-" && i+2 < len(f) && (f[i+1] == "fuse.storefs" || f[i+2] == "storefs") {
					return true
				}
			}
		}
	}
	return false
}

// umountCmd unmounts the store dir.
type umountCmd struct{}

func (c *umountCmd) Run(g *Globals) error {
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	if err := unix.Unmount(string(dir), 0); err == nil {
		return nil
	}
	if fm, err := exec.LookPath("fusermount3"); err == nil {
		if out, err := exec.Command(fm, "-u", string(dir)).CombinedOutput(); err == nil {
			return nil
		} else if len(out) > 0 {
			return fmt.Errorf("unmounting %s: %s", dir, strings.TrimSpace(string(out)))
		}
	}
	if err := unix.Unmount(string(dir), unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// socketPath is where the daemon listens.
func socketPath(stateDir string) string { return filepath.Join(stateDir, "daemon.sock") }
