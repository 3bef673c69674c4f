package main

// hashCmd is filled in by the hash command's file.
type hashCmd struct{}

func (c *hashCmd) Run() error { return nil }
