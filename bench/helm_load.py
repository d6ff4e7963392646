#!/usr/bin/env python3
"""Load a binaryrepo Helm repository with chart versions and time index.yaml.

Used by bench/helm.sh. Charts are generated in memory (the same Chart.yaml shape as the
integration tests: description, keywords, maintainers, dependencies, annotations) and
uploaded with PUT /<repo>/<name>-<version>.tgz over keep-alive connections from a few
threads. Then, against 127.0.0.1 only:

  * cold: the first GET of index.yaml after all uploads (catalog load + full render)
  * after one upload: upload one more version, then GET index.yaml (re-render), ROUNDS times
  * cached: GET index.yaml again (plain and Accept-Encoding: gzip), ROUNDS times each
  * server RSS (VmRSS, VmHWM) from /proc/PID/status

Prints one JSON object on stdout.
"""

import gzip
import http.client
import io
import json
import statistics
import sys
import tarfile
import threading
import time

CHART_YAML = """apiVersion: v2
name: {name}
version: {version}
appVersion: "1.25.3"
description: |
  Benchmark chart {name}.
  Second line of the description.
type: application
keywords: [web, http]
home: https://charts.example.com/{name}
sources: [https://git.example.com/{name}]
maintainers:
  - name: Ada Lovelace
    email: ada@example.com
icon: https://charts.example.com/{name}/icon.png
kubeVersion: ">=1.22.0-0"
annotations:
  category: Infrastructure
dependencies:
  - name: common
    version: 2.x.x
    repository: https://charts.example.com/stable
  - name: redis
    version: "~17.0"
    repository: https://charts.example.com/stable
    condition: redis.enabled
"""


def package(name, version):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for path, text in (
            (f"{name}/Chart.yaml", CHART_YAML.format(name=name, version=version)),
            (f"{name}/values.yaml", f"replicaCount: 1\nversion: {version}\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload(host, port, repo, items, errors):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    for name, version in items:
        body = package(name, version)
        conn.request("PUT", f"/{repo}/{name}-{version}.tgz", body=body)
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            errors.append(f"{name}-{version}: {response.status}")
            return


def get_index(host, port, repo, gzip_ok):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    start = time.perf_counter()
    conn.request("GET", f"/{repo}/index.yaml", headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - start
    if response.status != 200:
        sys.exit(f"GET index.yaml: {response.status}")
    conn.close()
    return elapsed, body


def rss(pid):
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) // 1024
    return values


def main():
    host, port, repo, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    charts, versions, rounds, threads = (int(a) for a in sys.argv[5:9])
    items = [(f"chart{c:03d}", f"1.{v}.0") for c in range(charts) for v in range(versions)]
    errors = []
    started = time.perf_counter()
    workers = [
        threading.Thread(target=upload, args=(host, port, repo, items[i::threads], errors)) for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        sys.exit(f"uploads failed: {errors[:5]}")
    upload_seconds = time.perf_counter() - started
    rss_after_upload = rss(pid)

    cold, body = get_index(host, port, repo, False)
    listed = body.count(b"\n  - apiVersion: ")
    if listed != len(items):
        sys.exit(f"index.yaml lists {listed} versions, expected {len(items)}")

    after_upload = []
    for r in range(rounds):
        upload(host, port, repo, [("chart000", f"2.{r}.0")], errors)
        if errors:
            sys.exit(f"upload failed: {errors}")
        after_upload.append(get_index(host, port, repo, False)[0])

    cached_plain = [get_index(host, port, repo, False) for _ in range(rounds)]
    get_index(host, port, repo, True)  # the first gzip request compresses once
    cached_gzip = [get_index(host, port, repo, True) for _ in range(rounds)]
    plain_size = len(cached_plain[-1][1])
    gzip_size = len(cached_gzip[-1][1])
    if gzip.decompress(cached_gzip[-1][1]) != cached_plain[-1][1]:
        sys.exit("gzip body does not match the plain body")

    ms = lambda xs: round(statistics.median(xs) * 1000, 1)
    print(json.dumps({
        "versions": len(items) + rounds,
        "uploads_per_s": round(len(items) / upload_seconds),
        "cold_index_ms": round(cold * 1000, 1),
        "after_one_upload_ms": ms(after_upload),
        "after_one_upload_max_ms": round(max(after_upload) * 1000, 1),
        "cached_plain_ms": ms([t for t, _ in cached_plain]),
        "cached_gzip_ms": ms([t for t, _ in cached_gzip]),
        "plain_bytes": plain_size,
        "gzip_bytes": gzip_size,
        "rss_after_upload_mib": rss_after_upload.get("VmRSS"),
        "rss_mib": rss(pid).get("VmRSS"),
        "peak_rss_mib": rss(pid).get("VmHWM"),
    }))


if __name__ == "__main__":
    main()
