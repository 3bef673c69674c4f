package storepath_test

import (
	"strings"
	"testing"

	"storefs/store/nixhash"
	"storefs/store/storepath"
)

func mustHash(t *testing.T, s string) nixhash.Hash {
	t.Helper()
	h, err := nixhash.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustPath(t *testing.T, d storepath.Dir, s string) storepath.Path {
	t.Helper()
	p, err := d.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Golden paths made by Nix 2.8 with NIX_STORE_DIR=/store (see
// integration/harness_test.go for the store setup); hi.txt holds "hi\n".
func TestMakeAgainstNix(t *testing.T) {
	d := storepath.Dir("/store")
	narHash := mustHash(t, "sha256:10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6") // nix-hash --type sha256 hi.txt
	cases := []struct {
		what string
		got  func() (storepath.Path, error)
		want string
	}{
		{"nix-store --add hi.txt", func() (storepath.Path, error) {
			return d.MakeFixed("hi.txt", true, narHash, nil, false)
		}, "/store/wsahbxs83r9rqq5rqilj4bz2lldrkncq-hi.txt"},
		{"nix-store --add-fixed sha1 hi.txt", func() (storepath.Path, error) {
			return d.MakeFixed("hi.txt", false, mustHash(t, "sha1:55ca6286e3e4f4fba5d0448333fa99fc5a404a73"), nil, false)
		}, "/store/bcq9blndawlq8kyvdd1bm5ra6323mh1f-hi.txt"},
		{"nix-store --add-fixed --recursive sha512 hi.txt", func() (storepath.Path, error) {
			return d.MakeFixed("hi.txt", true, mustHash(t, "sha512:3864427a91044a1aba8b3977dfbc9fecb387e978a9561d81fc8555be43d67d5cc0e2f7f0457fb69d7c9c2e45333dc8250a1a1203cc41efcd5d0adc4e6d7ef091"), nil, false)
		}, "/store/5il1jz2k17vcn526f5sm577zxmfdx9c7-hi.txt"},
		{`builtins.toFile "u.txt" "x"`, func() (storepath.Path, error) {
			return d.MakeText("u.txt", nixhash.Sum(nixhash.SHA256, []byte("x")), nil)
		}, "/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt"},
		{`builtins.toFile "t.txt" "hello ${u.txt}"`, func() (storepath.Path, error) {
			u := mustPath(t, d, "/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
			return d.MakeText("t.txt", nixhash.Sum(nixhash.SHA256, []byte("hello /store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")), []storepath.Path{u})
		}, "/store/7rrx1afrzyb3vj81nl0vz42sf3vmaxyn-t.txt"},
	}
	for _, c := range cases {
		p, err := c.got()
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if d.Print(p) != c.want {
			t.Errorf("%s = %s, want %s", c.what, d.Print(p), c.want)
		}
	}
}

// A flat sha256 fixed output of the 5 bytes "fixed" under /nix/store, as
// Nix 2.8 prints it (with NIX_REMOTE="local?root=$(mktemp -d)" to keep the
// host's /nix out):
//
//	nix-store --print-fixed-path sha256 992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513 fo
func TestFixedOutputNixStore(t *testing.T) {
	d := storepath.Dir("/nix/store")
	p, err := d.MakeFixed("fo", false, nixhash.Sum(nixhash.SHA256, []byte("fixed")), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Print(p); got != "/nix/store/fgzwfyidpyz8838f7hs2jj7nrym0a07q-fo" {
		t.Errorf("got %s", got)
	}
}

func TestParse(t *testing.T) {
	d := storepath.Dir("/store")
	good := []string{
		"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt",
		"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-.dot",
		"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9--dash",
		"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-a+b-c._?=Z9",
		"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-" + strings.Repeat("x", 211),
	}
	for _, s := range good {
		p, err := d.Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		} else if d.Print(p) != s {
			t.Errorf("Print(Parse(%q)) = %q", s, d.Print(p))
		}
	}
	bad := []struct{ in, want string }{
		{"/nix/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt", "not in the store /store"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt/bin", "below a store path"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9", "not <32-char hash>-<name>"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-", "not <32-char hash>-<name>"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsbe-u", "invalid character 'e' at offset 31"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9_u", "not <32-char hash>-<name>"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-a b", "invalid character ' ' at offset 1"},
		{"/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-" + strings.Repeat("x", 212), "212 characters long, more than 211"},
	}
	for _, c := range bad {
		_, err := d.Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
	p, rest, err := d.ParsePrefix("/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt/bin/sh")
	if err != nil || p.Name() != "u.txt" || rest != "/bin/sh" {
		t.Errorf("ParsePrefix = %v %q %v", p, rest, err)
	}
}

func TestParseDir(t *testing.T) {
	for _, s := range []string{"store", "/", "/store/", "/a/../store", ""} {
		if _, err := storepath.ParseDir(s); err == nil {
			t.Errorf("ParseDir(%q) succeeded", s)
		}
	}
}

func TestContentAddress(t *testing.T) {
	for _, s := range []string{
		"text:sha256:1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr",
		"fixed:r:sha256:1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr",
		"fixed:sha1:xm3fh7p9kj5l0pz9vcav9ksgr4snrbia",
	} {
		ca, err := storepath.ParseContentAddress(s)
		if err != nil || ca.String() != s {
			t.Errorf("ParseContentAddress(%q) = %v, %v", s, ca, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"sha256:1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr", "want text:... or fixed:..."},
		{"text:sha1:xm3fh7p9kj5l0pz9vcav9ksgr4snrbia", "text hash must be sha256"},
		{"fixed:r:sha256:xyz", "length 3 fits none"},
	} {
		_, err := storepath.ParseContentAddress(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseContentAddress(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt")
	f.Add("/store/sy1pf09am17617zf6qgqfdwjx6axhsb9-u.txt/x")
	f.Add("/store/x")
	f.Fuzz(func(t *testing.T, s string) {
		d := storepath.Dir("/store")
		p, err := d.Parse(s)
		if err != nil {
			return
		}
		if d.Print(p) != s {
			t.Fatalf("%q printed as %q", s, d.Print(p))
		}
		if _, err := storepath.ParseBase(p.Base()); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzContentAddress(f *testing.F) {
	f.Add("text:sha256:1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr")
	f.Add("fixed:r:sha512:x")
	f.Fuzz(func(t *testing.T, s string) {
		ca, err := storepath.ParseContentAddress(s)
		if err != nil {
			return
		}
		back, err := storepath.ParseContentAddress(ca.String())
		if err != nil || back != ca {
			t.Fatalf("%q -> %q -> %v %v", s, ca.String(), back, err)
		}
	})
}
