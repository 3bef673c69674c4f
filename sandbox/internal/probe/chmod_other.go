//go:build !amd64

package main

// sysChmod is chmod(2), which newer architectures do not have.
const sysChmod = -1
