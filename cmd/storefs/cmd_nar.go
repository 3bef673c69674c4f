package main

// narCmd is filled in by the nar command's file.
type narCmd struct{}

func (c *narCmd) Run() error { return nil }
