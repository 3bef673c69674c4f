package main

import (
	"time"

	"storefs/goals"
)

// buildFlags are the goal engine's limits, shared by realise and mount.
type buildFlags struct {
	MaxJobs       int           `name:"max-jobs" short:"j" default:"0" help:"Builds to run at once (0: one per core)."`
	Cores         int           `default:"0" help:"NIX_BUILD_CORES given to builders (0: all cores)."`
	MaxSilentTime time.Duration `name:"max-silent-time" help:"Kill a builder that prints nothing for this long (e.g. 10m; 0: never)."`
	Timeout       time.Duration `help:"Kill a builder that runs longer than this (0: never)."`
	FailureTTL    time.Duration `name:"failure-ttl" default:"10m" help:"How long a failed build is remembered, so that requests fail fast."`
	Subst         substFlags    `embed:""`
}

// options are the worker's options for these flags.
func (f *buildFlags) options(obs goals.Observer) goals.Options {
	return goals.Options{
		MaxJobs: f.MaxJobs, MaxSubstitutionJobs: f.Subst.MaxSubstitutionJobs, Cores: f.Cores,
		FailureTTL: f.FailureTTL, Timeout: f.Timeout, MaxSilent: f.MaxSilentTime, Observer: obs,
	}
}
