// Read-only views of the fleet: devices, device sets, a set's members.
import { enc, get } from './api.js';
import { Pager, h, json, problemView, replace, setHref } from './dom.js';

// pagedList renders one paged list into listEl: fetch(cursor) gives a
// page, render(page) its content.
function pagedList(listEl, label, fetch, render) {
  const pager = new Pager(() => load());
  async function load() {
    try {
      const page = await fetch(pager.cursor);
      replace(listEl, render(page), pager.view(page.next, label));
    } catch (err) {
      replace(listEl, problemView(err, `Could not load the ${label.toLowerCase()}`));
    }
  }
  load();
}

function table(heads, rows) {
  return h('div', { class: 'table-wrap' }, h('table', null,
    h('thead', null, h('tr', null, heads.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows)));
}

function properties(props) {
  const entries = Object.entries(props ?? {});
  if (!entries.length) return '';
  return h('ul', { class: 'props' }, entries.map(([k, v]) => h('li', null, h('code', null, k), ' = ', h('code', null, json(v)))));
}

function deviceRows(items) {
  return items.map((d) => h('tr', null,
    h('td', null, h('code', null, d.id)),
    h('td', null, d.name ?? ''),
    h('td', null, h('code', null, d.templateId ?? '')),
    h('td', null, properties(d.properties)),
    h('td', null, d.unusable ? h('span', { class: 'error-text' }, d.unusableReason || 'unusable') : 'usable')));
}

const deviceHeads = ['ID', 'Name', 'Template', 'Properties', 'State'];

// deviceList is #/devices.
export function deviceList(root) {
  const listEl = h('div');
  replace(root, h('h1', { tabindex: '-1' }, 'Devices'), listEl);
  pagedList(listEl, 'Device pages', (cursor) => get(`/api/v1/devices`, { cursor, limit: 50 }),
    (page) => (page.items?.length ? table(deviceHeads, deviceRows(page.items)) : h('p', { class: 'empty' }, 'No device.')));
}

function conditions(conds) {
  if (!conds?.length) return h('span', { class: 'muted' }, 'every device of the template');
  return h('ul', { class: 'props' }, conds.map((c) => h('li', null, h('code', null, `${c.property} ${c.op} ${json(c.value)}`))));
}

// setList is #/device-sets.
export function setList(root) {
  const listEl = h('div');
  replace(root, h('h1', { tabindex: '-1' }, 'Device sets'), listEl);
  pagedList(listEl, 'Device set pages', (cursor) => get(`/api/v1/device-sets`, { cursor, limit: 50 }),
    (page) => (page.items?.length
      ? table(['Set', 'Template', 'Conditions', 'State'], page.items.map((s) => h('tr', null,
        h('th', { scope: 'row' }, h('a', { href: setHref(s.id) }, s.name || s.id), h('div', { class: 'muted small' }, s.id)),
        h('td', null, h('code', null, s.templateId ?? '')),
        h('td', null, conditions(s.conditions)),
        h('td', null, s.broken ? h('span', { class: 'error-text' }, `broken: ${s.brokenReason ?? ''}`) : 'usable'))))
      : h('p', { class: 'empty' }, 'No device set.')));
}

// setDetail is #/device-sets/ID: the set and its members.
export function setDetail(root, { id }) {
  const title = h('h1', { tabindex: '-1' }, id);
  const info = h('div');
  const listEl = h('div');
  replace(root, h('p', { class: 'crumbs' }, h('a', { href: '#/device-sets' }, '← Device sets')),
    title, info, h('section', { 'aria-labelledby': 'h-members' }, h('h2', { id: 'h-members' }, 'Members'), listEl));
  get(`/api/v1/device-sets/${enc(id)}`).then((s) => {
    replace(title, s.name || s.id);
    replace(info, h('dl', { class: 'definition' },
      h('div', null, h('dt', null, 'ID'), h('dd', null, h('code', null, s.id))),
      h('div', null, h('dt', null, 'Template'), h('dd', null, h('code', null, s.templateId ?? ''))),
      h('div', null, h('dt', null, 'Conditions'), h('dd', null, conditions(s.conditions))),
      h('div', null, h('dt', null, 'State'), h('dd', null, s.broken ? h('span', { class: 'error-text' }, `broken: ${s.brokenReason ?? ''}`) : 'usable'))));
  }, (err) => replace(info, problemView(err, 'Could not load the device set')));
  pagedList(listEl, 'Member pages', (cursor) => get(`/api/v1/device-sets/${enc(id)}/devices`, { cursor, limit: 50 }),
    (page) => {
      if (page.broken) return h('p', { class: 'notice notice-error' }, `This set is broken and lists no device: ${page.brokenReason ?? ''}`);
      return page.items?.length ? table(deviceHeads, deviceRows(page.items)) : h('p', { class: 'empty' }, 'No member.');
    });
}
