// The channels you follow: live ones first (as the server lists them, newest follow first), each
// with what you want to hear of it and an unfollow button.

import { useEffect } from 'preact/hooks';
import { api, messageOf, me, type Channel, type FollowLevel } from '../api';
import { FormError, Link, usePaged, useTitle } from '../components/ui';
import { currentUser } from '../state';
import { formatCount } from '../dom';
import { navigate } from '../nav';
import { toast } from '../toast';

interface Followed {
  channel: Channel;
  followed_at: number;
  notify: FollowLevel;
}

export const LEVELS: [FollowLevel, string][] = [
  ['all', 'Everything'],
  ['live', 'Only go-live'],
  ['off', 'Nothing'],
];

export function FollowingPage() {
  useTitle('Following');
  const user = currentUser.value;
  const { items, setItems, loaded, error, more } = usePaged<Followed>('/api/v1/me/following?limit=48', !!user);
  useEffect(() => {
    void me().then((signedIn) => signedIn || navigate('/login?next=/following', true));
  }, []);

  const setLevel = async (name: string, notify: FollowLevel) => {
    try {
      await api('PATCH', `/api/v1/channels/${name}/follow`, { notify });
      setItems((old) => old.map((f) => (f.channel.name === name ? { ...f, notify } : f)));
      toast('Saved');
    } catch (failure) {
      toast(messageOf(failure), 'error');
    }
  };
  const unfollow = async (name: string) => {
    try {
      await api('DELETE', `/api/v1/channels/${name}/follow`);
      setItems((old) => old.filter((f) => f.channel.name !== name));
    } catch (failure) {
      toast(messageOf(failure), 'error');
    }
  };

  const sorted = [...items].sort((a, b) => Number(b.channel.live) - Number(a.channel.live));
  return (
    <section>
      <h1>Following</h1>
      <FormError text={error} />
      {loaded && items.length === 0 && (
        <p class="muted">
          You follow nobody yet. <Link href="/">Find someone live</Link>.
        </p>
      )}
      <ul class="cards" data-testid="following">
        {sorted.map(({ channel, notify }) => (
          <li class="card" key={channel.name}>
            <Link href={`/${channel.name}`} class="card-link">
              <div class="thumb">
                {channel.thumbnail_url ? <img src={channel.thumbnail_url} alt="" loading="lazy" width={320} height={180} /> : <div class="thumb-missing" aria-hidden="true">▶</div>}
                {channel.live && <span class="tag live">LIVE</span>}
                {channel.live && <span class="tag count">{formatCount(channel.viewers)} watching</span>}
              </div>
              <strong class="card-title">{channel.title || channel.name}</strong>
              <span class="card-meta">{channel.name}</span>
            </Link>
            <div class="card-actions">
              <label class="small">
                Notify{' '}
                <select value={notify} onChange={(e) => void setLevel(channel.name, (e.currentTarget as HTMLSelectElement).value as FollowLevel)} aria-label={`Notifications from ${channel.name}`}>
                  {LEVELS.map(([level, label]) => (
                    <option value={level} key={level}>
                      {label}
                    </option>
                  ))}
                </select>
              </label>
              <button type="button" class="small" onClick={() => void unfollow(channel.name)}>
                Unfollow
              </button>
            </div>
          </li>
        ))}
      </ul>
      {more && (
        <button type="button" onClick={more}>
          Show more
        </button>
      )}
    </section>
  );
}
