#!/usr/bin/env python3
"""Time to first *body* byte and total time of one GET.

    ttfb.py URL [ACCEPT]

Prints "status headers_s first_body_byte_s total_s bytes sha256hex". The body is read in
1 MiB pieces and hashed (hashlib, OpenSSL-backed) after the first byte is timed.
"""
import hashlib
import http.client
import sys
import time
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    headers = {"Accept": sys.argv[2]} if len(sys.argv) > 2 else {}
    path = url.path + (f"?{url.query}" if url.query else "")
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=600)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    t_headers = time.perf_counter() - t0
    h = hashlib.sha256()
    first = resp.read(1)
    t_first = time.perf_counter() - t0
    h.update(first)
    n = len(first)
    while True:
        buf = resp.read(1 << 20)
        if not buf:
            break
        h.update(buf)
        n += len(buf)
    t_total = time.perf_counter() - t0
    print(f"{resp.status} {t_headers:.6f} {t_first:.6f} {t_total:.6f} {n} {h.hexdigest()}")


if __name__ == "__main__":
    main()
