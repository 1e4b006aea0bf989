// Search: channels, people, broadcasts and clips matching the words typed (as you type), each
// kind with more on demand.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type Channel, type Clip, type Listing, type Vod } from '../api';
import { ChannelCard, ClipCard, VodCard } from '../components/cards';
import { FormError, Link, useTitle } from '../components/ui';
import { navigate, query } from '../nav';
import { Avatar } from './profile';

interface UserCard {
  username: string;
  display_name: string;
  avatar_url: string | null;
}

type Kind = 'channels' | 'users' | 'vods' | 'clips';
const KINDS: [Kind, string][] = [
  ['channels', 'Channels'],
  ['users', 'People'],
  ['vods', 'Broadcasts'],
  ['clips', 'Clips'],
];

function Results({ kind, q }: { kind: Kind; q: string }) {
  const [items, setItems] = useState<unknown[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState('');
  const load = async (after: string | null) => {
    try {
      const page = await api<Listing<unknown>>('GET', `/api/v1/search?type=${kind}&limit=12&q=${encodeURIComponent(q)}${after ? `&cursor=${after}` : ''}`);
      setItems((old) => (after ? [...old, ...page.items] : page.items));
      setCursor(page.next_cursor);
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  useEffect(() => {
    setItems([]);
    void load(null);
  }, [kind, q]);
  if (error) return <FormError text={error} />;
  if (items.length === 0) return null;
  const label = KINDS.find(([k]) => k === kind)?.[1] ?? kind;
  return (
    <section aria-labelledby={`results-${kind}`} data-testid={`results-${kind}`}>
      <h2 id={`results-${kind}`}>{label}</h2>
      {kind === 'users' ? (
        <ul class="people">
          {(items as UserCard[]).map((user) => (
            <li key={user.username}>
              <Link href={`/u/${user.username}`}>
                <Avatar profile={user} size={40} />
                <span>
                  <strong>{user.display_name}</strong> <span class="muted">@{user.username}</span>
                </span>
              </Link>
            </li>
          ))}
        </ul>
      ) : (
        <ul class="cards">
          {kind === 'channels' && (items as Channel[]).map((c) => <ChannelCard channel={c} key={c.name} />)}
          {kind === 'vods' && (items as Vod[]).map((v) => <VodCard vod={v} key={v.id} />)}
          {kind === 'clips' && (items as Clip[]).map((c) => <ClipCard clip={c} key={c.id} />)}
        </ul>
      )}
      {cursor && (
        <button type="button" class="small" onClick={() => void load(cursor)}>
          More {label.toLowerCase()}
        </button>
      )}
    </section>
  );
}

export function SearchPage() {
  const q = query('q') ?? '';
  useTitle(q ? `“${q}”` : 'Search');
  const [text, setText] = useState(q);
  useEffect(() => {
    // Search as you type, a moment after the last key.
    const timer = window.setTimeout(() => {
      if (text.trim() !== q) navigate(`/search?q=${encodeURIComponent(text.trim())}`, true);
    }, 300);
    return () => window.clearTimeout(timer);
  }, [text]);
  return (
    <section>
      <form role="search" onSubmit={(e) => (e.preventDefault(), navigate(`/search?q=${encodeURIComponent(text.trim())}`, true))}>
        <input
          type="search"
          class="search-box"
          aria-label="Search"
          placeholder="Search channels, people, broadcasts, clips"
          value={text}
          onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)}
          autofocus
        />
      </form>
      {q && KINDS.map(([kind]) => <Results kind={kind} q={q} key={kind} />)}
      {q && <p class="muted small">Nothing else matches “{q}”.</p>}
    </section>
  );
}
