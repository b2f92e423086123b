#!/usr/bin/env python3
"""DuckDB yardstick for `emoflow query`: the same views over an NDJSON file, in one SQL batch.

    pip install duckdb
    python3 benches/peers/duckdb_views.py events.ndjson --bench-filters 10 [--json] [--threads N]

One statement reads the file (parsing the JSON), normalises the field aliases and computes
every view; the wall time from execute() to the fetched result, and events/s, go to stderr.
With --json the views are printed on stdout with the keys of `emoflow query` (`rejected` and
`as_of` have no counterpart here). Validation is only approximated: lines DuckDB cannot parse
are skipped, and events without a user, a type (or emoji) or a valid time are dropped.
"""

import argparse
import json
import sys
import time

import duckdb

WINDOWS_SHOWN = 60
MAX_TS_MS = 253_402_300_799_999
RETENTION_BUCKETS = 64
EMOJIS = ["🔥", "❤️", "😂", "👍", "🎉", "😮", "👏", "😢", "🙌", "💯", "🤯", "😍",
          "🥳", "👀", "😡", "🤔", "💀", "✨", "🙏", "🚀", "😎", "🤝", "🎶", "🌈"]
LIST_FIELDS = {"event_types": "event_type", "emojis": "emoji",
               "tiers": "tier", "user_ids": "user_id"}
BOUNDS = {"min_amount": ">=", "max_amount": "<="}

# Every view over `ev` (accepted events) and `retained` (the events whose retention bucket
# ends after newest - retention, as docs/views.md defines it).
# {filters} becomes a list of `count(*) FILTER (WHERE ...)` over `retained`, one per filter.
SQL = """
WITH raw AS (
    SELECT user_id,
           coalesce(emoji, emoji_type) AS emoji,
           coalesce(event_type, "event") AS event_type,
           coalesce(tier, user_tier) AS tier,
           amount,
           coalesce(ts, "timestamp") AS t   -- integer ms or RFC 3339, as text
    FROM read_ndjson($path, format = 'newline_delimited', ignore_errors = true,
        columns = {user_id: 'VARCHAR', emoji: 'VARCHAR', emoji_type: 'VARCHAR',
                   event_type: 'VARCHAR', "event": 'VARCHAR', tier: 'VARCHAR',
                   user_tier: 'VARCHAR', amount: 'DOUBLE', ts: 'VARCHAR',
                   "timestamp": 'VARCHAR'})
),
ev AS MATERIALIZED (
    SELECT * FROM (
        SELECT user_id, emoji,
               coalesce(event_type, CASE WHEN emoji IS NOT NULL THEN 'emoji' END)
                   AS event_type,
               tier, amount,
               coalesce(try_cast(t AS BIGINT),
                        epoch_ms(try_cast(t AS TIMESTAMPTZ))) AS ts
        FROM raw)
    WHERE user_id <> '' AND event_type IS NOT NULL AND ts BETWEEN 0 AND $max_ts
),
emoji_counts AS (
    SELECT emoji, count(*) AS n FROM ev WHERE emoji IS NOT NULL GROUP BY emoji
),
win_counts AS (         -- per (window, emoji); emoji NULL counts toward the total only
    SELECT ts - ts % $window_ms AS w, emoji, count(*) AS n FROM ev GROUP BY ALL
),
newest AS (
    SELECT w, sum(n) AS total FROM win_counts
    GROUP BY w ORDER BY w DESC LIMIT $windows_shown
),
win_emojis AS (
    SELECT w,
           list({'k': emoji, 'v': n} ORDER BY emoji) AS counts,
           list({'emoji': emoji, 'count': n, 'rank': r} ORDER BY n DESC, emoji)
               FILTER (WHERE r <= $k) AS top
    FROM (SELECT w, emoji, n, rank() OVER (PARTITION BY w ORDER BY n DESC) AS r
          FROM win_counts SEMI JOIN newest USING (w)
          WHERE emoji IS NOT NULL)
    GROUP BY w
),
retained AS MATERIALIZED (  -- docs/views.md: retained while the event's bucket ends after
    SELECT * FROM ev           -- the horizon (newest ts - retention), buckets of retention / 64
    WHERE (ts // $bucket_ms + 1) * $bucket_ms > (SELECT max(ts) FROM ev) - $retention_ms
),
starts AS (             -- a session starts at a user's first event or after a gap > gap_ms
    SELECT user_id, ts,
           coalesce(ts - lag(ts) OVER (PARTITION BY user_id ORDER BY ts) > $gap_ms,
                    true)::INTEGER AS is_start
    FROM retained
),
sessions AS (
    SELECT user_id, min(ts) AS s, max(ts) AS e, count(*) AS n, max(ts) - min(ts) AS d,
           count(*)::DOUBLE / greatest((max(ts) - min(ts))::DOUBLE / 60000, 1)::DOUBLE
               AS rate
    FROM (SELECT user_id, ts,
                 sum(is_start) OVER (PARTITION BY user_id ORDER BY ts
                                     ROWS UNBOUNDED PRECEDING) AS sid
          FROM starts)
    GROUP BY user_id, sid
)
SELECT
    (SELECT count(*) FROM ev) AS total,
    (SELECT list({'k': emoji, 'v': n} ORDER BY emoji) FROM emoji_counts) AS counts,
    (SELECT list({'k': event_type, 'v': n} ORDER BY event_type)
     FROM (SELECT event_type, count(*) AS n FROM ev GROUP BY event_type)) AS event_types,
    (SELECT list({'emoji': emoji, 'count': n, 'rank': r} ORDER BY n DESC, emoji)
     FROM (SELECT emoji, n, rank() OVER (ORDER BY n DESC) AS r FROM emoji_counts)
     WHERE r <= $k) AS top,
    (SELECT list({'start_ms': w, 'end_ms': w + $window_ms, 'total': total,
                  'counts': counts, 'top': top} ORDER BY w DESC)
     FROM newest LEFT JOIN win_emojis USING (w)) AS windows,
    (SELECT {'users': count(DISTINCT user_id), 'sessions': count(*),
             'mean_duration_ms': coalesce(sum(d)::DOUBLE / count(*), 0),
             'mean_events': coalesce(sum(n)::DOUBLE / count(*), 0),
             -- compensated sum: the mean does not depend on the summation order
             'mean_rate_per_min': coalesce(fsum(rate) / count(*), 0)}
     FROM sessions) AS summary,
    (SELECT list({'k': user_id, 'v': v} ORDER BY user_id)
     FROM (SELECT user_id,
                  list({'start_ms': s, 'end_ms': e, 'events': n, 'duration_ms': d,
                        'rate_per_min': rate} ORDER BY s DESC) AS v
           FROM sessions GROUP BY user_id)) AS by_user,
    {filters} AS filters
"""


def bench_filters(n):
    """The synthetic filters of `emoflow bench` (benches/src/filters.rs), with its ids f0, f1, ..."""
    out = []
    for i in range(n):
        spec = [
            {"emojis": [EMOJIS[i % len(EMOJIS)]]},
            {"event_types": ["purchase"], "min_amount": i * 5},
            {"tiers": ["vip"]},
            {"user_ids": ["user-%d" % (u * 7 + i) for u in range(20)]},
            {"event_types": ["emoji", "click"], "tiers": ["pro", "free"]},
        ][i % 5]
        out.append(("f%d" % i, spec))
    return out


def load_filters(path):
    """A JSON array of filters; the id is the `id` field or the position from 0."""
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    out = []
    for pos, item in enumerate(items):
        item = dict(item)
        fid = item.pop("id", None)
        item.pop("name", None)
        unknown = set(item) - set(LIST_FIELDS) - set(BOUNDS)
        if unknown:
            sys.exit("filter %d: unknown field(s) %s" % (pos, sorted(unknown)))
        fid = str(pos) if fid is None else str(fid)
        if fid in (f for f, _ in out):
            sys.exit("filter id %r is used twice" % fid)
        out.append((fid, item))
    return out


def filter_sql(filters, params):
    """The filters' match counts as a list, binding each filter's values in `params`."""
    counts = []
    for j, (_, spec) in enumerate(filters):
        conds = []
        for key, column in LIST_FIELDS.items():
            if spec.get(key) is None:
                continue
            if not spec[key]:
                conds.append("false")  # an empty list matches nothing
                continue
            name = "f%d_%s" % (j, key)
            params[name] = [str(v) for v in spec[key]]
            # A NULL field is never in the list: list_contains gives NULL, not true.
            conds.append("list_contains($%s, %s)" % (name, column))
        for key, op in BOUNDS.items():
            if spec.get(key) is not None:
                name = "f%d_%s" % (j, key)
                params[name] = float(spec[key])
                conds.append("amount %s $%s" % (op, name))
        counts.append("count(*) FILTER (WHERE %s)" % (" AND ".join(conds) or "true"))
    if not counts:
        return "[]::BIGINT[]"
    return "(SELECT [%s] FROM retained)" % ", ".join(counts)


def as_dict(entries):
    """[{'k': key, 'v': value}, ...] (or NULL) as an ordered dict."""
    return {e["k"]: e["v"] for e in entries or []}


def document(row, filter_ids):
    """The fetched row as the `emoflow query` document."""
    total, counts, event_types, top, windows, summary, by_user, filters = row
    for w in windows or []:
        w["counts"] = as_dict(w["counts"])
        w["top"] = w["top"] or []
    return {
        "total": total,
        "counts": as_dict(counts),
        "event_types": as_dict(event_types),
        "top": top or [],
        "windows": windows or [],
        "sessions": {"summary": summary, "by_user": as_dict(by_user)},
        "filters": {fid: {"count": c}
                    for fid, c in sorted(zip(filter_ids, filters))},
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="NDJSON events")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--window-ms", type=int, default=10_000)
    p.add_argument("--gap-ms", type=int, default=30 * 60 * 1000)
    p.add_argument("--retention-ms", type=int, default=7 * 24 * 60 * 60 * 1000)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--filters", metavar="FILE", help="JSON array of filters")
    g.add_argument("--bench-filters", type=int, metavar="N",
                   help="the N synthetic filters of `emoflow bench`")
    p.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the views on stdout")
    args = p.parse_args()
    if args.top_k < 1 or args.window_ms < 1 or args.retention_ms < 1 or args.gap_ms < 0:
        sys.exit("need top-k >= 1, window-ms >= 1, retention-ms >= 1, gap-ms >= 0")

    if args.filters:
        filters = load_filters(args.filters)
    else:
        filters = bench_filters(args.bench_filters or 0)
    params = {"path": args.input, "max_ts": MAX_TS_MS, "k": args.top_k,
              "window_ms": args.window_ms, "windows_shown": WINDOWS_SHOWN,
              "gap_ms": args.gap_ms, "retention_ms": args.retention_ms,
              "bucket_ms": max(args.retention_ms // RETENTION_BUCKETS, 1)}
    sql = SQL.replace("{filters}", filter_sql(filters, params))

    con = duckdb.connect()  # in memory
    if args.threads:
        con.execute("SET threads = %d" % args.threads)
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]

    started = time.perf_counter()
    row = con.execute(sql, params).fetchone()
    secs = time.perf_counter() - started

    doc = document(row, [fid for fid, _ in filters])
    print("duckdb %s: %d events, %d filters, %d threads: %.3f s, %.0f events/s"
          % (duckdb.__version__, doc["total"], len(filters), threads, secs,
             doc["total"] / max(secs, 1e-9)), file=sys.stderr)
    if args.json:
        # Compact, like emoflow's serde_json output.
        json.dump(doc, sys.stdout, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
