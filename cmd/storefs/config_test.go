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

func TestSettingsPrecedence(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "storefs.conf")
	os.WriteFile(conf, []byte("# comment\nmax-jobs = 3\nfailure-ttl = 60 # seconds\nstate-dir = /from/file\nstore-dir = /s\nsubstituters = file:///a  https://b\n"), 0o644)
	t.Setenv("STOREFS_CONFIG", conf)
	parseArgs := func(args ...string) *CLI {
		var cli CLI
		var out, errb bytes.Buffer
		if k, code := parse(context.Background(), &cli, args, stdio{nil, &out, &errb}); k == nil {
			t.Fatalf("parse %v: exit %d: %s", args, code, errb.String())
		}
		return &cli
	}
	cli := parseArgs("realise", "/s/x.drv")
	if cli.Realise.MaxJobs != 3 || cli.Realise.FailureTTL != duration(time.Minute) || cli.StateDir != "/from/file" {
		t.Errorf("from the file: max-jobs %d, failure-ttl %v, state-dir %s", cli.Realise.MaxJobs, cli.Realise.FailureTTL, cli.StateDir)
	}
	if got := cli.Realise.Subst.Substituters; len(got) != 2 || got[0] != "file:///a" || got[1] != "https://b" {
		t.Errorf("substituters from the file: %q", got)
	}
	t.Setenv("STOREFS_MAX_JOBS", "5")
	if cli := parseArgs("realise", "/s/x.drv"); cli.Realise.MaxJobs != 5 {
		t.Errorf("environment over file: max-jobs %d, want 5", cli.Realise.MaxJobs)
	}
	if cli := parseArgs("realise", "--max-jobs", "7", "/s/x.drv"); cli.Realise.MaxJobs != 7 {
		t.Errorf("flag over environment: max-jobs %d, want 7", cli.Realise.MaxJobs)
	}
	if cli := parseArgs("mount"); cli.Mount.MaxJobs != 5 || cli.Mount.FailureTTL != duration(time.Minute) {
		t.Errorf("mount: max-jobs %d failure-ttl %v", cli.Mount.MaxJobs, cli.Mount.FailureTTL)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"config", "show"}, stdio{nil, &out, &errb}); code != 0 {
		t.Fatalf("config show: %d %s", code, errb.String())
	}
	for _, want := range []string{"max-jobs = 5 # environment STOREFS_MAX_JOBS", "failure-ttl = 60 # " + conf + " line 3", "negative-ttl = 1s # default"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config show lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct{ content, want string }{
		{"max-jobs 3\n", `line 1: "max-jobs 3" is not ` + "`key = value`"},
		{"\n\nbogus = 1\n", `line 3: unknown setting "bogus"`},
	} {
		conf := filepath.Join(t.TempDir(), "storefs.conf")
		os.WriteFile(conf, []byte(c.content), 0o644)
		t.Setenv("STOREFS_CONFIG", conf)
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"config", "show"}, stdio{nil, &out, &errb})
		if code != 1 || !strings.Contains(errb.String(), c.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q, want one line with %q", c.content, code, errb.String(), c.want)
		}
	}
}

// Values in the file and the environment are spelled as in nix.conf.
func TestSettingsAsNixSpellsThem(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "storefs.conf")
	os.WriteFile(conf, []byte("timeout = 3\nmax-silent-time = 2\nmax-jobs = auto\nfallback = true\n"+
		"narinfo-cache-negative-ttl = 0\nnarinfo-cache-positive-ttl = 60\nnegative-ttl = 2\n"), 0o644)
	t.Setenv("STOREFS_CONFIG", conf)
	cli := parseCLI(t, "realise", "x")
	opts := cli.Realise.options(nil)
	if opts.Timeout != 3*time.Second || opts.MaxSilent != 2*time.Second || opts.MaxJobs != runtime.NumCPU() || !opts.Fallback {
		t.Errorf("from the file: timeout %v, max-silent-time %v, max-jobs %d, fallback %v", opts.Timeout, opts.MaxSilent, opts.MaxJobs, opts.Fallback)
	}
	sopts, err := cli.Realise.Subst.options()
	if err != nil || sopts.NegativeTTL != -1 || sopts.PositiveTTL != time.Minute {
		t.Errorf("narinfo TTLs from the file: %v %v %v", sopts.NegativeTTL, sopts.PositiveTTL, err)
	}
	if sopts.HTTP.ConnectTimeout != 5*time.Second || sopts.HTTP.QueryTimeout != 5*time.Second || sopts.RetryDown != time.Minute || sopts.QueryRate != 20 {
		t.Errorf("cache defaults: connect %v, query %v, retry %v, rate %v", sopts.HTTP.ConnectTimeout, sopts.HTTP.QueryTimeout, sopts.RetryDown, sopts.QueryRate)
	}
	t.Setenv("STOREFS_CONNECT_TIMEOUT", "2")
	t.Setenv("STOREFS_NARINFO_QUERY_TIMEOUT", "1500ms")
	t.Setenv("STOREFS_SUBSTITUTER_RETRY_AFTER", "7")
	t.Setenv("STOREFS_NARINFO_QUERY_RATE", "0")
	sopts, err = parseCLI(t, "mount").Mount.Subst.options()
	if err != nil || sopts.HTTP.ConnectTimeout != 2*time.Second || sopts.HTTP.QueryTimeout != 1500*time.Millisecond || sopts.RetryDown != 7*time.Second || sopts.QueryRate >= 0 {
		t.Errorf("cache settings from the environment: connect %v, query %v, retry %v, rate %v (want no bound), %v",
			sopts.HTTP.ConnectTimeout, sopts.HTTP.QueryTimeout, sopts.RetryDown, sopts.QueryRate, err)
	}
	if got := parseCLI(t, "mount").Mount.NegativeTTL; got != duration(2*time.Second) {
		t.Errorf("negative-ttl from the file: %v", got)
	}
	t.Setenv("STOREFS_TIMEOUT", "10m")
	t.Setenv("STOREFS_MAX_JOBS", "0")
	t.Setenv("STOREFS_FALLBACK", "no")
	opts = parseCLI(t, "mount").Mount.options(nil)
	if opts.Timeout != 10*time.Minute || opts.MaxJobs != 0 || opts.Fallback {
		t.Errorf("from the environment: timeout %v, max-jobs %d, fallback %v", opts.Timeout, opts.MaxJobs, opts.Fallback)
	}
}

// A bad value from the file names the file, the line and the setting; one
// from the environment names the variable; neither names a flag.
func TestSettingValueErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"max-jobs = lots", "max-jobs: \"lots\" is not a number of jobs"},
		{"timeout = 3x", "timeout: \"3x\" is not a duration"},
		{"narinfo-cache-negative-ttl = -1", "narinfo-cache-negative-ttl: "},
		{"fallback = maybe", "fallback: \"maybe\" is not a boolean"},
		{"cores = all", "cores: \"all\" is not a whole number"},
		{"store-dir = relative", "store-dir: "},
		{"substituters = file:///ok ftp://bad", "substituters: binary cache \"ftp://bad\""},
		{"trusted-public-keys = nocolon", "trusted-public-keys: "},
		{"connect-timeout = -5", "connect-timeout: "},
		{"narinfo-query-timeout = soon", "narinfo-query-timeout: \"soon\" is not a duration"},
		{"substituter-retry-after = 1d", "substituter-retry-after: \"1d\" is not a duration"},
		{"narinfo-query-rate = fast", "narinfo-query-rate: \"fast\" is not a whole number"},
		{"max-build-log-size = 1Q", "max-build-log-size: \"1Q\": unknown unit"},
		{"keep-build-log-size = 12x4", "keep-build-log-size: \"12x4\" is not a whole number of bytes"},
	} {
		conf := filepath.Join(t.TempDir(), "storefs.conf")
		os.WriteFile(conf, []byte("# settings\n\n"+c.line+"\n"), 0o644)
		t.Setenv("STOREFS_CONFIG", conf)
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"realise", "x"}, stdio{nil, &out, &errb})
		msg := errb.String()
		if code != exitFailure || !strings.HasPrefix(msg, "storefs: "+conf+" line 3: "+c.want) ||
			strings.Count(msg, "\n") != 1 || strings.Contains(msg, "--") {
			t.Errorf("%q: exit %d, %q; want one line starting %q", c.line, code, msg, conf+" line 3: "+c.want)
		}
	}
	noConfig(t)
	for _, c := range []struct{ name, value, want string }{
		{"STOREFS_MAX_JOBS", "lots", "\"lots\" is not a number of jobs"},
		{"STOREFS_MAX_SILENT_TIME", "soon", "\"soon\" is not a duration"},
		{"STOREFS_FALLBACK", "maybe", "\"maybe\" is not a boolean"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"realise", "x"}, stdio{nil, &out, &errb})
			msg := errb.String()
			want := "storefs: environment variable " + c.name + ": " + c.want
			if code != exitFailure || !strings.HasPrefix(msg, want) || strings.Count(msg, "\n") != 1 || strings.Contains(msg, "--") {
				t.Errorf("exit %d, %q; want one line starting %q", code, msg, want)
			}
		})
	}
}

// The README's table and the help list every setting, with its default.
func TestSettingsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	help := description()
	for _, s := range settings {
		def := s.def
		if def == "" {
			def = "none"
		}
		if row := "| `" + s.name + "` | `" + def + "` |"; !strings.Contains(string(readme), row) && !strings.Contains(string(readme), "| `"+s.name+"` | "+def+" |") {
			t.Errorf("README.md has no row %q", row)
		}
		if !strings.Contains(help, s.name) {
			t.Errorf("the help does not list %s", s.name)
		}
	}
}
