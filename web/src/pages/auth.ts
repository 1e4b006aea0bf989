import { api, ApiError, setMe, type User } from '../api';
import { h, link } from '../dom';
import { navigate } from '../nav';

function field(id: string, label: string, attrs: Record<string, string | number | boolean>): HTMLElement {
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name: id, required: true, ...attrs }));
}

function nextPath(): string {
  const next = new URLSearchParams(location.search).get('next');
  // Only paths of this site: never an open redirect.
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

function authForm(
  heading: string,
  fields: HTMLElement[],
  submit: string,
  footer: HTMLElement,
  send: (form: FormData) => Promise<{ user: User }>,
  after: () => string,
): HTMLElement {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary wide' }, submit);
  const form = h('form', { class: 'auth-form', novalidate: false }, h('h1', {}, heading), fields, error, button, footer);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = '';
    try {
      const { user } = await send(new FormData(form));
      setMe(user);
      navigate(after(), true);
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : 'Something went wrong; try again.';
      button.disabled = false;
    }
  });
  return form;
}

export function loginPage(main: HTMLElement): void {
  document.title = 'Log in · Aether';
  main.append(
    authForm(
      'Log in',
      [
        field('login', 'Username or email', { autocomplete: 'username', autofocus: true }),
        field('password', 'Password', { type: 'password', autocomplete: 'current-password' }),
      ],
      'Log in',
      h('p', { class: 'muted' }, 'New here? ', link('/signup', {}, 'Create an account')),
      (form) => api('POST', '/api/v1/auth/login', { login: form.get('login'), password: form.get('password') }),
      nextPath,
    ),
  );
}

export function signupPage(main: HTMLElement): void {
  document.title = 'Sign up · Aether';
  main.append(
    authForm(
      'Create your account',
      [
        field('username', 'Username', { autocomplete: 'username', minlength: 3, maxlength: 25, pattern: '[A-Za-z0-9_]{3,25}', autofocus: true }),
        field('email', 'Email', { type: 'email', autocomplete: 'email' }),
        field('password', 'Password (at least 8 characters)', { type: 'password', autocomplete: 'new-password', minlength: 8 }),
      ],
      'Sign up',
      h('p', { class: 'muted' }, 'Already have an account? ', link('/login', {}, 'Log in')),
      (form) =>
        api('POST', '/api/v1/auth/signup', { username: form.get('username'), email: form.get('email'), password: form.get('password') }),
      () => '/dashboard',
    ),
  );
}
