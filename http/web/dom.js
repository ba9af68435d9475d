// Building the page's elements. Job names, device errors, history data:
// everything the server sends may come from an attacker, so this module
// only ever creates elements and text nodes; it never parses markup.

// h creates element tag with props and children. props: "class", "on..."
// handlers (functions), DOM properties that are not attributes (value,
// checked, disabled, selected, hidden), and any other attribute. Children:
// strings and numbers (text nodes), nodes, arrays of them; null, undefined
// and false are left out.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') {
      el.className = v;
    } else if (k.startsWith('on')) {
      if (typeof v !== 'function') throw new TypeError(`h: ${k} must be a function`);
      el.addEventListener(k.slice(2), v);
    } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') {
      el[k] = v;
    } else if (k === 'style') {
      throw new TypeError('h: no style attributes (the Content-Security-Policy refuses them); use a class');
    } else {
      if ((k === 'href' || k === 'src') && !/^[#/]/.test(String(v))) {
        // Links stay on this page: a server-provided "javascript:" never
        // becomes one.
        throw new TypeError(`h: ${k} must start with # or /`);
      }
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

// append adds children (as h takes them) to el.
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replace empties el and appends children.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

// jobHref and setHref are the page's own links to a job and a device set.
export const jobHref = (id) => `#/jobs/${encodeURIComponent(id)}`;
export const setHref = (id) => `#/device-sets/${encodeURIComponent(id)}`;

// time shows an RFC 3339 time in the reader's locale, the exact value in
// its datetime attribute and tooltip.
export function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, d.toLocaleString());
}

const statuses = new Set(['pending', 'running', 'completed', 'failed', 'stopped', 'succeeded']);

// badge shows a status as a word on a colour: the colour is never the only
// sign. An unknown word still shows, uncoloured.
export function badge(status) {
  const known = statuses.has(status) ? status : 'unknown';
  return h('span', { class: `badge status-${known}` }, String(status ?? ''));
}

// progress is a bar of a job's counts: succeeded, failed, the rest
// pending, with the numbers as its accessible name and tooltip. The widths
// are set through the CSSOM, which the Content-Security-Policy allows
// (style attributes it would not).
export function progress(counts, big = false) {
  const c = counts ?? {};
  const total = c.total || 0;
  const label = `${c.succeeded ?? 0} succeeded, ${c.failed ?? 0} failed, ${c.pending ?? 0} pending of ${total}`;
  const ok = h('span', { class: 'bar-ok' });
  const bad = h('span', { class: 'bar-failed' });
  ok.style.width = total ? `${(100 * (c.succeeded ?? 0)) / total}%` : '0';
  bad.style.width = total ? `${(100 * (c.failed ?? 0)) / total}%` : '0';
  return h('div', { class: big ? 'bar bar-big' : 'bar', role: 'img', 'aria-label': label, title: label }, ok, bad);
}

// bidiControls are the characters that embed, override or isolate text
// direction, and the direction marks. One in a server-provided string
// (U+202E, RIGHT-TO-LEFT OVERRIDE) would reverse the text after it.
const bidiControls = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

// bdi shows a server-provided string (a name, an error) isolated from the
// text around it: whatever direction controls it holds act inside it
// only, so "Stop “NAME”?" keeps its words in order.
export const bdi = (s) => h('bdi', null, String(s ?? ''));

// plain is s without direction controls, for text that cannot hold an
// element (an <option>, the document's title).
export const plain = (s) => String(s ?? '').replace(bidiControls, '');

// json is a value as compact JSON, for operation values and the like;
// direction controls in its strings are written as escapes (\u202e), which
// is the same JSON and shows them rather than obeying them.
export function json(v, indent) {
  let s;
  try {
    s = JSON.stringify(v, null, indent);
  } catch {
    s = String(v);
  }
  if (s === undefined) return '';
  return s.replace(bidiControls, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

// clipLength is the length beyond which clipped clamps a text.
const clipLength = 160;

// clipped shows a long server-provided text (a device's error, a stop
// reason) clamped to three lines, the whole of it in the tooltip and
// behind a "Show all" button; a short one in full. key makes the button's
// data-key, so that a refresh keeps it expanded (keepFocus). The text is
// in a bdi, or in tag (code, for JSON).
export function clipped(text, key, tag = 'bdi') {
  const s = String(text ?? '');
  if (s.length <= clipLength) return h(tag, null, s);
  const box = h('div', { class: 'clip' }, h(tag, { class: 'clip-text', title: s }, s));
  const more = h('button', {
    type: 'button', class: 'link small', 'aria-expanded': 'false', 'data-key': `clip:${key}`,
    onclick: () => {
      const open = box.classList.toggle('open');
      more.setAttribute('aria-expanded', String(open));
      replace(more, open ? 'Show less' : `Show all (${s.length} characters)`);
    },
  }, `Show all (${s.length} characters)`);
  return append(box, more);
}

// problemView shows an API error: its title, detail and field errors, in
// an alert.
export function problemView(err, what) {
  const p = err?.problem ?? {};
  return h('div', { class: 'notice notice-error', role: 'alert' },
    h('p', null, h('strong', null, what ? `${what}: ` : '', p.title || err?.message || 'Error'),
      err?.status ? ` (${err.status})` : ''),
    p.detail ? h('p', null, bdi(p.detail)) : null,
    Array.isArray(p.errors) && p.errors.length
      ? h('ul', null, p.errors.map((e) => h('li', null, h('code', null, bdi(e.field)), ': ', bdi(e.message))))
      : null);
}

// pager is a Previous / Next pair over cursor paging: the API gives only
// "next", so the cursors of the pages before are kept on a stack. Each
// pair of buttons holds the state it leads to from the page it was shown
// with, so that a second click before the page changes repeats the first
// rather than skipping a page, and a pair of a list since reset (another
// filter) does nothing.
export class Pager {
  constructor(onChange) {
    this.stack = [];
    this.cursor = '';
    this.next = '';
    this.generation = 0;
    this.onChange = onChange;
  }

  reset() {
    this.stack = [];
    this.cursor = '';
    this.next = '';
    this.generation++;
  }

  // view renders the controls for the page just shown (its next cursor).
  // label names the pair and keys its buttons (keepFocus).
  view(next, label) {
    this.next = next ?? '';
    const { stack, cursor, generation } = this;
    const go = (toStack, toCursor) => {
      if (generation !== this.generation) return;
      this.stack = toStack;
      this.cursor = toCursor;
      this.onChange();
    };
    return h('nav', { class: 'pager', 'aria-label': label },
      h('button', {
        type: 'button', disabled: stack.length === 0, 'data-key': `${label}:previous`,
        onclick: () => go(stack.slice(0, -1), stack.at(-1) ?? ''),
      }, '← Previous'),
      h('span', { class: 'muted' }, `Page ${stack.length + 1}`),
      h('button', {
        type: 'button', disabled: !this.next, 'data-key': `${label}:next`,
        onclick: () => go([...stack, cursor], next),
      }, 'Next →'));
  }
}

// Refresher calls load every ms milliseconds while it is wanted (a job
// runs), never while the tab is hidden, and at once when the tab shows
// again. load calls want(bool) when it is done to say whether to go on.
export class Refresher {
  constructor(load, ms) {
    this.load = load;
    this.ms = ms;
    this.wanted = false;
    this.timer = 0;
    this.disposed = false;
    this.onVisibility = () => {
      if (document.hidden) this.clear();
      else if (this.wanted && !this.disposed) this.load();
    };
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  want(on) {
    this.wanted = on;
    this.clear();
    if (on && !document.hidden && !this.disposed) {
      this.timer = setTimeout(() => { this.timer = 0; this.load(); }, this.ms);
    }
  }

  clear() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  dispose() {
    this.disposed = true;
    this.clear();
    document.removeEventListener('visibilitychange', this.onVisibility);
  }
}

// keepFocus re-renders with render() and keeps what the reader had: the
// focus, on the element of the same data-key (every focusable control of
// a refreshed view has one), and the expanded state of its clipped texts
// (aria-expanded), so that an auto-refresh does not throw a keyboard
// user back to the top. The scroll position stays, as the content is
// replaced at once and the focus is put back without scrolling.
export function keepFocus(render) {
  const active = document.activeElement;
  const key = active?.dataset?.key;
  const expanded = new Set(Array.from(document.querySelectorAll('[data-key][aria-expanded="true"]'), (el) => el.dataset.key));
  render();
  for (const el of document.querySelectorAll('[data-key][aria-expanded="false"]')) {
    if (expanded.has(el.dataset.key)) el.click();
  }
  if (key && !active.isConnected) {
    const el = Array.from(document.querySelectorAll('[data-key]')).find((e) => e.dataset.key === key);
    el?.focus({ preventScroll: true });
  }
}

// confirmDialog asks a yes/no question in a modal dialog (keyboard: Tab
// between the buttons, Escape cancels; the safe button has the focus).
// title and the paragraphs of body are strings or nodes (a name in bdi).
// With reasonLabel it also asks for an optional text. Resolves to
// {ok, reason}.
export function confirmDialog({ title, body, confirmLabel, danger = false, reasonLabel = '' }) {
  return new Promise((resolve) => {
    const reason = reasonLabel ? h('input', { id: 'dialog-reason', type: 'text', maxlength: '500', autocomplete: 'off' }) : null;
    const cancel = h('button', { type: 'button', autofocus: true, onclick: () => done(false) }, 'Cancel');
    const form = h('form', {
      onsubmit: (e) => { e.preventDefault(); done(true); },
    },
    h('h2', { id: 'dialog-title' }, title),
    body.map((p) => h('p', null, p)),
    reason ? h('p', { class: 'field' }, h('label', { for: 'dialog-reason' }, reasonLabel), reason) : null,
    h('div', { class: 'buttons' }, cancel, h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, confirmLabel)));
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': 'dialog-title' }, form);
    let settled = false;
    function done(ok) {
      if (settled) return;
      settled = true;
      const text = reason ? reason.value.trim() : '';
      if (dlg.open) dlg.close();
      dlg.remove();
      resolve({ ok, reason: text });
    }
    dlg.addEventListener('close', () => done(false));
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}
