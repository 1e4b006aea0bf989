import { h } from './dom';

/// A short message at the corner of the screen (errors stay longer).
export function toast(text: string, kind: 'info' | 'error' = 'info'): void {
  const box = document.getElementById('toasts');
  if (!box) return;
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  box.append(item);
  window.setTimeout(() => item.remove(), kind === 'error' ? 6000 : 3500);
}
