package main

import (
	"strings"
	"testing"
)

func TestVersionFlag(t *testing.T) {
	noConfig(t)
	code, out, errOut := runArgs(t, "", "--version")
	if code != 0 || !strings.HasPrefix(out, "storefs ") || len(out) <= len("storefs \n") || strings.Count(out, "\n") != 1 || errOut != "" {
		t.Errorf("storefs --version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	defer func(v string) { version = v }(version)
	version = "1.2.3"
	if code, out, _ := runArgs(t, "", "--version"); code != 0 || out != "storefs 1.2.3\n" {
		t.Errorf("storefs --version with version %q: exit %d, %q", version, code, out)
	}
}
