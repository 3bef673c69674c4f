package main

// derivationCmd is filled in by the derivation command's file.
type derivationCmd struct{}

func (c *derivationCmd) Run() error { return nil }
