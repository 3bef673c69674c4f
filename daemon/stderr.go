package daemon

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// The tags of the stderr stream (docs/daemon.md, "Log messages").
const (
	stderrNext          = 0x6f6c6d67
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// Activity and result types the daemon sends.
const (
	actBuild       = 105
	actBuilds      = 104
	resBuildLog    = 101
	resProgress    = 105
	verbosityError = 0
	verbosityInfo  = 3
)

// Field is one field of an activity or result: an int or a string.
type Field struct {
	Int uint64
	Str string
	IsS bool
}

var activityIDs atomic.Uint64

// startWork opens the window in which log messages may be sent.
func (c *Conn) startWork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.working = true
	for _, m := range c.queued {
		c.w.U64(stderrNext)
		c.w.String(m)
	}
	c.queued = nil
	c.w.Flush()
}

// stopWork ends the window with STDERR_LAST; the result follows.
func (c *Conn) stopWork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.working = false
	c.replied = true
	c.w.U64(stderrLast)
}

// sendError ends the window with STDERR_ERROR in the form 1.26+ clients
// read: the client asserts both "Error" strings and the zero position.
func (c *Conn) sendError(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.working = false
	c.w.U64(stderrError)
	c.w.String("Error")
	c.w.U64(verbosityError)
	c.w.String("Error")
	c.w.String(msg)
	c.w.U64(0) // no position
	c.w.U64(0) // no traces
	c.w.Flush()
}

// Log sends a line of text at the given verbosity, if the client asked
// for that much; outside an operation's work it is queued until the next.
func (c *Conn) Log(level uint64, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if level > c.opts.Verbosity {
		return
	}
	if !c.working {
		c.queued = append(c.queued, msg)
		return
	}
	c.w.U64(stderrNext)
	c.w.String(strings.TrimSuffix(msg, "\n") + "\n")
	c.w.Flush()
}

// StartActivity opens an activity and returns its id; parent 0 is none.
func (c *Conn) StartActivity(level, typ uint64, text string, parent uint64, fields ...Field) uint64 {
	id := activityIDs.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.working {
		return id
	}
	c.w.U64(stderrStartActivity)
	c.w.U64(id)
	c.w.U64(level)
	c.w.U64(typ)
	c.w.String(text)
	c.fields(fields)
	c.w.U64(parent)
	c.w.Flush()
	return id
}

// Result sends a result of activity id (a build log line, progress).
func (c *Conn) Result(id, typ uint64, fields ...Field) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.working {
		return
	}
	c.w.U64(stderrResult)
	c.w.U64(id)
	c.w.U64(typ)
	c.fields(fields)
	c.w.Flush()
}

// StopActivity closes activity id.
func (c *Conn) StopActivity(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.working {
		return
	}
	c.w.U64(stderrStopActivity)
	c.w.U64(id)
	c.w.Flush()
}

// fields writes activity or result fields; the caller holds mu.
func (c *Conn) fields(fs []Field) {
	c.w.U64(uint64(len(fs)))
	for _, f := range fs {
		if f.IsS {
			c.w.U64(1)
			c.w.String(f.Str)
		} else {
			c.w.U64(0)
			c.w.U64(f.Int)
		}
	}
}

// S and I make fields.
func S(s string) Field { return Field{Str: s, IsS: true} }
func I(n uint64) Field { return Field{Int: n} }

// errorText is an error as the client prints it after "error: ".
func errorText(err error) string { return fmt.Sprint(err) }
