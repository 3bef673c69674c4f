package narinfo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"storefs/store/signature"
	"storefs/store/storepath"
)

const storeDir storepath.Dir = "/store"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func testKey(t testing.TB, name string) signature.PublicKey {
	t.Helper()
	k, err := signature.ParsePublicKey(string(readTestdata(t, name+".public")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testSecret(t testing.TB, name string) signature.SecretKey {
	t.Helper()
	k, err := signature.ParseSecretKey(string(readTestdata(t, name+".secret")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func narinfoFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.narinfo")
	if err != nil || len(files) < 9 {
		t.Fatalf("testdata narinfo files: %v %v", files, err)
	}
	return files
}

// Every narinfo Nix wrote parses, prints back byte for byte, and its
// signature verifies with Nix's public key.
func TestNixNarInfos(t *testing.T) {
	trusted := []signature.PublicKey{testKey(t, "test-cache-1")}
	for _, f := range narinfoFiles(t) {
		data := readTestdata(t, filepath.Base(f))
		ni, err := Parse(data, storeDir, f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out, err := ni.Print(storeDir)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		} else if !bytes.Equal(out, data) {
			t.Errorf("%s prints as\n%s\nNix wrote\n%s", f, out, data)
		}
		k, err := ni.Verify(storeDir, trusted)
		if strings.Contains(f, "unsigned") {
			var serr *SignatureError
			if !errors.As(err, &serr) || len(serr.Errs) != 0 || !strings.Contains(err.Error(), "has no signatures") {
				t.Errorf("%s: unsigned narinfo verified: %v", f, err)
			}
		} else if err != nil || k.Name() != "test-cache-1" {
			t.Errorf("%s: Nix's signature does not verify: %v", f, err)
		}
		// Only Nix-made paths with a CA field are content-addressed.
		if got, want := ni.IsContentAddressed(storeDir), !ni.CA.IsZero(); got != want {
			t.Errorf("%s: IsContentAddressed = %v", f, got)
		}
	}
}

func TestNixNarInfoFields(t *testing.T) {
	ni, err := Parse(readTestdata(t, "out-demo.zstd.narinfo"), storeDir, "out-demo")
	if err != nil {
		t.Fatal(err)
	}
	if ni.StorePath.Base() != "21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo" ||
		ni.URL != "nar/0cmsqz2r6a92m5w1kqv3vs3rxhj96ba58mdk54d9fp4nwn88hs70.nar.zst" ||
		ni.Compression != "zstd" || ni.FileSize != 195 || ni.NarSize != 528 ||
		ni.FileHash.String() != "sha256:0cmsqz2r6a92m5w1kqv3vs3rxhj96ba58mdk54d9fp4nwn88hs70" ||
		ni.NarHash.String() != "sha256:1342i57jds7glvkgklvi00kn1dsljsf2syhdf6r85qzpfnagppr2" ||
		len(ni.References) != 1 || ni.References[0].Base() != "7r7cqiqf9ij7nlgf033alwajnvs7ylcg-hello.txt" ||
		ni.Deriver.Base() != "2xaplx7cdhp86gk0n9ypxmzca0rdph8z-out-demo.drv" ||
		!ni.CA.IsZero() || ni.System != "" || len(ni.Sigs) != 1 || ni.Sigs[0].KeyName != "test-cache-1" {
		t.Errorf("fields: %+v", ni)
	}
	fp, err := ni.Fingerprint(storeDir)
	want := "1;/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo;sha256:1342i57jds7glvkgklvi00kn1dsljsf2syhdf6r85qzpfnagppr2;528;/store/7r7cqiqf9ij7nlgf033alwajnvs7ylcg-hello.txt"
	if err != nil || fp != want {
		t.Errorf("fingerprint %q, %v\nwant %q", fp, err, want)
	}
	refs, err := Parse(readTestdata(t, "refs-txt.xz.narinfo"), storeDir, "refs")
	if err != nil {
		t.Fatal(err)
	}
	fp, _ = refs.Fingerprint(storeDir)
	if !strings.HasSuffix(fp, ";216;/store/7r7cqiqf9ij7nlgf033alwajnvs7ylcg-hello.txt,/store/iapd0416mfx32j7gky4wmx2y6h4idaqa-dir") {
		t.Errorf("fingerprint with two references: %q", fp)
	}
	if _, err := (&NarInfo{}).Fingerprint(storeDir); err == nil {
		t.Error("fingerprint of an empty narinfo")
	}
}

func TestTwoSignatures(t *testing.T) {
	ni, err := Parse(readTestdata(t, "out-demo.two-sigs.narinfo"), storeDir, "two")
	if err != nil {
		t.Fatal(err)
	}
	other := testKey(t, "aaa-other-2")
	if k, err := ni.Verify(storeDir, []signature.PublicKey{other}); err != nil || k.Name() != "aaa-other-2" {
		t.Errorf("verify with the other key: %v", err)
	}
	// Trusting a key of one name but other bytes: one bad, one untrusted.
	stranger, err := signature.Generate("test-cache-1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ni.Verify(storeDir, []signature.PublicKey{stranger.Public()})
	var serr *SignatureError
	var bad *signature.BadSignatureError
	var untrusted *signature.UntrustedKeyError
	if !errors.As(err, &serr) || !errors.As(err, &bad) || !errors.As(err, &untrusted) {
		t.Fatalf("error %v", err)
	}
	if got := serr.KeyNames(); !reflect.DeepEqual(got, []string{"aaa-other-2", "test-cache-1"}) {
		t.Errorf("KeyNames = %q", got)
	}
	want := `/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo has no valid signature by a trusted key: signed by an untrusted key "aaa-other-2"; bad signature by trusted key "test-cache-1"`
	if err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

// Signing with Nix's key gives Nix's signature (ed25519 is deterministic),
// and a changed field breaks it.
func TestSign(t *testing.T) {
	signed, err := Parse(readTestdata(t, "refs-txt.xz.narinfo"), storeDir, "signed")
	if err != nil {
		t.Fatal(err)
	}
	ni, err := Parse(readTestdata(t, "refs-txt.unsigned.narinfo"), storeDir, "unsigned")
	if err != nil {
		t.Fatal(err)
	}
	secret := testSecret(t, "test-cache-1")
	if err := ni.Sign(storeDir, secret); err != nil {
		t.Fatal(err)
	}
	if err := ni.Sign(storeDir, secret); err != nil { // not added twice
		t.Fatal(err)
	}
	if len(ni.Sigs) != 1 || ni.Sigs[0].String() != signed.Sigs[0].String() {
		t.Errorf("storefs signed %v, Nix %v", ni.Sigs, signed.Sigs)
	}
	trusted := []signature.PublicKey{testKey(t, "test-cache-1")}
	ni.NarSize++
	if _, err := ni.Verify(storeDir, trusted); err == nil {
		t.Error("a changed NarSize still verifies")
	}
	ni.NarSize--
	ni.References = ni.References[:1]
	if _, err := ni.Verify(storeDir, trusted); err == nil {
		t.Error("a dropped reference still verifies")
	}
	if err := (&NarInfo{}).Sign(storeDir, secret); err == nil {
		t.Error("signed an empty narinfo")
	}
}

func TestOtherStoreDir(t *testing.T) {
	_, err := Parse(readTestdata(t, "out-demo.xz.narinfo"), "/nix/store", "x.narinfo")
	want := `narinfo x.narinfo line 1: bad StorePath "/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo": path "/store/21fq2mksw8r70ffnq496dnnwqnhgpw53-out-demo" is not in the store /nix/store`
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant  %s", err, want)
	}
}
