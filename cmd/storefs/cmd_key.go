package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"storefs/store/signature"
)

// keyCmd is `storefs key`: binary cache signing keys, in Nix's text forms.
type keyCmd struct {
	Generate keyGenerateCmd `cmd:"" help:"Make a new ed25519 key pair for signing binary caches (like nix-store --generate-binary-cache-key)."`
	Public   keyPublicCmd   `cmd:"" help:"Print the public key of a secret key (like nix key convert-secret-to-public)."`
}

type keyGenerateCmd struct {
	Name string `arg:"" help:"The key's name, e.g. cache.example.org-1: signatures carry it, and trusted-public-keys lists keys by it."`
	Out  string `name:"out" type:"path" placeholder:"FILE" help:"Write the secret key to FILE (created with mode 0600; an existing FILE is never overwritten) and the public key to stdout."`
}

func (c *keyGenerateCmd) Help() string {
	return `Keys are written exactly as nix-store --generate-binary-cache-key writes its
files: NAME:BASE64, without a trailing newline, so Nix and storefs read each
other's keys.

Without --out, the secret key goes to stdout and the public key to stderr,
followed by a newline (so that 'storefs key generate NAME > secret 2> public'
keeps both, and a terminal shows the public key). With --out FILE, the secret
key goes to FILE and the public key to stdout.

The public key of a secret key can be printed again with 'storefs key public'.`
}

func (c *keyGenerateCmd) Run(io stdio, ctx context.Context) error {
	return runKeyGenerate(ctx, c.Name, c.Out, io)
}

// runKeyGenerate makes a key pair named name and writes it as the help of
// `storefs key generate` says.
func runKeyGenerate(ctx context.Context, name, out string, io stdio) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	secret, err := signature.Generate(name)
	if err != nil {
		return err
	}
	public := secret.Public().String()
	if out == "" {
		if _, err := fmt.Fprint(io.out, secret.Encode()); err != nil {
			return fmt.Errorf("writing the secret key to stdout: %w", err)
		}
		if _, err := fmt.Fprintln(io.err, public); err != nil {
			return fmt.Errorf("writing the public key to stderr: %w", err)
		}
		return nil
	}
	if err := writeSecretKeyFile(out, secret); err != nil {
		return err
	}
	if _, err := fmt.Fprint(io.out, public); err != nil {
		return fmt.Errorf("writing the public key to stdout: %w", err)
	}
	return nil
}

// writeSecretKeyFile creates path with mode 0600 and writes the key, never
// replacing an existing file: overwriting a key in use would lose it.
func writeSecretKeyFile(path string, secret signature.SecretKey) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("secret key file %s already exists; storefs never overwrites a key file", path)
	}
	if err != nil {
		return fmt.Errorf("creating secret key file: %w", err)
	}
	_, err = f.WriteString(secret.Encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing secret key file %s: %w", path, err)
	}
	return nil
}

type keyPublicCmd struct {
	SecretKeyFile string `name:"secret-key-file" type:"path" placeholder:"FILE" help:"Read the secret key from FILE instead of stdin."`
}

func (c *keyPublicCmd) Help() string {
	return `Reads a secret key (NAME:BASE64, as written by 'storefs key generate' or
nix-store --generate-binary-cache-key; a trailing newline is fine) from stdin
or --secret-key-file, and prints its public key exactly as
nix key convert-secret-to-public does: NAME:BASE64, without a newline.`
}

func (c *keyPublicCmd) Run(io stdio, ctx context.Context) error {
	return runKeyPublic(ctx, c.SecretKeyFile, io)
}

// maxKeyFile bounds what is read as a key: a key is about 100 bytes.
const maxKeyFile = 64 << 10

// runKeyPublic prints the public key of the secret key in secretFile, or on
// stdin when secretFile is empty.
func runKeyPublic(ctx context.Context, secretFile string, io stdio) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	from, r := "stdin", io.in
	if secretFile != "" {
		f, err := os.Open(secretFile)
		if err != nil {
			return fmt.Errorf("reading the secret key: %w", err)
		}
		defer f.Close()
		from, r = secretFile, f
	}
	data, err := readKey(r)
	if err != nil {
		return fmt.Errorf("reading the secret key from %s: %w", from, err)
	}
	secret, err := signature.ParseSecretKey(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	if _, err := fmt.Fprint(io.out, secret.Public().String()); err != nil {
		return fmt.Errorf("writing the public key to stdout: %w", err)
	}
	return nil
}

func readKey(r io.Reader) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("no input")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("more than %d bytes: not a key", maxKeyFile)
	}
	return data, nil
}
