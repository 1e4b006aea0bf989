#!/usr/bin/env node
// Glass-to-glass latency, WebRTC against LL-HLS, in one Chromium (so both ends share one clock):
// a page draws the current Date.now() into its picture as a row of black and white blocks on a
// canvas and publishes canvas.captureStream() over WHIP; viewer pages read the blocks back from
// each decoded frame (requestVideoFrameCallback + canvas) and subtract: over WHEP, and over HLS
// with hls.js (the viewer page's player) at the default part length and at 0.2 s parts.
//
//   node bench/glass.mjs [--seconds 60]
//
// Needs the web UI's node_modules (npm ci in web/) and Chromium (scripts/install-deps.sh test);
// builds target/release/aether.

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] || 0) || 60;
execFileSync('cargo', ['build', '--release', '--locked', '--bin', 'aether'], { cwd: root, stdio: 'inherit' });
process.env.E2E_BIN ??= `${root}target/release/aether`;
const { api, launchBrowser, signup, startServer, until } = await import('../web/e2e/support.mjs');

const log = (...args) => console.error(new Date().toISOString(), ...args);
const BITS = 32;
const BLOCK = 40; // px: two rows of 16 blocks on a 640x360 picture

/// In the publisher page: draws the clock (30 bits of Date.now(), between a white and a black
/// marker block) 60 times a second and publishes the canvas over WHIP.
async function startPublisher(page, key) {
  await page.evaluate(
    async ({ key, BITS, BLOCK }) => {
      const canvas = document.createElement('canvas');
      canvas.width = 640;
      canvas.height = 360;
      document.body.append(canvas);
      const context = canvas.getContext('2d');
      const draw = () => {
        const now = Date.now();
        context.fillStyle = '#808080';
        context.fillRect(0, 0, 640, 360);
        const bits = [1, ...Array.from({ length: BITS - 2 }, (_, i) => Math.floor(now / 2 ** i) % 2), 0];
        bits.forEach((bit, i) => {
          context.fillStyle = bit ? '#fff' : '#000';
          context.fillRect((i % 16) * BLOCK, Math.floor(i / 16) * BLOCK, BLOCK, BLOCK);
        });
        context.fillStyle = '#fff';
        context.font = '48px sans-serif';
        context.fillText(String(now), 20, 200);
      };
      setInterval(draw, 1000 / 60);
      const stream = canvas.captureStream(30);
      const pc = new RTCPeerConnection();
      const transceiver = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
      const h264 = RTCRtpSender.getCapabilities('video').codecs.filter((c) => /h264/i.test(c.mimeType));
      transceiver.setCodecPreferences(h264);
      // A silent track: HLS wants audio beside the video.
      const audio = new AudioContext();
      const destination = audio.createMediaStreamDestination();
      const oscillator = audio.createOscillator();
      oscillator.connect(destination);
      oscillator.start();
      pc.addTransceiver(destination.stream.getAudioTracks()[0], { direction: 'sendonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const response = await fetch('/api/whip', {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${key}` },
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201) throw new Error(`WHIP ${response.status}: ${await response.text()}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
      window.publisher = pc;
    },
    { key, BITS, BLOCK },
  );
}

/// In a viewer page: reads the clock from every frame `video` shows for `ms`, returns the delays.
function readDelays(page, selector, ms) {
  return page.evaluate(
    async ({ selector, ms, BITS, BLOCK }) => {
      const video = document.querySelector(selector);
      const canvas = document.createElement('canvas');
      const context = canvas.getContext('2d', { willReadFrequently: true });
      const delays = [];
      let unreadable = 0;
      const read = () => {
        const scale = video.videoWidth / 640;
        if (!scale) return;
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        context.drawImage(video, 0, 0);
        const bits = [];
        for (let i = 0; i < BITS; i++) {
          const x = ((i % 16) * BLOCK + BLOCK / 2) * scale;
          const y = (Math.floor(i / 16) * BLOCK + BLOCK / 2) * scale;
          const [r, g, b] = context.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
          bits.push((r + g + b) / 3 > 128 ? 1 : 0);
        }
        if (bits[0] !== 1 || bits[BITS - 1] !== 0) return void unreadable++;
        const low = bits.slice(1, BITS - 1).reduce((sum, bit, i) => sum + bit * 2 ** i, 0);
        const now = Date.now();
        // The picture holds the clock's low 30 bits: put the high ones back.
        const span = 2 ** (BITS - 2);
        let drawn = now - (now % span) + low;
        if (drawn > now) drawn -= span;
        delays.push(now - drawn);
      };
      await new Promise((done) => {
        const end = performance.now() + ms;
        const frame = () => {
          read();
          if (performance.now() < end) video.requestVideoFrameCallback(frame);
          else done();
        };
        video.requestVideoFrameCallback(frame);
        // A player that stalls for good shows no more frames: the row ends anyway.
        setTimeout(done, ms + 5000);
      });
      return { delays, unreadable };
    },
    { selector, ms, BITS, BLOCK },
  );
}

function summary(name, { delays, unreadable }) {
  const sorted = [...delays].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { name, frames: delays.length, unreadable, p50: at(0.5), p95: at(0.95) };
}

async function run(partSeconds, withWebrtc) {
  const server = await startServer(`[hls]\npart_seconds = ${partSeconds}\n[recording]\nenabled = false\n`);
  const browser = await launchBrowser({ fakeMedia: true });
  const results = [];
  try {
    const owner = await signup(server, 'glass_owner');
    const key = (await api(server, 'POST', '/api/v1/channels', { name: 'glass', title: 'clock' }, owner.token)).stream_key;
    const publisher = await browser.newPage();
    await publisher.goto(`${server.url}/`);
    await startPublisher(publisher, key);
    log('publishing');
    await until('the clock stream to be live', async () => (await api(server, 'GET', '/api/v1/channels/glass')).live, 20000);
    if (withWebrtc) {
      const viewer = await browser.newPage();
      await viewer.goto(`${server.url}/glass?realtime=1`);
      await viewer.waitForFunction(() => document.querySelector('[data-testid=rtc-video]')?.videoWidth > 0, null, { timeout: 20000 });
      log('webrtc viewer playing');
      results.push(summary('WebRTC (WHEP)', await readDelays(viewer, '[data-testid=rtc-video]', seconds * 1000)));
      await viewer.close();
    }
    const hls = await browser.newPage();
    await hls.addInitScript(() => localStorage.setItem('aether:realtime', '0'));
    await hls.goto(`${server.url}/glass`);
    await hls.waitForFunction(() => (document.querySelector('.player video')?.currentTime ?? 0) > 1, null, { timeout: 30000 });
    log('hls playing');
    // Settle on the source rendition (the blocks read best at full size).
    await hls.selectOption('select.quality', { index: 1 }).catch(() => undefined);
    await new Promise((done) => setTimeout(done, 5000));
    results.push(summary(`LL-HLS, hls.js, ${partSeconds} s parts`, await readDelays(hls, '.player video', seconds * 1000)));
  } finally {
    await browser.close();
    await server.stop();
  }
  return results;
}

const rows = [...(await run(0.5, true)), ...(await run(0.2, false))];
console.log(`\nglass-to-glass over ${seconds} s per row (one Chromium, loopback):`);
console.log('| path | frames read | unreadable | p50 (ms) | p95 (ms) |');
console.log('| --- | --- | --- | --- | --- |');
for (const row of rows) console.log(`| ${row.name} | ${row.frames} | ${row.unreadable} | ${row.p50} | ${row.p95} |`);
