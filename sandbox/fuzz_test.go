package sandbox

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSpecCheck: any spec is refused with a *SetupError or accepted, never
// a panic; an accepted one has clean absolute paths, each input and output
// directly under the store dir, and no NUL where execve would choke.
func FuzzSpecCheck(f *testing.F) {
	dir := f.TempDir()
	f.Add("/store", "/store/"+bbBase+"/bin/sh", "/store/"+bbBase, "/store/"+outBase, "-c", "PATH=/path-not-set", 1000, 100)
	f.Add("/nix/store", "/nix/store/x/bin/sh", "/nix/store/x", "/nix/store/y", "", "out=/nix/store/y", 30001, 30001)
	f.Add("/", "bin/sh", "/store/../etc", "/store/a/b", "a\x00b", "=x", 0, -1)
	f.Add("/dev", "/store//x", "/store/.", "/store/..", "", "NOEQUALS", 1<<32, 5)
	f.Add("store", "", "", "", "", "", 1, 1)
	f.Fuzz(func(t *testing.T, store, builder, input, output, arg, env string, uid, gid int) {
		s := &Spec{
			Builder:  builder,
			Args:     []string{arg},
			Env:      []string{env},
			StoreDir: store,
			Inputs:   []Mount{{Host: dir, Path: input}},
			BuildDir: dir,
			Outputs:  []Mount{{Host: filepath.Join(dir, "out"), Path: output}},
			HostUID:  uid,
			HostGID:  gid,
		}
		err := s.check()
		if err != nil {
			var se *SetupError
			if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), "sandbox: checking the build spec: ") {
				t.Fatalf("error %q is not a spec *SetupError", err)
			}
			return
		}
		for _, p := range []string{store, builder, input, output} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
				t.Fatalf("accepted the path %q", p)
			}
		}
		for _, p := range []string{input, output} {
			if filepath.Dir(p) != store {
				t.Fatalf("accepted %q under the store dir %q", p, store)
			}
		}
		if input == output || uid <= 0 || gid <= 0 || strings.ContainsRune(arg+env, 0) || !strings.Contains(env, "=") || env[0] == '=' {
			t.Fatalf("accepted input %q output %q uid %d gid %d arg %q env %q", input, output, uid, gid, arg, env)
		}
	})
}

// FuzzInitError: whatever the init stage wrote, Run reports a *SetupError.
func FuzzInitError(f *testing.F) {
	f.Add([]byte(`{"What":"bind-mounting input /a at /store/a","Errno":13,"Msg":"permission denied"}`))
	f.Add([]byte(`{"What":"running the init stage","Msg":"init stage panicked: boom"}`))
	f.Add([]byte(`{"What":`))
	f.Add([]byte("not json at all"))
	f.Add([]byte(`{"Errno":-1}`))
	f.Fuzz(func(t *testing.T, status []byte) {
		err := initError(status)
		var se *SetupError
		if !errors.As(err, &se) || !errors.Is(err, ErrSetup) || !strings.HasPrefix(err.Error(), "sandbox: ") {
			t.Fatalf("initError(%q) = %v, want a *SetupError", status, err)
		}
	})
}
