// The page's shell: the API key field, the navigation, and a router over
// the URL's fragment (#/jobs, #/jobs/ID, #/new, #/devices, #/device-sets,
// #/device-sets/ID), so that every view has an address and the browser's
// Back works, while the server serves one page.
import { apiKey, onAuthError, setApiKey } from './api.js';
import { bdi, h, plain, replace } from './dom.js';
import { jobDetail, jobList } from './jobs.js';
import { createJob } from './create.js';
import { deviceList, setDetail, setList } from './fleet.js';

const main = document.getElementById('main');
const flashEl = document.getElementById('flash');
const authEl = document.getElementById('auth-message');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('api-key');
const keyState = document.getElementById('key-state');
const keyForget = document.getElementById('key-forget');

// routes: the first whose pattern matches the fragment's path renders.
const routes = [
  [/^\/?$/, jobList, 'jobs'],
  [/^\/jobs$/, jobList, 'jobs'],
  [/^\/jobs\/([^/]+)$/, jobDetail, 'jobs', 'id'],
  [/^\/new$/, createJob, 'new'],
  [/^\/devices$/, deviceList, 'devices'],
  [/^\/device-sets$/, setList, 'device-sets'],
  [/^\/device-sets\/([^/]+)$/, setDetail, 'device-sets', 'id'],
];

let dispose = null;
let pendingFlash = null;
// keyRefused is whether the service answered 401 to the key set.
let keyRefused = false;

// app is what views may ask of the shell.
const app = {
  navigate(hash) {
    window.location.hash = hash;
  },
  // setQuery records a view's state in the fragment without re-rendering.
  setQuery(params) {
    const path = currentPath();
    const q = new URLSearchParams(params).toString();
    window.history.replaceState(null, '', `#${path}${q ? `?${q}` : ''}`);
  },
  // title names the view in the document's title (the tab, the history).
  title(text) {
    document.title = `${plain(text)} — fleetjobs`;
  },
  // flash shows a message (and notes) above the next view.
  flash(message, notes = []) {
    pendingFlash = { message, notes };
  },
};

function currentPath() {
  return window.location.hash.replace(/^#/, '').split('?')[0];
}

// render shows the view of the fragment. moveFocus (an in-app
// navigation) puts the focus on its heading, so that a screen reader reads
// the new view; a first load or a new key leaves the focus where it is.
function render(moveFocus = false) {
  const hash = window.location.hash;
  // Other fragments (the skip link's #main) are not views.
  if (hash && !hash.startsWith('#/')) return;
  const [path, qs] = hash.replace(/^#/, '').split('?');
  const query = new URLSearchParams(qs ?? '');
  if (dispose) dispose();
  dispose = null;
  replace(authEl);
  authEl.hidden = true;
  if (pendingFlash) {
    replace(flashEl, h('div', { class: 'notice notice-ok' }, h('p', null, pendingFlash.message),
      pendingFlash.notes.length ? h('ul', null, pendingFlash.notes.map((n) => h('li', null, n))) : null));
    pendingFlash = null;
  } else {
    replace(flashEl);
  }
  for (const [re, view, nav, param] of routes) {
    const m = re.exec(path);
    if (!m) continue;
    const params = { query };
    if (param) {
      try {
        params[param] = decodeURIComponent(m[1]);
      } catch {
        params[param] = m[1];
      }
    }
    markNav(nav);
    dispose = view(main, params, app) ?? null;
    if (moveFocus) main.querySelector('h1')?.focus({ preventScroll: true });
    return;
  }
  markNav('');
  app.title('Not found');
  replace(main, h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, h('a', { href: '#/jobs' }, 'Go to the jobs')));
  if (moveFocus) main.querySelector('h1')?.focus({ preventScroll: true });
}

function markNav(nav) {
  for (const a of document.querySelectorAll('nav.main-nav a')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showKeyState() {
  let state = 'No key set.';
  if (apiKey()) state = keyRefused ? 'The key set for this tab was refused: enter another.' : 'A key is set for this tab.';
  replace(keyState, state);
  keyForget.hidden = !apiKey();
}

keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  setApiKey(keyInput.value.trim());
  keyRefused = false;
  keyInput.value = '';
  showKeyState();
  render();
});

keyForget.addEventListener('click', () => {
  setApiKey('');
  keyRefused = false;
  showKeyState();
  render();
});

onAuthError((err) => {
  const denied = err.status === 403;
  const refused = !denied && Boolean(apiKey());
  let lead = 'An API key is needed. ';
  let help = 'Enter your API key in the field at the top of the page. It is kept for this tab only.';
  if (denied) {
    lead = 'Not allowed. ';
    help = 'This key’s role may not do this: enter a key with a role that may (an operator key to create or stop jobs).';
  } else if (refused) {
    lead = 'The API key was refused. ';
    help = 'The service does not know the key set for this tab: enter a valid one in the field at the top of the page.';
  }
  if (refused !== keyRefused) {
    keyRefused = refused;
    showKeyState();
  }
  replace(authEl, h('p', null, h('strong', null, lead), bdi(err.problem?.detail)), h('p', null, help));
  authEl.hidden = false;
  keyInput.focus();
});

window.addEventListener('hashchange', () => render(true));
showKeyState();
render();
