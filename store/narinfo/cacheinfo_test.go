package narinfo

import (
	"strings"
	"testing"
)

func TestCacheInfo(t *testing.T) {
	tests := []struct {
		name, in, printed string
		want              CacheInfo
	}{
		// testdata/nix-cache-info, written by `nix copy --to file://...`.
		{"nix copy", "", "StoreDir: /store\n", CacheInfo{StoreDir: "/store"}},
		// cache.nixos.org's file.
		{"cache.nixos.org", "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", "",
			CacheInfo{StoreDir: "/nix/store", WantMassQuery: true, Priority: 40, HasPriority: true}},
		{"as Nix reads it", "\nStoreDir:/nix/store  \r\n\nWantMassQuery: 0\nPriority: -3\nFoo: bar\nPriority: 7",
			"StoreDir: /nix/store\nPriority: 7\n",
			CacheInfo{StoreDir: "/nix/store", Priority: 7, HasPriority: true}},
		{"Priority 0 is kept", "StoreDir: /s\nPriority: 0\n", "", CacheInfo{StoreDir: "/s", HasPriority: true}},
	}
	for _, tt := range tests {
		in := tt.in
		if in == "" {
			in = string(readTestdata(t, "nix-cache-info"))
		}
		ci, err := ParseCacheInfo([]byte(in), tt.name)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if *ci != tt.want {
			t.Errorf("%s: read %+v, want %+v", tt.name, *ci, tt.want)
		}
		out, err := ci.Print()
		want := tt.printed
		if want == "" {
			want = in
		}
		if err != nil || string(out) != want {
			t.Errorf("%s: printed %q, %v; want %q", tt.name, out, err, want)
		}
	}
}

func TestCacheInfoMalformed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "nix-cache-info w: no StoreDir"},
		{"WantMassQuery: 1\n", "nix-cache-info w: no StoreDir"},
		{"StoreDir: /nix/store\n<html>\n", `nix-cache-info w line 2: "<html>" is not ` + "`Key: value`"},
		{"StoreDir: nix/store\n", `nix-cache-info w line 1: bad StoreDir "nix/store": store dir "nix/store" must be an absolute`},
		{"StoreDir: /nix/store/\n", `line 1: bad StoreDir "/nix/store/"`},
		{"StoreDir: \n", `line 1: bad StoreDir ""`},
		{"StoreDir: /s\nWantMassQuery: true\n", `nix-cache-info w line 2: bad WantMassQuery "true": want 0 or 1`},
		{"StoreDir: /s\n\nPriority: high\n", `nix-cache-info w line 3: bad Priority "high"`},
		{"StoreDir: /s\nPriority: 99999999999\n", `line 2: bad Priority "99999999999"`},
	}
	for _, tt := range tests {
		_, err := ParseCacheInfo([]byte(tt.in), "w")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.want)
		}
	}
	for _, ci := range []CacheInfo{{}, {StoreDir: "rel"}, {StoreDir: "/a\nPriority: 1"}, {StoreDir: "/s", Priority: 1 << 40, HasPriority: true}} {
		if _, err := ci.Print(); err == nil {
			t.Errorf("printed %+v", ci)
		}
	}
}
