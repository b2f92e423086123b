#!/usr/bin/env python3
"""Checks a running emoflow against its own description and against /stats, with tools
nobody here wrote: openapi-spec-validator (the description is valid OpenAPI), jsonschema
(every JSON answer of a GET route matches its documented schema), and prometheus_client's
text-format parser (/metrics parses, and its counters agree with /stats).

usage: check_api.py BASE_URL PARAMS_JSON
PARAMS_JSON maps path parameters to values that exist (e.g. {"id": "f1", "user_id": "u1"}).
Exits non-zero with the reasons when a check fails.
"""
import json
import sys
import urllib.error
import urllib.request

import jsonschema
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

# Routes the contract names: each must be described and answer.
CONTRACT = [
    ("get", "/health"), ("post", "/emoji"), ("post", "/events"), ("post", "/register_event"),
    ("post", "/v1/event"), ("get", "/stats"), ("get", "/top"), ("get", "/counts"),
    ("get", "/rates"), ("get", "/sessions"), ("get", "/sessions/{user_id}"),
    ("post", "/filters"), ("get", "/filters"), ("get", "/filters/{id}"),
    ("delete", "/filters/{id}"), ("get", "/filters/{id}/matches"),
    ("get", "/filters/{id}/stream"), ("get", "/ws"), ("get", "/stream"), ("post", "/register"),
    ("delete", "/deregister"), ("get", "/clients"), ("get", "/clients/{client_id}/stream"),
    ("get", "/v1/ws/events"), ("get", "/dead-letters"), ("get", "/metrics"),
    ("get", "/openapi.json"), ("get", "/docs"), ("get", "/"),
]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def request(method, url, body=None, headers=None, read=True):
    req = urllib.request.Request(url, data=body, method=method.upper(), headers=headers or {})
    try:
        resp = urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        resp = e
    ctype = resp.headers.get("content-type", "")
    data = resp.read() if read else resp.read(1)
    status = resp.status if hasattr(resp, "status") else resp.code
    resp.close()
    return status, ctype, data


def schema_of(doc, op, status):
    r = op.get("responses", {}).get(str(status))
    if not r:
        return None
    content = r.get("content", {}).get("application/json")
    return content and content.get("schema")


def validator(doc, schema):
    # OpenAPI 3.1 schemas are JSON Schema 2020-12; refs point into the document's components.
    root = dict(schema)
    root["components"] = doc.get("components", {})
    return jsonschema.Draft202012Validator(root)


def properties(doc, schema, seen=None):
    """Every property name a schema describes (following $ref and allOf)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return properties(doc, doc["components"]["schemas"][name])
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= properties(doc, part)
    for part in schema.get("oneOf", []) + schema.get("anyOf", []):
        names |= properties(doc, part)
    return names


def check_description(base, params):
    status, _, data = request("get", base + "/openapi.json")
    doc = json.loads(data)
    validate(doc)
    print(f"ok: /openapi.json is valid OpenAPI {doc['openapi']} with {len(doc['paths'])} paths")
    described = {(m, p) for p, item in doc["paths"].items() for m in item}
    for m, p in CONTRACT:
        if (m, p) not in described:
            fail(f"{m.upper()} {p} is not described")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            url = base + path
            if method == "delete":
                # A delete that needs no body would really delete: aim it at nothing.
                url = url.replace("{id}", "no-such-filter")
            for name, value in params.items():
                url = url.replace("{" + name + "}", value)
            if path == "/ws":
                url += "?filter=" + params["id"]
            streams = any(
                "text/event-stream" in r.get("content", {}) for r in op["responses"].values()
            )
            websocket = "101" in op["responses"]
            if method == "get" and not websocket:
                st, ctype, body = request(method, url, read=not streams)
                if st != 200:
                    fail(f"GET {path} answered {st}: {body[:200]!r}")
                    continue
                if streams:
                    if not ctype.startswith("text/event-stream"):
                        fail(f"GET {path} is a stream but answered {ctype}")
                    continue
                schema = schema_of(doc, op, 200)
                if schema is None:
                    continue
                value = json.loads(body)
                errors = list(validator(doc, schema).iter_errors(value))
                for e in errors[:3]:
                    fail(f"GET {path}: {e.message} at {list(e.absolute_path)}")
                if isinstance(value, dict) and path != "/openapi.json":
                    extra = set(value) - properties(doc, schema)
                    if extra:
                        fail(f"GET {path} answers undescribed fields {sorted(extra)}")
                if not errors:
                    print(f"ok: GET {path} answers as described")
            else:
                # Writes and WebSockets without what they need: a described error, in JSON,
                # never the router's 404 or 405.
                st, ctype, body = request(method, url, body=b"", headers={"content-type": "text/plain"})
                if st in (404, 405) and b"no such route" in body or st == 405:
                    fail(f"{method.upper()} {path} is described but not routed ({st})")
                elif str(st) not in op["responses"] and st >= 400 and not any(
                    k.endswith("XX") and k[0] == str(st)[0] for k in op["responses"]
                ):
                    fail(f"{method.upper()} {path} answered {st}, which is not described")
                elif not ctype.startswith("application/json"):
                    fail(f"{method.upper()} {path} answered {st} without JSON: {body[:100]!r}")
                else:
                    print(f"ok: {method.upper()} {path} is routed and answers {st} in JSON")


def check_metrics(base):
    _, _, stats = request("get", base + "/stats")
    stats = json.loads(stats)
    _, ctype, text = request("get", base + "/metrics")
    if not ctype.startswith("text/plain"):
        fail(f"/metrics has content type {ctype}")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples.setdefault(s.name, []).append(s)

    def one(name, **labels):
        found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
        return found[0] if found else None

    accepted = one("emoflow_events_accepted_total")
    if accepted != stats["total"]:
        fail(f"emoflow_events_accepted_total {accepted} != /stats total {stats['total']}")
    for reason, n in stats["rejected"].items():
        got = one("emoflow_events_rejected_total", reason=reason)
        if got != n:
            fail(f"emoflow_events_rejected_total{{reason={reason}}} {got} != /stats {n}")
    consumed = sum(s.value for s in samples.get("emoflow_events_consumed_total", []))
    if consumed != stats["total"] + sum(stats["rejected"].values()):
        fail(f"consumed {consumed} != accepted + rejected of /stats")
    for name in [
        "emoflow_http_requests_total", "emoflow_http_request_duration_seconds_bucket",
        "emoflow_http_ingest_events_total", "emoflow_consumer_lag_messages",
        "emoflow_snapshot_age_seconds", "emoflow_view_update_latency_seconds_bucket",
        "emoflow_subscribers_connected", "emoflow_events_pushed_total",
        "emoflow_slow_clients_dropped_total", "emoflow_archive_rows_total",
        "emoflow_archive_bytes_total", "emoflow_filters",
    ]:
        if name not in samples:
            fail(f"/metrics lacks {name}")
    routes = {s.labels.get("route") for s in samples.get("emoflow_http_requests_total", [])}
    if "/stats" not in routes:
        fail(f"emoflow_http_requests_total has no route=/stats: {routes}")
    if stats["total"] <= 0 or not stats["rejected"]:
        fail("the metrics check needs accepted and rejected events to mean anything")
    print(f"ok: /metrics parses ({len(families)} families) and agrees with /stats "
          f"(total {stats['total']}, rejected {stats['rejected']})")


def main():
    base, params = sys.argv[1].rstrip("/"), json.loads(sys.argv[2])
    check_metrics(base)
    check_description(base, params)
    if failures:
        print(f"{len(failures)} checks failed")
        sys.exit(1)
    print("all API checks passed")


if __name__ == "__main__":
    main()
