package sandbox

import (
	"strings"
	"testing"
)

// TestOnlyStdioReachesBuilder: no descriptor of storefs or of the init
// stage (the status pipe, the Go runtime's) survives into the builder, as
// in Nix, where a builder sees 0, 1 and 2 only.
func TestOnlyStdioReachesBuilder(t *testing.T) {
	// exec: ls replaces the shell, so no descriptor of the shell's own is
	// open; ls reads the directory through fd 3.
	b := newBuild(t, `mkdir $out; exec ls /proc/self/fd > $out/fds`)
	b.mustSucceed(t)
	for _, fd := range strings.Fields(b.output(t, "fds")) {
		switch fd {
		case "0", "1", "2", "3":
		default:
			t.Errorf("builder holds descriptor %s; want only 0, 1, 2 (and ls's own 3)", fd)
		}
	}
}
