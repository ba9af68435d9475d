// The job list and a job's page.
import { ApiError, enc, get, newIdempotencyKey, post } from './api.js';
import {
  Pager, Refresher, badge, confirmDialog, h, jobHref, json, keepFocus, problemView, progress, replace, setHref, time,
} from './dom.js';

export const jobStatuses = ['pending', 'running', 'completed', 'failed', 'stopped'];
const deviceStatuses = ['pending', 'succeeded', 'failed'];

// refreshMs is how often a list or a job refreshes while something runs.
const refreshMs = 3000;

const active = (status) => status === 'pending' || status === 'running';

function statusSelect(id, statuses, value, onchange) {
  const sel = h('select', { id, onchange: () => onchange(sel.value) },
    h('option', { value: '' }, 'All'),
    statuses.map((s) => h('option', { value: s, selected: s === value }, s)));
  return sel;
}

// refreshNote says when the view was last loaded and whether it refreshes.
function refreshNote(el, refreshing) {
  replace(el, `Updated ${new Date().toLocaleTimeString()}. `,
    refreshing ? `Refreshes every ${refreshMs / 1000} s while a job is pending or running (paused while this tab is hidden).` : '');
}

// retryable says whether an error may pass by itself (no answer, 5xx):
// a refreshing view keeps trying then, not after a 4xx.
const retryable = (err) => err instanceof ApiError && (err.status === 0 || err.status >= 500);

// jobList is #/jobs[?status=]: the summary counts and the 30-day list,
// running jobs first.
export function jobList(root, { query }, app) {
  let status = jobStatuses.includes(query.get('status')) ? query.get('status') : '';
  let loading = false;
  const pager = new Pager(() => load());
  const refresher = new Refresher(() => load(), refreshMs);
  const summaryEl = h('div', { class: 'summary-wrap' });
  const listEl = h('div', { class: 'list' });
  const note = h('p', { class: 'muted' });
  const select = statusSelect('job-status', jobStatuses, status, (v) => setStatus(v));

  function setStatus(v) {
    status = v;
    select.value = v;
    pager.reset();
    app.setQuery(v ? { status: v } : {});
    load();
  }

  function summaryView(sum) {
    const item = (s, n, label) => h('li', null,
      h('button', {
        type: 'button', class: 'summary-item', 'aria-pressed': String(status === s), 'data-key': `summary:${s}`,
        onclick: () => setStatus(s),
      }, h('span', { class: 'count' }, String(n ?? 0)), ' ', s ? badge(s) : h('span', { class: 'badge' }, label)));
    return h('ul', { class: 'summary', 'aria-label': 'Jobs of the last 30 days by status (choose one to filter)' },
      item('', sum.total, 'all'), jobStatuses.map((s) => item(s, sum[s])));
  }

  function table(items) {
    if (!items.length) {
      return h('p', { class: 'empty' }, status ? `No ${status} job in the last 30 days.` : 'No job in the last 30 days.');
    }
    return h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', { class: 'visually-hidden' }, 'Jobs, running first, then newest first'),
      h('thead', null, h('tr', null,
        ['Job', 'Status', 'Progress', 'Succeeded', 'Failed', 'Pending', 'Total', 'Device set', 'Type', 'Updated']
          .map((c, i) => h('th', { scope: 'col', class: i >= 3 && i <= 6 ? 'num' : null }, c)))),
      h('tbody', null, items.map((j) => h('tr', null,
        h('th', { scope: 'row' }, h('a', { href: jobHref(j.id), 'data-key': `job:${j.id}` }, j.name || j.id),
          h('div', { class: 'muted small' }, j.id)),
        h('td', null, badge(j.status), j.reason ? h('div', { class: 'muted small reason' }, j.reason) : null),
        h('td', null, progress(j.counts)),
        h('td', { class: 'num' }, String(j.counts?.succeeded ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.failed ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.pending ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.total ?? 0)),
        h('td', null, j.deviceSetId ? h('a', { href: setHref(j.deviceSetId) }, j.deviceSetId) : ''),
        h('td', null, j.jobType ?? ''),
        h('td', null, time(j.updatedAt)))))));
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      const [sum, page] = await Promise.all([
        get(`/api/v1/summary`),
        get(`/api/v1/jobs`, { status, cursor: pager.cursor, limit: 25 }),
      ]);
      const refreshing = (sum.running ?? 0) + (sum.pending ?? 0) > 0;
      keepFocus(() => {
        replace(summaryEl, summaryView(sum));
        replace(listEl, table(page.items ?? []), pager.view(page.next, 'Job list pages'));
      });
      refreshNote(note, refreshing);
      refresher.want(refreshing);
    } catch (err) {
      replace(listEl, problemView(err, 'Could not load the jobs'));
      refresher.want(retryable(err));
    } finally {
      loading = false;
    }
  }

  replace(root,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Jobs'), h('a', { class: 'button primary', href: '#/new' }, 'New job')),
    summaryEl,
    h('div', { class: 'toolbar' }, h('label', { for: 'job-status' }, 'Status'), select, note),
    listEl);
  load();
  return () => refresher.dispose();
}

// jobDetail is #/jobs/ID: the job, its progress and definition, its
// devices, its history from the event log; Stop and Copy.
export function jobDetail(root, { id }, app) {
  // One key per visit of the page: a double click on Copy, or a retry
  // after a lost answer, copies once.
  const copyKey = newIdempotencyKey();
  let devStatus = '';
  let job = null;
  let loading = false;
  const refresher = new Refresher(() => load(), refreshMs);
  const devPager = new Pager(() => loadDevices());

  const title = h('h1', { tabindex: '-1' }, id);
  const statusEl = h('div', { class: 'job-status' });
  const actions = h('div', { class: 'actions' });
  const message = h('div', { class: 'action-message', 'aria-live': 'polite' });
  const progressEl = h('div');
  const definitionEl = h('div');
  const devicesEl = h('div');
  const note = h('p', { class: 'muted' });
  const history = historyView(id);

  function renderJob() {
    replace(title, job.name || job.id);
    replace(statusEl, badge(job.status), job.reason ? h('span', { class: 'reason' }, ' ', job.reason) : null);
    const c = job.counts ?? {};
    replace(progressEl, progress(c, true), h('dl', { class: 'counts' },
      [['Succeeded', c.succeeded], ['Failed', c.failed], ['Pending', c.pending], ['Total', c.total]]
        .map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, String(v ?? 0))))));
    replace(definitionEl, h('dl', { class: 'definition' },
      row('ID', h('code', null, job.id)),
      row('Description', job.description || h('span', { class: 'muted' }, 'none')),
      row('Device set', job.deviceSetId ? h('a', { href: setHref(job.deviceSetId) }, job.deviceSetId) : ''),
      row('Job type', job.jobType),
      row('Operations', operationsTable(job.operations ?? [])),
      row('Timeout', `${job.timeoutSeconds} s per device`),
      row('Batch size', String(job.batchSize)),
      row('Cancellation threshold', job.cancellationThreshold ? `${job.cancellationThreshold} % of the devices failed` : '0 (never: the job fails at its end if any device failed)'),
      row('Created', time(job.createdAt)),
      row('Updated', time(job.updatedAt))));
    const stoppable = active(job.status);
    replace(actions,
      h('button', { type: 'button', class: 'danger', disabled: !stoppable, 'data-key': 'stop', onclick: stop,
        title: stoppable ? null : 'Only a pending or running job can be stopped' }, 'Stop…'),
      h('button', { type: 'button', 'data-key': 'copy', onclick: (e) => copy(e.currentTarget) }, 'Copy as a new job…'));
  }

  async function loadJob() {
    try {
      job = await get(`/api/v1/jobs/${enc(id)}`);
      renderJob();
      return active(job.status);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(statusEl, problemView(err, 'Not in the 30-day job list'),
          h('p', null, 'Its history below is read from the event log, which keeps every job.'));
        replace(actions);
        return false;
      }
      replace(statusEl, problemView(err, 'Could not load the job'));
      return retryable(err);
    }
  }

  async function loadDevices() {
    try {
      const page = await get(`/api/v1/jobs/${enc(id)}/devices`, { status: devStatus, cursor: devPager.cursor, limit: 50 });
      keepFocus(() => replace(devicesEl, devicesTable(page.items ?? [], devStatus), devPager.view(page.next, 'Device pages')));
    } catch (err) {
      replace(devicesEl, problemView(err, 'Could not load the devices'));
    }
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      const [again] = await Promise.all([loadJob(), loadDevices()]);
      refreshNote(note, again);
      refresher.want(again);
    } finally {
      loading = false;
    }
  }

  async function stop() {
    const { ok, reason } = await confirmDialog({
      title: `Stop “${job?.name || id}”?`,
      body: ['Devices not sent the job yet will not be. A stopped job is never restarted: to run it again, copy it as a new job.'],
      confirmLabel: 'Stop job',
      danger: true,
      reasonLabel: 'Reason (optional, recorded with the stop)',
    });
    if (!ok) return;
    try {
      await post(`/api/v1/jobs/${enc(id)}/stop`, reason ? { reason } : undefined, { 'Idempotency-Key': newIdempotencyKey() });
      replace(message, h('p', { class: 'notice notice-ok' }, 'Stopped.'));
    } catch (err) {
      // 409: the job had ended already; the problem says so.
      replace(message, problemView(err, 'Not stopped'));
    }
    load();
  }

  async function copy(button) {
    const { ok } = await confirmDialog({
      title: `Copy “${job?.name || id}” as a new job?`,
      body: ['The new job has this job’s definition and runs on the devices this job targeted that are still in its device set. It starts at once.'],
      confirmLabel: 'Create the copy',
    });
    if (!ok) return;
    button.disabled = true;
    try {
      const res = await post(`/api/v1/jobs/${enc(id)}/copy`, undefined, { 'Idempotency-Key': copyKey });
      const copied = res.data;
      app.flash(res.status === 201 ? `Created ${copied.id}, a copy of ${id}.` : `${copied.id} is the copy of ${id} made before.`, copied.notes ?? []);
      app.navigate(jobHref(copied.id));
    } catch (err) {
      replace(message, problemView(err, 'Not copied'));
      button.disabled = false;
    }
  }

  const devSelect = statusSelect('device-status', deviceStatuses, devStatus, (v) => {
    devStatus = v;
    devPager.reset();
    loadDevices();
  });

  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')),
    h('div', { class: 'title-row' }, title, actions),
    statusEl, message, note,
    section('Progress', progressEl),
    section('Devices', h('div', { class: 'toolbar' }, h('label', { for: 'device-status' }, 'Status'), devSelect), devicesEl),
    section('Definition', definitionEl),
    section('History', history.el));
  load();
  history.load();
  return () => refresher.dispose();
}

function section(name, ...children) {
  const hid = `h-${name.toLowerCase()}`;
  return h('section', { 'aria-labelledby': hid }, h('h2', { id: hid }, name), children);
}

function row(label, value) {
  return h('div', null, h('dt', null, label), h('dd', null, value));
}

function operationsTable(ops) {
  return h('table', { class: 'compact' },
    h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', null, ops.map((o) => h('tr', null, h('td', null, o.name), h('td', null, h('code', null, json(o.value)))))));
}

function devicesTable(items, status) {
  if (!items.length) return h('p', { class: 'empty' }, status ? `No ${status} device.` : 'No device.');
  return h('div', { class: 'table-wrap' }, h('table', null,
    h('thead', null, h('tr', null, ['Device', 'Name', 'Status', 'Error', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, items.map((d) => h('tr', null,
      h('td', null, h('code', null, d.deviceId), d.deleted ? h('span', { class: 'badge deleted' }, 'deleted') : null),
      h('td', null, d.name ?? ''),
      h('td', null, badge(d.status)),
      h('td', { class: 'error-text' }, d.error ?? ''),
      h('td', null, time(d.updatedAt)))))));
}

// historyView is a job's events from the event log, oldest first, a page
// at a time ("Load more"); reloaded on demand only (a big job has an event
// per device).
function historyView(id) {
  let next = '';
  const body = h('tbody');
  const status = h('div');
  const more = h('button', { type: 'button', hidden: true, onclick: () => load(true) }, 'Load more');
  const reload = h('button', { type: 'button', onclick: () => load(false) }, 'Reload');
  const el = h('div', null,
    h('p', { class: 'muted' }, 'Read from the event log itself: every recorded event of the job, unaltered.'),
    h('div', { class: 'table-wrap' }, h('table', null,
      h('thead', null, h('tr', null, ['#', 'Recorded', 'Event', 'Actor', 'Data'].map((c) => h('th', { scope: 'col' }, c)))),
      body)),
    status, h('div', { class: 'buttons' }, more, reload));

  async function load(append) {
    try {
      const page = await get(`/api/v1/jobs/${enc(id)}/history`, { cursor: append ? next : '', limit: 50 });
      if (!append) replace(body);
      for (const e of page.items ?? []) {
        body.append(h('tr', null,
          h('td', { class: 'num' }, String(e.revision)),
          h('td', null, time(e.recordedAt)),
          h('td', null, h('code', null, e.type)),
          h('td', null, e.metadata?.actor ?? ''),
          h('td', null, h('details', null, h('summary', null, 'data'), h('pre', null, JSON.stringify(e.data, null, 2))))));
      }
      next = page.next ?? '';
      more.hidden = !next;
      replace(status);
    } catch (err) {
      replace(status, problemView(err, 'Could not load the history'));
    }
  }
  return { el, load: () => load(false) };
}
