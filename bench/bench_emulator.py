"""Emulator benchmark: requests/second `groqsim serve` sustains, and its latency, on loopback.

    python bench/bench_emulator.py                    # defaults: 20 000 requests over 32 connections
    python bench/bench_emulator.py --requests 5000 --connections 16 --json out.json

Starts ``python -m sim serve scenarios/emulator_bench.toml`` (limits far above the load, service delays
below a microsecond) on a free 127.0.0.1 port in a child process, then drives it from this process with a
minimal keep-alive HTTP/1.1 client on asyncio streams (no SDK: the client must not be the bottleneck on a
2-core machine where client and server share the cores).  Two phases, each bounded in count and time:

* throughput: ``--requests`` chat completions over ``--connections`` concurrent keep-alive connections;
* latency: ``--latency-requests`` sequential requests on one connection; the round trip of an otherwise
  idle server is an upper bound on its overhead per request (it includes the client's own cost).

It also reads the server process's CPU time (/proc) over the throughput phase: CPU milliseconds per request,
and so the rate one core would sustain, a figure that does not depend on what else the machine is running.

The server's JSONL log goes to a temporary directory (it is part of the cost measured).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"model": "openai/gpt-oss-20b", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "Say hello in five words."}]}).encode()


def _request(host: str, port: int) -> bytes:
    return (f"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer bench\r\nContent-Length: {len(BODY)}\r\n\r\n").encode() + BODY


async def _worker(host, port, n, deadline, latencies, statuses):
    reader, writer = await asyncio.open_connection(host, port)
    req = _request(host, port)
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses.append(int(head[9:12]))
    finally:
        writer.close()


async def _phase(host, port, total, connections, limit_s):
    latencies, statuses = [], []
    deadline = time.monotonic() + limit_s
    per = [total // connections + (k < total % connections) for k in range(connections)]
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_worker(host, port, n, deadline, latencies, statuses) for n in per if n))
    elapsed, client_cpu = time.perf_counter() - t0, time.process_time() - c0
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "seconds": round(elapsed, 3), "req_per_s": round(len(lat) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "non_200": int(sum(s != 200 for s in statuses)),
            "client_cpu_ms_per_request": round(client_cpu / max(len(lat), 1) * 1000, 4)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--latency-requests", type=int, default=2_000)
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase at most")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    host, port = "127.0.0.1", _free_port()
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen([sys.executable, "-m", "sim", "serve", str(ROOT / "scenarios/emulator_bench.toml"),
                                   "--host", host, "--port", str(port), "--out", out],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection((host, port), timeout=0.2).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start: {server.stderr.read().decode()}") from None
                    time.sleep(0.1)
            asyncio.run(_phase(host, port, 500, 8, 10))  # warm-up
            cpu0 = _cpu_seconds(server.pid)
            thr = asyncio.run(_phase(host, port, args.requests, args.connections, args.time_limit))
            thr["server_cpu_ms_per_request"] = round((_cpu_seconds(server.pid) - cpu0) / thr["requests"] * 1000, 4)
            lat = asyncio.run(_phase(host, port, args.latency_requests, 1, args.time_limit))
        finally:
            server.terminate()
            server.wait(30)
        with open(Path(out) / "requests.jsonl") as f:
            logged = sum(1 for _ in f)
    figures = {"throughput": {**thr, "connections": args.connections}, "sequential": lat,
               "logged_lines": logged, "cores": os.cpu_count(), "load_average": os.getloadavg()}
    cpu = thr["server_cpu_ms_per_request"]
    print(f"throughput: {thr['req_per_s']:.0f} req/s over {args.connections} connections "
          f"({thr['requests']} requests in {thr['seconds']} s; p50 {thr['p50_ms']} ms, p99 {thr['p99_ms']} ms; "
          f"non-200: {thr['non_200']})")
    print(f"sequential (1 connection): {lat['req_per_s']:.0f} req/s; round trip p50 {lat['p50_ms']} ms, "
          f"p99 {lat['p99_ms']} ms (upper bound on server overhead)")
    print(f"server CPU per request: {cpu} ms, i.e. {1000 / cpu:.0f} req/s per fully available core; load client "
          f"CPU per request: {thr['client_cpu_ms_per_request']} ms "
          f"(machine load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"server log lines: {logged}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
