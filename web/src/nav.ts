// In-page navigation: links with data-link and navigate() change the route signal.

import { route } from './state';

/// What a page leaves to undo when the visitor navigates away (sockets, players, timers).
export type Cleanup = () => void;

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route.value = location.pathname + location.search;
  window.scrollTo(0, 0);
}

/// The current query string's value of `name`.
export function query(name: string): string | null {
  return new URLSearchParams(route.value.split('?')[1] ?? '').get(name);
}
