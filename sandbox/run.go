package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// logGrace is how long Run waits for the log pipe to close once the
// builder's last process is gone (only a process outside the sandbox that
// was handed the pipe could keep it open).
const logGrace = time.Second

// Run runs the builder of s in a new sandbox and returns when it and every
// process it started are gone, with whatever the builder created at the
// output paths moved to their host paths.
//
// The error is a *SetupError (errors.Is ErrSetup) when the sandbox could not
// be made, the builder could not be executed, or the outputs could not be
// moved out; the Result, if any, then still tells how the builder ended.
// Otherwise the Result says how it ended: Result.Err is nil for exit 0.
// A context cancelled before the start gives a Cancelled result.
func Run(ctx context.Context, s *Spec) (*Result, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return &Result{Outcome: Cancelled, cause: context.Cause(ctx)}, nil
	}
	scratch, err := makeScratch(s)
	if err != nil {
		return nil, err
	}
	res, err := runIn(ctx, s, scratch)
	if rmErr := os.RemoveAll(scratch); rmErr != nil && err == nil {
		err = &SetupError{What: "removing the scratch dir " + scratch, Err: rmErr}
	}
	return res, err
}

func makeScratch(s *Spec) (string, error) {
	if s.ScratchDir != "" {
		if err := os.Mkdir(s.ScratchDir, 0o700); err != nil {
			return "", &SetupError{What: "making the scratch dir " + s.ScratchDir, Err: err}
		}
		return s.ScratchDir, nil
	}
	dir, err := os.MkdirTemp(filepath.Dir(s.BuildDir), "sandbox-")
	if err != nil {
		return "", &SetupError{What: "making a scratch dir beside " + s.BuildDir, Err: err}
	}
	return dir, nil
}

func runIn(ctx context.Context, s *Spec, scratch string) (*Result, error) {
	if err := sameFilesystem(s, scratch); err != nil {
		return nil, err
	}
	root, mounts, err := layout(s, scratch)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := giveBuildDir(s); err != nil {
		return nil, err
	}
	cfg := initConfig{
		Root:          filepath.Join(scratch, scratchRoot),
		Mounts:        mounts,
		Loopback:      !s.Network,
		NoUnixSockets: s.Network,
		Builder:       s.Builder,
		Argv:          append([]string{argv0(s.Builder)}, s.Args...),
		Env:           s.Env,
		UID:           BuildUID,
		GID:           BuildGID,
		Linux32:       s.Linux32,
	}
	res, err := supervise(ctx, s, &cfg, root)
	if err != nil {
		return res, err
	}
	for _, out := range s.Outputs {
		made := filepath.Join(scratch, scratchStore, filepath.Base(out.Path))
		if _, err := os.Lstat(made); os.IsNotExist(err) {
			continue
		}
		if err := os.Rename(made, out.Host); err != nil {
			return res, &SetupError{What: "moving output " + out.Path + " to " + out.Host, Err: err}
		}
	}
	return res, nil
}

// sameFilesystem checks that every output can be renamed from the scratch
// dir to its host path.
func sameFilesystem(s *Spec, scratch string) error {
	var st, out unix.Stat_t
	if err := unix.Stat(scratch, &st); err != nil {
		return &SetupError{What: "making the scratch dir " + scratch, Err: err}
	}
	for _, o := range s.Outputs {
		dir := filepath.Dir(o.Host)
		if err := unix.Stat(dir, &out); err != nil {
			return &SetupError{What: "output " + o.Path, Err: err}
		}
		if out.Dev != st.Dev {
			return &SetupError{What: "output " + o.Path, Err: fmt.Errorf(
				"host directory %s is not on the filesystem of the scratch dir %s (outputs are renamed, not copied)", dir, scratch)}
		}
	}
	return nil
}

// pipes are the init stage's and builder's ends (child) and ours (parent).
type pipes struct {
	statusR, statusW, configR, configW, logR, logW *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.statusR, p.statusW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.configR, p.configW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.logR, p.logW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return &p, nil
}

func (p *pipes) close() {
	for _, f := range []*os.File{p.statusR, p.statusW, p.configR, p.configW, p.logR, p.logW} {
		if f != nil {
			f.Close()
		}
	}
}

// capsForInit are the capabilities the init stage keeps across its exec
// (as ambient capabilities, valid in its user namespace only).
var capsForInit = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP}

// supervise starts the init stage, enforces the limits and waits for the end.
func supervise(ctx context.Context, s *Spec, cfg *initConfig, root *os.File) (*Result, error) {
	p, err := newPipes()
	if err != nil {
		return nil, &SetupError{What: "making pipes", Err: err}
	}
	defer p.close()
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if !s.Network {
		flags |= unix.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{initArg0},
		Env:        []string{},
		Stdout:     p.logW,
		Stderr:     p.logW,
		ExtraFiles: []*os.File{p.statusW, p.configR, root}, // fdStatus, fdConfig, fdRoot
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 flags,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.UID, HostID: s.HostUID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: cfg.GID, HostID: s.HostGID, Size: 1}},
			GidMappingsEnableSetgroups: true,
			AmbientCaps:                capsForInit,
			Setsid:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	}
	cg, err := newBuildCgroup(int64(s.MaxProcesses), s.MaxMemory)
	if err != nil {
		return nil, err
	}
	if cg == nil {
		cfg.NProc = s.MaxProcesses
	} else {
		// Deferred calls run after the wait below. The kernel may take a
		// few milliseconds to let go of the last tasks (rmdir says EBUSY):
		// the removal does not hold up the build's end.
		defer func() { go cg.remove() }()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, &SetupError{What: "starting the sandbox's init stage (/proc/self/exe in new namespaces)", Err: err}
	}
	if cg != nil {
		// The stage waits for its config before it does anything, so
		// nothing of the build runs outside the cgroup.
		if err := cg.add(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, err
		}
	}
	p.statusW.Close()
	p.configR.Close()
	p.logW.Close()
	p.statusW, p.configR, p.logW = nil, nil, nil
	root.Close()

	// The write end of the config pipe stays open until the builder runs:
	// the init stage checks it to know this process is alive.
	go json.NewEncoder(p.configW).Encode(cfg)
	statusCh := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(p.statusR)
		statusCh <- b
	}()
	var lastOutput atomic.Int64
	lastOutput.Store(start.UnixNano())
	logDone := make(chan struct{})
	logLimit := make(chan struct{})
	go copyLog(s.Log, p.logR, &lastOutput, s.MaxLogSize, logLimit, logDone)
	waitCh := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waitCh)
	}()

	var timeoutC, silentC <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(s.Timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	var silent *time.Timer
	if s.MaxSilent > 0 {
		silent = time.NewTimer(s.MaxSilent)
		defer silent.Stop()
		silentC = silent.C
	}
	done := ctx.Done()
	var killedBy *Outcome
	kill := func(why Outcome) {
		killedBy = &why
		// SIGKILL to pid 1 of the pid namespace: the kernel kills every
		// process in it, and our wait returns only after they are gone.
		cmd.Process.Kill()
		done, timeoutC, silentC = nil, nil, nil
	}
	var status []byte
	gotStatus := false
loop:
	for {
		select {
		case <-done:
			kill(Cancelled)
		case <-timeoutC:
			kill(TimedOut)
		case <-logLimit:
			logLimit = nil
			if killedBy == nil {
				kill(LogLimit)
			}
		case <-silentC:
			idle := time.Since(time.Unix(0, lastOutput.Load()))
			if idle >= s.MaxSilent {
				kill(Silent)
			} else {
				silent.Reset(s.MaxSilent - idle)
			}
		case status = <-statusCh:
			// Silence counts from the builder's start, not the setup's
			// (the init stage writes nothing to the log).
			if len(status) == 0 {
				lastOutput.Store(time.Now().UnixNano())
			}
			gotStatus = true
			statusCh = nil
			p.configW.Close()
			p.configW = nil
		case <-waitCh:
			break loop
		}
	}
	res := &Result{Duration: time.Since(start)}
	if cg != nil {
		res.LimitsHit = cg.limitsHit(int64(s.MaxProcesses), s.MaxMemory)
	}
	if !gotStatus {
		status = <-statusCh
	}
	select {
	case <-logDone:
	case <-time.After(logGrace):
		p.logR.Close()
		p.logR = nil
		<-logDone
	}
	if len(status) > 0 {
		return nil, initError(status)
	}

	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case killedBy != nil:
		res.Outcome = *killedBy
		switch *killedBy {
		case TimedOut:
			res.Limit = s.Timeout
		case Silent:
			res.Limit = s.MaxSilent
		case Cancelled:
			res.cause = context.Cause(ctx)
		case LogLimit:
			res.MaxLogSize = s.MaxLogSize
		}
	case ws.Exited():
		res.Outcome, res.ExitCode = Exited, ws.ExitStatus()
	case ws.Signaled():
		res.Outcome, res.Signal = Signaled, ws.Signal()
	default:
		res.Outcome, res.ExitCode = Exited, -1
	}
	return res, nil
}

// copyLog copies the builder's output to log, noting when it last spoke,
// and closes limit once more than max bytes (0: no limit) came. A failing
// log does not stop the builder: its output is then dropped.
func copyLog(log io.Writer, r io.Reader, last *atomic.Int64, max int64, limit chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			total += int64(n)
			if max > 0 && total > max && limit != nil {
				close(limit)
				limit = nil
			}
			if log != nil {
				if _, werr := log.Write(buf[:n]); werr != nil {
					log = nil
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// initError turns the init stage's report into a *SetupError.
func initError(status []byte) error {
	var f initFailure
	if err := json.Unmarshal(status, &f); err != nil {
		return &SetupError{What: "reading the init stage's report", Err: errors.New(string(status))}
	}
	if f.Errno != 0 {
		return &SetupError{What: f.What, Err: unix.Errno(f.Errno)}
	}
	return &SetupError{What: f.What, Err: errors.New(f.Msg)}
}
