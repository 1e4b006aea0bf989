// The creator dashboard: per channel, the stream's state (ingest bitrate, resolution, codecs,
// warnings, a preview), OBS settings and the stream key, title/category, chat with moderation
// and its modes, moderators, recordings and clips. A user without a channel creates one here.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, me, serverInfo, type Channel, type ServerInfo } from '../../api';
import { chatPanel, type ChatPanel } from '../../chat';
import { ChatModes } from '../../components/chatmodes';
import { Mount } from '../../components/mount';
import { FormError, Link, useTitle } from '../../components/ui';
import { navigate, query } from '../../nav';
import { BrowserPublishPanel } from './golive';
import { Card, ClipsPanel, FollowersPanel, InfoPanel, ModeratorsPanel, ObsPanel, RecordingsPanel, StreamPanel, rememberKey } from './panels';

function CreateChannel() {
  const [error, setError] = useState('');
  const create = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    try {
      const created = await api<{ channel: Channel; stream_key: string }>('POST', '/api/v1/channels', {
        name: String(data.get('name')).trim(),
        title: String(data.get('title') ?? ''),
      });
      rememberKey(created.channel.name, created.stream_key);
      navigate(`/dashboard?channel=${created.channel.name}`, true);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : 'Creating the channel failed.');
    }
  };
  return (
    <form class="auth-form" onSubmit={create}>
      <h1>Create your channel</h1>
      <p class="muted">Your channel is where people watch you: its name is its address.</p>
      <div class="field">
        <label for="name">Channel name</label>
        <input id="name" name="name" required pattern="[a-z0-9_]{3,25}" minLength={3} maxLength={25} />
      </div>
      <div class="field">
        <label for="title">Stream title</label>
        <input id="title" name="title" maxLength={140} />
      </div>
      <FormError text={error} />
      <button type="submit" class="primary wide">
        Create channel
      </button>
    </form>
  );
}

function ChannelDashboard({ initial, info }: { initial: Channel; info: ServerInfo }) {
  const [channel, setChannel] = useState(initial);
  const chat = useRef<ChatPanel | null>(null);
  useEffect(() => {
    const poll = window.setInterval(() => {
      api<Channel>('GET', `/api/v1/channels/${initial.name}`)
        .then(setChannel)
        .catch(() => undefined);
    }, 2000);
    return () => window.clearInterval(poll);
  }, [initial.name]);
  return (
    <div class="dashboard">
      <div class="dash-col">
        <StreamPanel channel={channel} />
        <ObsPanel channel={channel} info={info} />
        {info.features.webrtc && <BrowserPublishPanel channel={channel} info={info} />}
        <InfoPanel channel={channel} info={info} onSaved={setChannel} />
        <ModeratorsPanel channel={channel.name} />
        <FollowersPanel channel={channel.name} />
      </div>
      <div class="dash-col">
        <Mount
          make={() => chatPanel({ room: channel.name, signedIn: true, maxChars: info.chat.max_message_chars })}
          onMade={(made) => (chat.current = made)}
        />
        <Card title="Chat modes">
          <ChatModes room={channel.name} command={(frame) => chat.current?.command(frame) ?? false} />
        </Card>
        <RecordingsPanel channel={channel.name} live={channel.live} />
        <ClipsPanel channel={channel.name} />
      </div>
    </div>
  );
}

export function DashboardPage() {
  useTitle('Dashboard');
  const [data, setData] = useState<{ channels: Channel[]; info: ServerInfo } | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    void me().then(async (user) => {
      if (!user) {
        navigate('/login?next=/dashboard', true);
        return;
      }
      try {
        const [{ channels }, info] = await Promise.all([api<{ channels: Channel[] }>('GET', '/api/v1/me/channels'), serverInfo()]);
        setData({ channels, info });
      } catch (failure) {
        setError(failure instanceof Error ? failure.message : String(failure));
      }
    });
  }, []);
  if (error) return <FormError text={error} />;
  if (!data) return null;
  if (data.channels.length === 0) return <CreateChannel />;
  const wanted = query('channel');
  const channel = data.channels.find((c) => c.name === wanted) ?? data.channels[0];
  return (
    <>
      <h1>Dashboard</h1>
      {data.channels.length > 1 && (
        <nav class="tabs" aria-label="Your channels">
          {data.channels.map((c) => (
            <Link href={`/dashboard?channel=${c.name}`} aria-current={c.name === channel.name ? 'page' : undefined} key={c.name}>
              {c.name}
            </Link>
          ))}
        </nav>
      )}
      <ChannelDashboard initial={channel} info={data.info} key={channel.name} />
    </>
  );
}
