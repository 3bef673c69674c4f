#!/bin/sh
# Remakes the NARs and the listing in this directory with real Nix 2.8
# (Debian's nix-bin); see README. Run from this directory: sh make.sh
set -eu
w=$(mktemp -d)
trap 'chmod -R u+w "$w"; rm -rf "$w"' EXIT
t=$w/tree
mkdir -p "$t/dir/sub" "$t/empty"
printf 'hello\n' > "$t/file"
: > "$t/emptyfile"
printf '#!/bin/sh\necho hi\n' > "$t/exec"
chmod +x "$t/exec"
ln -s /absolute/target "$t/abs"
ln -s file "$t/rel"
printf 'nested' > "$t/dir/sub/n"
printf '12345678' > "$t/dir/eight"
ln -s ../dangling "$t/dir/dangle"
nix-store --dump "$t" > tree.nar
printf 'x' > "$w/file"
nix-store --dump "$w/file" > file.nar
cp "$t/exec" "$w/exec"
nix-store --dump "$w/exec" > exec.nar
ln -s /nix/store/target "$w/link"
nix-store --dump "$w/link" > symlink.nar
mkdir "$w/emptydir"
nix-store --dump "$w/emptydir" > emptydir.nar
# The binary cache listing of tree, as nix copy writes it.
mkdir -p "$w/root/etc"
printf 'build-users-group = nixbld\nsandbox = true\nsubstituters =\nexperimental-features = nix-command\n' > "$w/root/etc/nix.conf"
export NIX_STORE_DIR=/store NIX_REMOTE="local?root=$w/root" NIX_CONF_DIR="$w/root/etc" NIX_USER_CONF_FILES= HOME="$w/root"
p=$(nix-store --add "$t")
nix copy --to "file://$w/cache?write-nar-listing=true" "$p"
cp "$w/cache/$(basename "$p" | cut -c1-32).ls" tree.ls
