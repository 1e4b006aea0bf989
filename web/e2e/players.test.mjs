// Independent players join a broadcast at its very start and keep playing across a reconnect:
// Shaka Player (which cannot start from a playlist of parts and a preload hint alone) and hls.js,
// on the multivariant playlist and on a single rendition, in headless Chromium. The players run
// on a page of their own, served from another origin (as an embed would be), and record every
// error they raise. SHAKA_DEBUG=1 loads Shaka's debug build (readable stacks, and its own
// warnings in the console).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { api, launchBrowser, openPage, publish, signup, startServer, until } from './support.mjs';

const modules = resolve(import.meta.dirname, '..', 'node_modules');
const HARNESS = `<!doctype html><meta charset="utf-8"><title>players</title>
<script src="/shaka.js"></script><script src="/hls.js"></script>
<body><script>
window.errors = [];
window.players = {};
// Shaka Player on a video of its own; resolves once load() did (or rejects with its error).
window.startShaka = async (name, url) => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.id = name;
  document.body.append(video);
  shaka.polyfill.installAll();
  const player = new shaka.Player();
  await player.attach(video);
  window.manifests = window.manifests || [];
  player.getNetworkingEngine().registerResponseFilter((type, response) => {
    if (type === shaka.net.NetworkingEngine.RequestType.MANIFEST) window.manifests.push(response.uri + ' ' + new TextDecoder().decode(response.data));
  });
  player.addEventListener('error', (event) => window.errors.push(name + ': shaka ' + event.detail.code));
  window.players[name] = player;
  await player.load(url);
  await video.play().catch(() => {});
  return player.getVariantTracks().map((t) => ({ id: t.id, height: t.height, audio: t.audioCodec }));
};
// hls.js on a video of its own; fatal errors are recorded.
window.startHls = (name, url) => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.id = name;
  document.body.append(video);
  const hls = new Hls({ lowLatencyMode: true });
  hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) window.errors.push(name + ': hls.js ' + data.details); });
  hls.loadSource(url);
  hls.attachMedia(video);
  window.players[name] = hls;
};
window.position = (name) => document.getElementById(name).currentTime;
window.height = (name) => document.getElementById(name).videoHeight;
</script></body>`;

let server;
let harness;
let harnessUrl;
let browser;
let key;

before(async () => {
  server = await startServer('', { reconnectGraceSeconds: 20 });
  const owner = await signup(server, 'players_owner');
  key = (await api(server, 'POST', '/api/v1/channels', { name: 'players_live' }, owner.token)).stream_key;
  const files = {
    '/': ['text/html', HARNESS],
    '/shaka.js': ['text/javascript', readFileSync(join(modules, 'shaka-player', 'dist', process.env.SHAKA_DEBUG ? 'shaka-player.compiled.debug.js' : 'shaka-player.compiled.js'))],
    '/hls.js': ['text/javascript', readFileSync(join(modules, 'hls.js', 'dist', 'hls.min.js'))],
  };
  harness = createServer((request, response) => {
    const file = files[request.url];
    if (request.url === '/favicon.ico') return response.writeHead(204).end();
    if (!file) return response.writeHead(404).end();
    response.writeHead(200, { 'content-type': file[0] }).end(file[1]);
  });
  await new Promise((done) => harness.listen(0, '127.0.0.1', done));
  harnessUrl = `http://127.0.0.1:${harness.address().port}/`;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((done) => (harness ? harness.close(done) : done()));
  await server?.stop();
});

const advances = async (page, name, by, ms = 30000) => {
  const start = await page.evaluate((n) => window.position(n), name);
  await until(`${name} to play on ${by} s`, async () => (await page.evaluate((n) => window.position(n), name)) > start + by, ms);
};

test('Shaka Player and hls.js join in the first second, on the master and on one rendition, and play on across a reconnect', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, harnessUrl);
  const live = `${server.url}/live/players_live`;
  let publisher = publish(server, key);
  // The first second of the broadcast: the players ask before anything is packaged (the
  // server holds their first requests until there is something they can start from).
  await until('the publisher to be accepted', async () => (await api(server, 'GET', '/api/v1/channels/players_live')).live, 10000, 50);
  const tracks = await page
    .evaluate((url) => window.startShaka('shaka_master', url), `${live}/master.m3u8`)
    .catch(async (error) => {
      // What Shaka was given, to see why it refused it.
      console.log(await page.evaluate(() => JSON.stringify(window.manifests, null, 1)));
      throw error;
    });
  await page.evaluate((url) => window.startHls('hls_master', url), `${live}/master.m3u8`);
  await page.evaluate((url) => window.startShaka('shaka_rung', url), `${live}/180p/index.m3u8`);
  await page.evaluate((url) => window.startHls('hls_rung', url), `${live}/180p/index.m3u8`);
  assert.deepEqual(tracks.map((t) => t.height).sort((a, b) => a - b), [180, 360], JSON.stringify(tracks));
  assert.ok(tracks.every((t) => t.audio === 'mp4a.40.2'), `every variant has audio: ${JSON.stringify(tracks)}`);
  for (const name of ['shaka_master', 'hls_master', 'shaka_rung', 'hls_rung']) await advances(page, name, 2);
  assert.equal(await page.evaluate(() => window.height('shaka_rung')), 180);

  // Shaka on each rendition of the master, by hand.
  await page.evaluate(() => window.players.shaka_master.configure({ abr: { enabled: false } }));
  for (const height of [180, 360]) {
    await page.evaluate((h) => {
      const player = window.players.shaka_master;
      player.selectVariantTrack(player.getVariantTracks().find((t) => t.height === h), true);
    }, height);
    await until(`Shaka on ${height}p`, async () => (await page.evaluate(() => window.height('shaka_master'))) === height, 30000);
  }

  // The publisher drops and comes back within the grace: every player plays on.
  await publisher.stop();
  await until('the channel to say reconnecting', async () => (await api(server, 'GET', '/api/v1/channels/players_live')).stream?.state === 'reconnecting', 10000, 100);
  publisher = publish(server, key);
  for (const name of ['shaka_master', 'hls_master', 'shaka_rung', 'hls_rung']) await advances(page, name, 4, 45000);
  assert.deepEqual(await page.evaluate(() => window.errors), []);
  assert.deepEqual(page.problems, []);
  await publisher.stop();
  await context.close();
});
