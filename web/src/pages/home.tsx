// The home page: who is live, recent public broadcasts, recent clips.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type Channel, type Clip, type Vod } from '../api';
import { ChannelCard, ClipCard, VodCard } from '../components/cards';
import { FormError, useTitle } from '../components/ui';

export function HomePage() {
  useTitle('');
  const [data, setData] = useState<{ live: Channel[]; vods: Vod[]; clips: Clip[] } | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    Promise.all([
      api<{ channels: Channel[] }>('GET', '/api/v1/channels?live=true&limit=48'),
      api<{ vods: Vod[] }>('GET', '/api/v1/vods?limit=12'),
      api<{ clips: Clip[] }>('GET', '/api/v1/clips?limit=12'),
    ])
      .then(([live, vods, clips]) => setData({ live: live.channels, vods: vods.vods, clips: clips.clips }))
      .catch((failure) => setError(messageOf(failure)));
  }, []);
  if (error) return <FormError text={error} />;
  if (!data) return null;
  return (
    <>
      <h1 class="visually-hidden">Aether</h1>
      <section aria-labelledby="live-heading">
        <h2 id="live-heading">Live now</h2>
        {data.live.length ? (
          <ul class="cards">
            {data.live.map((channel) => (
              <ChannelCard channel={channel} key={channel.name} />
            ))}
          </ul>
        ) : (
          <p class="muted">Nobody is live right now.</p>
        )}
      </section>
      <section aria-labelledby="vods-heading">
        <h2 id="vods-heading">Recent broadcasts</h2>
        {data.vods.length ? (
          <ul class="cards">
            {data.vods.map((vod) => (
              <VodCard vod={vod} key={vod.id} />
            ))}
          </ul>
        ) : (
          <p class="muted">No public broadcasts yet.</p>
        )}
      </section>
      <section aria-labelledby="clips-heading">
        <h2 id="clips-heading">Clips</h2>
        {data.clips.length ? (
          <ul class="cards">
            {data.clips.map((clip) => (
              <ClipCard clip={clip} key={clip.id} />
            ))}
          </ul>
        ) : (
          <p class="muted">No clips yet.</p>
        )}
      </section>
    </>
  );
}
