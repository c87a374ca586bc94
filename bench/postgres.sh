#!/usr/bin/env bash
# PostgreSQL benchmark: lifeboat's postgres resource against a bare pg_dump/pg_restore and
# against `pg_dump | restic backup --stdin` (see bench/README.md).
#
#   bench/postgres.sh                    # pgbench scale 50 (~750 MB database), several minutes
#   BENCH_PG_SCALE=5 bench/postgres.sh   # quick smoke run, well under a minute
#
# Env (all optional):
#   BENCH_DIR        work dir, never inside the repository   (default /tmp/lifeboat-bench-pg)
#   BENCH_PG_SCALE   pgbench -i scale factor (50 = 5M accounts, ~750 MB)   (default 50)
#   BENCH_PG_TX      pgbench transactions between the two backups, in total (default 5000)
#   BENCH_PG_BIN     PostgreSQL bin dir for server and client tools (default newest /usr/lib/postgresql/*/bin)
#   BENCH_PG_OPTS    extra server options for both clusters, e.g. "-c shared_buffers=512MB"
#   BENCH_TOOLS      tools beside the pg_dump/pg_restore baseline          (default "lifeboat restic")
#   BENCH_RUNS       repeat the first backup and the restore N times; times are medians (default 1)
#   BENCH_LIFEBOAT_JOBS  lifeboat restore --jobs (default 1: streamed; above 1 via a temporary file)
#   BENCH_BUILD      0 = do not run cargo build for lifeboat (default 1)
#   BENCH_INSTALL    0 = do not install restic when missing  (default 1)
#   BENCH_KEEP       1 = keep clusters, dumps and repositories after the run (default 0)
#   BENCH_PASSWORD   repository password given to lifeboat and restic
#   LIFEBOAT_BIN     lifeboat binary (default <repo>/target/release/lifeboat)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$HERE")
WORK=${BENCH_DIR:-/tmp/lifeboat-bench-pg}
SCALE=${BENCH_PG_SCALE:-50}
TX=${BENCH_PG_TX:-5000}
TOOLS=${BENCH_TOOLS:-"lifeboat restic"}
RUNS=${BENCH_RUNS:-1}
LIFEBOAT_JOBS=${BENCH_LIFEBOAT_JOBS:-1}
PASSWORD=${BENCH_PASSWORD:-correct-horse-battery-staple-bench}
LIFEBOAT_BIN=${LIFEBOAT_BIN:-$REPO_ROOT/target/release/lifeboat}
PG_OPTS=${BENCH_PG_OPTS:-}
DB=bench

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
info() { printf '   %s\n' "$*"; }
loud() { printf '\n\033[1;31m!!!! %s\033[0m\n' "$*" >&2; }
die()  { loud "$*"; exit 1; }

positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer (got '$2')"; }
positive BENCH_PG_SCALE "$SCALE"; positive BENCH_PG_TX "$TX"; positive BENCH_RUNS "$RUNS"
[ "$TX" -ge 2 ] || die "BENCH_PG_TX must be at least 2 (two pgbench clients)"
for tool in $TOOLS; do
  case $tool in lifeboat|restic) ;; *) die "unknown tool '$tool' in BENCH_TOOLS (known: lifeboat restic)" ;; esac
done
wants() { [[ " $TOOLS " == *" $1 "* ]]; }

# ------------------------------------------------------------------ prerequisites
PG_BIN=${BENCH_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -n "$PG_BIN" ] && [ -d "$PG_BIN" ] ||
  die "no PostgreSQL bin dir (looked for /usr/lib/postgresql/*/bin); install the Debian package 'postgresql' or set BENCH_PG_BIN"
for t in initdb pg_ctl postgres pgbench; do
  [ -x "$PG_BIN/$t" ] || die "$PG_BIN/$t is missing (Debian package postgresql-<version>, e.g. postgresql-15)"
done
for t in pg_dump pg_restore psql createdb dropdb; do
  [ -x "$PG_BIN/$t" ] || die "$PG_BIN/$t is missing (Debian package postgresql-client-<version>)"
done
command -v python3 >/dev/null || die "python3 is missing (Debian package python3)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package 'time'); run bench/install-peers.sh"

# initdb and postgres refuse to run as root: run the server as another user then.
if [ "$(id -u)" = 0 ]; then
  command -v runuser >/dev/null || die "runuser is missing (Debian package util-linux)"
  if id postgres >/dev/null 2>&1; then PG_OS_USER=postgres; else PG_OS_USER=nobody; fi
  as_pg() { runuser -u "$PG_OS_USER" -- "$@"; }
else
  PG_OS_USER=$(id -un)
  as_pg() { "$@"; }
fi

# Only what this script sets: no stray libpq, restic or lifeboat settings from the caller.
unset PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGPASSWORD PGPASSFILE PGSSLMODE PGHOST PGPORT PGUSER
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND LIFEBOAT_REPOSITORY
export PGHOST=127.0.0.1 PGUSER=postgres PGCONNECT_TIMEOUT=10

# ------------------------------------------------------------------ work dir
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
case "$WORK/" in
  "$(cd "$REPO_ROOT" && pwd -P)"/*) die "BENCH_DIR=$WORK is inside the repository; pick a directory outside it" ;;
esac
if [ -n "$(ls -A "$WORK")" ] && [ ! -e "$WORK/.lifeboat-bench-pg" ]; then
  die "BENCH_DIR=$WORK is not empty and was not made by this script; refusing to clean it"
fi
touch "$WORK/.lifeboat-bench-pg"

RESULTS=$WORK/results.tsv   # tool <TAB> key <TAB> value, turned into the table and results.json
LOGS=$WORK/logs
DUMPS=$WORK/dumps
PLAN_DIR=$WORK/lifeboat-plan
CLUSTERS=()                 # data dirs of the clusters this run started

stop_cluster() {
  as_pg "$PG_BIN/pg_ctl" -D "$1" -m fast -w -t 60 stop > /dev/null 2>&1 || true
}
# A cluster left running by an interrupted earlier run must stop before its files go.
for pid_file in "$WORK"/pg-*/data/postmaster.pid; do
  [ -e "$pid_file" ] || continue
  info "stopping a cluster left from an earlier run: $(dirname "$pid_file")"
  stop_cluster "$(dirname "$pid_file")"
done
find "$WORK" -mindepth 1 -maxdepth 1 ! -name .lifeboat-bench-pg -exec rm -rf {} +

on_exit() {
  local rc=$? d
  for d in "${CLUSTERS[@]}"; do stop_cluster "$d"; done
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"/pg-* "$DUMPS" "$WORK"/*-repo "$WORK"/*-cache "$WORK/tmp" 2>/dev/null || true
  fi
  [ $rc = 0 ] || loud "postgres.sh stopped with status $rc (logs in $LOGS)"
}
trap on_exit EXIT
mkdir -p "$LOGS" "$DUMPS" "$WORK/tmp"
: > "$RESULTS"
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"; }
# lifeboat writes the dump for a parallel restore to a temporary file: on the same disk.
export TMPDIR=$WORK/tmp

# ------------------------------------------------------------------ peers and lifeboat
say "Tools"
info "PostgreSQL: $("$PG_BIN/postgres" --version) ($PG_BIN), server runs as '$PG_OS_USER'"
record baseline version "$("$PG_BIN/pg_dump" --version)"
if wants restic; then
  if ! command -v restic >/dev/null; then
    if [ "${BENCH_INSTALL:-1}" = 1 ]; then
      info "restic is missing: running bench/install-peers.sh"
      "$HERE/install-peers.sh"
    fi
    command -v restic >/dev/null || die "restic is missing (Debian package restic; or run bench/install-peers.sh); or leave it out with BENCH_TOOLS=lifeboat"
  fi
  record restic version "$(restic version | head -n 1)"
  info "$(restic version | head -n 1)"
fi
if wants lifeboat; then
  if [ "${BENCH_BUILD:-1}" = 1 ]; then
    info "cargo build --release -p lifeboat (log: $LOGS/lifeboat-build.log)"
    if ! (cd "$REPO_ROOT" && cargo build --release -p lifeboat) > "$LOGS/lifeboat-build.log" 2>&1; then
      loud "lifeboat: 'cargo build --release -p lifeboat' FAILED; last lines of the log:"
      tail -n 15 "$LOGS/lifeboat-build.log" >&2
    fi
  fi
  [ -x "$LIFEBOAT_BIN" ] || die "lifeboat: binary $LIFEBOAT_BIN not available (build it, or set LIFEBOAT_BIN)"
  record lifeboat version "$("$LIFEBOAT_BIN" --version 2>/dev/null || echo lifeboat)"
  info "using $LIFEBOAT_BIN ($("$LIFEBOAT_BIN" --version 2>/dev/null || echo 'no --version'))"
fi

# ------------------------------------------------------------------ measuring
# measure TOOL PHASE DIR CMD...: run CMD in DIR under /usr/bin/time -v, record wall time and
# peak RSS (the largest process of CMD's tree; the PostgreSQL server is not part of it).
# stdout goes to $LOGS/TOOL-PHASE.out, stderr to $LOGS/TOOL-PHASE.log. Returns CMD's status.
measure() {
  local tool=$1 phase=$2 dir=$3; shift 3
  local out="$LOGS/$tool-$phase.out" log="$LOGS/$tool-$phase.log" tf="$LOGS/$tool-$phase.time" t0 t1 rc=0
  sync  # earlier phases' dirty pages must not be flushed on this phase's clock
  t0=$(date +%s.%N)
  (cd "$dir" && /usr/bin/time -v -o "$tf" "$@") > "$out" 2> "$log" || rc=$?
  t1=$(date +%s.%N)
  local secs rss
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$tf" 2>/dev/null || true)
  if [ $rc != 0 ]; then
    loud "$tool $phase FAILED (status $rc): $*"
    tail -n 15 "$log" "$out" >&2
    record "$tool" error "$phase failed with status $rc"
    return $rc
  fi
  record "$tool" "${phase}_s" "$secs"
  record "$tool" "${phase}_rss_kb" "${rss:-0}"
  printf '   %-10s %-10s %8.2f s   peak RSS %7.1f MB\n' "$tool" "$phase" "$secs" "$(awk -v k="${rss:-0}" 'BEGIN { print k / 1024 }')"
}

# A tool whose phase failed takes no further part; its figures stay incomplete.
FAILED=" "
ok() { [[ $FAILED != *" $1 "* ]]; }
fail() { FAILED="$FAILED$1 "; loud "$1: left out of the remaining phases"; }

# ------------------------------------------------------------------ clusters
free_ports() {  # two free loopback ports
  python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])'
}
# start_cluster NAME PORT: initdb (trust auth) and start a cluster in $WORK/pg-NAME.
start_cluster() {
  local dir=$WORK/pg-$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" != 0 ] || chown "$PG_OS_USER": "$dir"
  as_pg test -w "$dir" ||
    die "the server user '$PG_OS_USER' cannot write $dir; pick a BENCH_DIR it can reach (e.g. below /tmp)"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C > "$LOGS/initdb-$1.log" 2>&1 ||
    { tail -n 15 "$LOGS/initdb-$1.log" >&2; die "initdb of cluster $1 failed"; }
  CLUSTERS+=("$dir/data")
  # autovacuum off: no background vacuum/analyze of freshly loaded or restored tables may
  # run into the next measured phase. Same settings for both clusters, so for every tool.
  # shellcheck disable=SC2086
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c autovacuum=off $PG_OPTS" start > /dev/null ||
    { tail -n 20 "$dir/server.log" >&2; die "cluster $1 did not start (log: $dir/server.log)"; }
  info "cluster $1: 127.0.0.1:$port, data $dir/data"
}
psql_at() { local port=$1; shift; "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$port" "$@"; }

say "Clusters"
read -r PORT_SRC PORT_DR <<< "$(free_ports)"
start_cluster primary "$PORT_SRC"
start_cluster dr "$PORT_DR"

# ------------------------------------------------------------------ data set
say "Data set: pgbench -i -s $SCALE"
"$PG_BIN/createdb" -p "$PORT_SRC" "$DB"
t0=$(date +%s.%N)
"$PG_BIN/pgbench" -p "$PORT_SRC" -i -s "$SCALE" -q "$DB" > "$LOGS/pgbench-init.log" 2>&1 ||
  { tail -n 15 "$LOGS/pgbench-init.log" >&2; die "pgbench -i failed"; }
psql_at "$PORT_SRC" -d "$DB" -c CHECKPOINT
DB_BYTES=$(psql_at "$PORT_SRC" -d "$DB" -Atc "SELECT pg_database_size(current_database())")
info "database '$DB': $(awk -v b="$DB_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }') on disk, loaded in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
record dataset scale "$SCALE"
record dataset tx "$TX"
record dataset db_bytes "$DB_BYTES"
record dataset server_version "$(psql_at "$PORT_SRC" -d "$DB" -Atc "SHOW server_version")"

# What a restore must reproduce: row counts, balance sums and index count of every table.
FINGERPRINT_SQL="SELECT concat_ws(' ',
  (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts),
  (SELECT count(*) FROM pgbench_branches), (SELECT sum(bbalance) FROM pgbench_branches),
  (SELECT count(*) FROM pgbench_tellers),  (SELECT sum(tbalance) FROM pgbench_tellers),
  (SELECT count(*) FROM pgbench_history),  (SELECT sum(delta) FROM pgbench_history),
  (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'))"
fingerprint() { psql_at "$1" -d "$2" -Atc "$FINGERPRINT_SQL"; }
warm() {  # read every table of the source once, so that every tool starts with a warm page cache
  psql_at "$PORT_SRC" -d "$DB" -Atc "SELECT count(*) FROM pgbench_accounts; SELECT count(*) FROM pgbench_history" > /dev/null
}

# ------------------------------------------------------------------ tools' set-up
PG_DUMP=("$PG_BIN/pg_dump" -p "$PORT_SRC" -Fc -Z0 "$DB")
export LIFEBOAT_PASSWORD=$PASSWORD LIFEBOAT_CACHE_DIR=$WORK/lifeboat-cache LIFEBOAT_PG_BIN=$PG_BIN
export RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$WORK/restic-cache
mkdir -p "$PLAN_DIR"
cat > "$PLAN_DIR/lifeboat.toml" <<EOF
# Written by bench/postgres.sh
[repository]
url = "$WORK/lifeboat-repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
databases = ["$DB"]
at.primary = { url = "postgres://postgres@127.0.0.1:$PORT_SRC/postgres" }
at.dr = { url = "postgres://postgres@127.0.0.1:$PORT_DR/postgres" }
EOF
LIFEBOAT=("$LIFEBOAT_BIN" --quiet)

# fresh_repo TOOL: an empty, initialised repository (init is timed apart, never in a backup).
fresh_repo() {
  rm -rf "$WORK/$1-repo" "$WORK/$1-cache"
  case $1 in
    lifeboat) measure lifeboat init "$PLAN_DIR" "${LIFEBOAT[@]}" repo init ;;
    restic)   measure restic init "$WORK" restic init ;;  # repository format 2, compression "auto"
  esac
}
# backup TOOL PHASE: one backup of the source database.
backup() {
  local tool=$1 phase=$2
  case $tool in
    baseline)
      rm -f "$DUMPS/$DB.dump"
      measure baseline "$phase" "$WORK" "${PG_DUMP[@]}" -f "$DUMPS/$DB.dump" &&
        record baseline "${phase}_dump_bytes" "$(stat -c %s "$DUMPS/$DB.dump")" ;;
    restic)
      measure restic "$phase" "$WORK" bash -c 'set -o pipefail; "$@" | restic backup --quiet --json --host bench --stdin --stdin-filename "'"$DB"'.dump"' \
        pg_dump "${PG_DUMP[@]}" &&
        python3 - "$LOGS/restic-$phase.out" <<'EOF' | while IFS=$'\t' read -r k v; do record restic "${phase}_$k" "$v"; done
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("message_type") == "summary":  # data_added: new blobs' bytes before compression
        print(f"bytes\t{m['total_bytes_processed']}\nbytes_new\t{m['data_added']}")
EOF
      ;;
    lifeboat)
      measure lifeboat "$phase" "$PLAN_DIR" "${LIFEBOAT[@]}" --json backup &&
        python3 - "$LOGS/lifeboat-$phase.out" "db/$DB" <<'EOF' | while IFS=$'\t' read -r k v; do record lifeboat "${phase}_$k" "$v"; done
import json, sys
point = json.load(open(sys.argv[1]))["point"]
for r in point["resources"]:
    if r["name"] == sys.argv[2]:
        for k in ("bytes", "bytes_new", "bytes_stored"):
            print(f"{k}\t{r['stats'].get(k, 0)}")
EOF
      ;;
  esac
}
repo_bytes() { du -sb "$WORK/$1-repo" | cut -f1; }

# ------------------------------------------------------------------ first backup
say "First backup (${RUNS} run(s) per tool)"
for run in $(seq "$RUNS"); do
  [ "$RUNS" = 1 ] || info "run $run of $RUNS"
  for tool in baseline $TOOLS; do
    ok "$tool" || continue
    if [ "$tool" != baseline ]; then fresh_repo "$tool" || { fail "$tool"; continue; }; fi
    warm
    backup "$tool" backup1 || { fail "$tool"; continue; }
  done
done
info "pg_dump -Fc -Z0 file: $(stat -c %s "$DUMPS/$DB.dump" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
for tool in $TOOLS; do
  ok "$tool" || continue
  record "$tool" repo1_bytes "$(repo_bytes "$tool")"
  info "$tool repository: $(repo_bytes "$tool" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
done

# ------------------------------------------------------------------ changes, second backup
say "pgbench: $TX transactions (2 clients), then the second backup"
t0=$(date +%s.%N)
# Not measured: commit without waiting for the WAL flush, in pgbench's sessions only.
PGOPTIONS="-c synchronous_commit=off" "$PG_BIN/pgbench" -p "$PORT_SRC" -n -c 2 -j 2 -t $((TX / 2)) "$DB" > "$LOGS/pgbench-run.log" 2>&1 ||
  { tail -n 15 "$LOGS/pgbench-run.log" >&2; die "pgbench run failed"; }
psql_at "$PORT_SRC" -d "$DB" -c CHECKPOINT
info "$(grep -E '^number of transactions actually processed' "$LOGS/pgbench-run.log" || true) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
for tool in baseline $TOOLS; do
  ok "$tool" || continue
  warm
  backup "$tool" backup2 || { fail "$tool"; continue; }
  if [ "$tool" != baseline ]; then
    after=$(repo_bytes "$tool")
    record "$tool" repo2_bytes "$after"
    before=$(awk -F'\t' -v t="$tool" '$1 == t && $2 == "repo1_bytes" { v = $3 } END { print v }' "$RESULTS")
    info "$tool repository grew by $(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f MB", (b - a) / 1e6 }')"
  fi
done
SOURCE_PRINT=$(fingerprint "$PORT_SRC" "$DB")
info "source fingerprint: $SOURCE_PRINT"

# ------------------------------------------------------------------ restore
# Every tool restores the second backup into a new database on the dr cluster, which is then
# checked against the source and dropped again.
restore() {
  local tool=$1 target="${DB}_$1"
  case $tool in
    baseline)  # createdb is timed too: lifeboat's figure includes creating the database
      measure baseline restore "$WORK" bash -c '"$1" -p "$2" -T template0 "$3" && "$4" -p "$2" -j 2 -d "$3" "$5"' \
        sh "$PG_BIN/createdb" "$PORT_DR" "$target" "$PG_BIN/pg_restore" "$DUMPS/$DB.dump" ;;
    restic)    # from stdin pg_restore cannot run parallel jobs
      measure restic restore "$WORK" bash -c 'set -o pipefail; "$1" -p "$2" -T template0 "$3" && restic dump --quiet --host bench latest "$5" | "$4" -p "$2" -d "$3"' \
        sh "$PG_BIN/createdb" "$PORT_DR" "$target" "$PG_BIN/pg_restore" "/$DB.dump" ;;
    lifeboat)
      measure lifeboat restore "$PLAN_DIR" "${LIFEBOAT[@]}" restore latest --site dr --resource "db/$DB" \
        --rename "$DB=$target" --jobs "$LIFEBOAT_JOBS" ;;
  esac || return 1
  local got
  got=$(fingerprint "$PORT_DR" "$target" 2>&1) || true
  if [ "$got" = "$SOURCE_PRINT" ]; then
    record "$tool" verify ok
  else
    loud "$tool: RESTORED DATABASE DIFFERS FROM THE SOURCE — its figures are not valid"
    info "source:   $SOURCE_PRINT"; info "restored: $got"
    record "$tool" verify FAILED
  fi
  [ "${BENCH_KEEP:-0}" = 1 ] && [ "$run" = "$RUNS" ] ||
    psql_at "$PORT_DR" -d postgres -c "DROP DATABASE \"$target\""
  psql_at "$PORT_DR" -d postgres -c CHECKPOINT
}
say "Restore into the dr cluster (${RUNS} run(s) per tool)"
for run in $(seq "$RUNS"); do
  [ "$RUNS" = 1 ] || info "run $run of $RUNS"
  for tool in baseline $TOOLS; do
    ok "$tool" || continue
    restore "$tool" || fail "$tool"
  done
done

# ------------------------------------------------------------------ report
say "Results (pgbench scale $SCALE, $TX transactions, $(nproc) CPUs)"
python3 - "$RESULTS" "$WORK/results.json" "$TOOLS" <<'EOF'
import json, os, platform, statistics, sys

tsv, out_json, tools_arg = sys.argv[1:4]
TOOLS = ["baseline"] + tools_arg.split()
raw = {}
for line in open(tsv):
    tool, key, value = line.rstrip("\n").split("\t", 2)
    raw.setdefault(tool, {}).setdefault(key, []).append(value)

def num(v):
    try:
        return float(v)
    except ValueError:
        return v

data = {}
for tool, kv in raw.items():
    t = data[tool] = {}
    if tool != "dataset":
        t["errors"] = kv.pop("error", [])
        verdicts = kv.pop("verify", [])
        if verdicts:
            t["verify"] = "ok" if all(v == "ok" for v in verdicts) else "FAILED"
    for key, values in kv.items():
        if key.endswith("_s"):  # times: median over runs
            t[key] = round(statistics.median(float(v) for v in values), 3)
            if len(values) > 1:
                t[key + "_runs"] = [float(v) for v in values]
        elif key.endswith("_rss_kb"):  # peak memory: max over runs
            t[key[:-3] + "_mb"] = round(max(float(v) for v in values) / 1024, 1)
        else:
            t[key] = num(values[-1])
dataset = data.pop("dataset")
for name, t in data.items():
    t["valid"] = not t["errors"] and t.get("verify") == "ok"
    if "repo1_bytes" in t:
        t["repo1_mb"] = round(t["repo1_bytes"] / 1e6, 2)
    if "repo1_bytes" in t and "repo2_bytes" in t:
        t["growth_mb"] = round((t["repo2_bytes"] - t["repo1_bytes"]) / 1e6, 3)
    if "backup2_bytes_new" in t:  # what deduplication did not find, before compression
        t["new2_mb"] = round(t["backup2_bytes_new"] / 1e6, 3)
    if "backup1_dump_bytes" in t:
        t["repo1_mb"] = round(t["backup1_dump_bytes"] / 1e6, 2)  # the dump file, for scale
    backups = [t[k] for k in ("backup1_rss_mb", "backup2_rss_mb") if k in t]
    if backups:
        t["backup_peak_rss_mb"] = max(backups)
    if "restore_rss_mb" in t:
        t["restore_peak_rss_mb"] = t["restore_rss_mb"]

ROWS = [  # key, label, baseline shown?, format
    ("backup1_s", "backup (s)", True, "{:.2f}"),
    ("backup2_s", "second backup (s)", True, "{:.2f}"),
    ("repo1_mb", "size after backup (MB)", True, "{:.1f}"),
    ("growth_mb", "second backup repo growth (MB)", False, "{:.2f}"),
    ("new2_mb", "second backup new data (MB)", False, "{:.1f}"),
    ("restore_s", "restore (s)", True, "{:.2f}"),
    ("backup_peak_rss_mb", "peak RSS backup (MB)", True, "{:.1f}"),
    ("restore_peak_rss_mb", "peak RSS restore (MB)", True, "{:.1f}"),
]
NAMES = {"baseline": "pg_dump/pg_restore", "lifeboat": "lifeboat", "restic": "restic"}
peers = [t for t in TOOLS if t != "baseline"]
cols = ["metric".ljust(32), f"{NAMES['baseline']:>20}"] + [f"{NAMES[t]:>10}" for t in peers] \
       + [f"{t + '÷baseline':>18}" for t in peers]
print("  ".join(cols))
print("-" * len("  ".join(cols)))
base = data.get("baseline", {})
for key, label, with_base, fmt in ROWS:
    def cell(tool):
        v = data.get(tool, {}).get(key)
        return "-" if v is None or (tool == "baseline" and not with_base) else fmt.format(v)
    row = [label.ljust(32), f"{cell('baseline'):>20}"] + [f"{cell(t):>10}" for t in peers]
    for t in peers:
        v, b = data.get(t, {}).get(key), base.get(key)
        ratio = "-" if v is None or not b or not with_base else f"{v / b:.2f}x"
        row.append(f"{ratio:>18}")
    print("  ".join(row))
print("(size after backup: the -Fc -Z0 dump file for pg_dump, du -sb of the repository for the others;\n"
      " new data: bytes of the second dump not deduplicated against the first, before compression;\n"
      " restore times of pg_restore" + (" and restic" if "restic" in peers else "") + " include createdb"
      + ("; restic restores with one job, as pg_restore reads its stdin)" if "restic" in peers else ")"))
for t in TOOLS:
    d = data.get(t, {})
    status = "restored database checked: " + d.get("verify", "not run")
    if d.get("errors"):
        status = "ERROR: " + "; ".join(d["errors"]) + " (figures incomplete)"
    elif d.get("verify") == "FAILED":
        status = "FAILED: restored database differs from the source, figures invalid"
    print(f"  {NAMES[t]}: {status}")

targets = []
lb = data.get("lifeboat")
print()
if lb is None:
    print("lifeboat: not measured (BENCH_TOOLS)")
else:
    def check(metric, label, value, goal, unit, what):
        entry = {"metric": metric, "target": f"<= {goal}{unit}", "value": value}
        if value is None:
            print(f"  {label}: n/a"); entry["passed"] = None
        else:
            ok = value <= goal and lb["valid"] and base.get("valid", False)
            print(f"  {label}: {what} (target <= {goal}{unit})  {'PASS' if ok else 'FAIL'}"
                  + ("" if lb["valid"] and base.get("valid", False) else "  [a run failed or a restore differs]"))
            entry["passed"] = ok
        targets.append(entry)
    print("lifeboat against the targets:")
    r = lb["backup1_s"] / base["backup1_s"] if "backup1_s" in lb and base.get("backup1_s") else None
    check("backup_ratio", "backup", r and round(r, 3), 1.2, "x",
          r and f"lifeboat {lb['backup1_s']:.2f} s / pg_dump {base['backup1_s']:.2f} s = {r:.2f}x")
    g = lb.get("growth_mb")
    check("second_backup_growth_mb", "second backup growth", g, 10, " MB",
          g is not None and f"{g:.2f} MB after {dataset['tx']:.0f} transactions")
    r = lb["restore_s"] / base["restore_s"] if "restore_s" in lb and base.get("restore_s") else None
    check("restore_ratio", "restore", r and round(r, 3), 1.1, "x",
          r and f"lifeboat {lb['restore_s']:.2f} s / pg_restore -j 2 {base['restore_s']:.2f} s = {r:.2f}x")

result = {
    "dataset": {"pgbench_scale": dataset["scale"], "transactions": dataset["tx"],
                "db_bytes": dataset["db_bytes"], "server_version": dataset["server_version"]},
    "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
    "tools": data,
    "targets": targets,
}
with open(out_json, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
EOF
info "JSON: $WORK/results.json   logs: $LOGS"
