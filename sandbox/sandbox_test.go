package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"testing"
)

// The builder sees what Nix's sandbox shows: uid 1000, gid 100, host name
// localhost, cwd /build, and only the given directories.
func TestBuilderEnvironment(t *testing.T) {
	b := newBuild(t, `mkdir $out && cd $out &&
id -u > uid; id -g > gid; id -G > groups; hostname > hostname
cat /proc/sys/kernel/domainname > domain; cd /build && pwd > $out/cwd && cd $out
ls -a / > root; ls -a /store > store; ls -a /dev > dev; ls -a /etc > etc
cat /etc/passwd > passwd; cat /etc/group > group; cat /etc/hosts > hosts
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status > status
readlink /proc/self/fd/0 > stdin
cat /proc/self/personality > personality; ulimit -c > core; umask > umask; uname -m > machine
echo out; echo err >&2`)
	b.mustSucceed(t)
	want := map[string]string{
		"uid":      "1000",
		"gid":      "100",
		"groups":   "100",
		"hostname": "localhost",
		"domain":   "(none)",
		"cwd":      "/build",
		"root":     ". .. build dev etc proc store tmp",
		"store":    ". .. " + bbBase + " " + outBase,
		"dev":      ". .. fd full null ptmx pts random shm stderr stdin stdout tty urandom zero",
		"etc":      ". .. group hosts passwd",
		"passwd":   strings.TrimSuffix(etcPasswd, "\n"),
		"group":    strings.TrimSuffix(etcGroup, "\n"),
		"hosts":    "127.0.0.1 localhost\n::1 localhost",
		"status": "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n" +
			"CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2",
		"stdin":       "/dev/null",
		"personality": "00040000",
		"core":        "0",
		"umask":       "0022",
		"machine":     hostMachine(t),
	}
	for name, w := range want {
		got := b.output(t, name)
		if name == "root" || name == "store" || name == "dev" || name == "etc" {
			got = strings.Join(strings.Fields(got), " ")
		}
		if got != w {
			t.Errorf("%s: got %q, want %q", name, got, w)
		}
	}
	if log := b.log.String(); log != "out\nerr\n" {
		t.Errorf("log: got %q, want stdout and stderr, %q", log, "out\nerr\n")
	}
	// The output is the builder's, on the host, owned by the build user.
	fi, err := os.Stat(b.Outputs[0].Host)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != b.HostUID || int(st.Gid) != b.HostGID {
		t.Errorf("output owned by %d:%d on the host, want the build user %d:%d", st.Uid, st.Gid, b.HostUID, b.HostGID)
	}
}

// The environment is exactly the one given: nothing added, nothing lost.
func TestBuilderEnvExact(t *testing.T) {
	b := newBuild(t, "")
	if err := os.Symlink("busybox", filepath.Join(b.Inputs[0].Host, "bin/env")); err != nil {
		t.Fatal(err)
	}
	b.Builder, b.Args = bbBin+"/env", nil
	b.Env = []string{"out=" + outPath, "name=x y", "empty=", "weird=a=b\nc", "PATH=/path-not-set"}
	b.mustSucceed(t)
	got := strings.Split(strings.TrimSuffix(b.log.String(), "\n"), "\n")
	want := []string{"out=" + outPath, "name=x y", "empty=", "weird=a=b", "c", "PATH=/path-not-set"}
	if !slices.Equal(got, want) {
		t.Errorf("env printed %q, want %q", got, want)
	}
}

// Outputs land at their host paths whatever they are; one not made is absent.
func TestOutputs(t *testing.T) {
	b := newBuild(t, `echo file > $out; mkdir $dir; echo x > $dir/x; ln -s /nowhere $link; echo stray > /store/stray`)
	dir := storeDir + "/dddddddddddddddddddddddddddddddd-dir"
	link := storeDir + "/llllllllllllllllllllllllllllllll-link"
	missing := storeDir + "/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm-missing"
	b.Env = append(b.Env, "dir="+dir, "link="+link)
	for _, p := range []string{dir, link, missing} {
		b.Outputs = append(b.Outputs, Mount{Host: filepath.Join(b.dir, filepath.Base(p)), Path: p})
	}
	b.mustSucceed(t)
	if got := b.output(t, ""); got != "file" {
		t.Errorf("file output: %q", got)
	}
	if data, err := os.ReadFile(filepath.Join(b.Outputs[1].Host, "x")); err != nil || string(data) != "x\n" {
		t.Errorf("directory output: %q, %v", data, err)
	}
	if target, err := os.Readlink(b.Outputs[2].Host); err != nil || target != "/nowhere" {
		t.Errorf("symlink output: %q, %v", target, err)
	}
	if _, err := os.Lstat(b.Outputs[3].Host); !os.IsNotExist(err) {
		t.Errorf("an output the builder did not make exists on the host: %v", err)
	}
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "sandbox-") {
			t.Errorf("the scratch dir %s was left behind", e.Name())
		}
	}
}

// Inputs may be files and symlinks too, not only directories.
func TestInputKinds(t *testing.T) {
	b := newBuild(t, `mkdir $out; cat $file > $out/file; readlink $link > $out/link; cat /build/given > $out/given`)
	file := storeDir + "/ffffffffffffffffffffffffffffffff-file"
	link := storeDir + "/llllllllllllllllllllllllllllllll-link"
	writeHost(t, filepath.Join(b.dir, "inputs/file"), "content")
	if err := os.Symlink(storeDir+"/"+bbBase+"/bin/sh", filepath.Join(b.dir, "inputs/link")); err != nil {
		t.Fatal(err)
	}
	writeHost(t, filepath.Join(b.BuildDir, "given"), "from the caller")
	b.Inputs = append(b.Inputs, Mount{Host: filepath.Join(b.dir, "inputs/file"), Path: file},
		Mount{Host: filepath.Join(b.dir, "inputs/link"), Path: link})
	b.Env = append(b.Env, "file="+file, "link="+link)
	b.mustSucceed(t)
	for name, want := range map[string]string{"file": "content", "link": storeDir + "/" + bbBase + "/bin/sh", "given": "from the caller"} {
		if got := b.output(t, name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}

// The usual devices work; /dev/shm, /tmp and /build are writable.
func TestDevices(t *testing.T) {
	b := newBuild(t, `mkdir $out
echo gone > /dev/null && head -c 3 /dev/zero | wc -c > $out/zero
head -c 16 /dev/urandom | wc -c > $out/urandom
echo x > /dev/full; echo $? > $out/full
test -c /dev/pts/ptmx && test -L /dev/ptmx && echo yes > $out/ptmx
test -c /dev/kvm && echo yes > $out/kvm; touch $out/kvm
echo s > /dev/shm/s && echo t > /tmp/t && echo b > /build/b && cat /dev/shm/s /tmp/t /build/b | tr -d '\n' > $out/writable`)
	b.mustSucceed(t)
	for name, want := range map[string]string{"zero": "3", "urandom": "16", "full": "1", "ptmx": "yes", "kvm": "", "writable": "stb"} {
		if got := b.output(t, name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	if data, err := os.ReadFile(filepath.Join(b.BuildDir, "b")); err != nil || string(data) != "b\n" {
		t.Errorf("/build/b on the host: %q, %v", data, err)
	}
}

func writeHost(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A 32-bit build sees a 32-bit machine, as under Nix.
func TestLinux32(t *testing.T) {
	b := newBuild(t, "mkdir $out; uname -m > $out/machine; cat /proc/self/personality > $out/personality")
	b.Linux32 = true
	b.mustSucceed(t)
	if got := b.output(t, "machine"); got != "i686" {
		t.Errorf("uname -m: %q, want i686", got)
	}
	if got := b.output(t, "personality"); got != "00040008" {
		t.Errorf("personality: %q, want 00040008", got)
	}
}

func hostMachine(t testing.TB) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Machine[:])
}

// With KVM the builder gets /dev/kvm too (as Nix's sandbox does here); on
// a machine without one, asking for it is a setup error naming it.
func TestKVM(t *testing.T) {
	b := newBuild(t, "mkdir $out; ls /dev > $out/dev")
	b.KVM = true
	if _, err := os.Stat("/dev/kvm"); err != nil {
		_, err := Run(context.Background(), b.Spec)
		if err == nil || !strings.Contains(err.Error(), "sandbox: bind-mounting the host's /dev/kvm: no such file or directory") {
			t.Fatalf("without /dev/kvm on the host: %v", err)
		}
		return
	}
	b.mustSucceed(t)
	if got := strings.Fields(b.output(t, "dev")); !slices.Contains(got, "kvm") {
		t.Errorf("/dev: %v, want kvm in it", got)
	}
}
