// Read-only views of the fleet: devices, device sets, a set's members.
import { Latest, enc, get } from './api.js';
import { Pager, bdi, clipped, h, json, problemView, replace, setHref } from './dom.js';

// pagedList renders one paged list into listEl: fetch(cursor, signal)
// gives a page, render(page) its content. Only the answer to the latest
// page asked for is shown. It returns the function that aborts the load
// in flight (the view is left).
function pagedList(listEl, label, fetch, render) {
  const loads = new Latest();
  const pager = new Pager(() => load());
  async function load() {
    const req = loads.start();
    try {
      const page = await fetch(pager.cursor, req.signal);
      if (!req.current()) return;
      replace(listEl, render(page), pager.view(page.next, label));
    } catch (err) {
      if (!req.current()) return;
      replace(listEl, problemView(err, `Could not load the ${label.toLowerCase()}`));
    }
  }
  load();
  return () => loads.abort();
}

// table is a list's table; columns are [heading, class] (the class sets
// the column's width: the layout is fixed, so that a long name wraps in
// its column rather than pushing the others off the page).
function table(kind, columns, rows) {
  return h('div', { class: 'table-wrap' }, h('table', { class: `data ${kind}` },
    h('thead', null, h('tr', null, columns.map(([c, cls]) => h('th', { scope: 'col', class: cls }, c)))),
    h('tbody', null, rows)));
}

// properties lists a device's property values, a long one clipped.
function properties(id, props) {
  const entries = Object.entries(props ?? {});
  if (!entries.length) return '';
  return h('ul', { class: 'props' }, entries.map(([k, v]) => h('li', null,
    h('code', null, bdi(k)), ' = ', clipped(json(v), `property:${id}:${k}`, 'code'))));
}

function deviceRows(items) {
  return items.map((d) => h('tr', null,
    h('td', null, h('code', null, d.id)),
    h('td', null, bdi(d.name)),
    h('td', null, h('code', null, d.templateId ?? '')),
    h('td', null, properties(d.id, d.properties)),
    h('td', null, d.unusable ? h('span', { class: 'error-text' }, clipped(d.unusableReason || 'unusable', `unusable:${d.id}`)) : 'usable')));
}

const deviceColumns = [['ID', 'col-id'], ['Name', 'col-name'], ['Template', 'col-id'], ['Properties', 'col-text'], ['State', 'col-state']];

// deviceList is #/devices.
export function deviceList(root, _params, app) {
  const listEl = h('div');
  app.title('Devices');
  replace(root, h('h1', { tabindex: '-1' }, 'Devices'), listEl);
  return pagedList(listEl, 'Device pages', (cursor, signal) => get(`/api/v1/devices`, { cursor, limit: 50 }, { signal }),
    (page) => (page.items?.length ? table('devices', deviceColumns, deviceRows(page.items)) : h('p', { class: 'empty' }, 'No device.')));
}

function conditions(conds) {
  if (!conds?.length) return h('span', { class: 'muted' }, 'every device of the template');
  return h('ul', { class: 'props' }, conds.map((c) => h('li', null, h('code', null, bdi(c.property), ` ${c.op} ${json(c.value)}`))));
}

function setState(s) {
  return s.broken ? h('span', { class: 'error-text' }, 'broken: ', clipped(s.brokenReason, `broken:${s.id}`)) : 'usable';
}

// setList is #/device-sets.
export function setList(root, _params, app) {
  const listEl = h('div');
  app.title('Device sets');
  replace(root, h('h1', { tabindex: '-1' }, 'Device sets'), listEl);
  return pagedList(listEl, 'Device set pages', (cursor, signal) => get(`/api/v1/device-sets`, { cursor, limit: 50 }, { signal }),
    (page) => (page.items?.length
      ? table('sets', [['Set', 'col-name'], ['Template', 'col-id'], ['Conditions', 'col-text'], ['State', 'col-state']],
        page.items.map((s) => h('tr', null,
          h('th', { scope: 'row' }, h('a', { href: setHref(s.id) }, bdi(s.name || s.id)), h('div', { class: 'muted small' }, s.id)),
          h('td', null, h('code', null, s.templateId ?? '')),
          h('td', null, conditions(s.conditions)),
          h('td', null, setState(s)))))
      : h('p', { class: 'empty' }, 'No device set.')));
}

// setDetail is #/device-sets/ID: the set and its members.
export function setDetail(root, { id }, app) {
  const loads = new Latest();
  const title = h('h1', { tabindex: '-1' }, bdi(id));
  const info = h('div');
  const listEl = h('div');
  app.title(`Device set ${id}`);
  replace(root, h('p', { class: 'crumbs' }, h('a', { href: '#/device-sets' }, '← Device sets')),
    title, info, h('section', { 'aria-labelledby': 'h-members' }, h('h2', { id: 'h-members' }, 'Members'), listEl));
  const req = loads.start();
  get(`/api/v1/device-sets/${enc(id)}`, undefined, { signal: req.signal }).then((s) => {
    if (!req.current()) return;
    replace(title, bdi(s.name || s.id));
    app.title(`Device set ${s.name || s.id}`);
    replace(info, h('dl', { class: 'definition' },
      h('div', null, h('dt', null, 'ID'), h('dd', null, h('code', null, s.id))),
      h('div', null, h('dt', null, 'Template'), h('dd', null, h('code', null, s.templateId ?? ''))),
      h('div', null, h('dt', null, 'Conditions'), h('dd', null, conditions(s.conditions))),
      h('div', null, h('dt', null, 'State'), h('dd', null, setState(s)))));
  }, (err) => {
    if (req.current()) replace(info, problemView(err, 'Could not load the device set'));
  });
  const abortMembers = pagedList(listEl, 'Member pages', (cursor, signal) => get(`/api/v1/device-sets/${enc(id)}/devices`, { cursor, limit: 50 }, { signal }),
    (page) => {
      if (page.broken) return h('p', { class: 'notice notice-error' }, 'This set is broken and lists no device: ', bdi(page.brokenReason));
      return page.items?.length ? table('devices', deviceColumns, deviceRows(page.items)) : h('p', { class: 'empty' }, 'No member.');
    });
  return () => {
    loads.abort();
    abortMembers();
  };
}
