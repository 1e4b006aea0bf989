// Entry: the header and the page, rendered by Preact; links with data-link navigate in place.

import './style.css';
import { render } from 'preact';
import { Header, Router } from './app';
import { navigate } from './nav';
import { route } from './state';

render(<Header />, document.getElementById('top') as HTMLElement);
render(<Router />, document.getElementById('main') as HTMLElement);

document.addEventListener('click', (event) => {
  const target = (event.target as Element | null)?.closest?.('a[data-link]') as HTMLAnchorElement | null;
  if (!target || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (target.origin !== location.origin) return;
  event.preventDefault();
  navigate(target.pathname + target.search);
});
window.addEventListener('popstate', () => (route.value = location.pathname + location.search));
