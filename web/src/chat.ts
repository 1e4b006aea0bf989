// The chat panel: one WebSocket (docs/chat-protocol.md), history on join, live messages,
// presence, the send box, moderation for moderators, reconnects that resume with `since`.

import { h, link, clear } from './dom';
import { toast } from './toast';

export interface ChatMessage {
  type: 'msg';
  room: string;
  id: string;
  user: { name: string; badges: string[] };
  text: string;
  ts: number;
  nonce?: string;
}

interface You {
  name: string;
  badges: string[];
  moderator: boolean;
}

type ServerFrame =
  | ChatMessage
  | { type: 'joined'; room: string; history: ChatMessage[]; presence: { count: number }; recovered?: boolean; you?: You }
  | { type: 'presence'; room: string; count: number; users: number }
  | { type: 'deleted'; room: string; id: string }
  | { type: 'notice'; room: string; text: string }
  | { type: 'left'; room: string }
  | { type: 'pong' }
  | { type: 'error'; code: string; message: string };

export interface ChatOptions {
  room: string;
  signedIn: boolean;
  maxChars: number;
  onPresence?: (count: number) => void;
  onNotice?: (text: string) => void;
}

export interface ChatPanel {
  el: HTMLElement;
  /// Sends a frame of the protocol (moderation: slow mode, followers-only); false when not
  /// connected.
  command(frame: object): boolean;
  destroy(): void;
}

const KEEP = 300; // messages kept on screen
const ERRORS_THAT_KEEP_TEXT = new Set(['rate_limited', 'slow_mode', 'timed_out', 'banned', 'invalid_message', 'followers_only']);

export function chatPanel(options: ChatOptions): ChatPanel {
  const { room } = options;
  const list = h('ol', { class: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Chat messages' });
  const status = h('p', { class: 'chat-status', role: 'status' }, 'Connecting…');
  const more = h('button', { class: 'chat-more', type: 'button', hidden: true }, 'More messages below');
  const presence = h('span', { class: 'chat-presence', 'aria-label': 'People in chat' });
  let you: You | undefined;
  let socket: WebSocket | undefined;
  let lastId: string | undefined;
  let stick = true;
  let closed = false;
  let retry = 0;
  let retryTimer = 0;
  let pingTimer = 0;
  let lastSent: { text: string; at: number } | undefined;

  const input = h('input', {
    id: `chat-input-${room}`,
    name: 'message',
    autocomplete: 'off',
    maxlength: options.maxChars,
    placeholder: 'Send a message',
    'aria-label': 'Chat message',
  });
  const sendBox = options.signedIn
    ? h(
        'form',
        { class: 'chat-send', onsubmit: (event: Event) => (event.preventDefault(), sendMessage()) },
        input,
        h('button', { type: 'submit', class: 'primary' }, 'Chat'),
      )
    : h(
        'p',
        { class: 'chat-signin' },
        link(`/login?next=${encodeURIComponent(location.pathname)}`, {}, 'Log in'),
        ' or ',
        link('/signup', {}, 'sign up'),
        ' to chat.',
      );

  const el = h(
    'section',
    { class: 'chat', 'aria-label': 'Chat' },
    h('div', { class: 'chat-head' }, h('h2', {}, 'Chat'), presence),
    h('div', { class: 'chat-body' }, list, more),
    status,
    sendBox,
  );

  list.addEventListener('scroll', () => {
    stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
    if (stick) more.hidden = true;
  });
  more.addEventListener('click', () => {
    stick = true;
    more.hidden = true;
    list.scrollTop = list.scrollHeight;
  });

  function sendFrame(frame: object): boolean {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      toast('Chat is not connected yet.', 'error');
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }

  function sendMessage(): void {
    const text = input.value.trim();
    if (!text) return;
    if (sendFrame({ type: 'send', room, text })) {
      lastSent = { text: input.value, at: Date.now() };
      input.value = '';
    }
  }

  function scrolled(): void {
    while (list.children.length > KEEP) list.firstElementChild?.remove();
    if (stick) list.scrollTop = list.scrollHeight;
    else more.hidden = false;
  }

  function moderationMenu(message: ChatMessage): HTMLElement | null {
    if (!you?.moderator || message.user.name === you.name) return null;
    const menu = h('div', { class: 'menu', role: 'menu', hidden: true });
    const toggle = h(
      'button',
      {
        type: 'button',
        class: 'msg-menu',
        'aria-haspopup': 'menu',
        'aria-expanded': 'false',
        'aria-label': `Moderate the message from ${message.user.name}`,
      },
      '⋯',
    );
    const close = () => {
      menu.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
    };
    const item = (label: string, frame: object) =>
      h('button', { type: 'button', role: 'menuitem', onclick: () => (sendFrame(frame), close()) }, label);
    menu.append(
      item('Delete message', { type: 'delete', room, id: message.id }),
      item('Time out 10 minutes', { type: 'timeout', room, user: message.user.name, seconds: 600 }),
      item(`Ban ${message.user.name}`, { type: 'ban', room, user: message.user.name }),
    );
    toggle.addEventListener('click', () => {
      menu.hidden = !menu.hidden;
      toggle.setAttribute('aria-expanded', String(!menu.hidden));
      if (!menu.hidden) (menu.firstElementChild as HTMLElement | null)?.focus();
    });
    menu.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        close();
        toggle.focus();
      }
    });
    return h('span', { class: 'msg-actions' }, toggle, menu);
  }

  function renderMessage(message: ChatMessage): HTMLElement {
    const badges = message.user.badges.map((badge) => h('span', { class: `badge ${badge}`, title: badge }, badge[0].toUpperCase()));
    return h(
      'li',
      { class: 'msg', 'data-id': message.id },
      h('span', { class: 'msg-user' }, badges, h('strong', { class: `name c${hue(message.user.name)}` }, message.user.name)),
      ': ',
      h('span', { class: 'msg-text' }, message.text),
      moderationMenu(message),
    );
  }

  function notice(text: string): void {
    list.append(h('li', { class: 'notice' }, text));
    scrolled();
  }

  function onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'joined':
        you = frame.you;
        if (frame.recovered !== true) clear(list);
        for (const message of frame.history) list.append(renderMessage(message));
        if (frame.history.length) lastId = frame.history[frame.history.length - 1].id;
        setPresence(frame.presence.count);
        status.textContent = '';
        status.hidden = true;
        retry = 0;
        scrolled();
        break;
      case 'msg':
        if (frame.room !== room) return;
        list.append(renderMessage(frame));
        lastId = frame.id;
        scrolled();
        break;
      case 'deleted':
        list.querySelector(`li[data-id="${CSS.escape(frame.id)}"]`)?.remove();
        break;
      case 'presence':
        setPresence(frame.count);
        break;
      case 'notice':
        notice(frame.text);
        options.onNotice?.(frame.text);
        break;
      case 'error':
        toast(frame.message, 'error');
        if (lastSent && ERRORS_THAT_KEEP_TEXT.has(frame.code) && Date.now() - lastSent.at < 5000 && !input.value) {
          input.value = lastSent.text;
        }
        lastSent = undefined;
        break;
      default:
        break;
    }
  }

  function setPresence(count: number): void {
    presence.textContent = `${count} here`;
    options.onPresence?.(count);
  }

  function connect(): void {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    socket = ws;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify(lastId ? { type: 'join', room, since: lastId } : { type: 'join', room }));
      pingTimer = window.setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"type":"ping"}'), 30000);
    });
    ws.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') return;
      try {
        onFrame(JSON.parse(event.data) as ServerFrame);
      } catch {
        // A frame we cannot read is skipped; the next one may be fine.
      }
    });
    ws.addEventListener('close', (event) => {
      window.clearInterval(pingTimer);
      if (closed) return;
      const why =
        event.code === 1008
          ? 'Disconnected: too many rejected messages.'
          : event.code === 4008
            ? 'Disconnected: the connection fell behind.'
            : 'Chat disconnected.';
      const delay = Math.min(15000, 1000 * 2 ** retry++);
      status.hidden = false;
      status.textContent = `${why} Reconnecting in ${Math.round(delay / 1000)} s…`;
      retryTimer = window.setTimeout(connect, delay);
    });
  }

  connect();

  return {
    el,
    command: sendFrame,
    destroy() {
      closed = true;
      window.clearTimeout(retryTimer);
      window.clearInterval(pingTimer);
      socket?.close(1000);
    },
  };
}

/// A stable colour class (0-7) for a user name.
function hue(name: string): number {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (hash * 31 + name.charCodeAt(i)) | 0;
  return Math.abs(hash) % 8;
}
