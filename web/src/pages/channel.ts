import { h as jsx, render } from 'preact';
import { api, ApiError, me, serverInfo, type Channel, type Clip, type Vod } from '../api';
import { FollowButton } from '../components/follow';
import { chatPanel } from '../chat';
import { formatCount, h, link } from '../dom';
import { createPlayer, type Player } from '../player';
import { toast } from '../toast';
import { VodCard } from '../components/cards';
import type { Cleanup } from '../nav';

export async function channelPage(main: HTMLElement, name: string): Promise<Cleanup | void> {
  let channel: Channel;
  try {
    channel = await api<Channel>('GET', `/api/v1/channels/${name}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      document.title = 'No such channel · Aether';
      main.append(h('section', { class: 'empty' }, h('h1', {}, `There is no channel named “${name}”`), link('/', {}, 'Go home')));
      return;
    }
    throw error;
  }
  const [user, info] = await Promise.all([me(), serverInfo()]);
  document.title = `${channel.title || channel.name} · Aether`;

  const stage = h('div', { class: 'stage' });
  const viewers = h('span', { class: 'viewers', 'aria-live': 'off' });
  const liveTag = h('span', { class: 'tag live', hidden: !channel.live }, 'LIVE');
  const title = h('h1', { class: 'stream-title' }, channel.title || channel.name);
  const category = h('span', {}, channel.category ? ` · ${channel.category}` : '');
  const meta = h('p', { class: 'muted' }, link(`/${channel.name}`, {}, channel.name), category);
  const clipButton = h('button', { type: 'button', class: 'primary', hidden: true }, 'Clip');
  // The follow button is a Preact component, mounted into this page's DOM.
  const follow = h('span', { class: 'follow-slot' });
  render(jsx(FollowButton, { channel: channel.name, owner: channel.owner }), follow);
  const below = h('div', { class: 'below' });
  let player: Player | undefined;
  let shown: 'live' | 'offline' | null = null;
  let destroyed = false;

  const chat = chatPanel({
    room: channel.name,
    signedIn: !!user,
    maxChars: info.chat.max_message_chars,
    onPresence: (count) => (viewers.textContent = `${formatCount(count)} watching`),
    onNotice: () => void refresh(),
  });

  main.append(
    h(
      'div',
      { class: 'watch' },
      h(
        'div',
        { class: 'watch-main' },
        stage,
        h('div', { class: 'stream-info' }, h('div', {}, h('div', { class: 'title-row' }, liveTag, title), meta), h('div', { class: 'actions' }, viewers, follow, clipButton)),
        below,
      ),
      chat.el,
    ),
  );

  clipButton.addEventListener('click', async () => {
    clipButton.disabled = true;
    try {
      const clip = await api<Clip>('POST', '/api/v1/clips', { channel: channel.name, seconds: 30 });
      toast('Clipping the last 30 seconds…', 'info', { href: `/clip/${clip.id}`, label: 'Open the clip' });
    } catch (error) {
      toast(error instanceof Error ? error.message : 'Clipping failed', 'error');
    } finally {
      clipButton.disabled = false;
    }
  });

  function showLive(): void {
    if (player) return;
    shown = 'live';
    stage.replaceChildren();
    player = createPlayer({
      src: `/live/${channel.name}/master.m3u8`,
      live: true,
      poster: channel.thumbnail_url ?? undefined,
      // Gone for good (the broadcast ended, or its media is unreachable): start over from the
      // channel's state, with a fresh player if it is still (or again) live.
      onFatal: () => {
        player?.destroy();
        player = undefined;
        void refresh();
      },
    });
    stage.append(player.el);
    liveTag.hidden = false;
    clipButton.hidden = !(user && info.features.clips && channel.record);
    below.replaceChildren();
  }

  async function showOffline(): Promise<void> {
    shown = 'offline';
    player?.destroy();
    player = undefined;
    liveTag.hidden = true;
    clipButton.hidden = true;
    viewers.textContent = '';
    stage.replaceChildren(
      h(
        'div',
        { class: 'offline' },
        // The last broadcast's picture, when there is one (nothing is asked for otherwise).
        channel.thumbnail_url ? h('img', { src: channel.thumbnail_url, alt: '', class: 'offline-thumb' }) : '',
        h('div', { class: 'offline-text' }, h('strong', {}, `${channel.name} is offline`), h('span', {}, 'The stream will start here when they go live.')),
      ),
    );
    stage.querySelector('img')?.addEventListener('error', (event) => (event.target as HTMLElement).remove());
    const vods = await api<{ vods: Vod[] }>('GET', `/api/v1/channels/${channel.name}/vods?limit=8`).catch(() => ({ vods: [] }));
    if (destroyed) return;
    below.replaceChildren();
    if (vods.vods.length) {
      const list = h('ul', { class: 'cards' });
      below.append(h('section', {}, h('h2', {}, 'Recent broadcasts'), list));
      render(vods.vods.map((vod) => jsx(VodCard, { vod, key: vod.id })), list);
    }
  }

  async function refresh(): Promise<void> {
    try {
      channel = await api<Channel>('GET', `/api/v1/channels/${channel.name}`);
    } catch {
      return;
    }
    if (destroyed) return;
    title.textContent = channel.title || channel.name;
    category.textContent = channel.category ? ` · ${channel.category}` : '';
    document.title = `${channel.title || channel.name} · Aether`;
    if (channel.live) showLive();
    else if (shown !== 'offline') await showOffline();
  }

  if (channel.live) showLive();
  else await showOffline();
  // Title and category edits, and going live or offline (the chat's stream notices make that
  // quicker).
  const poll = window.setInterval(() => void refresh(), 15000);

  return () => {
    destroyed = true;
    window.clearInterval(poll);
    player?.destroy();
    chat.destroy();
    render(null, follow);
  };
}
