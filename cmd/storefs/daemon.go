package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"storefs/fusefs"
	"storefs/goals"
	"storefs/store"
	"storefs/store/storepath"
)

// The daemon socket: HTTP with JSON bodies on a Unix socket in the state
// dir, so that `storefs realise` and `storefs status` use the mount's one
// worker (one goal per path, one set of build slots).
//
//	GET  /status            -> statusReply
//	POST /realise           realiseRequest -> []realiseResult, and the exit code in X-Exit-Code
//	POST /umount            stop serving: fail pending lookups, unmount, exit

// daemonStatus tracks what the daemon is doing, for `storefs status`, and
// keeps the recent failures in <state>/status.json as well.
type daemonStatus struct {
	s    *store.Store
	file string
	fsys *fusefs.FS           // set once before serving
	logf func(string, ...any) // logs each event; may be nil

	mu       sync.Mutex // guards below
	building map[string]time.Time
	failures []failureReport
	started  int
	done     int
	requests int // realise requests being served
}

type failureReport struct {
	Path    string    `json:"path"`
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

type statusReply struct {
	Daemon    bool            `json:"daemon"`   // false: no mount runs, and only the last one's failures are known
	Running   []string        `json:"running"`  // builds and substitutions under way, with their start
	Goals     []string        `json:"goals"`    // every goal, running or waiting
	Requests  int             `json:"requests"` // realise requests through the socket being served
	Started   int             `json:"started"`  // builds and substitutions started since the mount
	Finished  int             `json:"finished"` // builds and substitutions ended (done or failed) since the mount
	Mount     fusefs.Stats    `json:"mount"`    // what reached the store dir's root
	Failures  []failureReport `json:"failures"` // the most recent first
	StoreDir  string          `json:"storeDir"`
	StateDir  string          `json:"stateDir"`
	StartedAt time.Time       `json:"startedAt"`
}

const maxFailureReports = 50

func newDaemonStatus(s *store.Store) *daemonStatus {
	return &daemonStatus{s: s, file: filepath.Join(s.State, "status.json"), building: map[string]time.Time{}}
}

func (d *daemonStatus) Event(e goals.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := d.s.Print(e.Path)
	switch e.Kind {
	case goals.BuildStarted, goals.SubstitutionStarted:
		d.building[name] = time.Now()
		d.started++
	default:
		delete(d.building, name)
		d.done++
	}
	if d.logf != nil {
		switch e.Kind {
		case goals.BuildStarted:
			d.logf("building %s", name)
		case goals.BuildFinished:
			d.logf("built %s", name)
		case goals.SubstitutionStarted:
			d.logf("substituting %s", name)
		case goals.SubstitutionFinished:
			d.logf("substituted %s", name)
		case goals.BuildFailed, goals.SubstitutionFailed:
			first, _, _ := strings.Cut(fmt.Sprint(e.Err), "\n")
			d.logf("failed: %s", first)
		}
	}
}

// failed records a failed realisation of a lookup.
func (d *daemonStatus) failed(p storepath.Path, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures = append([]failureReport{{Path: d.s.Print(p), Time: time.Now(), Message: err.Error()}}, d.failures...)
	if len(d.failures) > maxFailureReports {
		d.failures = d.failures[:maxFailureReports]
	}
	data, _ := json.MarshalIndent(d.failures, "", "  ")
	tmp := d.file + ".tmp"
	if os.WriteFile(tmp, data, 0o644) == nil {
		os.Rename(tmp, d.file)
	}
}

func (d *daemonStatus) reply(w *goals.Worker, started time.Time) statusReply {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := statusReply{Daemon: true, Started: d.started, Finished: d.done, Requests: d.requests, Failures: append([]failureReport{}, d.failures...), Goals: w.Running(),
		StoreDir: string(d.s.Dir), StateDir: d.s.State, StartedAt: started, Running: []string{}}
	if d.fsys != nil {
		r.Mount = d.fsys.Stats()
	}
	for name, t := range d.building {
		r.Running = append(r.Running, fmt.Sprintf("%s (%s)", name, time.Since(t).Round(time.Second)))
	}
	sort.Strings(r.Running)
	sort.Strings(r.Goals)
	return r
}

// serving counts a realise request in or (n = -1) out.
func (d *daemonStatus) serving(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests += n
}

// realiseRequest asks the daemon to realise paths (as realiseCmd's args).
type realiseRequest struct {
	Paths       []string     `json:"paths"`
	RetryFailed bool         `json:"retryFailed"`
	Flags       requestFlags `json:"flags"` // this request's limits and caches
}

// serveDaemon listens on the socket; closing the listener stops it. A
// request to unmount is sent on stop.
func serveDaemon(s *store.Store, w *goals.Worker, status *daemonStatus, fsys *fusefs.FS, c *mountCmd, logger *log.Logger, stop chan<- struct{}) (net.Listener, error) {
	path := socketPath(s.State)
	os.Remove(path) // the socket of a daemon that died
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("daemon socket: %w", err)
	}
	os.Chmod(path, 0o600)
	started := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, status.reply(w, started))
	})
	mux.HandleFunc("POST /realise", func(rw http.ResponseWriter, r *http.Request) {
		var req realiseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(rw, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.RetryFailed {
			if err := s.ClearFailures(); err != nil {
				http.Error(rw, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		rc := &realiseCmd{Paths: req.Paths}
		targets, err := rc.parseTargets(r.Context(), s)
		var greq goals.Request
		if err == nil {
			greq, err = req.Flags.request(c.Subst.Substituters, func(urls []string) (goals.Substituter, error) {
				f := c.Subst // the mount's trusted keys and TTLs, the request's caches
				f.Substituters = urls
				return f.substituter(s, newProgress(logWriter{logger}, s))
			})
		}
		if err != nil {
			rw.Header().Set("X-Exit-Code", "1")
			writeJSON(rw, []realiseResult{{Error: err.Error()}})
			return
		}
		fsys.ForgetNegative()
		ctx := goals.WithRequest(r.Context(), greq)
		status.serving(1)
		results, errs := realiseTargets(ctx, w, targets, req.Flags.KeepGoing)
		status.serving(-1)
		fsys.Added(realisedPaths(s, results)...)
		code := 0
		if err := combineRealiseErrors(errs); err != nil {
			code = exitFailure
			var ec interface{ ExitCode() int }
			if errors.As(err, &ec) {
				code = ec.ExitCode()
			}
		}
		rw.Header().Set("X-Exit-Code", fmt.Sprint(code))
		writeJSON(rw, results)
	})
	mux.HandleFunc("POST /umount", func(rw http.ResponseWriter, r *http.Request) {
		select {
		case stop <- struct{}{}:
		default: // already asked
		}
		rw.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: mux, ErrorLog: logger}
	go srv.Serve(l)
	return l, nil
}

// realisedPaths are the paths the results name that were realised.
func realisedPaths(s *store.Store, results []realiseResult) []storepath.Path {
	var out []storepath.Path
	add := func(full string) {
		if p, err := s.Dir.Parse(full); err == nil {
			out = append(out, p)
		}
	}
	for _, r := range results {
		if r.Error != "" {
			continue
		}
		if r.Path != "" {
			add(r.Path)
		}
		for _, o := range r.Outputs {
			add(o)
		}
	}
	return out
}

func writeJSON(rw http.ResponseWriter, v any) {
	rw.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(rw)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// daemonClient talks to a running daemon, or is nil when none runs.
func daemonClient(stateDir string) *http.Client {
	path := socketPath(stateDir)
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil
	}
	conn.Close()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}
