// Account settings: the email address (verified or not, a new link, a change confirmed from the
// new address), the password, what you are told and how, and the people you blocked.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, reloadMe, setMe, type Listing } from '../api';
import { Avatar, type Profile } from './profile';
import { Field, FormError, useTitle, value } from '../components/ui';
import { navigate, query } from '../nav';
import { currentUser, route } from '../state';
import { toast } from '../toast';

interface KindSetting {
  kind: string;
  label: string;
  in_app: boolean;
  email: boolean;
}

function ProfileSection() {
  const user = currentUser.value;
  const [profile, setProfile] = useState<Profile | null>(null);
  const [links, setLinks] = useState<{ title: string; url: string }[]>([]);
  const [error, setError] = useState('');
  useEffect(() => {
    if (!user) return;
    api<Profile>('GET', `/api/v1/users/${user.username}`)
      .then((found) => {
        setProfile(found);
        setLinks(found.links);
      })
      .catch((failure) => setError(messageOf(failure)));
  }, [user?.username]);
  if (!user || !profile) return null;
  const save = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    setError('');
    try {
      const saved = await api<Profile>('PATCH', '/api/v1/me/profile', {
        display_name: value(form, 'display-name'),
        bio: value(form, 'bio'),
        links: links.filter((link) => link.url.trim()),
      });
      setProfile(saved);
      setLinks(saved.links);
      toast('Profile saved');
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  const upload = (which: 'avatar' | 'banner') => async (event: Event) => {
    const input = event.currentTarget as HTMLInputElement;
    const file = input.files?.[0];
    if (!file) return;
    setError('');
    try {
      setProfile(await api<Profile>('PUT', `/api/v1/me/${which}`, file));
      toast(which === 'avatar' ? 'Picture changed' : 'Banner changed');
    } catch (failure) {
      setError(messageOf(failure));
    } finally {
      input.value = '';
    }
  };
  const setLink = (index: number, field: 'title' | 'url', text: string) =>
    setLinks((old) => old.map((link, i) => (i === index ? { ...link, [field]: text } : link)));
  return (
    <section class="panel" aria-labelledby="profile-heading" id="profile">
      <h2 id="profile-heading">Profile</h2>
      <div class="title-row">
        <Avatar profile={profile} size={64} />
        <label class="button">
          Change picture
          <input type="file" accept="image/png,image/jpeg,image/gif,image/webp" class="visually-hidden" onChange={upload('avatar')} />
        </label>
        <label class="button">
          Change banner
          <input type="file" accept="image/png,image/jpeg,image/gif,image/webp" class="visually-hidden" onChange={upload('banner')} />
        </label>
        <a href={`/u/${user.username}`} data-link="">
          See your profile
        </a>
      </div>
      <form onSubmit={save}>
        <Field id="display-name" label="Display name" maxLength={50} required={false} defaultValue={profile.display_name} />
        <div class="field">
          <label for="bio">Bio</label>
          <textarea id="bio" name="bio" maxLength={1000} defaultValue={profile.bio} />
        </div>
        <fieldset class="link-rows">
          <legend>Links</legend>
          {links.map((link, index) => (
            <div class="row" key={index}>
              <input aria-label={`Link ${index + 1} title`} value={link.title} maxLength={50} onInput={(e) => setLink(index, 'title', (e.currentTarget as HTMLInputElement).value)} />
              <input aria-label={`Link ${index + 1} address`} type="url" value={link.url} placeholder="https://" onInput={(e) => setLink(index, 'url', (e.currentTarget as HTMLInputElement).value)} />
              <button type="button" class="small" onClick={() => setLinks((old) => old.filter((_, i) => i !== index))}>
                Remove
              </button>
            </div>
          ))}
          {links.length < 5 && (
            <button type="button" class="small" onClick={() => setLinks((old) => [...old, { title: '', url: '' }])}>
              Add a link
            </button>
          )}
        </fieldset>
        <button type="submit" class="primary">
          Save profile
        </button>
      </form>
      <FormError text={error} />
    </section>
  );
}

interface Export {
  id: number;
  status: 'pending' | 'ready' | 'failed';
  bytes: number | null;
  created_at: number;
}

function AccountSection() {
  const [exports, setExports] = useState<Export[]>([]);
  const [error, setError] = useState('');
  const load = () =>
    api<Listing<Export>>('GET', '/api/v1/me/exports')
      .then((list) => setExports(list.items))
      .catch(() => undefined);
  useEffect(() => {
    void load();
    const timer = window.setInterval(() => void load(), 5000);
    return () => window.clearInterval(timer);
  }, []);
  const requestExport = async () => {
    try {
      await api('POST', '/api/v1/me/export');
      await load();
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  const remove = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    if (!confirm('Delete your account, your channels, their recordings and clips? This cannot be undone.')) return;
    try {
      await api('DELETE', '/api/v1/me', { password: value(form, 'delete-password') });
      setMe(null);
      navigate('/', true);
      toast('Your account was deleted.');
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  return (
    <section class="panel" aria-labelledby="account-heading" id="account">
      <h2 id="account-heading">Your data</h2>
      <p>
        <button type="button" onClick={() => void requestExport()} disabled={exports.some((e) => e.status === 'pending')}>
          Export my data
        </button>{' '}
        <span class="muted small">A JSON file of your account, profile, channels, recordings, clips and follows.</span>
      </p>
      <ul class="plain" data-testid="exports">
        {exports.map((e) => (
          <li key={e.id}>
            {new Date(e.created_at).toLocaleString()}:{' '}
            {e.status === 'ready' ? <a href={`/api/v1/me/exports/${e.id}`}>Download ({Math.ceil((e.bytes ?? 0) / 1024)} KB)</a> : e.status === 'pending' ? 'being made…' : 'failed'}
          </li>
        ))}
      </ul>
      <h3>Delete your account</h3>
      <p class="muted small">
        Your channels, their recordings and clips, the clips you made, your follows and notifications are deleted with it, and the stored media soon after.
      </p>
      <form onSubmit={remove} class="inline-form">
        <Field id="delete-password" label="Your password" type="password" autocomplete="current-password" />
        <button type="submit" class="danger">
          Delete my account
        </button>
      </form>
      <FormError text={error} />
    </section>
  );
}

function EmailSection() {
  const user = currentUser.value;
  const [error, setError] = useState('');
  const [note, setNote] = useState('');
  if (!user) return null;
  const resend = async () => {
    try {
      setNote((await api<{ message: string }>('POST', '/api/v1/me/email/verification')).message);
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  const change = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    setError('');
    try {
      const { message } = await api<{ message: string }>('PUT', '/api/v1/me/email', { email: value(form, 'new-email'), password: value(form, 'email-password') });
      setNote(message);
      form.reset();
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  return (
    <section class="panel" aria-labelledby="email-heading" id="email">
      <h2 id="email-heading">Email</h2>
      <p>
        {user.email}{' '}
        {user.email_verified_at ? (
          <span class="tag ok">verified</span>
        ) : (
          <>
            <span class="tag warn">not verified</span>{' '}
            <button type="button" class="small" onClick={() => void resend()}>
              Send the link again
            </button>
          </>
        )}
      </p>
      <form onSubmit={change} class="inline-form">
        <Field id="new-email" label="New address" type="email" autocomplete="email" />
        <Field id="email-password" label="Your password" type="password" autocomplete="current-password" />
        <button type="submit">Change address</button>
      </form>
      {note && <p role="status">{note}</p>}
      <FormError text={error} />
    </section>
  );
}

function PasswordSection() {
  const [error, setError] = useState('');
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    setError('');
    try {
      await api('PUT', '/api/v1/me/password', { current_password: value(form, 'current-password'), new_password: value(form, 'new-password') });
      form.reset();
      toast('Password changed; your other sessions were signed out.');
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  return (
    <section class="panel" aria-labelledby="password-heading" id="password">
      <h2 id="password-heading">Password</h2>
      <form onSubmit={submit} class="inline-form">
        <Field id="current-password" label="Current password" type="password" autocomplete="current-password" />
        <Field id="new-password" label="New password" type="password" autocomplete="new-password" minLength={8} />
        <button type="submit">Change password</button>
      </form>
      <FormError text={error} />
    </section>
  );
}

function NotificationsSection() {
  const [kinds, setKinds] = useState<KindSetting[]>([]);
  const [error, setError] = useState('');
  useEffect(() => {
    api<{ kinds: KindSetting[] }>('GET', '/api/v1/me/notification-settings')
      .then((settings) => setKinds(settings.kinds))
      .catch((failure) => setError(messageOf(failure)));
  }, []);
  const toggle = async (kind: string, field: 'in_app' | 'email', on: boolean) => {
    const next = kinds.map((k) => (k.kind === kind ? { ...k, [field]: on } : k));
    try {
      const saved = await api<{ kinds: KindSetting[] }>('PUT', '/api/v1/me/notification-settings', {
        kinds: next.map(({ kind, in_app, email }) => ({ kind, in_app, email })),
      });
      setKinds(saved.kinds);
      toast('Saved');
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  return (
    <section class="panel" aria-labelledby="notifications-heading" id="notifications">
      <h2 id="notifications-heading">Notifications</h2>
      <table class="prefs">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">In the app</th>
            <th scope="col">By email</th>
          </tr>
        </thead>
        <tbody>
          {kinds.map((k) => (
            <tr key={k.kind}>
              <th scope="row">{k.label}</th>
              {(['in_app', 'email'] as const).map((field) => (
                <td key={field}>
                  <input
                    type="checkbox"
                    checked={k[field]}
                    aria-label={`${k.label}: ${field === 'in_app' ? 'in the app' : 'by email'}`}
                    onChange={(e) => void toggle(k.kind, field, (e.currentTarget as HTMLInputElement).checked)}
                  />
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
      <p class="muted small">Per channel, choose on the Following page. Emails go only to a verified address.</p>
      <FormError text={error} />
    </section>
  );
}

function BlockedSection() {
  const [blocked, setBlocked] = useState<{ username: string; blocked_at: number }[]>([]);
  const load = () =>
    api<Listing<{ username: string; blocked_at: number }>>('GET', '/api/v1/me/blocks')
      .then((list) => setBlocked(list.items))
      .catch(() => undefined);
  useEffect(() => void load(), []);
  const unblock = async (username: string) => {
    try {
      await api('DELETE', `/api/v1/users/${username}/block`);
      await load();
    } catch (failure) {
      toast(messageOf(failure), 'error');
    }
  };
  return (
    <section class="panel" aria-labelledby="blocked-heading" id="blocked">
      <h2 id="blocked-heading">Blocked</h2>
      {blocked.length === 0 ? (
        <p class="muted">Nobody. Someone you block cannot follow your channels or chat in them.</p>
      ) : (
        <ul class="plain">
          {blocked.map((b) => (
            <li key={b.username}>
              {b.username}{' '}
              <button type="button" class="small" onClick={() => void unblock(b.username)}>
                Unblock
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function SettingsPage() {
  useTitle('Settings');
  useEffect(() => {
    void reloadMe().then((user) => {
      if (!user) navigate('/login?next=/settings', true);
      const section = route.value.split('?')[0].split('/')[2] ?? query('section');
      if (section) document.getElementById(section)?.scrollIntoView();
    });
  }, []);
  if (!currentUser.value) return <p>Loading…</p>;
  return (
    <section class="settings narrow">
      <h1>Settings</h1>
      <ProfileSection />
      <EmailSection />
      <PasswordSection />
      <NotificationsSection />
      <BlockedSection />
      <AccountSection />
    </section>
  );
}
