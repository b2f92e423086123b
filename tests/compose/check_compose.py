#!/usr/bin/env python3
"""Checks the container setup without a Docker engine: docker-compose.yml, the Dockerfile,
.dockerignore, deploy/cluster-hostfile and docs/docker.md, against the Compose Specification and
against the command line in src/cli/args.rs.

    python3 tests/compose/check_compose.py              # from the repository root (or anywhere)
    python3 tests/compose/check_compose.py --root DIR   # check another copy of the repository
    python3 tests/compose/check_compose.py --env-table  # print the `serve` variables as Markdown

What it checks:
- the compose file is YAML without duplicate keys, has no obsolete `version:`, and is valid
  against the Compose Specification's JSON schema (tests/compose/compose-spec.json, vendored
  from the check-jsonschema package on PyPI, see tests/compose/README.md);
- every EMOFLOW_* variable it sets is one emoflow reads (an `env = "EMOFLOW_..."` of src/cli/args.rs,
  or a variable the sources read directly, such as EMOFLOW_LOG), and every service that runs
  `emoflow serve` lists every flag of `serve` (including flattened argument groups);
- x-emoflow-env holds the flags' defaults as src/cli/args.rs has them (except the wiring:
  brokers, listen address, data and archive directories), `${NAME:-default}` interpolations
  name their own variable, and flags without a default are left unset;
- depends_on names existing services that are enabled whenever the dependent one is
  (profiles), every service has a healthcheck, named volumes are declared (and used), bind
  mounts exist, published host ports do not collide, each emoflow process has its own data
  volume, the listen port matches the published ports and the healthcheck;
- the cluster: its hostfile exists, is mounted where EMOFLOW_HOSTFILE points, lists exactly
  EMOFLOW_PROCESSES `host:port` lines naming the cluster services in process order, and the
  processes agree on workers and view settings;
- the Dockerfile builds `--release --locked --bin emoflow` on a Rust image no older than the
  workspace's rust-version, runs as a non-root user, and agrees with the compose file on the
  data directory and the port; .dockerignore leaves out target/ and .git/ but keeps every file
  the build reads (manifests, sources, build.rs and what it includes, declared bench targets,
  files pulled in with include_str!/include_bytes!);
- docs/docker.md names every service and every `serve` variable;
- when `docker compose` works here, `docker compose config -q`, with and without the
  `cluster` profile.

Exits 1 with one line per problem, 0 when everything holds. Needs PyYAML and jsonschema.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - reported, not raised
    sys.exit("check_compose: PyYAML is missing (python3 -m pip install pyyaml)")
try:
    import jsonschema
except ImportError:  # pragma: no cover
    sys.exit("check_compose: jsonschema is missing (python3 -m pip install jsonschema)")

COMPOSE_FILE = "docker-compose.yml"
SCHEMA_FILE = "tests/compose/compose-spec.json"
CLI_FILE = "src/cli/args.rs"
# The command line: the commands (mod.rs) and their arguments (args.rs, and bench.rs).
CLI_DIR = "src/cli"
DOCS_FILE = "docs/docker.md"
SHARED_ENV_KEY = "x-emoflow-env"

# How the container is wired rather than tuned: these need not hold the flag's default.
WIRING_VARS = {"EMOFLOW_BROKERS", "EMOFLOW_LISTEN", "EMOFLOW_DATA_DIR", "EMOFLOW_ARCHIVE_DIR"}
# Settings every process of a cluster must share (the cluster refuses to form otherwise).
CLUSTER_SHARED_VARS = [
    "EMOFLOW_WORKERS",
    "EMOFLOW_TOP_K",
    "EMOFLOW_WINDOW",
    "EMOFLOW_SESSION_GAP",
    "EMOFLOW_RETENTION",
    "EMOFLOW_TOPIC",
    "EMOFLOW_BROKERS",
]


class Report:
    """Collects failures and notes; prints them at the end."""

    def __init__(self):
        self.failures = []
        self.notes = []
        self.checks = 0

    def check(self, ok, message):
        self.checks += 1
        if not ok:
            self.failures.append(message)
        return ok

    def fail(self, message):
        self.check(False, message)

    def note(self, message):
        self.notes.append(message)


# --------------------------------------------------------------------------------------------
# Rust source: just enough lexing to find structs, fields and their attributes.


def code_classes(text):
    """One character per character of `text`: 'c' code, 's' string or char literal, 'm' comment."""
    out = ["c"] * len(text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = ["m"] * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = ["m"] * (j - i)
            i = j
        elif ch == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out[i:j] = ["s"] * (j - i)
            i = j
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out[i:j] = ["s"] * (j - i)
            i = j
        elif ch == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m:
                j = i + len(m.group(0))
                out[i:j] = ["s"] * (j - i)
                i = j
            else:  # a lifetime
                i += 1
        else:
            i += 1
    return "".join(out)


def without_comments(text, classes):
    return "".join(" " if k == "m" and c != "\n" else c for c, k in zip(text, classes))


def matching_close(text, classes, open_at):
    """Index of the bracket closing the one at `open_at` (code characters only)."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = []
    for i in range(open_at, len(text)):
        if classes[i] != "c":
            continue
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in ")}]":
            if not stack or stack.pop() != ch:
                return -1
            if not stack:
                return i
    return -1


def split_type(type_text):
    t = " ".join(type_text.split())
    m = re.fullmatch(r"(Option|Vec)\s*<\s*(.*)\s*>", t)
    if m:
        return m.group(1), m.group(2)
    return None, t


def eval_default_t(expr):
    expr = expr.strip()
    plain = re.sub(r"(?<=\d)_(?=\d)", "", expr)
    if re.fullmatch(r"[0-9\s<>*+\-()]+", plain):
        try:
            return str(eval(plain, {"__builtins__": {}}, {}))  # digits and operators only
        except Exception:  # noqa: BLE001 - an odd expression is shown as written
            return expr
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"(?:\.(?:into|to_string|to_owned)\(\))?', expr)
    if m:
        return m.group(1)
    return expr


def attr_expr(attrs, name):
    """The expression after `name =` in an attribute, up to its comma or closing parenthesis."""
    m = re.search(r"\b" + name + r"\s*=\s*", attrs)
    if not m:
        return None
    i, depth, start = m.end(), 0, m.end()
    in_str = False
    while i < len(attrs):
        ch = attrs[i]
        if in_str:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            break
        i += 1
    return attrs[start:i].strip()


def parse_structs(text):
    """{struct name: [field]} where a field is a dict: name, type, env, long, default, doc,
    flatten (the flattened type's name or None)."""
    classes = code_classes(text)
    clean = without_comments(text, classes)
    structs = {}
    for m in re.finditer(r"\bstruct\s+(\w+)\s*(?:<[^>{]*>)?\s*\{", clean):
        if classes[m.start()] != "c":
            continue
        open_at = m.end() - 1
        close_at = matching_close(text, classes, open_at)
        if close_at < 0:
            continue
        fields = []
        seg_start = open_at + 1
        i = open_at + 1
        depth = 0
        while i < close_at:
            ch = text[i]
            if classes[i] == "c":
                if ch in "([{":
                    depth += 1
                elif ch in ")]}":
                    depth -= 1
                elif depth == 0 and clean.startswith("pub", i) and re.match(r"pub\s+(?:\([^)]*\)\s*)?(\w+)\s*:", clean[i:]):
                    fm = re.match(r"pub\s+(?:\([^)]*\)\s*)?(\w+)\s*:", clean[i:])
                    # The type: up to the next comma outside <>, () and [].
                    j = i + fm.end()
                    tdepth = 0
                    while j < close_at:
                        c = clean[j]
                        if c in "<([":
                            tdepth += 1
                        elif c in ">)]":
                            tdepth -= 1
                        elif c == "," and tdepth == 0:
                            break
                        j += 1
                    attrs = clean[seg_start:i]
                    docs = [d.strip() for d in re.findall(r"^\s*///(.*)$", text[seg_start:i], re.M)]
                    fields.append(make_field(fm.group(1), clean[i + fm.end():j], attrs, docs))
                    seg_start = j + 1
                    i = j + 1
                    continue
            i += 1
        structs[m.group(1)] = fields
    return structs


def make_field(name, type_text, attrs, docs):
    wrapper, inner = split_type(type_text)
    flatten = None
    if re.search(r"#\s*\[\s*command\s*\(\s*flatten\s*\)\s*\]", attrs):
        flatten = re.sub(r"<.*", "", inner).split("::")[-1].strip()
    env = re.search(r'\benv\s*=\s*"([^"]+)"', attrs)
    long_m = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
    if long_m:
        long_name = long_m.group(1)
    elif re.search(r"\blong\b(?!\s*=)", attrs):
        long_name = name.replace("_", "-")
    else:
        long_name = None
    default = None
    dv = attr_expr(attrs, "default_value")
    dvt = attr_expr(attrs, "default_value_t")
    if dv is not None:
        default = eval_default_t(dv)
    elif dvt is not None:
        default = eval_default_t(dvt)
    elif wrapper is None and inner == "bool":
        default = "false"
    return {
        "name": name,
        "type": " ".join(type_text.split()),
        "wrapper": wrapper,
        "env": env.group(1) if env else None,
        "long": long_name,
        "default": default,
        "doc": " ".join(docs),
        "flatten": flatten,
    }


def serve_flags(cli_text):
    """The flags of `emoflow serve`, in declaration order, flattened groups expanded."""
    structs = parse_structs(cli_text)
    m = re.search(r"\bServe\s*\(\s*(\w+)\s*\)", cli_text)
    if not m or m.group(1) not in structs:
        return None, structs
    out = []

    def walk(struct_name, seen):
        for f in structs.get(struct_name, []):
            if f["flatten"]:
                if f["flatten"] in seen:
                    continue
                walk(f["flatten"], seen | {f["flatten"]})
            elif f["long"] or f["env"]:
                out.append(f)

    walk(m.group(1), {m.group(1)})
    return out, structs


def known_env_vars(root, cli_text):
    """Variables emoflow reads: every flag's env, and string literals "EMOFLOW_..." that the
    sources (not the tests) read directly."""
    flags = set(re.findall(r'\benv\s*=\s*"(EMOFLOW_\w+)"', without_comments(cli_text, code_classes(cli_text))))
    other = set()
    for d in ["src", "ingest/src", "dataflow/src", "storage/src", "query-api/src"]:
        base = root / d
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*.rs")):
            if p.parent == root / CLI_DIR:
                continue
            t = p.read_text(encoding="utf-8")
            t = without_comments(t, code_classes(t))
            # Leave out test modules: a variable a test sets is not one emoflow reads.
            t = t.split("#[cfg(test)]")[0]
            other |= set(re.findall(r'"(EMOFLOW_\w+)"', t))
    return flags, other - flags


# --------------------------------------------------------------------------------------------
# YAML


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Compose does (merge keys may be overridden)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    loader.flatten_mapping(node)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def env_dict(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, sep, v = str(item).partition("=")
            out[k] = v if sep else None
        return out
    return dict(env)


INTERP = re.compile(r"^\$\{(\w+)(?::?-(.*))?\}$")


def effective(value):
    """(name interpolated or None, the value when the shell does not set it)."""
    if value is None:
        return None, None
    s = str(value)
    m = INTERP.match(s)
    if m:
        return m.group(1), m.group(2)
    if "$" in s.replace("$$", ""):
        return "?", s
    return None, s


def command_of(service):
    cmd = service.get("command")
    if isinstance(cmd, str):
        return cmd.split()
    return [str(c) for c in cmd] if cmd else []


def volume_mounts(service):
    """[(source or None, target, kind)] with kind 'volume', 'bind' or other."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("source"), v.get("target"), v.get("type", "volume")))
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append((None, parts[0], "volume"))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append((source, target, kind))
    return out


def published_ports(service):
    """[(host ip, host port, container port)] of the service's `ports`."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), str(p.get("published", "")), str(p.get("target"))))
            continue
        spec = str(p).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


def profiles_of(service):
    return set(service.get("profiles") or [])


def healthcheck_text(service):
    hc = service.get("healthcheck") or {}
    test = hc.get("test")
    if isinstance(test, list):
        return " ".join(str(t) for t in test)
    return str(test or "")


def deepest(error):
    """The error, or among the alternatives it stands for (anyOf, oneOf), the deepest one."""
    best = error
    stack = list(error.context or [])
    while stack:
        e = stack.pop(0)
        if e.validator == "unevaluatedProperties":
            continue
        if len(e.absolute_path) > len(best.absolute_path):
            best = e
        stack.extend(e.context or [])
    return best


# --------------------------------------------------------------------------------------------
# .dockerignore


def dockerignore_patterns(text):
    pats = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        if neg:
            line = line[1:].strip()
        line = line.strip("/")
        if line.startswith("./"):
            line = line[2:]
        pats.append((neg, pattern_regex(line)))
    return pats


def pattern_regex(pat):
    """Docker's pattern syntax (Go's filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pat.startswith("**", i):
            out += ".*"
            i += 2
        elif c == "*":
            out += "[^/]*"
            i += 1
        elif c == "?":
            out += "[^/]"
            i += 1
        elif c == "[":
            j = pat.find("]", i)
            if j < 0:
                out += re.escape(c)
                i += 1
            else:
                cls = pat[i + 1:j]
                if cls.startswith("^"):
                    cls = "!" + cls[1:]
                out += "[" + ("^" + cls[1:] if cls.startswith("!") else cls) + "]"
                i = j + 1
        elif c == "\\" and i + 1 < len(pat):
            out += re.escape(pat[i + 1])
            i += 2
        else:
            out += re.escape(c)
            i += 1
    return re.compile("^" + out + "$")


def ignored(path, patterns):
    """Whether `path` (relative, with /) is left out of the build context: the last pattern
    matching it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
    result = False
    for neg, rx in patterns:
        if any(rx.match(c) for c in candidates):
            result = not neg
    return result


# --------------------------------------------------------------------------------------------


def load_toml(path):
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover
        try:
            import tomli as tomllib
        except ImportError:
            return None
    with open(path, "rb") as f:
        return tomllib.load(f)


def build_inputs(root, rep):
    """Files the release build of the binary reads (relative paths)."""
    need = {"Cargo.toml", "Cargo.lock"}
    manifest = load_toml(root / "Cargo.toml")
    if manifest is None:
        rep.note("no TOML reader (Python 3.11+ or tomli): .dockerignore checked against the root package only")
        members = []
    else:
        members = manifest.get("workspace", {}).get("members", [])
    packages = [""] + list(members)
    for pkg in packages:
        base = root / pkg if pkg else root
        prefix = f"{pkg}/" if pkg else ""
        need.add(prefix + "Cargo.toml")
        if (base / "build.rs").exists():
            need.add(prefix + "build.rs")
            bt = (base / "build.rs").read_text(encoding="utf-8")
            for inc in re.findall(r'include(?:_str|_bytes)?!\(\s*"([^"]+)"', bt):
                need.add(prefix + inc)
        for p in sorted((base / "src").rglob("*")) if (base / "src").is_dir() else []:
            if p.is_file():
                need.add(str(p.relative_to(root)))
                if p.suffix == ".rs":
                    t = p.read_text(encoding="utf-8")
                    for inc in re.findall(r'include(?:_str|_bytes)?!\(\s*"([^"]+)"', t):
                        q = (p.parent / inc).resolve()
                        try:
                            need.add(str(q.relative_to(root.resolve())))
                        except ValueError:
                            pass
        member_manifest = base / "Cargo.toml"
        if not rep.check(member_manifest.is_file(), f"workspace member {pkg or '.'} has no Cargo.toml"):
            continue
        pm = load_toml(member_manifest) if manifest is not None else None
        if pm:
            for kind, folder in [("bench", "benches"), ("test", "tests"), ("example", "examples"), ("bin", "src/bin")]:
                for target in pm.get(kind, []):
                    path = target.get("path") or f"{folder}/{target.get('name')}.rs"
                    need.add(prefix + path)
    return sorted(need)


def check_dockerfile(root, rep, data_dir, listen_port):
    path = root / "Dockerfile"
    if not rep.check(path.is_file(), "Dockerfile is missing"):
        return
    text = path.read_text(encoding="utf-8")
    logical = re.sub(r"\\\n", " ", text)
    lines = [l.strip() for l in logical.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages = []
    for l in lines:
        if l.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(l)
    froms = [st[0] for st in stages]
    rep.check(len(stages) >= 2, "Dockerfile: expected a builder stage and a runtime stage (two FROM lines)")
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", "\n".join(lines), re.M))

    def expand(s):
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)

    images = [expand(f.split()[1]) for f in froms]
    rep.check(any(i.startswith("rust:") for i in images), f"Dockerfile: no stage FROM an official rust: image ({images})")
    rep.check(len(images) >= 2 and re.match(r"debian:[\w.-]*slim", images[-1]) is not None,
              f"Dockerfile: the runtime (last) stage is not FROM debian:*-slim ({images})")
    rust_image = next((i for i in images if i.startswith("rust:")), "")
    m = re.match(r"rust:(\d+)\.(\d+)", rust_image)
    manifest = load_toml(root / "Cargo.toml")
    msrv = None
    if manifest:
        msrv = manifest.get("workspace", {}).get("package", {}).get("rust-version") or manifest.get("package", {}).get("rust-version")
    if m and isinstance(msrv, str):
        have = (int(m.group(1)), int(m.group(2)))
        want = tuple(int(x) for x in msrv.split(".")[:2])
        rep.check(have >= want, f"Dockerfile: {rust_image} is older than the workspace's rust-version {msrv}")
    build = [l for l in lines if "cargo build" in l]
    rep.check(bool(build), "Dockerfile: no `cargo build`")
    for flag in ["--release", "--locked", "--bin emoflow"]:
        rep.check(any(flag in l for l in build), f"Dockerfile: `cargo build` lacks {flag}")
    runtime = stages[-1] if stages else []

    def instr(name):
        return [l[len(name):].strip() for l in runtime if l.upper().startswith(name + " ")]

    users = instr("USER")
    rep.check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: the runtime stage must end on a non-root USER")
    hc = instr("HEALTHCHECK")
    rep.check(bool(hc) and "/health" in hc[-1], "Dockerfile: no HEALTHCHECK on /health in the runtime stage")
    ep = instr("ENTRYPOINT")
    rep.check(bool(ep) and ep[-1].startswith("[") and "emoflow" in ep[-1], "Dockerfile: ENTRYPOINT must run emoflow (exec form)")
    cmd = instr("CMD")
    try:
        cmd_ok = bool(cmd) and json.loads(cmd[-1]) == ["serve"]
    except ValueError:
        cmd_ok = False
    rep.check(cmd_ok, 'Dockerfile: the default CMD must be ["serve"]')
    env = {}
    for e in instr("ENV"):
        env.update((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', e))
    rep.check(env.get("EMOFLOW_DATA_DIR") == data_dir,
              f"Dockerfile: ENV EMOFLOW_DATA_DIR={env.get('EMOFLOW_DATA_DIR')} but the compose file uses {data_dir}")
    if listen_port:
        rep.check(env.get("EMOFLOW_LISTEN", "").rsplit(":", 1)[-1] == listen_port,
                  f"Dockerfile: ENV EMOFLOW_LISTEN={env.get('EMOFLOW_LISTEN')} but the compose file listens on port {listen_port}")
        rep.check(any(listen_port in e.split() for e in instr("EXPOSE")), f"Dockerfile: no EXPOSE {listen_port}")
    rep.check(any(data_dir in v for v in instr("VOLUME")), f"Dockerfile: no VOLUME {data_dir}")

    ignore = root / ".dockerignore"
    if not rep.check(ignore.is_file(), ".dockerignore is missing (the context would carry target/, gigabytes)"):
        return
    patterns = dockerignore_patterns(ignore.read_text(encoding="utf-8"))
    for must_skip in ["target/release/emoflow", ".git/HEAD", "tests/browser/node_modules/x", "emoflow-data/emoflow.lock"]:
        rep.check(ignored(must_skip, patterns), f".dockerignore: {must_skip.split('/')[0]}/ is not left out of the build context")
    for f in build_inputs(root, rep):
        rep.check(not ignored(f, patterns), f".dockerignore leaves out {f}, which the build reads")


def check_docker_compose_cli(root, rep):
    """`docker compose config -q` with and without the cluster profile, when compose works here."""
    docker = shutil.which("docker")
    candidates = []
    if docker:
        candidates.append([docker, "compose"])
    standalone = shutil.which("docker-compose")
    if standalone:
        candidates.append([standalone])
    for base in candidates:
        try:
            v = subprocess.run(base + ["version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        major = re.search(r"version\s+v?(\d+)\.", v.stdout)
        if v.returncode != 0 or not major or int(major.group(1)) < 2:  # Compose 1.x differs
            continue
        for extra in [[], ["--profile", "cluster"]]:
            cmd = base + ["-f", COMPOSE_FILE] + extra + ["config", "-q"]
            r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
            shown = " ".join(["docker compose" if len(base) == 2 else "docker-compose"] + cmd[len(base):])
            rep.check(r.returncode == 0, f"`{shown}` failed: {(r.stderr or r.stdout).strip()}")
        return True
    rep.note("docker compose (v2) is not available here: `docker compose config -q` skipped")
    return False


def env_table(flags):
    rows = ["| variable | flag | default | meaning |", "| --- | --- | --- | --- |"]
    for f in flags:
        default = f["default"]
        if default is None:
            default = "none" if f["wrapper"] else "required"
        default = f"`{default}`"
        doc = f["doc"].replace("|", "\\|")
        rows.append(f"| `{f['env']}` | `--{f['long']}` | {default} | {doc} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2],
                    help="the repository to check (default: the one holding this script)")
    ap.add_argument("--env-table", action="store_true", help="print the `serve` variables as a Markdown table and exit")
    ap.add_argument("--no-docker", action="store_true", help="do not run `docker compose config`, even if it works here")
    opts = ap.parse_args()
    root = opts.root.resolve()
    rep = Report()

    cli_path = root / CLI_FILE
    if not cli_path.is_file():
        print(f"check_compose: {cli_path} is missing", file=sys.stderr)
        return 1
    cli_text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((root / CLI_DIR).glob("*.rs")))
    flags, _ = serve_flags(cli_text)
    if not flags:
        print(f"check_compose: cannot find the `serve` command's arguments in {CLI_FILE}", file=sys.stderr)
        return 1
    if opts.env_table:
        print(env_table(flags))
        return 0
    for f in flags:
        rep.check(f["env"] and f["env"].startswith("EMOFLOW_"), f"{CLI_FILE}: serve --{f['long']} has no EMOFLOW_* variable")
    serve_envs = {f["env"]: f for f in flags if f["env"]}
    flag_envs, other_envs = known_env_vars(root, cli_text)
    known = flag_envs | other_envs

    # ---- the compose file: YAML, schema
    compose_path = root / COMPOSE_FILE
    if not compose_path.is_file():
        print(f"check_compose: {COMPOSE_FILE} is missing", file=sys.stderr)
        return 1
    try:
        doc = yaml.load(compose_path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except yaml.YAMLError as e:
        print(f"check_compose: {COMPOSE_FILE} is not valid YAML: {e}", file=sys.stderr)
        return 1
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        print(f"check_compose: {COMPOSE_FILE} has no services", file=sys.stderr)
        return 1
    rep.check("version" not in doc, f"{COMPOSE_FILE}: `version:` is obsolete in the Compose Specification; remove it")
    schema_path = root / SCHEMA_FILE
    if rep.check(schema_path.is_file(), f"{SCHEMA_FILE} is missing"):
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        validator_cls = jsonschema.validators.validator_for(schema)
        errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
        paths = [list(e.absolute_path) for e in errors]
        for e, path in zip(errors, paths):
            # "Unevaluated properties" of a mapping follows from an error inside it: show that one.
            if e.validator == "unevaluatedProperties" and any(len(q) > len(path) and q[:len(path)] == path for q in paths):
                continue
            # anyOf/oneOf: the alternative that got furthest into the document says what is wrong.
            e = deepest(e)
            where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
            rep.fail(f"{COMPOSE_FILE}: {where}: {e.message}")

    services = doc["services"]
    shared = doc.get(SHARED_ENV_KEY)

    # ---- emoflow services and their variables
    def is_emoflow(svc):
        image = str(svc.get("image", ""))
        return "build" in svc or image.split(":")[0].split("/")[-1] == "emoflow"

    emoflow_services = {n: s for n, s in services.items() if is_emoflow(s)}
    serve_services = {n: s for n, s in emoflow_services.items() if command_of(s)[:1] == ["serve"]}
    rep.check(bool(serve_services), f"{COMPOSE_FILE}: no service runs `emoflow serve`")
    rep.check("kafka" in services, f"{COMPOSE_FILE}: no `kafka` service")

    for name, svc in services.items():
        env = env_dict(svc)
        for key in env:
            if not str(key).startswith("EMOFLOW_"):
                continue
            if not rep.check(name in emoflow_services, f"{COMPOSE_FILE}: {name} sets {key} but does not run emoflow"):
                continue
            rep.check(key in known,
                      f"{COMPOSE_FILE}: {name} sets {key}, which emoflow does not read (no `env = \"{key}\"` in {CLI_FILE})")
        for key, value in env.items():
            var, _ = effective(value)
            if var == "?":
                rep.fail(f"{COMPOSE_FILE}: {name}: {key}={value!r}: use ${{{key}:-default}} or a plain value")
            elif var is not None:
                rep.check(var == key, f"{COMPOSE_FILE}: {name}: {key} interpolates ${{{var}}}, another variable")
                m = INTERP.match(str(value))
                rep.check(m.group(2) is not None, f"{COMPOSE_FILE}: {name}: {key}={value}: give a default (${{{key}:-...}}), or it is empty when unset")

    for name, svc in serve_services.items():
        env = env_dict(svc)
        for var in serve_envs:
            rep.check(var in env, f"{COMPOSE_FILE}: {name} runs `emoflow serve` but does not list {var} (--{serve_envs[var]['long']})")

    if rep.check(isinstance(shared, dict), f"{COMPOSE_FILE}: no `{SHARED_ENV_KEY}` mapping of the shared variables"):
        for var, f in serve_envs.items():
            if not rep.check(var in shared, f"{COMPOSE_FILE}: {SHARED_ENV_KEY} lacks {var} (--{f['long']})"):
                continue
            if var in WIRING_VARS:
                continue
            _, value = effective(shared[var])
            default = f["default"]
            if default is None:
                rep.check(value is None, f"{COMPOSE_FILE}: {SHARED_ENV_KEY}: {var} has no default in {CLI_FILE}; leave it empty (unset) rather than {value!r}")
            else:
                rep.check(value is not None and str(value) == str(default),
                          f"{COMPOSE_FILE}: {SHARED_ENV_KEY}: {var} is {value!r} but its default in {CLI_FILE} is {default!r}")

    # ---- depends_on, profiles, healthchecks
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = list(deps) if isinstance(deps, (list, dict)) else []
        for dep in deps:
            if not rep.check(dep in services, f"{COMPOSE_FILE}: {name} depends on {dep}, which is not a service"):
                continue
            mine, theirs = profiles_of(svc), profiles_of(services[dep])
            rep.check(not theirs or (mine and mine <= theirs),
                      f"{COMPOSE_FILE}: {name} depends on {dep}, which is only in profiles {sorted(theirs)}")
        hc = svc.get("healthcheck") or {}
        rep.check(bool(hc.get("test")) and not hc.get("disable") and hc.get("test") not in (["NONE"], "NONE"),
                  f"{COMPOSE_FILE}: {name} has no healthcheck")

    # ---- volumes and bind mounts
    declared = set((doc.get("volumes") or {}).keys())
    used = set()
    data_volumes = {}
    data_dir = str(effective((shared or {}).get("EMOFLOW_DATA_DIR"))[1] or "/data")
    for name, svc in services.items():
        for source, target, kind in volume_mounts(svc):
            if kind == "volume" and source:
                used.add(source)
                rep.check(source in declared, f"{COMPOSE_FILE}: {name} mounts volume {source}, which is not declared under volumes:")
            elif kind == "bind":
                rep.check((compose_path.parent / source).exists(), f"{COMPOSE_FILE}: {name} mounts {source}, which does not exist")
        if name in serve_services:
            svc_data = str(effective(env_dict(svc).get("EMOFLOW_DATA_DIR"))[1])
            mounts = {t: s for s, t, _ in volume_mounts(svc)}
            if rep.check(svc_data in mounts, f"{COMPOSE_FILE}: {name}: its data directory {svc_data} is not a volume"):
                src = mounts[svc_data]
                rep.check(src not in data_volumes,
                          f"{COMPOSE_FILE}: {name} and {data_volumes.get(src)} share the data volume {src} (one process holds a data directory)")
                data_volumes[src] = name
    for v in sorted(declared - used):
        rep.fail(f"{COMPOSE_FILE}: volume {v} is declared but no service mounts it")

    # ---- ports and the listen address
    host_ports = {}
    listen_port = None
    for name, svc in services.items():
        for ip, host, _target in published_ports(svc):
            if host:
                key = (host,)
                rep.check(key not in host_ports, f"{COMPOSE_FILE}: host port {host} is published by both {host_ports.get(key)} and {name}")
                host_ports[key] = name
    for name, svc in serve_services.items():
        listen = str(effective(env_dict(svc).get("EMOFLOW_LISTEN"))[1] or "")
        port = listen.rsplit(":", 1)[-1] if ":" in listen else ""
        rep.check(listen.startswith(("0.0.0.0:", "[::]:")), f"{COMPOSE_FILE}: {name}: EMOFLOW_LISTEN={listen!r} is not reachable from outside the container (use 0.0.0.0:PORT)")
        listen_port = listen_port or port
        for _ip, _host, target in published_ports(svc):
            rep.check(target == port, f"{COMPOSE_FILE}: {name} publishes container port {target} but listens on {port}")
        rep.check(f":{port}/health" in healthcheck_text(svc), f"{COMPOSE_FILE}: {name}'s healthcheck does not ask /health on port {port}")

    # ---- the cluster
    clusters = {}
    for name, svc in serve_services.items():
        env = env_dict(svc)
        procs = str(effective(env.get("EMOFLOW_PROCESSES"))[1] or "1")
        if procs.isdigit() and int(procs) > 1:
            hostfile = str(effective(env.get("EMOFLOW_HOSTFILE"))[1])
            clusters.setdefault((hostfile, int(procs)), []).append(name)
    rep.check(bool(clusters), f"{COMPOSE_FILE}: no cluster services (EMOFLOW_PROCESSES above 1)")
    for (hostfile, procs), members in clusters.items():
        by_process = {}
        mounted = set()
        for name in members:
            svc = services[name]
            env = env_dict(svc)
            p = str(effective(env.get("EMOFLOW_PROCESS"))[1])
            rep.check(p.isdigit() and int(p) < procs, f"{COMPOSE_FILE}: {name}: EMOFLOW_PROCESS={p} is not 0..{procs - 1}")
            rep.check(p not in by_process, f"{COMPOSE_FILE}: {name} and {by_process.get(p)} are both process {p}")
            by_process[p] = name
            binds = [(s, t) for s, t, k in volume_mounts(svc) if k == "bind" and t == hostfile]
            if rep.check(bool(binds), f"{COMPOSE_FILE}: {name}: nothing is mounted at EMOFLOW_HOSTFILE={hostfile}"):
                mounted.add(binds[0][0])
            rep.check(profiles_of(svc) != set(), f"{COMPOSE_FILE}: cluster member {name} is in no profile (it would start with every `docker compose up`)")
        rep.check(len(members) == procs, f"{COMPOSE_FILE}: EMOFLOW_PROCESSES={procs} but {len(members)} services form that cluster: {members}")
        rep.check(len(mounted) == 1, f"{COMPOSE_FILE}: the cluster members mount different hostfiles: {sorted(mounted)}")
        for var in CLUSTER_SHARED_VARS:
            values = {str(effective(env_dict(services[n]).get(var))) for n in members}
            rep.check(len(values) <= 1, f"{COMPOSE_FILE}: the cluster members differ in {var}: {sorted(values)}")
        for source in mounted:
            path = compose_path.parent / source
            if not rep.check(path.is_file(), f"the hostfile {source} is missing"):
                continue
            lines = [l.strip() for l in path.read_text(encoding="utf-8").splitlines()]
            addresses = [l for l in lines if l and not l.startswith("#")]
            rep.check(len(addresses) == procs, f"{source}: {len(addresses)} addresses for EMOFLOW_PROCESSES={procs}")
            for i, address in enumerate(addresses):
                host, sep, port = address.rpartition(":")
                if not rep.check(sep and host and port.isdigit(), f"{source}: line {address!r} is not host:port"):
                    continue
                name = by_process.get(str(i))
                if name is None:
                    continue
                svc = services[name]
                names = {name, str(svc.get("hostname", name)), str(svc.get("container_name", name))}
                rep.check(host in names, f"{source}: process {i} is {host}, but the service with EMOFLOW_PROCESS={i} is {name}")
                exposed = {str(e).split("/")[0] for e in svc.get("expose") or []}
                rep.check(port in exposed, f"{COMPOSE_FILE}: {name} does not `expose` its cluster port {port}")

    # ---- Dockerfile, .dockerignore
    check_dockerfile(root, rep, data_dir, listen_port)

    # ---- docs
    docs = root / DOCS_FILE
    if rep.check(docs.is_file(), f"{DOCS_FILE} is missing"):
        text = docs.read_text(encoding="utf-8")
        for var in sorted(serve_envs):
            rep.check(var in text, f"{DOCS_FILE} does not mention {var}")
        for name in services:
            rep.check(f"`{name}`" in text, f"{DOCS_FILE} does not mention the service `{name}`")

    # ---- docker compose itself, when it is here
    if not opts.no_docker:
        check_docker_compose_cli(root, rep)

    for n in rep.notes:
        print(f"note: {n}")
    if rep.failures:
        for f in rep.failures:
            print(f"FAIL: {f}", file=sys.stderr)
        print(f"check_compose: {len(rep.failures)} of {rep.checks} checks failed", file=sys.stderr)
        return 1
    print(f"check_compose: all {rep.checks} checks hold ({len(services)} services, {len(serve_envs)} serve variables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
