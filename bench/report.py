#!/usr/bin/env python3
"""Turn bench/files.sh's results.tsv into the results table, the lifeboat-vs-peers
ratios (targets from PRODUCT.md "Performance") and results.json.

  report.py RESULTS_TSV TREE_JSON OUT_JSON
"""
import json
import os
import platform
import statistics
import sys

TOOLS = ["lifeboat", "restic", "borg", "bupstash"]
PEERS = TOOLS[1:]

# metric key, label, unit, target description, how lifeboat must compare with the best peer:
#   "speed" -> ratio = best_peer / lifeboat (times; higher is better), pass if ratio >= goal
#   "size"  -> ratio = lifeboat / best_peer (bytes; lower is better), pass if ratio <= goal
TARGETS = [
    ("backup1_s", "first backup", "s", "speed", 1.5),
    ("backup2_s", "no-change re-run", "s", "speed", 1.0),
    ("restore_s", "restore", "s", "speed", 1.5),
    ("repo_mb", "repository size", "MB", "size", 1.0),
    ("peak_rss_mb", "peak memory", "MB", "size", 1.0),
]


def load(tsv):
    """Per tool: times are the median over runs, peak RSS the max, sizes the last run's."""
    raw = {}
    with open(tsv) as f:
        for line in f:
            tool, key, value = line.rstrip("\n").split("\t", 2)
            raw.setdefault(tool, {}).setdefault(key, []).append(value)
    tools = {}
    for tool, kv in raw.items():
        t = tools[tool] = {"errors": kv.pop("error", [])}
        verdicts = kv.pop("verify", [])
        if verdicts:
            t["verify"] = "ok" if all(v == "ok" for v in verdicts) else "FAILED"
        for key, values in kv.items():
            if key.endswith("_s"):
                t[key] = statistics.median(float(v) for v in values)
                if len(values) > 1:
                    t[key + "_runs"] = [float(v) for v in values]
            elif key.endswith("_kb"):
                t[key] = max(float(v) for v in values)
            elif key.endswith("_bytes"):
                t[key] = float(values[-1])
            else:
                t[key] = values[-1]
        t["runs"] = len(kv.get("backup1_s", []))
    for t in tools.values():
        phases = ["backup1", "backup2", "restore"]
        if all(f"{p}_rss_kb" in t for p in phases):
            t["peak_rss_mb"] = max(t[f"{p}_rss_kb"] for p in phases) / 1024
        for p in phases + ["init"]:
            if f"{p}_rss_kb" in t:
                t[f"{p}_rss_mb"] = round(t.pop(f"{p}_rss_kb") / 1024, 1)
        if "repo_bytes" in t:
            t["repo_mb"] = t["repo_bytes"] / 1e6
        if "cache_bytes" in t:
            t["cache_mb"] = t["cache_bytes"] / 1e6
        t["valid"] = (t.get("available") == "yes" and not t["errors"] and t.get("verify") == "ok")
    return tools


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:.1f}"


def main():
    tsv, tree_json, out_json = sys.argv[1:4]
    tools = load(tsv)
    tree = json.load(open(tree_json))

    cols = [("init_s", "init s", "s"), ("backup1_s", "1st backup s", "s"), ("backup2_s", "no-change s", "s"),
            ("restore_s", "restore s", "s"), ("repo_mb", "repo MB", "MB"), ("peak_rss_mb", "peak RSS MB", "MB"),
            ("backup1_rss_mb", "RSS 1st", "MB"), ("backup2_rss_mb", "RSS 2nd", "MB"),
            ("restore_rss_mb", "RSS rest.", "MB"), ("cache_mb", "cache MB", "MB")]
    header = f"{'tool':10}" + "".join(f"{c[1]:>13}" for c in cols) + "  verify"
    print(header)
    print("-" * len(header))
    for name in TOOLS:
        if name not in tools:
            continue
        t = tools[name]
        if t.get("available") != "yes":
            print(f"{name:10}  not available")
            continue
        row = f"{name:10}" + "".join(f"{fmt(t.get(k), u):>13}" for k, _, u in cols)
        status = t.get("verify", "not run")
        if t["errors"]:
            status = "ERROR: " + "; ".join(t["errors"])
        elif status == "FAILED":
            status = "FAILED: restore differs from source, figures invalid"
        print(row + "  " + status)
    print(f"(data set: {tree['files']} files, {tree['bytes'] / 1e6:.1f} MB; cache MB = the tool's local "
          "cache/index outside the repository, not counted in repo MB)")

    lb = tools.get("lifeboat", {})
    lb_ok = lb.get("valid", False)
    targets = []
    print()
    if not lb_ok:
        why = ("it is not available" if lb.get("available") != "yes" else
               "its restore did not match the source" if lb.get("verify") == "FAILED" else
               "its run failed")
        print(f"lifeboat: no ratios, {why}.")
    print("lifeboat against the best peer (targets from PRODUCT.md):")
    for key, label, unit, kind, goal in TARGETS:
        peers = [(tools[p][key], p) for p in PEERS if p in tools and tools[p].get("valid") and key in tools[p]]
        if not peers:
            print(f"  {label}: no valid peer figure")
            continue
        best_v, best_p = min(peers)
        entry = {"metric": key, "best_peer": best_p, "best_peer_value": round(best_v, 3), "unit": unit,
                 "target": (f">= {goal}x faster" if kind == "speed" else f"<= {goal}x the best peer")}
        if not lb_ok or key not in lb:
            print(f"  {label}: lifeboat n/a, best peer {best_p} {fmt(best_v, unit)} {unit}")
            entry.update(lifeboat=None, ratio=None, passed=None)
        elif kind == "speed":
            v = lb[key]
            ratio = best_v / v if v > 0 else float("inf")
            ok = ratio >= goal
            how = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x SLOWER"
            print(f"  {label}: lifeboat {fmt(v, unit)} s, best peer {best_p} {fmt(best_v, unit)} s -> "
                  f"{how} (target >= {goal}x faster)  {'PASS' if ok else 'FAIL'}")
            entry.update(lifeboat=round(v, 3), ratio=round(ratio, 3), passed=ok)
        else:
            v = lb[key]
            ratio = v / best_v if best_v > 0 else float("inf")
            ok = ratio <= goal
            print(f"  {label}: lifeboat {fmt(v, unit)} {unit}, best peer {best_p} {fmt(best_v, unit)} {unit} -> "
                  f"{ratio:.2f}x the best peer's (target <= {goal}x)  {'PASS' if ok else 'FAIL'}")
            entry.update(lifeboat=round(v, 3), ratio=round(ratio, 3), passed=ok)
        targets.append(entry)

    for t in tools.values():
        for k in ("repo_mb", "cache_mb", "peak_rss_mb"):
            if k in t:
                t[k] = round(t[k], 2)
    result = {
        "dataset": tree,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "tools": tools,
        "targets": targets,
        "lifeboat_valid": lb_ok,
    }
    with open(out_json, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
