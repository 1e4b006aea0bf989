// The VOD and clip pages.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, messageOf, type Clip, type Vod } from '../api';
import { Mount } from '../components/mount';
import { FormError, Link, useTitle } from '../components/ui';
import { formatDuration, timeAgo } from '../dom';
import { createPlayer, type Player } from '../player';
import { currentUser } from '../state';
import { toast } from '../toast';

function NotFound({ what }: { what: string }) {
  useTitle('Not found');
  return (
    <section class="empty">
      <h1>This {what} does not exist or is private</h1>
      <Link href="/">Go home</Link>
    </section>
  );
}

/// The thing at `path`: undefined while loading, null when there is none.
function useFound<T>(path: string): [T | null | undefined, string] {
  const [found, setFound] = useState<T | null | undefined>(undefined);
  const [error, setError] = useState('');
  useEffect(() => {
    api<T>('GET', path)
      .then(setFound)
      .catch((failure) => (failure instanceof ApiError && failure.status === 404 ? setFound(null) : setError(messageOf(failure))));
  }, [path]);
  return [found, error];
}

export function VodPage({ id }: { id: string }) {
  const [vod, error] = useFound<Vod>(`/api/v1/vods/${id}`);
  const player = useRef<Player | null>(null);
  const [busy, setBusy] = useState(false);
  useTitle(vod ? vod.title || vod.channel : '');
  if (error) return <FormError text={error} />;
  if (vod === null) return <NotFound what="video" />;
  if (!vod) return null;
  const clip = async () => {
    const end = Math.round((player.current?.video.currentTime ?? 0) * 1000);
    const start = Math.max(0, end - 30000);
    setBusy(true);
    try {
      const made = await api<Clip>('POST', '/api/v1/clips', { vod_id: vod.id, start_ms: start, end_ms: Math.max(end, start + 5000) });
      toast('Clipping…', 'info', { href: `/clip/${made.id}`, label: 'Open the clip' });
    } catch (failure) {
      toast(messageOf(failure), 'error');
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="watch single">
      <div class="watch-main">
        <div class="stage">
          <Mount make={() => createPlayer({ src: vod.playback_url, live: false, poster: vod.thumbnail_url })} onMade={(made) => (player.current = made)} />
        </div>
        <div class="stream-info">
          <div>
            <h1 class="stream-title">{vod.title || vod.channel}</h1>
            <p class="muted">
              <Link href={`/${vod.channel}`}>{vod.channel}</Link> · {timeAgo(vod.created_at)} ·{' '}
              {vod.status === 'recording' ? 'still recording' : formatDuration(vod.duration_ms)}
            </p>
          </div>
          <div class="actions">
            {currentUser.value && (
              <button type="button" class="primary" disabled={busy} onClick={() => void clip()}>
                Clip 30 s here
              </button>
            )}
          </div>
        </div>
      </div>
    </div>
  );
}

export function ClipPage({ id }: { id: string }) {
  const [found, error] = useFound<Clip>(`/api/v1/clips/${id}`);
  const [clip, setClip] = useState<Clip | null>(null);
  const shown = clip ?? found;
  useTitle(shown ? shown.title || `Clip of ${shown.channel}` : '');
  useEffect(() => {
    if (!shown || shown.status !== 'processing') return;
    // Made in the background: look again in a moment.
    const timer = window.setTimeout(() => {
      api<Clip>('GET', `/api/v1/clips/${id}`)
        .then(setClip)
        .catch(() => setClip({ ...shown }));
    }, 1500);
    return () => window.clearTimeout(timer);
  }, [shown]);
  if (error) return <FormError text={error} />;
  if (found === null) return <NotFound what="clip" />;
  if (!shown) return null;
  return (
    <div class="watch single">
      <div class="watch-main">
        <div class="stage">
          {shown.status === 'ready' && shown.download_url ? (
            <div class="player">
              <video controls playsInline preload="metadata" src={shown.download_url} poster={shown.thumbnail_url ?? undefined} />
            </div>
          ) : shown.status === 'failed' ? (
            <div class="offline">
              <div class="offline-text">
                <strong>This clip could not be made</strong>
                {shown.failure ?? ''}
              </div>
            </div>
          ) : (
            <div class="offline">
              <div class="offline-text" role="status">
                <strong>Making the clip…</strong>It appears here in a moment.
              </div>
            </div>
          )}
        </div>
        <div class="stream-info">
          <div>
            <h1 class="stream-title">{shown.title || `Clip of ${shown.channel}`}</h1>
            <p class="muted">
              <Link href={`/${shown.channel}`}>{shown.channel}</Link> · clipped by {shown.creator} · {timeAgo(shown.created_at)}
            </p>
          </div>
          <div class="actions">
            {shown.status === 'ready' && shown.download_url && (
              <a href={shown.download_url} download={`${shown.id}.mp4`} class="button">
                Download
              </a>
            )}
          </div>
        </div>
      </div>
    </div>
  );
}
