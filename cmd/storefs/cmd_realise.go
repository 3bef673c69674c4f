package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	io2 "io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"storefs/goals"
	"storefs/realise"
	"storefs/store"
	"storefs/store/storepath"
)

// realiseCmd is `nix-store --realise`: make paths valid by building or
// substituting them, and print the output paths.
type realiseCmd struct {
	KeepGoing   bool `name:"keep-going" short:"k" help:"Build everything that can be built; report every failure."`
	RetryFailed bool `name:"retry-failed" help:"Forget remembered failures first."`
	JSON        bool `name:"json" help:"Print the result as JSON."`
	buildFlags  `embed:""`
	Paths       []string `arg:"" help:"A .drv path (optionally with !out,dev), an output path, or a derivation file outside the store (ATerm or JSON) to add first."`
}

// realiseTarget is one argument: a derivation and the outputs wanted, or a
// plain path.
type realiseTarget struct {
	arg     string
	drv     storepath.Path // zero for a plain path
	outputs []string       // wanted outputs; empty means all
	path    storepath.Path // a plain path
}

func (c *realiseCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	if client := daemonClient(g.StateDir); client != nil {
		return c.viaDaemon(ctx, client, io)
	}
	return g.withStore(func(s *store.Store) error {
		targets, err := c.parseTargets(ctx, s)
		if err != nil {
			return err
		}
		if c.RetryFailed {
			if err := s.ClearFailures(); err != nil {
				return err
			}
		}
		prog := newProgress(io.err, s)
		b := c.configure(&realise.Builder{Store: s, OnLogLine: prog.logLine})
		sub, err := c.Subst.substituter(s, prog)
		if err != nil {
			return err
		}
		var gs goals.Substituter
		if sub != nil {
			gs = sub
		}
		opts := c.options(prog)
		opts.KeepGoing = c.KeepGoing
		w := goals.New(s, b, gs, opts)
		// Builders of goals left behind (Ctrl-C, a failure without
		// --keep-going) are killed before the command exits.
		defer w.Wait()
		return runRealise(ctx, w, io, targets, c.KeepGoing, c.JSON)
	})
}

func (c *realiseCmd) parseTargets(ctx context.Context, s *store.Store) ([]realiseTarget, error) {
	var out []realiseTarget
	for _, arg := range c.Paths {
		t := realiseTarget{arg: arg}
		p, outs, hasBang := strings.Cut(arg, "!")
		if !strings.HasPrefix(p, string(s.Dir)+"/") {
			if hasBang {
				return nil, fmt.Errorf("argument %q: outputs can be chosen only for a store .drv path", arg)
			}
			drvs, err := readDerivationFile(p, s.Dir)
			if err != nil {
				return nil, err
			}
			for _, d := range drvs {
				info, err := s.AddDerivation(ctx, d)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", p, err)
				}
				out = append(out, realiseTarget{arg: arg, drv: info.Path})
			}
			continue
		}
		sp, err := s.Dir.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", arg, err)
		}
		switch {
		case sp.IsDerivation():
			t.drv = sp
			if hasBang {
				t.outputs = strings.Split(outs, ",")
			}
		case hasBang:
			return nil, fmt.Errorf("argument %q: %s is not a derivation", arg, s.Print(sp))
		default:
			t.path = sp
		}
		out = append(out, t)
	}
	return out, nil
}

// realiseResult is one target's outcome, as --json prints it.
type realiseResult struct {
	DrvPath string            `json:"drvPath,omitempty"`
	Path    string            `json:"path,omitempty"`
	Outputs map[string]string `json:"outputs,omitempty"`
	Error   string            `json:"error,omitempty"`
}

func runRealise(ctx context.Context, w *goals.Worker, io stdio, targets []realiseTarget, keepGoing, asJSON bool) error {
	results, errs := realiseTargets(ctx, w, targets, keepGoing)
	printRealiseResults(io, results, asJSON)
	return combineRealiseErrors(errs)
}

// realiseTargets realises every target at once; without keepGoing the
// first failure cancels the rest.
func realiseTargets(ctx context.Context, w *goals.Worker, targets []realiseTarget, keepGoing bool) ([]realiseResult, []error) {
	s := w.Store()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]realiseResult, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			if t.drv.IsZero() {
				r.Path = s.Print(t.path)
				errs[i] = w.Realise(ctx, t.path)
			} else {
				r.DrvPath = s.Print(t.drv)
				var outs map[string]storepath.Path
				outs, errs[i] = w.BuildDerivation(ctx, t.drv, t.outputs...)
				if errs[i] == nil {
					r.Outputs, errs[i] = wantedOutputs(s, t, outs)
				}
			}
			if errs[i] != nil {
				errs[i] = nameTarget(r, errs[i])
				r.Error = errs[i].Error()
				if !keepGoing {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	return results, errs
}

// nameTarget makes err name the derivation or path it is about: most
// errors of the engine do ("build of X failed"), and one that does not
// (a store or scratch-space error) gets it in front.
func nameTarget(r *realiseResult, err error) error {
	name := r.DrvPath
	if name == "" {
		name = r.Path
	}
	if strings.Contains(err.Error(), name) {
		return err
	}
	return fmt.Errorf("realising %s: %w", name, err)
}

func printRealiseResults(io stdio, results []realiseResult, asJSON bool) {
	if asJSON {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.Encode(results)
		io.out.Write(buf.Bytes())
		return
	}
	for _, r := range results {
		if r.Path != "" && r.Error == "" {
			fmt.Fprintln(io.out, r.Path)
		}
		for _, id := range sortedIDs(r.Outputs) {
			fmt.Fprintln(io.out, r.Outputs[id])
		}
	}
}

// combineRealiseErrors is nil when every target was realised, the user's
// cancellation when that is all that happened, else every failure.
func combineRealiseErrors(errs []error) error {
	var failed []error
	var cancelled error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			cancelled = err
		default:
			failed = append(failed, err)
		}
	}
	if len(failed) == 0 {
		return cancelled
	}
	return realiseError{failed}
}

func wantedOutputs(s *store.Store, t realiseTarget, outs map[string]storepath.Path) (map[string]string, error) {
	m := map[string]string{}
	if len(t.outputs) == 0 {
		for id, p := range outs {
			m[id] = s.Print(p)
		}
		return m, nil
	}
	for _, id := range t.outputs {
		p, ok := outs[id]
		if !ok {
			return nil, fmt.Errorf("derivation %s has no output %q", s.Print(t.drv), id)
		}
		m[id] = s.Print(p)
	}
	return m, nil
}

func sortedIDs(m map[string]string) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// realiseError is every failure of a realise, with Nix's combined exit
// status.
type realiseError struct{ errs []error }

func (e realiseError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return joinFailures(msgs)
}

// joinFailures is the message of one failure, or of several as the help
// describes it: "N failures:", then each on a line of its own.
func joinFailures(msgs []string) string {
	if len(msgs) == 1 {
		return msgs[0]
	}
	return fmt.Sprintf("%d failures:\n%s", len(msgs), strings.Join(msgs, "\n"))
}

func (e realiseError) ExitCode() int { return goals.ExitStatus(e.errs...) }

// logCmd is `nix-store --read-log`: the build log of a derivation or of the
// derivation that built a path.
type logCmd struct {
	Path string `arg:"" help:"A .drv path, or an output path."`
}

func (c *logCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	return g.withStore(func(s *store.Store) error {
		p, err := s.Dir.Parse(c.Path)
		if err != nil {
			return err
		}
		drv := p
		if !p.IsDerivation() {
			if info, err := s.Info(p); err == nil && !info.Deriver.IsZero() {
				drv = info.Deriver
			} else if ds, err := s.Derivers(p); err == nil && len(ds) > 0 {
				drv = ds[0].Drv
			} else {
				return fmt.Errorf("no derivation is known to produce %s", s.Print(p))
			}
		}
		return realise.ReadLog(s, drv, io.out)
	})
}

// viaDaemon asks the running mount's daemon to realise, so that the mount
// and the command line share one worker.
func (c *realiseCmd) viaDaemon(ctx context.Context, client *http.Client, io stdio) error {
	paths := make([]string, len(c.Paths))
	for i, p := range c.Paths {
		if abs, err := filepath.Abs(p); err == nil && !strings.Contains(p, "!") {
			p = abs // files outside the store are read by the daemon
		}
		paths[i] = p
	}
	body, _ := json.Marshal(realiseRequest{Paths: paths, RetryFailed: c.RetryFailed, Flags: c.requestFlags(c.KeepGoing)})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://storefs/realise", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io2.ReadAll(resp.Body)
		return fmt.Errorf("daemon: %s", strings.TrimSpace(string(msg)))
	}
	var results []realiseResult
	if err := json.NewDecoder(resp.Body).Decode(&results); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	printRealiseResults(io, results, c.JSON)
	code, _ := strconv.Atoi(resp.Header.Get("X-Exit-Code"))
	if code == 0 {
		return nil
	}
	var msgs []string
	for _, r := range results {
		if r.Error != "" {
			msgs = append(msgs, r.Error)
		}
	}
	return exitError{code: code, msg: joinFailures(msgs)}
}

// exitError is a failure with a given exit code.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
func (e exitError) ExitCode() int { return e.code }
