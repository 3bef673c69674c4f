package main

import (
	"slices"
	"time"

	"storefs/goals"
	"storefs/realise"
)

// buildFlags are the goal engine's limits, shared by realise and mount.
type buildFlags struct {
	MaxJobs       maxJobs    `name:"max-jobs" short:"j" default:"auto" placeholder:"N" help:"Builds to run at once: a number, 0 for no local builds, or auto for one per core (${default})."`
	Cores         int        `default:"0" help:"NIX_BUILD_CORES given to builders (0: all cores)."`
	MaxSilentTime duration   `name:"max-silent-time" default:"0" placeholder:"SECONDS" help:"Kill a builder that prints nothing for this long: seconds, or with a unit (10m) (0: never)."`
	Timeout       duration   `default:"0" placeholder:"SECONDS" help:"Kill a builder that runs longer than this: seconds, or with a unit (10m) (0: never)."`
	FailureTTL    duration   `name:"failure-ttl" default:"10m" placeholder:"SECONDS" help:"How long a failed build is remembered, so that requests fail fast: seconds, or with a unit (${default})."`
	Fallback      bool       `help:"Build a derivation from source when a binary cache has its outputs but cannot deliver them (as Nix's --fallback)."`
	MaxLogSize    byteSize   `name:"max-build-log-size" default:"0" placeholder:"BYTES" help:"Kill a builder that writes more than this many bytes of log output, with K, M, G or T (0: no limit), as Nix."`
	KeepLogSize   byteSize   `name:"keep-build-log-size" default:"64M" placeholder:"BYTES" help:"How much of a build's output its log keeps: the first BYTES, then a line saying how much was dropped and the last lines (0: all) (${default})."`
	PidsMax       int        `name:"build-pids-max" default:"4096" placeholder:"N" help:"Processes and threads one build may have at once, by a cgroup's pids.max where the host allows one, else RLIMIT_NPROC of its build user (0: no limit) (${default})."`
	MemoryMax     byteSize   `name:"build-memory-max" default:"0" placeholder:"BYTES" help:"Memory one build may use, by a cgroup's memory limit where the host allows one, with K, M, G or T (0: no limit)."`
	Subst         substFlags `embed:""`
}

// options are the worker's options for these flags.
func (f *buildFlags) options(obs goals.Observer) goals.Options {
	return goals.Options{
		MaxJobs: int(f.MaxJobs), MaxSubstitutionJobs: f.Subst.MaxSubstitutionJobs,
		FailureTTL: time.Duration(f.FailureTTL), Observer: obs, Request: f.request(),
	}
}

// request is what these flags ask of each request's goals.
func (f *buildFlags) request() goals.Request {
	return goals.Request{
		Cores: f.Cores, Timeout: time.Duration(f.Timeout), MaxSilent: time.Duration(f.MaxSilentTime),
		Fallback: f.Fallback, NoLocalBuilds: f.MaxJobs == 0,
	}
}

// requestFlags are the flags of a `storefs realise` that a running mount
// applies to that request alone (sent in realiseRequest).
type requestFlags struct {
	KeepGoing    bool          `json:"keepGoing"`
	Fallback     bool          `json:"fallback"`
	Cores        int           `json:"cores"`
	MaxJobs      int           `json:"maxJobs"`
	Timeout      time.Duration `json:"timeout"`   // nanoseconds
	MaxSilent    time.Duration `json:"maxSilent"` // nanoseconds
	Substituters []string      `json:"substituters"`
}

func (f *buildFlags) requestFlags(keepGoing bool) requestFlags {
	return requestFlags{
		KeepGoing: keepGoing, Fallback: f.Fallback, Cores: f.Cores, MaxJobs: int(f.MaxJobs),
		Timeout: time.Duration(f.Timeout), MaxSilent: time.Duration(f.MaxSilentTime), Substituters: f.Subst.Substituters,
	}
}

// request is the goals.Request of a realise through the mount: its own
// limits, and its own substituters (with the mount's trusted keys) when
// they differ from the mount's; subst makes a Substituter of URLs.
func (r requestFlags) request(mountSubsts []string, subst func([]string) (goals.Substituter, error)) (goals.Request, error) {
	req := goals.Request{
		KeepGoing: r.KeepGoing, Fallback: r.Fallback, Cores: r.Cores, NoLocalBuilds: r.MaxJobs == 0,
		Timeout: r.Timeout, MaxSilent: r.MaxSilent,
	}
	if slices.Equal(r.Substituters, mountSubsts) {
		return req, nil
	}
	if len(r.Substituters) == 0 {
		req.NoSubstitutes = true
		return req, nil
	}
	sub, err := subst(r.Substituters)
	req.Substituter = sub
	return req, err
}

// configure gives a builder the limits of these flags on builds and logs.
func (f *buildFlags) configure(b *realise.Builder) *realise.Builder {
	b.MaxLogSize = int64(min(f.MaxLogSize.n, 1<<62))
	b.LogKeep = int64(min(f.KeepLogSize.n, 1<<62))
	if f.KeepLogSize.set && f.KeepLogSize.n == 0 {
		b.LogKeep = -1 // keep everything
	}
	b.MaxProcesses = f.PidsMax
	if f.PidsMax == 0 {
		b.MaxProcesses = -1 // no limit
	}
	b.MaxMemory = int64(min(f.MemoryMax.n, 1<<62))
	return b
}
