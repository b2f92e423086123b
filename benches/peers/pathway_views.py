#!/usr/bin/env python3
"""Pathway peer of `emoflow query`: the same views over an NDJSON file, as one Pathway program.

    pip install pathway
    PATHWAY_THREADS=2 python3 benches/peers/pathway_views.py events.ndjson [--json]

The file is read with `pw.io.jsonlines.read` in static mode (the program ends once the file is
read), every view is a Pathway table computed by the engine, and the final tables are collected
with `pw.io.subscribe`; Python only puts them in the shape of the `emoflow query` document (sorts
the small result tables, divides the sums of the session summary by the session count). The wall
time from before the graph is built to the collected result, and events/s, go to stderr; with
--json the views are printed on stdout with the keys of `emoflow query` (`filters`, `rejected`
and `as_of` have no counterpart here).

What each view is, in Pathway:

- accepted events: typed columns of the JSON reader (a row whose `user_id`, `emoji`, ... is not a
  string, or whose `amount` is not a number, is refused by the reader, as is a line that is not
  JSON), aliases folded (`emoji_type`, `event`, `user_tier`, `timestamp`; a field given under
  both names is refused), `ts` as integer milliseconds or an RFC 3339 string (`dt.strptime`),
  required `user_id` and `event_type` or `emoji`, empty strings refused, time in
  1970..=9999 (RFC 3339 strings only up to 2262: Pathway's date-times are 64-bit nanoseconds);
- total, counts, event_types: `reduce` / `groupby().reduce()` with `pw.reducers.count`;
- top-K: `rank = 1 + |{strictly greater counts}|` from `pw.reducers.sorted_tuple` of the counts;
- windows: `windowby(ts, pw.temporal.tumbling(duration=W))` per emoji (origin 0, like emoflow),
  the 60 newest non-empty ones kept, each ranked as above;
- sessions: retention as docs/views.md (64 buckets, the newest `ts` from a `reduce`), then
  either (`--sessions tuple`, the default) each user's times as one `pw.reducers.sorted_tuple`,
  cut where the gap is over G by a Python function called once per user and flattened back
  into one row per session, or (`--sessions window`) Pathway's session windows,
  `windowby(ts, pw.temporal.session(max_gap=G + 1), instance=user_id)`: Pathway joins two
  neighbours when `next - prev < max_gap`, emoflow when `next - prev <= G`; on integer
  milliseconds `max_gap = G + 1` is the same rule. Both give the same sessions; the session
  windows are far slower and hungrier (benches/peers/README.md).

Not replicated (the benchmark's input has none of these; `benches/peers/run.py` warns when
emoflow rejected anything, and compares every peer's total with emoflow's): byte limits (Pathway
measures strings in characters), control characters in `emoji`, the 64 KiB line limit, a JSON
object with one key twice (Pathway's parser keeps one value), a `null` under one name and a
value under its alias (emoflow refuses it as `duplicate_field`; Pathway's reader gives null and
absent alike, so this peer accepts it), and filters.
"""

import argparse
import bisect
import json
import os
import sys
import time

WINDOWS_SHOWN = 60
MAX_TS_MS = 253_402_300_799_999
RETENTION_BUCKETS = 64


def rank_of(n, ascending):
    """SQL RANK() of count n among `ascending` (every count, sorted): 1 + strictly greater."""
    return len(ascending) - bisect.bisect_right(ascending, n) + 1


def newest_threshold(starts):
    """The start of the WINDOWS_SHOWN-th newest window (every start, sorted ascending)."""
    return starts[-WINDOWS_SHOWN] if len(starts) >= WINDOWS_SHOWN else starts[0]


def build(pw, path, top_k, window_ms, gap_ms, retention_ms, views, sessions_impl):
    """The Pathway graph: returns the result tables by name."""
    opt = dict(default_value=None)

    class Event(pw.Schema):
        user_id: str | None = pw.column_definition(**opt)
        emoji: str | None = pw.column_definition(**opt)
        emoji_type: str | None = pw.column_definition(**opt)
        event_type: str | None = pw.column_definition(**opt)
        event: str | None = pw.column_definition(**opt)
        tier: str | None = pw.column_definition(**opt)
        user_tier: str | None = pw.column_definition(**opt)
        amount: float | None = pw.column_definition(**opt)
        # integer milliseconds or an RFC 3339 string: any JSON, told apart below
        ts: pw.Json | None = pw.column_definition(**opt)
        timestamp: pw.Json | None = pw.column_definition(**opt)

    raw = pw.io.jsonlines.read(path, schema=Event, mode="static", name="events")

    # A JSON null may come as None or as a pw.Json null: either is "not given".
    def json_given(col):
        return col.is_not_none() & (col.to_string() != "null")

    # The event time as JSON text: integer milliseconds (a JSON integer), or an RFC 3339
    # string (a JSON string, quotes included). Anything else gives None: the event is refused.
    t = pw.if_else(json_given(raw.ts), raw.ts, raw.timestamp).to_string()
    emoji = pw.coalesce(raw.emoji, raw.emoji_type)
    event_type = pw.coalesce(
        raw.event_type, raw.event, pw.if_else(emoji.is_not_none(), "emoji", None)
    )
    norm = raw.select(
        user_id=raw.user_id,
        emoji=emoji,
        event_type=event_type,
        t=t,
        ts=t.str.parse_int(optional=True),
        ok=(
            # a field given under its name and its alias
            ~(raw.emoji.is_not_none() & raw.emoji_type.is_not_none())
            & ~(raw.event_type.is_not_none() & raw.event.is_not_none())
            & ~(raw.tier.is_not_none() & raw.user_tier.is_not_none())
            & ~(json_given(raw.ts) & json_given(raw.timestamp))
            # required, non-empty
            & (pw.coalesce(raw.user_id, "") != "")
            & (pw.coalesce(emoji, "x") != "")
            & (pw.coalesce(event_type, "") != "")
            & (pw.coalesce(raw.tier, raw.user_tier, "x") != "")
            # `amount` is not used by any view: named here so that a non-number is refused
            & (raw.amount.is_none() | raw.amount.is_not_none())
        ),
    )
    # With terminate_on_error=False (see main), a field of the wrong JSON type (a number as
    # `user_id`, a string as `amount`, ...) is an Error value in an otherwise read row; every
    # such column takes part in `ok` above, so `ok` is an Error too, and filter() skips the
    # row (emoflow's `wrong_type`). A line that is not JSON is skipped by the reader.
    #
    # Times given as strings take their own way: Pathway computes both sides of an if_else
    # for every row, so parsing them inline would cost every event the string work.
    plain = norm.filter(pw.this.ok & pw.this.ts.is_not_none())
    quoted = norm.filter(pw.this.ok & pw.this.t.str.startswith('"'))
    # RFC 3339 as emoflow reads it: `T` or `t` or a space between date and time, `Z`/`z` or a
    # `+hh:mm`/`-hh:mm` offset (chrono alone would also take `+hhmm`), no leap second (chrono
    # would take `:60`), any fraction, rounded down to the millisecond.
    rfc = (
        quoted.t.str.slice(1, -1)
        .str.replace("t", "T").str.replace(" ", "T").str.replace("z", "Z")
    )
    since_epoch_ns = pw.if_else(
        rfc.str.endswith("Z"),
        (
            rfc.str.removesuffix("Z").dt.strptime("%Y-%m-%dT%H:%M:%S%.f")
            - pw.DateTimeNaive("1970-01-01T00:00:00")
        ).dt.nanoseconds(),
        (
            rfc.dt.strptime("%Y-%m-%dT%H:%M:%S%.f%:z", contains_timezone=True)
            - pw.DateTimeUtc("1970-01-01T00:00:00Z")
        ).dt.nanoseconds(),
    )
    quoted = quoted.with_columns(
        ts=pw.fill_error(
            pw.if_else(
                (rfc.str.slice(17, 19) != "60")
                & (rfc.str.endswith("Z") | (rfc.str.slice(-3, -2) == ":")),
                since_epoch_ns // 1_000_000,
                None,
            ),
            None,
        ),
    )
    # A JSON integer's text never starts with a quote: the two tables share no row.
    pw.universes.promise_are_pairwise_disjoint(plain, quoted)
    ev = plain.concat(quoted).filter(
        (pw.coalesce(pw.this.ts, -1) >= 0) & (pw.coalesce(pw.this.ts, -1) <= MAX_TS_MS)
    ).select(
        pw.this.user_id, pw.this.emoji, pw.this.event_type, ts=pw.unwrap(pw.this.ts)
    )

    out = {"total": ev.reduce(total=pw.reducers.count())}
    if "counts" in views:
        out.update(counts_views(pw, ev, top_k))
    if "windows" in views:
        out.update(window_views(pw, ev, top_k, window_ms))
    if "sessions" in views:
        out.update(session_views(pw, ev, gap_ms, retention_ms, sessions_impl))
    return out


def ranked(pw, table, all_counts, top_k):
    """table (emoji, n, ...) with rank among `all_counts` (a sorted tuple), top-K only."""
    return table.with_columns(
        rank=pw.apply_with_type(rank_of, int, pw.this.n, all_counts)
    ).filter(pw.this.rank <= top_k)


def counts_views(pw, ev, top_k):
    """counts, event_types and the lifetime top-K."""
    event_types = ev.groupby(pw.this.event_type).reduce(
        pw.this.event_type, n=pw.reducers.count()
    )
    with_emoji = ev.filter(pw.this.emoji.is_not_none())
    counts = with_emoji.groupby(pw.this.emoji).reduce(pw.this.emoji, n=pw.reducers.count())
    sorted_counts = counts.reduce(ns=pw.reducers.sorted_tuple(pw.this.n))
    top = ranked(pw, counts, sorted_counts.ix_ref().ns, top_k)
    return {"counts": counts, "event_types": event_types, "top": top}


def window_views(pw, ev, top_k, window_ms):
    """The 60 newest non-empty tumbling windows: total, counts, top-K."""
    # One group per (window, emoji); emoji None counts toward the window's total only.
    per_emoji = ev.windowby(
        ev.ts,
        window=pw.temporal.tumbling(duration=window_ms, origin=0),
        instance=ev.emoji,
    ).reduce(
        start=pw.this._pw_window_start,
        emoji=pw.this._pw_instance,
        n=pw.reducers.count(),
    )
    win_totals = per_emoji.groupby(pw.this.start).reduce(
        pw.this.start, total=pw.reducers.sum(pw.this.n)
    )
    starts = win_totals.reduce(starts=pw.reducers.sorted_tuple(pw.this.start))
    threshold = starts.select(
        w=pw.apply_with_type(newest_threshold, int, pw.this.starts)
    ).ix_ref().w
    kept_totals = win_totals.filter(pw.this.start >= threshold)
    kept_counts = per_emoji.filter(
        (pw.this.start >= threshold) & pw.this.emoji.is_not_none()
    )
    win_sorted = kept_counts.groupby(pw.this.start).reduce(
        pw.this.start, ns=pw.reducers.sorted_tuple(pw.this.n)
    )
    win_top = ranked(pw, kept_counts, win_sorted.ix_ref(pw.this.start).ns, top_k)
    return {
        "win_totals": kept_totals,
        "win_counts": kept_counts.select(pw.this.start, pw.this.emoji, pw.this.n),
        "win_top": win_top.select(pw.this.start, pw.this.emoji, pw.this.n, pw.this.rank),
    }


def split_sessions(stamps, gap_ms):
    """(start, end, events) of each session in `stamps` (one user's times, sorted)."""
    out = []
    first = prev = stamps[0]
    n = 0
    for t in stamps:
        if t - prev > gap_ms:
            out.append((first, prev, n))
            first, n = t, 0
        prev = t
        n += 1
    out.append((first, prev, n))
    return tuple(out)


def session_views(pw, ev, gap_ms, retention_ms, impl):
    """Sessions per user over the retained events, and their summary."""
    # Retention (docs/views.md): an event is retained while its bucket ends after the horizon.
    bucket = max(retention_ms // RETENTION_BUCKETS, 1)
    newest = ev.reduce(m=pw.reducers.max(pw.this.ts))
    retained = ev.filter(
        (pw.this.ts // bucket + 1) * bucket > newest.ix_ref().m - retention_ms
    )
    if impl == "window":
        # Pathway's session windows: neighbours join when next - prev < max_gap.
        sessions = retained.windowby(
            retained.ts,
            window=pw.temporal.session(max_gap=gap_ms + 1),
            instance=retained.user_id,
        ).reduce(
            user_id=pw.this._pw_instance,
            start=pw.this._pw_window_start,
            end=pw.this._pw_window_end,
            events=pw.reducers.count(),
        )
    else:
        # Each user's times as one sorted tuple (an engine reducer), cut into sessions by a
        # Python function, one call per user, flattened back into one row per session.
        per_user = retained.groupby(pw.this.user_id).reduce(
            pw.this.user_id, stamps=pw.reducers.sorted_tuple(pw.this.ts)
        )
        flat = per_user.select(
            pw.this.user_id,
            s=pw.apply_with_type(
                lambda st: split_sessions(st, gap_ms), tuple[tuple[int, int, int], ...],
                pw.this.stamps,
            ),
        ).flatten(pw.this.s)
        sessions = flat.select(
            pw.this.user_id,
            start=pw.unwrap(pw.this.s.get(0)),
            end=pw.unwrap(pw.this.s.get(1)),
            events=pw.unwrap(pw.this.s.get(2)),
        )
    sessions = sessions.with_columns(duration=pw.this.end - pw.this.start)
    sessions = sessions.with_columns(
        rate=pw.this.events / pw.if_else(
            pw.this.duration > 60_000, pw.this.duration / 60_000.0, 1.0
        )
    )
    summary = sessions.reduce(
        users=pw.reducers.count_distinct(pw.this.user_id),
        sessions=pw.reducers.count(),
        duration_sum=pw.reducers.sum(pw.this.duration),
        events_sum=pw.reducers.sum(pw.this.events),
        rate_sum=pw.reducers.sum(pw.this.rate),
    )
    return {
        "sessions": sessions.select(
            pw.this.user_id, pw.this.start, pw.this.end, pw.this.events,
            pw.this.duration, pw.this.rate,
        ),
        "summary": summary,
    }


def collect(pw, tables):
    """Subscribes to every table; returns name -> list of rows (dicts) once pw.run() is done."""
    state = {name: {} for name in tables}

    def subscriber(store):
        def on_change(key, row, time, is_addition):
            k = (key, tuple(sorted(row.items())))
            store[k] = store.get(k, 0) + (1 if is_addition else -1)
        return on_change

    for name, table in tables.items():
        pw.io.subscribe(table, on_change=subscriber(state[name]), name="out_" + name)

    def rows(name):
        out = []
        for (_, items), mult in state[name].items():
            if mult < 0:
                raise RuntimeError("%s: a row was retracted more often than added" % name)
            out.extend([dict(items)] * mult)
        return out
    return rows


def top_entries(rows):
    rows = sorted(rows, key=lambda r: (-r["n"], r["emoji"].encode()))
    return [{"emoji": r["emoji"], "count": r["n"], "rank": r["rank"]} for r in rows]


def document(rows, views, window_ms):
    """The collected tables as the `emoflow query` document (the keys of `views` only)."""
    total = rows("total")
    doc = {"total": total[0]["total"] if total else 0}
    if "counts" in views:
        counts = {r["emoji"]: r["n"] for r in rows("counts")}
        event_types = {r["event_type"]: r["n"] for r in rows("event_types")}
        doc["counts"] = dict(sorted(counts.items(), key=lambda kv: kv[0].encode()))
        doc["event_types"] = dict(sorted(event_types.items(), key=lambda kv: kv[0].encode()))
        doc["top"] = top_entries(rows("top"))
    if "windows" in views:
        win_counts, win_top = {}, {}
        for r in rows("win_counts"):
            win_counts.setdefault(r["start"], {})[r["emoji"]] = r["n"]
        for r in rows("win_top"):
            win_top.setdefault(r["start"], []).append(r)
        doc["windows"] = [
            {"start_ms": r["start"], "end_ms": r["start"] + window_ms, "total": r["total"],
             "counts": dict(sorted(win_counts.get(r["start"], {}).items(),
                                   key=lambda kv: kv[0].encode())),
             "top": top_entries(win_top.get(r["start"], []))}
            for r in sorted(rows("win_totals"), key=lambda r: -r["start"])
        ]
    if "sessions" in views:
        by_user = {}
        for s in rows("sessions"):
            by_user.setdefault(s["user_id"], []).append(s)
        by_user = {
            u: [{"start_ms": s["start"], "end_ms": s["end"], "events": s["events"],
                 "duration_ms": s["duration"], "rate_per_min": s["rate"]}
                for s in sorted(ss, key=lambda s: -s["start"])]
            for u, ss in sorted(by_user.items(), key=lambda kv: kv[0].encode())
        }
        summary = rows("summary")
        if summary and summary[0]["sessions"]:
            s = summary[0]
            n = s["sessions"]
            summ = {"users": s["users"], "sessions": n,
                    "mean_duration_ms": s["duration_sum"] / n,
                    "mean_events": s["events_sum"] / n,
                    "mean_rate_per_min": s["rate_sum"] / n}
        else:
            summ = {"users": 0, "sessions": 0, "mean_duration_ms": 0.0, "mean_events": 0.0,
                    "mean_rate_per_min": 0.0}
        doc["sessions"] = {"summary": summ, "by_user": by_user}
    return doc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input", help="NDJSON events")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--window-ms", type=int, default=10_000)
    p.add_argument("--gap-ms", type=int, default=30 * 60 * 1000)
    p.add_argument("--retention-ms", type=int, default=7 * 24 * 60 * 60 * 1000)
    p.add_argument("--views", default="counts,windows,sessions",
                   help="which views to compute besides the total, comma-separated "
                        "(counts: counts, event_types and top; windows; sessions); "
                        "fewer views show where the time goes (default: all)")
    p.add_argument("--sessions", choices=["tuple", "window"], default="tuple",
                   help="how sessions are cut: `tuple` (each user's sorted times, split by a "
                        "Python function per user) or `window` (pw.temporal.session, "
                        "Pathway's own session windows; far slower and hungrier at 2M "
                        "events, see the README) (default: tuple)")
    p.add_argument("--json", action="store_true", help="print the views on stdout")
    args = p.parse_args()
    views = {v for v in args.views.split(",") if v}
    if views - {"counts", "windows", "sessions"}:
        sys.exit("--views: unknown view(s) %s" % sorted(views - {"counts", "windows", "sessions"}))
    if args.top_k < 1 or args.window_ms < 1 or args.retention_ms < 1 or args.gap_ms < 0:
        sys.exit("need top-k >= 1, window-ms >= 1, retention-ms >= 1, gap-ms >= 0")
    if not os.path.isfile(args.input):
        sys.exit("no such file: %s" % args.input)
    try:
        import pathway as pw
    except ImportError:
        sys.exit("pathway is not installed: python3 -m pip install pathway")

    started = time.perf_counter()
    tables = build(pw, args.input, args.top_k, args.window_ms, args.gap_ms, args.retention_ms,
                   views, args.sessions)
    rows = collect(pw, tables)
    # A line Pathway cannot parse (or a field of the wrong type) is logged and skipped; an
    # RFC 3339 string that does not parse becomes an Error value, replaced by None above.
    pw.run(monitoring_level=pw.MonitoringLevel.NONE, terminate_on_error=False)
    doc = document(rows, views, args.window_ms)
    secs = time.perf_counter() - started

    threads = os.environ.get("PATHWAY_THREADS", "1")
    print("pathway %s: %d events, %s threads: %.3f s, %.0f events/s"
          % (pw.__version__, doc["total"], threads, secs, doc["total"] / max(secs, 1e-9)),
          file=sys.stderr)
    if args.json:
        json.dump(doc, sys.stdout, ensure_ascii=False, separators=(",", ":"))
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
