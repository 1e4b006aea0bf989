// The notifications page: unread first, then the rest, newest first; more on demand; opening one
// marks it read; "Mark all read". New ones arrive while the page is open.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, me, type Notification } from '../api';
import { describe, unread } from '../components/bell';
import { FormError, Link, usePaged, useTitle } from '../components/ui';
import { currentUser } from '../state';
import { formatCount, timeAgo } from '../dom';
import { navigate } from '../nav';

export function NotificationsPage() {
  useTitle('Notifications');
  const user = currentUser.value;
  const { items, setItems, loaded, error: loadError, more } = usePaged<Notification>('/api/v1/me/notifications?limit=30', !!user);
  const [failure, setError] = useState('');
  const error = failure || loadError;

  useEffect(() => {
    void me().then((signedIn) => signedIn || navigate('/login?next=/notifications', true));
    const arrived = (event: Event) => setItems((old) => [(event as CustomEvent<Notification>).detail, ...old]);
    window.addEventListener('aether:notification', arrived);
    return () => window.removeEventListener('aether:notification', arrived);
  }, []);

  const markRead = async (body: { ids: number[] } | { all: true }) => {
    try {
      const { count } = await api<{ count: number }>('POST', '/api/v1/me/notifications/read', body);
      unread.value = count;
      const now = Date.now();
      setItems((old) => old.map((n) => ('all' in body || body.ids.includes(n.id) ? { ...n, read_at: n.read_at ?? now } : n)));
    } catch (failure) {
      setError(messageOf(failure));
    }
  };

  const open = (n: Notification, href: string) => (event: Event) => {
    event.preventDefault();
    if (!n.read_at) void markRead({ ids: [n.id] });
    navigate(href);
  };

  return (
    <section class="narrow">
      <div class="title-row">
        <h1>Notifications</h1>
        <span class="spacer" />
        <button type="button" onClick={() => void markRead({ all: true })} disabled={!items.some((n) => !n.read_at)}>
          Mark all read
        </button>
      </div>
      <FormError text={error} />
      {loaded && items.length === 0 && <p class="muted">Nothing yet. Follow channels to hear when they go live.</p>}
      <ul class="notifications" data-testid="notifications">
        {items.map((n) => {
          const { text, href } = describe(n);
          return (
            <li key={n.id} class={n.read_at ? 'read' : 'unread'}>
              <a href={href} onClick={open(n, href)}>
                {!n.read_at && <span class="dot" aria-label="unread" />}
                <span>{text}</span>
              </a>
              <span class="muted small">{timeAgo(n.created_at)}</span>
            </li>
          );
        })}
      </ul>
      {more && (
        <button type="button" onClick={more}>
          Show older
        </button>
      )}
      {unread.value > 30 && <p class="muted">{formatCount(unread.value)} unread</p>}
      <p class="muted">
        <Link href="/settings/notifications">Choose what you are told</Link>
      </p>
    </section>
  );
}
