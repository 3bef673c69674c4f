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
	// keep is how many bytes of output the file keeps (negative: all);
	// kept counts them, dropped what came after, and afterCut the lines
	// that ended after the cut (the last of them end the file).
	keep, kept, dropped int64
	afterCut            int
}

// DefaultLogKeep is how much of a build's output its log keeps unless told
// otherwise: the first 64 MiB (a few MiB compressed, for text), then the
// last LogTailLines lines. A builder that printed 768 MiB made an 823 MB
// log before there was a cap; what matters in a huge log is its start and
// its end.
const DefaultLogKeep = 64 << 20

// LogPath is where the build log of drv is kept.
func LogPath(s *store.Store, drv storepath.Path) string {
	return filepath.Join(s.LogsDir(), drv.Base()+".gz")
}

// openLog starts the log of drv, keeping keep bytes of output (0:
// DefaultLogKeep, negative: all).
func openLog(s *store.Store, drv storepath.Path, keep int64, onLine func(string)) (*buildLog, error) {
	final := LogPath(s, drv)
	f, err := s.NewLogTemp(drv.Base())
	if err != nil {
		return nil, fmt.Errorf("build log: %w", err)
	}
	if keep == 0 {
		keep = DefaultLogKeep
	}
	return &buildLog{f: f, gz: gzip.NewWriter(f), final: final, onLine: onLine, keep: keep}, nil
}

func (l *buildLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	head := p
	if l.keep >= 0 && l.kept+int64(len(head)) > l.keep {
		head = head[:l.keep-l.kept]
		l.dropped += int64(len(p) - len(head))
	}
	if _, err := l.gz.Write(head); err != nil {
		return 0, err
	}
	l.kept += int64(len(head))
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
	if l.dropped > 0 {
		l.afterCut++
	}
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

// Close finishes the compressed log and puts it in place. A log that was
// cut ends with a line saying how much was dropped and the last lines.
func (l *buildLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.dropped > 0 {
		last := l.tail[len(l.tail)-min(l.afterCut, len(l.tail)):]
		if len(l.line) > 0 {
			last = append(append([]string(nil), last...), string(l.line))
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "\n[storefs: %d more bytes of log output not kept (a log keeps the first %d bytes: keep-build-log-size); the last lines were:]\n",
			l.dropped, l.keep)
		for _, line := range last {
			b.WriteString(line)
			b.WriteByte('\n')
		}
		_, err = l.gz.Write(b.Bytes())
	}
	if cerr := l.gz.Close(); err == nil {
		err = cerr
	}
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
