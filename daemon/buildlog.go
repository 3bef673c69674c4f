package daemon

import (
	"fmt"
	"sync/atomic"

	"storefs/store/storepath"
)

// Build logs reach the client live: the builder's lines come to
// Server.LogLine (cmd/storefs wires realise.Builder.OnLogLine to it), which
// hands each to the connections whose requests are building that
// derivation, as a buildLogLine result of a build activity.
//
// A builder's output must never wait for a client: a client that stops
// reading would stall a build others wait for too. So each operation's
// sink has a queue and a goroutine of its own that writes to the client;
// LogLine only queues, and drops a line when the queue is full.

// sinkQueue is how many log events a slow client may fall behind by.
const sinkQueue = 4096

type logEvent struct {
	drv  storepath.Path
	kind eventKind
	line string
}

type eventKind int

const (
	evLine    eventKind = iota
	evStarted           // the build of drv started
	evBuilt             // it ended well
	evFailed            // it failed
)

// logSink is one operation's subscription to the logs of the derivations
// it builds.
type logSink struct {
	c       *Conn
	ch      chan logEvent
	done    chan struct{}
	dropped atomic.Int64 // events the queue had no room for

	// Owned by the sink's goroutine until done:
	acts     map[storepath.Path]uint64 // open build activities
	builds   uint64                    // the builds activity, with the progress
	progress [4]uint64                 // done, expected, running, failed
}

// LogLine passes a line that the builder of drv printed to the clients
// waiting for drv. It never blocks on a client.
func (srv *Server) LogLine(drv storepath.Path, line string) {
	srv.logMu.Lock()
	defer srv.logMu.Unlock()
	for s := range srv.logSubs[drv] {
		s.send(logEvent{drv: drv, line: line})
	}
}

// BuildStarted and BuildEnded tell the clients waiting for drv that its
// build started or ended (err nil: it succeeded), for their activities and
// progress. cmd/storefs calls them from the engine's Observer.
func (srv *Server) BuildStarted(drv storepath.Path) { srv.event(drv, evStarted) }

func (srv *Server) BuildEnded(drv storepath.Path, err error) {
	if err != nil {
		srv.event(drv, evFailed)
	} else {
		srv.event(drv, evBuilt)
	}
}

func (srv *Server) event(drv storepath.Path, k eventKind) {
	srv.logMu.Lock()
	defer srv.logMu.Unlock()
	for s := range srv.logSubs[drv] {
		s.send(logEvent{drv: drv, kind: k})
	}
}

// send queues an event, or drops it if the client is that far behind.
func (s *logSink) send(e logEvent) {
	select {
	case s.ch <- e:
	default:
		s.dropped.Add(1)
	}
}

// subscribe starts a sink for the derivations drvs.
func (srv *Server) subscribe(c *Conn, drvs []storepath.Path) *logSink {
	s := &logSink{c: c, ch: make(chan logEvent, sinkQueue), done: make(chan struct{}), acts: map[storepath.Path]uint64{}}
	if len(drvs) > 0 {
		s.builds = c.StartActivity(0, actBuilds, "", 0)
		s.progress[1] = uint64(len(drvs))
		s.report()
	}
	go s.run()
	srv.logMu.Lock()
	defer srv.logMu.Unlock()
	if srv.logSubs == nil {
		srv.logSubs = map[storepath.Path]map[*logSink]bool{}
	}
	for _, d := range drvs {
		if srv.logSubs[d] == nil {
			srv.logSubs[d] = map[*logSink]bool{}
		}
		srv.logSubs[d][s] = true
	}
	return s
}

func (s *logSink) run() {
	defer close(s.done)
	for e := range s.ch {
		switch e.kind {
		case evLine:
			s.c.Result(s.activity(e.drv), resBuildLog, S(e.line))
		case evStarted:
			s.activity(e.drv)
		case evBuilt, evFailed:
			if id, ok := s.acts[e.drv]; ok {
				s.c.StopActivity(id)
				delete(s.acts, e.drv)
				s.progress[2]--
			}
			if e.kind == evBuilt {
				s.progress[0]++
			} else {
				s.progress[3]++
			}
			s.report()
		}
	}
}

// report sends the progress of the builds activity: done, expected,
// running, failed.
func (s *logSink) report() {
	if s.builds != 0 {
		p := s.progress
		s.c.Result(s.builds, resProgress, I(p[0]), I(p[1]), I(p[2]), I(p[3]))
	}
}

// activity is drv's build activity, opened on first use.
func (s *logSink) activity(drv storepath.Path) uint64 {
	if id, ok := s.acts[drv]; ok {
		return id
	}
	name := s.c.dir.Print(drv)
	id := s.c.StartActivity(verbosityInfo, actBuild, fmt.Sprintf("building '%s'", name), 0, S(name), S(""), I(1), I(1))
	s.acts[drv] = id
	s.progress[2]++
	s.report()
	return id
}

// close ends the sink's subscriptions, writes what is queued and ends its
// activities. Called by the operation, before stopWork.
func (s *logSink) close(srv *Server) {
	srv.logMu.Lock()
	for d, m := range srv.logSubs {
		if m[s] {
			delete(m, s)
			if len(m) == 0 {
				delete(srv.logSubs, d)
			}
		}
	}
	srv.logMu.Unlock()
	close(s.ch) // no sender is left: LogLine sends under logMu
	<-s.done
	if n := s.dropped.Load(); n > 0 {
		s.c.Log(1, fmt.Sprintf("warning: %d build log lines were dropped: this client read them too slowly", n))
	}
	for _, id := range s.acts {
		s.c.StopActivity(id)
	}
	if s.builds != 0 {
		s.c.StopActivity(s.builds)
	}
}
