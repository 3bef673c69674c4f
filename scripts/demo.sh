#!/usr/bin/env bash
# make demo: mounts /store with storefs on the embedded defaults (state in
# /var/lib/storefs), adds a busybox tree and a small derivation, and reads
# the derivation's output through the mount: the first read builds it, the
# second returns at once.
set -euo pipefail
bin=$(realpath "${1:-bin/storefs}")
store=/store
state=/var/lib/storefs
sf() { "$bin" --store-dir "$store" --state-dir "$state" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "make demo mounts $store: run it as root" >&2
  exit 1
fi

step "mounting $store (state in $state, log in $state/daemon.log)"
mkdir -p "$state"
if grep -q " $store fuse.storefs " /proc/self/mounts; then
  echo "$store is already served by storefs; using it"
else
  setsid "$bin" --store-dir "$store" --state-dir "$state" mount >>"$state/daemon.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    grep -q " $store fuse.storefs " /proc/self/mounts && break
    sleep 0.1
  done
  grep -q " $store fuse.storefs " /proc/self/mounts || { echo "the mount did not come up:"; tail "$state/daemon.log"; exit 1; }
  echo "mounted"
fi

step "adding a busybox tree (Debian's busybox-static) as the builder"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/busybox/bin"
cp /bin/busybox "$tree/busybox/bin/busybox"
for a in sh echo mkdir cat date; do ln -s busybox "$tree/busybox/bin/$a"; done
bb=$(sf add "$tree/busybox")
echo "$bb"

step "adding a derivation that writes a greeting (new each run, so it is built)"
nonce=$(date +%s%N)
cat >"$tree/greeting.json" <<JSON
{"outputs":{"out":{}},"inputSrcs":["$bb"],"inputDrvs":{},"system":"x86_64-linux",
 "builder":"$bb/bin/sh","args":["-c","sleep 1; mkdir \$out; echo \"hello from a store path built on first access ($nonce)\" > \$out/greeting"],
 "env":{"name":"greeting","builder":"$bb/bin/sh","system":"x86_64-linux","out":"","PATH":"$bb/bin","nonce":"$nonce"}}
JSON
drv=$(sf derivation add "$tree/greeting.json")
out=$(sf query --outputs "$drv")
echo "derivation $drv"
echo "output     $out (not built yet)"

step "first access: cat $out/greeting (builds it in the sandbox)"
time cat "$out/greeting"

step "second access: the path is valid now"
time cat "$out/greeting"

step "a program from the store runs through the mount"
"$bb/bin/sh" -c 'echo "busybox sh from '"$bb"' says hi"'

cat <<DONE

storefs keeps serving $store. Try:
  ls $store                      # the valid paths
  $bin --state-dir $state status
  $bin --state-dir $state log $drv
Unmount with:
  $bin --store-dir $store umount
DONE
