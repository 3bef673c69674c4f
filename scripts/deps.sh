#!/usr/bin/env bash
# Installs what building and testing storefs needs, when it is missing, on
# Debian: FUSE 3, real Nix 2.8 (the oracle for every format), busybox-static
# (the builder of test derivations), compressors, and the nixbld users that
# Nix's sandboxed builds run as.
set -euo pipefail

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v nix-store >/dev/null || need+=(nix-bin)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx sh || need+=(busybox-static)
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
command -v bzip2 >/dev/null || need+=(bzip2)
[ -x /usr/bin/time ] || need+=(time)
command -v nginx >/dev/null || need+=(nginx)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "storefs needs ${need[*]}: run as root, or: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

command -v go >/dev/null || { echo "storefs needs Go $(sed -n 's/^go //p' go.mod) or later on PATH" >&2; exit 1; }

# Nix builds as the nixbld users; Debian's nix-bin makes the group, and
# normally the users too.
getent group nixbld >/dev/null || groupadd --system nixbld
for i in $(seq 1 10); do
  id "nixbld$i" >/dev/null 2>&1 && continue
  useradd --system --no-create-home --home-dir /var/empty --shell /usr/sbin/nologin \
    --gid nixbld --groups nixbld --comment "Nix build user $i" "nixbld$i"
done
