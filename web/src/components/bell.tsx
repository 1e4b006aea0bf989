// The notification bell: the unread count (asked once, then kept current over the `@me` room of
// the WebSocket, so it updates without polling), and a toast for each new notification.

import { signal } from '@preact/signals';
import { useEffect } from 'preact/hooks';
import { api, type Notification } from '../api';
import { toast } from '../toast';
import { Link } from './ui';

export const unread = signal(0);
const CAP = 100;

/// What a notification says, and where it leads.
export function describe(n: Notification): { text: string; href: string } {
  switch (n.kind) {
    case 'go_live':
      return { text: `${n.data.channel} is live${n.data.title ? `: ${n.data.title}` : ''}`, href: `/${n.data.channel}` };
    case 'new_follower':
      return { text: `${n.data.follower} followed ${n.data.channel}`, href: `/dashboard?channel=${n.data.channel}` };
    case 'mention':
      return { text: `${n.data.from} mentioned you in ${n.data.room}: ${n.data.text}`, href: `/${n.data.room}` };
    default:
      return { text: 'Something happened', href: '/notifications' };
  }
}

export async function refreshUnread(): Promise<void> {
  try {
    unread.value = (await api<{ count: number }>('GET', '/api/v1/me/notifications/unread-count')).count;
  } catch {
    // The bell keeps its last count.
  }
}

/// Listens on the user's `@me` room; reconnects with backoff. Returns the stop function.
function listen(): () => void {
  let socket: WebSocket | undefined;
  let stopped = false;
  let retry = 0;
  let timer = 0;
  const connect = () => {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/ws`);
    socket.onopen = () => {
      retry = 0;
      socket?.send(JSON.stringify({ type: 'join', room: '@me' }));
      void refreshUnread();
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data)) as { type: string; notification?: Notification };
      if (frame.type === 'notification' && frame.notification) {
        unread.value = Math.min(unread.value + 1, CAP);
        const { text, href } = describe(frame.notification);
        toast(text, 'info', { href, label: 'Open' });
        window.dispatchEvent(new CustomEvent('aether:notification', { detail: frame.notification }));
      }
    };
    socket.onclose = () => {
      if (stopped) return;
      timer = window.setTimeout(connect, Math.min(30000, 1000 * 2 ** retry++));
    };
  };
  connect();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    socket?.close();
  };
}

export function Bell() {
  useEffect(() => {
    void refreshUnread();
    return listen();
  }, []);
  const n = unread.value;
  return (
    <Link href="/notifications" class="bell" aria-label={n ? `Notifications, ${n} unread` : 'Notifications'} data-testid="bell">
      <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true">
        <path fill="currentColor" d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z" />
      </svg>
      {n > 0 && <span class="badge" data-testid="unread-count">{n >= CAP ? '99+' : n}</span>}
    </Link>
  );
}
