package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// runBPF runs a classic BPF seccomp program on one system call, with the
// few instructions seccompFilter uses; anything else fails the test.
func runBPF(t *testing.T, prog []unix.SockFilter, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	word := func(off uint32) uint32 {
		switch {
		case off == seccompDataNr:
			return nr
		case off == seccompDataArch:
			return arch
		case off >= seccompDataArgs && off < seccompDataArgs+48 && (off-seccompDataArgs)%8 == 0:
			return uint32(args[(off-seccompDataArgs)/8])
		}
		t.Fatalf("load of offset %d", off)
		return 0
	}
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		jump := func(cond bool) {
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		}
		switch in.Code {
		case ldAbs:
			a = word(in.K)
		case jeq:
			jump(a == in.K)
		case jge:
			jump(a >= in.K)
		case jset:
			jump(a&in.K != 0)
		case andK:
			a &= in.K
		case ret:
			return in.K
		default:
			t.Fatalf("instruction %d: unknown code %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

// Every table's rules, through the whole program, give Nix's answers and
// ours, with and without the host's network.
func TestSeccompFilterDecisions(t *testing.T) {
	for _, opts := range []filterOptions{{}, {noUnixSockets: true}} {
		checkFilter(t, opts)
	}
}

func checkFilter(t *testing.T, opts filterOptions) {
	prog := seccompFilter(opts)
	if len(prog) == 0 || len(prog) > 4096 {
		t.Fatalf("program of %d instructions", len(prog))
	}
	mode := func(m uint64, arg int) [6]uint64 {
		var a [6]uint64
		a[arg] = m | 0xdead_0000_0000 // high bits the filter must ignore
		return a
	}
	for _, tab := range syscallTables {
		modeCalls := []struct {
			nr  int32
			arg int
		}{{tab.chmod, 1}, {tab.fchmod, 1}, {tab.fchmodat, 2}, {tab.fchmodat2, 2}}
		for _, c := range modeCalls {
			if c.nr < 0 {
				continue
			}
			for m, want := range map[uint64]uint32{0o4755: errEPERM, 0o2755: errEPERM, 0o6000: errEPERM, 0o755: retAllow, 0o1777: retAllow, 0: retAllow} {
				if got := runBPF(t, prog, tab.arch, uint32(c.nr), mode(m, c.arg)); got != want {
					t.Errorf("arch %#x syscall %d mode %o: %#x, want %#x", tab.arch, c.nr, m, got, want)
				}
			}
		}
		for _, nr := range []int32{tab.setxattr, tab.lsetxattr, tab.fsetxattr, tab.setxattrat} {
			if got := runBPF(t, prog, tab.arch, uint32(nr), [6]uint64{}); got != errENOTSP {
				t.Errorf("arch %#x setxattr-like syscall %d: %#x, want ENOTSUP", tab.arch, nr, got)
			}
		}
		for _, nr := range tab.ioURing {
			if got := runBPF(t, prog, tab.arch, uint32(nr), [6]uint64{}); got != errENOSYS {
				t.Errorf("arch %#x io_uring syscall %d: %#x, want ENOSYS", tab.arch, nr, got)
			}
		}
		// socket(AF_UNIX) only where the build shares the host's network;
		// other families always.
		unixSock := uint32(retAllow)
		if opts.noUnixSockets {
			unixSock = errEPERM
		}
		for _, c := range []struct {
			nr   int32
			arg0 uint64
			want uint32
		}{
			{tab.socket, unix.AF_UNIX, unixSock}, {tab.socket, unix.AF_UNIX | 0xdead_0000_0000, unixSock},
			{tab.socket, unix.AF_INET, retAllow}, {tab.socket, unix.AF_INET6, retAllow}, {tab.socket, unix.AF_NETLINK, retAllow},
			{tab.socketcall, socketcallSock, unixSock}, {tab.socketcall, 3 /* SYS_CONNECT */, retAllow}, {tab.socketcall, socketcallPair, unixSock},
		} {
			if c.nr < 0 {
				continue
			}
			if got := runBPF(t, prog, tab.arch, uint32(c.nr), [6]uint64{c.arg0}); got != c.want {
				t.Errorf("arch %#x syscall %d (%#x, ...) with %+v: %#x, want %#x", tab.arch, c.nr, c.arg0, opts, got, c.want)
			}
		}
		// socketpair: datagram pairs only, whatever the flags in the type.
		for _, c := range []struct {
			domain, typ uint64
			want        uint32
		}{
			{unix.AF_UNIX, unix.SOCK_DGRAM, unixSock}, {unix.AF_UNIX, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK, unixSock},
			{unix.AF_UNIX | 0xdead_0000_0000, unix.SOCK_DGRAM | 0xdead_0000_0000, unixSock},
			{unix.AF_UNIX, unix.SOCK_STREAM, retAllow}, {unix.AF_UNIX, unix.SOCK_SEQPACKET | unix.SOCK_CLOEXEC, retAllow},
			{unix.AF_INET, unix.SOCK_DGRAM, retAllow},
		} {
			if tab.socketpair < 0 {
				continue
			}
			if got := runBPF(t, prog, tab.arch, uint32(tab.socketpair), [6]uint64{c.domain, c.typ}); got != c.want {
				t.Errorf("arch %#x socketpair(%#x, %#x) with %+v: %#x, want %#x", tab.arch, c.domain, c.typ, opts, got, c.want)
			}
		}
		// Other calls pass, whatever their arguments.
		for _, nr := range []uint32{0, 1, 59, 200, 451} {
			if got := runBPF(t, prog, tab.arch, nr, mode(0o4755, 1)); got != retAllow {
				t.Errorf("arch %#x syscall %d: %#x, want allowed", tab.arch, nr, got)
			}
		}
		if tab.onlyBelow != 0 {
			if got := runBPF(t, prog, tab.arch, tab.onlyBelow|uint32(tab.fchmod), mode(0o4755, 1)); got != errENOSYS {
				t.Errorf("arch %#x syscall %#x: %#x, want ENOSYS", tab.arch, tab.onlyBelow|uint32(tab.fchmod), got)
			}
		}
	}
	if got := runBPF(t, prog, 0x1234, 15, [6]uint64{}); got != errENOSYS {
		t.Errorf("an unknown arch: %#x, want ENOSYS", got)
	}
}

// The filter in a real sandbox: what busybox cannot try, a static Go probe
// does (internal/probe), with its own network and with the host's.
func TestSeccompInSandbox(t *testing.T) {
	probe := filepath.Join(t.TempDir(), "probe")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin/go")
	}
	build := exec.Command(gobin, "build", "-o", probe, "storefs/sandbox/internal/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, out)
	}
	data, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []bool{false, true} {
		b := newBuild(t, "")
		if err := os.WriteFile(filepath.Join(b.Inputs[0].Host, "bin/probe"), data, 0o555); err != nil {
			t.Fatal(err)
		}
		b.Network = network
		b.Builder, b.Args = bbBin+"/probe", []string{outPath}
		b.mustSucceed(t)
		want := map[string]string{"setxattr": "ENOTSUP", "lsetxattr": "ENOTSUP", "fsetxattr": "ENOTSUP", "setxattrat": "ENOTSUP",
			"io_uring_setup": "ENOSYS", "socket AF_UNIX": "ok", "socketpair AF_UNIX": "ok", "socketpair AF_UNIX dgram": "ok", "socket AF_INET": "ok"}
		if network {
			want["socket AF_UNIX"], want["socketpair AF_UNIX dgram"] = "EPERM", "EPERM"
		}
		for _, call := range []string{"fchmod", "fchmodat", "fchmodat2", "chmod"} {
			if call == "chmod" && runtime.GOARCH != "amd64" {
				continue
			}
			want[call+" 4755"], want[call+" 2755"], want[call+" 755"] = "EPERM", "EPERM", "ok"
		}
		got := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(b.log.String()), "\n") {
			if i := strings.LastIndexByte(line, ' '); i > 0 {
				got[line[:i]] = line[i+1:]
			}
		}
		for call, w := range want {
			if got[call] != w {
				t.Errorf("network %v: %s: %q, want %s", network, call, got[call], w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("network %v: the probe said:\n%s", network, b.log)
		}
		fi, err := os.Stat(b.Outputs[0].Host)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o755 {
			t.Errorf("the output's mode on the host: %v, want -rwxr-xr-x", fi.Mode())
		}
	}
}
