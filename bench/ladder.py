#!/usr/bin/env python3
"""Transcoding benchmark: aether's GStreamer ladder beside an ffmpeg command making the same ladder.

Same input (a pre-encoded 1080p30 H.264 6 Mbps + AAC FLV, cached outside the repo), same ladder
(720p 3000 kbps, 480p 1400 kbps, 360p 800 kbps), same x264 settings (preset veryfast, tune
zerolatency, keyframes where the source has them, no scene-cut keyframes). Both run in real time
(`-re`) for the window:

- aether: a release build; K ffmpeg processes publish the source with `-re -c copy`; aether
  packages the source rendition, decodes once, scales and encodes the three rungs, packages them
  (CMAF/LL-HLS in memory) and takes thumbnails. Measured: CPU seconds of the server process.
- ffmpeg: `ffmpeg -re -i source -filter_complex split=3,scale... -c:v libx264 ... -f hls` (one
  decode, split, scale, libx264, HLS segments on disk, audio copied). Measured: CPU seconds of
  the ffmpeg process.

Reported: CPU seconds per minute of input (per stream) and the ratio; then, for aether, the
largest K at which every rendition of every stream kept up with real time on this machine
(no rung dropped: `aether_transcode_rungs_dropped_total` stays 0).

    python3 bench/ladder.py                    # one stream, 40 s windows; then K = 1, 2, 3 for capacity
    python3 bench/ladder.py --seconds 60 --capacity 1,2,3,4

Needs ffmpeg and GStreamer (scripts/install-deps.sh bench). Loopback only.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_ingest import BINARY, ROOT, cpu_seconds, serve, source_flv, stop  # noqa: E402

LADDER = [("720p", 1280, 720, 3000), ("480p", 854, 480, 1400), ("360p", 640, 360, 800)]


def source_1080p():
    return source_flv(1920, 1080, 6000)


class Aether:
    def __init__(self, workdir, streams):
        self.data = tempfile.mkdtemp(prefix="aether-", dir=workdir)
        env = dict(os.environ, AETHER_DATA_DIR=self.data, AETHER_LOG__LEVEL="warn,aether::app=info",
                   AETHER_RECORDING__ENABLED="false")
        env.pop("AETHER_DATABASE__URL", None)
        subprocess.run([BINARY, "admin", "create", "--username", "bench", "--email", "bench@example.com", "--password-stdin"],
                       input=b"benchmark password\n", env=env, check=True, stdout=subprocess.DEVNULL)
        self.keys = []
        for i in range(streams):
            out = subprocess.run([BINARY, "channel", "create", f"ladder_{i}", "--owner", "bench"], env=env, check=True,
                                 capture_output=True, text=True).stdout
            self.keys.append(re.search(r"stream key \(shown once\): (\S+)", out).group(1))
        self.process, self.http, self.rtmp = serve(env)

    def dropped(self):
        text = urllib.request.urlopen(f"http://{self.http}/metrics", timeout=5).read().decode()
        match = re.search(r"^aether_transcode_rungs_dropped_total (\d+)", text, re.M)
        return int(match.group(1)) if match else 0

    def renditions(self, i):
        try:
            text = urllib.request.urlopen(f"http://{self.http}/live/ladder_{i}/master.m3u8", timeout=10).read().decode()
        except OSError:
            return 0
        return text.count("#EXT-X-STREAM-INF")

    def close(self):
        stop([self.process])


def publish(url, source, seconds):
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", source,
                             "-t", str(seconds), "-c", "copy", "-f", "flv", url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_aether(workdir, source, streams, seconds):
    server = Aether(workdir, streams)
    try:
        publishers = [publish(f"rtmp://{server.rtmp}/live/{key}", source, seconds + 10) for key in server.keys]
        time.sleep(6)  # the ladder starts with the first keyframe; measure the steady state
        renditions = [server.renditions(i) for i in range(streams)]
        before = cpu_seconds(server.process.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(server.process.pid) - before
        dropped = server.dropped()
        stop(publishers)
        return cpu, renditions, dropped
    finally:
        server.close()


def run_ffmpeg(workdir, source, seconds):
    out = tempfile.mkdtemp(prefix="ffmpeg-", dir=workdir)
    split = "[0:v]split=3" + "".join(f"[v{i}]" for i in range(3)) + ";"
    scales = ";".join(f"[v{i}]scale={w}:{h}[o{i}]" for i, (_, w, h, _) in enumerate(LADDER))
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", source,
            "-t", str(seconds + 10), "-filter_complex", split + scales]
    for i, (name, _, _, kbps) in enumerate(LADDER):
        args += ["-map", f"[o{i}]", "-map", "0:a"]
    args += ["-c:a", "copy", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
             "-force_key_frames", "source", "-x264-params", "scenecut=0:keyint=1000"]
    for i, (_, _, _, kbps) in enumerate(LADDER):
        args += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps}k", f"-bufsize:v:{i}", f"{kbps}k"]
    args += ["-f", "hls", "-hls_time", "2", "-hls_segment_type", "fmp4", "-hls_flags", "delete_segments",
             "-var_stream_map", " ".join(f"v:{i},a:{i},name:{name}" for i, (name, *_rest) in enumerate(LADDER)),
             "-master_pl_name", "master.m3u8", os.path.join(out, "%v", "index.m3u8")]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(6)
        before = cpu_seconds(process.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(process.pid) - before
        if process.poll() is not None:
            sys.exit(f"ffmpeg stopped: {process.stderr.read().decode()}")
        return cpu
    finally:
        stop([process])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=40, help="measurement window")
    parser.add_argument("--capacity", default="1,2,3", help="comma-separated stream counts to try on aether")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "aether"], cwd=ROOT, check=True)
    source = source_1080p()
    minutes = args.seconds / 60
    with tempfile.TemporaryDirectory(prefix="aether-ladder-bench-") as workdir:
        ours, renditions, dropped = run_aether(workdir, source, 1, args.seconds)
        theirs = run_ffmpeg(workdir, source, args.seconds)
        print("\n1080p30 source -> 720p + 480p + 360p (x264 veryfast, zerolatency), one stream, real time")
        print("| | CPU s per minute of input | renditions | rungs dropped |")
        print("|---|---|---|---|")
        print(f"| aether (ingest + source + ladder + thumbnails, CMAF in memory) | {ours / minutes:.1f} | {renditions[0]} | {dropped} |")
        print(f"| ffmpeg (decode, split, scale, libx264, HLS fMP4 on disk) | {theirs / minutes:.1f} | 3 | - |")
        print(f"| ratio aether / ffmpeg | {ours / theirs:.2f} | | |")
        print("\nCapacity: simultaneous 1080p streams through the ladder in real time")
        print("| streams | aether CPU s per stream-minute | renditions per stream | rungs dropped |")
        print("|---|---|---|---|")
        for k in [int(v) for v in args.capacity.split(",")]:
            cpu, renditions, dropped = run_aether(workdir, source, k, args.seconds)
            print(f"| {k} | {cpu / minutes / k:.1f} | {min(renditions)}-{max(renditions)} | {dropped} |", flush=True)


if __name__ == "__main__":
    main()
