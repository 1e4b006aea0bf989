// A user's public profile: banner, picture, name, bio, links, their channels, and the recent
// broadcasts and clips of those channels.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, messageOf, type Channel, type Clip, type Vod } from '../api';
import { ChannelCard, ClipCard, VodCard } from '../components/cards';
import { FormError, Link, useTitle } from '../components/ui';
import { currentUser } from '../state';

export interface Profile {
  username: string;
  display_name: string;
  bio: string;
  links: { title: string; url: string }[];
  avatar_url: string | null;
  banner_url: string | null;
  created_at: number;
  channels: Channel[];
}

export function Avatar({ profile, size = 96 }: { profile: Pick<Profile, 'avatar_url' | 'username'>; size?: number }) {
  return profile.avatar_url ? (
    <img class="avatar" src={profile.avatar_url} alt="" width={size} height={size} />
  ) : (
    <span class="avatar initial" style={{ width: `${size}px`, height: `${size}px`, fontSize: `${size / 2.4}px` }} aria-hidden="true">
      {profile.username.slice(0, 1).toUpperCase()}
    </span>
  );
}

export function ProfilePage({ username }: { username: string }) {
  const [profile, setProfile] = useState<Profile | null>(null);
  const [media, setMedia] = useState<{ vods: Vod[]; clips: Clip[] }>({ vods: [], clips: [] });
  const [error, setError] = useState('');
  useTitle(profile?.display_name ?? username);
  useEffect(() => {
    api<Profile>('GET', `/api/v1/users/${username}`)
      .then(async (found) => {
        setProfile(found);
        const lists = await Promise.all(
          found.channels.map((c) =>
            Promise.all([
              api<{ vods: Vod[] }>('GET', `/api/v1/channels/${c.name}/vods?limit=12`).catch(() => ({ vods: [] })),
              api<{ clips: Clip[] }>('GET', `/api/v1/channels/${c.name}/clips?limit=12`).catch(() => ({ clips: [] })),
            ]),
          ),
        );
        setMedia({ vods: lists.flatMap(([v]) => v.vods), clips: lists.flatMap(([, c]) => c.clips) });
      })
      .catch((failure) => setError(failure instanceof ApiError && failure.status === 404 ? `There is nobody called “${username}”.` : messageOf(failure)));
  }, [username]);
  if (error) return <FormError text={error} />;
  if (!profile) return null;
  const mine = currentUser.value?.username === profile.username;
  return (
    <article class="profile">
      <div class="banner" style={profile.banner_url ? { backgroundImage: `url("${profile.banner_url}")` } : undefined} />
      <header class="profile-head">
        <Avatar profile={profile} />
        <div>
          <h1>{profile.display_name}</h1>
          <p class="muted">
            @{profile.username} · joined {new Date(profile.created_at).toLocaleDateString()}
            {mine && (
              <>
                {' · '}
                <Link href="/settings/profile">Edit your profile</Link>
              </>
            )}
          </p>
        </div>
      </header>
      {profile.bio && <p class="bio">{profile.bio}</p>}
      {profile.links.length > 0 && (
        <ul class="links">
          {profile.links.map((link) => (
            <li key={link.url}>
              <a href={link.url} rel="nofollow ugc noopener noreferrer" target="_blank">
                {link.title || link.url}
              </a>
            </li>
          ))}
        </ul>
      )}
      {profile.channels.length > 0 && (
        <section aria-labelledby="channels-heading">
          <h2 id="channels-heading">Channels</h2>
          <ul class="cards">
            {profile.channels.map((channel) => (
              <ChannelCard channel={channel} key={channel.name} />
            ))}
          </ul>
        </section>
      )}
      {media.vods.length > 0 && (
        <section aria-labelledby="vods-heading">
          <h2 id="vods-heading">Broadcasts</h2>
          <ul class="cards">
            {media.vods.map((vod) => (
              <VodCard vod={vod} key={vod.id} />
            ))}
          </ul>
        </section>
      )}
      {media.clips.length > 0 && (
        <section aria-labelledby="clips-heading">
          <h2 id="clips-heading">Clips</h2>
          <ul class="cards">
            {media.clips.map((clip) => (
              <ClipCard clip={clip} key={clip.id} />
            ))}
          </ul>
        </section>
      )}
    </article>
  );
}
