// The viewer page: the player while live (or the channel's picture and recent broadcasts while
// offline), title, viewers, follow and clip buttons, and the chat beside it. Going live or
// offline shows at once (the chat's stream notices) and in any case within 15 s.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, messageOf, serverInfo, type Channel, type Clip, type ServerInfo, type Vod } from '../api';
import { chatPanel } from '../chat';
import { VodCard } from '../components/cards';
import { FollowButton } from '../components/follow';
import { Mount } from '../components/mount';
import { FormError, Link, useTitle } from '../components/ui';
import { formatCount } from '../dom';
import { createPlayer } from '../player';
import { createRtcPlayer } from '../rtcplayer';
import { currentUser } from '../state';
import { toast } from '../toast';

function Offline({ channel }: { channel: Channel }) {
  const [broken, setBroken] = useState(false);
  return (
    <div class="offline">
      {channel.thumbnail_url && !broken && <img src={channel.thumbnail_url} alt="" class="offline-thumb" onError={() => setBroken(true)} />}
      <div class="offline-text">
        <strong>{channel.name} is offline</strong>
        <span>The stream will start here when they go live.</span>
      </div>
    </div>
  );
}

const REALTIME_KEY = 'aether:realtime';

function readRealtime(): boolean {
  if (new URLSearchParams(location.search).get('realtime') === '1') return true;
  try {
    return localStorage.getItem(REALTIME_KEY) === '1';
  } catch {
    return false;
  }
}

export function ChannelPage({ name }: { name: string }) {
  const [channel, setChannel] = useState<Channel | null | undefined>(undefined);
  const [info, setInfo] = useState<ServerInfo | null>(null);
  const [error, setError] = useState('');
  const [viewers, setViewers] = useState<number | null>(null);
  const [vods, setVods] = useState<Vod[]>([]);
  // A new player after a fatal error (the broadcast ended, or its media went away).
  const [attempt, setAttempt] = useState(0);
  const [clipping, setClipping] = useState(false);
  // Real-time (WHEP) instead of HLS; remembered in this browser.
  const [realtime, setRealtimeState] = useState(() => readRealtime());
  const setRealtime = (on: boolean) => {
    setRealtimeState(on);
    try {
      localStorage.setItem(REALTIME_KEY, on ? '1' : '0');
    } catch {
      // private mode: this page only
    }
  };
  useTitle(channel ? channel.title || channel.name : channel === null ? 'No such channel' : '');

  const refresh = async () => {
    try {
      setChannel(await api<Channel>('GET', `/api/v1/channels/${name}`));
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 404) setChannel(null);
    }
  };
  useEffect(() => {
    Promise.all([api<Channel>('GET', `/api/v1/channels/${name}`), serverInfo()])
      .then(([found, server]) => {
        setChannel(found);
        setInfo(server);
      })
      .catch((failure) => (failure instanceof ApiError && failure.status === 404 ? setChannel(null) : setError(messageOf(failure))));
    // Title and category edits, and going live or offline (the chat's notices are quicker).
    const poll = window.setInterval(() => void refresh(), 15000);
    return () => window.clearInterval(poll);
  }, [name]);
  const live = !!channel?.live;
  useEffect(() => {
    if (!channel || live) return;
    setViewers(null);
    api<{ vods: Vod[] }>('GET', `/api/v1/channels/${name}/vods?limit=8`)
      .then((list) => setVods(list.vods))
      .catch(() => setVods([]));
  }, [live, channel === undefined]);

  if (error) return <FormError text={error} />;
  if (channel === null) {
    return (
      <section class="empty">
        <h1>There is no channel named “{name}”</h1>
        <Link href="/">Go home</Link>
      </section>
    );
  }
  if (!channel || !info) return null;
  const user = currentUser.value;
  const clip = async () => {
    setClipping(true);
    try {
      const made = await api<Clip>('POST', '/api/v1/clips', { channel: channel.name, seconds: 30 });
      toast('Clipping the last 30 seconds…', 'info', { href: `/clip/${made.id}`, label: 'Open the clip' });
    } catch (failure) {
      toast(messageOf(failure), 'error');
    } finally {
      setClipping(false);
    }
  };
  return (
    <div class="watch">
      <div class="watch-main">
        <div class="stage">
          {live && realtime && info.features.webrtc ? (
            <Mount
              key={`rtc-${attempt}`}
              make={() =>
                createRtcPlayer({
                  url: new URL(info.webrtc.whep.replace('{channel}', channel.name), location.origin).toString(),
                  iceServers: info.webrtc.ice_servers,
                  onFail: (reason) => {
                    toast(`Real-time playback failed (${reason}): playing with the usual delay.`, 'error');
                    setRealtime(false);
                  },
                })
              }
            />
          ) : live ? (
            <Mount
              key={attempt}
              make={() =>
                createPlayer({
                  src: `/live/${channel.name}/master.m3u8`,
                  live: true,
                  poster: channel.thumbnail_url ?? undefined,
                  onFatal: () => void refresh().then(() => setAttempt((n) => n + 1)),
                })
              }
            />
          ) : (
            <Offline channel={channel} />
          )}
        </div>
        <div class="stream-info">
          <div>
            <div class="title-row">
              <span class="tag live" hidden={!live}>
                LIVE
              </span>
              <h1 class="stream-title">{channel.title || channel.name}</h1>
            </div>
            <p class="muted">
              <Link href={`/${channel.name}`}>{channel.name}</Link>
              {channel.category ? ` · ${channel.category}` : ''} · <Link href={`/u/${channel.owner}`}>{channel.owner}</Link>
            </p>
          </div>
          <div class="actions">
            <span class="viewers" aria-live="off">
              {live && viewers !== null ? `${formatCount(viewers)} watching` : ''}
            </span>
            {live && info.features.webrtc && (
              <button
                type="button"
                aria-pressed={realtime ? 'true' : 'false'}
                title="WebRTC: under a second behind the streamer"
                onClick={() => setRealtime(!realtime)}
              >
                Real-time
              </button>
            )}
            <FollowButton channel={channel.name} owner={channel.owner} />
            {live && user && info.features.clips && channel.record && (
              <button type="button" class="primary" disabled={clipping} onClick={() => void clip()}>
                Clip
              </button>
            )}
          </div>
        </div>
        <div class="below">
          {!live && vods.length > 0 && (
            <section>
              <h2>Recent broadcasts</h2>
              <ul class="cards">
                {vods.map((vod) => (
                  <VodCard vod={vod} key={vod.id} />
                ))}
              </ul>
            </section>
          )}
        </div>
      </div>
      {/* The chat waits until who is signed in is known (a panel made before would have no
          send box), and is made anew when that changes. */}
      {user !== undefined && (
      <Mount
        key={user?.id ?? 'anonymous'}
        class="mount"
        make={() =>
          chatPanel({
            room: channel.name,
            signedIn: !!user,
            maxChars: info.chat.max_message_chars,
            onPresence: setViewers,
            onNotice: () => void refresh(),
          })
        }
      />
      )}
    </div>
  );
}
