{ bb }:
let
  bbp = builtins.storePath bb;
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "${bbp}/bin/sh"; PATH = "${bbp}/bin"; } // attrs);
  fixed = name: mode: algo: hash: mk { inherit name; args = ["-c" "printf fixed > $out"]; outputHashMode = mode; outputHashAlgo = algo; outputHash = hash; };
in rec {
  trivial = mk { name = "trivial"; args = ["-c" "mkdir $out; echo hello > $out/greeting"]; };
  fo-flat-sha256 = fixed "fo" "flat" "sha256" "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513";
  fo-flat-sha1 = fixed "fo-sha1" "flat" "sha1" "cde1bb4a1e2ebb3d1a0a4e7b0d4f7b0d3c9a9c1e";
  fo-rec-sha1 = fixed "fo-rsha1" "recursive" "sha1" "cde1bb4a1e2ebb3d1a0a4e7b0d4f7b0d3c9a9c1e";
  fo-rec-sha256 = fixed "fo-rsha256" "recursive" "sha256" "sha256-mSqTRVxx/t02rJu8Q5lSwEHPYURZWEcq9Hkmm42HNRM=";
  fo-flat-sha512 = fixed "fo-sha512" "flat" "sha512" "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000a";
  fo-rec-sha512 = fixed "fo-rsha512" "recursive" "sha512" "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000b";
  fo-twin = mk { name = "fo"; args = ["-c" "printf fixed > $out # another way"]; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "992a93455c71fedd36ac9bbc439952c041cf61445958472af479269b8d873513"; };
  multi = mk { name = "multi"; outputs = ["out" "dev" "lib"]; args = ["-c" "mkdir $out $dev $lib"]; };
  src = mk { name = "src"; args = ["-c" "cat ${./input.txt} > $out"]; };
  chain1 = mk { name = "chain1"; args = ["-c" "echo ${trivial} > $out"]; };
  chain2 = mk { name = "chain2"; args = ["-c" "echo ${chain1} > $out"]; };
  diamond = mk { name = "diamond"; args = ["-c" "echo ${chain1} ${chain2} ${multi.dev} ${multi.lib} ${fo-flat-sha256} ${fo-twin} > $out"]; };
  escapes = mk { name = "escapes"; args = ["-c" "echo \"$x\" \\ \n \t \r Ã© â˜ƒ \$HOME \x01ÿ"]; weird = "q\"uote back\\slash nl\nl tab\tt cr\rc uni Ã© â˜ƒ dollar \$x $ {y} ctl  bad þÿ end"; "sp ace" = "v"; }; }
