// In-page navigation, kept apart from main.ts so that pages can navigate without importing it.

/// What a page leaves to undo when the visitor navigates away (sockets, players, timers).
export type Cleanup = () => void;

let render: () => void = () => undefined;

export function onNavigate(renderer: () => void): void {
  render = renderer;
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}
