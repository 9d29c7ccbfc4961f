// The jetsource console: plain JavaScript, no framework, no build step.
// Every value from the server is shown with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let aggregates = [];

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    $("signin").hidden = false;
    throw new Error("sign in first");
  }
  const text = await response.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = { error: text }; }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, value, className) {
  const td = row.insertCell();
  if (value instanceof Node) td.appendChild(value); else td.textContent = value ?? "";
  if (className) td.className = className;
  return td;
}

function code(value) {
  const c = document.createElement("code");
  c.textContent = typeof value === "string" ? value : JSON.stringify(value);
  return c;
}

function clear(table) {
  const body = table.tBodies[0];
  while (body.rows.length) body.deleteRow(0);
  return body;
}

// A command id links to its status in the Errors view.
function commandLink(id) {
  if (!id) return "";
  const a = document.createElement("a");
  a.href = "#errors";
  a.textContent = id;
  a.className = "command-link";
  a.addEventListener("click", () => { $("status-id").value = id; lookUpStatus(); });
  return a;
}

// --- views -----------------------------------------------------------------

function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== "view-" + view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === view);
  if (view === "streams") loadStreams();
  if (view === "projectors") loadProjectors();
  if (view === "tail" && !tail) follow();
  if (view === "errors" && !rejections) followRejections();
}
window.addEventListener("hashchange", () => show(location.hash.slice(1) || "streams"));

// --- streams ---------------------------------------------------------------

async function loadStreams() {
  try {
    const { streams } = await api("/api/streams");
    const body = clear($("streams-table"));
    for (const s of streams) {
      const row = body.insertRow();
      cell(row, s.name);
      cell(row, s.messages, "num"); cell(row, s.bytes, "num"); cell(row, s.subject_count, "num");
      cell(row, s.first_seq, "num"); cell(row, s.last_seq, "num"); cell(row, s.contract ?? "-");
    }
  } catch (e) { console.error(e); }
}
$("streams-refresh").addEventListener("click", loadStreams);

// --- aggregate: events and state at a sequence -------------------------------

async function loadAggregate(event) {
  if (event) event.preventDefault();
  const type = $("aggregate-type").value, id = $("aggregate-id").value.trim();
  $("aggregate-error").textContent = "";
  try {
    const answer = await api(`/api/events/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
    const body = clear($("events-table"));
    for (const e of answer.events) {
      const row = body.insertRow();
      cell(row, e.seq, "num"); cell(row, e.event_type); cell(row, commandLink(e.command_id));
      cell(row, code(e.headers)); cell(row, code(e.body));
    }
    const last = answer.events.length ? answer.events[answer.events.length - 1].seq : 0;
    $("rewind-slider").max = last; $("rewind-slider").value = last; $("rewind-seq").value = last;
    showState(answer.state);
    $("aggregate-body").hidden = false;
  } catch (e) { $("aggregate-error").textContent = e.message; $("aggregate-body").hidden = true; }
}

function showState(state) {
  $("rewind-state").textContent = JSON.stringify(state.state, null, 2);
  $("rewind-note").textContent = `after sequence ${state.seq} (${state.events} events folded)` +
    (state.snapped_from ? `; #${state.snapped_from} falls inside one command's events` : "");
}

async function rewind(event) {
  if (event) event.preventDefault();
  const type = $("aggregate-type").value, id = $("aggregate-id").value.trim();
  const seq = $("rewind-seq").value;
  $("rewind-slider").value = seq;
  try {
    showState(await api(`/api/rewind/${encodeURIComponent(type)}/${encodeURIComponent(id)}?to_seq=${encodeURIComponent(seq)}`));
  } catch (e) { $("aggregate-error").textContent = e.message; }
}
$("aggregate-form").addEventListener("submit", loadAggregate);
$("rewind-form").addEventListener("submit", rewind);
$("rewind-slider").addEventListener("change", () => { $("rewind-seq").value = $("rewind-slider").value; rewind(); });

// --- send: a form from the command's JSON Schema ----------------------------

function resolve(root, schema) {
  while (schema && schema.$ref) {
    const path = schema.$ref.replace(/^#\//, "").split("/");
    schema = path.reduce((s, key) => (s ? s[key] : undefined), root);
  }
  return schema || {};
}

// The variants of a command enum: [{ name, description, schema }].
function commandsOf(root) {
  return (root.oneOf || []).map((variant) => {
    variant = resolve(root, variant);
    if (variant.type === "string" && variant.enum) {
      return variant.enum.map((name) => ({ name, description: variant.description, schema: {} }));
    }
    const name = Object.keys(variant.properties || {})[0];
    return [{ name, description: variant.description, schema: resolve(root, variant.properties[name]) }];
  }).flat().filter((c) => c.name);
}

function typesOf(schema) {
  const t = schema.type;
  return Array.isArray(t) ? t : t ? [t] : [];
}

function renderFields() {
  const aggregate = aggregates.find((a) => a.aggregate_type === $("send-type").value);
  const command = aggregate && commandsOf(aggregate.commands).find((c) => c.name === $("send-command").value);
  const fieldset = $("send-fields");
  fieldset.replaceChildren();
  $("send-description").textContent = command ? command.description || "" : "";
  if (!command) return;
  const required = new Set(command.schema.required || []);
  for (const [name, raw] of Object.entries(command.schema.properties || {})) {
    const schema = resolve(aggregate.commands, raw);
    const types = typesOf(schema).filter((t) => t !== "null");
    const label = document.createElement("label");
    label.textContent = name + (required.has(name) ? " *" : "") + " ";
    let input;
    if (types.length === 1 && types[0] === "boolean") {
      input = document.createElement("input"); input.type = "checkbox";
      input.checked = schema.default === true;
    } else if (types.length === 1 && (types[0] === "integer" || types[0] === "number")) {
      input = document.createElement("input"); input.type = "number";
      if (types[0] === "integer") input.step = "1"; else input.step = "any";
    } else if (types.length === 1 && types[0] === "string") {
      input = document.createElement("input");
    } else {
      input = document.createElement("textarea"); input.placeholder = "JSON";
    }
    input.name = name; input.dataset.kind = types.length === 1 ? types[0] : "json";
    input.required = required.has(name) && input.type !== "checkbox";
    if (schema.description) input.title = schema.description;
    label.appendChild(input);
    fieldset.appendChild(label);
  }
}

function commandBody() {
  const body = {};
  for (const input of $("send-fields").querySelectorAll("input, textarea")) {
    const kind = input.dataset.kind;
    if (kind === "boolean") body[input.name] = input.checked;
    else if (input.value === "") continue;
    else if (kind === "integer" || kind === "number") body[input.name] = Number(input.value);
    else if (kind === "string") body[input.name] = input.value;
    else body[input.name] = JSON.parse(input.value);
  }
  return body;
}

function fillCommands() {
  const aggregate = aggregates.find((a) => a.aggregate_type === $("send-type").value);
  const select = $("send-command");
  select.replaceChildren();
  for (const c of aggregate ? commandsOf(aggregate.commands) : []) select.add(new Option(c.name, c.name));
  renderFields();
}
$("send-type").addEventListener("change", fillCommands);
$("send-command").addEventListener("change", renderFields);

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reply = $("send-reply");
  reply.className = ""; reply.textContent = "sending…";
  const type = $("send-type").value, id = $("send-id").value.trim(), command = $("send-command").value;
  try {
    const expected = $("send-expected-seq").value;
    const answer = await api(`/api/send/${encodeURIComponent(type)}/${encodeURIComponent(id)}/${encodeURIComponent(command)}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        body: commandBody(),
        command_id: $("send-command-id").value.trim() || null,
        expected_seq: expected === "" ? null : Number(expected),
      }),
    });
    reply.className = answer.status;
    reply.textContent = answer.status + "\n" + JSON.stringify(answer, null, 2);
  } catch (e) { reply.className = "rejected"; reply.textContent = e.message; }
});

// --- errors: status by id, an aggregate's rejections, live rejections --------

async function lookUpStatus(event) {
  if (event) event.preventDefault();
  try {
    $("status-answer").textContent = JSON.stringify(await api(`/api/status/${encodeURIComponent($("status-id").value.trim())}`), null, 2);
  } catch (e) { $("status-answer").textContent = e.message; }
}
$("status-form").addEventListener("submit", lookUpStatus);

$("errors-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const type = $("errors-type").value, id = $("errors-id").value.trim();
  const body = clear($("errors-table"));
  try {
    const answer = await api(`/api/errors/${encodeURIComponent(type)}/${encodeURIComponent(id)}`);
    for (const r of answer.rejections || []) {
      const row = body.insertRow();
      cell(row, commandLink(r.command_id)); cell(row, r.code, "rejected"); cell(row, r.reason);
    }
  } catch (e) { const row = body.insertRow(); cell(row, e.message, "error"); }
});

let rejections = null;
function followRejections() {
  if (rejections) rejections.close();
  const type = $("live-errors-type").value;
  rejections = new EventSource("/api/rejections" + (type ? "?aggregate_type=" + encodeURIComponent(type) : ""));
  rejections.addEventListener("rejection", (message) => {
    const r = JSON.parse(message.data);
    const row = $("live-errors-table").tBodies[0].insertRow(0);
    cell(row, `${r.aggregate_type ?? ""} ${r.aggregate_id ?? ""}`);
    cell(row, commandLink(r.command_id)); cell(row, r.code, "rejected"); cell(row, r.reason);
  });
}
$("live-errors-type").addEventListener("change", () => { clear($("live-errors-table")); followRejections(); });

// --- projectors and process managers ----------------------------------------

async function loadProjectors() {
  $("projectors-error").textContent = "";
  try {
    const report = await api("/api/projectors");
    const body = clear($("projectors-table"));
    for (const p of report.projectors) {
      const streams = p.streams.length ? p.streams : [{}];
      for (const s of streams) {
        const row = body.insertRow();
        row.dataset.projector = p.name;
        cell(row, p.name); cell(row, p.kind); cell(row, p.phase + (p.error ? ": " + p.error : ""));
        cell(row, s.stream ?? "-"); cell(row, s.applied_seq ?? "", "num"); cell(row, s.stream_last_seq ?? "", "num");
        cell(row, s.lag ?? "", "num lag");
        const button = document.createElement("button");
        button.type = "button"; button.textContent = "parked";
        button.addEventListener("click", () => loadParked(p.name));
        cell(row, p.kind === "persisted" ? button : "-");
      }
    }
  } catch (e) { $("projectors-error").textContent = e.message; }
  loadProcessManagers();
}
$("projectors-refresh").addEventListener("click", loadProjectors);

async function loadProcessManagers() {
  $("processes-error").textContent = "";
  try {
    const report = await api("/api/process-managers");
    const body = clear($("processes-table"));
    for (const m of report.process_managers) {
      const consumers = m.consumers.length ? m.consumers : [{}];
      consumers.forEach((c, i) => {
        const row = body.insertRow();
        row.dataset.processManager = m.name;
        cell(row, i ? "" : m.name); cell(row, i ? "" : m.phase);
        cell(row, c.stream ?? "-"); cell(row, c.applied_seq ?? "", "num"); cell(row, c.stream_last_seq ?? "", "num");
        cell(row, c.pending ?? "", "num"); cell(row, c.in_hand ?? "", "num");
        cell(row, i ? "" : m.instances, "num"); cell(row, i ? "" : m.pending_deadlines, "num");
        if (i) { cell(row, ""); return; }
        const button = document.createElement("button");
        button.type = "button"; button.textContent = `${m.parked} parked`;
        button.addEventListener("click", () => loadProcessParked(m.name));
        cell(row, button);
      });
    }
  } catch (e) { $("processes-error").textContent = e.message; }
}

async function loadProcessParked(name) {
  $("process-parked-view").hidden = false; $("process-parked-name").textContent = name;
  const out = $("process-parked");
  const body = clear($("process-parked-table"));
  try {
    const answer = await api(`/api/process-parked/${encodeURIComponent(name)}`);
    out.textContent = `${name}: ` + (answer.parked.length ? JSON.stringify(answer.parked, null, 2) : "none parked");
    for (const p of answer.parked) {
      const row = body.insertRow();
      row.dataset.stream = p.stream; row.dataset.seq = p.seq;
      cell(row, p.stream); cell(row, p.seq, "num"); cell(row, p.error);
      const button = document.createElement("button");
      button.type = "button"; button.textContent = "Skip"; button.className = "skip-parked";
      // Two clicks: the first arms it, the second gives the trigger up.
      button.addEventListener("click", async () => {
        if (!button.dataset.armed) { button.dataset.armed = "1"; button.textContent = "Skip for good?"; return; }
        try {
          const outcome = await api(`/api/process-skip-parked/${encodeURIComponent(name)}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ stream: p.stream, seq: p.seq }) });
          await loadProcessParked(name);
          $("process-parked-outcome").textContent = `${p.stream} #${p.seq}: ${outcome.status}` + (outcome.reason ? ` (${outcome.reason})` : "");
        } catch (e) { $("process-parked-outcome").textContent = e.message; }
      });
      cell(row, button);
    }
  } catch (e) { out.textContent = e.message; }
}
$("process-parked-replay").addEventListener("click", async () => {
  const name = $("process-parked-name").textContent;
  try {
    const summary = await api(`/api/process-replay-parked/${encodeURIComponent(name)}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    await loadProcessParked(name);
    $("process-parked-outcome").textContent = `replayed: ${summary.applied}, failed: ${summary.failed.length}` + (summary.failed.length ? ` (${summary.failed.join("; ")})` : "");
  } catch (e) { $("process-parked-outcome").textContent = e.message; }
});

async function loadParked(name) {
  $("parked").hidden = false; $("parked-name").textContent = name;
  const body = clear($("parked-table"));
  try {
    const answer = await api(`/api/parked/${encodeURIComponent(name)}`);
    $("parked-list").textContent = answer.parked.length ? JSON.stringify(answer.parked, null, 2) : "none";
    for (const p of answer.parked) {
      const row = body.insertRow();
      row.dataset.stream = p.stream; row.dataset.seq = p.seq;
      cell(row, p.stream); cell(row, p.seq, "num"); cell(row, p.error); cell(row, p.deliveries, "num");
      const button = document.createElement("button");
      button.type = "button"; button.textContent = "Skip"; button.className = "skip-parked";
      // Two clicks: the first arms it, the second gives the event up.
      button.addEventListener("click", () => {
        if (!button.dataset.armed) { button.dataset.armed = "1"; button.textContent = "Skip for good?"; return; }
        skipParked(name, p.stream, p.seq);
      });
      cell(row, button);
    }
  } catch (e) { $("parked-list").textContent = e.message; }
}
// Gives up on one parked event for good: the read model goes on without it.
async function skipParked(name, stream, seq) {
  try {
    const outcome = await api(`/api/skip-parked/${encodeURIComponent(name)}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ stream, seq }) });
    await loadParked(name);
    $("parked-outcome").textContent = `${stream} #${seq}: ${outcome.status}` + (outcome.reason ? ` (${outcome.reason})` : "");
  } catch (e) { $("parked-outcome").textContent = e.message; }
}
$("parked-replay").addEventListener("click", async () => {
  const name = $("parked-name").textContent;
  try {
    $("parked-list").textContent = JSON.stringify(await api(`/api/replay-parked/${encodeURIComponent(name)}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }), null, 2);
  } catch (e) { $("parked-list").textContent = e.message; }
});

// --- live tail ---------------------------------------------------------------

let tail = null;
function follow(event) {
  if (event) event.preventDefault();
  if (tail) tail.close();
  const filter = $("tail-filter").value.trim() || "evt.>";
  tail = new EventSource("/api/tail?filter=" + encodeURIComponent(filter));
  tail.onopen = () => { $("tail-status").textContent = "following " + filter; };
  tail.onerror = () => { $("tail-status").textContent = "reconnecting…"; };
  tail.addEventListener("event", (message) => {
    const e = JSON.parse(message.data);
    const row = $("tail-table").tBodies[0].insertRow(0);
    cell(row, e.stream); cell(row, e.seq, "num"); cell(row, e.subject);
    cell(row, commandLink(e.command_id)); cell(row, code(e.body));
  });
}
$("tail-form").addEventListener("submit", follow);

// --- start -----------------------------------------------------------------

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("/api/signin", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ token: $("signin-token").value }) });
    location.reload();
  } catch (e) { $("signin-error").textContent = e.message; }
});

async function start() {
  try {
    ({ aggregates } = await api("/api/aggregates"));
  } catch (e) { console.error(e); return; }
  for (const select of document.querySelectorAll(".aggregate-types")) {
    if (select.classList.contains("with-all")) select.add(new Option("all", ""));
    for (const a of aggregates) select.add(new Option(a.aggregate_type, a.aggregate_type));
  }
  fillCommands();
  show(location.hash.slice(1) || "streams");
}
start();
