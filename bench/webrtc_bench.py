#!/usr/bin/env python3
"""WebRTC viewers per core: one 2.5 Mbps 720p30 stream (H.264 without B-frames, so WHEP viewers
get the source as it came, and AAC made into Opus once), published over RTMP; N WHEP viewers from
the load client (bench/whepload: str0m, completes ICE/DTLS/SRTP, receives, depacketizes and
answers RTCP, no decoding). The server is pinned to core 0, the publisher and the load client to
core 1. Reported per N: the server's CPU (share of its one core, and per viewer), what was
delivered, packets lost (sequence gaps that NACK retransmission did not fill), RSS and RSS per
viewer.

No peer is run beside it: Janus's streaming plugin speaks its own HTTP/WebSocket API, not WHEP,
so the load client cannot drive it without a second client; the figures are absolute.

    python3 bench/webrtc_bench.py [--viewers 100,250,500] [--seconds 10]

Needs: scripts/install-deps.sh test (ffmpeg), and builds target/release/{aether,whepload}.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_ingest import BINARY, CACHE, ROOT, cpu_seconds, rss_mb, serve, stop  # noqa: E402

LOAD = os.path.join(ROOT, "target", "release", "whepload")


def source_flv():
    """60 s of 720p30 at 2.5 Mbps without B-frames (as WebRTC publishers send), cached."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "source-720p30-nobf.flv")
    if not os.path.exists(path):
        print("encoding the 60 s 720p source (no B-frames) once ...", flush=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0",
             "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k",
             "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k", "-f", "flv", path],
            check=True)
    return path


def start_server(data):
    env = dict(os.environ, AETHER_DATA_DIR=data, AETHER_LOG__LEVEL="warn,aether::app=info",
               AETHER_TRANSCODE__ENABLED="false", AETHER_RECORDING__ENABLED="false",
               AETHER_WEBRTC__VIEWER_QUEUE="4096")
    env.pop("AETHER_DATABASE__URL", None)
    subprocess.run([BINARY, "admin", "create", "--username", "bench", "--email", "bench@example.com", "--password-stdin"],
                   input=b"benchmark password\n", env=env, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([BINARY, "channel", "create", "bench_rtc", "--owner", "bench"], env=env, check=True,
                         capture_output=True, text=True).stdout
    key = re.search(r"stream key \(shown once\): (\S+)", out).group(1)
    process, http, rtmp = serve(env, pin=("taskset", "-c", "0"))
    return process, http, rtmp, key


def live(http):
    try:
        with urllib.request.urlopen(f"http://{http}/api/v1/channels/bench_rtc", timeout=5) as response:
            return json.load(response)["live"]
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", default="100,250,500")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per step")
    args = parser.parse_args()
    steps = [int(n) for n in args.viewers.split(",")]
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "aether", "-p", "whepload"], cwd=ROOT, check=True)
    source = source_flv()
    with tempfile.TemporaryDirectory() as work:
        server, http, rtmp, key = start_server(os.path.join(work, "data"))
        publisher = subprocess.Popen(
            ["taskset", "-c", "1", "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", source, "-c", "copy", "-f", "flv", f"rtmp://{rtmp}/live/{key}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 20
            while not live(http):
                if time.time() > deadline:
                    sys.exit("the stream did not go live")
                time.sleep(0.2)
            time.sleep(3)
            before = cpu_seconds(server.pid)
            time.sleep(args.seconds)
            idle_cpu = (cpu_seconds(server.pid) - before) / args.seconds
            idle_rss = rss_mb(server.pid)
            rows = []
            for n in steps:
                ramp = n * 0.005 + 3
                total = int(ramp + args.seconds + 2)
                load = subprocess.Popen(["taskset", "-c", "1", LOAD, f"http://{http}", "bench_rtc", str(n), str(total)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(ramp)
                before = cpu_seconds(server.pid)
                started = time.time()
                time.sleep(args.seconds)
                cpu = (cpu_seconds(server.pid) - before) / (time.time() - started)
                rss = rss_mb(server.pid)
                out, err = load.communicate(timeout=total + 60)
                try:
                    result = json.loads(out.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    sys.exit(f"whepload failed: {err[-2000:]}")
                rows.append((n, cpu, rss, result))
                time.sleep(3)
        finally:
            stop([publisher, server])
    print()
    print(f"idle (publisher, no viewers): server CPU {idle_cpu * 100:.1f}% of a core, RSS {idle_rss:.1f} MB")
    print("| viewers | connected | server CPU (% of 1 core) | CPU per viewer (ms/s) | delivered (Mbit/s) | lost | RSS (MB) | RSS per viewer (KB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, cpu, rss, result in rows:
        per_viewer = (cpu - idle_cpu) * 1000 / n
        seconds = n * 0.005 + 3 + args.seconds + 2
        mbps = result["bytes"] * 8 / seconds / 1e6
        print(f"| {n} | {result['connected']} | {cpu * 100:.1f} | {per_viewer:.2f} | {mbps:.0f} | "
              f"{result['loss_pct']:.3f}% ({result['lost']} of {result['packets'] + result['lost']}) | {rss:.1f} | "
              f"{(rss - idle_rss) * 1024 / n:.0f} |")


if __name__ == "__main__":
    main()
