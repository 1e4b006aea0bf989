#!/usr/bin/env python3
"""VOD and clip benchmark: clip creation time, and upload throughput to an S3 server.

1. Clip creation (copy mode). A release build of aether records broadcasts of the given lengths
   (the pre-encoded 720p30 2.5 Mbps H.264 + AAC source of bench/live_ingest.py, looped and pushed
   faster than real time with `ffmpeg -c copy`) on local storage and on s3s-fs. Then, for each
   VOD, a 60 s clip from its middle is requested through the API (`POST /api/v1/clips`) and timed
   until the API says it is ready (MP4 + HLS written to storage), several times; beside it, the
   peer: ffmpeg cutting the same 60 s from the same VOD's HLS playlist into a faststart MP4
   (`ffmpeg -ss S -i .../master.m3u8 -t 60 -c copy -movflags +faststart`), which is how servers
   without their own cutter make clips.
2. Upload throughput to s3s-fs: aether-vod's Storage (bench/storeput: segments of 1 MB and 64 MB
   objects, multipart above 16 MiB) beside boto3 uploading the same bytes with the same
   concurrency and part size.

    python3 bench/vod_clips.py                            # VODs of 10 and 120 minutes, local + s3
    python3 bench/vod_clips.py --minutes 10 --storage local --repeat 3

Needs ffmpeg, s3s-fs (scripts/install-deps.sh bench) and boto3 (pip). Loopback only; every
process is stopped and every file removed at the end (the encoded source stays cached).
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_ingest import ROOT, free_port, serve, source_flv, stop  # noqa: E402

STOREPUT = os.path.join(ROOT, "target", "release", "storeput")
BUCKET, ACCESS, SECRET = "bench", "bench-key", "bench-secret"


class S3Server:
    def __init__(self, workdir):
        self.root = tempfile.mkdtemp(prefix="s3-", dir=workdir)
        os.makedirs(os.path.join(self.root, BUCKET))
        self.port = free_port()
        self.process = subprocess.Popen(
            ["s3s-fs", "--host", "127.0.0.1", "--port", str(self.port), "--access-key", ACCESS, "--secret-key", SECRET,
             self.root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.025)
                continue
            return

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        stop([self.process])


class Aether:
    def __init__(self, workdir, s3):
        self.data = os.path.join(workdir, "aether-" + ("s3" if s3 else "local"))
        os.makedirs(self.data)
        env = dict(os.environ, AETHER_DATA_DIR=self.data, AETHER_LOG__LEVEL=os.environ.get("BENCH_AETHER_LOG", "warn,aether::app=info"))
        env.pop("AETHER_DATABASE__URL", None)
        if s3:
            env.update(AETHER_STORAGE__KIND="s3", AETHER_STORAGE__ENDPOINT=s3.endpoint, AETHER_STORAGE__BUCKET=BUCKET,
                       AETHER_STORAGE__PATH_STYLE="true", AETHER_STORAGE__ACCESS_KEY_ID=ACCESS,
                       AETHER_STORAGE__SECRET_ACCESS_KEY=SECRET)
        self.env = env
        self.process, self.http, self.rtmp = serve(env)
        body = self.api("POST", "/api/v1/auth/signup",
                        {"username": "bench", "email": "bench@example.com", "password": "benchmark password"})
        self.token = body["token"]

    def api(self, method, path, body=None):
        request = urllib.request.Request(f"http://{self.http}{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        if getattr(self, "token", None):
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def record(self, name, minutes, source, source_seconds=60):
        """Records a broadcast of `minutes`, pushed as fast as the server takes it; returns the VOD."""
        key = self.api("POST", "/api/v1/channels", {"name": name})["stream_key"]
        loops = max(1, round(minutes * 60 / source_seconds)) - 1
        started = time.monotonic()
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-stream_loop", str(loops), "-i", source,
                        "-c", "copy", "-f", "flv", f"rtmp://{self.rtmp}/live/{key}"], check=True)
        while True:
            vods = self.api("GET", f"/api/v1/channels/{name}/vods")["vods"]
            # Ready, and (segments spooled on the way uploaded) as long as the broadcast.
            if vods and vods[0]["status"] == "ready" and vods[0]["duration_ms"] >= (loops + 1) * source_seconds * 990:
                print(f"  recorded {minutes} min in {time.monotonic() - started:.0f} s "
                      f"({vods[0]['duration_ms'] / 60000:.1f} min indexed)", flush=True)
                return vods[0]
            if time.monotonic() - started > 600:
                sys.exit(f"the recording of {name} is incomplete: {vods}")
            time.sleep(0.2)

    def clip(self, vod, start_ms, seconds=60, precise=False):
        """Seconds from the request to the clip being ready (polled every 5 ms)."""
        started = time.monotonic()
        clip = self.api("POST", "/api/v1/clips", {"vod_id": vod["id"], "start_ms": start_ms,
                                                  "end_ms": start_ms + seconds * 1000, "precise": precise})
        while clip["status"] == "processing":
            time.sleep(0.005)
            clip = self.api("GET", f"/api/v1/clips/{clip['id']}")
        elapsed = time.monotonic() - started
        if clip["status"] != "ready":
            sys.exit(f"clip failed: {clip}")
        return elapsed, clip

    def close(self):
        stop([self.process])


def ffmpeg_clip(aether, vod, start_ms, workdir, seconds=60):
    out = os.path.join(workdir, "peer-clip.mp4")
    started = time.monotonic()
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                    "-headers", f"Authorization: Bearer {aether.token}\r\n",
                    "-i", f"http://{aether.http}{vod['playback_url']}", "-ss", f"{start_ms / 1000:.3f}",
                    "-t", str(seconds), "-c", "copy", "-movflags", "+faststart", out], check=True)
    elapsed = time.monotonic() - started
    os.remove(out)
    return elapsed


def clip_benchmark(workdir, storages, minutes, repeat, source):
    rows = []
    for kind in storages:
        s3 = S3Server(workdir) if kind == "s3" else None
        aether = Aether(workdir, s3)
        try:
            print(f"{kind}: recording VODs of {minutes} minutes ...", flush=True)
            vods = {m: aether.record(f"vod_{m}min", m, source) for m in minutes}
            os.sync()  # the recordings' writes are not left to compete with the clips'
            for m, vod in vods.items():
                middle = vod["duration_ms"] // 2
                ours = [aether.clip(vod, middle + i * 7_000)[0] for i in range(repeat)]
                # Frame-precise: 500 ms past a keyframe, so that the first GOP is re-encoded.
                precise = [aether.clip(vod, middle + i * 7_000 + 500, precise=True)[0] for i in range(repeat)]
                peer = [ffmpeg_clip(aether, vod, middle + i * 7_000, workdir) for i in range(min(repeat, 2))]
                rows.append((kind, m, statistics.median(ours), max(ours), statistics.median(precise),
                             statistics.median(peer)))
        finally:
            aether.close()
            if s3:
                s3.close()
    print("\n60 s clip (copy mode), request -> ready; median of", repeat)
    print("| storage | VOD length | aether copy s (max) | aether precise s | ffmpeg -c copy s | aether copy / ffmpeg |")
    print("|---|---|---|---|---|---|")
    for kind, m, ours, worst, precise, peer in rows:
        print(f"| {kind} | {m} min | {ours:.3f} ({worst:.3f}) | {precise:.3f} | {peer:.3f} | {ours / peer:.2f} |")


def boto3_put(endpoint, size, count, concurrency):
    import boto3
    from boto3.s3.transfer import TransferConfig
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
                          region_name="us-east-1",
                          config=__import__("botocore.config").config.Config(s3={"addressing_style": "path"},
                                                                             max_pool_connections=concurrency))
    data = b"\x5a" * size
    transfer = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=4)
    import io

    def put(i):
        client.upload_fileobj(io.BytesIO(data), BUCKET, f"boto3/{size}/{i}", Config=transfer)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, range(count)))
    seconds = time.monotonic() - started
    return size * count / 1e6 / seconds


def upload_benchmark(workdir):
    s3 = S3Server(workdir)
    rows = []
    try:
        for size, count, concurrency, label in [(1_000_000, 300, 4, "1 MB segments x 300"),
                                                 (64 << 20, 6, 2, "64 MiB objects x 6 (multipart)")]:
            out = subprocess.run([STOREPUT, s3.endpoint, BUCKET, ACCESS, SECRET, str(size), str(count),
                                  str(concurrency)], check=True, capture_output=True, text=True).stdout
            ours = json.loads(out)["mb_per_s"]
            theirs = boto3_put(s3.endpoint, size, count, concurrency)
            rows.append((label, concurrency, ours, theirs))
    finally:
        s3.close()
    print("\nUpload to s3s-fs on loopback, MB/s")
    print("| objects | concurrency | aether-vod Storage | boto3 | aether / boto3 |")
    print("|---|---|---|---|---|")
    for label, concurrency, ours, theirs in rows:
        print(f"| {label} | {concurrency} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="10,120", help="comma-separated VOD lengths")
    parser.add_argument("--storage", default="local,s3", help="local, s3 or both")
    parser.add_argument("--repeat", type=int, default=5, help="clips per VOD")
    parser.add_argument("--skip-upload", action="store_true")
    args = parser.parse_args()
    for tool in ("ffmpeg", "s3s-fs"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh bench")
    try:
        import boto3  # noqa: F401
    except ImportError:
        sys.exit("boto3 is missing: python3 -m pip install boto3 (scripts/install-deps.sh bench)")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "aether", "-p", "storeput"],
                   cwd=ROOT, check=True)
    source = source_flv()
    with tempfile.TemporaryDirectory(prefix="aether-vod-bench-") as workdir:
        clip_benchmark(workdir, args.storage.split(","), [int(m) for m in args.minutes.split(",")], args.repeat,
                       source)
        if not args.skip_upload:
            upload_benchmark(workdir)


if __name__ == "__main__":
    main()
