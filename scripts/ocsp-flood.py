#!/usr/bin/env python3
"""Floods a fresh pkid daemon with nonce-less OCSP requests for never-issued serials and reports
its RSS growth, the CPU it spent per request, and whether the answer for an issued certificate
is still served from the cache afterwards.

    cargo build -p pkid && scripts/ocsp-flood.py [--bin target/debug/pkid] [--count 40000]

Needs openssl. The rate limit is switched off in the data directory's pkid.toml so the flood is
not refused with 429 (with it on, one client address gets at most rate_limit_per_second answers
a second, which is what bounds the CPU such a flood costs).
"""

import argparse
import http.client
import os
import secrets
import subprocess
import sys
import tempfile
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/pkid")
    ap.add_argument("--count", type=int, default=40000)
    ap.add_argument("--port", type=int, default=18480)
    a = ap.parse_args()
    pkid = os.path.abspath(a.bin)
    with tempfile.TemporaryDirectory() as d:
        run(pkid, "--data", d, "init")
        conf = os.path.join(d, "pkid.toml")
        text = open(conf).read().replace("rate_limit_per_second = 1000", "rate_limit_per_second = 0")
        open(conf, "w").write(text)
        key, csr = os.path.join(d, "leaf.key"), os.path.join(d, "leaf.csr")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-subj", "/C=VN/O=Flood/CN=Good", "-out", csr)
        pem = run(pkid, "--data", d, "cert", "issue", "--csr", csr, "--profile", "person").stdout
        cert = os.path.join(d, "leaf.crt")
        open(cert, "wb").write(pem)
        req = os.path.join(d, "req.der")
        run("openssl", "ocsp", "-issuer", os.path.join(d, "certs/issuing.crt"), "-cert", cert,
            "-no_nonce", "-reqout", req)
        good = open(req, "rb").read()
        serial = bytes.fromhex(
            run("openssl", "x509", "-in", cert, "-noout", "-serial").stdout.decode().split("=")[1].strip())
        if serial[0] & 0x80:
            serial = b"\0" + serial
        at = good.index(bytes([0x02, len(serial)]) + serial) + 2
        daemon = subprocess.Popen(
            [pkid, "--data", d, "serve", "--http", f"127.0.0.1:{a.port}", "--https", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            conn = None
            for _ in range(600):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().read() is not None:
                        break
                except OSError:
                    time.sleep(0.05)
            headers = {"Content-Type": "application/ocsp-request"}

            def post(body):
                conn.request("POST", "/ocsp", body=body, headers=headers)
                r = conn.getresponse()
                return r.status, r.read()

            first = post(good)[1]
            assert post(good)[1] == first, "the good answer is cached"
            rss_fresh = rss_bytes(daemon.pid)
            # Fill the unknown cache (4 MiB by default) and warm the allocator, so the second
            # figure is what the flood costs once the cache is at its bound.
            for _ in range(2000):
                post(good[:at] + bytes([0x11]) + secrets.token_bytes(len(serial) - 1) + good[at + len(serial):])
            rss0, cpu0, t0 = rss_bytes(daemon.pid), cpu_secs(daemon.pid), time.monotonic()
            for _ in range(a.count):
                status, _ = post(good[:at] + bytes([0x11]) + secrets.token_bytes(len(serial) - 1)
                                 + good[at + len(serial):])
                assert status == 200
            rss1, cpu1, t1 = rss_bytes(daemon.pid), cpu_secs(daemon.pid), time.monotonic()
            still = post(good)[1] == first
            print(f"{a.count} unknown serials in {t1 - t0:.1f} s: "
                  f"RSS {rss_fresh / 2**20:.1f} MiB fresh, {rss0 / 2**20:.1f} after 2000 more, "
                  f"{rss1 / 2**20:.1f} MiB after the flood "
                  f"(growth {(rss1 - rss_fresh) / 2**20:.1f} MiB in all, "
                  f"{(rss1 - rss0) / 2**20:.1f} MiB over the {a.count}), "
                  f"daemon CPU {(cpu1 - cpu0) / a.count * 1e6:.0f} us/request, "
                  f"good answer still cached: {still}")
            return 0 if still else 1
        finally:
            daemon.terminate()
            daemon.wait()


if __name__ == "__main__":
    sys.exit(main())
