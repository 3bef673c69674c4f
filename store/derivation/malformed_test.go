package derivation

import (
	"errors"
	"strings"
	"testing"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

const (
	pathA = "/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a"
	pathB = "/store/pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-b"
	drvA  = "/store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv"
	drvB  = "/store/0ak6abdqpfgd9yfmsgzvn7d9a1gpc4l0-b.drv"
	sha1x = "cde1bb4a1e2ebb3d1a0a4e7b0d4f7b0d3c9a9c1e"
)

// aterm assembles a derivation from its seven fields, to break one at a time.
func aterm(outputs, inputDrvs, inputSrcs, system, builder, args, env string) string {
	return "Derive(" + strings.Join([]string{outputs, inputDrvs, inputSrcs, system, builder, args, env}, ",") + ")"
}

const (
	goodOutputs = `[("out","` + pathA + `","","")]`
	goodEnv     = `[("name","a"),("out","` + pathA + `")]`
)

func TestParseMalformed(t *testing.T) {
	good := aterm(goodOutputs, `[]`, `[]`, `"x86_64-linux"`, `"/bin/sh"`, `[]`, goodEnv)
	if _, err := Parse([]byte(good), testDir); err != nil {
		t.Fatalf("the base case does not parse: %v", err)
	}
	for _, c := range []struct {
		name, in, want string
	}{
		{"empty", "", `offset 0: expected "Derive(" at the start of a derivation, found end of input`},
		{"not a derivation", "Derivx(", `offset 0: expected "Derive("`},
		{"truncated after Derive(", "Derive(", `offset 7: expected "[" to open outputs, found end of input`},
		{"truncated in a string", good[:20], "offset 15: unterminated string (path of output out)"},
		{"truncated before the end", good[:len(good)-1], `expected ")" to close the derivation, found end of input`},
		{"trailing newline", good + "\n", "1 bytes after the end of the derivation"},
		{"trailing derivation", good + good, "bytes after the end of the derivation"},
		{"outputs unsorted", aterm(`[("out","`+pathA+`","",""),("dev","`+pathB+`","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, `[]`),
			`offset 66: outputs not sorted and unique: "dev" after "out"`},
		{"outputs repeated", aterm(`[("out","`+pathA+`","",""),("out","`+pathA+`","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, `[]`),
			`outputs not sorted and unique: "out" after "out"`},
		{"output without path", aterm(`[("out","","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`offset 15: output "out" has no path (deferred and floating content-addressed outputs are not supported)`},
		{"output path in another store", aterm(`[("out","/nix/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`path of output "out": path "/nix/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a" is not in the store /store`},
		{"output path bad hash", aterm(`[("out","/store/exyhjqmx4yasakykhzjgkjj6wgw23pfw-a","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`path of output "out": store path hash part "exyhjqmx4yasakykhzjgkjj6wgw23pfw" has invalid character 'e'`},
		{"output path below a store path", aterm(`[("out","`+pathA+`/bin","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`is below a store path`},
		{"floating content-addressed", aterm(`[("out","`+pathA+`","r:sha256","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`offset 59: output "out": hashAlgo "r:sha256" without a hash`},
		{"impure", aterm(`[("out","`+pathA+`","r:sha256","impure")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`impure outputs are not supported`},
		{"hash without algo", aterm(`[("out","`+pathA+`","","`+sha1x+`")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`output "out": hash "` + sha1x + `" without hashAlgo`},
		{"unknown algo", aterm(`[("out","`+pathA+`","sha3","`+sha1x+`")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`hashAlgo "sha3": unknown hash algorithm "sha3"`},
		{"hash too short", aterm(`[("out","`+pathA+`","sha256","`+sha1x+`")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`offset 68: output "out": sha256 hash "` + sha1x + `" has 40 characters, want 64 lower-case hex digits`},
		{"hash in upper case", aterm(`[("out","`+pathA+`","sha1","`+strings.ToUpper(sha1x)+`")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`'C' at 0 is not a lower-case hex digit`},
		{"hash in nix32", aterm(`[("out","`+pathA+`","sha1","`+nixhash.Sum(nixhash.SHA1, nil).Nix32()+`")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`has 32 characters, want 40 lower-case hex digits`},
		{"missing comma", strings.Replace(good, `"out","/`, `"out" "/`, 1), `offset 14: expected "," after output id, found " \"/store/sxyhjqm"...`},
		{"list without commas", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, `["a" "b"]`, goodEnv), `expected ',' or ']' in args, found " \"b\"]`},
		{"list with a leading comma", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, `[,"a"]`, goodEnv), `expected "\"" to open arg, found ",\"a\"]`},
		{"input derivation not a .drv", aterm(goodOutputs, `[("`+pathB+`",["out"])]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`offset 69: input derivation pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-b is not a .drv path`},
		{"input derivations unsorted", aterm(goodOutputs, `[("`+drvA+`",["out"]),("`+drvB+`",["out"])]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`inputDrvs not sorted and unique: 0ak6abdqpfgd9yfmsgzvn7d9a1gpc4l0-b.drv after 74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv`},
		{"input derivation repeated", aterm(goodOutputs, `[("`+drvA+`",["out"]),("`+drvA+`",["dev"])]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`inputDrvs not sorted and unique`},
		{"input outputs unsorted", aterm(goodOutputs, `[("`+drvA+`",["out","dev"])]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`output names of 74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv not sorted and unique: "dev" after "out"`},
		{"input derivation path invalid", aterm(goodOutputs, `[("/store/x.drv",["out"])]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`offset 69: input derivation path: store path "x.drv" is not <32-char hash>-<name>`},
		{"input sources unsorted", aterm(goodOutputs, `[]`, `["`+pathA+`","`+pathB+`"]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`inputSrcs not sorted and unique: pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-b after sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a`},
		{"input sources repeated", aterm(goodOutputs, `[]`, `["`+pathA+`","`+pathA+`"]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`inputSrcs not sorted and unique`},
		{"input source not a path", aterm(goodOutputs, `[]`, `["/etc/passwd"]`, `"x"`, `"/b"`, `[]`, goodEnv),
			`input source: path "/etc/passwd" is not in the store /store`},
		{"env unsorted", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, `[]`, `[("out","`+pathA+`"),("name","a")]`),
			`env not sorted and unique: "name" after "out"`},
		{"env repeated", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, `[]`, `[("name","a"),("name","b")]`),
			`env not sorted and unique: "name" after "name"`},
		{"escape Nix does not write", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, `[]`, `[("name","\a")]`),
			`escape "\\a" in value of env var name is not one Nix writes`},
		{"raw newline", aterm(goodOutputs, `[]`, `[]`, `"x"`, `"/b"`, "[\"a\nb\"]", goodEnv), `raw '\n' in arg, which Nix writes escaped`},
		{"raw tab in builder", aterm(goodOutputs, `[]`, `[]`, `"x"`, "\"/b\t\"", `[]`, goodEnv), `raw '\t' in builder`},
		{"backslash in system", aterm(goodOutputs, `[]`, `[]`, `"x\\n"`, `"/b"`, `[]`, goodEnv), `backslash in system, which Nix writes unescaped`},
		{"backslash in output id", aterm(`[("o\"ut","`+pathA+`","","")]`, `[]`, `[]`, `"x"`, `"/b"`, `[]`, goodEnv), `backslash in output id`},
		{"escape at the end", `Derive([],[],[],"x","/b\`, `unterminated escape in builder`},
		{"system not a string", aterm(goodOutputs, `[]`, `[]`, `x`, `"/b"`, `[]`, goodEnv), `expected "\"" to open system, found "x,\"/b\",[],[(\"nam"...`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Parse([]byte(c.in), testDir)
			if err == nil {
				t.Fatalf("Parse(%q) accepted: %+v", c.in, d)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *ParseError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Parse(%q):\n got error %v\nwant it to contain %s", c.in, err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "derivation offset ") {
				t.Errorf("error %q does not name the offset", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	sha, _ := nixhash.ParseDigest(nixhash.SHA1, sha1x)
	pa, _ := testDir.Parse(pathA)
	pb, _ := testDir.Parse(pathB)
	da, _ := testDir.Parse(drvA)
	for _, c := range []struct {
		name   string
		change func(d *Derivation)
		want   string
	}{
		{"no name", func(d *Derivation) { delete(d.Env, "name") }, `derivation has no env var "name"`},
		{"empty name", func(d *Derivation) { d.Env["name"] = "" }, `derivation name is empty`},
		{"bad name", func(d *Derivation) { d.Env["name"] = "a b" }, `derivation name "a b": store path name "a b.drv" has invalid character ' ' at offset 1`},
		{"long name", func(d *Derivation) { d.Env["name"] = strings.Repeat("x", 208) }, "is 212 characters long"},
		{"no outputs", func(d *Derivation) { d.Outputs = nil }, `derivation "a" has no outputs`},
		{"output drv", func(d *Derivation) { d.Outputs["drv"] = Output{Path: pb}; d.Env["drv"] = pathB }, `invalid output id "drv"`},
		{"output id with a space", func(d *Derivation) { d.Outputs["d v"] = Output{Path: pb}; d.Env["d v"] = pathB }, `output id "d v": store path name "d v" has invalid character ' '`},
		{"empty output id", func(d *Derivation) { d.Outputs[""] = Output{Path: pb} }, `output id is empty`},
		{"output without env var", func(d *Derivation) { delete(d.Env, "out") }, `output "out" has no env var "out"`},
		{"fixed with two outputs", func(d *Derivation) {
			d.Outputs["out"] = Output{Path: pa, Hash: sha}
			d.Outputs["dev"] = Output{Path: pb}
			d.Env["dev"] = pathB
		}, `a fixed-output derivation must have one output, not 2 ([dev out])`},
		{"fixed named dev", func(d *Derivation) {
			d.Outputs = map[string]Output{"dev": {Path: pb, Hash: sha}}
			d.Env["dev"] = pathB
		}, `the output of a fixed-output derivation must be named "out", not "dev"`},
		{"recursive without hash", func(d *Derivation) { d.Outputs["out"] = Output{Path: pa, Recursive: true} }, `output "out" is recursive (r:) but has no hash`},
		{"input naming no output", func(d *Derivation) { d.InputDrvs[da] = nil }, `input derivation 74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv names no outputs`},
		{"input not a drv", func(d *Derivation) { d.InputDrvs[pb] = []string{"out"} }, `input derivation pqrpiq7sxnq9dyh4iipav0h2wafj6lcp-b is not a .drv path`},
		{"input outputs unsorted", func(d *Derivation) { d.InputDrvs[da] = []string{"out", "dev"} }, `output names not sorted and unique: "dev" after "out"`},
		{"input sources unsorted", func(d *Derivation) { d.InputSrcs = []storepath.Path{pa, pb} }, `input sources not sorted and unique`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &Derivation{
				Outputs:   map[string]Output{"out": {Path: pa}},
				InputDrvs: map[storepath.Path][]string{},
				Env:       map[string]string{"name": "a", "out": pathA},
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("base case: %v", err)
			}
			c.change(d)
			err := d.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %s", err, c.want)
			}
		})
	}
}

func TestParseJSONMalformed(t *testing.T) {
	obj := func(fields ...string) string {
		all := map[string]string{
			"outputs": `{"out":{"path":"` + pathA + `"}}`, "inputSrcs": `[]`, "inputDrvs": `{}`,
			"system": `"x"`, "builder": `"/b"`, "args": `[]`, "env": `{"name":"a","out":"` + pathA + `"}`,
		}
		for i := 0; i+1 < len(fields); i += 2 {
			all[fields[i]] = fields[i+1]
		}
		var parts []string
		for _, k := range jsonFields {
			if v := all[k]; v != "-" {
				parts = append(parts, `"`+k+`":`+v)
			}
		}
		if v, ok := all["extra"]; ok {
			parts = append(parts, v)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	if _, err := ParseJSON([]byte(obj()), testDir); err != nil {
		t.Fatalf("the base case does not parse: %v", err)
	}
	for _, c := range []struct {
		name, in, want string
	}{
		{"empty", "", "offset 0: expected '{' to open the top level, found end of input"},
		{"array", "[]", `offset 0: expected '{' to open the top level, found "[]"`},
		{"empty object", "{}", "no derivation in {}"},
		{"trailing bytes", obj() + " x", "offset 210: 1 bytes after the end of the JSON value"},
		{"truncated", obj()[:30], "unterminated string"},
		{"repeated key", obj("extra", `"system":"y"`), `key "system" repeated in the top level`},
		{"unknown field", obj("extra", `"impure":"y"`), `unknown derivation field "impure"`},
		{"missing field", obj("env", "-"), `offset 0: derivation has no "env"`},
		{"number", obj("system", "1"), `expected a string (system), found "1,\"builder\":\"/b\""...`},
		{"raw control character", obj("builder", "\"a\x01\""), `raw control character '\x01' in a string (builder)`},
		{"bad escape", obj("builder", `"\x41"`), `invalid escape "\\x" in a string (builder)`},
		{"lone surrogate", obj("builder", `"\ud800"`), `unpaired surrogate \ud800`},
		{"lone low surrogate", obj("builder", `"\udc00"`), `unpaired surrogate \udc00`},
		{"bad unicode escape", obj("builder", `"\u12g4"`), `bad \u escape "\\u12g4"`},
		{"input source twice", obj("inputSrcs", `["`+pathA+`","`+pathA+`"]`), `input source sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a listed twice`},
		{"input source not in store", obj("inputSrcs", `["/tmp/x"]`), `input source: path "/tmp/x" is not in the store /store`},
		{"input derivation not a .drv", obj("inputDrvs", `{"`+pathA+`":["out"]}`), `is not a .drv path`},
		{"input output twice", obj("inputDrvs", `{"`+drvA+`":["out","out"]}`), `output "out" listed twice`},
		{"output field unknown", obj("outputs", `{"out":{"paths":"x"}}`), `unknown field "paths" in output "out"`},
		{"output path bad", obj("outputs", `{"out":{"path":"/store/x"}}`), `path of output "out": store path "x"`},
		{"hash without algo", obj("outputs", `{"out":{"hash":"`+sha1x+`"}}`), `output "out": hash "` + sha1x + `" without hashAlgo`},
		{"hash of the wrong length", obj("outputs", `{"out":{"hashAlgo":"sha256","hash":"`+sha1x+`"}}`), `sha256 hash "` + sha1x + `": length 40 fits none`},
		{"name differs", obj("extra", `"name":"b"`), `derivation "name" "b" differs from env var name "a"`},
		{"key not a .drv", `{"` + pathA + `":` + obj() + `}`, `key "/store/sxyhjqmx4yasakykhzjgkjj6wgw23pfw-a" is not a .drv path`},
		{"key not its path", `{"` + drvA + `":` + obj() + `}`, `key /store/74jknh25n5xmamqc113hgx9rb4i0jiyb-a.drv is not the path of its derivation, /store/`},
		{"map then fields", `{"` + drvA + `":` + obj() + `,"system":"x"}`, `key "system" in a map of .drv paths`},
		{"fields then map", `{"system":"x","` + drvA + `":` + obj() + `}`, `a derivation object holds no paths as keys`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds, err := ParseJSON([]byte(c.in), testDir)
			if err == nil {
				t.Fatalf("ParseJSON(%q) accepted: %v", c.in, ds)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseJSON(%q):\n got error %v\nwant it to contain %s", c.in, err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "derivation JSON offset ") {
				t.Errorf("error %q does not name the offset", err)
			}
		})
	}
}
