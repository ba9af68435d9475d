// The page's only way to the service: the public JSON API of the same
// origin. Paths are written out in full where they are called
// (get(`/api/v1/jobs/${id}`, undefined, { signal })): a Go test reads them
// there and checks each against the server's routes, so a renamed route
// breaks the build, and that each read can be superseded (its signal).

const keyStorage = 'fleetjobs.apiKey';

// memoryKey holds the key too, for browsers that refuse sessionStorage.
let memoryKey = '';

// apiKey is the key entered for this tab: kept in sessionStorage (gone
// when the tab closes), sent in the Authorization header, never in a URL.
export function apiKey() {
  try {
    return sessionStorage.getItem(keyStorage) ?? '';
  } catch {
    return '';
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(keyStorage, key);
    else sessionStorage.removeItem(keyStorage);
  } catch {
    // Storage refused (a private mode): the key lasts until reload.
  }
  memoryKey = key;
}

// consistencyToken is the Fleetjobs-Consistency-Token of the last command
// this page sent. Every request after it carries it, so that the read
// models answer only once they show that command's effect (the server
// waits, at most 5 s; a read model already past it answers at once).
let consistencyToken = '';

// ApiError is an answer other than 2xx, or no answer: status (0 for a
// network failure) and the problem+json body.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
  }

  // fieldErrors are the problem's errors[]: {field, message}.
  get fieldErrors() {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }

  // is tells the problem's type by its slug ("conflict", "not-found"...).
  is(slug) {
    return this.problem.type === `urn:fleetjobs:problem:${slug}`;
  }
}

const authListeners = [];

// onAuthError registers fn, called with the ApiError of every 401 and 403,
// so that the page can ask for a key.
export function onAuthError(fn) {
  authListeners.push(fn);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function request(method, path, { query, body, headers, signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  const hdrs = new Headers(headers ?? {});
  hdrs.set('Accept', 'application/json');
  const key = apiKey() || memoryKey;
  if (key) hdrs.set('Authorization', `Bearer ${key}`);
  if (consistencyToken) hdrs.set('Fleetjobs-Consistency-Token', consistencyToken);
  const init = { method, headers: hdrs, cache: 'no-store', credentials: 'same-origin', redirect: 'error', signal };
  if (body !== undefined) {
    hdrs.set('Content-Type', 'application/json');
    init.body = JSON.stringify(body);
  }
  for (let attempt = 0; ; attempt++) {
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      // An aborted request (a newer one superseded it) is no failure to
      // show: its AbortError goes to the caller as is.
      if (signal?.aborted) throw e;
      throw new ApiError(0, { title: 'No answer from the service', detail: String(e?.message ?? e) });
    }
    const token = resp.headers.get('Fleetjobs-Consistency-Token');
    if (token && method !== 'GET') consistencyToken = token;
    const text = await resp.text();
    let data = null;
    if (text && /json/.test(resp.headers.get('Content-Type') ?? '')) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (resp.ok) return { status: resp.status, data, headers: resp.headers };
    const err = new ApiError(resp.status, data ?? { title: resp.statusText || `HTTP ${resp.status}` });
    if (resp.status === 503 && err.is('not-caught-up') && attempt === 0) {
      // The read models are still applying our last command: wait as
      // told (bounded) and ask once more.
      const after = Math.min(Number(resp.headers.get('Retry-After')) || 1, 5);
      await sleep(after * 1000);
      signal?.throwIfAborted();
      continue;
    }
    if (resp.status === 401 || resp.status === 403) authListeners.forEach((fn) => fn(err));
    throw err;
  }
}

// get asks for path with the query parameters (empty ones left out) and
// returns the decoded body. signal (an AbortSignal, from Latest) aborts
// the request.
export async function get(path, query, { signal } = {}) {
  return (await request('GET', path, { query, signal })).data;
}

// Latest keeps only the newest of a series of loads of one thing (a list
// for a filter, a page): start() aborts the load before and hands out a
// ticket, {signal, current()}, whose current() stays true until a later
// start() or abort(). A load renders its answer, or its error, only while
// its ticket is current, so that a slow answer to an earlier choice never
// overwrites the answer to a later one; and a choice made while a load is
// in flight supersedes it rather than being dropped.
export class Latest {
  constructor() {
    this.ctrl = null;
  }

  start() {
    this.ctrl?.abort();
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    return { signal: ctrl.signal, current: () => this.ctrl === ctrl && !ctrl.signal.aborted };
  }

  // abort ends the load in flight, if any (the view is left).
  abort() {
    this.ctrl?.abort();
    this.ctrl = null;
  }
}

// post sends body (JSON; undefined sends none) and returns {status, data,
// headers}.
export function post(path, body, headers) {
  return request('POST', path, { body, headers });
}

// newIdempotencyKey is a random UUID (v4) for an Idempotency-Key: one per
// form or action, so that a double click or a retry creates one job.
// crypto.getRandomValues works on plain http too (randomUUID does not).
export function newIdempotencyKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// enc escapes one path segment (an ID).
export const enc = encodeURIComponent;
