// WebRTC with real browsers: Chromium (a synthetic camera and microphone) goes live from the
// dashboard's browser publisher over WHIP; HLS then plays with AAC audio made from its Opus;
// another Chromium context watches in real time over WHEP (the viewer page's "Real-time", and a
// bare RTCPeerConnection for its stats); an RTMP publish of the real OBS recording (B-frames)
// plays over WHEP from a rung with Opus audio; stopping records a VOD; every session ends.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { api, launchBrowser, pageOpener, signup, startServer, until } from './support.mjs';

const CHANNEL = 'e2e_webrtc';
const OBS_CHANNEL = 'e2e_obs_rtc';
const FIXTURE = fileURLToPath(new URL('../../../shared/fixtures/obs29-x264-aac.flv', import.meta.url));
let server;
let browser;
let owner;
let streamKey;
let obsKey;
let creator;

before(async () => {
  server = await startServer('[recording]\nenabled = true\n');
  owner = await signup(server, 'rtc_owner');
  streamKey = (await api(server, 'POST', '/api/v1/channels', { name: CHANNEL, title: 'From the browser' }, owner.token)).stream_key;
  const second = await signup(server, 'rtc_obs');
  obsKey = (await api(server, 'POST', '/api/v1/channels', { name: OBS_CHANNEL, title: 'OBS over RTMP' }, second.token)).stream_key;
  browser = await launchBrowser({ fakeMedia: true });
});

after(async () => {
  // E2E_LOG=1 prints the server's log (what the WebRTC sessions did).
  if (process.env.E2E_LOG) console.log(server?.lines.join('\n'));
  await browser?.close();
  await server?.stop();
});

const { pages, page, signIn } = pageOpener(() => server);

/// Plays `channel` over WHEP from inside `on` (a page of this server) for `seconds`, and returns
/// what the browser decoded: inbound-rtp stats per kind, with the codec's MIME type.
async function whepStats(on, channel, seconds, { tcpOnly = false } = {}) {
  return on.evaluate(
    async ({ channel, seconds, tcpOnly }) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      document.body.append(video);
      const stream = new MediaStream();
      pc.ontrack = (event) => {
        stream.addTrack(event.track);
        video.srcObject = stream;
      };
      await pc.setLocalDescription(await pc.createOffer());
      const response = await fetch(`/api/whep/${channel}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201) throw new Error(`WHEP ${response.status}: ${await response.text()}`);
      const location = response.headers.get('Location');
      let answer = await response.text();
      // As if UDP were blocked: only the server's TCP candidate is left.
      if (tcpOnly) answer = answer.replace(/a=candidate:[^\r\n]* udp [^\r\n]*\r\n/gi, '');
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      await new Promise((done) => setTimeout(done, seconds * 1000));
      const report = await pc.getStats();
      const codecs = {};
      report.forEach((s) => {
        if (s.type === 'codec') codecs[s.id] = s.mimeType;
      });
      const out = { state: pc.connectionState, width: video.videoWidth, frames: video.getVideoPlaybackQuality().totalVideoFrames };
      report.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = report.get(s.selectedCandidatePairId);
          out.protocol = report.get(pair?.remoteCandidateId)?.protocol;
        }
      });
      report.forEach((s) => {
        if (s.type === 'inbound-rtp') {
          out[s.kind] = {
            codec: codecs[s.codecId],
            packetsReceived: s.packetsReceived,
            packetsLost: s.packetsLost,
            framesDecoded: s.framesDecoded,
            totalSamplesReceived: s.totalSamplesReceived,
          };
        }
      });
      await fetch(location, { method: 'DELETE' });
      pc.close();
      video.remove();
      return out;
    },
    { channel, seconds, tcpOnly },
  );
}

const channelInfo = (name) => api(server, 'GET', `/api/v1/channels/${name}`);

test('a creator goes live from the dashboard in the browser (WHIP); HLS plays it with AAC audio', async () => {
  const context = await browser.newContext();
  creator = await signIn(context, 'rtc_owner', undefined, '/dashboard');
  await creator.getByTestId('whip-url').filter({ hasText: '/api/whip' }).waitFor();
  await creator.getByLabel('Stream key').fill(streamKey);
  await creator.getByRole('button', { name: 'Go live from the browser' }).click();
  await creator.getByTestId('golive-state').filter({ hasText: 'Publishing from this browser' }).waitFor({ timeout: 20000 });
  await until('the channel to be live', async () => (await channelInfo(CHANNEL)).live, 20000);

  const master = await until('a master playlist with audio', async () => {
    const response = await fetch(`${server.url}/live/${CHANNEL}/master.m3u8`);
    const text = response.ok ? await response.text() : '';
    return /mp4a\.40\.2/.test(text) && /avc1\./.test(text) ? text : false;
  }, 20000);
  assert.match(master, /CODECS="avc1\.[0-9a-f]+,mp4a\.40\.2"/, master);
  const info = await channelInfo(CHANNEL);
  assert.match(info.stream?.audio ?? info.ingest?.audio ?? JSON.stringify(info), /Opus/, 'the dashboard says the source is Opus');

  const viewer = await page(await browser.newContext(), `/${CHANNEL}`);
  await until('HLS playback to advance', () => viewer.evaluate(() => (document.querySelector('video')?.currentTime ?? 0) > 1.5), 25000);
});

test('a viewer watches in real time (WHEP): frames decode with H.264 and Opus, nothing lost', async () => {
  const context = await browser.newContext();
  const viewer = await page(context, `/${CHANNEL}`);
  await viewer.getByRole('button', { name: 'Real-time' }).click();
  const video = viewer.getByTestId('rtc-video');
  await video.waitFor();
  await until('real-time frames', () => viewer.evaluate(() => (document.querySelector('[data-testid=rtc-video]')?.getVideoPlaybackQuality().totalVideoFrames ?? 0) > 30), 20000);
  assert.equal(await viewer.getByRole('button', { name: 'Real-time' }).getAttribute('aria-pressed'), 'true');
  // The creator's dashboard counts the real-time viewer (it refreshes every few seconds).
  await creator.getByTestId('webrtc-viewers').filter({ hasText: /^[1-9]/ }).waitFor({ timeout: 15000 });

  const stats = await whepStats(viewer, CHANNEL, 4);
  assert.equal(stats.state, 'connected', JSON.stringify(stats));
  assert.equal(stats.video.codec, 'video/H264', JSON.stringify(stats));
  assert.equal(stats.audio.codec, 'audio/opus', JSON.stringify(stats));
  assert.ok(stats.video.framesDecoded > 30, JSON.stringify(stats));
  assert.ok(stats.audio.packetsReceived > 50, JSON.stringify(stats));
  assert.ok(stats.video.packetsLost <= 2, `loss on loopback: ${JSON.stringify(stats)}`);
  assert.ok(stats.width > 0, 'the picture has a size');
  await context.close();
});

test('an ICE restart (PATCH with If-Match: *) keeps a real-time viewer playing', async () => {
  const viewer = await page(await browser.newContext(), `/${CHANNEL}`);
  const result = await viewer.evaluate(async (channel) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const response = await fetch(`/api/whep/${channel}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    const location = response.headers.get('Location');
    let answer = await response.text();
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const frames = async () => {
      let decoded = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded;
      });
      return decoded;
    };
    const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
    await sleep(3000);
    const before = await frames();
    // The restart, as WHIP/WHEP clients do it: new credentials in a fragment, the answer's
    // credentials replaced by the server's new ones.
    pc.restartIce();
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const ufrag = offer.sdp.match(/a=ice-ufrag:(.*)\r\n/)[1];
    const pwd = offer.sdp.match(/a=ice-pwd:(.*)\r\n/)[1];
    const patched = await fetch(location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' },
      body: `a=ice-ufrag:${ufrag}\r\na=ice-pwd:${pwd}\r\n`,
    });
    const fragment = await patched.text();
    const newUfrag = fragment.match(/a=ice-ufrag:(.*)\r\n/)[1];
    const newPwd = fragment.match(/a=ice-pwd:(.*)\r\n/)[1];
    answer = answer.replace(/a=ice-ufrag:.*\r\n/g, `a=ice-ufrag:${newUfrag}\r\n`).replace(/a=ice-pwd:.*\r\n/g, `a=ice-pwd:${newPwd}\r\n`);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    await sleep(4000);
    let remoteUfrag;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'transport') remoteUfrag = s.selectedCandidatePairId && s.iceLocalUsernameFragment;
    });
    const after = await frames();
    await fetch(location, { method: 'DELETE' });
    pc.close();
    return { status: patched.status, before, after, state: pc.connectionState, localUfragChanged: remoteUfrag === ufrag };
  }, CHANNEL);
  assert.equal(result.status, 200, JSON.stringify(result));
  assert.ok(result.localUfragChanged, `the connection runs on the new credentials: ${JSON.stringify(result)}`);
  assert.ok(result.after > result.before + 30, `frames kept coming: ${JSON.stringify(result)}`);
});

test('a viewer on a network that blocks UDP plays over ICE-TCP', async () => {
  const viewer = await page(await browser.newContext(), `/${CHANNEL}`);
  const stats = await whepStats(viewer, CHANNEL, 4, { tcpOnly: true });
  assert.equal(stats.state, 'connected', JSON.stringify(stats));
  assert.equal(stats.protocol, 'tcp', JSON.stringify(stats));
  assert.ok(stats.video.framesDecoded > 30, JSON.stringify(stats));
  assert.ok(stats.audio.packetsReceived > 50, JSON.stringify(stats));
});

test('an RTMP publish with B-frames (the real OBS recording) plays over WHEP from a rung, with Opus', async (t) => {
  if (!existsSync(FIXTURE)) {
    assert.ok(!process.env.CI, `the OBS fixture is missing: ${FIXTURE}`);
    t.skip('no OBS fixture');
    return;
  }
  const ffmpeg = spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '2', '-i', FIXTURE, '-c', 'copy', '-f', 'flv', `${server.rtmp}/${obsKey}`],
    { stdio: 'ignore' },
  );
  try {
    await until('the OBS channel to be live', async () => (await channelInfo(OBS_CHANNEL)).live, 15000);
    const viewer = await page(await browser.newContext(), `/${OBS_CHANNEL}`);
    // Its first keyframe interval is 8.3 s (OBS's "auto"): the rung's pictures start after the ladder does.
    const stats = await until('decoded WebRTC frames from the rung', async () => {
      const seen = await whepStats(viewer, OBS_CHANNEL, 4);
      return seen.video?.framesDecoded > 20 && seen.audio?.packetsReceived > 50 ? seen : false;
    }, 40000);
    assert.equal(stats.video.codec, 'video/H264');
    assert.equal(stats.audio.codec, 'audio/opus', 'AAC made into Opus once for the viewers');
  } finally {
    ffmpeg.kill('SIGTERM');
  }
});

test('stopping in the dashboard ends the broadcast, records a VOD, and leaves no WebRTC session', async () => {
  await creator.getByRole('button', { name: 'Stop' }).click();
  await until('the channel to go offline', async () => !(await channelInfo(CHANNEL)).live, 20000);
  const vods = await until('a VOD of the browser broadcast', async () => {
    const list = await api(server, 'GET', `/api/v1/channels/${CHANNEL}/vods`, undefined, owner.token);
    return list.vods.length > 0 ? list.vods : false;
  }, 30000);
  assert.ok(vods[0].duration_ms > 3000 || vods[0].duration > 3, JSON.stringify(vods[0]));
  await until('every WebRTC session to end', async () => {
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    return /aether_webrtc_sessions\{role="publisher"\} 0\b/.test(metrics) && /aether_webrtc_sessions\{role="viewer"\} 0\b/.test(metrics);
  }, 30000);
});

test('no page logged a console error', () => {
  // Expected: the OBS channel's WHEP asked for while its rungs were starting (503, retried).
  const problems = pages
    .flatMap((p) => p.problems)
    .filter((problem) => !/status of 404 .*\/live\//.test(problem) && !/status of 503 .*\/api\/whep\/e2e_obs_rtc/.test(problem));
  assert.deepEqual(problems, []);
});
