package daemon

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"storefs/store/wire"
)

// ClientOptions are what a client set with SetOptions. They belong to its
// connection; the build operations hand them to the engine (Options).
type ClientOptions struct {
	KeepFailed     bool
	KeepGoing      bool
	Fallback       bool
	Verbosity      uint64 // 0 error ... 7 vomit: Log sends up to this level
	MaxJobs        int    // -1: the daemon's own
	MaxSilentTime  time.Duration
	Timeout        time.Duration // from the "timeout" override; 0: the daemon's own
	Cores          int           // 0: the daemon's own
	UseSubstitutes bool
	// Substituters and Builders are set when the client overrode them
	// (nil: the daemon's own). An untrusted client's substituters are
	// kept only if the daemon trusts them (Server.TrustedSubstituters).
	Substituters []string
	Builders     *string
	// Other overrides a trusted client sent, by name, unused for now.
	Other map[string]string
	// Ignored lists the overrides refused because the client is not
	// trusted, as the warning said.
	Ignored []string
}

func defaultOptions() ClientOptions {
	return ClientOptions{Verbosity: verbosityInfo, MaxJobs: -1, UseSubstitutes: true}
}

// Options are the options the client set, for the operations that pass
// them on.
func (c *Conn) Options() ClientOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts
}

// Peer is who the client is.
func (c *Conn) Peer() Peer { return c.peer }

const maxOverrides = 4096

// opSetOptions reads the twelve fixed settings and the overrides. The
// fixed ones apply for every client, the overrides as Nix allows them: all
// for trusted clients; timeout, repeat, connect-timeout, an empty builders
// and trusted substituters for the others.
func opSetOptions(ctx context.Context, c *Conn) error {
	var o ClientOptions
	o.MaxJobs = -1
	num := func(field string) uint64 {
		n, err := c.r.Int(field)
		if err != nil {
			panic(errAbort{err})
		}
		return n
	}
	err := catchAbort(func() {
		o.KeepFailed = num("keepFailed") != 0
		o.KeepGoing = num("keepGoing") != 0
		o.Fallback = num("tryFallback") != 0
		o.Verbosity = num("verbosity")
		o.MaxJobs = int(num("maxBuildJobs"))
		o.MaxSilentTime = time.Duration(num("maxSilentTime")) * time.Second
		num("useBuildHook")
		num("verboseBuild")
		num("logType")
		num("printBuildTrace")
		o.Cores = int(num("buildCores"))
		o.UseSubstitutes = num("useSubstitutes") != 0
	})
	if err != nil {
		return err
	}
	var overrides [][2]string
	if minor(c.client) >= 12 {
		n, err := c.r.Count("overrides", maxOverrides)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			name, err := c.r.String(fmt.Sprintf("overrides[%d] name", i), wire.MaxSmall)
			if err != nil {
				return err
			}
			value, err := c.r.String(fmt.Sprintf("overrides[%d] value", i), 1<<20)
			if err != nil {
				return err
			}
			overrides = append(overrides, [2]string{name, value})
		}
	}
	c.startWork()
	for _, kv := range overrides {
		if msg := c.srv.applyOverride(&o, c.peer.Trusted, kv[0], kv[1]); msg != "" {
			c.Log(1, msg)
		}
	}
	c.mu.Lock()
	c.opts = o
	c.mu.Unlock()
	c.stopWork()
	return nil
}

// applyOverride applies one override and returns a warning for the client,
// if any.
func (srv *Server) applyOverride(o *ClientOptions, trusted bool, name, value string) string {
	switch name {
	case "experimental-features", "show-trace", "ssh-auth-sock", "store":
		return "" // the client's own business
	case "timeout", "build-timeout":
		if n, err := strconv.ParseUint(value, 10, 32); err == nil {
			o.Timeout = time.Duration(n) * time.Second
		}
		return ""
	case "repeat", "connect-timeout":
		return ""
	case "builders":
		if trusted || value == "" {
			o.Builders = &value
			return ""
		}
	case "substituters", "extra-substituters":
		urls := strings.Fields(value)
		warning := ""
		if !trusted {
			var kept []string
			for _, u := range urls {
				if srv.trustsSubstituter(u) {
					kept = append(kept, u)
				}
			}
			if len(kept) < len(urls) {
				o.Ignored = append(o.Ignored, name)
				warning = fmt.Sprintf("warning: not using the substituters in %q that the daemon does not trust, as you are not a trusted user", name)
			}
			urls = kept
		}
		if name == "extra-substituters" {
			o.Substituters = append(o.Substituters, urls...)
		} else {
			o.Substituters = urls
		}
		return warning
	}
	if !trusted {
		o.Ignored = append(o.Ignored, name)
		return fmt.Sprintf("warning: ignoring your setting '%s': only trusted users may set it", name)
	}
	switch name {
	case "keep-going":
		o.KeepGoing = value == "true"
	case "fallback":
		o.Fallback = value == "true"
	case "max-jobs":
		if n, err := strconv.Atoi(value); err == nil {
			o.MaxJobs = n
		}
	case "cores":
		if n, err := strconv.Atoi(value); err == nil {
			o.Cores = n
		}
	case "max-silent-time":
		if n, err := strconv.ParseUint(value, 10, 32); err == nil {
			o.MaxSilentTime = time.Duration(n) * time.Second
		}
	default:
		if o.Other == nil {
			o.Other = map[string]string{}
		}
		o.Other[name] = value
	}
	return ""
}

// errAbort carries a decoding error out of a run of reads.
type errAbort struct{ err error }

func catchAbort(fn func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			a, ok := p.(errAbort)
			if !ok {
				panic(p)
			}
			err = a.err
		}
	}()
	fn()
	return nil
}

type optionsKey struct{}

// OptionsFromContext returns the options of the client whose request the
// context belongs to.
func OptionsFromContext(ctx context.Context) (ClientOptions, bool) {
	o, ok := ctx.Value(optionsKey{}).(ClientOptions)
	return o, ok
}

// withOptions is ctx carrying the client's options, applied to the
// engine's request by Server.Request when it is set.
func (c *Conn) withOptions(ctx context.Context) context.Context {
	o := c.Options()
	ctx = context.WithValue(ctx, optionsKey{}, o)
	if c.srv.Request == nil {
		return ctx
	}
	rctx, err := c.srv.Request(ctx, o)
	if err != nil {
		c.srv.logf("client %d: its options are not applied: %v", c.peer.UID, err)
		return ctx
	}
	return rctx
}
