package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// noConfig points STOREFS_CONFIG at a file that does not exist, so that
// the machine's /etc/storefs/storefs.conf plays no part.
func noConfig(t *testing.T) {
	t.Helper()
	t.Setenv("STOREFS_CONFIG", filepath.Join(t.TempDir(), "none.conf"))
}

// parseCLI parses args as the command line does, failing the test on an
// error.
func parseCLI(t *testing.T, args ...string) *CLI {
	t.Helper()
	var cli CLI
	var out, errb bytes.Buffer
	if k, code := parse(context.Background(), &cli, args, stdio{nil, &out, &errb}); k == nil {
		t.Fatalf("parse %v: exit %d: %s", args, code, errb.String())
	}
	return &cli
}

// parseFails parses args and returns the exit code and stderr of the
// refusal.
func parseFails(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var cli CLI
	var out, errb bytes.Buffer
	k, code := parse(context.Background(), &cli, args, stdio{nil, &out, &errb})
	if k != nil {
		t.Fatalf("parse %v: accepted", args)
	}
	return code, errb.String()
}

// Durations are seconds as Nix spells them, or Go durations.
func TestDurationFlags(t *testing.T) {
	noConfig(t)
	for _, c := range []struct {
		args []string
		want func(*CLI) duration
		d    time.Duration
	}{
		{[]string{"realise", "--timeout", "3", "x"}, func(c *CLI) duration { return c.Realise.Timeout }, 3 * time.Second},
		{[]string{"realise", "--timeout", "10m", "x"}, func(c *CLI) duration { return c.Realise.Timeout }, 10 * time.Minute},
		{[]string{"realise", "--max-silent-time", "2", "x"}, func(c *CLI) duration { return c.Realise.MaxSilentTime }, 2 * time.Second},
		{[]string{"realise", "--max-silent-time=1h30m", "x"}, func(c *CLI) duration { return c.Realise.MaxSilentTime }, 90 * time.Minute},
		{[]string{"realise", "--failure-ttl", "60", "x"}, func(c *CLI) duration { return c.Realise.FailureTTL }, time.Minute},
		{[]string{"realise", "x"}, func(c *CLI) duration { return c.Realise.FailureTTL }, 10 * time.Minute},
		{[]string{"realise", "x"}, func(c *CLI) duration { return c.Realise.Timeout }, 0},
		{[]string{"mount", "--negative-ttl", "5"}, func(c *CLI) duration { return c.Mount.NegativeTTL }, 5 * time.Second},
		{[]string{"mount"}, func(c *CLI) duration { return c.Mount.NegativeTTL }, time.Second},
		{[]string{"realise", "--narinfo-cache-negative-ttl", "30", "x"}, func(c *CLI) duration { return c.Realise.Subst.NegativeTTL }, 30 * time.Second},
		{[]string{"realise", "x"}, func(c *CLI) duration { return c.Realise.Subst.NegativeTTL }, time.Hour},
		{[]string{"realise", "x"}, func(c *CLI) duration { return c.Realise.Subst.PositiveTTL }, 30 * 24 * time.Hour},
		{[]string{"copy", "--from", "file:///c", "--narinfo-cache-positive-ttl", "7", "/store/x"}, func(c *CLI) duration { return c.Copy.Subst.PositiveTTL }, 7 * time.Second},
	} {
		if got := c.want(parseCLI(t, c.args...)); time.Duration(got) != c.d {
			t.Errorf("%v: %v, want %v", c.args, time.Duration(got), c.d)
		}
	}
	for _, args := range [][]string{
		{"realise", "--timeout", "3x", "x"},
		{"realise", "--timeout=-3s", "x"},
		{"realise", "--max-silent-time", "1.5", "x"},
		{"mount", "--narinfo-cache-positive-ttl", "1d2h"},
	} {
		code, msg := parseFails(t, args...)
		flag, _, _ := strings.Cut(strings.TrimPrefix(args[1], "--"), "=")
		if code != exitUsage || !strings.HasPrefix(msg, "storefs: --"+flag+": ") || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want exit 2 and one line naming --%s", args, code, msg, flag)
		}
	}
}

func TestMaxJobsFlag(t *testing.T) {
	noConfig(t)
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"realise", "-j", "4", "x"}, 4},
		{[]string{"realise", "--max-jobs", "auto", "x"}, runtime.NumCPU()},
		{[]string{"realise", "x"}, runtime.NumCPU()}, // the default is auto
		{[]string{"realise", "--max-jobs", "0", "x"}, 0},
		{[]string{"mount", "--max-jobs=0"}, 0},
	} {
		cli := parseCLI(t, c.args...)
		f := &cli.Realise.buildFlags
		if c.args[0] == "mount" {
			f = &cli.Mount.buildFlags
		}
		// What the engine gets: auto resolved, 0 passed on as 0.
		if got := f.options(nil).MaxJobs; got != c.want {
			t.Errorf("%v: goals.Options.MaxJobs %d, want %d", c.args, got, c.want)
		}
	}
	for _, v := range []string{"x", "-1", "+2", "AUTO", ""} {
		code, msg := parseFails(t, "realise", "--max-jobs="+v, "x")
		if code != exitUsage || !strings.HasPrefix(msg, "storefs: --max-jobs: ") {
			t.Errorf("--max-jobs=%q: exit %d, %q", v, code, msg)
		}
	}
}

func TestFallbackFlag(t *testing.T) {
	noConfig(t)
	if parseCLI(t, "realise", "x").Realise.options(nil).Fallback {
		t.Error("realise: fallback on by default")
	}
	if !parseCLI(t, "realise", "--fallback", "x").Realise.options(nil).Fallback {
		t.Error("realise --fallback: goals.Options.Fallback not set")
	}
	if !parseCLI(t, "mount", "--fallback").Mount.options(nil).Fallback {
		t.Error("mount --fallback: goals.Options.Fallback not set")
	}
}

// The narinfo TTLs reach the Substituter; 0 means not remembered, which
// SubstituterOptions spells as a negative TTL.
func TestNarinfoTTLOptions(t *testing.T) {
	noConfig(t)
	for _, c := range []struct {
		args     []string
		neg, pos time.Duration
	}{
		{nil, time.Hour, 30 * 24 * time.Hour},
		{[]string{"--narinfo-cache-negative-ttl", "10", "--narinfo-cache-positive-ttl", "20m"}, 10 * time.Second, 20 * time.Minute},
		{[]string{"--narinfo-cache-negative-ttl", "0", "--narinfo-cache-positive-ttl", "0"}, -1, -1},
	} {
		cli := parseCLI(t, append(append([]string{"realise"}, c.args...), "x")...)
		opts, err := cli.Realise.Subst.options()
		if err != nil {
			t.Fatal(err)
		}
		if opts.NegativeTTL != c.neg || opts.PositiveTTL != c.pos {
			t.Errorf("%v: NegativeTTL %v PositiveTTL %v, want %v %v", c.args, opts.NegativeTTL, opts.PositiveTTL, c.neg, c.pos)
		}
	}
}

func TestMaxFreedFlag(t *testing.T) {
	noConfig(t)
	for _, c := range []struct {
		v    string
		want uint64
	}{
		{"100", 100}, {"1K", 1 << 10}, {"1k", 1 << 10}, {"2M", 2 << 20}, {"1G", 1 << 30}, {"1g", 1 << 30},
		{"3T", 3 << 40}, {"0", 0}, {"-5", 0}, {"-5G", 0},
	} {
		got := parseCLI(t, "gc", "--max-freed="+c.v).GC.MaxFreed
		if !got.set || got.n != c.want {
			t.Errorf("--max-freed %s: %+v, want %d", c.v, got, c.want)
		}
	}
	if got := parseCLI(t, "gc").GC.MaxFreed; got.set {
		t.Errorf("gc without --max-freed: %+v, want not set", got)
	}
	// What Nix 2.8's nix-store --gc --max-freed refuses.
	for _, v := range []string{"1x", "1GB", "1.5G", "", " 1G", "10P", "G", "99999999999T"} {
		code, msg := parseFails(t, "gc", "--max-freed="+v)
		if code != exitUsage || !strings.HasPrefix(msg, "storefs: --max-freed: ") {
			t.Errorf("--max-freed=%q: exit %d, %q", v, code, msg)
		}
	}
}

// gc --max-freed 0 frees nothing, as in Nix; a limit stops early.
func TestGCMaxFreed(t *testing.T) {
	noConfig(t)
	dir := t.TempDir()
	globals := []string{"--store-dir", "/store", "--state-dir", filepath.Join(dir, "state")}
	src := filepath.Join(dir, "a")
	os.WriteFile(src, []byte("a\n"), 0o644)
	code, out, errOut := runArgs(t, "", append(globals, "add", src)...)
	if code != 0 {
		t.Fatalf("add: %d %s", code, errOut)
	}
	p := strings.TrimSpace(out)
	valid := func() bool {
		code, _, _ := runArgs(t, "", append(globals, "query", "--hash", p)...)
		return code == 0
	}
	for _, v := range []string{"0", "-1"} {
		code, out, errOut = runArgs(t, "", append(globals, "gc", "--max-freed="+v)...)
		if code != 0 || out != "" || !valid() {
			t.Errorf("gc --max-freed %s: exit %d, deleted %q (%s)", v, code, out, errOut)
		}
	}
	code, out, errOut = runArgs(t, "", append(globals, "gc", "--max-freed", "1K")...)
	if code != 0 || strings.TrimSpace(out) != p || valid() {
		t.Errorf("gc --max-freed 1K: exit %d, deleted %q (%s)", code, out, errOut)
	}
}
