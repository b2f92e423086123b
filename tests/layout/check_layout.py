#!/usr/bin/env python3
"""Checks the code's layout: no source file over 600 lines, and no circle of imports between the
files of a crate (module A uses module B, which uses, directly or through others, module A).

Tests and benchmarks are not checked (tests/, benches/, */tests/, */benches/, and #[cfg(test)]
modules). Files and circles already known are listed below with the issue that removes them: the
list may only shrink. A listed file that has come under the limit, or a listed circle that is
gone, fails too, so that the list stays true.

Run: python3 tests/layout/check_layout.py [--root DIR]
"""

import argparse
import re
import sys
from pathlib import Path

MAX_LINES = 600

# The crates' source directories, and the module that is each one's root.
CRATES = {
    "ingest/src": "lib",
    "dataflow/src": "lib",
    "storage/src": "lib",
    "query-api/src": "lib",
    "fixtures/src": "lib",
    "benches/src": "lib",
    "src": "main",
}

# Files known to be over the limit, each to be split (none since issue 23; a tests.rs beside
# its module does not count). A new one fails the check.
KNOWN_LONG: set = set()

# Circles known, per source directory, each as the sorted list of the modules in it: none
# since issue 23 (one runner, views apart from control). A new one fails the check.
KNOWN_CIRCLES: dict = {}


def module_name(src: Path, path: Path, root_module: str) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts = parts[:-1]
    name = "::".join(parts)
    return name if name else root_module


def without_tests(text: str) -> str:
    """The text before its first #[cfg(test)] module (test modules come last here)."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*[{;]", text)
    return text[: m.start()] if m else text


def reexports(module: str, text: str, names: set) -> dict:
    """Items `module` re-exports from its own children (`pub use child::Item;`, or a list):
    item name -> the child module that defines it."""
    out = {}
    for m in re.finditer(r"\bpub\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)::(\{[^}]*\}|\w+)", text):
        child = f"{module}::{m.group(1)}" if module not in ("lib", "main") else m.group(1)
        if child not in names:
            continue
        for item in re.split(r"[,\s{}]+", m.group(2)):
            if item:
                out[item] = child
    return out


def uses(module: str, text: str, names: set, exported: dict) -> set:
    """The crate's modules that `module` names: crate::a::b, super::x, and use-lists. A name
    that a module re-exports from a child counts as the child's."""
    found = set()

    def resolve(path: str):
        parts = path.split("::")
        # The longest prefix that is a module.
        for n in range(len(parts), 0, -1):
            cand = "::".join(parts[:n])
            if cand in names:
                if n < len(parts) and parts[n] in exported.get(cand, {}):
                    return exported[cand][parts[n]]
                return cand
        return None

    body = without_tests(text)
    for m in re.finditer(r"\bcrate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", body):
        r = resolve(m.group(1))
        if r:
            found.add(r)
    for m in re.finditer(r"\bcrate::\{([^}]*)\}", body):
        for part in re.split(r"[,\s]+", m.group(1)):
            r = resolve(part.split("::")[0]) if part else None
            if r:
                found.add(r)
    parent = module.rsplit("::", 1)[0] if "::" in module else ""
    for m in re.finditer(r"\bsuper::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)", body):
        r = resolve(f"{parent}::{m.group(1)}" if parent else m.group(1))
        if r:
            found.add(r)
    found.discard(module)
    # A module's own children are part of it, not a dependency back up.
    return {f for f in found if not f.startswith(module + "::")}


def circles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    root = ap.parse_args().root.resolve()
    failures = []
    long_files = set()
    for src_dir, root_module in CRATES.items():
        src = root / src_dir
        if not src.is_dir():
            failures.append(f"{src_dir} is missing")
            continue
        files = sorted(p for p in src.rglob("*.rs") if "tests" not in p.relative_to(src).parts)
        texts = {}
        for p in files:
            text = p.read_text(encoding="utf-8")
            rel = str(p.relative_to(root))
            if p.name != "tests.rs" and len(text.splitlines()) > MAX_LINES:
                long_files.add(rel)
            if p.name == "tests.rs":
                continue
            texts[module_name(src, p, root_module)] = text
        names = set(texts)
        exported = {m: reexports(m, t, names) for m, t in texts.items()}
        graph = {m: uses(m, t, names, exported) for m, t in texts.items()}
        found = circles(graph)
        known = sorted(sorted(c) for c in KNOWN_CIRCLES.get(src_dir, []))
        for c in found:
            if c not in known:
                failures.append(f"{src_dir}: a circle of imports: {' -> '.join(c)}")
        for c in known:
            if c not in found:
                failures.append(f"{src_dir}: the known circle {c} is gone: take it off KNOWN_CIRCLES")
    for f in sorted(long_files - KNOWN_LONG):
        failures.append(f"{f} is over {MAX_LINES} lines: split it by job")
    for f in sorted(KNOWN_LONG - long_files):
        failures.append(f"{f} is no longer over {MAX_LINES} lines: take it off KNOWN_LONG")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    checked = len(CRATES)
    if failures:
        print(f"check_layout: {len(failures)} problems in {checked} crates", file=sys.stderr)
        return 1
    print(f"check_layout: {checked} crates hold: no file over {MAX_LINES} lines and no circle of "
          f"imports beyond the {len(KNOWN_LONG)} files and "
          f"{sum(len(v) for v in KNOWN_CIRCLES.values())} circles known")
    return 0


if __name__ == "__main__":
    sys.exit(main())
