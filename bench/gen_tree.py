#!/usr/bin/env python3
"""Deterministic file-tree generator and tree verifier for bench/files.sh.

  gen_tree.py generate --out DIR [--size-mb N] [--seed S]   build the tree, print a JSON summary
  gen_tree.py manifest DIR > FILE                           one line per entry (type, mode, size, hash/target, mtime)
  gen_tree.py compare SRC_MANIFEST DST_MANIFEST             exit 1 (and say what) if the trees differ

The tree mixes, by bytes (for the default 1000 MB):
  ~25 %  small text files (source-like and prose-like, 0 B .. 64 KiB, median ~3 KiB)
  ~25 %  medium files (64 KiB .. 4 MiB): text, incompressible "media", half-compressible binaries
  ~20 %  large incompressible random files
  ~20 %  large compressible log files
  ~10 %  exact duplicates of files above, placed in other directories
plus a nested directory structure (depth <= 6), empty directories, empty files,
a few executable files, and symlinks (relative to files and dirs, absolute, dangling).

Everything is derived from --seed: the same seed and size give byte-identical trees
(except mtimes). Only the Python standard library is used.
"""
import argparse
import hashlib
import json
import os
import random
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20

# --------------------------------------------------------------------------- vocabulary
_SYLLABLES = (
    "ab ac ad al am an ar as at ba be bi bo bu ca ce ci co cu da de di do du el em en er es "
    "fa fe fi fo fu ga ge gi go ha he hi ho in is it ka ke ki ko la le li lo lu ma me mi mo mu "
    "na ne ni no nu ol on or pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu ul um "
    "un ur va ve vi vo wa we wi xa ya yo za ze zo str tion ment ing ness able ly er est"
).split()
_COMMON = (
    "the of and to a in is it you that he was for on are with as I his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been now find"
).split()
_KEYWORDS = (
    "fn let mut pub struct impl enum match if else for while return use mod const static "
    "def class import from self None True False async await try except raise with lambda "
    "int void char unsigned long double return include define typedef switch case break"
).split()
_OPS = ["=", "==", "!=", "+=", "-", "+", "*", "<", ">", "&&", "||", "->", "=>", "::", "."]


def make_vocab(rng, n):
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    words = sorted(words)
    rng.shuffle(words)
    return words


def zipf_weights(n, s=1.05):
    return [1.0 / (i + 1) ** s for i in range(n)]


# --------------------------------------------------------------------------- line pools
def prose_pool(rng, vocab, n_lines):
    words = _COMMON + vocab
    lengths = [6 + int(rng.random() * 11) for _ in range(n_lines)]
    stream = rng.choices(words, cum_weights=list(_accumulate(zipf_weights(len(words)))), k=sum(lengths))
    ends = rng.choices((".", ".", ".", ",", ";", "?", ":"), k=n_lines)
    lines, pos = [], 0
    for k, end in zip(lengths, ends):
        ws = stream[pos:pos + k]
        pos += k
        lines.append(ws[0].capitalize() + " " + " ".join(ws[1:]) + end)
    return lines


def code_pool(rng, vocab, n_lines):
    idents = vocab[:3000]
    stream = iter(rng.choices(idents, cum_weights=list(_accumulate(zipf_weights(len(idents), 0.9))),
                              k=n_lines * 12))
    rnd = rng.random

    def ident():
        a = next(stream)
        return a if rnd() < 0.5 else a + "_" + next(stream)

    lines = []
    for _ in range(n_lines):
        indent = "    " * rng.choice((0, 1, 1, 2, 2, 2, 3, 3, 4))
        form = rnd()
        if form < 0.30:
            line = f"{indent}let {ident()} = {ident()}.{ident()}({ident()}, {int(rnd() * 4096)});"
        elif form < 0.45:
            line = f"{indent}if {ident()} {rng.choice(_OPS)} {ident()} {{"
        elif form < 0.55:
            line = f"{indent}{rng.choice(_KEYWORDS)} {ident()}({ident()}: {ident().capitalize()}) -> {ident().capitalize()} {{"
        elif form < 0.65:
            line = f"{indent}// {' '.join(rng.choices(vocab[:800], k=3 + int(rnd() * 8)))}"
        elif form < 0.75:
            line = f"{indent}}}"
        elif form < 0.85:
            line = f"{indent}return {ident()}{rng.choice(_OPS)}{ident()};"
        else:
            line = f'{indent}{ident()}.push("{ident()}-{int(rnd() * 100000)}");'
        lines.append(line)
    return lines


def record_pool(rng, vocab, n_lines):
    lines = []
    for i in range(n_lines):
        if rng.random() < 0.5:
            lines.append(
                '{"id": %d, "name": "%s", "kind": "%s", "score": %.3f, "tags": ["%s", "%s"], "ok": %s},'
                % (rng.randint(1, 10**7), rng.choice(vocab), rng.choice(vocab[:40]), rng.random() * 100,
                   rng.choice(vocab[:200]), rng.choice(vocab[:200]), rng.choice(("true", "false"))))
        else:
            lines.append("%d,%s,%s,%d,%.4f,%d" % (rng.randint(1, 10**6), rng.choice(vocab), rng.choice(vocab[:60]),
                                                  rng.randint(0, 5000), rng.random(), rng.randint(0, 1)))
    return lines


def log_bodies(rng, vocab, n_lines):
    comps = ["http", "db", "scheduler", "auth", "cache", "worker", "storage", "api", "mailer", "gc"]
    msgs = [
        "request completed method=GET path=/api/v1/{w}/{n} status=200 dur_ms={f}",
        "request completed method=POST path=/api/v1/{w} status=201 dur_ms={f}",
        "slow query table={w} rows={n} dur_ms={f}",
        "cache miss key={w}:{n} fill_ms={f}",
        "job {w} finished id={n} attempts=1 dur_ms={f}",
        "connection from 10.{a}.{b}.{c}:{n} accepted",
        "user {w} logged in session={h}",
        "retrying upload of object {h} attempt={a} backoff_ms={n}",
        "evicted {n} entries from {w} pool in {f} ms",
        "WARN disk usage {a}% on /var/lib/{w}",
    ]
    levels = ["INFO"] * 8 + ["DEBUG"] * 4 + ["WARN", "ERROR"]
    out = []
    for _ in range(n_lines):
        m = rng.choice(msgs).format(
            w=rng.choice(vocab[:500]), n=rng.randint(1, 99999), f="%.2f" % (rng.random() * 500),
            a=rng.randint(0, 255), b=rng.randint(0, 255), c=rng.randint(0, 255),
            h="%016x" % rng.getrandbits(64))
        out.append(f"{rng.choice(levels):5} [{rng.choice(comps)}-{int(rng.random() * 8)}] {m}")
    return out


def _accumulate(xs):
    t = 0.0
    for x in xs:
        t += x
        yield t


# --------------------------------------------------------------------------- generator
class Gen:
    def __init__(self, seed, size_mb):
        self.rng = random.Random(seed)
        self.total = size_mb * MiB
        rng = self.rng
        vocab = make_vocab(rng, 6000)
        self.vocab = vocab
        # Pool sizes scale a little with the data set so small runs stay quick.
        scale = min(1.0, max(0.1, size_mb / 1000))
        self.prose = prose_pool(rng, vocab, int(120_000 * scale))
        self.code = code_pool(rng, vocab, int(160_000 * scale))
        self.records = record_pool(rng, vocab, int(60_000 * scale))
        self.logs = log_bodies(rng, vocab, int(100_000 * scale))
        # Random pool: 32 MiB of SHAKE output; file data is pool[a..] XOR pool[b..] per 1 MiB
        # segment with fresh (a, b), so no two segments repeat and nothing dedups by accident.
        self.pool_len = 32 * MiB
        pool = hashlib.shake_128(b"lifeboat-bench-%d" % seed).digest(self.pool_len)
        self.pool = pool + pool[: 2 * MiB]  # wrap-around slack for slices
        self.stats = {"files": 0, "bytes": 0, "dirs": 0, "empty_dirs": 0, "symlinks": 0,
                      "duplicates": 0, "duplicate_bytes": 0, "by_kind": {}}

    # ---- content makers
    def text(self, pool, size):
        if size <= 0:
            return b""
        avg = 60
        k = max(1, size // avg + 1)
        s = "\n".join(self.rng.choices(pool, k=k)).encode()
        while len(s) < size:
            s += b"\n" + "\n".join(self.rng.choices(pool, k=k // 4 + 1)).encode()
        return s[:size - 1] + b"\n"

    def log(self, size):
        rng = self.rng
        parts, n, t = [], 0, rng.randint(0, 10**6)
        bodies, rnd = self.logs, rng.random
        ms_str = [".%03dZ " % i for i in range(1000)]
        last_sec, prefix = -1, ""
        while n < size:
            lines = []
            for b in rng.choices(bodies, k=4096):
                t += int(rnd() * 900)
                sec = t // 1000
                if sec != last_sec:
                    mi, s = divmod(sec, 60)
                    h, mi = divmod(mi, 60)
                    d, h = divmod(h, 24)
                    prefix, last_sec = f"2024-03-{d % 28 + 1:02d}T{h:02d}:{mi:02d}:{s:02d}", sec
                lines.append(prefix + ms_str[t - sec * 1000] + b)
            chunk = ("\n".join(lines) + "\n").encode()
            parts.append(chunk)
            n += len(chunk)
        return b"".join(parts)[:size]

    def random_bytes(self, size):
        rng, pool, L = self.rng, self.pool, self.pool_len
        parts, left = [], size
        while left > 0:
            n = min(MiB, left)
            a, b = rng.randrange(L), rng.randrange(L)
            x = int.from_bytes(pool[a:a + n], "little") ^ int.from_bytes(pool[b:b + n], "little")
            parts.append(x.to_bytes(n, "little"))
            left -= n
        return b"".join(parts)

    def half_compressible(self, size):
        """Binary-like: 4 KiB pages alternating random data and sparse structured data (~2x with zstd)."""
        raw = bytearray(self.random_bytes(size))
        page = 4096
        for off in range(page, size, 2 * page):
            end = min(off + page, size)
            pattern = (b"\x00" * 12 + (off // page).to_bytes(4, "little"))
            raw[off:end] = (pattern * (page // len(pattern) + 1))[: end - off]
        return bytes(raw)

    # ---- tree shape
    def build_dirs(self, root, n_dirs, max_depth=6):
        rng = self.rng
        dirs = [("", 0)]  # (relative path, depth)
        names = set()
        while len(dirs) < n_dirs:
            # Prefer shallow parents a bit, so the tree is bushy but still reaches max_depth.
            parent, depth = dirs[min(len(dirs) - 1, int(rng.random() ** 2 * len(dirs)))]
            if depth >= max_depth:
                continue
            name = rng.choice(self.vocab[:1500])
            if rng.random() < 0.3:
                name += rng.choice(("_test", "-v2", ".d", "_old", "s", "_data", "-utils"))
            path = os.path.join(parent, name)
            if path in names:
                continue
            names.add(path)
            dirs.append((path, depth + 1))
        for d, _ in dirs:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        self.stats["dirs"] = len(dirs)
        return [d for d, _ in dirs]

    def write(self, root, rel, data, kind, mode=None):
        p = os.path.join(root, rel)
        with open(p, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(p, mode)
        self.stats["files"] += 1
        self.stats["bytes"] += len(data)
        k = self.stats["by_kind"].setdefault(kind, {"files": 0, "bytes": 0})
        k["files"] += 1
        k["bytes"] += len(data)

    def generate(self, root):
        rng, total = self.rng, self.total
        os.makedirs(root, exist_ok=True)
        if os.listdir(root):
            sys.exit(f"gen_tree: {root} is not empty")
        budget = {"small": 0.25 * total, "medium": 0.25 * total, "random": 0.20 * total, "log": 0.20 * total}
        dup_budget = 0.10 * total
        est_small_files = int(budget["small"] / 6000) + 10
        dirs = self.build_dirs(root, max(8, est_small_files // 14))
        used = set()
        written = []  # (relpath, size) candidates for duplication

        def new_name(ext):
            while True:
                d = rng.choice(dirs)
                n = rng.choice(self.vocab)
                if rng.random() < 0.3:
                    n += "_" + rng.choice(self.vocab[:500])
                rel = os.path.join(d, n + ext)
                if rel not in used:
                    used.add(rel)
                    return rel

        # small text files: lognormal sizes, median ~3 KiB, capped at 64 KiB; ~0.5 % empty
        n = 0
        code_ext = (".rs", ".py", ".c", ".h", ".go", ".js", ".toml", ".sh")
        prose_ext = (".md", ".txt", ".rst", ".html")
        while n < budget["small"]:
            if rng.random() < 0.005:
                self.write(root, new_name(rng.choice((".txt", ".keep", ".lock"))), b"", "empty")
                continue
            size = min(64 * 1024, int(rng.lognormvariate(8.0, 1.1)))
            if rng.random() < 0.6:
                ext, pool = rng.choice(code_ext), self.code
            else:
                ext, pool = rng.choice(prose_ext), self.prose
            rel = new_name(ext)
            mode = 0o755 if ext == ".sh" else None
            self.write(root, rel, self.text(pool, size), "small_text", mode)
            written.append((rel, size))
            n += size

        # medium files 64 KiB .. 4 MiB, log-uniform
        n = 0
        while n < budget["medium"]:
            size = int(2 ** rng.uniform(16, 22))
            r = rng.random()
            if r < 0.4:
                ext = rng.choice((".json", ".csv", ".md", ".sql"))
                data, kind = self.text(self.records if ext in (".json", ".csv", ".sql") else self.prose, size), "medium_text"
            elif r < 0.8:
                ext = rng.choice((".jpg", ".png", ".gz", ".mp3", ".pdf"))
                data, kind = self.random_bytes(size), "medium_random"
            else:
                ext = rng.choice((".so", ".bin", ".db", ".o"))
                data, kind = self.half_compressible(size), "medium_binary"
            rel = new_name(ext)
            self.write(root, rel, data, kind)
            written.append((rel, size))
            n += size

        # large files: sizes scale with the data set (8..64 MiB at 1 GB)
        lo = max(MiB, min(8 * MiB, total // 125))
        hi = max(2 * MiB, min(64 * MiB, total // 16))
        for kind, ext_choices in (("random", (".tar.zst", ".mp4", ".img", ".iso")), ("log", (".log",))):
            n = 0
            while n < budget[kind]:
                size = int(min(budget[kind] - n + lo, rng.uniform(lo, hi)))
                data = self.random_bytes(size) if kind == "random" else self.log(size)
                rel = new_name(rng.choice(ext_choices))
                self.write(root, rel, data, "large_" + kind)
                written.append((rel, size))
                n += size

        # exact duplicates in other directories (by bytes mostly medium, at most one large)
        n, large_done = 0, False
        small = [w for w in written if w[1] < 64 * 1024]
        bigger = [w for w in written if w[1] >= 64 * 1024]
        while n < dup_budget and written:
            src, size = rng.choice(small if (rng.random() < 0.15 or not bigger) else bigger)
            if size >= lo:
                if large_done or size > dup_budget - n:
                    continue
                large_done = True
            base = os.path.basename(src) if rng.random() < 0.7 else "copy_of_" + os.path.basename(src)
            d = rng.choice(dirs)
            rel = os.path.join(d, base)
            if rel in used:
                continue
            used.add(rel)
            with open(os.path.join(root, src), "rb") as f:
                data = f.read()
            self.write(root, rel, data, "duplicate")
            self.stats["duplicates"] += 1
            self.stats["duplicate_bytes"] += len(data)
            n += max(size, 1)

        # empty directories (leaves that never get files)
        n_empty = max(3, len(dirs) // 50)
        made = 0
        while made < n_empty:
            rel = os.path.join(rng.choice(dirs), "empty_" + rng.choice(self.vocab[:2000]))
            if rel.count(os.sep) >= 6 or os.path.exists(os.path.join(root, rel)):
                continue
            os.makedirs(os.path.join(root, rel))
            made += 1
        self.stats["empty_dirs"] = made
        self.stats["dirs"] += made

        # symlinks: relative -> file, relative -> dir, absolute, dangling
        n_links = max(8, self.stats["files"] // 200)
        for i in range(n_links):
            d = rng.choice(dirs)
            rel = os.path.join(d, "link_%d_%s" % (i, rng.choice(self.vocab[:500])))
            if rel in used:
                continue
            used.add(rel)
            r = rng.random()
            if r < 0.6:
                target = os.path.relpath(rng.choice(written)[0], d or ".")
            elif r < 0.8:
                target = os.path.relpath(rng.choice(dirs) or ".", d or ".")
            elif r < 0.9:
                target = "/usr/share/doc/%s" % rng.choice(self.vocab[:100])
            else:
                target = "../does-not-exist/%s" % rng.choice(self.vocab)
            os.symlink(target, os.path.join(root, rel))
            self.stats["symlinks"] += 1
        return self.stats


# --------------------------------------------------------------------------- manifest / compare
def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def manifest(root):
    """Lines: path TAB type TAB mode TAB size TAB sha256|link-target TAB mtime_s. Root entry omitted."""
    entries, files = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entries.append([rel, "l", "-", "-", os.readlink(p), "-"])
            elif stat.S_ISDIR(st.st_mode):
                entries.append([rel, "d", "%o" % stat.S_IMODE(st.st_mode), "-", "-", "-"])
            elif stat.S_ISREG(st.st_mode):
                e = [rel, "f", "%o" % stat.S_IMODE(st.st_mode), str(st.st_size), None, str(int(st.st_mtime))]
                entries.append(e)
                files.append((e, p))
            else:
                entries.append([rel, "?", "%o" % stat.S_IMODE(st.st_mode), "-", "-", "-"])
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        for (e, _), h in zip(files, ex.map(lambda fp: _hash_file(fp[1]), files)):
            e[4] = h
    entries.sort()
    return "".join("\t".join(e) + "\n" for e in entries)


def compare(src_manifest, dst_manifest, show=15):
    def load(p):
        out = {}
        with open(p) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                out[parts[0]] = parts[1:]
        return out

    a, b = load(src_manifest), load(dst_manifest)
    problems = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            problems.append(f"missing in restore: {path}")
        elif path not in a:
            problems.append(f"extra in restore:   {path}")
        else:
            (ta, ma, sa, ha, _), (tb, mb, sb, hb, _) = a[path], b[path]
            if ta != tb:
                problems.append(f"type differs:       {path} ({ta} vs {tb})")
            elif ha != hb or sa != sb:
                what = "link target" if ta == "l" else "content"
                problems.append(f"{what} differs: {path}")
            elif ma != mb:
                problems.append(f"mode differs:       {path} ({ma} vs {mb})")
    mtime_diffs = sum(1 for p in a if p in b and a[p][0] == "f" and a[p][4] != b[p][4])
    if problems:
        print(f"VERIFY FAILED: {len(problems)} difference(s) (source {len(a)} entries, restore {len(b)}):")
        for p in problems[:show]:
            print("  " + p)
        if len(problems) > show:
            print(f"  ... and {len(problems) - show} more")
        return 1
    note = f" ({mtime_diffs} file mtimes differ)" if mtime_diffs else ""
    print(f"verify ok: {len(a)} entries identical (content, symlink targets, modes){note}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    g.add_argument("--size-mb", type=int, default=1000)
    g.add_argument("--seed", type=int, default=42)
    m = sub.add_parser("manifest")
    m.add_argument("dir")
    c = sub.add_parser("compare")
    c.add_argument("src")
    c.add_argument("dst")
    args = ap.parse_args()

    if args.cmd == "generate":
        t = time.time()
        stats = Gen(args.seed, args.size_mb).generate(args.out)
        stats["seconds"] = round(time.time() - t, 2)
        stats["seed"], stats["size_mb"] = args.seed, args.size_mb
        print(json.dumps(stats))
    elif args.cmd == "manifest":
        sys.stdout.write(manifest(args.dir))
    else:
        sys.exit(compare(args.src, args.dst))


if __name__ == "__main__":
    main()
