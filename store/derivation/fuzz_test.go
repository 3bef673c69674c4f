package derivation

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// seeds are real derivations and JSON from Nix (testdata/README) and a few
// broken ones.
func seeds(f *testing.F, pattern string, bad ...string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds testdata/%s: %v", pattern, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	for _, b := range bad {
		f.Add([]byte(b))
	}
}

// jsonRoundTrips reports whether ShowJSON keeps all of d: it prints a fixed
// output's computed path, not the recorded one.
func jsonRoundTrips(d *Derivation) bool {
	if !d.IsFixedOutput() {
		return true
	}
	p, err := d.FixedOutputPath(testDir)
	return err == nil && len(d.Outputs) == 1 && p == d.Outputs["out"].Path
}

func FuzzParseATerm(f *testing.F) {
	seeds(f, "*.drv",
		"", "Derive(", `Derive([],[],[],"","",[],[])`,
		`Derive([("out","/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a","r:sha1","cde1bb4a1e2ebb3d1a0a4e7b0d4f7b0d3c9a9c1e")],[],[],"x","/b",["a\"\\\n\r\t"],[("name","a"),("out","/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a")])`,
		`Derive([("out","","","")],[],[],"x","/b",[],[("name","a\a")])`)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data, testDir)
		if err != nil {
			return
		}
		if got := d.ATerm(testDir); !bytes.Equal(got, data) {
			t.Fatalf("round trip:\n got %q\nwant %q", got, data)
		}
		// None of these may panic, whatever they return.
		_ = d.Validate()
		_, _ = NewHasher(testDir, nil).OutputPaths(d)
		js, err := ShowJSON(testDir, d)
		if err != nil || !jsonRoundTrips(d) {
			return
		}
		back, err := ParseJSON(js, testDir)
		if err != nil {
			t.Fatalf("ParseJSON of ShowJSON %s: %v", js, err)
		}
		if len(back) != 1 || !reflect.DeepEqual(back[0], d) {
			t.Fatalf("JSON round trip of %q gives %+v", data, back[0])
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	seeds(f, "*.json",
		"", "{}", "[]", `{"outputs":{}}`, `{"a":"\ud800"}`, "{\"builder\":\"\xff\\u00e9\\ud83d\\ude00\"}",
		`{"outputs":{"out":{}},"inputSrcs":[],"inputDrvs":{},"system":"x","builder":"/b","args":[],"env":{"name":"a"}}`)
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := ParseJSON(data, testDir)
		if err != nil {
			return
		}
		for _, d := range ds {
			_, _ = NewHasher(testDir, nil).OutputPaths(d)
			if d.Validate() != nil || !complete(d) {
				continue
			}
			// A valid, complete derivation prints as ATerm that parses back.
			aterm := d.ATerm(testDir)
			again, err := Parse(aterm, testDir)
			if err != nil {
				t.Fatalf("Parse of ATerm %q: %v", aterm, err)
			}
			if !reflect.DeepEqual(again, d) {
				t.Fatalf("ATerm round trip of %+v gives %+v", d, again)
			}
			js, err := ShowJSON(testDir, d)
			if err != nil || !jsonRoundTrips(d) {
				continue
			}
			back, err := ParseJSON(js, testDir)
			if err != nil {
				t.Fatalf("ParseJSON of ShowJSON %s: %v", js, err)
			}
			if len(back) != 1 || !reflect.DeepEqual(back[0], d) {
				t.Fatalf("JSON round trip of %+v gives %+v", d, back)
			}
			js2, _ := ShowJSON(testDir, back[0])
			if !bytes.Equal(js, js2) {
				t.Fatalf("ShowJSON not stable:\n%s\n%s", js, js2)
			}
		}
	})
}
