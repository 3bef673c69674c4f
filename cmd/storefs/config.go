package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"storefs/realise"
	"storefs/store/signature"
	"storefs/store/storepath"
)

// Settings come, in order of precedence, from the command line, from
// STOREFS_<NAME> environment variables, from the config file (`key = value`
// lines in the manner of nix.conf; # starts a comment), and from defaults.
// A setting has the name of its flag.

// defaultConfigFile is read unless STOREFS_CONFIG names another.
const defaultConfigFile = "/etc/storefs/storefs.conf"

// setting is one configurable flag. check refuses a bad value, so that a
// value from the environment or the file is refused naming where it came
// from, not as if it were a flag; kong then parses only good values.
type setting struct {
	name, def string
	list      bool // whitespace-separated list
	check     func(string) error
}

var settings = []setting{
	{name: "store-dir", def: "/store", check: checkStoreDir},
	{name: "state-dir", def: "/var/lib/storefs", check: checkNonEmpty},
	{name: "substituters", list: true, check: checkSubstituters},
	{name: "trusted-public-keys", list: true, check: checkPublicKeys},
	{name: "max-jobs", def: "auto", check: checkText[maxJobs]},
	{name: "cores", def: "0", check: checkCount},
	{name: "max-silent-time", def: "0", check: checkText[duration]},
	{name: "timeout", def: "0", check: checkText[duration]},
	{name: "fallback", def: "false", check: checkBool},
	{name: "max-build-log-size", def: "0", check: checkText[byteSize]},
	{name: "keep-build-log-size", def: "64M", check: checkText[byteSize]},
	{name: "build-pids-max", def: "4096", check: checkCount},
	{name: "build-memory-max", def: "0", check: checkText[byteSize]},
	{name: "failure-ttl", def: "10m", check: checkText[duration]},
	{name: "negative-ttl", def: "1s", check: checkText[duration]},
	{name: "narinfo-cache-negative-ttl", def: "3600", check: checkText[duration]},
	{name: "narinfo-cache-positive-ttl", def: "2592000", check: checkText[duration]},
	{name: "connect-timeout", def: "5", check: checkText[duration]},
	{name: "narinfo-query-timeout", def: "5", check: checkText[duration]},
	{name: "substituter-retry-after", def: "60", check: checkText[duration]},
	{name: "narinfo-query-rate", def: "20", check: checkCount},
	{name: "daemon-socket", check: checkAbsolute},
	{name: "trusted-users", def: "root", list: true, check: checkNonEmpty},
	{name: "allowed-users", def: "*", list: true, check: checkNonEmpty},
}

func checkAbsolute(s string) error {
	if s != "" && !strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}

// checkText checks a value as the flag's type parses it.
func checkText[T any, PT interface {
	*T
	encoding.TextUnmarshaler
}](s string) error {
	var v T
	return PT(&v).UnmarshalText([]byte(s))
}

func checkStoreDir(s string) error {
	_, err := storepath.ParseDir(s)
	return err
}

func checkNonEmpty(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	return nil
}

func checkCount(s string) error {
	if _, err := strconv.Atoi(s); err != nil || !isDigits(s) {
		return fmt.Errorf("%q is not a whole number", s)
	}
	return nil
}

func checkBool(s string) error {
	_, err := parseBool(s)
	return err
}

func checkSubstituters(s string) error {
	for _, u := range strings.Fields(s) {
		if _, err := realise.OpenCache(u, realise.HTTPOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func checkPublicKeys(s string) error {
	_, err := signature.ParsePublicKeys(s)
	return err
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

// loadConfig reads a config file and checks every value in it; a missing
// file is an empty config. Errors name the file and the line.
func loadConfig(path string) (*configFile, error) {
	c := &configFile{path: path, values: map[string]configValue{}}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
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
			return nil, fmt.Errorf("%s line %d: %q is not `key = value`", path, n, line)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		s, known := findSetting(key)
		if !known {
			return nil, fmt.Errorf("%s line %d: unknown setting %q", path, n, key)
		}
		if err := s.check(value); err != nil {
			return nil, fmt.Errorf("%s line %d: %s: %w", path, n, key, err)
		}
		c.values[key] = configValue{value, n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// checkEnv checks every STOREFS_<NAME> variable of a setting; an error
// names the variable.
func checkEnv() error {
	for _, s := range settings {
		if v, ok := os.LookupEnv(envName(s.name)); ok {
			if err := s.check(v); err != nil {
				return fmt.Errorf("environment variable %s: %w", envName(s.name), err)
			}
		}
	}
	return nil
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

// resolver feeds settings from the environment and the file to kong for
// every flag that is a setting and was not given on the command line.
// Lists are joined by one space, which the flags split on.
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
		if s.list {
			return strings.Join(strings.Fields(raw), " "), nil
		}
		return raw, nil
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
