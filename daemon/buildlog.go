package daemon

import (
	"fmt"
	"sync"

	"storefs/store/storepath"
)

// Build logs reach the client live: the builder's lines come to
// Server.LogLine (cmd/storefs wires realise.Builder.OnLogLine to it), which
// hands each to the connections whose requests are building that
// derivation, as a buildLogLine result of a build activity.

// logSink is one operation's subscription to the logs of the derivations
// it builds.
type logSink struct {
	c    *Conn
	mu   sync.Mutex // guards acts
	acts map[storepath.Path]uint64
}

// LogLine passes a line that the builder of drv printed to the clients
// waiting for drv. It never blocks on the store or the engine.
func (srv *Server) LogLine(drv storepath.Path, line string) {
	srv.logMu.Lock()
	sinks := make([]*logSink, 0, len(srv.logSubs[drv]))
	for s := range srv.logSubs[drv] {
		sinks = append(sinks, s)
	}
	srv.logMu.Unlock()
	for _, s := range sinks {
		s.line(drv, line)
	}
}

// subscribe starts a sink for the derivations drvs.
func (srv *Server) subscribe(c *Conn, drvs []storepath.Path) *logSink {
	s := &logSink{c: c, acts: map[storepath.Path]uint64{}}
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

// close ends the sink's subscriptions and its activities.
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
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, id := range s.acts {
		s.c.StopActivity(id)
		delete(s.acts, d)
	}
}

// start opens the build activity of drv, once.
func (s *logSink) start(drv storepath.Path) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.acts[drv]; ok {
		return id
	}
	name := s.c.dir.Print(drv)
	id := s.c.StartActivity(verbosityInfo, actBuild, fmt.Sprintf("building '%s'", name), 0, S(name), S(""), I(1), I(1))
	s.acts[drv] = id
	return id
}

func (s *logSink) line(drv storepath.Path, line string) {
	id := s.start(drv)
	s.c.Result(id, resBuildLog, S(line))
}
