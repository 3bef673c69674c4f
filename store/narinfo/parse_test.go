package narinfo

import (
	"strings"
	"testing"

	"storefs/store/signature"
)

const (
	hPath   = "/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo"
	hHash   = "sha256:1342i57jds7glvkgklvi00kn1dsljsf2syhdf6r85qzpfnagppr2"
	hRef    = "7r7cqiqf9ij7nlgf033alwajnvs7ylcg-hello.txt"
	hRef2   = "iapd0416mfx32j7gky4wmx2y6h4idaqa-dir"
	hSig    = "test-cache-1:7iRAg8gRzpqg/7v/AGMhi7C6fL/5Eud3RDjZAPR47fiMblnCUgiIFljkDW5eYntDhELgY+aMpPuX/1DXA6Q3Ag=="
	minimal = "StorePath: " + hPath + "\nURL: nar/x.nar\nNarHash: " + hHash + "\nNarSize: 528\n"
)

// with appends lines to minimal.
func with(lines ...string) string { return minimal + strings.Join(lines, "") }

func sigOf(key string, n int) signature.Signature {
	return signature.Signature{KeyName: key, Sig: make([]byte, n)}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "narinfo w: no StorePath"},
		{"URL: u\nNarHash: " + hHash + "\nNarSize: 1\n", "narinfo w: no StorePath"},
		{"StorePath: " + hPath + "\nNarHash: " + hHash + "\nNarSize: 1\n", "narinfo w: no URL"},
		{"StorePath: " + hPath + "\nURL: \nNarHash: " + hHash + "\nNarSize: 1\n", "narinfo w: no URL"},
		{"StorePath: " + hPath + "\nURL: u\nNarSize: 1\n", "narinfo w: no NarHash"},
		{"StorePath: " + hPath + "\nURL: u\nNarHash: " + hHash + "\n", "narinfo w: no NarSize"},
		{"StorePath: " + hPath + "\nURL: u\nNarHash: " + hHash + "\nNarSize: 0\n", "narinfo w: NarSize is 0"},
		{strings.TrimSuffix(minimal, "\n"), "narinfo w line 4: no newline at the end"},
		{minimal + "\n", `narinfo w line 5: "" is not ` + "`Key: value`"},
		{"StorePath:" + hPath + "\n", `narinfo w line 1: "StorePath:/store/`},
		{"StorePath " + hPath + "\n", `narinfo w line 1: "StorePath /store/`},
		{": x\n", `narinfo w line 1: ": x" is not`},
		{"References:\n", `narinfo w line 1: "References:" is not`},
		{"StorePath: /nix/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo\n", `line 1: bad StorePath "/nix/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo": path "/nix/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo" is not in the store /store`},
		{"StorePath: /store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo/bin\n", "line 1: bad StorePath"},
		{"StorePath: /store/21fq2mksw8r70ffnq496dnnwqnhgpw53-\n", "line 1: bad StorePath"},
		{"StorePath: /store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x\n", `has invalid character 'e'`},
		{with("FileHash: sha256:abc\n"), `narinfo w line 5: bad FileHash "sha256:abc": sha256 hash "abc": length 3`},
		{with("FileHash: 1342i57jds7glvkgklvi00kn1dsljsf2syhdf6r85qzpfnagppr2\n"), "line 5: bad FileHash"},
		{with("FileSize: -1\n"), `narinfo w line 5: bad FileSize "-1"`},
		{with("FileSize: 18446744073709551616\n"), `line 5: bad FileSize "18446744073709551616": strconv.ParseUint`},
		{with("FileSize:  1\n"), `line 5: bad FileSize " 1"`},
		{"StorePath: " + hPath + "\nURL: u\nNarHash: sha256:x\n", `narinfo w line 3: bad NarHash "sha256:x"`},
		{"StorePath: " + hPath + "\nURL: u\nNarHash: md6:x\n", `line 3: bad NarHash "md6:x": hash "md6:x": unknown hash algorithm "md6"`},
		{"NarSize: 1e3\n", `narinfo w line 1: bad NarSize "1e3"`},
		{with("References: " + hRef + " /store/" + hRef2 + "\n"), `line 5: bad References "` + hRef + ` /store/` + hRef2 + `": store path "/store/`},
		{with("References: "+hRef+"\n", "References: "+hRef2+"\n"), "narinfo w line 6: a second References line"},
		{with("Deriver: /store/2xaplx7cdhp86gk0n9ypxmzca0rdph8z-out-demo.drv\n"), "line 5: bad Deriver"},
		{with("Deriver: unknown\n"), `line 5: bad Deriver "unknown"`},
		{with("Sig: "+hSig+"\n", "Sig: test-cache-1:YWI=\n"), `narinfo w line 6: bad Sig "test-cache-1:YWI=": signature "test-cache-1": base64 decodes to 2 bytes, want 64`},
		{with("Sig: nokey\n"), `line 5: bad Sig "nokey": signature "nokey" has no colon`},
		{with("CA: fixed:r:sha256:x\n"), `line 5: bad CA "fixed:r:sha256:x"`},
		{with("CA: source:sha256:" + hHash[7:] + "\n"), `line 5: bad CA "source:sha256:`},
		{with("CA: fixed:r:"+hHash+"\n", "CA: fixed:r:"+hHash+"\n"), "narinfo w line 6: a second CA line"},
	}
	for _, tt := range tests {
		ni, err := Parse([]byte(tt.in), storeDir, "w")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q):\n error %v\n want  %q", tt.in, err, tt.want)
			if ni != nil {
				t.Errorf("and a value %+v", ni)
			}
		}
	}
}

// What Nix 2.8's reader accepts and how it reads it.
func TestParseAsNix(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(*NarInfo) bool
		printed  string // "" means the input itself
	}{
		{"unknown keys and lines ignored", with("Foo: bar\nnarhash: x\nX-Y: \n"),
			func(n *NarInfo) bool { return n.URL == "nar/x.nar" },
			"StorePath: " + hPath + "\nURL: nar/x.nar\nCompression: bzip2\nNarHash: " + hHash + "\nNarSize: 528\nReferences: \n"},
		{"missing Compression is bzip2", minimal,
			func(n *NarInfo) bool { return n.Compression == "bzip2" && n.FileHash.IsZero() && n.FileSize == 0 }, ""},
		{"empty Compression is bzip2", with("Compression: \n"),
			func(n *NarInfo) bool { return n.Compression == "bzip2" }, ""},
		{"last value wins", with("URL: second\nNarSize: 7\nSystem: a\nSystem: x86_64-linux\n"),
			func(n *NarInfo) bool { return n.URL == "second" && n.NarSize == 7 && n.System == "x86_64-linux" }, ""},
		{"References after an empty one", with("References: \nReferences: " + hRef2 + "  " + hRef + " " + hRef + "\n"),
			func(n *NarInfo) bool {
				return len(n.References) == 2 && n.References[0].Base() == hRef && n.References[1].Base() == hRef2
			}, ""},
		{"unknown-deriver", with("Deriver: unknown-deriver\n"),
			func(n *NarInfo) bool { return n.Deriver.IsZero() }, ""},
		{"Sig lines are a sorted set", with("Sig: zz:" + hSig[13:] + "\nSig: " + hSig + "\nSig: zz:" + hSig[13:] + "\n"),
			func(n *NarInfo) bool { return len(n.Sigs) == 2 && n.Sigs[0].KeyName == "test-cache-1" }, ""},
		{"empty CA is none, then a CA", with("CA: \nCA: fixed:r:" + hHash + "\n"),
			func(n *NarInfo) bool { return n.CA.Recursive && n.CA.Hash.String() == hHash }, ""},
		{"hex and SRI hashes", "StorePath: " + hPath + "\nURL: u\nNarHash: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nNarSize: 1\nFileHash: sha512:" + strings.Repeat("00", 64) + "\n",
			func(n *NarInfo) bool {
				return n.NarHash.String() == "sha256:"+strings.Repeat("0", 52) && n.FileHash.Algo.String() == "sha512"
			}, ""},
		{"FileSize without FileHash", with("FileSize: 3\n"),
			func(n *NarInfo) bool { return n.FileSize == 3 }, ""},
		{"values keep their spaces", with("URL:  spaced \n"),
			func(n *NarInfo) bool { return n.URL == " spaced " }, ""},
	}
	for _, tt := range tests {
		ni, err := Parse([]byte(tt.in), storeDir, "w")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.check(ni) {
			t.Errorf("%s: read as %+v", tt.name, ni)
		}
		out, err := ni.Print(storeDir)
		if err != nil {
			t.Errorf("%s: print: %v", tt.name, err)
			continue
		}
		if tt.printed != "" && string(out) != tt.printed {
			t.Errorf("%s: printed\n%s\nwant\n%s", tt.name, out, tt.printed)
		}
		again, err := Parse(out, storeDir, "again")
		if err != nil || !tt.check(again) {
			t.Errorf("%s: printed form %q reads back as %+v, %v", tt.name, out, again, err)
		}
	}
}

func TestPrintRefuses(t *testing.T) {
	good := func() *NarInfo {
		ni, err := Parse([]byte(minimal), storeDir, "m")
		if err != nil {
			t.Fatal(err)
		}
		return ni
	}
	tests := []struct {
		change func(*NarInfo)
		want   string
	}{
		{func(n *NarInfo) { *n = NarInfo{} }, "narinfo: no StorePath"},
		{func(n *NarInfo) { n.URL = "" }, "no URL"},
		{func(n *NarInfo) { n.NarSize = 0 }, "NarSize is 0"},
		{func(n *NarInfo) { n.NarHash = good().FileHash }, "no NarHash"},
		{func(n *NarInfo) { n.URL = "a\nSig: forged" }, `URL "a\nSig: forged" holds a line break`},
		{func(n *NarInfo) { n.System = "x\n" }, "System"},
		{func(n *NarInfo) { n.Compression = "\n" }, "Compression"},
		{func(n *NarInfo) { n.Sigs = append(n.Sigs, n.Sigs...); n.Sigs = append(n.Sigs, sigOf("k", 3)) }, "want 64"},
	}
	for i, tt := range tests {
		ni := good()
		tt.change(ni)
		if _, err := ni.Print(storeDir); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("case %d: error %v, want %q", i, err, tt.want)
		}
	}
}
