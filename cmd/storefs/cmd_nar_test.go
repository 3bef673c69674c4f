package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"storefs/store/nixhash"
)

// narTestdata reads a NAR or listing made by real Nix (store/nar/testdata).
func narTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../store/nar/testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func narRun(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, stdio{bytes.NewReader(stdin), &out, &errb})
	return code, out.String(), errb.String()
}

// restore then dump through the commands gives Nix's NAR back.
func TestNarRestoreDumpCmd(t *testing.T) {
	nar := narTestdata(t, "tree.nar")
	target := filepath.Join(t.TempDir(), "t")
	if code, out, errOut := narRun(t, nar, "nar", "restore", target); code != 0 || out != "" || errOut != "" {
		t.Fatalf("nar restore: exit %d, %q %q", code, out, errOut)
	}
	code, out, errOut := narRun(t, nil, "nar", "dump", target)
	if code != 0 || errOut != "" {
		t.Fatalf("nar dump: exit %d, %q", code, errOut)
	}
	if out != string(nar) {
		t.Error("nar dump of the restored tree differs from Nix's NAR")
	}
	// hash path: the sha256 of that NAR, in each form.
	sum := sha256.Sum256(nar)
	h, _ := nixhash.New(nixhash.SHA256, sum[:])
	for format, want := range map[string]string{"": h.String(), "nix32": h.String(),
		"hex": "sha256:" + h.Hex(), "base64": "sha256:" + h.Base64(), "sri": h.SRI()} {
		args := []string{"hash", "path", target}
		if format != "" {
			args = append(args, "--format", format)
		}
		code, out, errOut := narRun(t, nil, args...)
		if code != 0 || out != want+"\n" {
			t.Errorf("hash path --format %q: exit %d, %q (%s); want %q", format, code, out, errOut, want)
		}
	}
	if code, _, errOut := narRun(t, nil, "hash", "path", "--format", "base32", target); code != exitUsage {
		t.Errorf("hash path --format base32: exit %d (%s), want %d", code, errOut, exitUsage)
	}
}

// Hostile archives: exit 1, one line naming the offset, nothing left.
func TestNarRestoreCmdHostile(t *testing.T) {
	good := narTestdata(t, "tree.nar")
	dotdot := bytes.Replace(good, []byte("\x03\x00\x00\x00\x00\x00\x00\x00abs\x00\x00\x00\x00\x00"),
		[]byte("\x02\x00\x00\x00\x00\x00\x00\x00..\x00\x00\x00\x00\x00\x00"), 1)
	if bytes.Equal(dotdot, good) {
		t.Fatal("test NAR not changed")
	}
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-9], "trailing": append(append([]byte{}, good...), 0), "dot-dot": dotdot,
		"empty": nil,
	} {
		parent := t.TempDir()
		target := filepath.Join(parent, "t")
		code, out, errOut := narRun(t, data, "nar", "restore", target)
		if code != exitFailure || out != "" || strings.Count(errOut, "\n") != 1 ||
			!strings.HasPrefix(errOut, "storefs: restoring the NAR on stdin into "+target+": nar offset ") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, out, errOut)
		}
		if left, _ := os.ReadDir(parent); len(left) != 0 {
			t.Errorf("%s: left behind %v", name, left)
		}
	}
}

// nar ls prints what nix nar ls -R -l printed for the same NAR.
func TestNarLsCmd(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tree.nar")
	os.WriteFile(file, narTestdata(t, "tree.nar"), 0o644)
	link := filepath.Join(dir, "symlink.nar")
	os.WriteFile(link, narTestdata(t, "symlink.nar"), 0o644)
	pad := func(s string) string { return strings.Repeat(" ", 20-len(s)) + s }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{file}, "lrwxrwxrwx " + pad("0") + " ./abs -> /absolute/target\n" +
			"dr-xr-xr-x " + pad("0") + " ./dir\n" +
			"lrwxrwxrwx " + pad("0") + " ./dir/dangle -> ../dangling\n" +
			"-r--r--r-- " + pad("8") + " ./dir/eight\n" +
			"dr-xr-xr-x " + pad("0") + " ./dir/sub\n" +
			"-r--r--r-- " + pad("6") + " ./dir/sub/n\n" +
			"dr-xr-xr-x " + pad("0") + " ./empty\n" +
			"-r--r--r-- " + pad("0") + " ./emptyfile\n" +
			"-r-xr-xr-x " + pad("18") + " ./exec\n" +
			"-r--r--r-- " + pad("6") + " ./file\n" +
			"lrwxrwxrwx " + pad("0") + " ./rel -> file\n"},
		{[]string{file, "/dir"}, "lrwxrwxrwx " + pad("0") + " ./dangle -> ../dangling\n" +
			"-r--r--r-- " + pad("8") + " ./eight\n" +
			"dr-xr-xr-x " + pad("0") + " ./sub\n" +
			"-r--r--r-- " + pad("6") + " ./sub/n\n"},
		{[]string{file, "/dir/sub/n"}, "-r--r--r-- " + pad("6") + " n\n"},
		{[]string{link}, "lrwxrwxrwx " + pad("0") + "  -> /nix/store/target\n"},
		{[]string{"--json", file}, string(narTestdata(t, "tree.ls"))},
	} {
		code, out, errOut := narRun(t, nil, append([]string{"nar", "ls"}, c.args...)...)
		if code != 0 || out != c.want {
			t.Errorf("nar ls %v: exit %d (%s)\n got %q\nwant %q", c.args, code, errOut, out, c.want)
		}
	}
	code, _, errOut := narRun(t, nil, "nar", "ls", file, "/nope")
	if code != exitFailure || errOut != "storefs: "+file+`: path "/nope" does not exist in the archive`+"\n" {
		t.Errorf("nar ls of a missing path: exit %d, %q", code, errOut)
	}
	// A file that is not a NAR, given or on stdin: one line naming it.
	notNAR := filepath.Join(dir, "hostname")
	os.WriteFile(notNAR, []byte("vm\n"), 0o644)
	for _, c := range []struct {
		args  []string
		stdin []byte
		name  string
	}{
		{[]string{notNAR}, nil, notNAR},
		{[]string{"-"}, []byte("vm\n"), "stdin"},
		{[]string{dir}, nil, dir},
	} {
		code, _, errOut = narRun(t, c.stdin, append([]string{"nar", "ls"}, c.args...)...)
		if code != exitFailure || !strings.HasPrefix(errOut, "storefs: "+c.name+": nar offset ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("nar ls %v: exit %d, %q; want one line naming %s", c.args, code, errOut, c.name)
		}
	}
	missing := filepath.Join(dir, "missing.nar")
	if code, _, errOut = narRun(t, nil, "nar", "ls", missing); code != exitFailure || !strings.Contains(errOut, missing+": no such file") {
		t.Errorf("nar ls of a missing file: exit %d, %q", code, errOut)
	}
	code, out, _ := narRun(t, narTestdata(t, "file.nar"), "nar", "ls", "-")
	if code != 0 || !strings.HasSuffix(out, " 1 \n") {
		t.Errorf("nar ls - : exit %d, %q", code, out)
	}
}

// A cancelled command (Ctrl-C) stops with the context's error.
func TestNarCmdCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runNarDump(ctx, &bytes.Buffer{}, "../../store/nar/testdata"); !errors.Is(err, context.Canceled) {
		t.Errorf("dump with a cancelled context: %v", err)
	}
	parent := t.TempDir()
	err := runNarRestore(ctx, bytes.NewReader(narTestdata(t, "tree.nar")), filepath.Join(parent, "t"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("restore with a cancelled context: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("cancelled restore left %v", left)
	}
}

// A fifo cannot be archived: one line naming it, exit 1.
func TestNarDumpCmdFifo(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"nar", "dump", dir}, {"hash", "path", dir}} {
		code, _, errOut := narRun(t, nil, args...)
		if code != exitFailure || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, fifo+": cannot archive a named pipe") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}
