// The creator dashboard: per channel, OBS settings and the stream key, live status with the
// ingest bitrate and resolution, a preview, title/category, chat with moderation, moderators,
// recordings and clips.

import { api, ApiError, me, serverInfo, type Channel, type Clip, type ServerInfo, type Visibility, type Vod } from '../api';
import { h as jsx, render as mount } from 'preact';
import { chatPanel } from '../chat';
import { ChatModes } from '../components/chatmodes';
import { formatDuration, h, link, timeAgo } from '../dom';
import { createPlayer, type Player } from '../player';
import { toast } from '../toast';
import { navigate, type Cleanup } from '../nav';

const keyStore = (channel: string) => `aether:stream-key:${channel}`;

function rememberKey(channel: string, key: string): void {
  try {
    localStorage.setItem(keyStore(channel), key);
  } catch {
    // Private mode: the key is shown this once only.
  }
}

function fail(error: unknown): void {
  toast(error instanceof Error ? error.message : String(error), 'error');
}

export async function dashboardPage(main: HTMLElement): Promise<Cleanup | void> {
  document.title = 'Dashboard · Aether';
  const user = await me();
  if (!user) {
    navigate('/login?next=/dashboard', true);
    return;
  }
  const [{ channels }, info] = await Promise.all([api<{ channels: Channel[] }>('GET', '/api/v1/me/channels'), serverInfo()]);
  if (channels.length === 0) {
    main.append(createChannelForm());
    return;
  }
  const wanted = new URLSearchParams(location.search).get('channel');
  const channel = channels.find((c) => c.name === wanted) ?? channels[0];
  const picker =
    channels.length > 1
      ? h(
          'nav',
          { class: 'tabs', 'aria-label': 'Your channels' },
          channels.map((c) => link(`/dashboard?channel=${c.name}`, { 'aria-current': c.name === channel.name ? 'page' : null }, c.name)),
        )
      : null;
  main.append(h('h1', {}, 'Dashboard'), picker ?? '');
  return channelDashboard(main, channel, info);
}

function createChannelForm(): HTMLElement {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h(
    'form',
    { class: 'auth-form' },
    h('h1', {}, 'Create your channel'),
    h('p', { class: 'muted' }, 'Your channel is where people watch you: its name is its address.'),
    h('div', { class: 'field' }, h('label', { for: 'name' }, 'Channel name'), h('input', { id: 'name', name: 'name', required: true, pattern: '[a-z0-9_]{3,25}', minlength: 3, maxlength: 25 })),
    h('div', { class: 'field' }, h('label', { for: 'title' }, 'Stream title'), h('input', { id: 'title', name: 'title', maxlength: 140 })),
    error,
    h('button', { type: 'submit', class: 'primary wide' }, 'Create channel'),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      const created = await api<{ channel: Channel; stream_key: string }>('POST', '/api/v1/channels', {
        name: String(data.get('name')).trim(),
        title: String(data.get('title') ?? ''),
      });
      rememberKey(created.channel.name, created.stream_key);
      navigate(`/dashboard?channel=${created.channel.name}`, true);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : 'Creating the channel failed.';
    }
  });
  return form;
}

function copyButton(label: string, value: () => string): HTMLButtonElement {
  const button = h('button', { type: 'button' }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value());
      toast('Copied');
    } catch {
      toast('Copying is not allowed here: select the text instead.', 'error');
    }
  });
  return button;
}

/// A "Delete" button that asks first, deletes `path` and then reloads its list.
function deleteButton(question: string, path: string, reload: () => Promise<void>): HTMLButtonElement {
  const button = h('button', { type: 'button', class: 'danger small' }, 'Delete');
  button.addEventListener('click', async () => {
    if (!confirm(question)) return;
    try {
      await api('DELETE', path);
      await reload();
    } catch (error) {
      fail(error);
    }
  });
  return button;
}

function card(title: string, ...content: (Node | string | null)[]): HTMLElement {
  const id = `card-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...content);
}

function stat(label: string, value: HTMLElement): HTMLElement {
  return h('div', { class: 'stat' }, h('dt', {}, label), h('dd', {}, value));
}

async function channelDashboard(main: HTMLElement, initial: Channel, info: ServerInfo): Promise<Cleanup> {
  let channel = initial;
  let player: Player | undefined;
  let destroyed = false;

  // Status
  const state = h('span', { class: 'state', 'data-testid': 'live-state' });
  const viewers = h('span', { 'data-testid': 'viewers' });
  const bitrate = h('span', { 'data-testid': 'bitrate' });
  const resolution = h('span', { 'data-testid': 'resolution' });
  const uptime = h('span');
  const renditions = h('span');
  const keyframes = h('span', { 'data-testid': 'keyframe-interval' });
  const codecs = h('span', { 'data-testid': 'codecs' });
  const warnings = h('div', { 'data-testid': 'stream-warnings' });
  const preview = h('div', { class: 'preview-box' });
  const status = card(
    'Stream',
    h(
      'dl',
      { class: 'stats' },
      stat('Status', state),
      stat('Viewers', viewers),
      stat('Bitrate', bitrate),
      stat('Resolution', resolution),
      stat('Keyframes', keyframes),
      stat('Codecs', codecs),
      stat('Uptime', uptime),
      stat('Renditions', renditions),
    ),
    warnings,
    preview,
    h('p', {}, link(`/${channel.name}`, {}, `Open your channel page (/${channel.name})`)),
  );

  // OBS settings
  const host = info.rtmp.host ?? location.hostname;
  const serverUrl = `rtmp://${host}:${info.rtmp.port}/${info.rtmp.app}`;
  let key: string | null = null;
  try {
    key = localStorage.getItem(keyStore(channel.name));
  } catch {
    key = null;
  }
  let revealed = false;
  const keyText = h('code', { class: 'key', 'data-testid': 'stream-key' });
  const reveal = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Reveal');
  const copyKey = copyButton('Copy key', () => key ?? '');
  const rotate = h('button', { type: 'button', class: 'danger' }, 'Reset key');
  const showKey = () => {
    if (!key) {
      keyText.textContent = 'Hidden: only a hash is kept. Reset it to get a new key.';
      reveal.hidden = copyKey.hidden = true;
      return;
    }
    reveal.hidden = copyKey.hidden = false;
    keyText.textContent = revealed ? key : '•'.repeat(24);
    reveal.textContent = revealed ? 'Hide' : 'Reveal';
    reveal.setAttribute('aria-pressed', String(revealed));
  };
  reveal.addEventListener('click', () => {
    revealed = !revealed;
    showKey();
  });
  rotate.addEventListener('click', async () => {
    if (!confirm('Reset the stream key? The current key stops working at once; update OBS with the new one.')) return;
    try {
      key = (await api<{ stream_key: string }>('POST', `/api/v1/channels/${channel.name}/stream-key`)).stream_key;
      rememberKey(channel.name, key);
      revealed = true;
      showKey();
      toast('New stream key ready: paste it into OBS.');
    } catch (error) {
      fail(error);
    }
  });
  showKey();
  const obs = card(
    'OBS settings',
    h('p', { class: 'muted' }, 'Settings → Stream → Service “Custom…”. Keyframe interval 2 s.'),
    h('div', { class: 'copy-row' }, h('span', { class: 'label' }, 'Server'), h('code', { 'data-testid': 'rtmp-url' }, serverUrl), copyButton('Copy server', () => serverUrl)),
    h('div', { class: 'copy-row' }, h('span', { class: 'label' }, 'Stream key'), keyText, reveal, copyKey, rotate),
  );

  // Title, category, recording
  const titleInput = h('input', { id: 'edit-title', name: 'title', maxlength: 140, value: channel.title });
  const categoryInput = h('input', { id: 'edit-category', name: 'category', maxlength: 50, value: channel.category });
  const recordInput = h('input', { id: 'edit-record', name: 'record', type: 'checkbox', checked: channel.record, disabled: !info.features.recording });
  const edit = h(
    'form',
    { class: 'stack' },
    h('div', { class: 'field' }, h('label', { for: 'edit-title' }, 'Title'), titleInput),
    h('div', { class: 'field' }, h('label', { for: 'edit-category' }, 'Category'), categoryInput),
    h('div', { class: 'check' }, recordInput, h('label', { for: 'edit-record' }, 'Record broadcasts as videos')),
    h('button', { type: 'submit', class: 'primary' }, 'Save'),
  );
  edit.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const body: Record<string, unknown> = { title: titleInput.value, category: categoryInput.value };
      if (info.features.recording) body.record = recordInput.checked;
      channel = await api<Channel>('PATCH', `/api/v1/channels/${channel.name}`, body);
      toast('Saved');
    } catch (error) {
      fail(error);
    }
  });

  // Moderators
  const modList = h('ul', { class: 'plain' });
  const modInput = h('input', { id: 'mod-name', name: 'username', required: true, maxlength: 25, placeholder: 'username', 'aria-label': 'Username to make a moderator' });
  const modForm = h('form', { class: 'inline' }, modInput, h('button', { type: 'submit' }, 'Add moderator'));
  const loadModerators = async () => {
    const { moderators } = await api<{ moderators: string[] }>('GET', `/api/v1/channels/${channel.name}/moderators`);
    modList.replaceChildren(
      ...(moderators.length
        ? moderators.map((name) =>
            h(
              'li',
              {},
              name,
              ' ',
              h('button', { type: 'button', class: 'ghost small', 'aria-label': `Remove ${name} as moderator`, onclick: () => void removeModerator(name) }, 'Remove'),
            ),
          )
        : [h('li', { class: 'muted' }, 'No moderators yet.')]),
    );
  };
  const removeModerator = async (name: string) => {
    try {
      await api('DELETE', `/api/v1/channels/${channel.name}/moderators/${encodeURIComponent(name)}`);
      await loadModerators();
    } catch (error) {
      fail(error);
    }
  };
  modForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await api('PUT', `/api/v1/channels/${channel.name}/moderators/${encodeURIComponent(modInput.value.trim().toLowerCase())}`);
      modInput.value = '';
      await loadModerators();
    } catch (error) {
      fail(error);
    }
  });

  // Recordings and clips
  const vodList = h('ul', { class: 'rows' });
  const clipList = h('ul', { class: 'rows' });
  const loadVods = async () => {
    const { vods } = await api<{ vods: Vod[] }>('GET', `/api/v1/channels/${channel.name}/vods?limit=50`);
    vodList.replaceChildren(...(vods.length ? vods.map(vodRow) : [h('li', { class: 'muted' }, 'No recordings yet.')]));
  };
  const vodRow = (vod: Vod): HTMLElement => {
    const visibility = h(
      'select',
      { 'aria-label': `Visibility of ${vod.title || vod.id}` },
      (['private', 'unlisted', 'public'] as Visibility[]).map((v) => h('option', { value: v, selected: v === vod.visibility }, v)),
    );
    visibility.addEventListener('change', async () => {
      try {
        await api('PATCH', `/api/v1/vods/${vod.id}`, { visibility: visibility.value });
        toast(`Now ${visibility.value}`);
      } catch (error) {
        fail(error);
        visibility.value = vod.visibility;
      }
    });
    const remove = deleteButton(`Delete “${vod.title || vod.id}” and its recording?`, `/api/v1/vods/${vod.id}`, loadVods);
    return h(
      'li',
      {},
      link(`/vod/${vod.id}`, {}, vod.title || vod.id),
      h('span', { class: 'muted' }, `${timeAgo(vod.created_at)} · ${vod.status === 'recording' ? 'recording' : formatDuration(vod.duration_ms)}`),
      visibility,
      remove,
    );
  };
  const loadClips = async () => {
    const { clips } = await api<{ clips: Clip[] }>('GET', `/api/v1/channels/${channel.name}/clips?limit=50`);
    clipList.replaceChildren(
      ...(clips.length
        ? clips.map((clip) => {
            const remove = deleteButton('Delete this clip?', `/api/v1/clips/${clip.id}`, loadClips);
            return h(
              'li',
              {},
              link(`/clip/${clip.id}`, {}, clip.title || `Clip by ${clip.creator}`),
              h('span', { class: 'muted' }, `${timeAgo(clip.created_at)} · ${formatDuration(clip.duration_ms)}`),
              remove,
            );
          })
        : [h('li', { class: 'muted' }, 'No clips yet.')]),
    );
  };

  const chat = chatPanel({ room: channel.name, signedIn: true, maxChars: info.chat.max_message_chars });
  const modes = h('div');
  mount(jsx(ChatModes, { room: channel.name, command: chat.command }), modes);

  main.append(
    h(
      'div',
      { class: 'dashboard' },
      h('div', { class: 'dash-col' }, status, obs, card('Stream info', edit), card('Moderators', modList, modForm)),
      h('div', { class: 'dash-col' }, chat.el, card('Chat modes', modes), card('Recordings', vodList), card('Clips', clipList)),
    ),
  );

  const render = () => {
    const stream = channel.stream;
    const reconnecting = stream?.state === 'reconnecting';
    state.textContent = reconnecting ? 'RECONNECTING' : channel.live ? 'LIVE' : 'Offline';
    state.className = reconnecting ? 'state reconnecting' : channel.live ? 'state live' : 'state';
    state.title = reconnecting ? 'Your encoder disconnected; the broadcast goes on if it comes back within the grace period.' : '';
    viewers.textContent = String(channel.viewers);
    bitrate.textContent = stream ? `${stream.bitrate_kbps.toLocaleString('en')} kbps` : '—';
    resolution.textContent = stream && stream.width ? `${stream.width}×${stream.height}${stream.frame_rate ? ` @ ${Math.round(stream.frame_rate)} fps` : ''}` : '—';
    uptime.textContent = stream ? formatDuration(Date.now() - stream.started_at) : '—';
    renditions.textContent = stream ? stream.renditions.join(', ') : '—';
    keyframes.textContent = stream?.keyframe_interval_secs ? `every ${stream.keyframe_interval_secs.toFixed(1)} s` : '—';
    codecs.textContent = stream ? [stream.video_codec, stream.audio ?? 'no audio'].filter(Boolean).join(' · ') : '—';
    warnings.replaceChildren(...(stream?.warnings ?? []).map((w) => h('p', { class: 'warning', role: 'alert', 'data-code': w.code }, w.message)));
    if (channel.live && !player) {
      player = createPlayer({ src: `/live/${channel.name}/master.m3u8`, live: true, preview: true });
      preview.replaceChildren(player.el);
    } else if (!channel.live && player) {
      player.destroy();
      player = undefined;
      preview.replaceChildren();
    }
  };
  render();
  const poll = window.setInterval(async () => {
    const wasLive = channel.live;
    try {
      channel = await api<Channel>('GET', `/api/v1/channels/${channel.name}`);
    } catch {
      return;
    }
    if (destroyed) return;
    render();
    if (wasLive !== channel.live) void loadVods().catch(fail);
  }, 2000);
  await Promise.all([loadModerators(), loadVods(), loadClips()]).catch(fail);

  return () => {
    destroyed = true;
    window.clearInterval(poll);
    player?.destroy();
    chat.destroy();
    mount(null, modes);
  };
}
