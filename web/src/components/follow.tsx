// The follow button of a channel page: the follower count, follow / unfollow, and what to hear.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type FollowLevel, type FollowState } from '../api';
import { formatCount } from '../dom';
import { navigate } from '../nav';
import { LEVELS } from '../pages/following';
import { currentUser } from '../state';
import { toast } from '../toast';

export function FollowButton({ channel, owner }: { channel: string; owner: string }) {
  const [state, setState] = useState<FollowState | null>(null);
  const [busy, setBusy] = useState(false);
  const path = `/api/v1/channels/${channel}/follow`;
  useEffect(() => {
    api<FollowState>('GET', path).then(setState).catch(() => undefined);
  }, [channel, currentUser.value?.id]);
  if (!state) return null;
  const user = currentUser.value;
  const own = user?.username === owner;
  const act = async (method: 'PUT' | 'DELETE' | 'PATCH', body?: { notify: FollowLevel }) => {
    if (!user) {
      navigate(`/login?next=/${channel}`);
      return;
    }
    setBusy(true);
    try {
      setState(await api<FollowState>(method, path, body));
    } catch (failure) {
      toast(messageOf(failure), 'error');
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="follow">
      <span class="muted" data-testid="followers">
        {formatCount(state.followers)} {state.followers === 1 ? 'follower' : 'followers'}
      </span>
      {!own &&
        (state.following ? (
          <>
            <select
              value={state.notify ?? 'all'}
              aria-label="Notifications from this channel"
              onChange={(e) => void act('PATCH', { notify: (e.currentTarget as HTMLSelectElement).value as FollowLevel })}
            >
              {LEVELS.map(([level, label]) => (
                <option value={level} key={level}>
                  {label}
                </option>
              ))}
            </select>
            <button type="button" disabled={busy} onClick={() => void act('DELETE')}>
              Unfollow
            </button>
          </>
        ) : (
          <button type="button" class="primary" disabled={busy} onClick={() => void act('PUT')}>
            Follow
          </button>
        ))}
    </span>
  );
}
