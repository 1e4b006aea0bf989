// Hosts a piece that builds its own DOM (the player, the chat panel) inside a component: made
// when the component mounts (or its key changes), destroyed when it goes.

import { useEffect, useRef } from 'preact/hooks';

export interface Mountable {
  el: HTMLElement;
  destroy(): void;
}

export function Mount<T extends Mountable>({ make, onMade, class: className }: { make: () => T; onMade?: (made: T) => void; class?: string }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const made = make();
    host.current?.append(made.el);
    onMade?.(made);
    return () => {
      made.destroy();
      made.el.remove();
    };
  }, []);
  return <div ref={host} class={className ?? 'mount'} />;
}
