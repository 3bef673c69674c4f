package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"storefs/goals"
	"storefs/store/derivation"
	"storefs/store/storepath"
	"storefs/store/wire"
)

// The build modes of BuildPaths and BuildDerivation.
const (
	buildNormal = 0
	buildRepair = 1
	buildCheck  = 2
)

// BuildResult statuses (docs/daemon.md, "BuildResult").
const (
	statusBuilt            = 0
	statusSubstituted      = 1
	statusAlreadyValid     = 2
	statusPermanentFailure = 3
	statusOutputRejected   = 5
	statusCachedFailure    = 7
	statusTimedOut         = 8
	statusMiscFailure      = 9
	statusDependencyFailed = 10
)

// target is one DerivedPath: an opaque path to make valid, or a
// derivation's outputs to build (none named: all).
type target struct {
	raw     string
	path    storepath.Path
	drv     bool // built: "<drv>!<outputs>"
	outputs []string
}

func (c *Conn) readTargets(field string) ([]target, error) {
	start := c.r.Offset()
	raws, err := c.r.Strings(field, wire.MaxPaths, wire.MaxPathLen+wire.MaxSmall)
	if err != nil {
		return nil, err
	}
	out := make([]target, len(raws))
	for i, raw := range raws {
		t := target{raw: raw}
		p, outs, built := strings.Cut(raw, "!")
		if t.path, err = c.dir.Parse(p); err != nil {
			return nil, c.r.Errorf(fmt.Sprintf("%s[%d]", field, i), start, "%v", err)
		}
		if built || minor(c.client) < 30 && t.path.IsDerivation() {
			t.drv = true
			if outs != "*" && outs != "" {
				t.outputs = strings.Split(outs, ",")
			}
		}
		out[i] = t
	}
	return out, nil
}

// result is what became of one target.
type result struct {
	t       target
	status  uint64
	err     error
	start   time.Time
	stop    time.Time
	outputs map[string]storepath.Path // the wanted outputs, when built
	built   bool                      // a builder ran (and maybe failed)
}

// realise makes every target valid, all at once; it returns each one's
// result in request order.
func (c *Conn) realise(ctx context.Context, ts []target) []result {
	ctx = c.withOptions(ctx)
	ctx, stop := c.watch(ctx)
	defer stop()
	// Without keep-going, the first failure stops the other targets, as
	// in Nix (the engine stops what no one else wants).
	keepGoing := c.Options().KeepGoing
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The derivations this will build, for their logs.
	m := &missing{c: c, willBuild: map[storepath.Path]bool{}, unknown: map[storepath.Path]bool{}, seen: map[string]bool{}}
	for _, t := range ts {
		m.visit(t) // best effort: a failure shows in the result
	}
	c.sink = c.srv.subscribe(c, keys(m.willBuild))
	defer func() {
		c.sink.close(c.srv)
		c.sink = nil
		for drv := range m.willBuild {
			c.srv.publishLog(drv)
		}
	}()
	res := make([]result, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = c.realiseOne(ctx, t)
			if res[i].err != nil && !keepGoing {
				cancel()
			}
		}()
	}
	wg.Wait()
	return res
}

func (c *Conn) realiseOne(ctx context.Context, t target) result {
	r := result{t: t, start: time.Now()}
	defer func() { r.stop = time.Now() }()
	if !t.drv {
		ok, err := c.s.IsValid(t.path)
		if err == nil && !ok {
			err = c.srv.Engine.Realise(ctx, t.path)
			r.status = statusSubstituted
		} else {
			r.status = statusAlreadyValid
		}
		r.err = err
		r.fail()
		r.stop = time.Now()
		return r
	}
	outs, err := c.s.DerivationOutputs(t.path)
	if err != nil {
		r.err = err
		r.fail()
		return r
	}
	wanted := t.outputs
	if len(wanted) == 0 {
		for id := range outs {
			wanted = append(wanted, id)
		}
	}
	valid := true
	for _, id := range wanted {
		p, ok := outs[id]
		if !ok {
			r.err = fmt.Errorf("derivation %s has no output %q", c.dir.Print(t.path), id)
			r.fail()
			return r
		}
		if ok, err := c.s.IsValid(p); err != nil || !ok {
			valid = false
		}
	}
	r.status = statusAlreadyValid
	if !valid {
		r.status = statusBuilt
		_, r.err = c.srv.Engine.BuildDerivation(ctx, t.path, t.outputs...)
		r.built = true // unless fail says the builder never ran
	}
	r.outputs = map[string]storepath.Path{}
	for _, id := range wanted {
		r.outputs[id] = outs[id]
	}
	r.fail()
	r.stop = time.Now()
	return r
}

// fail sets the status of a failed result as Nix classifies it.
func (r *result) fail() {
	if r.err == nil {
		return
	}
	r.outputs = nil
	var be *goals.BuildError
	var de *goals.DependencyError
	switch {
	case errors.As(r.err, &de):
		r.status = statusDependencyFailed
		r.built = false
	case errors.As(r.err, &be) && be.Cached:
		r.status = statusCachedFailure
		r.built = false
	case errors.As(r.err, &be) && be.Status == goals.StatusTimedOut:
		r.status = statusTimedOut
	case errors.As(r.err, &be) && be.Status == goals.StatusOutputRejected:
		r.status = statusOutputRejected
	case errors.As(r.err, &be):
		r.status = statusPermanentFailure
	default:
		r.status = statusMiscFailure
		r.built = false
	}
}

func (c *Conn) readBuildMode() (uint64, error) {
	start := c.r.Offset()
	mode, err := c.r.Int("buildMode")
	if err == nil && mode > buildCheck {
		err = c.r.Errorf("buildMode", start, "%d is not 0 (normal), 1 (repair) or 2 (check)", mode)
	}
	return mode, err
}

// checkMode refuses what storefs or the client's trust does not allow.
func (c *Conn) checkMode(mode uint64) error {
	switch {
	case mode == buildRepair && !c.peer.Trusted:
		return errNotTrusted("repair paths")
	case mode == buildRepair:
		return errors.New("repairing builds is not supported by storefs")
	case mode == buildCheck:
		return errors.New("checking builds (--check) is not supported by storefs")
	}
	return nil
}

// readBuildRequest reads what BuildPaths and BuildPathsWithResults send,
// the targets and the build mode, and starts the work once the mode is
// one storefs can do.
func (c *Conn) readBuildRequest() ([]target, error) {
	ts, err := c.readTargets("paths")
	if err != nil {
		return nil, err
	}
	mode, err := c.readBuildMode()
	if err != nil {
		return nil, err
	}
	c.startWork()
	return ts, c.checkMode(mode)
}

func opBuildPaths(ctx context.Context, c *Conn) error {
	ts, err := c.readBuildRequest()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range c.realise(ctx, ts) {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}

func opBuildPathsWithResults(ctx context.Context, c *Conn) error {
	ts, err := c.readBuildRequest()
	if err != nil {
		return err
	}
	res := c.realise(ctx, ts)
	c.stopWork()
	c.w.U64(uint64(len(res)))
	for _, r := range res {
		c.w.String(r.t.raw) // the client maps results back by this
		c.writeResult(r)
	}
	return nil
}

// writeResult writes a BuildResult after its path: status, message, times
// and the built outputs as realisations.
func (c *Conn) writeResult(r result) {
	c.w.U64(r.status)
	msg := ""
	if r.err != nil {
		msg = errorText(r.err)
	}
	c.w.String(msg)
	c.w.Bool(r.built) // times built: once, when a builder ran
	c.w.Bool(false)
	c.w.U64(uint64(r.start.Unix()))
	c.w.U64(uint64(r.stop.Unix()))
	c.writeRealisations(r)
}

// realisation is Nix's Realisation as JSON; the keys sort as Nix's do.
type realisation struct {
	DependentRealisations map[string]string `json:"dependentRealisations"`
	ID                    string            `json:"id"`
	OutPath               string            `json:"outPath"`
	Signatures            []string          `json:"signatures"`
}

func (c *Conn) writeRealisations(r result) {
	if len(r.outputs) == 0 {
		c.w.U64(0)
		return
	}
	hash, err := c.hashModulo(r.t.path)
	if err != nil {
		c.srv.logf("daemon: hashing %s for its realisations: %v", c.dir.Print(r.t.path), err)
		c.w.U64(0)
		return
	}
	ids := make([]string, 0, len(r.outputs))
	for id := range r.outputs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	c.w.U64(uint64(len(ids)))
	for _, id := range ids {
		key := "sha256:" + hash + "!" + id
		data, _ := json.Marshal(realisation{DependentRealisations: map[string]string{}, ID: key,
			OutPath: r.outputs[id].Base(), Signatures: []string{}})
		c.w.String(key)
		c.w.String(string(data))
	}
}

// hashModulo is the derivation's hash modulo its outputs, in base16: the
// key of its outputs' realisations.
func (c *Conn) hashModulo(drv storepath.Path) (string, error) {
	d, err := c.s.ReadDerivation(drv)
	if err != nil {
		return "", err
	}
	h := derivation.NewHasher(c.dir, c.s.ReadDerivation)
	hm, err := h.HashModulo(d, true)
	if err != nil {
		return "", err
	}
	return hm.Hex(), nil
}

func opEnsurePath(ctx context.Context, c *Conn) error {
	p, err := c.r.Path("path", c.dir)
	if err != nil {
		return err
	}
	c.startWork()
	wctx, stop := c.watch(c.withOptions(ctx))
	err = c.srv.Engine.Realise(wctx, p)
	stop()
	if err != nil {
		return err
	}
	c.stopWork()
	c.w.U64(1)
	return nil
}
