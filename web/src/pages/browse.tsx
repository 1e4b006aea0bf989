// Browse: the categories (live ones first, by viewers), and the live channels of one category
// or tag, most watched first.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type Channel, type Listing } from '../api';
import { ChannelCard } from '../components/cards';
import { FormError, Link, useTitle } from '../components/ui';
import { formatCount } from '../dom';
import { query } from '../nav';

interface Category {
  name: string;
  live_channels: number;
  viewers: number;
  channels: number;
}

export function BrowsePage() {
  const category = query('category');
  const tag = query('tag');
  useTitle(category ?? (tag ? `#${tag}` : 'Browse'));
  const [categories, setCategories] = useState<Category[]>([]);
  const [live, setLive] = useState<Channel[] | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api<Listing<Category>>('GET', '/api/v1/categories')
      .then((list) => setCategories(list.items))
      .catch((failure) => setError(messageOf(failure)));
    const filter = category ? `&category=${encodeURIComponent(category)}` : tag ? `&tag=${encodeURIComponent(tag)}` : '';
    api<{ channels: Channel[] }>('GET', `/api/v1/channels?live=true&limit=100${filter}`)
      .then((list) => setLive(list.channels))
      .catch((failure) => setError(messageOf(failure)));
  }, [category, tag]);
  return (
    <section>
      <h1>{category ?? (tag ? `#${tag}` : 'Browse')}</h1>
      <FormError text={error} />
      <nav class="chips" aria-label="Categories">
        <Link href="/browse" aria-current={!category && !tag ? 'page' : undefined}>
          All
        </Link>
        {categories.map((c) => (
          <Link href={`/browse?category=${encodeURIComponent(c.name)}`} key={c.name} aria-current={c.name === category ? 'page' : undefined}>
            {c.name}
            {c.live_channels > 0 && <span class="muted small"> · {c.live_channels} live · {formatCount(c.viewers)} watching</span>}
          </Link>
        ))}
      </nav>
      {live && live.length === 0 && <p class="muted">Nobody is live here right now.</p>}
      <ul class="cards" data-testid="browse">
        {(live ?? []).map((channel) => (
          <ChannelCard channel={channel} key={channel.name} />
        ))}
      </ul>
    </section>
  );
}
