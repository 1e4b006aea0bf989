// Small shared pieces of the Preact pages: links the router handles, form fields, titles.

import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, type Listing } from '../api';

/// A link handled by the in-page router.
export function Link(props: JSX.AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  return <a {...props} data-link="" />;
}

export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Aether` : 'Aether';
  }, [title]);
}

export function Field(props: { id: string; label: string; children?: ComponentChildren } & JSX.InputHTMLAttributes<HTMLInputElement>) {
  const { id, label, children, ...input } = props;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input id={id} name={id} required {...input} />
      {children}
    </div>
  );
}

export function FormError({ text }: { text: string }) {
  return (
    <p class="form-error" role="alert">
      {text}
    </p>
  );
}

/// The string value of a form field.
export function value(form: HTMLFormElement, name: string): string {
  return String(new FormData(form).get(name) ?? '');
}

/// A feed of the API (`{items, next_cursor}`), loaded page by page: `more` loads the next page
/// (null at the end); `items` can be edited in place.
export function usePaged<T>(path: string, start: boolean) {
  const [items, setItems] = useState<T[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState('');
  const load = async (after: string | null) => {
    try {
      const sep = path.includes('?') ? '&' : '?';
      const page = await api<Listing<T>>('GET', `${path}${after ? `${sep}cursor=${after}` : ''}`);
      setItems((old) => (after ? [...old, ...page.items] : page.items));
      setCursor(page.next_cursor);
      setLoaded(true);
    } catch (failure) {
      setError(messageOf(failure));
    }
  };
  useEffect(() => {
    if (start) void load(null);
  }, [path, start]);
  return { items, setItems, loaded, error, more: cursor ? () => void load(cursor) : null };
}
