// Helpers of the browser tests: a real `aether serve` on loopback (random ports, temp dir), the
// API over fetch, ffmpeg publishing over RTMP as OBS would, and Debian's Chromium via
// playwright-core.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

const repo = resolve(import.meta.dirname, '..', '..');

/// The server binary: E2E_BIN, or the debug build `cargo test` leaves behind.
export function serverBinary() {
  const bin = process.env.E2E_BIN ?? join(repo, 'target', 'debug', 'aether');
  if (!existsSync(bin)) throw new Error(`no server binary at ${bin}: run cargo build first`);
  return bin;
}

export async function startServer(extraConfig = '', { reconnectGraceSeconds = 2 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'aether-e2e-'));
  const config = join(dir, 'aether.toml');
  writeFileSync(
    config,
    `data_dir = ${JSON.stringify(join(dir, 'data'))}
[http]
listen = "127.0.0.1:0"
[rtmp]
listen = "127.0.0.1:0"
[webrtc]
udp_listen = "127.0.0.1:0"
tcp_listen = "127.0.0.1:0"
[auth]
attempts_per_minute = 1000
[live]
# A stopped publisher's broadcast ends soon (the default waits 30 s for it to reconnect).
reconnect_grace_seconds = ${reconnectGraceSeconds}
[transcode]
thumbnail_seconds = 2
max_lag_ms = 10000
[[transcode.ladder]]
name = "180p"
height = 180
max_bitrate_kbps = 300
fps_cap = 30
preset = "ultrafast"
${extraConfig}
`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('AETHER_')));
  env.RUST_LOG ??= 'info';
  const child = spawn(serverBinary(), ['serve', '--config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let onLine = () => undefined;
  const collect = (stream) => {
    let rest = '';
    stream.on('data', (chunk) => {
      rest += chunk.toString();
      const parts = rest.split('\n');
      rest = parts.pop();
      for (const line of parts) {
        lines.push(line);
        onLine(line);
      }
    });
  };
  collect(child.stdout);
  collect(child.stderr);
  const listening = await new Promise((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${lines.join('\n')}`)), 30000);
    const check = (line) => {
      if (line.includes('listening') && line.includes('http=')) {
        clearTimeout(timer);
        resolveLine(line);
      }
    };
    lines.forEach(check);
    onLine = check;
    child.on('exit', (code) => reject(new Error(`the server exited (${code}):\n${lines.join('\n')}`)));
  });
  // eslint-disable-next-line no-control-regex
  const plain = listening.replace(/\x1b\[[0-9;]*m/g, '');
  const field = (name) => plain.match(new RegExp(`${name}=([0-9.:]+)`))[1];
  const http = field('http');
  const rtmp = field('rtmp');
  return {
    dir,
    url: `http://${http}`,
    rtmp: `rtmp://${rtmp}/live`,
    lines,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((done) => (child.exitCode !== null ? done() : child.on('exit', done)));
    },
  };
}

export async function api(server, method, path, body, token) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(server.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return data;
}

export async function signup(server, username, password = 'correct horse battery') {
  return api(server, 'POST', '/api/v1/auth/signup', { username, email: `${username}@example.com`, password });
}

/// ffmpeg sending a 640x360 30 fps test picture with a tone, as OBS would (2 s keyframes).
export function publish(server, key, seconds = 600) {
  const child = spawn(
    'ffmpeg',
    [
      ...['-hide_banner', '-loglevel', 'error', '-re'],
      ...['-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30'],
      ...['-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'],
      ...['-t', String(seconds)],
      ...['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '60', '-keyint_min', '60', '-sc_threshold', '0'],
      ...['-pix_fmt', 'yuv420p', '-b:v', '800k', '-c:a', 'aac', '-ar', '48000', '-ac', '2', '-b:a', '96k'],
      ...['-f', 'flv', `${server.rtmp}/${key}`],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((done) => child.on('exit', (code, signal) => done({ code, signal, stderr })));
  return {
    exited,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/// Polls `check` until it returns something truthy (or throws the last error after `ms`).
export async function until(what, check, ms = 30000, every = 250) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(every);
  }
}

/// Headless Chromium; `fakeMedia` gives it a synthetic camera and microphone (and grants them).
export async function launchBrowser({ fakeMedia = false } = {}) {
  const media = fakeMedia ? ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] : [];
  return chromium.launch({
    executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      ...media,
    ],
  });
}

/// A page that records console errors and uncaught exceptions (`page.problems`).
export async function openPage(context, url) {
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const source = message.location()?.url ?? '';
    page.problems.push(`${message.text()} (${source})`);
  });
  page.on('pageerror', (error) => page.problems.push(`uncaught: ${error.message}`));
  await page.goto(url);
  return page;
}

/// A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on a free loopback port, delivering
/// into a Maildir; `messages()` reads what arrived.
export async function startSmtp() {
  const { createServer } = await import('node:net');
  const { readdirSync, readFileSync, statSync } = await import('node:fs');
  const port = await new Promise((done) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = probe.address();
      probe.close(() => done(free));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'aether-smtp-'));
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const child = spawn(python, ['-m', 'aiosmtpd', '-n', '-l', `127.0.0.1:${port}`, '-c', 'aiosmtpd.handlers.Mailbox', join(dir, 'mail')], {
    stdio: 'ignore',
  });
  const { connect } = await import('node:net');
  await until('aiosmtpd to listen', () => new Promise((done) => {
    const socket = connect(port, '127.0.0.1', () => (socket.destroy(), done(true)));
    socket.on('error', () => done(false));
  }), 15000, 50);
  return {
    port,
    config: `[email]\nenabled = true\nhost = "127.0.0.1"\nport = ${port}\nsecurity = "none"\nfrom = "Aether <noreply@aether.test>"\n`,
    messages() {
      const box = join(dir, 'mail', 'new');
      if (!existsSync(box)) return [];
      return readdirSync(box)
        .map((name) => join(box, name))
        .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
        .map((file) => {
          const raw = readFileSync(file, 'utf8');
          const header = (name) => raw.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1] ?? '';
          const unfolded = raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
          const link = (path) => unfolded.match(new RegExp(`http://[^\\s"<>]+${path.replace('/', '\\/')}[^\\s"<>]*`))?.[0];
          return { to: header('To'), subject: header('Subject'), raw, link };
        });
    },
    async stop() {
      child.kill('SIGTERM');
    },
  };
}

/// Pages opened on one server, kept so that a last test can check none logged an error.
export function pageOpener(server) {
  const pages = [];
  const page = async (context, path) => {
    const opened = await openPage(context, server().url + path);
    pages.push(opened);
    return opened;
  };
  /// Signs in through the login page and lands on `next`.
  const signIn = async (context, username, password = 'correct horse battery', next = '/') => {
    const login = await page(context, `/login?next=${encodeURIComponent(next)}`);
    await login.getByLabel('Username or email').fill(username);
    await login.getByLabel('Password').fill(password);
    await login.getByRole('button', { name: 'Log in' }).click();
    await login.waitForURL((url) => url.pathname === next);
    return login;
  };
  return { pages, page, signIn };
}
