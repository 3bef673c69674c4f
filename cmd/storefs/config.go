package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
)

// Settings come, in order of precedence, from the command line, from
// STOREFS_<NAME> environment variables, from the config file (`key = value`
// lines in the manner of nix.conf; # starts a comment), and from defaults.
// A setting has the name of its flag.

// defaultConfigFile is read unless STOREFS_CONFIG names another.
const defaultConfigFile = "/etc/storefs/storefs.conf"

// setting is one configurable flag.
type setting struct {
	name, def string
	list      bool // whitespace-separated list
	duration  bool // a bare number means seconds, as in nix.conf
}

var settings = []setting{
	{name: "store-dir", def: "/store"},
	{name: "state-dir", def: "/var/lib/storefs"},
	{name: "substituters", list: true},
	{name: "trusted-public-keys", list: true},
	{name: "max-jobs", def: "0"},
	{name: "cores", def: "0"},
	{name: "max-silent-time", def: "0s", duration: true},
	{name: "timeout", def: "0s", duration: true},
	{name: "failure-ttl", def: "10m", duration: true},
	{name: "negative-ttl", def: "1s", duration: true},
}

func findSetting(name string) (setting, bool) {
	for _, s := range settings {
		if s.name == name {
			return s, true
		}
	}
	return setting{}, false
}

// envName is the environment variable of a setting.
func envName(name string) string {
	return "STOREFS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configFile is a parsed config file.
type configFile struct {
	path   string
	values map[string]configValue
}

type configValue struct {
	value string
	line  int
}

// configPath is the config file in force.
func configPath() string {
	if p := os.Getenv("STOREFS_CONFIG"); p != "" {
		return p
	}
	return defaultConfigFile
}

// loadConfig reads a config file; a missing file is an empty config.
func loadConfig(path string) (*configFile, error) {
	c := &configFile{path: path, values: map[string]configValue{}}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config %s line %d: %q is not `key = value`", path, n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if _, known := findSetting(key); !known {
			return nil, fmt.Errorf("config %s line %d: unknown setting %q", path, n, key)
		}
		c.values[key] = configValue{value, n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// lookup finds a setting's value outside the command line: the
// environment, then the file. source says where it came from.
func (c *configFile) lookup(name string) (value, source string, ok bool) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v, "environment " + envName(name), true
	}
	if v, ok := c.values[name]; ok {
		return v.value, fmt.Sprintf("%s line %d", c.path, v.line), true
	}
	return "", "", false
}

// typed turns a raw value into what kong parses for the setting.
func (s setting) typed(raw string) any {
	switch {
	case s.list:
		return strings.Join(strings.Fields(raw), " ") // the flags split on one space
	case s.duration:
		if _, err := strconv.Atoi(raw); err == nil {
			return raw + "s"
		}
	}
	return raw
}

// resolver feeds settings from the environment and the file to kong for
// every flag that is a setting and was not given on the command line.
func (c *configFile) resolver() kong.Resolver {
	return kong.ResolverFunc(func(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
		s, ok := findSetting(flag.Name)
		if !ok {
			return nil, nil
		}
		raw, _, ok := c.lookup(flag.Name)
		if !ok {
			return nil, nil
		}
		return s.typed(raw), nil
	})
}

// configCmd groups configuration commands.
type configCmd struct {
	Show configShowCmd `cmd:"" help:"Print every setting in force and where its value came from."`
}

type configShowCmd struct{}

func (c *configShowCmd) Run(ctx context.Context, g *Globals, io stdio) error {
	cfg, err := loadConfig(configPath())
	if err != nil {
		return err
	}
	for _, s := range settings {
		value, source, ok := cfg.lookup(s.name)
		switch {
		case s.name == "store-dir" && g.StoreDir != value && (ok || g.StoreDir != s.def):
			value, source = g.StoreDir, "command line"
		case s.name == "state-dir" && g.StateDir != value && (ok || g.StateDir != s.def):
			value, source = g.StateDir, "command line"
		case !ok:
			value, source = s.def, "default"
		}
		fmt.Fprintf(io.out, "%s = %s # %s\n", s.name, value, source)
	}
	return nil
}
