package main

// keyCmd is filled in by the key command's file.
type keyCmd struct{}

func (c *keyCmd) Run() error { return nil }
