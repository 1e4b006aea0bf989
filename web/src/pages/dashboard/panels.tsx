// The dashboard's panels: the stream's state, OBS settings with the stream key, the stream
// info, moderators, recordings and clips.

import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type Channel, type Clip, type ServerInfo, type Visibility, type Vod } from '../../api';
import { Mount } from '../../components/mount';
import { Link, usePaged } from '../../components/ui';
import { formatDuration, timeAgo } from '../../dom';
import { createPlayer } from '../../player';
import { toast } from '../../toast';

const keyStore = (channel: string) => `aether:stream-key:${channel}`;

export function rememberKey(channel: string, key: string): void {
  try {
    localStorage.setItem(keyStore(channel), key);
  } catch {
    // Private mode: the key is shown this once only.
  }
}

export function storedKey(channel: string): string | null {
  try {
    return localStorage.getItem(keyStore(channel));
  } catch {
    return null;
  }
}

export const fail = (error: unknown) => toast(messageOf(error), 'error');

export function Card({ title, children }: { title: string; children: ComponentChildren }) {
  const id = `card-${title.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return (
    <section class="panel" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

function CopyButton({ label, value }: { label: string; value: () => string }) {
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value());
      toast('Copied');
    } catch {
      toast('Copying is not allowed here: select the text instead.', 'error');
    }
  };
  return (
    <button type="button" onClick={() => void copy()}>
      {label}
    </button>
  );
}

function Stat({ label, value, testid }: { label: string; value: string; testid?: string }) {
  return (
    <div class="stat">
      <dt>{label}</dt>
      <dd>
        <span data-testid={testid}>{value}</span>
      </dd>
    </div>
  );
}

export function StreamPanel({ channel }: { channel: Channel }) {
  const stream = channel.stream;
  const reconnecting = stream?.state === 'reconnecting';
  return (
    <Card title="Stream">
      <dl class="stats">
        <div class="stat">
          <dt>Status</dt>
          <dd>
            <span
              class={reconnecting ? 'state reconnecting' : channel.live ? 'state live' : 'state'}
              data-testid="live-state"
              title={reconnecting ? 'Your encoder disconnected; the broadcast goes on if it comes back within the grace period.' : ''}
            >
              {reconnecting ? 'RECONNECTING' : channel.live ? 'LIVE' : 'Offline'}
            </span>
          </dd>
        </div>
        <Stat label="Viewers" value={String(channel.viewers)} testid="viewers" />
        <Stat label="Real-time viewers" value={stream ? String(stream.webrtc_viewers) : '—'} testid="webrtc-viewers" />
        <Stat label="Bitrate" value={stream ? `${stream.bitrate_kbps.toLocaleString('en')} kbps` : '—'} testid="bitrate" />
        <Stat
          label="Resolution"
          value={stream && stream.width ? `${stream.width}×${stream.height}${stream.frame_rate ? ` @ ${Math.round(stream.frame_rate)} fps` : ''}` : '—'}
          testid="resolution"
        />
        <Stat label="Keyframes" value={stream?.keyframe_interval_secs ? `every ${stream.keyframe_interval_secs.toFixed(1)} s` : '—'} testid="keyframe-interval" />
        <Stat label="Codecs" value={stream ? [stream.video_codec, stream.audio ?? 'no audio'].filter(Boolean).join(' · ') : '—'} testid="codecs" />
        <Stat label="Uptime" value={stream ? formatDuration(Date.now() - stream.started_at) : '—'} />
        <Stat label="Renditions" value={stream ? stream.renditions.join(', ') : '—'} />
      </dl>
      <div data-testid="stream-warnings">
        {(stream?.warnings ?? []).map((w) => (
          <p class="warning" role="alert" data-code={w.code} key={w.code}>
            {w.message}
          </p>
        ))}
      </div>
      <div class="preview-box">
        {channel.live && <Mount make={() => createPlayer({ src: `/live/${channel.name}/master.m3u8`, live: true, preview: true })} />}
      </div>
      <p>
        <Link href={`/${channel.name}`}>Open your channel page (/{channel.name})</Link>
      </p>
    </Card>
  );
}

export function ObsPanel({ channel, info }: { channel: Channel; info: ServerInfo }) {
  const [key, setKey] = useState<string | null>(() => storedKey(channel.name));
  const [revealed, setRevealed] = useState(false);
  const serverUrl = `rtmp://${info.rtmp.host ?? location.hostname}:${info.rtmp.port}/${info.rtmp.app}`;
  const whipUrl = new URL(info.webrtc.whip, location.origin).toString();
  const rotate = async () => {
    if (!confirm('Reset the stream key? The current key stops working at once; update OBS with the new one.')) return;
    try {
      const fresh = (await api<{ stream_key: string }>('POST', `/api/v1/channels/${channel.name}/stream-key`)).stream_key;
      rememberKey(channel.name, fresh);
      setKey(fresh);
      setRevealed(true);
      toast('New stream key ready: paste it into OBS.');
    } catch (error) {
      fail(error);
    }
  };
  return (
    <Card title="OBS settings">
      <p class="muted">Settings → Stream → Service “Custom…”. Keyframe interval 2 s.</p>
      <div class="copy-row">
        <span class="label">Server</span>
        <code data-testid="rtmp-url">{serverUrl}</code>
        <CopyButton label="Copy server" value={() => serverUrl} />
      </div>
      {info.features.webrtc && (
        <div class="copy-row">
          <span class="label">WHIP</span>
          <code data-testid="whip-url">{whipUrl}</code>
          <CopyButton label="Copy WHIP URL" value={() => whipUrl} />
        </div>
      )}
      {info.features.webrtc && (
        <p class="muted">OBS 30+: Service “WHIP”, Server the WHIP URL, Bearer Token the stream key (sub-second delay).</p>
      )}
      <div class="copy-row">
        <span class="label">Stream key</span>
        <code class="key" data-testid="stream-key">
          {key ? (revealed ? key : '•'.repeat(24)) : 'Hidden: only a hash is kept. Reset it to get a new key.'}
        </code>
        {key && (
          <>
            <button type="button" aria-pressed={revealed ? 'true' : 'false'} onClick={() => setRevealed(!revealed)}>
              {revealed ? 'Hide' : 'Reveal'}
            </button>
            <CopyButton label="Copy key" value={() => key} />
          </>
        )}
        <button type="button" class="danger" onClick={() => void rotate()}>
          Reset key
        </button>
      </div>
    </Card>
  );
}

export function InfoPanel({ channel, info, onSaved }: { channel: Channel; info: ServerInfo; onSaved: (c: Channel) => void }) {
  const save = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement;
    try {
      const body: Record<string, unknown> = { title: field('title').value, category: field('category').value };
      if (info.features.recording) body.record = field('record').checked;
      onSaved(await api<Channel>('PATCH', `/api/v1/channels/${channel.name}`, body));
      toast('Saved');
    } catch (error) {
      fail(error);
    }
  };
  return (
    <Card title="Stream info">
      <form class="stack" onSubmit={save}>
        <div class="field">
          <label for="edit-title">Title</label>
          <input id="edit-title" name="title" maxLength={140} defaultValue={channel.title} />
        </div>
        <div class="field">
          <label for="edit-category">Category</label>
          <input id="edit-category" name="category" maxLength={50} defaultValue={channel.category} />
        </div>
        <div class="check">
          <input id="edit-record" name="record" type="checkbox" defaultChecked={channel.record} disabled={!info.features.recording} />
          <label for="edit-record">Record broadcasts as videos</label>
        </div>
        <button type="submit" class="primary">
          Save
        </button>
      </form>
    </Card>
  );
}

export function ModeratorsPanel({ channel }: { channel: string }) {
  const [moderators, setModerators] = useState<string[] | null>(null);
  const load = () =>
    api<{ moderators: string[] }>('GET', `/api/v1/channels/${channel}/moderators`)
      .then((list) => setModerators(list.moderators))
      .catch(fail);
  useEffect(() => void load(), [channel]);
  const add = async (event: Event) => {
    event.preventDefault();
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem('username') as HTMLInputElement;
    try {
      await api('PUT', `/api/v1/channels/${channel}/moderators/${encodeURIComponent(input.value.trim().toLowerCase())}`);
      input.value = '';
      await load();
    } catch (error) {
      fail(error);
    }
  };
  const remove = async (name: string) => {
    try {
      await api('DELETE', `/api/v1/channels/${channel}/moderators/${encodeURIComponent(name)}`);
      await load();
    } catch (error) {
      fail(error);
    }
  };
  return (
    <Card title="Moderators">
      <ul class="plain">
        {moderators?.length === 0 && <li class="muted">No moderators yet.</li>}
        {moderators?.map((name) => (
          <li key={name}>
            {name}{' '}
            <button type="button" class="ghost small" aria-label={`Remove ${name} as moderator`} onClick={() => void remove(name)}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      <form class="inline" onSubmit={add}>
        <input id="mod-name" name="username" required maxLength={25} placeholder="username" aria-label="Username to make a moderator" />
        <button type="submit">Add moderator</button>
      </form>
    </Card>
  );
}

function DeleteButton({ question, path, then }: { question: string; path: string; then: () => void }) {
  const remove = async () => {
    if (!confirm(question)) return;
    try {
      await api('DELETE', path);
      then();
    } catch (error) {
      fail(error);
    }
  };
  return (
    <button type="button" class="danger small" onClick={() => void remove()}>
      Delete
    </button>
  );
}

export function RecordingsPanel({ channel, live }: { channel: string; live: boolean }) {
  const [vods, setVods] = useState<Vod[] | null>(null);
  const load = () =>
    api<{ vods: Vod[] }>('GET', `/api/v1/channels/${channel}/vods?limit=50`)
      .then((list) => setVods(list.vods))
      .catch(fail);
  useEffect(() => void load(), [channel, live]);
  const setVisibility = async (vod: Vod, visibility: Visibility, select: HTMLSelectElement) => {
    try {
      await api('PATCH', `/api/v1/vods/${vod.id}`, { visibility });
      toast(`Now ${visibility}`);
    } catch (error) {
      fail(error);
      select.value = vod.visibility;
    }
  };
  return (
    <Card title="Recordings">
      <ul class="rows">
        {vods?.length === 0 && <li class="muted">No recordings yet.</li>}
        {vods?.map((vod) => (
          <li key={vod.id}>
            <Link href={`/vod/${vod.id}`}>{vod.title || vod.id}</Link>
            <span class="muted">
              {timeAgo(vod.created_at)} · {vod.status === 'recording' ? 'recording' : formatDuration(vod.duration_ms)}
            </span>
            <select
              aria-label={`Visibility of ${vod.title || vod.id}`}
              value={vod.visibility}
              onChange={(e) => void setVisibility(vod, (e.currentTarget as HTMLSelectElement).value as Visibility, e.currentTarget as HTMLSelectElement)}
            >
              {(['private', 'unlisted', 'public'] as Visibility[]).map((v) => (
                <option value={v} key={v}>
                  {v}
                </option>
              ))}
            </select>
            <DeleteButton question={`Delete “${vod.title || vod.id}” and its recording?`} path={`/api/v1/vods/${vod.id}`} then={() => void load()} />
          </li>
        ))}
      </ul>
    </Card>
  );
}

export function ClipsPanel({ channel }: { channel: string }) {
  const [clips, setClips] = useState<Clip[] | null>(null);
  const load = () =>
    api<{ clips: Clip[] }>('GET', `/api/v1/channels/${channel}/clips?limit=50`)
      .then((list) => setClips(list.clips))
      .catch(fail);
  useEffect(() => void load(), [channel]);
  return (
    <Card title="Clips">
      <ul class="rows">
        {clips?.length === 0 && <li class="muted">No clips yet.</li>}
        {clips?.map((clip) => (
          <li key={clip.id}>
            <Link href={`/clip/${clip.id}`}>{clip.title || `Clip by ${clip.creator}`}</Link>
            <span class="muted">
              {timeAgo(clip.created_at)} · {formatDuration(clip.duration_ms)}
            </span>
            <DeleteButton question="Delete this clip?" path={`/api/v1/clips/${clip.id}`} then={() => void load()} />
          </li>
        ))}
      </ul>
    </Card>
  );
}

export function FollowersPanel({ channel }: { channel: string }) {
  const { items, loaded, more } = usePaged<{ username: string; followed_at: number }>(`/api/v1/channels/${channel}/followers?limit=20`, true);
  const [count, setCount] = useState<number | null>(null);
  useEffect(() => {
    api<{ followers: number }>('GET', `/api/v1/channels/${channel}/follow`)
      .then((state) => setCount(state.followers))
      .catch(() => undefined);
  }, [channel]);
  return (
    <Card title="Followers">
      {count !== null && <p class="muted" data-testid="follower-count">{count === 1 ? '1 follower' : `${count} followers`}</p>}
      <ul class="rows" data-testid="followers-list">
        {loaded && items.length === 0 && <li class="muted">Nobody follows this channel yet.</li>}
        {items.map((follower) => (
          <li key={follower.username}>
            <Link href={`/u/${follower.username}`}>{follower.username}</Link>
            <span class="muted">since {new Date(follower.followed_at).toLocaleDateString()}</span>
          </li>
        ))}
      </ul>
      {more && (
        <button type="button" class="small" onClick={more}>
          Show more
        </button>
      )}
    </Card>
  );
}
