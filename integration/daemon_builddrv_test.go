package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"storefs/store/derivation"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// BuildDerivation (op 36), as build-remote sends it, to nix-daemon --stdio
// and to storefs daemon: the same status and the same built outputs.
func TestDaemonBuildDerivation(t *testing.T) {
	e := newDaemonEnv(t)
	_, drvs := instantiated(t, e, "dep", "fail", "top")
	dir := storepath.Dir(e.storeDir)
	send := func(w *wire.Writer, drvPath string) {
		data, err := os.ReadFile(e.realPath(drvPath))
		if err != nil {
			t.Fatal(err)
		}
		d, err := derivation.Parse(data, dir)
		if err != nil {
			t.Fatal(err)
		}
		w.U64(36)
		w.String(drvPath)
		ids := d.OutputIDs()
		w.U64(uint64(len(ids)))
		for _, id := range ids {
			o := d.Outputs[id]
			w.String(id)
			w.Path(dir, o.Path)
			w.String(o.HashAlgo())
			w.String(o.HashHex())
		}
		w.Paths(dir, d.InputSrcs)
		w.String(d.System)
		w.String(d.Builder)
		w.Strings(d.Args)
		keys := make([]string, 0, len(d.Env))
		for k := range d.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w.U64(uint64(len(keys)))
		for _, k := range keys {
			w.String(k)
			w.String(d.Env[k])
		}
		w.U64(0)
	}
	result := func(r *wire.Reader) string {
		status, _ := r.U64("status")
		msg, _ := r.String("errorMsg", 1<<20)
		built, _ := r.U64("timesBuilt")
		r.U64("isNonDeterministic")
		r.U64("startTime")
		r.U64("stopTime")
		n, _ := r.U64("builtOutputs")
		var outs []string
		for ; n > 0; n-- {
			id, _ := r.String("id", 1<<16)
			real, _ := r.String("realisation", 1<<20)
			outs = append(outs, id+" "+real)
		}
		failed := ""
		if msg != "" {
			failed = " with a message"
		}
		return fmt.Sprintf("status %d%s, built %d times, outputs %v", status, failed, built, outs)
	}
	strs := func(r *wire.Reader) string { s, _ := r.Strings("s", 1<<16, 1<<16); return strings.Join(s, " ") }
	bpwr := func(r *wire.Reader) string {
		n, _ := r.U64("results")
		var out []string
		for ; n > 0; n-- {
			p, _ := r.String("path", 1<<16)
			out = append(out, p+": "+result(r))
		}
		sort.Strings(out) // in goal order, not request order
		return strings.Join(out, "; ")
	}
	steps := []step{
		{"QueryMissing top", func(w *wire.Writer) { w.U64(40); w.Strings([]string{drvs["top"] + "!out"}) }, func(r *wire.Reader) string {
			out := "willBuild " + strs(r) + " willSubstitute " + strs(r) + " unknown " + strs(r)
			dl, _ := r.U64("downloadSize")
			ns, _ := r.U64("narSize")
			return out + fmt.Sprintf(" sizes %d %d", dl, ns)
		}},
		{"QueryDerivationOutputMap dep", func(w *wire.Writer) { w.U64(41); w.String(drvs["dep"]) }, func(r *wire.Reader) string {
			n, _ := r.U64("n")
			var out []string
			for ; n > 0; n-- {
				id, _ := r.String("id", 1<<16)
				p, _ := r.String("path", 1<<16)
				out = append(out, id+"="+p)
			}
			return strings.Join(out, " ")
		}},
		{"BuildDerivation dep", func(w *wire.Writer) { send(w, drvs["dep"]) }, result},
		{"BuildDerivation dep again", func(w *wire.Writer) { send(w, drvs["dep"]) }, result},
		{"BuildDerivation fail", func(w *wire.Writer) { send(w, drvs["fail"]) }, result},
		{"BuildPathsWithResults", func(w *wire.Writer) {
			w.U64(46)
			w.Strings([]string{drvs["top"] + "!out", drvs["dep"] + "!*"})
			w.U64(0)
		}, bpwr},
	}
	missingProbe = e.storeDir + "/00000000000000000000000000000000-probe"

	cmd := exec.Command("nix-daemon", "--stdio")
	cmd.Env = e.ref.env
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	want := transcript(t, struct {
		io.Reader
		io.Writer
	}{stdout, stdin}, steps)
	timer.Stop()
	stdin.Close()
	cmd.Wait()

	nc, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	got := transcript(t, nc, steps)
	t.Logf("nix-daemon:\n%s", strings.Join(want, "\n"))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("BuildDerivation:\nstorefs daemon:\n%s\nnix-daemon:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
