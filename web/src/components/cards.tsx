// The cards of channel, VOD and clip lists.

import { useState } from 'preact/hooks';
import type { Channel, Clip, Vod } from '../api';
import { formatCount, formatDuration, timeAgo } from '../dom';
import { Link } from './ui';

function Thumb({ src, children }: { src: string | null; children?: preact.ComponentChildren }) {
  const [broken, setBroken] = useState(false);
  return (
    <div class="thumb">
      {src && !broken ? (
        <img src={src} alt="" loading="lazy" width={320} height={180} onError={() => setBroken(true)} />
      ) : (
        <div class="thumb-missing" aria-hidden="true">
          ▶
        </div>
      )}
      {children}
    </div>
  );
}

export function ChannelCard({ channel }: { channel: Channel }) {
  // A fresh live picture every 30 s; none asked for when the channel has none yet.
  const picture =
    channel.thumbnail_url && (channel.live ? `${channel.thumbnail_url}${channel.thumbnail_url.includes('?') ? '&' : '?'}t=${Math.floor(Date.now() / 30000)}` : channel.thumbnail_url);
  return (
    <li class="card">
      <Link href={`/${channel.name}`} class="card-link">
        <Thumb src={picture}>
          {channel.live && <span class="tag live">LIVE</span>}
          {channel.live && <span class="tag count">{formatCount(channel.viewers)} watching</span>}
        </Thumb>
        <strong class="card-title">{channel.title || channel.name}</strong>
        <span class="card-meta">
          {channel.name}
          {channel.category ? ` · ${channel.category}` : ''}
        </span>
      </Link>
    </li>
  );
}

export function VodCard({ vod }: { vod: Vod }) {
  return (
    <li class="card">
      <Link href={`/vod/${vod.id}`} class="card-link">
        <Thumb src={vod.thumbnail_url}>
          <span class="tag count">{vod.status === 'recording' ? 'recording' : formatDuration(vod.duration_ms)}</span>
        </Thumb>
        <strong class="card-title">{vod.title || vod.channel}</strong>
        <span class="card-meta">
          {vod.channel} · {timeAgo(vod.created_at)}
        </span>
      </Link>
    </li>
  );
}

export function ClipCard({ clip }: { clip: Clip }) {
  return (
    <li class="card">
      <Link href={`/clip/${clip.id}`} class="card-link">
        <Thumb src={clip.thumbnail_url}>
          <span class="tag count">{formatDuration(clip.duration_ms)}</span>
        </Thumb>
        <strong class="card-title">{clip.title || `Clip of ${clip.channel}`}</strong>
        <span class="card-meta">
          {clip.channel} · clipped by {clip.creator} · {timeAgo(clip.created_at)}
        </span>
      </Link>
    </li>
  );
}
