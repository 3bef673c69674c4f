package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
	if cli.Realise.MaxJobs != 3 || cli.Realise.FailureTTL != time.Minute || cli.StateDir != "/from/file" {
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
	if cli := parseArgs("mount"); cli.Mount.MaxJobs != 5 || cli.Mount.FailureTTL != time.Minute {
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
