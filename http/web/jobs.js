// The job list and a job's page.
import { ApiError, Latest, enc, get, newIdempotencyKey, post } from './api.js';
import {
  Pager, Refresher, badge, bdi, clipped, confirmDialog, h, jobHref, json, keepFocus, problemView, progress, replace, setHref, time,
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
  const loads = new Latest();
  const pager = new Pager(() => load());
  const refresher = new Refresher(() => load(), refreshMs);
  const summaryEl = h('div', { class: 'summary-wrap' });
  const listEl = h('div', { class: 'list' });
  const note = h('p', { class: 'muted' });
  const select = statusSelect('job-status', jobStatuses, status, (v) => setStatus(v));
  app.title('Jobs');

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

  const columns = [
    ['Job', 'col-name'], ['Status', 'col-status'], ['Progress', 'col-progress'],
    ['Succeeded', 'num col-count'], ['Failed', 'num col-count'], ['Pending', 'num col-count'], ['Total', 'num col-count'],
    ['Device set', 'col-set'], ['Type', 'col-type'], ['Updated', 'col-time'],
  ];

  function table(items) {
    if (!items.length) {
      return h('p', { class: 'empty' }, status ? `No ${status} job in the last 30 days.` : 'No job in the last 30 days.');
    }
    return h('div', { class: 'table-wrap' }, h('table', { class: 'data job-list' },
      h('caption', { class: 'visually-hidden' }, 'Jobs, running first, then newest first'),
      h('thead', null, h('tr', null, columns.map(([c, cls]) => h('th', { scope: 'col', class: cls }, c)))),
      h('tbody', null, items.map((j) => h('tr', null,
        h('th', { scope: 'row' }, h('a', { href: jobHref(j.id), 'data-key': `job:${j.id}` }, bdi(j.name || j.id)),
          h('div', { class: 'muted small' }, j.id)),
        h('td', null, badge(j.status), j.reason ? h('div', { class: 'muted small reason' }, clipped(j.reason, `reason:${j.id}`)) : null),
        h('td', null, progress(j.counts)),
        h('td', { class: 'num' }, String(j.counts?.succeeded ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.failed ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.pending ?? 0)),
        h('td', { class: 'num' }, String(j.counts?.total ?? 0)),
        h('td', null, j.deviceSetId ? h('a', { href: setHref(j.deviceSetId), 'data-key': `job:${j.id}:set` }, j.deviceSetId) : ''),
        h('td', null, j.jobType ?? ''),
        h('td', null, time(j.updatedAt)))))));
  }

  // load asks for the summary and the page of the current filter; a
  // filter or page chosen meanwhile starts a load that supersedes it.
  async function load() {
    const req = loads.start();
    refresher.clear();
    try {
      const [sum, page] = await Promise.all([
        get(`/api/v1/summary`, undefined, { signal: req.signal }),
        get(`/api/v1/jobs`, { status, cursor: pager.cursor, limit: 25 }, { signal: req.signal }),
      ]);
      if (!req.current()) return;
      const refreshing = (sum.running ?? 0) + (sum.pending ?? 0) > 0;
      keepFocus(() => {
        replace(summaryEl, summaryView(sum));
        replace(listEl, table(page.items ?? []), pager.view(page.next, 'Job list pages'));
      });
      refreshNote(note, refreshing);
      refresher.want(refreshing);
    } catch (err) {
      if (!req.current()) return;
      keepFocus(() => replace(listEl, problemView(err, 'Could not load the jobs')));
      refresher.want(retryable(err));
    }
  }

  replace(root,
    h('div', { class: 'title-row' }, h('h1', { tabindex: '-1' }, 'Jobs'), h('a', { class: 'button primary', href: '#/new' }, 'New job')),
    summaryEl,
    h('div', { class: 'toolbar' }, h('label', { for: 'job-status' }, 'Status'), select, note),
    listEl);
  load();
  return () => {
    loads.abort();
    refresher.dispose();
  };
}

// jobDetail is #/jobs/ID: the job, its progress and definition, its
// devices, its history from the event log; Stop and Copy. A job the
// 30-day list no longer holds shows its history only; one the event log
// does not know either is "not found".
export function jobDetail(root, { id }, app) {
  // One key per visit of the page: a double click on Copy, or a retry
  // after a lost answer, copies once.
  const copyKey = newIdempotencyKey();
  let devStatus = '';
  let job = null;
  let copying = false;
  const missing = { job: false, history: false };
  const jobLoads = new Latest();
  const devLoads = new Latest();
  const refresher = new Refresher(() => load(), refreshMs);
  const devPager = new Pager(() => loadDevices());
  app.title(`Job ${id}`);

  const title = h('h1', { tabindex: '-1' }, bdi(id));
  const statusEl = h('div', { class: 'job-status' });
  // Stop and Copy are made once and updated in place, so that a refresh
  // never takes the focus from them.
  const stopButton = h('button', { type: 'button', class: 'danger', 'data-key': 'stop', onclick: stop }, 'Stop…');
  const copyButton = h('button', { type: 'button', 'data-key': 'copy', onclick: copy }, 'Copy as a new job…');
  const actions = h('div', { class: 'actions', hidden: true }, stopButton, copyButton);
  const message = h('div', { class: 'action-message', 'aria-live': 'polite' });
  const progressEl = h('div');
  const definitionEl = h('div');
  const devicesEl = h('div');
  const note = h('p', { class: 'muted' });
  const history = historyView(id, () => {
    missing.history = true;
    notFound();
  });

  function renderJob() {
    const name = job.name || job.id;
    replace(title, bdi(name));
    app.title(`Job ${name}`);
    replace(statusEl, badge(job.status), job.reason ? h('span', { class: 'reason' }, ' ', clipped(job.reason, 'reason')) : null);
    const c = job.counts ?? {};
    replace(progressEl, progress(c, true), h('dl', { class: 'counts' },
      [['Succeeded', c.succeeded], ['Failed', c.failed], ['Pending', c.pending], ['Total', c.total]]
        .map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, String(v ?? 0))))));
    replace(definitionEl, h('dl', { class: 'definition' },
      row('ID', h('code', null, job.id)),
      row('Description', job.description ? bdi(job.description) : h('span', { class: 'muted' }, 'none')),
      row('Device set', job.deviceSetId ? h('a', { href: setHref(job.deviceSetId), 'data-key': 'definition:set' }, job.deviceSetId) : ''),
      row('Job type', job.jobType),
      row('Operations', operationsTable(job.operations ?? [])),
      row('Timeout', `${job.timeoutSeconds} s per device`),
      row('Batch size', String(job.batchSize)),
      row('Cancellation threshold', job.cancellationThreshold ? `${job.cancellationThreshold} % of the devices failed` : '0 (never: the job fails at its end if any device failed)'),
      row('Created', time(job.createdAt)),
      row('Updated', time(job.updatedAt))));
    const stoppable = active(job.status);
    const stopHadFocus = document.activeElement === stopButton;
    stopButton.disabled = !stoppable;
    if (stoppable) stopButton.removeAttribute('title');
    else stopButton.title = 'Only a pending or running job can be stopped';
    copyButton.disabled = copying;
    actions.hidden = false;
    // A disabled button loses the focus: give it to its neighbour.
    if (stopHadFocus && !stoppable) copyButton.focus({ preventScroll: true });
  }

  // jobMissing shows that the 30-day list does not hold the job: only its
  // history is left to show, if the event log has one.
  function jobMissing() {
    missing.job = true;
    devLoads.abort();
    for (const sec of [progressSec, devicesSec, definitionSec]) sec.hidden = true;
    actions.hidden = true;
    replace(note);
    replace(statusEl, h('div', { class: 'notice' },
      h('p', null, h('strong', null, 'Not in the 30-day job list. '), 'Its history below is read from the event log, which keeps every job.')));
    notFound();
  }

  // notFound replaces the view with one message once neither the job list
  // nor the event log knows the job.
  function notFound() {
    if (!missing.job || !missing.history) return;
    jobLoads.abort();
    devLoads.abort();
    refresher.want(false);
    const hadFocus = root.contains(document.activeElement);
    app.title('Job not found');
    const h1 = h('h1', { tabindex: '-1' }, 'Job not found');
    replace(root,
      h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')),
      h1,
      h('div', { class: 'notice notice-error', role: 'alert' },
        h('p', null, 'No job has the ID ', h('code', null, bdi(id)), ': neither the 30-day job list nor the event log holds it.'),
        h('p', null, h('a', { href: '#/jobs' }, 'Go to the jobs'))));
    if (hadFocus) h1.focus({ preventScroll: true });
  }

  async function loadJob(req) {
    try {
      const answer = await get(`/api/v1/jobs/${enc(id)}`, undefined, { signal: req.signal });
      if (!req.current()) return false;
      job = answer;
      keepFocus(renderJob);
      return active(job.status);
    } catch (err) {
      if (!req.current()) return false;
      if (err instanceof ApiError && err.status === 404) {
        jobMissing();
        return false;
      }
      replace(statusEl, problemView(err, 'Could not load the job'));
      return retryable(err);
    }
  }

  // loadDevices asks for the page of the current filter; a filter or page
  // chosen meanwhile, or a refresh, supersedes it.
  async function loadDevices() {
    if (missing.job) return;
    const req = devLoads.start();
    try {
      const page = await get(`/api/v1/jobs/${enc(id)}/devices`, { status: devStatus, cursor: devPager.cursor, limit: 50 }, { signal: req.signal });
      if (!req.current()) return;
      keepFocus(() => replace(devicesEl, devicesTable(page.items ?? [], devStatus), devPager.view(page.next, 'Device pages')));
    } catch (err) {
      if (!req.current()) return;
      // A job the list does not hold has no devices to list: the job's
      // own 404 says so, once.
      if (err instanceof ApiError && err.status === 404) replace(devicesEl);
      else keepFocus(() => replace(devicesEl, problemView(err, 'Could not load the devices')));
    }
  }

  async function load() {
    const req = jobLoads.start();
    refresher.clear();
    const [again] = await Promise.all([loadJob(req), loadDevices()]);
    if (!req.current() || missing.job) return;
    refreshNote(note, again);
    refresher.want(again);
  }

  async function stop() {
    const { ok, reason } = await confirmDialog({
      title: ['Stop “', bdi(job?.name || id), '”?'],
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

  async function copy() {
    const { ok } = await confirmDialog({
      title: ['Copy “', bdi(job?.name || id), '” as a new job?'],
      body: ['The new job has this job’s definition and runs on the devices this job targeted that are still in its device set. It starts at once.'],
      confirmLabel: 'Create the copy',
    });
    if (!ok) return;
    copying = true;
    copyButton.disabled = true;
    try {
      const res = await post(`/api/v1/jobs/${enc(id)}/copy`, undefined, { 'Idempotency-Key': copyKey });
      const copied = res.data;
      app.flash(res.status === 201 ? `Created ${copied.id}, a copy of ${id}.` : `${copied.id} is the copy of ${id} made before.`, copied.notes ?? []);
      app.navigate(jobHref(copied.id));
    } catch (err) {
      replace(message, problemView(err, 'Not copied'));
      copying = false;
      copyButton.disabled = false;
    }
  }

  const devSelect = statusSelect('device-status', deviceStatuses, devStatus, (v) => {
    devStatus = v;
    devPager.reset();
    loadDevices();
  });

  const progressSec = section('Progress', progressEl);
  const devicesSec = section('Devices', h('div', { class: 'toolbar' }, h('label', { for: 'device-status' }, 'Status'), devSelect), devicesEl);
  const definitionSec = section('Definition', definitionEl);
  replace(root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← Jobs')),
    h('div', { class: 'title-row' }, title, actions),
    statusEl, message, note,
    progressSec, devicesSec, definitionSec,
    section('History', history.el));
  load();
  history.load();
  return () => {
    jobLoads.abort();
    devLoads.abort();
    history.abort();
    refresher.dispose();
  };
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
    h('tbody', null, ops.map((o) => h('tr', null, h('td', null, bdi(o.name)), h('td', null, h('code', null, json(o.value)))))));
}

function devicesTable(items, status) {
  if (!items.length) return h('p', { class: 'empty' }, status ? `No ${status} device.` : 'No device.');
  const columns = [['Device', 'col-id'], ['Name', 'col-name'], ['Status', 'col-status'], ['Error', 'col-text'], ['Updated', 'col-time']];
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data job-devices' },
    h('thead', null, h('tr', null, columns.map(([c, cls]) => h('th', { scope: 'col', class: cls }, c)))),
    h('tbody', null, items.map((d) => h('tr', null,
      h('td', null, h('code', null, d.deviceId), d.deleted ? h('span', { class: 'badge deleted' }, 'deleted') : null),
      h('td', null, bdi(d.name)),
      h('td', null, badge(d.status)),
      h('td', { class: 'error-text' }, d.error ? clipped(d.error, `error:${d.deviceId}`) : ''),
      h('td', null, time(d.updatedAt)))))));
}

// historyView is a job's events from the event log, oldest first, a page
// at a time ("Load more"); reloaded on demand only (a big job has an event
// per device). onMissing is called when the event log does not know the
// job.
function historyView(id, onMissing) {
  let next = '';
  const loads = new Latest();
  const body = h('tbody');
  const status = h('div');
  const more = h('button', { type: 'button', hidden: true, onclick: () => load(true) }, 'Load more');
  const reload = h('button', { type: 'button', onclick: () => load(false) }, 'Reload');
  const columns = [['#', 'num col-count'], ['Recorded', 'col-time'], ['Event', 'col-event'], ['Actor', 'col-actor'], ['Data', 'col-text']];
  const el = h('div', null,
    h('p', { class: 'muted' }, 'Read from the event log itself: every recorded event of the job, unaltered.'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data history' },
      h('thead', null, h('tr', null, columns.map(([c, cls]) => h('th', { scope: 'col', class: cls }, c)))),
      body)),
    status, h('div', { class: 'buttons' }, more, reload));

  // load asks for the first page (append false) or the next; the latest
  // choice wins (Reload supersedes a Load more in flight, and the other
  // way round).
  async function load(append) {
    const req = loads.start();
    try {
      const page = await get(`/api/v1/jobs/${enc(id)}/history`, { cursor: append ? next : '', limit: 50 }, { signal: req.signal });
      if (!req.current()) return;
      if (!append) replace(body);
      for (const e of page.items ?? []) {
        body.append(h('tr', null,
          h('td', { class: 'num' }, String(e.revision)),
          h('td', null, time(e.recordedAt)),
          h('td', null, h('code', null, e.type)),
          h('td', null, bdi(e.metadata?.actor)),
          h('td', null, h('details', null, h('summary', null, 'data'), h('pre', null, json(e.data, 2))))));
      }
      next = page.next ?? '';
      more.hidden = !next;
      replace(status);
    } catch (err) {
      if (!req.current()) return;
      if (err instanceof ApiError && err.status === 404) {
        replace(status, h('p', { class: 'empty' }, 'The event log holds no event of this job.'));
        onMissing();
        return;
      }
      replace(status, problemView(err, 'Could not load the history'));
    }
  }
  return { el, load: () => load(false), abort: () => loads.abort() };
}
