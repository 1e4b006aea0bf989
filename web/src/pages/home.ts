import { api, type Channel, type Clip, type Vod } from '../api';
import { formatCount, formatDuration, h, link, timeAgo } from '../dom';

export async function homePage(main: HTMLElement): Promise<void> {
  document.title = 'Aether';
  const [live, vods, clips] = await Promise.all([
    api<{ channels: Channel[] }>('GET', '/api/v1/channels?live=true&limit=48'),
    api<{ vods: Vod[] }>('GET', '/api/v1/vods?limit=12'),
    api<{ clips: Clip[] }>('GET', '/api/v1/clips?limit=12'),
  ]);
  main.append(
    h('h1', { class: 'visually-hidden' }, 'Aether'),
    h(
      'section',
      { 'aria-labelledby': 'live-heading' },
      h('h2', { id: 'live-heading' }, 'Live now'),
      live.channels.length
        ? h('ul', { class: 'cards' }, live.channels.map(liveCard))
        : h('p', { class: 'muted' }, 'Nobody is live right now.'),
    ),
    h(
      'section',
      { 'aria-labelledby': 'vods-heading' },
      h('h2', { id: 'vods-heading' }, 'Recent broadcasts'),
      vods.vods.length ? h('ul', { class: 'cards' }, vods.vods.map(vodCard)) : h('p', { class: 'muted' }, 'No public broadcasts yet.'),
    ),
    h(
      'section',
      { 'aria-labelledby': 'clips-heading' },
      h('h2', { id: 'clips-heading' }, 'Clips'),
      clips.clips.length ? h('ul', { class: 'cards' }, clips.clips.map(clipCard)) : h('p', { class: 'muted' }, 'No clips yet.'),
    ),
  );
}

export function thumb(src: string | null, alt: string, overlay?: Node[]): HTMLElement {
  const img = src ? h('img', { src, alt, loading: 'lazy', width: 320, height: 180 }) : null;
  img?.addEventListener('error', () => img.replaceWith(h('div', { class: 'thumb-missing', 'aria-hidden': 'true' }, '▶')));
  return h('div', { class: 'thumb' }, img ?? h('div', { class: 'thumb-missing', 'aria-hidden': 'true' }, '▶'), overlay ?? []);
}

function liveCard(channel: Channel): HTMLElement {
  return h(
    'li',
    { class: 'card' },
    link(
      `/${channel.name}`,
      { class: 'card-link' },
      // A fresh live picture every 30 s; none asked for when the channel has none yet.
      thumb(channel.thumbnail_url && `${channel.thumbnail_url}${channel.thumbnail_url.includes('?') ? '&' : '?'}t=${Math.floor(Date.now() / 30000)}`, '', [
        h('span', { class: 'tag live' }, 'LIVE'),
        h('span', { class: 'tag count' }, `${formatCount(channel.viewers)} watching`),
      ]),
      h('strong', { class: 'card-title' }, channel.title || channel.name),
      h('span', { class: 'card-meta' }, channel.name, channel.category ? ` · ${channel.category}` : ''),
    ),
  );
}

export function vodCard(vod: Vod): HTMLElement {
  return h(
    'li',
    { class: 'card' },
    link(
      `/vod/${vod.id}`,
      { class: 'card-link' },
      thumb(vod.thumbnail_url, '', [h('span', { class: 'tag count' }, vod.status === 'recording' ? 'recording' : formatDuration(vod.duration_ms))]),
      h('strong', { class: 'card-title' }, vod.title || vod.channel),
      h('span', { class: 'card-meta' }, vod.channel, ' · ', timeAgo(vod.created_at)),
    ),
  );
}

export function clipCard(clip: Clip): HTMLElement {
  return h(
    'li',
    { class: 'card' },
    link(
      `/clip/${clip.id}`,
      { class: 'card-link' },
      thumb(clip.thumbnail_url, '', [h('span', { class: 'tag count' }, formatDuration(clip.duration_ms))]),
      h('strong', { class: 'card-title' }, clip.title || `Clip of ${clip.channel}`),
      h('span', { class: 'card-meta' }, clip.channel, ' · clipped by ', clip.creator, ' · ', timeAgo(clip.created_at)),
    ),
  );
}
