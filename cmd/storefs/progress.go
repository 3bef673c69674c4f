package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"storefs/goals"
	"storefs/store"
	"storefs/store/storepath"
)

// progress shows what the worker does: on a terminal, one status line that
// is redrawn (what is building and its last log line); elsewhere a plain
// line per event.
type progress struct {
	w    io.Writer
	s    *store.Store
	tty  bool
	mu   sync.Mutex                // guards everything below
	busy map[storepath.Path]string // running build or substitution -> last log line
	done int
	last storepath.Path // whose log line the status shows
}

func newProgress(w io.Writer, s *store.Store) *progress {
	p := &progress{w: w, s: s, busy: map[storepath.Path]string{}}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) Event(e goals.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := p.s.Print(e.Path)
	var line string
	switch e.Kind {
	case goals.BuildStarted:
		p.busy[e.Path] = ""
		line = "building " + name
	case goals.SubstitutionStarted:
		p.busy[e.Path] = ""
		line = "substituting " + name
	case goals.BuildFinished:
		delete(p.busy, e.Path)
		p.done++
		line = "built " + name
	case goals.SubstitutionFinished:
		delete(p.busy, e.Path)
		p.done++
		line = "substituted " + name
	case goals.BuildFailed, goals.SubstitutionFailed:
		delete(p.busy, e.Path)
		first, _, _ := strings.Cut(e.Err.Error(), "\n")
		line = "failed: " + first
	}
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	if e.Kind == goals.BuildFailed || e.Kind == goals.SubstitutionFailed {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", line)
	}
	p.redraw()
}

func (p *progress) logLine(drv storepath.Path, line string) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.busy[drv] = line
	p.last = drv
	p.redraw()
}

// redraw writes the status line; p.mu is held.
func (p *progress) redraw() {
	if len(p.busy) == 0 {
		fmt.Fprint(p.w, "\r\x1b[K")
		return
	}
	cur := p.last
	if _, ok := p.busy[cur]; !ok {
		for k := range p.busy {
			cur = k
			break
		}
	}
	status := fmt.Sprintf("[%d running, %d done] %s", len(p.busy), p.done, cur.Name())
	if l := p.busy[cur]; l != "" {
		status += ": " + l
	}
	if len(status) > 160 {
		status = status[:160]
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s", status)
}
