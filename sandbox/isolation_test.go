package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A builder sees nothing of the host's files but its inputs.
func TestNoHostFiles(t *testing.T) {
	b := newBuild(t, "")
	secret := filepath.Join(b.dir, "secret")
	writeHost(t, secret, "host secret")
	b.Args[1] = fmt.Sprintf(`mkdir $out
for f in /etc/shadow /etc/hostname %s %s /bin/busybox /usr/bin; do
  if cat $f > /dev/null 2>&1 || test -e $f; then echo $f >> $out/seen; fi
done
touch $out/seen`, secret, b.Inputs[0].Host)
	b.mustSucceed(t)
	if seen := b.output(t, "seen"); seen != "" {
		t.Errorf("the builder could see host paths:\n%s", seen)
	}
}

// Inputs are read-only, inside and on the host, and so is the root.
func TestInputsReadOnly(t *testing.T) {
	in := storeDir + "/" + bbBase
	b := newBuild(t, fmt.Sprintf(`mkdir $out
touch %[1]s/new 2> $out/touch && echo created >> $out/bad
rm %[1]s/bin/sh 2> $out/rm && echo removed >> $out/bad
mv %[1]s /store/moved 2> $out/mv && echo moved >> $out/bad
echo x >> %[1]s/bin/busybox 2> $out/append && echo appended >> $out/bad
touch /new 2> /dev/null && echo "created /new" >> $out/bad
echo x >> /etc/passwd 2> /dev/null && echo "changed /etc/passwd" >> $out/bad
mkdir /dev/x 2> /dev/null && echo "created /dev/x" >> $out/bad
touch $out/bad`, in))
	b.mustSucceed(t)
	if bad := b.output(t, "bad"); bad != "" {
		t.Errorf("the builder changed its input: %s", bad)
	}
	if got := b.output(t, "touch"); !strings.Contains(got, "Read-only file system") {
		t.Errorf("touch in an input: %q, want Read-only file system", got)
	}
	if _, err := os.Lstat(filepath.Join(b.Inputs[0].Host, "bin/sh")); err != nil {
		t.Errorf("input on the host: %v", err)
	}
}

// A builder without Network has only its own loopback: the host's
// 127.0.0.1 is out of reach, its own works. The client reads "mine" from
// a file: busybox's listener, its stdin at EOF, half-closes at once, and
// a client that sees that EOF before a pipe brings it data exits without
// sending any.
func TestNoNetwork(t *testing.T) {
	addr, accepted := tcpServer(t)
	b := newBuild(t, fmt.Sprintf(`mkdir $out
cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > $out/interfaces
nc -w 2 %[1]s %[2]s < /dev/null > $out/host 2>&1; echo $? > $out/host-exit
nc -l -p %[2]s > $out/own &
echo mine > /tmp/mine
for i in $(seq 100); do nc 127.0.0.1 %[2]s < /tmp/mine 2> /dev/null && break; sleep 0.05; done; wait`, addr.IP, strconv.Itoa(addr.Port)))
	b.mustSucceed(t)
	if got := b.output(t, "interfaces"); got != "lo" {
		t.Errorf("interfaces: %q, want only lo", got)
	}
	if got := b.output(t, "host-exit"); got == "0" {
		t.Errorf("reaching the host's %v succeeded: %q", addr, b.output(t, "host"))
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host's server accepted %d connections from the sandbox", n)
	}
	if got := b.output(t, "own"); got != "mine" {
		t.Errorf("the sandbox's own loopback: got %q, want %q", got, "mine")
	}
}

// A fixed-output build keeps the host's network and its name service files.
func TestFixedOutputNetwork(t *testing.T) {
	addr, accepted := tcpServer(t)
	b := newBuild(t, fmt.Sprintf(`nc -w 5 %s %d < /dev/null > $out; ls /etc > /build/etc`, addr.IP, addr.Port))
	b.Network = true
	b.mustSucceed(t)
	if got := b.output(t, ""); got != "hello from the host" {
		t.Errorf("fetched %q", got)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the host's server accepted %d connections, want 1", n)
	}
	data, err := os.ReadFile(filepath.Join(b.BuildDir, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"group", "hosts", "nsswitch.conf", "passwd"}
	for _, f := range []string{"resolv.conf", "services"} {
		if _, err := os.Stat("/etc/" + f); err == nil {
			want = append(want, f)
		}
	}
	slices.Sort(want)
	if got := strings.Fields(string(data)); !slices.Equal(got, want) {
		t.Errorf("/etc of a fixed-output build: %v, want %v", got, want)
	}
}

// A builder sees only its own processes and cannot signal the host's.
func TestNoHostProcesses(t *testing.T) {
	sleeper := startSleeper(t)
	b := newBuild(t, fmt.Sprintf(`mkdir $out
ls /proc | grep '^[0-9]' | tr '\n' ' ' > $out/pids
kill -0 %[1]d 2> $out/kill; echo $? > $out/kill-exit
test -e /proc/%[1]d && echo visible > $out/visible; touch $out/visible`, sleeper))
	b.mustSucceed(t)
	// pid 1 (the shell), and ls and friends of the pipeline.
	for _, pid := range strings.Fields(b.output(t, "pids")) {
		if n, _ := strconv.Atoi(pid); n > 10 {
			t.Errorf("the builder sees pid %d: %s", n, b.output(t, "pids"))
		}
	}
	if got := b.output(t, "kill-exit"); got == "0" {
		t.Errorf("kill -0 of host pid %d succeeded", sleeper)
	}
	if got := b.output(t, "visible"); got != "" {
		t.Errorf("host pid %d is visible in /proc", sleeper)
	}
}

// No process of a build survives it: background processes are killed when
// the builder exits.
func TestNoSurvivors(t *testing.T) {
	b := newBuild(t, `sleep 1000 & sleep 1000 & (sleep 1000 &) ; mkdir $out; ls /proc | grep -c '^[0-9]' > $out/procs`)
	res := b.mustSucceed(t)
	b.noneLeft(t)
	if n, _ := strconv.Atoi(b.output(t, "procs")); n < 4 {
		t.Errorf("the builder saw %d processes, want the shell and 3 sleepers at least", n)
	}
	if res.Duration > 5*time.Second {
		t.Errorf("the build took %v: it waited for its sleepers", res.Duration)
	}
}

// The builder's processes are never root on the host; the sandbox gives no
// way to gain privileges: no setuid files can be made or used, every
// mount is nosuid.
func TestNoPrivileges(t *testing.T) {
	b := newBuild(t, `mkdir $out; touch $out/f; chmod 4755 $out/f 2> $out/chmod-err; chmod 2755 $out/f 2>> $out/chmod-err
grep -v nosuid /proc/mounts > $out/suid-mounts
find / -xdev -perm /6000 > $out/setid-files 2>/dev/null
readlink /proc/self/ns/pid > /build/pidns; sleep 1000 & echo running; wait`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	end := b.start(ctx)
	b.waitLog(t, "running")
	data, err := os.ReadFile(filepath.Join(b.BuildDir, "pidns"))
	if err != nil {
		t.Fatal(err)
	}
	ns := strings.TrimSpace(string(data))
	inNS := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l != ns {
			continue
		}
		inNS++
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
				for _, id := range f[1:] {
					if id == "0" || id != strconv.Itoa(b.HostUID) {
						t.Errorf("host pid %s of the build: %s", e.Name(), line)
					}
				}
			}
		}
	}
	if inNS < 2 {
		t.Errorf("found %d processes in the build's pid namespace %s, want the shell and sleep", inNS, ns)
	}
	cancel()
	r := <-end
	if r.err != nil || r.res.Outcome != Cancelled {
		t.Fatalf("cancelled build: %+v, %v", r.res, r.err)
	}
	for _, name := range []string{"suid-mounts", "setid-files"} {
		if got := b.output(t, name); got != "" {
			t.Errorf("%s: %q", name, got)
		}
	}
	if got := b.output(t, "chmod-err"); strings.Count(got, "Operation not permitted") != 2 {
		t.Errorf("chmod 4755 and 2755: %q, want both refused", got)
	}
	fi, err := os.Stat(filepath.Join(b.Outputs[0].Host, "f"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		t.Errorf("the output has a set-id file: %v", fi.Mode())
	}
}

// Two builds run at once, each in its own world: neither sees the other's
// processes.
func TestConcurrentBuilds(t *testing.T) {
	script := `mkdir $out; sleep $mark &
until cat /proc/[0-9]*/cmdline | tr '\0' ' ' | grep -q "sleep $mark"; do sleep 0.01; done
cat /proc/[0-9]*/cmdline | tr '\0' ' ' > $out/cmdlines; id -u > $out/uid; wait`
	b1, b2 := newBuild(t, script), newBuild(t, script)
	if b1.HostUID == b2.HostUID {
		t.Fatalf("both builds have host uid %d", b1.HostUID)
	}
	marks := []string{"0.501", "0.502"}
	b1.Env = append(b1.Env, "mark="+marks[0])
	b2.Env = append(b2.Env, "mark="+marks[1])
	e1, e2 := b1.start(context.Background()), b2.start(context.Background())
	for i, r := range []runEnd{<-e1, <-e2} {
		b := []*build{b1, b2}[i]
		if r.err != nil || r.res.Err() != nil {
			t.Fatalf("build %d: %v, %v\n%s", i+1, r.err, r.res.Err(), b.log)
		}
		if got := b.output(t, "uid"); got != "1000" {
			t.Errorf("build %d: uid %s", i+1, got)
		}
		procs := b.output(t, "cmdlines")
		if !strings.Contains(procs, "sleep "+marks[i]) || strings.Contains(procs, "sleep "+marks[1-i]) {
			t.Errorf("build %d sees the processes %q; want its sleep %s and not the other's", i+1, procs, marks[i])
		}
	}
}

// tcpServer listens on the host's 127.0.0.1, greets and counts every
// connection, until the test ends.
func tcpServer(t *testing.T) (*net.TCPAddr, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			io.WriteString(c, "hello from the host")
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr), &n
}

// startSleeper starts a host process for the test's lifetime.
func startSleeper(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/busybox", []string{"sleep", "1000"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.Wait() })
	return p.Pid
}

// The builder has its own user, mount, pid, uts, ipc and (unless Network)
// network namespaces.
func TestNamespaces(t *testing.T) {
	kinds := []string{"user", "mnt", "pid", "uts", "ipc", "net"}
	for _, network := range []bool{false, true} {
		b := newBuild(t, `mkdir $out; for ns in `+strings.Join(kinds, " ")+`; do readlink /proc/self/ns/$ns > $out/$ns; done`)
		b.Network = network
		b.mustSucceed(t)
		for _, ns := range kinds {
			host, err := os.Readlink("/proc/self/ns/" + ns)
			if err != nil {
				t.Fatal(err)
			}
			got := b.output(t, ns)
			if shared := got == host; shared != (network && ns == "net") {
				t.Errorf("network %v: the builder's %s namespace is %s, the host's %s", network, ns, got, host)
			}
		}
	}
}
