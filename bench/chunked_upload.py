#!/usr/bin/env python3
"""Chunked blob upload over raw HTTP (OCI distribution-spec "push a blob in chunks").

    chunked_upload.py HOST:PORT NAME FILE DIGEST [CHUNK_MIB]

POST /v2/NAME/blobs/uploads/, then one PATCH per CHUNK_MIB MiB chunk (Content-Range,
Content-Length, following the Location each time), then PUT <location>&digest=DIGEST.
Everything goes over one keep-alive connection (http.client, stdlib only). Prints
"seconds bytes" on success; exits 1 with a message on any unexpected status.
"""
import http.client
import sys
import time
import urllib.parse


def fail(msg):
    print(f"chunked_upload: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) not in (5, 6):
        fail(__doc__.strip().splitlines()[2].strip())
    hostport, name, path, digest = sys.argv[1:5]
    chunk = int(float(sys.argv[5]) * (1 << 20)) if len(sys.argv) == 6 else 5 << 20
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=300)

    def request(method, url, body=None, headers=None):
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp, data

    def relative(location):
        # Location may be absolute (http://host/v2/...) or a path; keep path + query.
        u = urllib.parse.urlsplit(location)
        return u.path + (f"?{u.query}" if u.query else "")

    start = time.perf_counter()
    resp, data = request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    if resp.status != 202:
        fail(f"POST: {resp.status} {data[:200]!r}")
    location = relative(resp.getheader("Location"))
    offset = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                break
            end = offset + len(buf) - 1
            resp, data = request("PATCH", location, body=buf, headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(buf)),
                "Content-Range": f"{offset}-{end}",
            })
            if resp.status != 202:
                fail(f"PATCH {offset}-{end}: {resp.status} {data[:200]!r}")
            location = relative(resp.getheader("Location"))
            offset = end + 1
    sep = "&" if "?" in location else "?"
    resp, data = request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}",
                         headers={"Content-Length": "0"})
    if resp.status != 201:
        fail(f"PUT: {resp.status} {data[:200]!r}")
    elapsed = time.perf_counter() - start
    resp, _ = request("HEAD", f"/v2/{name}/blobs/{digest}")
    if resp.status != 200:
        fail(f"HEAD after upload: {resp.status}")
    print(f"{elapsed:.6f} {offset}")


if __name__ == "__main__":
    main()
