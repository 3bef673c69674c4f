package realise

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"storefs/store"
	"storefs/store/storepath"
)

// buildLog receives a builder's output: it compresses it into
// logs/<drv base>.gz (written at logs/<drv base>.<pid>-<random>.tmp and
// renamed into place when closed, so a reader never sees half a log; Open
// removes the leftovers of dead processes), keeps the last lines for error reports, and passes
// each line on.
type buildLog struct {
	mu     sync.Mutex // guards everything below; the sandbox may write from several goroutines
	f      *os.File
	gz     *gzip.Writer
	final  string
	line   []byte
	tail   []string
	onLine func(string)
}

// LogPath is where the build log of drv is kept.
func LogPath(s *store.Store, drv storepath.Path) string {
	return filepath.Join(s.LogsDir(), drv.Base()+".gz")
}

func openLog(s *store.Store, drv storepath.Path, onLine func(string)) (*buildLog, error) {
	final := LogPath(s, drv)
	f, err := s.NewLogTemp(drv.Base())
	if err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	return &buildLog{f: f, gz: gzip.NewWriter(f), final: final, onLine: onLine}, nil
}

func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if _, err := l.gz.Write(p); err != nil {
		return 0, err
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.line = append(l.line, p...)
			if len(l.line) > 64<<10 { // a line that never ends is still a line
				l.endLine()
			}
			break
		}
		l.line = append(l.line, p[:i]...)
		l.endLine()
		p = p[i+1:]
	}
	return n, nil
}

func (l *buildLog) endLine() {
	s := string(l.line)
	l.line = l.line[:0]
	if len(l.tail) == LogTailLines {
		copy(l.tail, l.tail[1:])
		l.tail = l.tail[:LogTailLines-1]
	}
	l.tail = append(l.tail, s)
	if l.onLine != nil {
		l.onLine(s)
	}
}

// Tail returns the last lines written.
func (l *buildLog) Tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string(nil), l.tail...)
	if len(l.line) > 0 {
		out = append(out, string(l.line))
		if len(out) > LogTailLines {
			out = out[1:]
		}
	}
	return out
}

// Close finishes the compressed log and puts it in place.
func (l *buildLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.gz.Close()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(l.f.Name(), l.final)
	}
	if err != nil {
		os.Remove(l.f.Name())
		return fmt.Errorf("build log %s: %w", l.final, err)
	}
	return nil
}

// ReadLog writes the build log of drv, uncompressed, to w.
func ReadLog(s *store.Store, drv storepath.Path, w io.Writer) error {
	f, err := os.Open(LogPath(s, drv))
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("no build log of %s", s.Print(drv))
		}
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("build log of %s: %w", s.Print(drv), err)
	}
	_, err = io.Copy(w, zr)
	return err
}
