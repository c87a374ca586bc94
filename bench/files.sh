#!/usr/bin/env bash
# File-tree benchmark: lifeboat against restic, borg and bupstash (see bench/README.md).
#
#   bench/files.sh                       # 1000 MB tree, all tools
#   BENCH_SIZE_MB=50 bench/files.sh      # quick smoke run
#
# Env (all optional):
#   BENCH_DIR        work dir, never inside the repository   (default /tmp/lifeboat-bench)
#   BENCH_SIZE_MB    size of the generated tree in MiB       (default 1000)
#   BENCH_SEED       seed of the generated tree              (default 42)
#   BENCH_TOOLS      tools to run, space separated           (default "lifeboat restic borg bupstash")
#   BENCH_RUNS       repeat each tool's init/backup/backup/restore N times; times are medians (default 1)
#   BENCH_BUILD      0 = do not run cargo build for lifeboat (default 1)
#   BENCH_INSTALL    0 = do not install missing peers        (default 1)
#   BENCH_KEEP       1 = keep repositories and restores after the run (default 0)
#   BENCH_PASSWORD   password/passphrase given to every tool
#   LIFEBOAT_BIN     lifeboat binary (default <repo>/target/release/lifeboat)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/lifeboat-bench}
SIZE_MB=${BENCH_SIZE_MB:-1000}
SEED=${BENCH_SEED:-42}
TOOLS=${BENCH_TOOLS:-"lifeboat restic borg bupstash"}
RUNS=${BENCH_RUNS:-1}
PASSWORD=${BENCH_PASSWORD:-correct-horse-battery-staple-bench}
LIFEBOAT_BIN=${LIFEBOAT_BIN:-$REPO_ROOT/target/release/lifeboat}

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
info() { printf '   %s\n' "$*"; }
loud() { printf '\n\033[1;31m!!!! %s\033[0m\n' "$*" >&2; }
die()  { loud "$*"; exit 1; }

# ------------------------------------------------------------------ work dir
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
case "$WORK/" in
  "$(cd "$REPO_ROOT" && pwd -P)"/*) die "BENCH_DIR=$WORK is inside the repository; pick a directory outside it" ;;
esac
if [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.lifeboat-bench" ]; then
  die "BENCH_DIR=$WORK is not empty and was not made by this script; refusing to clean it"
fi
touch "$WORK/.lifeboat-bench"

TREE=$WORK/tree
RESULTS=$WORK/results.tsv   # tool <TAB> key <TAB> value, turned into the table and results.json
LOGS=$WORK/logs

# Everything but the generated tree is from an earlier run: remove it.
clean_run_state() {
  find "$WORK" -mindepth 1 -maxdepth 1 \
    ! -name tree ! -name tree.spec ! -name tree.manifest ! -name tree.json ! -name .lifeboat-bench \
    -exec rm -rf {} +
}
on_exit() {
  local rc=$?
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"/*-repo* "$WORK"/*-restore "$WORK"/*-cache "$WORK"/*-home 2>/dev/null || true
  fi
  [ $rc = 0 ] || loud "files.sh stopped with status $rc (logs in $LOGS)"
}
trap on_exit EXIT
clean_run_state
mkdir -p "$LOGS"
: > "$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }

# ------------------------------------------------------------------ peers and lifeboat
wants() { [[ " $TOOLS " == *" $1 "* ]]; }

say "Peers"
if [ "${BENCH_INSTALL:-1}" = 1 ]; then
  "$HERE/install-peers.sh"
else
  info "BENCH_INSTALL=0: not installing anything"
fi
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package 'time'); run bench/install-peers.sh"

tool_cmd() {  # the executable of a tool
  case $1 in lifeboat) echo "$LIFEBOAT_BIN" ;; borg) echo borg ;; *) echo "$1" ;; esac
}
available() { command -v "$(tool_cmd "$1")" >/dev/null 2>&1; }

if wants lifeboat; then
  say "lifeboat"
  if [ "${BENCH_BUILD:-1}" = 1 ]; then
    info "cargo build --release -p lifeboat (log: $LOGS/lifeboat-build.log)"
    if ! (cd "$REPO_ROOT" && cargo build --release -p lifeboat) > "$LOGS/lifeboat-build.log" 2>&1; then
      loud "lifeboat: 'cargo build --release -p lifeboat' FAILED; last lines of the log:"
      tail -n 15 "$LOGS/lifeboat-build.log" >&2
    fi
  fi
  if [ -x "$LIFEBOAT_BIN" ]; then
    info "using $LIFEBOAT_BIN"
  else
    loud "lifeboat: binary $LIFEBOAT_BIN not available; measuring the peers only"
  fi
fi

# ------------------------------------------------------------------ data set
say "Data set (${SIZE_MB} MiB, seed $SEED)"
SPEC="size_mb=$SIZE_MB seed=$SEED gen=$(sha256sum "$HERE/gen_tree.py" | cut -c1-16)"
if [ -d "$TREE" ] && [ -f "$WORK/tree.manifest" ] && [ "$(cat "$WORK/tree.spec" 2>/dev/null)" = "$SPEC" ]; then
  info "reusing the tree generated earlier with the same spec ($SPEC)"
else
  rm -rf "$TREE" "$WORK/tree.spec" "$WORK/tree.manifest" "$WORK/tree.json"
  python3 "$HERE/gen_tree.py" generate --out "$TREE" --size-mb "$SIZE_MB" --seed "$SEED" > "$WORK/tree.json"
  python3 "$HERE/gen_tree.py" manifest "$TREE" > "$WORK/tree.manifest"
  echo "$SPEC" > "$WORK/tree.spec"
fi
python3 - "$WORK/tree.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"   {s['files']} files, {s['bytes'] / 1e6:.1f} MB, {s['dirs']} dirs ({s['empty_dirs']} empty), "
      f"{s['symlinks']} symlinks, {s['duplicates']} duplicate files ({s['duplicate_bytes'] / 1e6:.1f} MB)"
      + (f"; generated in {s['seconds']} s" if 'seconds' in s else ""))
for k, v in s["by_kind"].items():
    print(f"     {k:14} {v['files']:7} files {v['bytes'] / 1e6:9.1f} MB")
EOF

warm_cache() {  # read every file once so that all tools start with a warm page cache
  find "$TREE" -type f -print0 | xargs -0 cat > /dev/null
}

# ------------------------------------------------------------------ measuring
# measure TOOL PHASE DIR CMD...: run CMD in DIR under /usr/bin/time -v, record wall time and
# peak RSS. Returns CMD's status. Output goes to $LOGS/TOOL-PHASE.log.
measure() {
  local tool=$1 phase=$2 dir=$3; shift 3
  local log="$LOGS/$tool-$phase.log" tf="$LOGS/$tool-$phase.time" t0 t1 rc=0
  sync  # earlier phases' dirty pages must not be flushed on this phase's clock
  t0=$(date +%s.%N)
  (cd "$dir" && /usr/bin/time -v -o "$tf" "$@") > "$log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  local secs rss
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf" 2>/dev/null || true)
  if [ $rc != 0 ]; then
    loud "$tool $phase FAILED (status $rc); last lines of $log:"
    tail -n 15 "$log" >&2
    record "$tool" error "$phase failed with status $rc"
    return $rc
  fi
  record "$tool" "${phase}_s" "$secs"
  record "$tool" "${phase}_rss_kb" "${rss:-0}"
  printf '   %-10s %-10s %8.2f s   peak RSS %7.1f MB\n' "$tool" "$phase" "$secs" "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')"
}

verify() {  # verify TOOL DIR: compare the restored tree DIR with the source
  local tool=$1 dir=$2
  if [ ! -d "$dir" ]; then
    loud "$tool: restore produced no directory $dir"; record "$tool" verify FAILED; return 0
  fi
  python3 "$HERE/gen_tree.py" manifest "$dir" > "$LOGS/$tool-restore.manifest"
  if python3 "$HERE/gen_tree.py" compare "$WORK/tree.manifest" "$LOGS/$tool-restore.manifest" > "$LOGS/$tool-verify.txt"; then
    info "$(cat "$LOGS/$tool-verify.txt")"
    record "$tool" verify ok
  else
    loud "$tool: RESTORED TREE DOES NOT MATCH THE SOURCE — its figures are not valid"
    cat "$LOGS/$tool-verify.txt" >&2
    record "$tool" verify FAILED
  fi
}

# ------------------------------------------------------------------ the tools
# Each tool gets its own repository, restore dir and cache/config dirs under $WORK, all
# fresh, so nothing survives from an earlier tool or run. tool_setup exports the tool's
# environment and fills the command arrays: INIT, BACKUP1, BACKUP2 (the same backup of the
# unchanged tree again), RESTORE (into $OUT, run inside $OUT), and sets RESTORED (where the
# tree's contents land) and VERSION.
tool_setup() {
  local tool=$1
  OUT=$WORK/$tool-restore RESTORED=$WORK/$tool-restore BACKUP_DIR=$WORK
  case $tool in
    lifeboat)
      export LIFEBOAT_REPOSITORY=$WORK/lifeboat-repo LIFEBOAT_PASSWORD=$PASSWORD
      INIT=("$LIFEBOAT_BIN" repo init)
      BACKUP1=("$LIFEBOAT_BIN" backup --path "$TREE"); BACKUP2=("${BACKUP1[@]}")
      RESTORE=("$LIFEBOAT_BIN" restore latest --target "$OUT")
      VERSION=$("$LIFEBOAT_BIN" --version 2>/dev/null || echo "lifeboat (no --version)") ;;
    restic)
      export RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$WORK/restic-cache
      INIT=(restic init)   # repository format 2: zstd compression "auto"
      BACKUP1=(restic backup --host bench "$TREE"); BACKUP2=("${BACKUP1[@]}")  # 2nd run uses the 1st as parent
      # restic restores the absolute path below the target (0.14 has no "latest:subdir").
      RESTORE=(restic restore latest --host bench --target "$OUT")
      RESTORED=$OUT$TREE
      VERSION=$(restic version) ;;
    borg)
      export BORG_REPO=$WORK/borg-repo BORG_PASSPHRASE=$PASSWORD BORG_BASE_DIR=$WORK/borg-cache
      INIT=(borg init --encryption=repokey-blake2)
      # Run from inside the tree ("."), so archives hold the tree's contents at their top.
      BACKUP_DIR=$TREE
      BACKUP1=(borg create --compression zstd,3 ::run1 .)
      BACKUP2=(borg create --compression zstd,3 ::run2 .)   # files cache makes this cheap
      RESTORE=(borg extract ::run2)
      VERSION=$(borg --version) ;;
    bupstash)
      mkdir -p "$WORK/bupstash-cache"
      export BUPSTASH_REPOSITORY=$WORK/bupstash-repo BUPSTASH_KEY=$WORK/bupstash-cache/bench.key \
             BUPSTASH_SEND_LOG=$WORK/bupstash-cache/bupstash.sendlog
      INIT=(sh -c 'bupstash new-key -o "$BUPSTASH_KEY" && bupstash init')
      # Default compression (zstd); the send log (stat cache) makes the 2nd run cheap.
      BACKUP1=(bupstash put run=1 "$TREE")
      BACKUP2=(bupstash put run=2 "$TREE")
      RESTORE=(bupstash restore --into "$OUT" run=2)
      VERSION=$(bupstash version) ;;
  esac
}

run_tool() {
  local tool=$1
  say "$tool"
  if ! available "$tool"; then
    loud "$tool: not available (not found: $(tool_cmd "$tool")); skipping"
    record "$tool" available no
    return 0
  fi
  record "$tool" available yes
  local run
  for run in $(seq "$RUNS"); do
    [ "$RUNS" = 1 ] || info "run $run of $RUNS"
    rm -rf "$WORK/$tool-restore" "$WORK/$tool-repo"* "$WORK/$tool-cache" "$WORK/$tool-home"
    (
      export XDG_CACHE_HOME=$WORK/$tool-home/cache XDG_CONFIG_HOME=$WORK/$tool-home/config XDG_DATA_HOME=$WORK/$tool-home/data
      mkdir -p "$XDG_CACHE_HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME"
      tool_setup "$tool"
      mkdir -p "$OUT"
      if [ "$run" = 1 ]; then
        record "$tool" version "$(head -n 1 <<< "$VERSION")"
        info "$(head -n 1 <<< "$VERSION")"
      fi
      warm_cache
      measure "$tool" init    "$WORK"       "${INIT[@]}"    || exit 1
      measure "$tool" backup1 "$BACKUP_DIR" "${BACKUP1[@]}" || exit 1
      measure "$tool" backup2 "$BACKUP_DIR" "${BACKUP2[@]}" || exit 1
      measure "$tool" restore "$OUT"        "${RESTORE[@]}" || exit 1
      record "$tool" repo_bytes "$(du -sb "$WORK/$tool-repo" | cut -f1)"
      record "$tool" cache_bytes "$(du -sbc "$WORK/$tool-cache" "$WORK/$tool-home" 2>/dev/null | tail -n 1 | cut -f1)"
      info "repository $(du -sb "$WORK/$tool-repo" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
      verify "$tool" "$RESTORED"
    ) || { loud "$tool: run aborted, its figures are incomplete"; break; }
  done
  # Free the disk before the next tool (everything is kept with BENCH_KEEP=1).
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK/$tool-restore" "$WORK/$tool-repo"* "$WORK/$tool-cache" "$WORK/$tool-home"
  fi
}

for tool in $TOOLS; do
  case $tool in
    lifeboat|restic|borg|bupstash) ;;
    *) die "unknown tool '$tool' in BENCH_TOOLS (known: lifeboat restic borg bupstash)" ;;
  esac
  run_tool "$tool"
done

# ------------------------------------------------------------------ report
say "Results (${SIZE_MB} MiB tree, $(nproc) CPUs)"
python3 "$HERE/report.py" "$RESULTS" "$WORK/tree.json" "$WORK/results.json"
info "JSON: $WORK/results.json   logs: $LOGS"
