package nixhash_test

import (
	"strings"
	"testing"

	"storefs/store/nixhash"
)

// vectors were printed by Nix 2.8:
//
//	nix-hash --type ALGO --to-base32 HEX; nix hash to-sri --type ALGO HEX
var vectors = []struct {
	input string
	algo  nixhash.Algo
	hex   string
	nix32 string
	sri   string
}{
	{"", nixhash.MD5, "d41d8cd98f00b204e9800998ecf8427e", "3y8bwfr609h3lh9ch0izcqq7fl", "md5-1B2M2Y8AsgTpgAmY7PhCfg=="},
	{"", nixhash.SHA1, "da39a3ee5e6b4b0d3255bfef95601890afd80709", "143xibwh31h9bvxzalr0sjvbbvpa6ffs", "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="},
	{"", nixhash.SHA256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
	{"", nixhash.SHA512, "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e", "0zdl9zrg8r3i9c1g90lgg9ip5ijzv3yhz91i0zzn3r8ap9ws784gkp9dk9j3aglhgf1amqb0pj21mh7h1nxcl18akqvvf7ggqsy30yg", "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg=="},
	{"a", nixhash.MD5, "0cc175b9c0f1b6a831c399e269772661", "314rvnkqlrqcqsidpiq2wpbh8c", "md5-DMF1ucDxtqgxw5niaXcmYQ=="},
	{"a", nixhash.SHA1, "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8", "p1kpcdzaxbmbkp0xbphzr9x5z8vy9xw6", "sha1-hvfkN/qlp/zhXR3cuerq6jd2Z7g="},
	{"a", nixhash.SHA256, "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb", "1fs8xspqaxw0p5r4wz0lz3pqd9sdvhirmcriqbxcmg8vr89835ya", "sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs="},
	{"a", nixhash.SHA512, "1f40fc92da241694750979ee6cf582f2d5d7d28e18335de05abc54d0560e0f5302860c652bf08d560252aa5e74210546f369fbbbce8c12cfc7957b2652fe9a75", "1srmzjj4rxrbiyg2a6cxfzvd7rlc191figallh2as6z0av51j304lqg1rbd0m5wbbh5scqqiv9dgmgjhbsnrvkr15sr85i4va9gqh0z", "sha512-H0D8ktokFpR1CXnubPWC8tXX0o4YM13gWrxU0FYOD1MChgxlK/CNVgJSql50IQVG82n7u86MEs/HlXsmUv6adQ=="},
	{"fixed", nixhash.MD5, "cec315e3d0975e5cc2811d5d8725f149", "29y4jqfp8xh715qplps3iibhyf", "md5-zsMV49CXXlzCgR1dhyXxSQ=="},
	{"fixed", nixhash.SHA1, "7bc555991dbab41aa198fbd77899d49a277d4d6d", "dm6ps9wssjcpimzvk2himd5s3ncmbibv", "sha1-e8VVmR26tBqhmPvXeJnUmid9TW0="},
	{"fixed", nixhash.SHA256, "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513", "04rmhy6rn9kryhm4fn2r8ihwyhf0aacl7g4vmhvdvzkibi2r6alr", "sha256-mSqTRVxx/t02rJu8Q5lSwEHPYURZWEcq9Hkmm42HNRM="},
	{"fixed", nixhash.SHA512, "4bb87979e515ebb83d05e0facbe1318d97e48806a21efc156f7e546496c95f9a7a0d1ebea610df9eb9e5c1c51c500fc23581d5145913a028543c852a05bd7085", "22p1g855a2kqm18l09mj56mh4sw43sh3k2w3rdrkvgi19my3q6pm6jzr6b68m3ydwazq7m20s4f95wd67hwpyp00lyvisqmwmwpkf2b", "sha512-S7h5eeUV67g9BeD6y+ExjZfkiAaiHvwVb35UZJbJX5p6DR6+phDfnrnlwcUcUA/CNYHVFFkToChUPIUqBb1whQ=="},
	{"hello world", nixhash.MD5, "5eb63bbbe01eeed093cb22bb8f5acdc3", "63rmd8zfr2rf9x1vhyw2xkpdjy", "md5-XrY7u+Ae7tCTyyK7j1rNww=="},
	{"hello world", nixhash.SHA1, "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed", "xm3fh7p9kj5l0pz9vcav9ksgr4snrbia", "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0="},
	{"hello world", nixhash.SHA256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9", "1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr", "sha256-uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="},
	{"hello world", nixhash.SHA512, "309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f", "1pxg75fjcp59ibxrxfn07z863cczc25bcjk9nkhjr4zziavsffrhvyq9inshg6dkdx7q6jixrvyvl5ly81cjl0gqi6fpmhjki4cr7ih", "sha512-MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		h := nixhash.Sum(v.algo, []byte(v.input))
		if h.Hex() != v.hex || h.Nix32() != v.nix32 || h.SRI() != v.sri {
			t.Errorf("%s(%q) = %s %s %s, want %s %s %s", v.algo, v.input, h.Hex(), h.Nix32(), h.SRI(), v.hex, v.nix32, v.sri)
		}
		name := v.algo.String()
		for _, s := range []string{name + ":" + v.hex, name + ":" + v.nix32, name + ":" + h.Base64(), v.sri} {
			p, err := nixhash.Parse(s)
			if err != nil {
				t.Errorf("Parse(%q): %v", s, err)
				continue
			}
			if p != h {
				t.Errorf("Parse(%q) = %s, want %s", s, p, h)
			}
		}
		for f, want := range map[nixhash.Format]string{
			nixhash.FormatNix32: name + ":" + v.nix32, nixhash.FormatHex: name + ":" + v.hex,
			nixhash.FormatSRI: v.sri, nixhash.FormatBase64: name + ":" + h.Base64(),
		} {
			if got, _ := h.Format(f); got != want {
				t.Errorf("Format(%s) = %q, want %q", f, got, want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "no algorithm"},
		{"0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "no algorithm"},
		{"sha3:abc", `unknown hash algorithm "sha3"`},
		{"sha256:abc", "length 3 fits none"},
		{"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c7e", `invalid character 'e' at offset 51`},
		{"sha256:zzz1c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "bad hex"},
		{"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF==", "bad base64"},
		{"sha256-2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "decodes to 20 bytes, want 32"},
		{"md5:zy8bwfr609h3lh9ch0izcqq7fl", "non-zero padding bits"},
	} {
		_, err := nixhash.Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func TestCompress(t *testing.T) {
	got := nixhash.Compress([]byte{1, 2, 3, 4, 5}, 2)
	if got[0] != 1^3^5 || got[1] != 2^4 {
		t.Errorf("Compress = %v", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, v := range vectors {
		f.Add(v.algo.String() + ":" + v.nix32)
		f.Add(v.algo.String() + ":" + v.hex)
		f.Add(v.sri)
	}
	f.Add("sha256:")
	f.Add("md5-")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := nixhash.Parse(s)
		if err != nil {
			return
		}
		for _, form := range []nixhash.Format{nixhash.FormatNix32, nixhash.FormatHex, nixhash.FormatBase64, nixhash.FormatSRI} {
			out, _ := h.Format(form)
			back, err := nixhash.Parse(out)
			if err != nil || back != h {
				t.Fatalf("%q -> %q -> %v, %v", s, out, back, err)
			}
		}
	})
}
