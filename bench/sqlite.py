#!/usr/bin/env python3
"""How long a SQLite capture stalls the application's writer.

A rollback-journal (journal_mode=DELETE) database of BENCH_SQLITE_MB megabytes is written by
another process at 200 commits/s (each commit timed); while it writes, each method copies the
database once. The stall is the longest commit that overlapped the copy (a commit waits while a
reader holds its lock); `commits` is how many got through during the copy.

    bench/sqlite.py                                   # 256 MB, lifeboat + sqlite3 references
    BENCH_SQLITE_MB=518 BENCH_RUNS=3 bench/sqlite.py  # the issue's size, medians of 3

Methods (BENCH_METHODS, space-separated; default all that can run):
    vacuum-into     `VACUUM INTO` (Python's sqlite3): what lifeboat's capture did before
    backup-1-step   SQLite's backup API, all pages in one step (Python's sqlite3)
    sqlite3-.backup the sqlite3 shell's `.backup` (steps of 100 pages, no pause), when installed
    lifeboat        `lifeboat backup` of a plan with the database as a sqlite resource
    lifeboat-before the same with LIFEBOAT_BEFORE (an older lifeboat binary), when set

Env: BENCH_DIR (default /tmp/lifeboat-bench-sqlite), BENCH_SQLITE_MB (256), BENCH_RATE (200),
BENCH_RUNS (1), BENCH_LIMIT (120 s per copy), LIFEBOAT_BIN (default <repo>/target/release/lifeboat, else target/debug),
LIFEBOAT_BEFORE, BENCH_KEEP=1 to keep the folder.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.environ.get("BENCH_DIR", "/tmp/lifeboat-bench-sqlite")
SIZE_MB = int(os.environ.get("BENCH_SQLITE_MB", "256"))
RATE = float(os.environ.get("BENCH_RATE", "200"))
RUNS = int(os.environ.get("BENCH_RUNS", "1"))
# A copy that has not finished by then is stopped and reported (SQLite's `.backup` in
# small steps restarts at every commit of another connection, and may never finish).
LIMIT = float(os.environ.get("BENCH_LIMIT", "120"))
PASSWORD = "correct-horse-battery-staple-bench"

WRITER = r"""
import sqlite3, sys, time
db, out, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, timeout=60, isolation_level=None)
c.execute('pragma synchronous=off')  # the lock waits are measured, not the disk's syncs
period, log = 1.0 / rate, open(out, 'w', buffering=1)
print('ready', flush=True)
due = time.monotonic()
while True:
    start = time.monotonic()
    c.execute('begin immediate')
    c.execute('insert into log(v) values (randomblob(100))')
    c.execute('commit')
    end = time.monotonic()
    log.write(f'{start} {end - start}\n')
    due = max(due + period, end)
    time.sleep(max(0.0, due - time.monotonic()))
"""


def lifeboat_bin():
    given = os.environ.get("LIFEBOAT_BIN")
    if given:
        return given
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, "lifeboat")
        if os.path.exists(path):
            return path
    sys.exit("no lifeboat binary: cargo build --release -p lifeboat, or set LIFEBOAT_BIN")


def make_database(db):
    import sqlite3

    c = sqlite3.connect(db)
    c.execute("pragma journal_mode=delete")
    c.execute("create table data(id integer primary key, v blob)")
    c.execute("create table log(id integer primary key, v blob)")
    rows = SIZE_MB * 1024 // 4  # 4 KiB rows
    for start in range(0, rows, 10000):
        c.execute(
            "insert into data(v) select randomblob(4000) from "
            "(with recursive n(i) as (select 1 union all select i + 1 from n limit ?) "
            "select i from n)",
            (min(10000, rows - start),),
        )
        c.commit()
    c.close()


def plan(dir, db):
    with open(os.path.join(dir, "lifeboat.toml"), "w") as f:
        f.write(
            f"""[repository]
url = "{dir}/repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[resources.db]
kind = "sqlite"
at.primary = {{ path = "{db}" }}
"""
        )


def methods(lifeboat, before):
    env = dict(os.environ, LIFEBOAT_PASSWORD=PASSWORD, LIFEBOAT_CACHE_DIR=f"{WORK}/cache")
    env.pop("LIFEBOAT_REPOSITORY", None)
    out = {}
    out["vacuum-into"] = lambda db, copy: subprocess.run(
        [sys.executable, "-c", f"import sqlite3; sqlite3.connect({db!r}).execute(\"VACUUM INTO '{copy}'\")"],
        check=True, timeout=LIMIT,
    )
    out["backup-1-step"] = lambda db, copy: subprocess.run(
        [sys.executable, "-c", f"import sqlite3; sqlite3.connect({db!r}).backup(sqlite3.connect({copy!r}), pages=-1)"],
        check=True, timeout=LIMIT,
    )
    if shutil.which("sqlite3"):
        out["sqlite3-.backup"] = lambda db, copy: subprocess.run(
            ["sqlite3", db, f".backup '{copy}'"], check=True, timeout=LIMIT
        )

    def with_binary(binary, name):
        dir = f"{WORK}/{name}"

        def run(db, copy):
            if not os.path.exists(f"{dir}/repo"):
                os.makedirs(dir, exist_ok=True)
                plan(dir, db)
                subprocess.run(
                    [binary, "repo", "init"], cwd=dir, env=env, check=True,
                    stdout=subprocess.DEVNULL,
                )
            subprocess.run(
                [binary, "backup"], cwd=dir, env=env, check=True, stdout=subprocess.DEVNULL,
                timeout=LIMIT,
            )

        return run

    out["lifeboat"] = with_binary(lifeboat, "lifeboat")
    if before:
        out["lifeboat-before"] = with_binary(before, "lifeboat-before")
    wanted = os.environ.get("BENCH_METHODS")
    if wanted:
        out = {k: v for k, v in out.items() if k in wanted.split()}
    return out


def measure(db, method, name):
    """Runs `method` while the writer writes; (seconds, longest commit, commits during)."""
    log = f"{WORK}/commits-{name}.log"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, db, log, str(RATE)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    copy = f"{WORK}/copy-{name}.db"
    finished = True
    try:
        time.sleep(1.5)
        t0 = time.monotonic()
        try:
            method(db, copy)
        except subprocess.TimeoutExpired:
            finished = False
        except subprocess.CalledProcessError:
            finished = None
        t1 = time.monotonic()
        time.sleep(1.0)
    finally:
        writer.kill()
        writer.wait()
    if os.path.exists(copy):
        os.remove(copy)
    stall, during = 0.0, 0
    with open(log) as f:
        for line in f:
            start, took = map(float, line.split())
            # A commit that began before the copy ended and ended after it began.
            if start <= t1 and start + took >= t0:
                stall = max(stall, took)
                during += 1
    return t1 - t0, stall, during, finished


def main():
    if os.path.exists(WORK):
        shutil.rmtree(WORK)
    os.makedirs(WORK)
    db = f"{WORK}/app.db"
    print(f"making a {SIZE_MB} MB rollback-journal database in {WORK} ...", flush=True)
    make_database(db)
    lifeboat = lifeboat_bin()
    print(f"lifeboat: {lifeboat}; writer: {RATE:.0f} commits/s; runs: {RUNS}")
    print(f"{'method':<16} {'copy s':>8} {'longest commit s':>17} {'commits during':>15}")
    for name, method in methods(lifeboat, os.environ.get("LIFEBOAT_BEFORE")).items():
        results = [measure(db, method, f"{name}-{i}") for i in range(RUNS)]
        secs = statistics.median(r[0] for r in results)
        stall = statistics.median(r[1] for r in results)
        during = statistics.median(r[2] for r in results)
        every = " ".join(f"{r[1]:.2f}" for r in results)
        unfinished = sum(1 for r in results if r[3] is False)
        failed = sum(1 for r in results if r[3] is None)
        note = f"; {unfinished} run(s) stopped unfinished after {LIMIT:.0f} s" if unfinished else ""
        note += f"; {failed} run(s) failed" if failed else ""
        print(f"{name:<16} {secs:>8.2f} {stall:>17.3f} {during:>15.0f}   (stalls: {every}{note})",
              flush=True)
    if os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
