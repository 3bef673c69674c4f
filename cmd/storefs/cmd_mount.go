package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
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
	NegativeTTL duration `name:"negative-ttl" default:"1s" placeholder:"SECONDS" help:"How long a name nothing can realise is answered ENOENT without asking again, by the kernel and the mount: seconds, or with a unit (${default}). Remote caches' misses are remembered apart, for narinfo-cache-negative-ttl."`
	Passthrough bool     `help:"Open files with FUSE passthrough (cold reads of big files at disk speed) instead of no-open (opens without a round trip, much faster for many small files)."`
	buildFlags  `embed:""`
	daemonFlags `embed:""`
	Debug       bool `help:"Log every FUSE request."`
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
	status.logf = logger.Printf
	nixd := c.server(s, c.Subst, logger)
	nixd.Request = clientRequest(c.request(), c.Subst, s, logger)
	b := c.configure(&realise.Builder{Store: s, OnLogLine: nixd.LogLine})
	// Downloads and warnings of substituters go to the log, a line each.
	sub, err := c.Subst.substituter(s, newProgress(logWriter{logger}, s))
	if err != nil {
		return err
	}
	var gs goals.Substituter
	if sub != nil {
		gs = sub
	}
	w := goals.New(s, b, gs, c.options(nixdObserver{status, nixd}))
	defer w.Wait() // no builder outlives the mount
	fsys := fusefs.New(s, w, fusefs.Options{
		NegativeTTL: time.Duration(c.NegativeTTL),
		Passthrough: c.Passthrough,
		IsUnknown:   func(err error) bool { return errors.Is(err, goals.ErrUnknownPath) },
		OnFailure:   status.failed,
		WithCaller:  goals.WithCaller,
		Logf:        logger.Printf,
		Debug:       c.Debug,
	})
	status.fsys = fsys
	server, err := fsys.Mount(string(dir))
	if err != nil {
		return err
	}
	logger.Printf("serving %s from %s", dir, s.BackingDir())
	stop := make(chan struct{}, 1) // `storefs umount` asks through the socket
	sock, err := serveDaemon(s, w, status, fsys, c, logger, stop)
	if err != nil {
		fsys.Shutdown()
		unmount(string(dir))
		return err
	}
	defer sock.Close()
	nixd.Engine = w
	stopNixd, err := c.listen(ctx, nixd, logger)
	if err != nil {
		fsys.Shutdown()
		unmount(string(dir))
		return err
	}
	defer stopNixd()
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	gone := make(chan struct{}) // unmounted by someone else (umount, fusermount -u)
	go func() {
		for isMountedStorefs(string(dir)) {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Second):
			}
		}
		close(gone)
	}()
	external := false
	select {
	case <-done:
		external = true
	case <-gone:
		external = true
	case <-ctx.Done():
	case <-stop:
	}
	// Lookups waiting for builds fail now, so that nothing holds the mount
	// busy; the goals stop with them (no one else wants them).
	fsys.Shutdown()
	if external {
		logger.Printf("%s was unmounted", dir)
		return nil
	}
	logger.Printf("unmounting %s", dir)
	if err := unmount(string(dir)); err != nil {
		return err
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		// The kernel keeps the connection while anything still holds the
		// mount: a file open in the detached mount, or a copy of the mount
		// in a mount namespace made while it was up. Exiting closes the
		// connection; waiting could take as long as they live.
		logger.Printf("%s is unmounted here but still held elsewhere; closing the connection", dir)
	}
	return nil
}

// logWriter writes each line through the logger (never a terminal).
type logWriter struct{ l *log.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Print(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// unmount unmounts dir, lazily if something still uses the mount. It never
// waits for the server's request loops (fuse.Server.Unmount does, and they
// end only when the kernel drops the connection; see Run).
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: not mounted (any more)
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// clearStaleMount makes dir a usable mount point: it creates it, and
// detaches a storefs mount whose server has died. A dead mount still
// answers stat from the kernel's cache; statfs always asks the server, and
// fails with ENOTCONN when there is none.
func clearStaleMount(dir string, logger *log.Logger) error {
	for isMountedStorefs(dir) {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return fmt.Errorf("%s is already served by a running storefs (storefs umount stops it)", dir)
		}
		if !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) {
			return fmt.Errorf("mount point %s: %w", dir, err)
		}
		logger.Printf("clearing the stale mount at %s left by a crash", dir)
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("clearing the stale mount at %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	return nil
}

// isMountedStorefs reports whether dir is a storefs mount point.
func isMountedStorefs(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	real := dir // mountinfo shows the path with symlinks resolved
	if parent, err := filepath.EvalSymlinks(filepath.Dir(dir)); err == nil {
		real = filepath.Join(parent, filepath.Base(dir))
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || f[4] == real) {
			for i, x := range f {
				if x == "-" && i+2 < len(f) && (f[i+1] == "fuse.storefs" || f[i+2] == "storefs") {
					return true
				}
			}
		}
	}
	return false
}

// umountCmd unmounts the store dir: through the daemon when it runs (it
// fails pending lookups, stops their builds and unmounts), else directly.
type umountCmd struct{}

func (c *umountCmd) Run(ctx context.Context, g *Globals) error {
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	if client := daemonClient(g.StateDir); client != nil {
		if err := askUnmount(ctx, client, string(dir)); err == nil {
			return nil
		}
	}
	if !isMountedStorefs(string(dir)) {
		return fmt.Errorf("unmounting %s: not a storefs mount", dir)
	}
	if err := unix.Unmount(string(dir), 0); err == nil {
		return nil
	}
	if fm, err := exec.LookPath("fusermount3"); err == nil {
		if out, err := exec.Command(fm, "-u", string(dir)).CombinedOutput(); err == nil {
			return nil
		} else if len(out) > 0 && !strings.Contains(string(out), "busy") {
			return fmt.Errorf("unmounting %s: %s", dir, strings.TrimSpace(string(out)))
		}
	}
	if err := unix.Unmount(string(dir), unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// askUnmount asks the daemon to unmount and waits until the mount is gone.
func askUnmount(ctx context.Context, client *http.Client, dir string) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://storefs/umount", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("daemon: %s", resp.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for isMountedStorefs(dir) {
		if time.Now().After(deadline) {
			return fmt.Errorf("unmounting %s: the daemon did not unmount within 10 s", dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// socketPath is where the daemon listens.
func socketPath(stateDir string) string { return filepath.Join(stateDir, "daemon.sock") }
