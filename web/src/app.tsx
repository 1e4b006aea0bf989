// The app: the header and one page at a time, picked from the route signal. The player and the
// chat panel build their own DOM (components/mount.tsx hosts them).

import type { FunctionComponent } from 'preact';
import { useEffect } from 'preact/hooks';
import { api, me, messageOf, setMe } from './api';
import { Bell } from './components/bell';
import { Link } from './components/ui';
import { navigate } from './nav';
import { ChannelPage } from './pages/channel';
import { DashboardPage } from './pages/dashboard';
import { HomePage } from './pages/home';
import { ProfilePage } from './pages/profile';
import { ClipPage, VodPage } from './pages/media';
import { ForgotPasswordPage, LoginPage, ResetPasswordPage, SignupPage, VerifyEmailPage } from './pages/auth';
import { FollowingPage } from './pages/following';
import { NotificationsPage } from './pages/notifications';
import { SettingsPage } from './pages/settings';
import { SearchPage } from './pages/search';
import { BrowsePage } from './pages/browse';
import { currentUser, route } from './state';
import { toast } from './toast';

type Route = [RegExp, (param: string) => preact.JSX.Element];
const plain = (Page: FunctionComponent) => () => <Page />;

const routes: Route[] = [
  [/^\/$/, plain(HomePage)],
  [/^\/login$/, plain(LoginPage)],
  [/^\/signup$/, plain(SignupPage)],
  [/^\/forgot-password$/, plain(ForgotPasswordPage)],
  [/^\/reset-password$/, plain(ResetPasswordPage)],
  [/^\/verify-email$/, plain(VerifyEmailPage)],
  [/^\/dashboard$/, plain(DashboardPage)],
  [/^\/notifications$/, plain(NotificationsPage)],
  [/^\/following$/, plain(FollowingPage)],
  [/^\/search$/, plain(SearchPage)],
  [/^\/browse$/, plain(BrowsePage)],
  [/^\/settings(?:\/[a-z]+)?$/, plain(SettingsPage)],
  [/^\/u\/([a-z0-9_]{3,25})$/, (name) => <ProfilePage username={name} />],
  [/^\/vod\/([0-9A-Za-z]+)$/, (id) => <VodPage id={id} />],
  [/^\/clip\/([0-9A-Za-z]+)$/, (id) => <ClipPage id={id} />],
  [/^\/([a-z0-9_]{3,25})$/, (name) => <ChannelPage name={name} />],
];

export function Router() {
  const path = route.value.split('?')[0];
  const found = routes.find(([pattern]) => pattern.test(path));
  if (!found) {
    document.title = 'Not found · Aether';
    return (
      <section class="empty">
        <h1>Page not found</h1>
        <Link href="/">Go home</Link>
      </section>
    );
  }
  const [pattern, view] = found;
  // Keyed by the whole route, so that a page is made anew on each navigation.
  return <div key={route.value}>{view(decodeURIComponent(pattern.exec(path)?.[1] ?? ''))}</div>;
}

async function logout(): Promise<void> {
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch (error) {
    toast(messageOf(error), 'error');
  }
  setMe(null);
  navigate('/');
}

function search(event: Event): void {
  event.preventDefault();
  const input = (event.currentTarget as HTMLFormElement).elements.namedItem('q') as HTMLInputElement;
  navigate(`/search?q=${encodeURIComponent(input.value.trim())}`);
  input.value = '';
}

export function Header() {
  useEffect(() => {
    void me().catch(() => setMe(null));
  }, []);
  const user = currentUser.value;
  const path = route.value.split('?')[0];
  return (
    <nav class="topbar" aria-label="Main">
      <Link href="/" class="brand">
        Aether
      </Link>
      <Link href="/browse">Browse</Link>
      <form role="search" class="top-search" onSubmit={search}>
        <input type="search" name="q" aria-label="Search" placeholder="Search" />
      </form>
      <span class="spacer" />
      {user === undefined ? null : user ? (
        <>
          <Link href="/following">Following</Link>
          <Link href="/dashboard">Dashboard</Link>
          <Bell />
          <Link href="/settings" class="who" aria-label="Signed in as">
            {user.username}
          </Link>
          <button type="button" class="ghost" onClick={() => void logout()}>
            Log out
          </button>
        </>
      ) : (
        <>
          <Link href={`/login?next=${encodeURIComponent(path)}`}>Log in</Link>
          <Link href="/signup" class="button primary">
            Sign up
          </Link>
        </>
      )}
    </nav>
  );
}
