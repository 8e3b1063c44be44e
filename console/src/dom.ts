// A few DOM helpers: elements are built with properties and text nodes only (never innerHTML),
// so nothing the service returns can become markup, and the strict CSP has nothing to refuse.

type Attrs = Record<string, string | number | boolean | undefined>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: Attrs = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

/** A labelled form field: the label wraps nothing, it names the input by id. */
export function field(
  label: string,
  input: HTMLInputElement | HTMLSelectElement,
  hint?: string,
): HTMLElement {
  return h(
    'div',
    { class: 'field' },
    h('label', { for: input.id }, label),
    input,
    hint ? h('small', {}, hint) : null,
  );
}

/** A live region for a call's outcome: errors are the service's own message. */
export function status(): HTMLElement & { show(text: string, error?: boolean): void } {
  const el = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  return Object.assign(el, {
    show(text: string, error = false) {
      el.textContent = text;
      el.classList.toggle('error', error);
    },
  });
}

/** A table inside a scrolling box, so it never widens a 360 px page. */
export function table(headers: string[], rows: Child[][]): HTMLElement {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))),
    ),
  );
}
