#!/usr/bin/env python3
"""Turns the raw results of scripts/bench.sh into the tables of
docs/performance.md and checks the targets.

    python3 bench/report.py RESULTS.tsv MACHINE.txt
"""

import os
import re
import statistics
import sys
from collections import defaultdict

STACKS = [
    ("bare", "(a) bare axum, no sessions"),
    ("tessera-memory", "(b) tessera-axum + MemoryStore"),
    ("tessera-sqlite", "(c) tessera-axum + SqlStore (SQLite)"),
    ("tessera-redis", "(d) tessera-axum + RedisStore"),
    ("tessera-redis-cache", "(d') same + session cache (pub/sub invalidation)"),
    ("ts-memory", "(e) tower-sessions 0.15 + MemoryStore"),
    ("ts-redis", "(f) tower-sessions 0.14 + redis-store (fred)"),
    ("ts-redis-sliding", "(f') same, `always_save` (sliding)"),
    ("express", "(g) express-session + connect-redis"),
    ("express-tessera", "(h) express + tessera client (`tessera serve` on Redis)"),
    ("express-tessera-cache", "(h') same, `tessera serve` with its session cache on"),
]
# Each tessera row is compared with the stack a user would otherwise pick.
PEERS = {
    "tessera-memory": ["ts-memory"],
    "tessera-redis": ["ts-redis-sliding", "ts-redis", "express"],
    "tessera-redis-cache": ["ts-redis", "express", "tessera-redis"],
    "tessera-sqlite": [],
    "express-tessera": ["express"],
    "express-tessera-cache": ["express", "express-tessera"],
}
WORKLOADS = [
    ("read", "GET /whoami (read path), sessions round-robin"),
    ("write", "POST /counter, a session per request in flight"),
    ("write-shared", "POST /counter, ONE shared session (32 concurrent requests)"),
]
# Redis commands that are the harness's own, not the server's.
HARNESS_CMDS = {"info", "flushall", "scan", "memory", "ping", "command", "config"}


def kv(text):
    return dict(re.findall(r"([\w.-]+)=(\S+)", text or ""))


def calls(text):
    return {k: int(v) for k, v in kv(text).items() if k.split("|")[0] not in HARNESS_CMDS}


def fmt_rps(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def main(results_path, machine_path):
    runs = defaultdict(list)  # (stack, workload) -> [run]
    redis_mem, sql, memsize, sweep, instr = {}, {}, {}, None, {}
    round_trips = {}  # (stack, workload) -> (requests, sent, run by scripts)
    reads = {}  # (stack, workload) -> (requests, Redis reads), one connection
    # (stack, workload) -> [hits, misses, flushes, written_through]
    cache = defaultdict(lambda: [0, 0, 0, 0])
    # (stack, workload) -> [requests, server CPU ticks, Redis CPU ticks,
    # of the server's: `tessera serve` ticks]
    cpu = defaultdict(lambda: [0, 0, 0, 0])
    with open(results_path, encoding="utf-8") as f:
        for raw in f:
            row = raw.rstrip("\n").split("\t")
            kind = row[0]
            if kind == "redis-memory":
                redis_mem[row[1]] = (int(row[2]), int(row[3]))
            elif kind == "redis-rt":
                round_trips[(row[1], row[2])] = (int(row[3]), int(row[4]), int(row[5]))
            elif kind == "redis-reads":
                reads[(row[1], row[2])] = (int(row[3]), int(row[4]))
            elif kind == "cpu":
                # Older results have no `tessera serve` column.
                before, after = ([*map(int, c.split()), 0][:3] for c in (row[4], row[5]))
                acc = cpu[(row[1], row[2])]
                acc[0] += int(row[3])
                for i in range(3):
                    acc[i + 1] += after[i] - before[i]
            elif kind == "cache":
                before, after = kv(row[3]), kv(row[4])
                for i, key in enumerate(("hits", "misses", "flushes", "written_through")):
                    cache[(row[1], row[2])][i] += int(after.get(key, 0)) - int(before.get(key, 0))
            elif kind == "sql":
                r = kv(row[2])
                before, after = kv(row[3]), kv(row[4])
                delta = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in after}
                sql[row[1]] = (int(r["requests"]), {k: v for k, v in delta.items() if v})
            elif kind == "memsize":
                m = kv(row[1])
                memsize[m["store"]] = m
            elif kind == "instr":
                instr[(row[1], row[2])] = int(row[3]) / int(row[4])
            elif kind == "sweep":
                sweep = (int(row[1] or 0), int(row[2]), int(row[3]))
            else:
                round_, stack, workload, line = row[0], row[1], row[2], row[3]
                r = {k: int(v) for k, v in kv(line).items()}
                r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                r["ok"] = r["requests"] - r["non2xx"]
                b, a = calls(row[4] if len(row) > 4 else ""), calls(row[5] if len(row) > 5 else "")
                r["cmds"] = {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0) > 0}
                r["kept"] = row[6] if len(row) > 6 and row[6] != "" else None
                runs[(stack, workload)].append(r)

    out = []
    p = out.append
    with open(machine_path, encoding="utf-8") as f:
        for line in f:
            p(f"- {line.strip()}")
    p("")

    def med(stack, workload, key="rps"):
        rs = runs.get((stack, workload))
        return statistics.median(r[key] for r in rs) if rs else None

    def redis_per_req(rs):
        reqs = sum(r["requests"] for r in rs)
        total = defaultdict(int)
        for r in rs:
            for k, v in r["cmds"].items():
                total[k] += v
        if not total or not reqs:
            return None, ""
        per = sum(total.values()) / reqs
        detail = " ".join(f"{k} {v / reqs:.2f}" for k, v in sorted(total.items(), key=lambda kv_: -kv_[1]))
        return per, detail

    def kept_pct(rs):
        vals = []
        for r in rs:
            if r["kept"] is None or not r["ok"]:
                continue
            vals.append(100.0 * int(r["kept"]) / r["ok"])
        return statistics.median(vals) if vals else None

    for workload, title in WORKLOADS:
        p(f"### {title}")
        p("")
        p("| stack | req/s median | min–max | p50 | p99 | Redis cmds/req | Redis cmds sent/req | Redis round trips/req | updates kept | × peer | × bare |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        bare = med("bare", workload)
        for stack, label in STACKS:
            rs = runs.get((stack, workload))
            if not rs:
                continue
            rps = [r["rps"] for r in rs]
            m = statistics.median(rps)
            per, detail = redis_per_req(rs)
            redis = f"{per:.2f} ({detail})" if per is not None else "–"
            rt = round_trips.get((stack, workload))
            sent = f"{rt[1] / rt[0]:.2f}" if rt and rt[0] else "–"
            rd = reads.get((stack, workload))
            trips = f"{rd[1] / rd[0]:.2f}" if rd and rd[0] else "–"
            kept = kept_pct(rs) if workload != "read" and stack != "bare" else None
            kept_s = f"{kept:.1f}%" if kept is not None else "–"
            peers = []
            for peer in PEERS.get(stack, []):
                pm = med(peer, workload)
                if pm:
                    peers.append(f"{m / pm:.2f}× {peer}")
            errors = sum(r["non2xx"] + r["errors"] for r in rs)
            err = f" **{errors} errors/non-2xx**" if errors else ""
            p(
                f"| {label}{err} | {fmt_rps(m)} | {fmt_rps(min(rps))}–{fmt_rps(max(rps))} "
                f"| {fmt_us(statistics.median(r['p50_us'] for r in rs))} "
                f"| {fmt_us(statistics.median(r['p99_us'] for r in rs))} | {redis} | {sent} | {trips} | {kept_s} "
                f"| {', '.join(peers) or '–'} | {f'{m / bare:.2f}×' if bare and stack != 'bare' else '–'} |"
            )
        p("")

    if cpu:
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        p("### CPU time per request (server process + Redis), all rounds")
        p("")
        p("User + system time of the stack's processes and of Redis over each run,")
        p("divided by the requests wrk counted: unlike req/s, this hardly moves with")
        p("other work on the machine (both share CPU 0). Clock ticks of")
        p(f"{tick_us / 1000:.0f} ms; a run of 5 s at 10k req/s has ~500 of them.")
        p("")
        p("For the express + tessera client stacks the server is Node and `tessera")
        p("serve` together; the last column says how much of it is `tessera serve`.")
        p("")
        p("| workload | stack | server µs/req | Redis µs/req | total µs/req | of the server's: tessera serve µs/req |")
        p("|---|---|---|---|---|---|")
        for workload, _ in WORKLOADS:
            for stack, _ in STACKS:
                reqs, server, redis, tessera = cpu.get((stack, workload), (0, 0, 0, 0))
                if reqs:
                    uses_redis = "redis" in stack or stack.startswith("express")
                    sv, rv = server * tick_us / reqs, redis * tick_us / reqs
                    rtext = f"{rv:.1f}" if uses_redis else "–"
                    total = sv + (rv if uses_redis else 0)
                    ttext = f"{tessera * tick_us / reqs:.1f}" if stack.startswith("express-tessera") else "–"
                    p(f"| {workload} | {stack} | {sv:.1f} | {rtext} | {total:.1f} | {ttext} |")
        p("")

    if cache:
        p("### Session cache (tessera-redis-cache): hits over loads, all rounds")
        p("")
        p("| workload | hits | misses | hit rate | flushes | writes kept in the cache |")
        p("|---|---|---|---|---|---|")
        for workload, _ in WORKLOADS:
            hits, misses, flushes, through = cache.get(("tessera-redis-cache", workload), (0, 0, 0, 0))
            if hits + misses:
                p(
                    f"| {workload} | {hits:,} | {misses:,} | {100.0 * hits / (hits + misses):.2f}% "
                    f"| {flushes:,} | {through:,} |"
                )
        p("")

    if sql:
        p("### SQL statements per request (tessera-sqlite, separate counting pass)")
        p("")
        p("| workload | statements/request | by kind |")
        p("|---|---|---|")
        for workload, (reqs, delta) in sql.items():
            total = sum(delta.values())
            detail = ", ".join(f"{k} {v / reqs:.2f}" for k, v in sorted(delta.items()))
            p(f"| {workload} | {total / reqs:.2f} | {detail} |")
        p("")

    p("### Memory")
    p("")
    for store, m in memsize.items():
        p(f"- in-process `{store}` memory store: **{m['bytes_per_session']} B resident per session** "
          f"at {int(m['sessions']):,} sessions (RSS {int(m['rss_before']) >> 20} → {int(m['rss_after']) >> 20} MiB)")
    for stack, (total, sessions) in redis_mem.items():
        if sessions:
            p(f"- Redis, {stack}: **{total / sessions:.0f} B per session** "
              f"(`MEMORY USAGE` of all {sessions} sessions' keys incl. index entries: {total:,} B)")
    p("")

    small, big = med("sqlite-small", "read"), med("sqlite-big", "read")
    if small and big:
        p("### SQLite at scale (read path, GET /whoami)")
        p("")
        p(f"- 1,000 stored sessions: {fmt_rps(small)} req/s, p99 {fmt_us(med('sqlite-small', 'read', 'p99_us'))}")
        p(f"- {int(memsize.get('tessera', {}).get('sessions', 0)) or 'N':,} stored sessions: {fmt_rps(big)} req/s, "
          f"p99 {fmt_us(med('sqlite-big', 'read', 'p99_us'))} → **{big / small:.2f}×**")
    idle = runs.get(("sweep-idle", "read"))
    busy = runs.get(("sweep-busy", "read"))
    if idle and busy and sweep:
        idle_p99 = idle[0]["p99_us"]
        busy_p99 = max(r["p99_us"] for r in busy)
        busy_med = statistics.median(r["p99_us"] for r in busy)
        p(f"- sweeper: purged {sweep[0]:,} expired records in ~{sweep[1]} s while serving reads; "
          f"read p99 idle {fmt_us(idle_p99)}; while sweeping, median of {len(busy)} runs' p99 "
          f"{fmt_us(busy_med)} (**{busy_med / idle_p99:.2f}×** idle), worst run {fmt_us(busy_p99)} "
          f"(**{busy_p99 / idle_p99:.2f}×**); throughput {fmt_rps(idle[0]['rps'])} → "
          f"{fmt_rps(statistics.median(r['rps'] for r in busy))} req/s")
    p("")

    if instr:
        p("### Instructions per request (callgrind, in-process, no sockets)")
        p("")
        p("Deterministic: the same binary and input give the same count whatever else runs. "
          "Under valgrind SHA-256 runs without SHA-NI, which adds ~3.5k to each tessera count. "
          "Redis stacks: this process's side only (client, encoding, session logic), not Redis's.")
        p("")
        p("| stack | GET /whoami | − bare | POST /counter | − bare |")
        p("|---|---|---|---|---|")
        base = {path: instr.get(("bare", path)) for path in ("/whoami", "/counter")}
        for stack in ("bare", "tessera-memory", "ts-memory", "tessera-redis", "tessera-redis-cache",
                      "ts-redis", "ts-redis-sliding"):
            cells = []
            for path in ("/whoami", "/counter"):
                v = instr.get((stack, path))
                b = base.get(path)
                cells.append(f"{v:,.0f}" if v else "–")
                cells.append(f"+{v - b:,.0f}" if v and b and stack != "bare" else "–")
            if any(c != "–" for c in cells):
                p(f"| {stack} | " + " | ".join(cells) + " |")
        p("")

    # ---- targets
    p("### Targets")
    p("")

    def check(name, value, ok, target):
        if value is None:
            p(f"- [ ] {name}: not measured")
        else:
            p(f"- [{'x' if ok else ' '}] {name}: {value} (target {target}){'' if ok else ' — **missed**'}")

    def ratio(a, b, workload):
        x, y = med(a, workload), med(b, workload)
        return x / y if x and y else None

    r = ratio("tessera-memory", "bare", "read")
    check("read path, memory store vs bare axum", r and f"{r:.2f}×", r and r >= 0.95, "≥ 0.95×")
    r = ratio("tessera-redis", "ts-redis-sliding", "read")
    check("read path, Redis vs tower-sessions sliding", r and f"{r:.2f}×", r and r >= 1.3, "≥ 1.3×")
    r = ratio("tessera-redis", "express", "read")
    check("read path, Redis vs express-session", r and f"{r:.2f}×", r and r >= 10, "≥ 10×")
    rs = runs.get(("tessera-redis", "read"))
    if rs:
        per, detail = redis_per_req(rs)
        check("Redis commands per read", per is not None and f"{per:.2f} ({detail})",
              per is not None and 0.99 <= per <= 1.01, "1 command, 0 writes")
    if "read" in sql:
        reqs, delta = sql["read"]
        writes = sum(v for k, v in delta.items() if k in ("insert", "update", "delete", "replace", "begin"))
        total = sum(delta.values()) / reqs
        check("SQLite statements per read", f"{total:.2f}, writes {writes / reqs:.2f}",
              0.99 <= total <= 1.01 and writes == 0, "1 lookup, 0 writes")
    # The session cache: Redis reads at in-process speed, writes no worse.
    r = ratio("tessera-redis-cache", "bare", "read")
    check("read path, Redis + cache vs bare axum", r and f"{r:.2f}×", r and r >= 0.8, "≥ 0.8×")
    r = ratio("tessera-redis-cache", "ts-redis", "read")
    # A session layer only adds work to bare axum, so bare axum's own ratio
    # to the same store, in the same run, is the ceiling of this one.
    ceiling = ratio("bare", "ts-redis", "read")
    check("read path, Redis + cache vs tower-sessions' Redis store",
          r and f"{r:.2f}×" + (f" (bare axum itself: {ceiling:.2f}×)" if ceiling else ""),
          r and r >= 3, "≥ 3×")
    r = ratio("tessera-redis-cache", "express", "read")
    check("read path, Redis + cache vs express-session", r and f"{r:.2f}×", r and r >= 10, "≥ 10×")
    rs = runs.get(("tessera-redis-cache", "read"))
    if rs:
        per, detail = redis_per_req(rs)
        check("Redis commands per cached read", f"{per or 0:.3f} ({detail or 'none'})",
              (per or 0) <= 0.05, "≈ 0 on hits")
    for workload in ("write", "write-shared"):
        r = ratio("tessera-redis-cache", "tessera-redis", workload)
        k = kept_pct(runs.get(("tessera-redis-cache", workload), []))
        check(f"{workload} path, Redis + cache vs without", r and (f"{r:.2f}×" + (f", kept {k:.1f}%" if k is not None else "")),
              r and r >= 0.95 and (k is None or k >= 99.9), "unchanged or better (≥ 0.95×, noise), every update kept")
    r = ratio("tessera-redis", "ts-redis", "write")
    k = kept_pct(runs.get(("tessera-redis", "write"), []))
    check("write path, Redis, session per connection, vs tower-sessions", r and f"{r:.2f}×, kept {k:.1f}%" if k is not None else r and f"{r:.2f}×",
          r and r >= 1.2 and (k is None or k >= 99.9), "≥ 1.2×, every update kept")
    for stack, peer in (("tessera-memory", "ts-memory"), ("tessera-redis", "ts-redis"), ("tessera-sqlite", None)):
        rs = runs.get((stack, "write-shared"))
        if not rs:
            continue
        k = kept_pct(rs)
        r = ratio(stack, peer, "write-shared") if peer else None
        tp = f"{fmt_rps(med(stack, 'write-shared'))} req/s" + (f", {r:.2f}× {peer}" if r else "")
        check(f"shared session, {stack}", f"kept {k:.1f}%, {tp}" if k is not None else None,
              k is not None and k >= 99.9 and (r is None or r >= 0.5), "100% kept, ≥ 0.5× tower-sessions' lossy figure")
    # The Node client at least as fast as express-session on
    # Redis, keeping every concurrent update.
    for stack, workload in [(s, w) for s in ("express-tessera", "express-tessera-cache") for w in ("read", "write")]:
        r = ratio(stack, "express", workload)
        k = kept_pct(runs.get((stack, workload), [])) if workload == "write" else None
        shared = kept_pct(runs.get((stack, "write-shared"), [])) if workload == "write" else None
        value = r and (f"{r:.2f}×" + (f", kept {k:.1f}% (shared session {shared:.1f}%)" if k is not None and shared is not None else ""))
        label = "express + tessera client" + (" (cache on)" if stack.endswith("-cache") else "")
        check(f"{label} vs express-session, {workload}", value,
              r and r >= 1.0 and (workload == "read" or (k is not None and k >= 99.9 and shared is not None and shared >= 99.9)),
              "≥ 1.0×" + (", every update kept" if workload == "write" else ""))
    m = memsize.get("tessera")
    if m:
        b = int(m["bytes_per_session"])
        check("memory store bytes per session", f"{b} B", b <= 300, "≤ 300 B")
    if small and big:
        check("SQLite 1M vs 1k sessions, read throughput", f"{big / small:.2f}×", big / small >= 0.8, "≥ 0.8×")
    if idle and busy:
        x = max(r["p99_us"] for r in busy) / idle[0]["p99_us"]
        xm = statistics.median(r["p99_us"] for r in busy) / idle[0]["p99_us"]
        check("sweeper: read p99 while deleting vs idle (worst run; median run in brackets)",
              f"{x:.2f}× ({xm:.2f}×)", x < 2, "< 2×")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
