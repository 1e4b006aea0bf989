// The VOD and clip pages.

import { api, ApiError, me, type Clip, type Vod } from '../api';
import { formatDuration, h, link, timeAgo } from '../dom';
import { createPlayer } from '../player';
import { toast } from '../toast';
import type { Cleanup } from '../nav';

/// The VOD or clip at `path`, or `undefined` after saying on the page that there is none.
async function load<T>(main: HTMLElement, path: string, what: string): Promise<T | undefined> {
  try {
    return await api<T>('GET', path);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    document.title = 'Not found · Aether';
    main.append(h('section', { class: 'empty' }, h('h1', {}, `This ${what} does not exist or is private`), link('/', {}, 'Go home')));
    return undefined;
  }
}

export async function vodPage(main: HTMLElement, id: string): Promise<Cleanup | void> {
  const vod = await load<Vod>(main, `/api/v1/vods/${id}`, 'video');
  if (!vod) return;
  const user = await me();
  document.title = `${vod.title || vod.channel} · Aether`;
  const player = createPlayer({ src: vod.playback_url, live: false, poster: vod.thumbnail_url });
  const clipButton = h('button', { type: 'button', class: 'primary', hidden: !user }, 'Clip 30 s here');
  clipButton.addEventListener('click', async () => {
    const end = Math.round(player.video.currentTime * 1000);
    const start = Math.max(0, end - 30000);
    clipButton.disabled = true;
    try {
      const clip = await api<Clip>('POST', '/api/v1/clips', { vod_id: vod.id, start_ms: start, end_ms: Math.max(end, start + 5000) });
      toast('Clipping…', 'info', { href: `/clip/${clip.id}`, label: 'Open the clip' });
    } catch (error) {
      toast(error instanceof Error ? error.message : 'Clipping failed', 'error');
    } finally {
      clipButton.disabled = false;
    }
  });
  main.append(
    h(
      'div',
      { class: 'watch single' },
      h(
        'div',
        { class: 'watch-main' },
        h('div', { class: 'stage' }, player.el),
        h(
          'div',
          { class: 'stream-info' },
          h(
            'div',
            {},
            h('h1', { class: 'stream-title' }, vod.title || vod.channel),
            h(
              'p',
              { class: 'muted' },
              link(`/${vod.channel}`, {}, vod.channel),
              ` · ${timeAgo(vod.created_at)} · `,
              vod.status === 'recording' ? 'still recording' : formatDuration(vod.duration_ms),
            ),
          ),
          h('div', { class: 'actions' }, clipButton),
        ),
      ),
    ),
  );
  return () => player.destroy();
}

export async function clipPage(main: HTMLElement, id: string): Promise<Cleanup | void> {
  const found = await load<Clip>(main, `/api/v1/clips/${id}`, 'clip');
  if (!found) return;
  let clip = found;
  document.title = `${clip.title || `Clip of ${clip.channel}`} · Aether`;
  const stage = h('div', { class: 'stage' });
  const actions = h('div', { class: 'actions' });
  let timer = 0;
  const show = () => {
    if (clip.status === 'ready' && clip.download_url) {
      const video = h('video', { controls: true, playsinline: true, preload: 'metadata', src: clip.download_url, poster: clip.thumbnail_url });
      stage.replaceChildren(h('div', { class: 'player' }, video));
      actions.replaceChildren(h('a', { href: clip.download_url, download: `${clip.id}.mp4`, class: 'button' }, 'Download'));
    } else if (clip.status === 'failed') {
      stage.replaceChildren(h('div', { class: 'offline' }, h('div', { class: 'offline-text' }, h('strong', {}, 'This clip could not be made'), clip.failure ?? '')));
    } else {
      stage.replaceChildren(h('div', { class: 'offline' }, h('div', { class: 'offline-text', role: 'status' }, h('strong', {}, 'Making the clip…'), 'It appears here in a moment.')));
      timer = window.setTimeout(async () => {
        clip = await api<Clip>('GET', `/api/v1/clips/${id}`).catch(() => clip);
        show();
      }, 1500);
    }
  };
  show();
  main.append(
    h(
      'div',
      { class: 'watch single' },
      h(
        'div',
        { class: 'watch-main' },
        stage,
        h(
          'div',
          { class: 'stream-info' },
          h(
            'div',
            {},
            h('h1', { class: 'stream-title' }, clip.title || `Clip of ${clip.channel}`),
            h('p', { class: 'muted' }, link(`/${clip.channel}`, {}, clip.channel), ` · clipped by ${clip.creator} · ${timeAgo(clip.created_at)}`),
          ),
          actions,
        ),
      ),
    ),
  );
  return () => window.clearTimeout(timer);
}
