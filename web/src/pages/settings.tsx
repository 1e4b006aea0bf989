// Account settings: the email address (verified or not, a new link, a change confirmed from the
// new address), the password, what you are told and how, and the people you blocked.

import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, reloadMe, type Listing } from '../api';
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
      <EmailSection />
      <PasswordSection />
      <NotificationsSection />
      <BlockedSection />
    </section>
  );
}
