package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// statusCmd shows what the mount's daemon is doing: goals under way and
// recent failures.
type statusCmd struct {
	JSON bool `name:"json" help:"Print the status as JSON, for tools."`
}

func (c *statusCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	st := statusReply{Running: []string{}, Goals: []string{}, Failures: []failureReport{}, StateDir: g.StateDir, StoreDir: g.StoreDir}
	client := daemonClient(g.StateDir)
	if client == nil {
		// No daemon: report what the last one left.
		if data, err := os.ReadFile(filepath.Join(g.StateDir, "status.json")); err == nil {
			if err := json.Unmarshal(data, &st.Failures); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(g.StateDir, "status.json"), err)
			}
		}
		if c.JSON {
			writeJSONTo(io, st)
			return nil
		}
		fmt.Fprintf(io.out, "no storefs mount is running for %s\n", g.StateDir)
		printFailures(io, st.Failures)
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://storefs/status", nil)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if c.JSON {
		writeJSONTo(io, st)
		return nil
	}
	fmt.Fprintf(io.out, "storefs serving %s (state %s) since %s\n", st.StoreDir, st.StateDir, st.StartedAt.Format(time.RFC3339))
	fmt.Fprintf(io.out, "%d running, %d goals, %d realise requests, %d started, %d finished; %d lookups, %d realisations, %d interrupted\n",
		len(st.Running), len(st.Goals), st.Requests, st.Started, st.Finished, st.Mount.Lookups, st.Mount.Realisations, st.Mount.Interrupted)
	for _, r := range st.Running {
		fmt.Fprintf(io.out, "  running %s\n", r)
	}
	printFailures(io, st.Failures)
	return nil
}

func printFailures(io stdio, fs []failureReport) {
	for _, f := range fs {
		fmt.Fprintf(io.out, "failed %s at %s: %s\n", f.Path, f.Time.Format(time.RFC3339), f.Message)
	}
}

func writeJSONTo(io stdio, v any) {
	enc := json.NewEncoder(io.out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
