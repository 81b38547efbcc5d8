// The run page: draws the flow IR as nested blocks, colours each step by its state, follows the run's
// event stream, and shows a step's attempts, output, parts, stats and trace when it is selected.
import { clock, duration, el, getJSON, json, pageData, setLive } from "./common.js";

const data = pageData();
const run = data.run;
const RANK = { running: 8, failed: 7, timeout: 6, cancelled: 5, blocked: 4, pending: 3, skipped: 2, replayed: 1, passed: 0 };
const TERMINAL = new Set(["done", "failed", "cancelled", "interrupted"]);

const nodesByRef = new Map();   // step ref -> [step node info]
const nodesByIndex = new Map(); // the node's index in a pre-order walk of the flow (entries' node_index) -> step node info
let nodeCount = 0;
const dispatches = new Map();   // step_id -> dispatch
const perRef = new Map();       // step ref -> dispatches in order
const groups = [];              // loop and fanout infos
let stepCount = 0;
let traceSeq = 0;
let selected = null;            // {info, lane}
let runStatus = run.status;

// ---------- drawing the IR ----------

const INFIX = { eq: "==", ne: "!=", lt: "<", lte: "<=", gt: ">", gte: ">=", add: "+", sub: "-", mul: "*", div: "/", mod: "%", and: "and", or: "or", in: "in" };

function exprText(expr) {
  if (expr === null || expr === undefined) return "";
  if (typeof expr !== "object") return JSON.stringify(expr);
  if (expr.op === "path") return expr.at;
  if (expr.op === "lit") return JSON.stringify(expr.value);
  if (expr.lhs !== undefined && INFIX[expr.op]) return `${exprText(expr.lhs)} ${INFIX[expr.op]} ${exprText(expr.rhs)}`;
  if (expr.args && INFIX[expr.op]) return expr.args.map(exprText).join(` ${INFIX[expr.op]} `);
  const args = Object.entries(expr).filter(([k]) => k !== "op").flatMap(([, v]) => (Array.isArray(v) ? v : [v]));
  return `${expr.op}(${args.map(exprText).join(", ")})`;
}

function block(kind, headBits, ...children) {
  return el("div", { class: `n blk n-${kind}`, role: "group", "aria-label": kind },
    el("div", { class: "hd" }, el("b", null, kind), ...headBits), ...children);
}

// Nodes are numbered in the order build() first reaches them, children in wire order: the pre-order
// walk the engine numbers them by (flow.Step.index), which a step entry records as its node_index.
function build(node, ctx) {
  const index = nodeCount++;
  switch (node.kind) {
    case "step": return buildStep(node, ctx, index);
    case "seq": {
      const box = el("div", { class: "n n-seq" });
      for (const child of node.children || []) box.append(build(child, ctx));
      return box;
    }
    case "branch":
      return block("branch", [el("span", { class: "expr", title: exprText(node.cond) }, `if ${exprText(node.cond)}`)],
        el("div", { class: "cols" },
          el("div", { class: "col" }, el("div", { class: "lbl" }, "then"), build(node.then, ctx)),
          el("div", { class: "col" }, el("div", { class: "lbl" }, "else"), build(node.else, ctx))));
    case "loop": {
      const info = { kind: "loop", max: node.max, steps: [], count: el("span", { class: "count" }, "0") };
      groups.push(info);
      const inner = build(node.body, { ...ctx, loop: info });
      return block("loop", [el("span", null, "iterations ", info.count, ` / ${node.max}`),
        el("span", { class: "expr", title: exprText(node.cond) }, `while ${exprText(node.cond)}`)], inner);
    }
    case "fanout": {
      const info = { kind: "fanout", join: node.join, steps: [], lanes: [], laneBox: el("div", { class: "lanes", role: "listbox", "aria-label": "fanout lanes" }),
        summary: el("span", { class: "lanes-sum" }, "no lanes yet") };
      groups.push(info);
      info.laneBox.addEventListener("keydown", laneKeys);
      const inner = build(node.body, { ...ctx, fanout: info, loop: null });
      return block("fanout", [el("span", null, `join ${node.join}`), el("span", { class: "expr" }, `over ${exprText(node.items)}`), info.summary],
        info.laneBox, el("div", { class: "body-lbl" }, "each lane runs"), inner);
    }
    case "try":
      return block("try", [node.err_at ? el("span", { class: "expr" }, `error → ${exprText(node.err_at)}`) : null],
        build(node.body, ctx), el("div", { class: "body-lbl" }, "catch"), build(node.catch, ctx));
    case "assign":
      return el("div", { class: "n assign" }, `${exprText(node.at)} := ${exprText(node.value)}`);
    default:
      return el("div", { class: "n assign" }, `${node.kind}`);
  }
}

function buildStep(node, ctx, index) {
  const meta = el("span", { class: "meta" });
  const button = el("button", { type: "button", class: "n step st-pending", role: "treeitem", "aria-selected": "false",
    "data-ref": node.ref, "data-state": "pending" }, el("span", { class: "ref" }, node.ref), meta);
  const info = { ref: node.ref, node, el: button, meta, fanout: ctx.fanout || null, loop: ctx.loop || null, dispatches: [], index: stepCount++ };
  button.addEventListener("click", () => select(info, null));
  nodesByIndex.set(index, info);
  if (!nodesByRef.has(node.ref)) nodesByRef.set(node.ref, []);
  nodesByRef.get(node.ref).push(info);
  if (info.fanout) info.fanout.steps.push(info);
  if (info.loop) info.loop.steps.push(info);
  return button;
}

// ---------- state ----------

// The step node a dispatch ran at: the one its entry or its step.started event names (node_index);
// else, for an event or entry recorded before they named it, by its ref: the n-th run of a ref at the
// ref's n-th place (the last place takes the rest), lanes starting together at the place of the lane
// before them.
function placeOf(ref, nodeIndex, list) {
  const named = namedNode(ref, nodeIndex);
  if (named) return named;
  const nodes = nodesByRef.get(ref) || [];
  if (!nodes.length) return null;
  const prev = list[list.length - 1];
  if (prev && prev.node && prev.node.fanout && prev.status === "running" && !prev.entries.length) return prev.node;
  return nodes[Math.min(list.length, nodes.length - 1)];
}

function namedNode(ref, nodeIndex) {
  const info = Number.isInteger(nodeIndex) ? nodesByIndex.get(nodeIndex) : undefined;
  return info && info.ref === ref ? info : null;
}

function dispatchFor(stepId, ref, nodeIndex) {
  let d = dispatches.get(stepId);
  if (d) {
    moveTo(d, namedNode(ref, nodeIndex));
    return d;
  }
  const list = perRef.get(ref) || [];
  perRef.set(ref, list);
  const node = placeOf(ref, nodeIndex, list);
  d = { step_id: stepId, ref, entries: [], status: "pending", node };
  list.push(d);
  dispatches.set(stepId, d);
  if (node) node.dispatches.push(d);
  return d;
}

// A dispatch drawn by its ref (an event that did not name its node) goes where its entry says it ran.
function moveTo(d, node) {
  if (!node || d.node === node) return;
  if (d.node) {
    touch(d);
    const left = d.node.dispatches;
    left.splice(left.indexOf(d), 1);
  }
  d.node = node;
  node.dispatches.push(d);
}

function stateOf(info, lane) {
  const list = info.dispatches;
  if (!list.length) return "pending";
  if (lane !== null && lane !== undefined) return list[lane] ? list[lane].status : "pending";
  return list[list.length - 1].status;
}

function paintStep(info) {
  const state = stateOf(info, null);
  const button = info.el;
  if (button.dataset.state !== state) {
    button.classList.remove(`st-${button.dataset.state}`);
    button.classList.add(`st-${state}`);
    button.dataset.state = state;
  }
  const last = info.dispatches[info.dispatches.length - 1];
  const bits = [];
  if (info.dispatches.length > 1) bits.push(`×${info.dispatches.length}`);
  if (last && last.entries.length) {
    const e = last.entries[last.entries.length - 1];
    if (e.attempt > 1) bits.push(`attempt ${e.attempt}`);
    if (e.duration_ms !== null && e.duration_ms !== undefined) bits.push(duration(e.duration_ms / 1000));
  } else if (last && last.elapsed !== undefined && last.elapsed !== null) bits.push(duration(last.elapsed / 1000));
  else if (state === "running") bits.push("running");
  info.meta.textContent = bits.join(" · ");
  button.dataset.count = String(info.dispatches.length);
  button.setAttribute("aria-label", `${info.ref}: ${state}${bits.length ? ", " + bits.join(", ") : ""}`);
}

function laneState(group, k) {
  let best = null;
  for (const info of group.steps) {
    const d = info.dispatches[k];
    const s = d ? d.status : "pending";
    if (best === null || RANK[s] > RANK[best]) best = s;
  }
  // A lane whose every step passed (or was skipped) is done; one still waiting for later steps runs on.
  if (best === "pending" && group.steps.some((info) => info.dispatches[k])) best = "running";
  return best || "pending";
}

function paintGroup(group) {
  const n = Math.max(0, ...group.steps.map((s) => s.dispatches.length));
  if (group.kind === "loop") { group.count.textContent = String(n); return; }
  while (group.lanes.length > n) group.lanes.pop().remove();
  while (group.lanes.length < n) {
    const k = group.lanes.length;
    const lane = el("button", { type: "button", class: "lane st-pending", role: "option", "aria-selected": "false",
      tabindex: k === 0 ? "0" : "-1", "data-lane": String(k), "data-state": "pending" });
    lane.addEventListener("click", () => select(group.steps[0], k, group));
    group.lanes.push(lane);
    group.laneBox.append(lane);
  }
  const counts = {};
  group.lanes.forEach((lane, k) => {
    const s = laneState(group, k);
    counts[s] = (counts[s] || 0) + 1;
    if (lane.dataset.state !== s) {
      lane.classList.remove(`st-${lane.dataset.state}`);
      lane.classList.add(`st-${s}`);
      lane.dataset.state = s;
      lane.setAttribute("aria-label", `lane ${k}: ${s}`);
      lane.title = `lane ${k}: ${s}`;
    }
  });
  group.summary.textContent = n ? `${n} lanes · ` + Object.entries(counts).map(([s, c]) => `${c} ${s}`).join(", ") : "no lanes yet";
}

function laneKeys(event) {
  const lanes = [...event.currentTarget.children];
  const i = lanes.indexOf(document.activeElement);
  if (i < 0) return;
  const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
  if (!step) return;
  event.preventDefault();
  const next = lanes[Math.max(0, Math.min(lanes.length - 1, i + step))];
  lanes[i].tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

const dirtySteps = new Set();
const dirtyGroups = new Set();

function touch(d) {
  if (!d.node) return;
  dirtySteps.add(d.node);
  if (d.node.fanout) dirtyGroups.add(d.node.fanout);
  if (d.node.loop) dirtyGroups.add(d.node.loop);
}

let frame = 0;

// Stream events only mark what changed; the page is repainted once per animation frame, however many arrive.
function requestFlush() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; flush(); });
}

function flush() {
  for (const info of dirtySteps) paintStep(info);
  for (const group of dirtyGroups) paintGroup(group);
  dirtySteps.clear();
  dirtyGroups.clear();
  paintCounts();
  if (selected) showDetail();
}

function addEntries(entries) {
  for (const e of entries) {
    const d = dispatchFor(e.step_id || `replayed-${e.step_ref}-${stepCount}-${dispatches.size}`, e.step_ref, e.node_index);
    d.entries.push(e);
    d.status = e.status;
    d.live = null;
    touch(d);
  }
}

function paintCounts() {
  let done = 0, running = 0, failed = 0;
  for (const d of dispatches.values()) {
    if (d.status === "running") running++;
    else if (d.status === "failed" || d.status === "timeout" || d.status === "blocked") failed++;
    else if (d.status !== "pending") done++;
  }
  document.getElementById("run-counts").textContent = `${done} finished · ${running} running · ${failed} failed`;
}

function paintRun(record, now) {
  runStatus = record.status;
  const badge = document.getElementById("run-status");
  badge.textContent = record.status;
  badge.className = `badge s-${record.status}`;
  const end = TERMINAL.has(record.status) ? record.updated_at : now;
  document.getElementById("run-duration").textContent = duration(end - record.created_at);
  const live = !TERMINAL.has(record.status);
  document.getElementById("btn-cancel").disabled = !live;
  document.getElementById("btn-resume").disabled = record.status !== "interrupted";
  document.getElementById("btn-rerun").disabled = live;
  if (TERMINAL.has(record.status) && record.result !== null && record.result !== undefined) {
    document.getElementById("result-sec").hidden = false;
    document.getElementById("result").textContent = json(record.result);
  }
  if (!live) {
    for (const d of dispatches.values()) {
      if (d.status === "running") { d.status = record.status === "cancelled" ? "cancelled" : "failed"; touch(d); }
    }
  }
}

// ---------- steps waiting on an operator ----------

const WAITS_FOR = { spawn: "waits for its operator's answer", hook_before: "waits for its operator's approval to start",
  ask: "waits for its operator's answer to a question" };

function paintWaiting(rows, status) {
  const box = document.getElementById("waiting");
  const list = TERMINAL.has(status) ? [] : rows || [];
  box.hidden = !list.length;
  box.replaceChildren(...list.map((w) => el("p", { "data-step": w.step_id },
    el("b", null, w.agent || w.step_id), ` ${WAITS_FOR[w.kind] || "waits for its operator"}: seat ${w.slot || "—"}, held by “${w.holder}” (${w.sid}), `,
    w.connected ? el("span", null, "connected") : el("span", { class: "off" }, "not connected (the request waits until it attaches)"),
    " · ", el("a", { href: "/operator" }, "operator console"))));
}

// ---------- the trace ----------

const traceBody = document.getElementById("trace-body");
const TRACE_ROWS = 500;

function addTrace(events) {
  const rows = [];
  for (const ev of events) {
    if (ev.seq <= traceSeq) continue;
    traceSeq = ev.seq;
    if (FINISH_KINDS.has(ev.kind)) finished = true;
    else if (RESTART_KINDS.has(ev.kind)) finished = false;
    const payload = ev.payload === null || ev.payload === undefined ? "" : JSON.stringify(ev.payload);
    rows.push(el("tr", null, el("td", { class: "num" }, ev.seq), el("td", { class: "num" }, clock(ev.ts)),
      el("td", { class: "mono" }, ev.kind), el("td", null, ev.step_ref || ""), el("td", { class: "num" }, ev.attempt ?? ""),
      el("td", { class: "payload", title: payload.slice(0, 2000) }, payload.slice(0, 300))));
    liveFromTrace(ev);
  }
  traceBody.append(...rows);
  while (traceBody.children.length > TRACE_ROWS) traceBody.firstElementChild.remove();
}

// ---------- live updates ----------

function liveFromTrace(ev) {
  const p = ev.payload && typeof ev.payload === "object" ? ev.payload : {};
  liveEvent(ev.kind, { ...p, agent: p.agent ?? ev.step_ref, attempt: p.attempt ?? ev.attempt });
}

function liveEvent(kind, payload) {
  if (!kind || !payload) return;
  const stepId = payload.step_id || payload.task_id;
  const agent = payload.agent || payload.step_ref || payload.step;
  if (!stepId || typeof stepId !== "string" || !stepId.startsWith("ST-")) return;
  if (/attempt_started|step[._]started|step_dispatched/.test(kind) && agent) {
    const d = dispatchFor(stepId, agent, payload.node_index);
    if (!d.entries.length && d.status === "pending") { d.status = "running"; touch(d); }
  } else if (/step[._]finished/.test(kind) && agent && payload.status) {
    const d = dispatchFor(stepId, agent);
    if (!d.entries.length) { d.status = payload.status; d.elapsed = payload.elapsed_ms; touch(d); }
  }
}

const FINISH_KINDS = new Set(["core.run_finished", "core.run_interrupted"]);
const RESTART_KINDS = new Set(["core.run_started", "core.run_resumed", "core.run_rerun"]);
const QUIET_POLLS = 5;
let finished = false;   // the trace says the run's driver is done: nothing more will come
let quiet = 0;          // refreshes in a row that brought nothing new
let inflight = false;
let again = false;
let timer = null;

async function refresh() {
  if (inflight) { again = true; return; }
  inflight = true;
  try {
    const u = await getJSON(`/ui/api/runs/${run.run_id}/live?from=${entryCount}&after=${traceSeq}`);
    entryCount += u.steps.length;
    addEntries(u.steps);
    addTrace(u.trace);
    paintRun(u.run, u.now);
    paintWaiting(u.waiting, u.run.status);
    requestFlush();
    quiet = u.steps.length || u.trace.length ? 0 : quiet + 1;
    const ended = TERMINAL.has(u.run.status);
    if ((finished && ended) || (ended && quiet >= QUIET_POLLS)) stopLive();
    // The driver said it finished but its record is not written yet: ask again soon, not at the next slow poll.
    else if (finished) again = true;
    setLive(!finished && !ended);
  } catch {
    setLive(false);
  } finally {
    inflight = false;
    if (again) { again = false; schedule(); }
  }
}

function schedule() {
  if (timer) return;
  timer = setTimeout(() => { timer = null; refresh(); }, 100);
}

const STREAM_KINDS = ["step.started", "step.finished", "core.run_finished", "core.run_interrupted", "core.cancel_requested",
  "core.run_resumed", "core.run_rerun", "output.final", "output.progress", "output.artifact", "task_retry_scheduled", "end"];
let source = null;
let poller = null;

function startLive() {
  if (finished) return;
  source = new EventSource(`/v1/runs/${run.run_id}/events`);
  source.onopen = () => setLive(true);
  source.onmessage = (m) => onStream("message", m.data);
  for (const name of STREAM_KINDS) {
    source.addEventListener(name, (m) => onStream(name, m.data));
  }
  source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) startPolling(); };
  // The store is the record: a slow poll catches anything the stream does not say in a form we read.
  poller = setInterval(schedule, 2000);
}

function onStream(name, text) {
  let msg = null;
  try { msg = JSON.parse(text); } catch { msg = null; }
  if (msg && typeof msg === "object") {
    const kind = msg.kind || msg.type || name;
    const inner = msg.data && typeof msg.data === "object" ? msg.data : {};
    liveEvent(kind, { ...inner, step: msg.step, attempt: msg.attempt ?? inner.attempt });
    requestFlush();
    if (FINISH_KINDS.has(kind) && source) { source.close(); source = null; }
  }
  schedule();
}

function startPolling() {
  if (source) { source.close(); source = null; }
  if (!poller) poller = setInterval(schedule, 1000);
}

function stopLive() {
  if (source) { source.close(); source = null; }
  if (poller) { clearInterval(poller); poller = null; }
}

// ---------- drill-down ----------

function select(info, lane, group) {
  if (selected && selected.info.el) selected.info.el.setAttribute("aria-selected", "false");
  if (selected && selected.laneEl) selected.laneEl.setAttribute("aria-selected", "false");
  selected = { info, lane, group: group || null, laneEl: group ? group.lanes[lane] : null };
  info.el.setAttribute("aria-selected", "true");
  if (selected.laneEl) selected.laneEl.setAttribute("aria-selected", "true");
  showDetail();
}

function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", null, k), el("dd", null, v));
  }
  return dl;
}

function statsPairs(stats) {
  if (!stats) return [];
  const usage = stats.usage || {};
  const pairs = [
    ["worker", stats.worker_kind], ["model", stats.model],
    ["tokens in", usage.input_tokens], ["tokens out", usage.output_tokens], ["tokens", usage.total_tokens],
    ["cost", stats.cost_usd !== undefined ? `$${Number(stats.cost_usd).toFixed(4)}` : stats.cost], ["turns", stats.num_turns],
  ];
  for (const [k, v] of Object.entries(stats)) {
    if (!["worker_kind", "model", "usage", "cost_usd", "cost", "num_turns"].includes(k)) pairs.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  }
  return pairs;
}

function valueParts(value) {
  if (value && typeof value === "object" && !Array.isArray(value) && "out" in value && "parts" in value) return [value.out, value.parts];
  return [value, null];
}

function showDetail() {
  const { info, lane, group } = selected;
  const body = document.getElementById("detail-body");
  document.getElementById("detail-empty").hidden = true;
  const list = lane !== null && lane !== undefined && group
    ? group.steps.map((s) => s.dispatches[lane]).filter(Boolean)
    : info.dispatches;
  const title = lane !== null && lane !== undefined ? `lane ${lane}` : info.ref;
  const parts = [el("h3", null, title, " ", el("span", { class: `badge st-${lane != null && group ? laneState(group, lane) : stateOf(info, null)}` },
    lane != null && group ? laneState(group, lane) : stateOf(info, null)))];
  const rerun = el("button", { type: "button", id: "detail-rerun", disabled: !TERMINAL.has(runStatus) }, `Rerun from ${info.ref}`);
  rerun.addEventListener("click", () => {
    document.getElementById("rerun-step").value = info.ref;
    document.getElementById("rerun-step").form.requestSubmit();
  });
  parts.push(el("div", { class: "actions" }, rerun));
  parts.push(kv([["input", el("code", null, exprText(info.node.in).slice(0, 300))], ["writes", el("code", null, exprText(info.node.out))]]));
  if (!list.length) parts.push(el("p", { class: "muted" }, "Not dispatched yet."));
  const shown = list.slice(-20);
  if (list.length > shown.length) parts.push(el("p", { class: "muted" }, `Showing the last ${shown.length} of ${list.length} dispatches.`));
  for (const d of shown) {
    const box = el("div", { class: "attempt" });
    box.append(el("div", null, el("b", null, d.ref), " ", el("span", { class: "mono muted" }, d.step_id.startsWith("ST-") ? d.step_id : "")));
    if (!d.entries.length) box.append(kv([["state", d.status]]));
    for (const e of d.entries) {
      box.append(kv([["state", e.status], ["attempt", e.attempt], ["started", e.started_at ? clock(e.started_at) : null],
        ["finished", e.finished_at ? clock(e.finished_at) : null], ["duration", e.duration_ms != null ? duration(e.duration_ms / 1000) : null],
        ...statsPairs(e.stats)]));
      if (e.error) box.append(el("div", { class: "lbl" }, "error"), el("pre", { class: "code" }, json(e.error)));
      if (e.has_value) {
        const [out, ps] = valueParts(e.value);
        box.append(el("div", { class: "lbl" }, "output"), el("pre", { class: "code out" }, json(out)));
        if (ps) for (const [name, v] of Object.entries(ps)) box.append(el("div", { class: "lbl" }, `part ${name}`), el("pre", { class: "code" }, json(v)));
      }
      if (e.stderr_tail) box.append(el("div", { class: "lbl" }, "stderr (tail)"), el("pre", { class: "code" }, e.stderr_tail.slice(-4000)));
    }
    const retries = traceFor(d.step_id);
    if (retries.length) box.append(el("div", { class: "lbl" }, "events"), el("pre", { class: "code" }, retries.join("\n")));
    parts.push(box);
  }
  body.replaceChildren(...parts);
}

function traceFor(stepId) {
  const out = [];
  for (const row of traceBody.children) {
    const payload = row.lastElementChild.title;
    if (stepId.startsWith("ST-") && payload.includes(stepId)) out.push(`${row.children[2].textContent} ${payload.slice(0, 200)}`);
  }
  return out;
}

// ---------- start ----------

const flowBox = document.getElementById("flow");
if (data.flow) flowBox.append(build(data.flow, {}));
else flowBox.append(el("p", { class: "muted" }, "This run kept no Blueprint snapshot, so its flow cannot be drawn."));
let entryCount = data.steps.length;
addEntries(data.steps);
addTrace(data.trace);
for (const list of nodesByRef.values()) for (const info of list) dirtySteps.add(info);
for (const g of groups) dirtyGroups.add(g);
paintRun(data.run, data.now);
paintWaiting(data.waiting, data.run.status);
flush();
startLive();
setLive(!finished);
performance.mark("mse-drawn");
window.mseRun = { ready: true, dispatches, refresh };
