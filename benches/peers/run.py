#!/usr/bin/env python3
"""emoflow and its peers (DuckDB, Pathway), one run, same data: answers checked, then timed.

    python3 benches/peers/run.py [--events 2000000] [--runs 3] [--workers 2]
        [--emoflow target/release/emoflow] [--csv F] [--markdown F] [--svg F]

1. generates `emoflow produce --to-file FILE --events N --seed S` (kept under --data-dir and
   reused while N and the seed are the same);
2. runs each engine on FILE as a child process, `--runs` rounds, the engines alternating within
   a round: `emoflow query --input FILE --workers W`, `benches/peers/duckdb_views.py FILE --json
   --threads W` and `benches/peers/pathway_views.py FILE --json` with PATHWAY_THREADS=W;
3. checks that every run of every peer gives emoflow's answers on the keys they share (exit 1,
   with the first differences, when they do not);
4. prints, and writes as CSV, markdown and SVG, each engine's wall time of the whole process
   (median, min-max), events/s (accepted events / median wall seconds) and peak RSS (the
   child's maximum resident set size, from `/usr/bin/time -f %M`, else from wait4()).

Exit codes: 0 all agree; 1 an answer differs; 2 a prerequisite is missing or an engine failed
or timed out.
"""

import argparse
import csv
import datetime
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ENGINES = ["emoflow", "duckdb", "pathway"]
# Keys of the `emoflow query` document compared exactly, when the peer's document has them.
EXACT_KEYS = ["total", "counts", "event_types", "top", "windows"]
SUMMARY_EXACT = ["users", "sessions", "mean_duration_ms", "mean_events"]
# A mean of floating-point rates: the sum's last bits depend on the order of the additions
# (emoflow adds them in its workers' order), so this one is compared to a relative tolerance.
RATE_REL_TOL = 1e-12
# Above this many cores used by other processes during a run, the run is flagged as noisy.
NOISY_CORES = 0.25
# With --wait-quiet, a disturbed run is run again at most this many times.
MAX_REDOS = 3


class Failure(Exception):
    """A prerequisite is missing, or an engine failed: exit code 2."""


def die(msg, code=2):
    print("error: " + msg, file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------- machine and prerequisites

def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "usable_cores": usable,
            "ram_gib": mem_kib / 1024 / 1024, "kernel": platform.release(),
            "python": platform.python_version()}


def check_module(name):
    if importlib.util.find_spec(name) is None:
        raise Failure("%s is not installed for %s: %s -m pip install %s"
                      % (name, sys.executable, sys.executable, name))
    return importlib.metadata.version(name)


def emoflow_version(path):
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise Failure("no emoflow binary at %s: build it with `cargo build --release` or give "
                      "its path with --emoflow PATH" % path)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise Failure("%s --version failed: %s" % (path, out.stderr.strip()))
    return out.stdout.strip().split()[-1]


# ---------------------------------------------------------------- data

def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 24)
            if not block:
                break
            n += block.count(b"\n")
    return n


def ensure_data(args):
    """The NDJSON file of --events events with --seed, generated once and then reused."""
    os.makedirs(args.data_dir, exist_ok=True)
    path = os.path.join(args.data_dir, "events-%d-seed%d.ndjson" % (args.events, args.seed))
    meta_path = path + ".meta.json"
    cmd = [args.emoflow, "produce", "--to-file", path, "--events", str(args.events),
           "--seed", str(args.seed)]
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if (meta.get("events") == args.events and meta.get("seed") == args.seed
                and meta.get("bytes") == os.path.getsize(path)):
            print("data: reusing %s (%d events, seed %d, %.1f MB)"
                  % (path, args.events, args.seed, meta["bytes"] / 1e6))
            return path, meta
    tmp = "%s.partial-%d" % (path, os.getpid())
    gen = [args.emoflow, "produce", "--to-file", tmp, "--events", str(args.events),
           "--seed", str(args.seed)]
    print("data: generating %s" % " ".join(shlex.quote(c) for c in cmd))
    res = subprocess.run(gen, capture_output=True, text=True, timeout=args.timeout)
    if res.returncode != 0:
        raise Failure("emoflow produce failed (exit %d): %s"
                      % (res.returncode, res.stderr.strip()[-2000:]))
    lines = count_lines(tmp)
    if lines != args.events:
        raise Failure("emoflow produce wrote %d lines, not %d" % (lines, args.events))
    os.replace(tmp, path)
    meta = {"events": args.events, "seed": args.seed, "bytes": os.path.getsize(path),
            "lines": lines, "command": " ".join(shlex.quote(c) for c in cmd),
            "emoflow_version": args.versions["emoflow"]}
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    return path, meta


# ---------------------------------------------------------------- running one engine

def engine_command(engine, args, data):
    env = dict(os.environ)
    if engine == "emoflow":
        cmd = [args.emoflow, "query", "--input", data, "--workers", str(args.workers)]
    elif engine == "duckdb":
        cmd = [sys.executable, os.path.join(HERE, "duckdb_views.py"), data, "--json",
               "--threads", str(args.workers)]
    else:
        cmd = [sys.executable, os.path.join(HERE, "pathway_views.py"), data, "--json",
               "--sessions", args.pathway_sessions]
        env["PATHWAY_THREADS"] = str(args.workers)
    return cmd, env


def shown_command(engine, args, data):
    cmd, _ = engine_command(engine, args, data)
    text = " ".join(shlex.quote(os.path.relpath(c, REPO) if c.startswith(REPO + os.sep)
                                else c) for c in cmd)
    if engine == "pathway":
        text = "PATHWAY_THREADS=%d %s" % (args.workers, text)
    return text.replace(shlex.quote(sys.executable), "python3", 1)


INNER = {
    # the engine's own timing of its work, from its stderr (not the whole process)
    "emoflow": re.compile(r'seconds="?([0-9.]+)'),
    "duckdb": re.compile(r"threads: ([0-9.]+) s,"),
    "pathway": re.compile(r"threads: ([0-9.]+) s,"),
}


def busy_cpu_seconds():
    """CPU seconds every process of the machine has used since boot (from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    ticks = [int(x) for x in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait):
    """Waits (up to max_wait s) until the rest of the machine uses under NOISY_CORES cores
    over a 2 s sample. Returns the seconds waited, or None if it never got quiet."""
    started = time.perf_counter()
    while True:
        before = busy_cpu_seconds()
        time.sleep(2)
        after = busy_cpu_seconds()
        if before is None or after is None or (after - before) / 2 < NOISY_CORES:
            return time.perf_counter() - started
        if time.perf_counter() - started > max_wait:
            return None


def run_engine(engine, args, data, out_dir, round_no):
    """Runs one engine once: (wall seconds, peak RSS KiB, engine-reported seconds, doc,
    cores the rest of the machine kept busy meanwhile)."""
    cmd, env = engine_command(engine, args, data)
    out_path = os.path.join(out_dir, "%s-run%d.json" % (engine, round_no))
    err_path = os.path.join(out_dir, "%s-run%d.stderr" % (engine, round_no))
    rss_fd, rss_path = tempfile.mkstemp(prefix="peers-rss-")
    os.close(rss_fd)
    full = (["/usr/bin/time", "-f", "%M", "-o", rss_path] + cmd) if args.time_bin else cmd
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy_before = busy_cpu_seconds()
        started = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, env=env, cwd=REPO,
                                start_new_session=True)
        deadline = started + args.timeout
        status = rusage = None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                raise Failure("%s timed out after %d s (--timeout), round %d: %s"
                              % (engine, args.timeout, round_no, " ".join(cmd)))
            time.sleep(0.005)
        wall = time.perf_counter() - started
        busy_after = busy_cpu_seconds()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # The CPU the rest of the machine used while this run went: on a shared machine, a
    # noisy run shows here (the child's own CPU is its rusage, its children's included).
    others = None
    if busy_before is not None and busy_after is not None:
        child_cpu = rusage.ru_utime + rusage.ru_stime
        others = max(0.0, (busy_after - busy_before - child_cpu) / max(wall, 1e-9))
    rss_kib = None
    if args.time_bin:
        with open(rss_path, encoding="utf-8") as f:
            text = f.read().strip()
        # GNU time writes "Command exited with non-zero status N" before %M on failure
        m = re.search(r"(\d+)\s*$", text)
        rss_kib = int(m.group(1)) if m else None
    os.unlink(rss_path)
    if rss_kib is None:
        # wait4() on the child: its own maximum resident set size, in KiB on Linux
        rss_kib = rusage.ru_maxrss
    with open(err_path, encoding="utf-8", errors="replace") as f:
        stderr = f.read()
    if proc.returncode != 0:
        raise Failure("%s failed (exit %d), round %d: %s\n%s"
                      % (engine, proc.returncode, round_no, " ".join(cmd),
                         "\n".join(stderr.strip().splitlines()[-15:])))
    m = INNER[engine].search(stderr)
    inner = float(m.group(1)) if m else None
    with open(out_path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except ValueError as e:
            raise Failure("%s printed no JSON document (%s); see %s" % (engine, e, out_path))
    return wall, rss_kib, inner, doc, others


# ---------------------------------------------------------------- comparing answers

def diffs(a, b, path=""):
    """Paths where a (emoflow) and b (a peer) differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = "%s.%s" % (path, k) if path else k
            if k not in a:
                yield p, "(absent)", b[k]
            elif k not in b:
                yield p, a[k], "(absent)"
            else:
                yield from diffs(a[k], b[k], p)
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diffs(x, y, "%s[%d]" % (path, i))
        if len(a) != len(b):
            yield path + ".length", len(a), len(b)
    elif type(a) is not type(b) or a != b:
        # 3 and 3.0 are the same number, whichever engine printed it
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and not isinstance(a, bool) and not isinstance(b, bool) and a == b):
            yield path, a, b


def compare(ref, doc):
    """(keys compared, differences) between emoflow's document and a peer's."""
    compared, found = [], []
    for k in EXACT_KEYS:
        if k in doc:
            compared.append(k)
            found.extend(diffs(ref.get(k), doc[k], k))
    if "sessions" in doc:
        rs, ds = ref["sessions"]["summary"], doc["sessions"]["summary"]
        for k in SUMMARY_EXACT:
            compared.append("sessions.summary." + k)
            found.extend(diffs(rs.get(k), ds.get(k), "sessions.summary." + k))
        k = "mean_rate_per_min"
        compared.append("sessions.summary.%s (relative tolerance %g)" % (k, RATE_REL_TOL))
        x, y = rs.get(k), ds.get(k)
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float))
                and abs(x - y) <= RATE_REL_TOL * max(abs(x), abs(y))):
            found.append(("sessions.summary." + k, x, y))
        compared.append("sessions.by_user (every session of every user)")
        found.extend(diffs(ref["sessions"]["by_user"], doc["sessions"]["by_user"],
                           "sessions.by_user"))
    if "filters" in doc:
        compared.append("filters")
        found.extend(diffs(ref.get("filters"), doc["filters"], "filters"))
    return compared, found


def short(v):
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


# ---------------------------------------------------------------- reports

def fmt_rate(x):
    if x >= 1e6:
        return "%.2fM" % (x / 1e6)
    if x >= 1e3:
        return "%.1fk" % (x / 1e3)
    return "%.0f" % x


def fmt_tick(x):
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return ("%g" % (x / div)) + unit
    return "%g" % x


def summarize(results, versions, workers, events):
    """One row per engine, from its runs."""
    rows = []
    ref = None
    for engine, runs in results.items():
        walls = [r[0] for r in runs]
        rss = [r[1] / 1024 for r in runs]
        inner = [r[2] for r in runs if r[2] is not None]
        others = [r[3] for r in runs if r[3] is not None]
        wall = statistics.median(walls)
        row = {
            "engine": engine, "version": versions[engine], "threads": workers,
            "runs": len(runs), "events": events,
            "wall_s_median": wall, "wall_s_min": min(walls), "wall_s_max": max(walls),
            "events_per_s": events / wall,
            "peak_rss_mib": statistics.median(rss), "peak_rss_mib_max": max(rss),
            "engine_reported_s_median": statistics.median(inner) if inner else None,
            "other_cores_max": max(others) if others else None,
        }
        if engine == "emoflow":
            ref = row
        rows.append(row)
    for row in rows:
        row["emoflow_speedup"] = ref["events_per_s"] / row["events_per_s"]
        row["rss_vs_emoflow"] = row["peak_rss_mib"] / ref["peak_rss_mib"]
    return rows


HEADERS = ["engine", "version", "threads", "wall s, median (min–max)", "events/s",
           "peak RSS MiB", "emoflow events/s ÷ engine's", "engine RSS ÷ emoflow's"]


def table_cells(row):
    return [row["engine"], row["version"], str(row["threads"]),
            "%.2f (%.2f–%.2f)" % (row["wall_s_median"], row["wall_s_min"], row["wall_s_max"]),
            fmt_rate(row["events_per_s"]), "%.0f" % row["peak_rss_mib"],
            "%.1fx" % row["emoflow_speedup"], "%.1fx" % row["rss_vs_emoflow"]]


def text_table(rows):
    cells = [HEADERS] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows, info):
    out = io.StringIO()
    out.write("| %s |\n" % " | ".join(HEADERS))
    out.write("| %s |\n" % " | ".join(["---"] * len(HEADERS)))
    for r in rows:
        out.write("| %s |\n" % " | ".join(table_cells(r)))
    out.write("\n%s\n" % info["caption"])
    # One row in the shape of README.md's benchmark table (what | command | median).
    parts = ", ".join("%s %.2f s (%s events/s, %.0f MiB)"
                      % (r["engine"], r["wall_s_median"], fmt_rate(r["events_per_s"]),
                         r["peak_rss_mib"]) for r in rows)
    ratios = "; ".join("emoflow %.1fx %s's events/s with %.2fx its peak RSS"
                       % (r["emoflow_speedup"], r["engine"], 1 / r["rss_vs_emoflow"])
                       for r in rows if r["engine"] != "emoflow")
    out.write("\n<!-- as a row of README.md's benchmark table -->\n")
    out.write("| peers on the same %s-event file (%d threads each; %d run(s), whole processes, "
              "answers checked equal; %s) | `%s` | %s; %s |\n"
              % ("{:,}".format(info["events"]), info["workers"], info["runs"], info["date"],
                 info["command"], parts, ratios))
    return out.getvalue()


def write_csv(path, rows, info):
    cols = ["engine", "version", "threads", "runs", "events", "wall_s_median", "wall_s_min",
            "wall_s_max", "events_per_s", "peak_rss_mib", "peak_rss_mib_max",
            "engine_reported_s_median", "other_cores_max", "emoflow_speedup",
            "rss_vs_emoflow"]
    cols += ["input", "machine", "command", "date"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            row = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            row.update(input=info["input"], machine=info["machine_line"],
                       command=info["command"], date=info["date"])
            w.writerow(row)


def esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def write_svg(path, rows, info):
    """Horizontal bars of events/s (median), whiskers from the fastest to the slowest run."""
    left, right, bar_h, gap, top = 190, 150, 30, 16, 64
    width = 860
    plot_w = width - left - right
    height = top + len(rows) * (bar_h + gap) + 70
    peak = max(r["events"] / r["wall_s_min"] for r in rows)
    scale = plot_w / peak if peak > 0 else 0
    colors = {"emoflow": "#d1495b", "duckdb": "#edae49", "pathway": "#00798c"}
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">' % (width, height,
                                                                            width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>'
         % (left, esc("Throughput on the same %s-event NDJSON file (events/s, higher is better)"
                      % "{:,}".format(info["events"]))),
         '<text x="%d" y="44" fill="#555">%s</text>'
         % (left, esc("%d threads each; bar: median of %d runs (whole process); whisker: "
                      "slowest to fastest run" % (info["workers"], info["runs"])))]
    # gridlines
    # the largest of 1, 2, 2.5, 5 x 10^k that still gives at least 4 gridlines
    step = 1.0
    for k in range(0, 13):
        for m in (1, 2, 2.5, 5):
            if peak / (m * 10 ** k) >= 4:
                step = m * 10 ** k
    axis_y = top + len(rows) * (bar_h + gap)
    x = 0
    while x <= peak:
        px = left + x * scale
        s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                 % (px, top - 6, px, axis_y))
        s.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>'
                 % (px, axis_y + 16, fmt_tick(x)))
        x += step
    s.append('<text x="%d" y="%d" text-anchor="middle" fill="#333">events/s</text>'
             % (left + plot_w / 2, axis_y + 36))
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = r["events_per_s"] * scale
        lo = r["events"] / r["wall_s_max"] * scale
        hi = r["events"] / r["wall_s_min"] * scale
        color = colors.get(r["engine"], "#666")
        s.append('<text x="%d" y="%d" text-anchor="end" font-weight="bold">%s</text>'
                 % (left - 10, y + bar_h / 2 - 2, esc(r["engine"])))
        s.append('<text x="%d" y="%d" text-anchor="end" fill="#555" font-size="11">%s</text>'
                 % (left - 10, y + bar_h / 2 + 12, esc(r["version"])))
        s.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>'
                 % (left, y, max(w, 1), bar_h, color))
        s.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>'
                 % (left + lo, y + bar_h / 2, left + hi, y + bar_h / 2))
        for px in (lo, hi):
            s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>'
                     % (left + px, y + 8, left + px, y + bar_h - 8))
        label = "%s events/s, %.0f MiB" % (fmt_rate(r["events_per_s"]), r["peak_rss_mib"])
        if r["engine"] != "emoflow":
            label += " (emoflow %.1fx)" % r["emoflow_speedup"]
        s.append('<text x="%.1f" y="%d">%s</text>'
                 % (left + max(w, hi) + 8, y + bar_h / 2 + 5, esc(label)))
    s.append('<text x="10" y="%d" fill="#555" font-size="11">%s</text>'
             % (height - 10, esc(info["machine_line"])))
    s.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(s) + "\n")


# ---------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--events", type=int, default=2_000_000, help="events to generate")
    p.add_argument("--seed", type=int, default=7, help="seed of `emoflow produce`")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="emoflow workers, and DuckDB's and Pathway's threads")
    p.add_argument("--runs", type=int, default=3, help="rounds; the tables show medians")
    p.add_argument("--emoflow", default=os.path.join(REPO, "target", "release", "emoflow"),
                   help="the emoflow binary")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="engines to run, comma-separated (emoflow always runs: it is the "
                        "reference answer)")
    p.add_argument("--pathway-sessions", choices=["tuple", "window"], default="tuple",
                   help="pathway_views.py --sessions: how Pathway cuts sessions")
    p.add_argument("--data-dir", default=os.path.join(REPO, "bench-out", "peers"),
                   help="where the generated file (reused) and each run's output go")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed to one run")
    p.add_argument("--wait-quiet", type=int, default=0, metavar="SECONDS",
                   help="on a shared machine: before each run, wait up to SECONDS for the "
                        "other processes to use under %.2f cores, and run again (at most %d "
                        "times) a run they disturbed; 0: never wait" % (NOISY_CORES, MAX_REDOS))
    p.add_argument("--csv", metavar="PATH", help="write the table as CSV")
    p.add_argument("--markdown", metavar="PATH", help="write the table as markdown")
    p.add_argument("--svg", metavar="PATH", help="write a bar chart of events/s")
    args = p.parse_args()
    if args.events < 1 or args.runs < 1 or args.workers < 1 or args.timeout < 1:
        die("--events, --runs, --workers and --timeout must be at least 1")
    engines = ["emoflow"] + [e for e in ENGINES[1:] if e in args.engines.split(",")]
    unknown = set(args.engines.split(",")) - set(ENGINES) - {""}
    if unknown:
        die("--engines: unknown engine(s) %s (known: %s)" % (sorted(unknown), ", ".join(ENGINES)))
    args.emoflow = os.path.abspath(args.emoflow)
    args.data_dir = os.path.abspath(args.data_dir)
    args.time_bin = os.access("/usr/bin/time", os.X_OK)

    try:
        args.versions = {"emoflow": emoflow_version(args.emoflow)}
        for e in engines[1:]:
            args.versions[e] = check_module(e)
    except (Failure, subprocess.TimeoutExpired) as e:
        die(str(e))

    m = machine()
    machine_line = ("%s, %d cores (%d usable), %.1f GiB RAM, Linux %s, Python %s"
                    % (m["cpu"], m["cores"], m["usable_cores"], m["ram_gib"], m["kernel"],
                       m["python"]))
    command = "python3 benches/peers/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    command = command.rstrip()
    print("machine: " + machine_line)
    print("command: (in %s) %s" % (REPO, command))
    print("rss from: %s" % ("/usr/bin/time -f %M (max resident set size, KiB)"
                            if args.time_bin else "wait4() of each child (ru_maxrss, KiB)"))

    try:
        data, meta = ensure_data(args)
    except (Failure, subprocess.TimeoutExpired) as e:
        die(str(e))
    # One directory per invocation, so that two harnesses never write the same file.
    out_dir = os.path.join(args.data_dir, "out", "%s-%d" % (
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S"), os.getpid()))
    os.makedirs(out_dir, exist_ok=True)
    print("outputs: %s" % out_dir)
    print("engines (each a child process, %d threads):" % args.workers)
    for e in engines:
        print("  %-8s %-8s %s" % (e, args.versions[e], shown_command(e, args, data)))

    results = {e: [] for e in engines}
    reference = None
    try:
        for rnd in range(1, args.runs + 1):
            for e in engines:
                attempt = 0
                while True:
                    attempt += 1
                    if args.wait_quiet:
                        waited = wait_quiet(args.wait_quiet)
                        if waited is None:
                            print("  (the machine stayed busy for %d s (--wait-quiet): running "
                                  "anyway)" % args.wait_quiet)
                        elif waited > 2.5:
                            print("  (waited %.0f s for a quiet machine)" % waited)
                    wall, rss, inner, doc, others = run_engine(e, args, data, out_dir, rnd)
                    if (args.wait_quiet and others is not None and others > NOISY_CORES
                            and attempt <= MAX_REDOS):
                        print("  round %d %s disturbed (other processes used %.2f cores, "
                              "wall %.2f s): discarded, run again"
                              % (rnd, e, others, wall), flush=True)
                        continue
                    break
                results[e].append((wall, rss, inner, others))
                print("round %d/%d  %-8s wall %7.2f s  peak RSS %6.0f MiB%s%s"
                      % (rnd, args.runs, e, wall, rss / 1024,
                         "  (engine-reported %.2f s)" % inner if inner is not None else "",
                         "  other processes: %.2f cores" % others
                         if others is not None else ""),
                      flush=True)
                if e == "emoflow" and reference is None:
                    reference = doc
                    if doc.get("rejected"):
                        print("warning: emoflow rejected %s: the peers do not replicate every "
                              "rejection rule, see benches/peers/README.md" % doc["rejected"])
                    if doc.get("total") != meta["lines"]:
                        print("note: %d of %d lines accepted" % (doc.get("total"),
                                                                 meta["lines"]))
                    continue
                compared, found = compare(reference, doc)
                if rnd == 1:
                    print("  compared with emoflow: %s" % ", ".join(compared))
                if found:
                    print("\nDISAGREEMENT: %s (round %d) differs from emoflow on %d value(s); "
                          "first ones (path: emoflow | %s):" % (e, rnd, len(found), e))
                    for path, a, b in found[:15]:
                        print("  %s: %s | %s" % (path, short(a), short(b)))
                    print("outputs: %s, %s"
                          % (os.path.join(out_dir, "emoflow-run1.json"),
                             os.path.join(out_dir, "%s-run%d.json" % (e, rnd))))
                    sys.exit(1)
    except (Failure, subprocess.TimeoutExpired) as e:
        die(str(e))
    print("answers: every run of %s agrees with emoflow (total %s)"
          % (", ".join(engines[1:]) or "no peer", "{:,}".format(reference["total"])))

    rows = summarize(results, args.versions, args.workers, reference["total"])
    date = datetime.date.today().isoformat()
    produce = "emoflow produce --to-file %s --events %d --seed %d" % (
        os.path.relpath(data, REPO) if data.startswith(REPO + os.sep) else data,
        args.events, args.seed)
    info = {
        "events": reference["total"], "workers": args.workers, "runs": args.runs,
        "date": date, "command": command, "machine_line": machine_line, "input": produce,
        "caption": ("Same file for all: `%s` (%s events, %.0f MB); %d threads each; %d %s, "
                    "median wall time of the whole process (min–max); events/s = accepted "
                    "events / median wall s; peak RSS = max resident set size, median of the "
                    "runs. Machine: %s. Command: `%s` (%s)."
                    % (produce, "{:,}".format(reference["total"]), meta["bytes"] / 1e6,
                       args.workers, args.runs, "run" if args.runs == 1 else "runs",
                       machine_line, command, date)),
    }
    print()
    print(text_table(rows))
    print()
    print("wall s: the whole process, start to exit (Python start-up and imports included for "
          "the peers); events/s = %s accepted events / median wall s; peak RSS: MiB"
          % "{:,}".format(reference["total"]))
    for r in rows:
        if r["engine_reported_s_median"] is not None:
            print("  %-8s engine-reported time (its own clock, median): %.2f s"
                  % (r["engine"], r["engine_reported_s_median"]))
    noisy = [r["engine"] for r in rows
             if r["other_cores_max"] is not None and r["other_cores_max"] > NOISY_CORES]
    if noisy:
        print("warning: other processes kept more than %.2f cores busy during some runs of %s: "
              "those times are inflated; run again on a quiet machine"
              % (NOISY_CORES, ", ".join(noisy)))
    for r in rows:
        if r["engine"] == "pathway":
            print("bar (emoflow >= 10x Pathway's events/s): %.1fx, %s"
                  % (r["emoflow_speedup"], "met" if r["emoflow_speedup"] >= 10 else "NOT met"))
    if args.csv:
        write_csv(args.csv, rows, info)
        print("csv: " + args.csv)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(rows, info))
        print("markdown: " + args.markdown)
    if args.svg:
        write_svg(args.svg, rows, info)
        print("svg: " + args.svg)


if __name__ == "__main__":
    main()
