package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"

	"storefs/daemon"
	"storefs/goals"
	"storefs/realise"
	"storefs/store"
	"storefs/store/storepath"
)

// daemonFlags are the Nix daemon socket's settings, shared by daemon and
// mount.
type daemonFlags struct {
	DaemonSocket string   `name:"daemon-socket" placeholder:"PATH" help:"Where Nix clients connect (NIX_REMOTE=unix://PATH); default <state-dir>/daemon-socket/socket."`
	TrustedUsers []string `name:"trusted-users" sep:" " default:"root" placeholder:"USER" help:"Users (or @groups, or *) trusted as Nix's daemon trusts them: they may skip signature checks, add signatures, build input-addressed derivations with BuildDerivation and set any setting (${default})."`
	AllowedUsers []string `name:"allowed-users" sep:" " default:"*" placeholder:"USER" help:"Users (or @groups, or *) who may connect at all; trusted users always may (${default})."`
}

// socket is the Nix daemon socket's path.
func (f *daemonFlags) socket(stateDir string) string {
	if f.DaemonSocket != "" {
		return f.DaemonSocket
	}
	return filepath.Join(stateDir, "daemon-socket", "socket")
}

// server is the Nix daemon for s, its engine to be set before listen; a
// builder's log lines go to it (realise.Builder.OnLogLine).
func (f *daemonFlags) server(s *store.Store, subst substFlags, logger *log.Logger) *daemon.Server {
	return &daemon.Server{Store: s, TrustedUsers: f.TrustedUsers, AllowedUsers: f.AllowedUsers,
		TrustedSubstituters: subst.Substituters, TrustedPublicKeys: subst.TrustedPublicKeys, Logf: logger.Printf,
		ReadLog: func(drv storepath.Path, w io.Writer) error {
			if _, err := os.Stat(realise.LogPath(s, drv)); err != nil {
				return err // no log: the build never ran
			}
			return realise.ReadLog(s, drv, w)
		},
		NixLogDir: filepath.Join(s.State, "nix-log")}
}

// listen starts serving the Nix daemon protocol with srv until ctx ends
// or stop is called; stop waits for the connections to end.
func (f *daemonFlags) listen(ctx context.Context, srv *daemon.Server, logger *log.Logger) (stop func(), err error) {
	path := f.socket(srv.Store.State)
	l, err := daemon.Listen(path)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, l); err != nil {
			logger.Printf("%v", err)
		}
	}()
	logger.Printf("Nix daemon protocol on %s", path)
	return func() { l.Close(); <-done; os.Remove(path) }, nil
}

// daemonCmd serves the Nix daemon protocol without mounting.
type daemonCmd struct {
	buildFlags  `embed:""`
	daemonFlags `embed:""`
}

func (c *daemonCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return runDaemon(ctx, g, io, c)
}

func runDaemon(ctx context.Context, g *Globals, io stdio, c *daemonCmd) error {
	dir, err := g.storeDir()
	if err != nil {
		return err
	}
	logger := log.New(io.err, "storefs: ", log.LstdFlags)
	s, err := store.Open(dir, g.StateDir, store.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	status := newDaemonStatus(s)
	status.logf = logger.Printf
	sub, err := c.Subst.substituter(s, newProgress(logWriter{logger}, s))
	if err != nil {
		return err
	}
	var gs goals.Substituter
	if sub != nil {
		gs = sub
	}
	nixd := c.server(s, c.Subst, logger)
	nixd.Request = clientRequest(c.request(), c.Subst, s, logger)
	w := goals.New(s, c.configure(&realise.Builder{Store: s, OnLogLine: nixd.LogLine}), gs, c.options(nixdObserver{status, nixd}))
	defer w.Wait()
	nixd.Engine = w
	stop, err := c.listen(ctx, nixd, logger)
	if err != nil {
		return err
	}
	defer stop()
	logger.Printf("serving the store %s (contents in %s) to Nix clients", dir, s.BackingDir())
	<-ctx.Done()
	fmt.Fprintln(io.err, "storefs: stopping the daemon")
	return nil
}

// nixdObserver hands the engine's build events to the Nix daemon (for its
// clients' activities and progress) besides the mount's status.
type nixdObserver struct {
	status *daemonStatus
	nixd   *daemon.Server
}

func (o nixdObserver) Event(e goals.Event) {
	o.status.Event(e)
	switch e.Kind {
	case goals.BuildStarted:
		o.nixd.BuildStarted(e.Path)
	case goals.BuildFinished:
		o.nixd.BuildEnded(e.Path, nil)
	case goals.BuildFailed:
		o.nixd.BuildEnded(e.Path, e.Err)
	}
}

// clientRequest makes a daemon client's SetOptions the goals.Request of
// its builds: what it left at Nix's defaults (max-jobs -1, timeouts and
// cores 0, no substituters of its own) keeps the daemon's.
func clientRequest(base goals.Request, subst substFlags, s *store.Store, logger *log.Logger) func(context.Context, daemon.ClientOptions) (context.Context, error) {
	return func(ctx context.Context, o daemon.ClientOptions) (context.Context, error) {
		r := base
		r.KeepGoing, r.Fallback = o.KeepGoing, o.Fallback || base.Fallback
		if o.Cores > 0 {
			r.Cores = o.Cores
		}
		if o.MaxJobs >= 0 {
			r.NoLocalBuilds = o.MaxJobs == 0
		}
		if o.Timeout > 0 {
			r.Timeout = o.Timeout
		}
		if o.MaxSilentTime > 0 {
			r.MaxSilent = o.MaxSilentTime
		}
		r.NoSubstitutes = !o.UseSubstitutes
		if o.Substituters != nil && !slices.Equal(o.Substituters, subst.Substituters) {
			if len(o.Substituters) == 0 {
				r.NoSubstitutes = true
			} else {
				f := subst // the daemon's trusted keys and TTLs, the client's caches
				f.Substituters = o.Substituters
				sub, err := f.substituter(s, newProgress(logWriter{logger}, s))
				if err != nil {
					return ctx, err
				}
				r.Substituter = sub
			}
		}
		return goals.WithRequest(ctx, r), nil
	}
}
