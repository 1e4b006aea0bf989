// Signing in and out of trouble: log in, sign up, forgot password (the same answer whether or not
// the address has an account), reset password and verify email (from the links in emails).

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, messageOf, reloadMe, setMe, type User } from '../api';
import { Field, FormError, Link, useTitle, value } from '../components/ui';
import { navigate, query } from '../nav';

function nextPath(): string {
  const next = query('next');
  // Only paths of this site: never an open redirect.
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

/// A form that sends itself and shows the server's error.
function useSubmit(send: (form: HTMLFormElement) => Promise<void>) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const onSubmit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError('');
    try {
      await send(event.currentTarget as HTMLFormElement);
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : 'Something went wrong; try again.');
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, onSubmit };
}

export function LoginPage() {
  useTitle('Log in');
  const { error, busy, onSubmit } = useSubmit(async (form) => {
    const { user } = await api<{ user: User }>('POST', '/api/v1/auth/login', { login: value(form, 'login'), password: value(form, 'password') });
    setMe(user);
    navigate(nextPath(), true);
  });
  return (
    <form class="auth-form" onSubmit={onSubmit}>
      <h1>Log in</h1>
      <Field id="login" label="Username or email" autocomplete="username" autofocus />
      <Field id="password" label="Password" type="password" autocomplete="current-password" />
      <FormError text={error} />
      <button type="submit" class="primary wide" disabled={busy}>
        Log in
      </button>
      <p class="muted">
        <Link href="/forgot-password">Forgot your password?</Link>
      </p>
      <p class="muted">
        New here? <Link href="/signup">Create an account</Link>
      </p>
    </form>
  );
}

export function SignupPage() {
  useTitle('Sign up');
  const { error, busy, onSubmit } = useSubmit(async (form) => {
    const { user } = await api<{ user: User }>('POST', '/api/v1/auth/signup', {
      username: value(form, 'username'),
      email: value(form, 'email'),
      password: value(form, 'password'),
    });
    setMe(user);
    navigate('/dashboard', true);
  });
  return (
    <form class="auth-form" onSubmit={onSubmit}>
      <h1>Create your account</h1>
      <Field id="username" label="Username" autocomplete="username" minLength={3} maxLength={25} pattern="[A-Za-z0-9_]{3,25}" autofocus />
      <Field id="email" label="Email" type="email" autocomplete="email" />
      <Field id="password" label="Password (at least 8 characters)" type="password" autocomplete="new-password" minLength={8} />
      <FormError text={error} />
      <button type="submit" class="primary wide" disabled={busy}>
        Sign up
      </button>
      <p class="muted">
        Already have an account? <Link href="/login">Log in</Link>
      </p>
    </form>
  );
}

export function ForgotPasswordPage() {
  useTitle('Forgot your password');
  const [sent, setSent] = useState('');
  const { error, busy, onSubmit } = useSubmit(async (form) => {
    const { message } = await api<{ message: string }>('POST', '/api/v1/auth/password-reset', { email: value(form, 'email') });
    setSent(message);
  });
  if (sent) {
    return (
      <section class="auth-form" role="status">
        <h1>Check your email</h1>
        <p>{sent}</p>
        <p class="muted">The link works once, for one hour.</p>
      </section>
    );
  }
  return (
    <form class="auth-form" onSubmit={onSubmit}>
      <h1>Forgot your password?</h1>
      <p class="muted">Enter the address of your account: we will send it a link to choose a new password.</p>
      <Field id="email" label="Email" type="email" autocomplete="email" autofocus />
      <FormError text={error} />
      <button type="submit" class="primary wide" disabled={busy}>
        Send the link
      </button>
    </form>
  );
}

export function ResetPasswordPage() {
  useTitle('Choose a new password');
  const token = query('token') ?? '';
  const [done, setDone] = useState(false);
  const { error, busy, onSubmit } = useSubmit(async (form) => {
    if (value(form, 'password') !== value(form, 'confirm')) throw new ApiError(422, 'mismatch', 'The two passwords differ.');
    await api('POST', '/api/v1/auth/password-reset/confirm', { token, password: value(form, 'password') });
    setMe(null);
    setDone(true);
  });
  if (done) {
    return (
      <section class="auth-form" role="status">
        <h1>Password changed</h1>
        <p>You were signed out everywhere. Log in with your new password.</p>
        <Link href="/login" class="button primary">
          Log in
        </Link>
      </section>
    );
  }
  return (
    <form class="auth-form" onSubmit={onSubmit}>
      <h1>Choose a new password</h1>
      {!token && <FormError text="This page needs the link from the email." />}
      <Field id="password" label="New password (at least 8 characters)" type="password" autocomplete="new-password" minLength={8} autofocus />
      <Field id="confirm" label="The same again" type="password" autocomplete="new-password" minLength={8} />
      <FormError text={error} />
      <button type="submit" class="primary wide" disabled={busy || !token}>
        Change my password
      </button>
    </form>
  );
}

export function VerifyEmailPage() {
  useTitle('Confirm your address');
  const [state, setState] = useState<'working' | 'done' | string>('working');
  useEffect(() => {
    const token = query('token') ?? '';
    api('POST', '/api/v1/auth/verify-email', { token })
      .then(() => {
        void reloadMe().catch(() => undefined);
        setState('done');
      })
      .catch((error) => setState(messageOf(error)));
  }, []);
  return (
    <section class="auth-form" role="status">
      <h1>Confirm your address</h1>
      {state === 'working' ? <p>Confirming…</p> : state === 'done' ? <p>Your address is confirmed. Thank you!</p> : <FormError text={state} />}
      <Link href="/">Go home</Link>
    </section>
  );
}
