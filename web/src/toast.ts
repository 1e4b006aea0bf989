import { h, link } from './dom';

/// A short message at the corner of the screen (errors stay longer).
export function toast(text: string, kind: 'info' | 'error' = 'info', action?: { href: string; label: string }): void {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h(
    'div',
    { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    text,
    action ? [' ', link(action.href, {}, action.label)] : null,
  );
  box.append(item);
  window.setTimeout(() => item.remove(), kind === 'error' || action ? 8000 : 3500);
}
