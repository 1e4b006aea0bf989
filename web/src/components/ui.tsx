// Small shared pieces of the Preact pages: links the router handles, form fields, titles.

import type { ComponentChildren, JSX } from 'preact';
import { useEffect } from 'preact/hooks';

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
