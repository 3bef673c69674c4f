// Command storefs is the command line of storefs, a lazy Nix-style store.
//
// One file per command; each command's logic is a run function taking a
// context and its inputs, so tests call it directly. Errors reach the user as
// one line, `storefs: <what failed and where>` (a failed build adds its log's
// last lines, as the help says), with the exit codes listed in the help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"storefs/sandbox"
	"storefs/store/storepath"
)

// Exit codes, as listed in the help. 100-102 follow Nix.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// description is the top of storefs --help; the settings are listed from
// the table in config.go, so the list cannot go stale.
func description() string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.name
	}
	return `storefs serves a Nix-style store through FUSE and realises paths on first access.

Settings (` + strings.Join(names, ", ") + `) come from flags, then STOREFS_<NAME> variables, then /etc/storefs/storefs.conf (STOREFS_CONFIG names another file), as "name = value" lines; "storefs config show" lists them. Durations are seconds, as in nix.conf (timeout = 3), or a number with a unit (10m).

Errors go to stderr as one line, "storefs: <what failed, naming it>", with two exceptions: a failed build's error goes on with the last lines of its log, each on its own line starting with "> "; and when several paths fail (as realise --keep-going reports them), the line "storefs: N failures:" comes first and each failure follows on a line of its own. Progress lines (building, substituting, failed) and warnings also go to stderr, before the error.

Exit codes:
  0    success
  1    failure, including a bad value in a STOREFS_ variable or the config file
  2    bad usage (unknown command or flag, bad flag value)
  100  a build failed (realise)
  101  a build timed out
  102  a fixed-output derivation's hash did not match
       (bits combine as in Nix: 103 is a timeout and a hash mismatch)`
}

// Globals are the flags every command takes.
type Globals struct {
	StoreDir string `name:"store-dir" default:"/store" placeholder:"DIR" help:"The store directory: the logical name in every path and hash, and the mount point (${default}; STOREFS_STORE_DIR)."`
	StateDir string `name:"state-dir" default:"/var/lib/storefs" placeholder:"DIR" help:"Where storefs keeps its database, the contents of valid paths, logs and the daemon socket (${default}; STOREFS_STATE_DIR)."`
}

// storeDir returns the checked store dir.
func (g *Globals) storeDir() (storepath.Dir, error) {
	d, err := storepath.ParseDir(g.StoreDir)
	if err != nil {
		return "", fmt.Errorf("--store-dir: %w", err)
	}
	return d, nil
}

// stdio is where commands read and write, so tests can capture them.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// CLI is the whole command line.
type CLI struct {
	Globals
	Version kong.VersionFlag `help:"Print the version (storefs VERSION) and exit."`

	Nar        narCmd        `cmd:"" help:"Make, unpack and list Nix archives (NAR)."`
	Hash       hashCmd       `cmd:"" help:"Compute hashes as Nix does."`
	Derivation derivationCmd `cmd:"" help:"Inspect derivations."`
	Key        keyCmd        `cmd:"" help:"Manage binary cache signing keys."`

	Config   configCmd   `cmd:"" help:"Show the configuration (flags, STOREFS_* variables, /etc/storefs/storefs.conf)."`
	Add      addCmd      `cmd:"" help:"Add files or trees to the store (as nix-store --add)."`
	AddFixed addFixedCmd `cmd:"" name:"add-fixed" help:"Add files to the store as fixed outputs (as nix-store --add-fixed)."`
	Query    queryCmd    `cmd:"" help:"Query valid paths (as nix-store --query)."`
	PathInfo pathInfoCmd `cmd:"" name:"path-info" help:"Show what the store knows of paths (as nix path-info)."`
	Verify   verifyCmd   `cmd:"" help:"Check the store's invariants; exit 1 if any is broken."`
	GC       gcCmd       `cmd:"" name:"gc" help:"Delete the valid paths that no root reaches, oldest first."`
	Delete   deleteCmd   `cmd:"" help:"Delete valid paths that nothing refers to."`
	AddRoot  addRootCmd  `cmd:"" name:"add-root" help:"Make store paths garbage collector roots."`
	Mount    mountCmd    `cmd:"" help:"Serve the store dir through FUSE, realising paths on first access, until unmounted."`
	Umount   umountCmd   `cmd:"" help:"Unmount the store dir."`
	Daemon   daemonCmd   `cmd:"" help:"Serve the store to Nix clients on the Nix daemon socket (NIX_REMOTE=unix://...), without mounting."`
	Status   statusCmd   `cmd:"" help:"Show what the mount's daemon is doing and recent failures."`
	Realise  realiseCmd  `cmd:"" help:"Build or substitute paths and print the outputs (as nix-store --realise)."`
	Log      logCmd      `cmd:"" help:"Print the build log of a derivation or of the derivation of a path."`
	Import   importCmd   `cmd:"" help:"Add the paths of a nix-store --export stream read from stdin."`
	Export   exportCmd   `cmd:"" help:"Write paths as a nix-store --export stream to stdout."`
	Copy     copyCmd     `cmd:"" help:"Copy paths' closures to a file:// binary cache, or substitute them from one (as nix copy)."`
}

func main() {
	// A builder's sandbox starts as this binary re-executed; it never
	// returns from here.
	sandbox.MaybeRunInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr})
	stop()
	os.Exit(code)
}

// run parses args, runs the command and returns the exit code.
func run(ctx context.Context, args []string, io stdio) int {
	var cli CLI
	kctx, code := parse(ctx, &cli, args, io)
	if kctx == nil {
		return code
	}
	if err := kctx.Run(&cli.Globals); err != nil {
		fmt.Fprintf(io.err, "storefs: %v\n", err)
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return exitFailure
	}
	return exitOK
}

// parse reads the config and the command line into cli. It returns the
// command to run, or nil and the exit code when there is nothing to run
// (--help, or an error it has printed).
func parse(ctx context.Context, cli *CLI, args []string, io stdio) (*kong.Context, int) {
	exited := -1
	cfg, err := loadConfig(configPath())
	if err == nil {
		err = checkEnv()
	}
	if err != nil {
		fmt.Fprintf(io.err, "storefs: %v\n", err)
		return nil, exitFailure
	}
	parser, err := kong.New(cli,
		kong.Resolvers(cfg.resolver()),
		kong.Name("storefs"),
		kong.Description(description()),
		kong.Vars{"version": "storefs " + versionString()},
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Writers(io.out, io.err),
		kong.Exit(func(code int) { exited = code }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(io),
	)
	if err != nil {
		fmt.Fprintf(io.err, "storefs: %v\n", err)
		return nil, exitFailure
	}
	kctx, err := parser.Parse(args)
	if exited >= 0 {
		return nil, exited // --help
	}
	if err != nil {
		fmt.Fprintf(io.err, "storefs: %v\n", err)
		return nil, exitUsage
	}
	return kctx, exitOK
}
