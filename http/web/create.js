// The form that creates a job: POST /jobs under an Idempotency-Key
// drawn once per form, so that a double click or a retry after a lost
// answer creates one job; the problem's field errors are shown next to
// their fields.
import { ApiError, Latest, enc, get, newIdempotencyKey, post } from './api.js';
import { bdi, h, jobHref, plain, problemView, replace } from './dom.js';

const jobTypes = [
  ['setting', 'settings'],
  ['property', 'properties'],
  ['command', 'commands'],
];

// parseValue reads an operation's value as JSON when it parses (1200,
// true, "text", {"a": 1}) and as a plain string otherwise.
export function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// createJob is #/new.
export function createJob(root, _params, app) {
  let key = newIdempotencyKey();
  let sets = [];
  let template = null;
  const setLoads = new Latest();
  const templateLoads = new Latest();
  app.title('New job');
  const fields = new Map(); // API field name -> {input, error}
  const ops = []; // {row, name, value, error}

  // field builds one labelled input with its hint and error line.
  function field(name, label, input, hint) {
    const id = `f-${name}`;
    input.id = id;
    input.name = name;
    const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
    input.setAttribute('aria-describedby', [hintEl ? hintEl.id : '', error.id].join(' ').trim());
    fields.set(name, { input, error });
    return h('div', { class: 'field' }, h('label', { for: id }, label), hintEl, input, error);
  }

  const nameIn = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off' });
  const descIn = h('textarea', { rows: '2', maxlength: '2000' });
  const setIn = h('select', { required: true, onchange: () => loadTemplate() }, h('option', { value: '' }, 'Loading…'));
  const setNote = h('p', { class: 'hint', 'aria-live': 'polite' });
  const typeIn = h('select', { required: true, onchange: () => fillNames() },
    jobTypes.map(([t]) => h('option', { value: t }, t)));
  const names = h('datalist', { id: 'operation-names' });
  const opsBody = h('div', { class: 'ops' });
  const opsError = h('p', { class: 'field-error', id: 'f-operations-error', hidden: true });
  fields.set('operations', { input: null, error: opsError });
  const devicesIn = h('textarea', { rows: '2', autocomplete: 'off', spellcheck: 'false' });
  const timeoutIn = h('input', { type: 'number', min: '1', max: '86400', step: '1', inputmode: 'numeric' });
  const batchIn = h('input', { type: 'number', min: '1', max: '10000', step: '1', inputmode: 'numeric' });
  const thresholdIn = h('input', { type: 'number', min: '0', max: '100', step: '1', inputmode: 'numeric' });
  const summary = h('div', { class: 'form-summary' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create job');

  function addOp(name = '', value = '') {
    const i = ops.length;
    const nameEl = h('input', { type: 'text', id: `f-op-${i}-name`, list: 'operation-names', required: true, value: name, autocomplete: 'off', 'aria-describedby': `f-op-${i}-error` });
    const valueEl = h('input', { type: 'text', id: `f-op-${i}-value`, value, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': `f-op-values-hint f-op-${i}-error` });
    const error = h('p', { class: 'field-error', id: `f-op-${i}-error`, hidden: true });
    const op = { name: nameEl, value: valueEl, error, row: null };
    const remove = h('button', {
      type: 'button', class: 'small', 'aria-label': `Remove operation ${i + 1}`,
      onclick: () => {
        op.row.remove();
        op.removed = true;
        ops.find((o) => !o.removed)?.name.focus();
        if (!ops.some((o) => !o.removed)) addOp();
      },
    }, 'Remove');
    op.row = h('div', { class: 'op-row' },
      h('div', { class: 'field' }, h('label', { for: nameEl.id }, `Operation ${i + 1}: name`), nameEl),
      h('div', { class: 'field' }, h('label', { for: valueEl.id }, h('span', { class: 'visually-hidden' }, `Operation ${i + 1} `), 'value'), valueEl),
      remove, error);
    ops.push(op);
    opsBody.append(op.row);
    return op;
  }

  async function loadSets() {
    const req = setLoads.start();
    try {
      // One page of up to 1000 sets: enough for a select; more are named.
      const page = await get(`/api/v1/device-sets`, { limit: 1000 }, { signal: req.signal });
      if (!req.current()) return;
      sets = page.items ?? [];
      // An option holds text only, no element to isolate a name in: its
      // direction controls are left out, lest they reverse "(ID)".
      replace(setIn, h('option', { value: '' }, sets.length ? 'Choose a device set' : 'No device set defined'),
        sets.map((s) => h('option', { value: s.id, disabled: s.broken },
          `${plain(s.name || s.id)} (${s.id})${s.broken ? ' — broken' : ''}`)));
      if (page.next) replace(setNote, 'Only the first 1000 device sets are listed.');
    } catch (err) {
      if (!req.current()) return;
      replace(setIn, h('option', { value: '' }, 'Could not load the device sets'));
      replace(setNote, problemView(err, 'Device sets'));
    }
  }

  // loadTemplate reads the chosen set's template, to offer its settings,
  // properties or commands as operation names: that of the set chosen
  // last, whichever answer comes first.
  async function loadTemplate() {
    const req = templateLoads.start();
    template = null;
    const set = sets.find((s) => s.id === setIn.value);
    replace(setNote, set?.broken ? ['This set is broken: ', bdi(set.brokenReason)] : '');
    fillNames();
    if (!set?.templateId) return;
    let answer = null;
    try {
      answer = await get(`/api/v1/device-templates/${enc(set.templateId)}`, undefined, { signal: req.signal });
    } catch {
      answer = null; // names are then typed by hand
    }
    if (!req.current()) return;
    template = answer;
    fillNames();
  }

  function fillNames() {
    const plural = jobTypes.find(([t]) => t === typeIn.value)?.[1];
    const items = (template && plural && template[plural]) || [];
    replace(names, items.map((it) => h('option', { value: it.name }, `${plain(it.name)} (${plain(it.schema)})`)));
  }

  function clearErrors() {
    replace(summary);
    for (const { input, error } of fields.values()) {
      error.hidden = true;
      replace(error);
      input?.removeAttribute('aria-invalid');
    }
    for (const op of ops) {
      op.error.hidden = true;
      replace(op.error);
      op.name.removeAttribute('aria-invalid');
      op.value.removeAttribute('aria-invalid');
    }
  }

  // place finds where a field error of the API goes: its field's input and
  // error line ("operations[2].value" -> the third row's value), or null.
  function place(field) {
    const m = /^operations\[(\d+)\](?:\.(name|value))?/.exec(field ?? '');
    if (m) {
      const live = ops.filter((o) => !o.removed);
      const op = live[Number(m[1])];
      if (op) return { input: m[2] === 'value' ? op.value : op.name, error: op.error };
      return fields.get('operations');
    }
    const base = /^deviceIds\b/.test(field ?? '') ? 'deviceIds' : field;
    return fields.get(base) ?? null;
  }

  // showErrors puts each field error next to its field; those of a field
  // the form does not show (a header, the body) stay in the summary.
  function showErrors(err) {
    const unplaced = [];
    let first = null;
    for (const fe of err.fieldErrors) {
      const at = place(fe.field);
      if (!at) {
        unplaced.push(fe);
        continue;
      }
      at.error.hidden = false;
      at.error.append(h('span', null, `${fe.message}`), ' ');
      if (at.input) {
        at.input.setAttribute('aria-invalid', 'true');
        const fold = at.input.closest('details');
        if (fold) fold.open = true;
        first ??= at.input;
      }
    }
    const shown = new ApiError(err.status, { ...err.problem, errors: unplaced });
    replace(summary, problemView(shown, 'The job was not created'));
    if (err.fieldErrors.length) {
      summary.firstChild.append(h('p', null, 'The fields concerned are marked below.'));
    }
    focusFirst(first);
  }

  // focusFirst moves the focus to the first marked input, else to the
  // summary of what went wrong.
  function focusFirst(input) {
    if (input) {
      input.focus();
      return;
    }
    const notice = summary.firstChild;
    if (notice) {
      notice.tabIndex = -1;
      notice.focus();
    }
  }

  function intOrUndefined(input) {
    return input.value === '' ? undefined : Number(input.value);
  }

  function body() {
    const b = {
      name: nameIn.value.trim(),
      description: descIn.value,
      deviceSetId: setIn.value,
      jobType: typeIn.value,
      operations: ops.filter((o) => !o.removed).map((o) => ({ name: o.name.value.trim(), value: parseValue(o.value.value) })),
      timeoutSeconds: intOrUndefined(timeoutIn),
      batchSize: intOrUndefined(batchIn),
      cancellationThreshold: intOrUndefined(thresholdIn),
    };
    const ids = devicesIn.value.split(/[\s,]+/).filter(Boolean);
    if (ids.length) b.deviceIds = ids;
    return b;
  }

  async function onSubmit(e) {
    e.preventDefault();
    if (submit.disabled) return;
    clearErrors();
    // A number input holding no number reads as empty: say so rather
    // than send the default.
    const bad = [['timeoutSeconds', timeoutIn], ['batchSize', batchIn], ['cancellationThreshold', thresholdIn]]
      .filter(([, input]) => input.validity.badInput)
      .map(([field]) => ({ field, message: 'is not a whole number' }));
    if (bad.length) {
      showErrors(new ApiError(400, { title: 'Invalid request', errors: bad }));
      return;
    }
    submit.disabled = true;
    replace(submit, 'Creating…');
    try {
      const res = await post(`/api/v1/jobs`, body(), { 'Idempotency-Key': key });
      const job = res.data;
      app.flash(res.status === 201 ? `Created job ${job.id}.` : `This form had created job ${job.id} already.`, job.notes ?? []);
      app.navigate(jobHref(job.id));
      return;
    } catch (err) {
      if (err instanceof ApiError && err.is('idempotency-key-reused')) {
        // An earlier submission of this form created a job and this body
        // differs: a new key makes the next submission a new job.
        key = newIdempotencyKey();
        replace(summary, problemView(err, 'Not created'), h('p', { class: 'notice' },
          'An earlier submission of this form may have created a job already: look in the job list. Submitting again creates a new job.'));
        focusFirst(null);
      } else if (err instanceof ApiError) {
        showErrors(err);
      }
    } finally {
      submit.disabled = false;
      replace(submit, 'Create job');
    }
  }

  addOp();
  const form = h('form', { class: 'job-form', novalidate: true, onsubmit: onSubmit },
    summary,
    field('name', 'Name', nameIn),
    field('description', 'Description (optional)', descIn),
    field('deviceSetId', 'Device set', setIn),
    setNote,
    field('jobType', 'Job type', typeIn, 'Which of the set’s template’s settings, properties or commands the operations name.'),
    h('fieldset', { class: 'ops-fieldset', 'aria-describedby': 'f-operations-error' },
      h('legend', null, 'Operations'),
      h('p', { class: 'hint', id: 'f-op-values-hint' },
        'A value is read as JSON when it parses: 1200 is a number, true a boolean, "1200" (with quotes) a string, {"a": 1} an object. Anything else is sent as a string, as typed.'),
      names, opsBody, opsError,
      h('button', { type: 'button', onclick: () => addOp().name.focus() }, 'Add an operation')),
    h('details', { class: 'optional' },
      h('summary', null, 'Optional: devices, timeout, batch size, cancellation threshold'),
      field('deviceIds', 'Devices (IDs, separated by spaces, commas or lines)', devicesIn, 'Empty: every device of the set when the job is created.'),
      field('timeoutSeconds', 'Timeout per device (seconds)', timeoutIn, 'Empty: 30. From 1 to 86400.'),
      field('batchSize', 'Batch size', batchIn, 'Empty: 100. Devices per dispatch batch, from 1 to 10000.'),
      field('cancellationThreshold', 'Cancellation threshold (%)', thresholdIn, 'Empty or 0: never. The share of the devices whose failure fails the job at once.')),
    h('div', { class: 'buttons' }, submit, h('a', { class: 'button', href: '#/jobs' }, 'Cancel')));
  replace(root, h('h1', { tabindex: '-1' }, 'New job'), form);
  loadSets();
  return () => {
    setLoads.abort();
    templateLoads.abort();
  };
}
