#!/usr/bin/env python3
"""Tables (Markdown) of a product benchmark run: medians [min-max] over reps,
ratios against bullmq-rs's median, load averages.

    bench/product/report.py target/bench/product/<stamp>.jsonl [more.jsonl ...]

Reads the JSON lines of `kairos bench-product` ("bench": "kairos-product"),
of the peers' harness (rows with "variant", mode "concurrent") and the
driver's load-average samples ("bench": "loadavg"). Standard library only.
"""
import json
import statistics
import sys

BASE = "bullmq-rs-1x100"


def rows(paths):
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    yield json.loads(line)


def med(xs, fmt=None, rng=True):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if fmt is None:  # small numbers keep a decimal
        fmt = "{:,.1f}" if abs(statistics.median(xs)) < 100 else "{:,.0f}"
    m = fmt.format(statistics.median(xs))
    if rng and len(xs) > 1:
        return f"{m} [{fmt.format(min(xs))}–{fmt.format(max(xs))}]"
    return m


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(paths):
    data = list(rows(paths))
    kairos = [r for r in data if r.get("bench") == "kairos-product" and r.get("ok")]
    failed = [r for r in data if r.get("bench") == "kairos-product" and not r.get("ok")]
    peers = [r for r in data if r.get("variant") and r.get("mode") == "concurrent" and r.get("ok")]
    loads = [r["load1"] for r in data if r.get("bench") == "loadavg"]
    loads += [r[k] for r in kairos for k in ("load1_start", "load1_end") if k in r]
    variants = list(dict.fromkeys(r["variant"] for r in peers))
    n = sorted({r["n"] for r in kairos} | {r["n"] for r in peers})
    reps = sorted({r["rep"] for r in kairos} | {r["rep"] for r in peers})
    base = median([r["rate"] for r in peers if r["variant"] == BASE])
    # Runs with KAIROS_BEFORE tag each Kairos line "before" or "after";
    # older files have no tag (one build).
    builds = [b for b in ("before", "after", "") if any(r.get("build", "") == b for r in kairos)]

    def of(rs, b):
        return [r for r in rs if r.get("build", "") == b]

    def tag(b):
        return f", {b}" if b else ""

    def ratio(x):
        return f"{x / base:.2f}x" if base and x else "–"

    out = []
    p = out.append
    p(f"N = {', '.join(map(str, n))} jobs per run; reps {len(reps)} (interleaved); "
      f"medians [min–max]; load average (1 min) during the run "
      f"{min(loads):.1f}–{max(loads):.1f} (median {statistics.median(loads):.1f})" if loads else "")
    p("")
    p("### Product path: events posted → jobs recorded (no-op `activity` jobs)")
    p("")
    p("| system | posting | jobs/s | vs bullmq-rs | events/s accepted | job latency p50 / p99 ms "
      "| CPU s per 1k jobs: Kairos / Postgres / Redis | Postgres statements (transactions) per job "
      "| Redis ops per job |")
    p("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        rs = [r for r in peers if r["variant"] == v]
        cpu = [r["redis_cpu"] * r["seconds"] / r["n"] * 1000 for r in rs if r.get("redis_cpu") is not None]
        p(f"| {v} ({rs[0].get('version', '')}) | 1 producer, chunks of 100 | {med([r['rate'] for r in rs])} "
          f"| {ratio(median([r['rate'] for r in rs]))} "
          f"| {med([r['n'] / r['producer_s'] for r in rs if r.get('producer_s')])} "
          f"| {med([r['p50_ms'] for r in rs], rng=False)} / {med([r['p99_ms'] for r in rs], rng=False)} "
          f"| – / – / {med(cpu, '{:.2f}', rng=False)} | – | {med([r.get('redis_ops_per_job') for r in rs], '{:.1f}', rng=False)} |")
    for dep, case, b in ((d, c, b) for d in ("distributed", "embedded") for c in ("single", "batch") for b in builds):
        label = {"single": "1 event/request", "batch": "100 events/request"}[case]
        rs = of([r for r in kairos if r["deployment"] == dep and r["case"] == case], b)
        if not rs:
            continue
        w = rs[0]["workers"]
        name = (f"Kairos distributed (api + {w} workers + scheduler{tag(b)})" if dep == "distributed"
                else f"Kairos embedded (`serve`, SQLite{tag(b)})")

        def per1k(key):
            return med([r["cpu_s"].get(key, 0) / r["n"] * 1000 if key else r["cpu_s_kairos"] / r["n"] * 1000
                        for r in rs], "{:.2f}", rng=False)
        pg = "–" if dep == "embedded" else per1k("postgres")
        rd = "–" if dep == "embedded" else per1k("redis")
        stm = "n/a (SQLite)" if dep == "embedded" else (
            f"{med([r.get('pg_statements_per_job') for r in rs], '{:.1f}', rng=False)} "
            f"({med([r.get('pg_xacts_per_job') for r in rs], '{:.1f}', rng=False)})")
        ops = "–" if dep == "embedded" else med([r.get("redis_ops_per_job") for r in rs], "{:.1f}", rng=False)
        p(f"| {name} | {label}, {rs[0]['conns']} conns | {med([r['jobs_per_s'] for r in rs])} "
          f"| {ratio(median([r['jobs_per_s'] for r in rs]))} | {med([r['events_per_s'] for r in rs])} "
          f"| {med([r['job_p50_ms'] for r in rs], rng=False)} / {med([r['job_p99_ms'] for r in rs], rng=False)} "
          f"| {per1k(None)} / {pg} / {rd} | {stm} | {ops} |")
    p("")
    p("Job latency: Kairos, the job row's `created_at` (set when the API accepts the event) → "
      "`finished_at` (outcome recorded); peers, enqueue time → job function. CPU: /proc utime+stime "
      "(Postgres: the whole own cluster, reaped backends included). Postgres statements: "
      "`pg_stat_statements` calls in the benchmark database, the benchmark's own probes left out.")
    p("")
    ing = [r for r in kairos if r["case"].startswith("ingest-")]
    if ing:
        p(f"### Ingest alone (the API, no worker): wrk {ing[0]['wrk']}, unique event ids, rate limit raised")
        p("")
        p("| deployment | events/request | requests/s | events/s | p50 ms | p99 ms | errors | CPU s per 1k events: Kairos / Postgres / Redis |")
        p("|---|---|---|---|---|---|---|---|")
        for dep in ("distributed", "embedded"):
            for case, b in ((c, b) for c in ("ingest-1", "ingest-100") for b in builds):
                rs = of([r for r in ing if r["deployment"] == dep and r["case"] == case], b)
                if not rs:
                    continue
                ev = [r["events_per_s"] for r in rs]

                def per1k(key, rs=rs):
                    vals = []
                    for r in rs:
                        events = max(1.0, r["events_per_s"] * float(r["wrk"].split("-d")[1].rstrip("s")))
                        c = r["cpu_s_kairos"] if key is None else r["cpu_s"].get(key)
                        vals.append(None if c is None else c / events * 1000)
                    return med(vals, "{:.2f}", rng=False)
                pg = "–" if dep == "embedded" else per1k("postgres")
                rd = "–" if dep == "embedded" else per1k("redis")
                # wrk counts only requests answered within its duration:
                # when they take a sizeable part of it, the rate is undercounted.
                dur = float(rs[0]["wrk"].split("-d")[1].rstrip("s"))
                flag = " (requests outlast the run: undercounted)" if any(
                    r["request_p50_ms"] > dur * 1000 / 4 for r in rs) else ""
                p(f"| {dep}{tag(b)} | {rs[0]['events_per_request']}{flag} | {med([r['requests_per_s'] for r in rs])} "
                  f"| {med(ev)} | {med([r['request_p50_ms'] for r in rs], '{:.1f}')} "
                  f"| {med([r['request_p99_ms'] for r in rs], '{:.1f}')} | {sum(r['errors'] for r in rs)} "
                  f"| {per1k(None)} / {pg} / {rd} |")
        p("")
    fair = [r for r in kairos if r["case"] == "fairness"]
    if fair:
        p("### Fairness: tenant B's one event while tenant A floods N events (100 per request)")
        p("")
        p("| system | B idle latency ms | B latency mid-flood ms | ratio | A jobs/s | A job latency p50 / p99 ms |")
        p("|---|---|---|---|---|---|")
        for v in variants:
            rs = [r for r in peers if r["variant"] == v]
            p(f"| {v} (one queue, no tenants: its flood latency) | – | – | – | {med([r['rate'] for r in rs])} "
              f"| {med([r['p50_ms'] for r in rs])} / {med([r['p99_ms'] for r in rs])} |")
        for dep, b in ((d, b) for d in ("distributed", "embedded") for b in builds):
            rs = of([r for r in fair if r["deployment"] == dep], b)
            if rs:
                p(f"| Kairos {dep}{tag(b)} | {med([r['b_idle_ms'] for r in rs])} | {med([r['b_flood_ms'] for r in rs])} "
                  f"| {med([r['b_flood_over_idle'] for r in rs], '{:.0f}x')} | {med([r['a_jobs_per_s'] for r in rs])} "
                  f"| {med([r['a_job_p50_ms'] for r in rs])} / {med([r['a_job_p99_ms'] for r in rs])} |")
        p("")
    rss = [r for r in kairos if r["case"] == "rss"]
    mem = [r for r in kairos if r["case"] in ("single", "batch")]
    if rss or mem:
        p("### Memory (RSS MiB at the end of a case; peak in parentheses)")
        p("")
        for r in rss:
            p(f"* {r.get('build') or 'this build'}: worker loading the sentiment model (all kinds, as the shipped config): "
              f"{r['worker_sentiment_rss_mb']} ({r['worker_sentiment_peak_mb']}); "
              f"activity-only worker of the same run: {r['worker_activity_rss_mb']} ({r['worker_activity_peak_mb']})")
        for dep, b in ((d, b) for d in ("distributed", "embedded") for b in builds):
            rs = of([r for r in mem if r["deployment"] == dep and r.get("rss")], b)
            names = sorted({k for r in rs for k in r["rss"]})
            if names:
                p(f"* {dep}{tag(b)}: " + ", ".join(
                    f"{k} {med([r['rss'][k]['rss_mb'] for r in rs if k in r['rss']], rng=False)} "
                    f"({med([r['rss'][k]['peak_mb'] for r in rs if k in r['rss']], rng=False)})" for k in names))
        p("")
    if failed:
        p("Failed cases: " + "; ".join(f"{r['deployment']} {r['case']} rep {r['rep']}: {r.get('error', '')[:200]}"
                                       for r in failed))
    bad = [r for r in data if r.get("variant") and not r.get("ok")]
    if bad:
        p("Failed peer runs: " + "; ".join(f"{r['variant']} rep {r['rep']}: {r.get('error', '')[:200]}" for r in bad))
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
