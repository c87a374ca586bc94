#!/usr/bin/env bash
# Install the peer tools the file-tree benchmark compares lifeboat against.
# Idempotent: anything already on PATH is left alone.
#   restic, borgbackup, hyperfine, time  -> Debian packages (apt-get)
#   bupstash                             -> crates.io (cargo install; needs libsodium-dev, pkg-config)
# Env: CARGO_TARGET_DIR for the bupstash build (default /work/target-bench-peers, or
#      $TMPDIR/target-bench-peers if /work is absent) so it does not take the main build lock.
set -euo pipefail

log() { printf '[install-peers] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    log "not root and no sudo: cannot apt-get install; install the packages by hand"; fi
fi

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "apt-get not found; please install: $*"; return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

need_deb=()
command -v restic    >/dev/null || need_deb+=(restic)
command -v borg      >/dev/null || need_deb+=(borgbackup)
command -v hyperfine >/dev/null || need_deb+=(hyperfine)
[ -x /usr/bin/time ]            || need_deb+=(time)
if ! command -v bupstash >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/bupstash" ]; then
  # bupstash links against libsodium and finds it with pkg-config.
  pkg-config --exists libsodium 2>/dev/null || need_deb+=(libsodium-dev pkg-config)
  command -v cc >/dev/null || need_deb+=(build-essential)
fi

if [ "${#need_deb[@]}" -gt 0 ]; then
  apt_install "${need_deb[@]}"
else
  log "restic, borg, hyperfine and /usr/bin/time already present"
fi

if command -v bupstash >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/bupstash" ]; then
  log "bupstash already present"
else
  if ! command -v cargo >/dev/null; then
    log "cargo not found: cannot install bupstash (cargo install bupstash --locked)"; exit 1
  fi
  default_target=/work/target-bench-peers
  [ -d /work ] || default_target="${TMPDIR:-/tmp}/target-bench-peers"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$default_target}"
  log "cargo install bupstash --locked (a few minutes; CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo install bupstash --locked
fi

log "versions:"
{ restic version; borg --version; bupstash version 2>/dev/null || "${CARGO_HOME:-$HOME/.cargo}/bin/bupstash" version; } 2>&1 | sed 's/^/  /' >&2
