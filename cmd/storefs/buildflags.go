package main

import (
	"time"

	"storefs/goals"
)

// buildFlags are the goal engine's limits, shared by realise and mount.
type buildFlags struct {
	MaxJobs       maxJobs    `name:"max-jobs" short:"j" default:"auto" placeholder:"N" help:"Builds to run at once: a number, 0 for no local builds, or auto for one per core (${default})."`
	Cores         int        `default:"0" help:"NIX_BUILD_CORES given to builders (0: all cores)."`
	MaxSilentTime duration   `name:"max-silent-time" default:"0" placeholder:"SECONDS" help:"Kill a builder that prints nothing for this long: seconds, or with a unit (10m) (0: never)."`
	Timeout       duration   `default:"0" placeholder:"SECONDS" help:"Kill a builder that runs longer than this: seconds, or with a unit (10m) (0: never)."`
	FailureTTL    duration   `name:"failure-ttl" default:"10m" placeholder:"SECONDS" help:"How long a failed build is remembered, so that requests fail fast: seconds, or with a unit (${default})."`
	Fallback      bool       `help:"Build a derivation from source when a binary cache has its outputs but cannot deliver them (as Nix's --fallback)."`
	Subst         substFlags `embed:""`
}

// options are the worker's options for these flags.
func (f *buildFlags) options(obs goals.Observer) goals.Options {
	return goals.Options{
		MaxJobs: int(f.MaxJobs), MaxSubstitutionJobs: f.Subst.MaxSubstitutionJobs, Cores: f.Cores,
		FailureTTL: time.Duration(f.FailureTTL), Timeout: time.Duration(f.Timeout),
		MaxSilent: time.Duration(f.MaxSilentTime), Fallback: f.Fallback, Observer: obs,
	}
}
