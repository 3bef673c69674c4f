package main

import "runtime/debug"

// version is set at link time (go build -ldflags "-X main.version=1.2");
// when it is not, versionString takes it from the build info.
var version = ""

// versionString is what storefs --version prints after "storefs ": the
// linked version, else the module's version, else "devel" with the VCS
// revision Go stamped into the binary (and "+dirty" if the tree had
// uncommitted changes).
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v != "" && v != "(devel)" {
		return v
	}
	v = "devel"
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		v += "-" + rev[:min(12, len(rev))]
		if dirty {
			v += "+dirty"
		}
	}
	return v
}
