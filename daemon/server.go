package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"storefs/store"
	"storefs/store/storepath"
)

// Server accepts connections on a Unix socket and serves each in its own
// goroutine.
type Server struct {
	Store  *store.Store
	Engine Engine
	// TrustedUsers and AllowedUsers are Nix's settings: user names,
	// "@group" for a group's members, "*" for everyone. A trusted user is
	// always allowed. Defaults (nil): root trusted, everyone allowed.
	TrustedUsers []string
	AllowedUsers []string
	// TrustedSubstituters are the caches an untrusted client may name.
	TrustedSubstituters []string
	// TrustedPublicKeys check the signatures of uploads that need them;
	// nil refuses every such upload.
	TrustedPublicKeys []string
	Logf              func(format string, args ...any) // may be nil
	// ReadLog writes the build log of a derivation, uncompressed (an
	// error wrapping fs.ErrNotExist when there is none); with
	// NixLogDir it makes the logs of builds a client asked for readable by
	// `nix log` with NIX_LOG_DIR=NixLogDir (nixlog.go). Either may be nil.
	ReadLog   func(drv storepath.Path, w io.Writer) error
	NixLogDir string
	// Request, if set, makes a build operation's context ask the engine
	// for what the client set (keep-going, fallback, timeouts, cores,
	// max-jobs 0, use-substitutes, substituters); nil: the engine's
	// defaults.
	Request func(ctx context.Context, o ClientOptions) (context.Context, error)

	mu    sync.Mutex // guards conns
	conns map[net.Conn]bool
	wg    sync.WaitGroup

	logMu   sync.Mutex // guards logSubs; taken before a logSink's and a Conn's
	logSubs map[storepath.Path]map[*logSink]bool
}

func (srv *Server) logf(format string, args ...any) {
	if srv.Logf != nil {
		srv.Logf(format, args...)
	}
}

// Listen makes the socket at path (mode 0666: trust comes from the peer's
// credentials, not the file's mode), replacing a dead daemon's.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("daemon socket %s: %w", path, err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("daemon socket %s: another daemon is listening there", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("daemon socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("daemon socket %s: %w", path, err)
	}
	return l, nil
}

// Serve accepts connections until l is closed or ctx ends, then cancels
// the work of the connections still open (their builds stop unless others
// want them), closes them and waits for their goroutines.
func (srv *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		srv.closeAll()
	}()
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("daemon socket: %w", err)
		}
		srv.mu.Lock()
		if srv.conns == nil {
			srv.conns = map[net.Conn]bool{}
		}
		srv.conns[nc] = true
		srv.mu.Unlock()
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.serveConn(ctx, nc)
			srv.mu.Lock()
			delete(srv.conns, nc)
			srv.mu.Unlock()
		}()
	}
}

func (srv *Server) closeAll() {
	srv.mu.Lock()
	for nc := range srv.conns {
		nc.Close()
	}
	srv.mu.Unlock()
	srv.wg.Wait()
}

func (srv *Server) serveConn(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	peer, err := srv.identify(nc)
	if err != nil {
		// As Nix: a refused user's connection is closed at once.
		srv.logf("daemon: refusing a connection: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := srv.NewConn(peer).Serve(ctx, nc); err != nil {
		srv.logf("daemon: connection of %s (uid %d, pid %d): %v", peer.User, peer.UID, peer.PID, err)
	}
}

// NewConn makes a connection for peer, to Serve on any stream (a socket,
// a pipe in tests).
func (srv *Server) NewConn(peer Peer) *Conn {
	return &Conn{srv: srv, s: srv.Store, peer: peer}
}

// identify reads the peer's credentials and decides its trust.
func (srv *Server) identify(nc net.Conn) (Peer, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return srv.Authorize(cred.Uid, cred.Gid, cred.Pid)
}

// Authorize decides the trust of a peer from its credentials, or refuses
// it, naming the user.
func (srv *Server) Authorize(uid, gid uint32, pid int32) (Peer, error) {
	p := Peer{UID: uid, GID: gid, PID: pid, User: strconv.Itoa(int(uid))}
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		p.User = u.Username
	}
	groups := userGroups(p.User, gid)
	trusted := srv.TrustedUsers
	if trusted == nil {
		trusted = []string{"root"}
	}
	allowed := srv.AllowedUsers
	if allowed == nil {
		allowed = []string{"*"}
	}
	p.Trusted = matchUser(p.User, groups, trusted)
	if !p.Trusted && !matchUser(p.User, groups, allowed) {
		return p, fmt.Errorf("user '%s' may not connect to the daemon (allowed-users)", p.User)
	}
	return p, nil
}

// userGroups are the names of the user's groups, its primary one first.
func userGroups(name string, gid uint32) []string {
	var out []string
	if g, err := user.LookupGroupId(strconv.Itoa(int(gid))); err == nil {
		out = append(out, g.Name)
	}
	if u, err := user.Lookup(name); err == nil {
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := user.LookupGroupId(id); err == nil {
					out = append(out, g.Name)
				}
			}
		}
	}
	return out
}

// matchUser reports whether a user or one of its groups is in a list of
// names, "@group"s and "*".
func matchUser(name string, groups, list []string) bool {
	for _, e := range list {
		switch {
		case e == "*" || e == name:
			return true
		case strings.HasPrefix(e, "@"):
			for _, g := range groups {
				if g == e[1:] {
					return true
				}
			}
		}
	}
	return false
}

func (srv *Server) trustsSubstituter(u string) bool {
	for _, t := range srv.TrustedSubstituters {
		if strings.TrimSuffix(t, "/") == strings.TrimSuffix(u, "/") {
			return true
		}
	}
	return false
}
