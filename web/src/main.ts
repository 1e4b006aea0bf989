// The app: a header, and one page at a time picked from the URL (links navigate in place).

import './style.css';
import { api, me, setMe } from './api';
import { h, link, clear } from './dom';
import { toast } from './toast';
import { navigate, onNavigate, type Cleanup } from './nav';
import { homePage } from './pages/home';
import { channelPage } from './pages/channel';
import { loginPage, signupPage } from './pages/auth';
import { dashboardPage } from './pages/dashboard';
import { clipPage, vodPage } from './pages/media';

type Page = (main: HTMLElement, param: string) => Promise<Cleanup | void> | Cleanup | void;

const routes: [RegExp, Page][] = [
  [/^\/$/, homePage],
  [/^\/login$/, loginPage],
  [/^\/signup$/, signupPage],
  [/^\/dashboard$/, dashboardPage],
  [/^\/vod\/([0-9A-Za-z]+)$/, vodPage],
  [/^\/clip\/([0-9A-Za-z]+)$/, clipPage],
  [/^\/([a-z0-9_]{3,25})$/, channelPage],
];

let cleanup: Cleanup | void;
let generation = 0;

async function render(): Promise<void> {
  const mine = ++generation;
  cleanup?.();
  cleanup = undefined;
  const main = document.getElementById('main') as HTMLElement;
  clear(main);
  await renderHeader();
  const path = location.pathname;
  const route = routes.find(([pattern]) => pattern.test(path));
  if (!route) {
    document.title = 'Not found · Aether';
    main.append(h('section', { class: 'empty' }, h('h1', {}, 'Page not found'), link('/', {}, 'Go home')));
    return;
  }
  const [pattern, page] = route;
  try {
    const undo = await page(main, decodeURIComponent(pattern.exec(path)?.[1] ?? ''));
    if (mine !== generation) undo?.();
    else cleanup = undo;
  } catch (error) {
    main.append(h('p', { class: 'error', role: 'alert' }, error instanceof Error ? error.message : String(error)));
  }
}

async function renderHeader(): Promise<void> {
  const header = document.getElementById('top') as HTMLElement;
  const user = await me().catch(() => null);
  const nav = user
    ? [
        link('/dashboard', {}, 'Dashboard'),
        h('span', { class: 'who', 'aria-label': 'Signed in as' }, user.username),
        h('button', { type: 'button', class: 'ghost', onclick: logout }, 'Log out'),
      ]
    : [link(`/login?next=${encodeURIComponent(location.pathname)}`, {}, 'Log in'), link('/signup', { class: 'button primary' }, 'Sign up')];
  header.replaceChildren(h('nav', { class: 'topbar', 'aria-label': 'Main' }, link('/', { class: 'brand' }, 'Aether'), h('span', { class: 'spacer' }), nav));
}

async function logout(): Promise<void> {
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch (error) {
    toast(error instanceof Error ? error.message : 'Logging out failed', 'error');
  }
  setMe(null);
  navigate('/');
}

document.addEventListener('click', (event) => {
  const target = (event.target as Element | null)?.closest?.('a[data-link]') as HTMLAnchorElement | null;
  if (!target || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (target.origin !== location.origin) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
});
onNavigate(() => void render());
window.addEventListener('popstate', () => void render());
void render();
