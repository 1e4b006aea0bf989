#!/usr/bin/env python3
"""Soak benchmark: aether under a steady mixed load for a long time, to show whether memory and
handles stay flat. Publishers (looping the 720p30 2.5 Mbps source of live_ingest.py, ladder off,
thumbnails and recording on) and chat (bench/chatload: subscribers in one room, one publisher
at a steady rate) run together for the whole window; every `--every` seconds the server's RSS,
open files and threads are sampled and printed as a table row. At the end: the RSS slope after
the warm-up (least squares, MB per minute), messages lost, publishers still up.

    python3 bench/soak.py                                  # 30 min, 5 publishers, 5,000 subscribers x 20 msgs/s
    python3 bench/soak.py --minutes 5 --publishers 2 --subscribers 1000

Needs ffmpeg, GStreamer and the release builds of aether and chatload (made if missing).
Loopback only; every process is stopped at the end.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_ingest import BINARY, ROOT, publish, rss_mb, serve, source_flv, stop  # noqa: E402
from chat_fanout import CHATLOAD, raise_file_limit  # noqa: E402


def rss_kinds(pid):
    """(anonymous, file-backed) resident MB: heap growth shows in the first, mapped files in the
    second."""
    kinds = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                kinds[line.split(":")[0]] = int(line.split()[1]) / 1024
    return kinds.get("RssAnon", 0.0), kinds.get("RssFile", 0.0)


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def slope(points):
    """Least-squares slope of (minute, MB) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def server_pid(wrapper):
    """The aether process under a wrapper (heaptrack runs it as a child)."""
    for _ in range(100):
        out = subprocess.run(["pgrep", "-P", str(wrapper), "-f", "aether"], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.1)
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--publishers", type=int, default=5)
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=20.0, help="chat messages per second")
    parser.add_argument("--every", type=int, default=30, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=5, help="minutes left out of the slope")
    parser.add_argument("--wrap", default="", help="a command to run the server under, e.g. 'heaptrack -o /tmp/soak' "
                        "(then RSS is sampled from the wrapper's child)")
    args = parser.parse_args()
    raise_file_limit()
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "aether", "-p", "chatload"], cwd=ROOT, check=True)
    source = source_flv()
    seconds = int(args.minutes * 60)
    with tempfile.TemporaryDirectory(prefix="aether-soak-") as work:
        env = dict(os.environ, AETHER_DATA_DIR=work, AETHER_LOG__LEVEL="warn,aether::app=info",
                   AETHER_TRANSCODE__ENABLED="false",
                   AETHER_CHAT__MESSAGES_PER_SECOND="100000", AETHER_CHAT__USER_MESSAGES_PER_SECOND="100000",
                   AETHER_CHAT__MAX_CONNECTIONS_PER_IP="100000", AETHER_CHAT__JOINS_PER_SECOND="100000")
        env.pop("AETHER_DATABASE__URL", None)
        subprocess.run([BINARY, "admin", "create", "--username", "soak", "--email", "soak@example.com", "--password-stdin"],
                       input=b"benchmark password\n", env=env, check=True, stdout=subprocess.DEVNULL)
        keys = []
        # The chat room is channel soak_0, which exists even without publishers.
        for i in range(max(args.publishers, 1)):
            out = subprocess.run([BINARY, "channel", "create", f"soak_{i}", "--owner", "soak"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            keys.append(re.search(r"stream key \(shown once\): (\S+)", out).group(1))
        server, http, rtmp = serve(env, pin=shlex.split(args.wrap))
        request = urllib.request.Request(f"http://{http}/api/v1/auth/login", method="POST",
                                         data=json.dumps({"login": "soak", "password": "benchmark password"}).encode(),
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request) as reply:
            token = json.load(reply)["token"]
        publishers = [publish(f"rtmp://{rtmp}/live/{key}", source) for key in keys[:args.publishers]]
        chat = None if args.subscribers == 0 else subprocess.Popen([CHATLOAD, "--protocol", "aether", "--addr", http, "--room", "soak_0", "--token", token,
                                 "--subscribers", str(args.subscribers), "--publishers", "1", "--rate", str(args.rate),
                                 "--seconds", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pid = server_pid(server.pid) if args.wrap else server.pid
        start = time.time()
        samples = []
        print("| minute | RSS MB | anon MB | file MB | open files | threads | publishers up |")
        print("|---|---|---|---|---|---|---|")
        try:
            while time.time() - start < seconds:
                time.sleep(args.every)
                minute = (time.time() - start) / 60
                row = (minute, rss_mb(pid), open_files(pid), threads(pid), sum(p.poll() is None for p in publishers))
                samples.append(row)
                anon, file = rss_kinds(pid)
                print(f"| {row[0]:.1f} | {row[1]:.1f} | {anon:.1f} | {file:.1f} | {row[2]} | {row[3]} | "
                      f"{row[4]}/{len(publishers)} |", flush=True)
            out = chat.communicate(timeout=120)[0] if chat else ""
        finally:
            stop(publishers)
            if chat and chat.poll() is None:
                chat.kill()
            stop([server])
    result = next((line for line in out.splitlines() if line.startswith("RESULT")), "RESULT none")
    settled = [(m, rss) for m, rss, *_ in samples if m >= args.warmup]
    print(f"\nRSS slope after {args.warmup:g} min: {slope(settled):+.2f} MB/min "
          f"({settled[0][1]:.1f} -> {settled[-1][1]:.1f} MB)" if settled else "\nno samples after the warm-up")
    print(f"open files {samples[0][2]} -> {samples[-1][2]}, threads {samples[0][3]} -> {samples[-1][3]}")
    print(f"chat: {result}")


if __name__ == "__main__":
    main()
