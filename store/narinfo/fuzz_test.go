package narinfo

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"
)

func FuzzParseNarInfo(f *testing.F) {
	for _, file := range narinfoFiles(f) {
		f.Add(readTestdata(f, filepath.Base(file)))
	}
	for _, s := range []string{"", minimal, minimal + "\n", "StorePath:\n", with("References: \nReferences: " + hRef + "\n"),
		with("CA: \nCA: text:" + hHash + "\n"), with("Deriver: unknown-deriver\n"), with("Sig: a:b\n")} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := Parse(data, storeDir, "fuzz")
		if err != nil {
			return
		}
		out, err := ni.Print(storeDir)
		if err != nil {
			t.Fatalf("parsed %q but cannot print it: %v", data, err)
		}
		again, err := Parse(out, storeDir, "printed")
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", data, out, err)
		}
		if !reflect.DeepEqual(ni, again) {
			t.Fatalf("%q read as\n%+v\nprinted as %q, read back as\n%+v", data, ni, out, again)
		}
		out2, _ := again.Print(storeDir)
		if !bytes.Equal(out, out2) {
			t.Fatalf("printing is not stable: %q then %q", out, out2)
		}
		if _, err := ni.Fingerprint(storeDir); err != nil {
			t.Fatalf("a parsed narinfo has no fingerprint: %v", err)
		}
		ni.IsContentAddressed(storeDir)
		ni.Verify(storeDir, nil)
	})
}

func FuzzParseCacheInfo(f *testing.F) {
	f.Add(readTestdata(f, "nix-cache-info"))
	for _, s := range []string{"", "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", "StoreDir:/s\r\n", "Priority: x\n", ":\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseCacheInfo(data, "fuzz")
		if err != nil {
			return
		}
		out, err := ci.Print()
		if err != nil {
			t.Fatalf("parsed %q but cannot print it: %v", data, err)
		}
		again, err := ParseCacheInfo(out, "printed")
		if err != nil || *again != *ci {
			t.Fatalf("%q read as %+v, printed as %q, read back as %+v, %v", data, ci, out, again, err)
		}
	})
}
