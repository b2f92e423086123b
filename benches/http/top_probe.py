"""GET /top latency probe: one request every 10 ms on a new connection, for SECONDS.

Usage: python3 benches/http/top_probe.py HOST PORT SECONDS  (run beside a wrk ingest load)
"""
import http.client, time, sys
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat = []
end = time.time() + secs
while time.time() < end:
    c = http.client.HTTPConnection(host, port, timeout=5)
    t0 = time.perf_counter()
    c.request("GET", "/top")
    r = c.getresponse(); r.read()
    lat.append((time.perf_counter() - t0) * 1000)
    c.close()
    time.sleep(0.01)
lat.sort()
q = lambda p: lat[min(len(lat)-1, round((len(lat)-1)*p))]
print(f"/top n={len(lat)} p50={q(.5):.2f} p90={q(.9):.2f} p99={q(.99):.2f} max={lat[-1]:.2f} ms")
