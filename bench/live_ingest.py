#!/usr/bin/env python3
"""Live ingest benchmark: aether beside nginx-rtmp, in one run, on loopback.

For each K, K ffmpeg processes publish the same pre-encoded FLV (720p30 H.264 2.5 Mbps with
B-frames, 2 s GOP, AAC 48 kHz stereo) with `-re -c copy`, first to aether (CMAF + LL-HLS parts
in memory), then to nginx-rtmp (`hls on`, MPEG-TS segments on disk). aether runs as a user runs
it: GStreamer present, thumbnails and recording on, the default config but for the ABR ladder,
which is off (nginx-rtmp does not transcode). Reported per server: CPU seconds per
stream-minute (utime+stime of the server process over the window, divided by K x minutes), peak
RSS, and RSS per stream over the server's idle RSS. For aether also the live-edge lag (when a
part becomes available: now minus the wall-clock end of that part, from
EXT-X-PROGRAM-DATE-TIME) and the time from the publisher's first keyframe at ingest to the first
playable part. Then the ABR case: the ladder on, K = 1..3 1080p streams, beside ffmpeg making
the same ladder (bench/ladder.py's measurement).

    python3 bench/live_ingest.py                      # K = 1, 10, 50, 100; 30 s windows; ABR K = 1, 2, 3
    python3 bench/live_ingest.py --streams 1,10 --seconds 60 --abr ""

Needs: ffmpeg, nginx with libnginx-mod-rtmp (scripts/install-deps.sh bench), a release build
(made if missing). Only loopback addresses are used; every process is stopped at the end.
"""

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "aether")
CACHE = os.path.join(tempfile.gettempdir(), "aether-bench-cache")
TICK = os.sysconf("SC_CLK_TCK")
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def source_flv(width=1280, height=720, kbps=2500):
    """The pre-encoded input (30 fps, 60 s, 2 s GOPs with B-frames), made once and cached outside
    the repo."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"source-{height}p30.flv")
    if not os.path.exists(path):
        print(f"encoding the 60 s {height}p source once ...", flush=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
             "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{2 * kbps}k",
             "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k", "-f", "flv", path],
            check=True)
    return path


def publish(url, source):
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", source, "-c", "copy", "-f", "flv", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(processes):
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def serve(env, pin=()):
    """Starts `aether serve` on loopback with `env` (under `pin`, e.g. `taskset -c 0`); returns
    (process, http address, rtmp address)."""
    process = subprocess.Popen([*pin, BINARY, "serve", "--http-listen", "127.0.0.1:0", "--rtmp-listen", "127.0.0.1:0", "--webrtc-listen", "127.0.0.1:0"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        match = re.search(r"listening http=(\S+) rtmp=(\S+)", line)
        if match:
            break
    else:
        sys.exit("aether did not start")
    # Keep draining the log so the server never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    return process, match.group(1), match.group(2)


class Aether:
    name = "aether"

    def __init__(self, workdir, streams):
        self.data = os.path.join(workdir, "aether")
        os.makedirs(self.data)
        # As a user runs it, but for the ladder (nginx-rtmp does not transcode): thumbnails (from
        # single keyframes) and recording stay on.
        env = dict(os.environ, AETHER_DATA_DIR=self.data, AETHER_LOG__LEVEL="warn,aether::app=info",
                   AETHER_TRANSCODE__ENABLED="false")
        env.pop("AETHER_DATABASE__URL", None)
        self.env = env
        subprocess.run([BINARY, "admin", "create", "--username", "bench", "--email", "bench@example.com", "--password-stdin"],
                       input=b"benchmark password\n", env=env, check=True, stdout=subprocess.DEVNULL)
        self.keys = []
        for i in range(streams):
            out = subprocess.run([BINARY, "channel", "create", f"bench_{i}", "--owner", "bench"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            self.keys.append(re.search(r"stream key \(shown once\): (\S+)", out).group(1))
        self.process, self.http, self.rtmp = serve(env)

    def url(self, i):
        return f"rtmp://{self.rtmp}/live/{self.keys[i]}"

    def close(self):
        stop([self.process])


class NginxRtmp:
    name = "nginx-rtmp"

    def __init__(self, workdir, streams):
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "hls"))
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""load_module {NGINX_RTMP_MODULE};
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
master_process off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {self.dir}/hls;
            hls_fragment 2s;
            hls_playlist_length 12s;
        }}
    }}
}}
""")
        self.process = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def url(self, i):
        return f"rtmp://127.0.0.1:{self.port}/live/stream{i}"

    def close(self):
        stop([self.process])


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def parse_pdt(value):
    """Seconds since the epoch from 2026-11-22T04:05:06.789Z."""
    import calendar
    date, clock = value.rstrip("Z").split("T")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = clock.split(":")
    return calendar.timegm((y, mo, d, int(h), int(mi), 0)) + float(s)


def part_end(playlist, part_uri):
    """Wall-clock end of `part_uri`: the PDT before it plus the parts from there to it."""
    pdt, elapsed = None, 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt, elapsed = parse_pdt(line.split(":", 1)[1]), 0.0
        elif line.startswith("#EXT-X-PART:"):
            elapsed += float(re.search(r"DURATION=([\d.]+)", line).group(1))
            if f'URI="{part_uri}"' in line:
                return pdt + elapsed
        elif line.startswith("#EXTINF:") and pdt is not None:
            pass
    return None


def live_edge_lags(http, channel, samples):
    """Blocking-reloads each next part; lag = arrival minus the part's wall-clock end."""
    base = f"http://{http}/live/{channel}/source/index.m3u8"
    playlist = fetch(base)
    lags = []
    for _ in range(samples):
        hinted = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', playlist)
        if hinted:
            hint = hinted.group(1)
        else:
            # Read just as a segment closed (no part of the next yet, so no hint): its first part.
            prefix, last = re.findall(r"^(\S*/)seg-(\d+)\.m4s$", playlist, re.M)[-1]
            hint = f"{prefix}part-{int(last) + 1}-0.m4s"
        msn, part = (int(x) for x in re.search(r"part-(\d+)-(\d+)\.m4s", hint).groups())
        playlist = fetch(f"{base}?_HLS_msn={msn}&_HLS_part={part}")
        arrived = time.time()
        end = part_end(playlist, hint)
        if end is None:
            # The hinted part became the first part of the next segment; follow the new hint.
            continue
        lags.append((arrived - end) * 1000)
    return lags


def first_part_latency(server, source):
    """Publishes on a fresh channel; returns how long after the first PDT (the ingest wall clock
    at the publisher's first keyframe) (1) the first part is listed to a blocking reload for it
    (an LL-HLS player already on the playlist) and (2) a plain playlist request made at once
    answers (a player joining: it is held until the first segment is complete, so that every
    player can start from it)."""
    publisher = publish(server.url(0), source)
    url = f"http://{server.http}/live/bench_0/source/index.m3u8"
    deadline = time.time() + 20

    def first(query):
        while time.time() < deadline:
            try:
                playlist = fetch(url + query, timeout=10)
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                time.sleep(0.01)
                continue
            if "#EXT-X-PART:" in playlist:
                arrived = time.time()
                pdt = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", playlist).group(1)
                return (arrived - parse_pdt(pdt)) * 1000
            time.sleep(0.01)
        return None

    try:
        return first("?_HLS_msn=0&_HLS_part=0"), first("")
    finally:
        stop([publisher])
        time.sleep(1.5)


def measure(server, streams, seconds, source, warmup=6):
    idle = rss_mb(server.process.pid)
    publishers = [publish(server.url(i), source) for i in range(streams)]
    try:
        time.sleep(warmup)
        alive = sum(p.poll() is None for p in publishers)
        pid = server.process.pid
        start_cpu, start = cpu_seconds(pid), time.time()
        peak = rss_mb(pid)
        while time.time() - start < seconds:
            peak = max(peak, rss_mb(pid))
            time.sleep(0.5)
        used = cpu_seconds(pid) - start_cpu
        minutes = (time.time() - start) / 60
        # After the CPU window, so that the probe's requests are not counted as ingest work.
        lags = live_edge_lags(server.http, "bench_0", 20) if isinstance(server, Aether) else []
        return {"cpu": used / (streams * minutes), "rss": peak, "per_stream": (peak - idle) / streams, "idle": idle,
                "alive": alive, "lags": lags}
    finally:
        stop(publishers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,10,50,100", help="comma-separated K values")
    parser.add_argument("--abr", default="1,2,3", help="1080p stream counts for the ladder case beside ffmpeg; empty: skip")
    parser.add_argument("--seconds", type=int, default=30, help="measurement window per K and server")
    args = parser.parse_args()
    counts = [int(k) for k in args.streams.split(",")]
    for tool in ("ffmpeg", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh bench")
    if not os.path.exists(NGINX_RTMP_MODULE):
        sys.exit("libnginx-mod-rtmp is missing: scripts/install-deps.sh bench")
    subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "aether"], cwd=ROOT, check=True)
    source = source_flv()
    rows = []
    with tempfile.TemporaryDirectory(prefix="aether-bench-") as work:
        first = None
        for k in counts:
            os.makedirs(os.path.join(work, f"k{k}"))
            aether = Aether(os.path.join(work, f"k{k}"), k)
            try:
                if first is None:
                    first = first_part_latency(aether, source)
                a = measure(aether, k, args.seconds, source)
            finally:
                aether.close()
            nginx = NginxRtmp(os.path.join(work, f"k{k}"), k)
            try:
                n = measure(nginx, k, args.seconds, source)
            finally:
                nginx.close()
            rows.append((k, a, n))
            print(f"K={k}: aether {a['cpu']:.3f} s/stream-min, {a['rss']:.1f} MB; nginx-rtmp {n['cpu']:.3f} s/stream-min, "
                  f"{n['rss']:.1f} MB", flush=True)
    print()
    print("| K | aether CPU s/stream-min | nginx-rtmp CPU s/stream-min | aether/nginx | aether RSS MB (per stream) "
          "| nginx-rtmp RSS MB (per stream) | publishers up (a/n) |")
    print("|---|---|---|---|---|---|---|")
    for k, a, n in rows:
        ratio = a["cpu"] / n["cpu"] if n["cpu"] > 0 else float("inf")
        print(f"| {k} | {a['cpu']:.3f} | {n['cpu']:.3f} | {ratio:.2f} | {a['rss']:.1f} ({a['per_stream']:.2f}) "
              f"| {n['rss']:.1f} ({n['per_stream']:.2f}) | {a['alive']}/{n['alive']} |")
    print(f"(per stream: peak RSS minus the idle server's, {rows[0][1]['idle']:.1f} MB for aether, over K; "
          "goals: CPU <= 1.0x nginx-rtmp at every K, <= 8 MB per stream at K = 100)")
    lags = [lag for _, a, _ in rows for lag in a["lags"]]
    if lags:
        lags.sort()
        p95 = lags[int(len(lags) * 0.95) - 1] if len(lags) >= 20 else lags[-1]
        print(f"\naether live-edge lag when a part appears: median {statistics.median(lags):.0f} ms, p95 {p95:.0f} ms "
              f"({len(lags)} parts; goal < 100 ms)")
    if first is not None:
        part, joined = first
        print(f"aether first part after the first keyframe at ingest: {part:.0f} ms to a blocking reload (goal < 1500 ms); "
              f"a player joining at once gets its playlist after {joined:.0f} ms (held for the first complete segment)")
    if args.abr:
        abr([int(k) for k in args.abr.split(",")], args.seconds)


def abr(counts, seconds):
    """The ladder on: K 1080p streams through aether, and one through ffmpeg making the same
    ladder (bench/ladder.py's runs)."""
    import ladder
    source = ladder.source_1080p()
    minutes = seconds / 60
    with tempfile.TemporaryDirectory(prefix="aether-abr-bench-") as work:
        theirs = ladder.run_ffmpeg(work, source, seconds) / minutes
        print("\nABR: 1080p30 6 Mbps -> 720p + 480p + 360p (x264 veryfast), real time, beside ffmpeg (one stream: "
              f"{theirs:.1f} CPU s per minute of input)")
        print("| streams | aether CPU s per stream-minute | aether / ffmpeg | renditions per stream | rungs dropped |")
        print("|---|---|---|---|---|")
        for k in counts:
            cpu, renditions, dropped = ladder.run_aether(work, source, k, seconds)
            ours = cpu / minutes / k
            print(f"| {k} | {ours:.1f} | {ours / theirs:.2f} | {min(renditions)}-{max(renditions)} | {dropped} |", flush=True)


if __name__ == "__main__":
    main()
