package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMain keeps the machine's settings (STOREFS_<NAME> variables and
// /etc/storefs/storefs.conf, which a user or a demo may have set) from the
// commands the tests run in this process: each test sees the defaults and
// what it sets itself.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "storefs-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	conf := filepath.Join(dir, "storefs.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "writing an empty config file for the tests:", err)
		os.Exit(1)
	}
	os.Setenv("STOREFS_CONFIG", conf)
	for _, s := range settings {
		os.Unsetenv(envName(s.name))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
