#!/usr/bin/python3
"""A WHIP publisher and a WHEP viewer made with aiortc (Debian's python3-aiortc): a second,
independent WebRTC implementation to test the server against (the first is Chromium).

    aiortc_client.py publish BASE_URL STREAM_KEY SECONDS
    aiortc_client.py play BASE_URL CHANNEL SECONDS

`publish` sends ffmpeg's test picture (H.264) and a tone (Opus); `play` receives and decodes.
Each prints one JSON line of what happened. aioice gathers host candidates on every interface
but loopback; the test's server is on loopback, so candidates are restricted to 127.0.0.1.
"""

import asyncio
import json
import sys

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
import urllib.error
import urllib.parse
import urllib.request

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()


async def negotiate(pc, url, headers):
    await pc.setLocalDescription(await pc.createOffer())
    status, response_headers, answer = await asyncio.to_thread(
        http, "POST", url, pc.localDescription.sdp.encode(), {"Content-Type": "application/sdp", **headers}
    )
    if status != 201:
        raise SystemExit(json.dumps({"error": status, "body": answer}))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return urllib.parse.urljoin(url, response_headers["location"])


def prefer_h264(transceiver):
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/H264", "video/rtx")]
    transceiver.setCodecPreferences(codecs)


async def publish(base, key, seconds):
    video = MediaPlayer("testsrc=size=640x360:rate=30", format="lavfi")
    audio = MediaPlayer("sine=frequency=440:sample_rate=48000", format="lavfi")
    pc = RTCPeerConnection()
    prefer_h264(pc.addTransceiver(video.video, direction="sendonly"))
    pc.addTransceiver(audio.audio, direction="sendonly")
    location = await negotiate(pc, f"{base}/api/whip", {"Authorization": f"Bearer {key}"})
    await asyncio.sleep(seconds)
    state = pc.connectionState
    status, _, _ = await asyncio.to_thread(http, "DELETE", location)
    await pc.close()
    print(json.dumps({"state": state, "delete": status}))


async def play(base, channel, seconds):
    pc = RTCPeerConnection()
    counts = {"video": 0, "audio": 0, "width": 0}

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            counts[track.kind] += 1
            if track.kind == "video":
                counts["width"] = frame.width

    pc.on("track", lambda track: asyncio.ensure_future(consume(track)))
    pc.addTransceiver("audio", direction="recvonly")
    prefer_h264(pc.addTransceiver("video", direction="recvonly"))
    location = await negotiate(pc, f"{base}/api/whep/{channel}", {})
    await asyncio.sleep(seconds)
    counts["state"] = pc.connectionState
    status, _, _ = await asyncio.to_thread(http, "DELETE", location)
    counts["delete"] = status
    await pc.close()
    print(json.dumps(counts))


if __name__ == "__main__":
    mode, base, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    asyncio.run((publish if mode == "publish" else play)(base, name, seconds))
