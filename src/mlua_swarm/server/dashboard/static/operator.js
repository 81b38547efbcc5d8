// The operator console: join, take a seat, and answer spawn / ask / hook_before requests as they arrive.
import { el, getJSON, json, pageData, post, setLive, toast } from "./common.js";

const data = pageData();
const pending = document.getElementById("pending");
const empty = document.getElementById("pending-empty");
const count = document.getElementById("pending-count");
const cards = new Map();
let stream = null;

function recount() {
  count.textContent = String(cards.size);
  empty.hidden = cards.size > 0;
}

function looksJSON(text) {
  try { JSON.parse(text); return true; } catch { return false; }
}

function editor(id, initial) {
  const area = el("textarea", { id, rows: "5", class: "code", spellcheck: "false", "aria-describedby": `${id}-hint` });
  area.value = initial;
  const hint = el("div", { id: `${id}-hint`, class: "muted lbl" });
  const update = () => { hint.textContent = area.value.trim() === "" ? "empty" : looksJSON(area.value) ? "sent as JSON" : "sent as text"; };
  area.addEventListener("input", update);
  update();
  return [area, hint];
}

async function reply(req, body, card) {
  try {
    await post("/ui/api/operator/reply", { req_id: req.req_id, ...body });
    card.remove();
    cards.delete(req.req_id);
    recount();
    toast(`answered ${req.type} ${req.req_id}`);
  } catch (err) {
    toast(`could not answer: ${err.message}`);
  }
}

function button(label, cls, onClick, extra) {
  return el("button", { type: "button", class: cls, onclick: onClick, ...(extra || {}) }, label);
}

function render(req) {
  if (cards.has(req.req_id)) return;
  const id = `v-${cards.size}-${req.req_id.replace(/[^A-Za-z0-9]/g, "")}`;
  const card = el("article", { class: `request k-${req.type}`, "data-req": req.req_id, "data-kind": req.type, "aria-label": `${req.type} request` });
  const head = el("h3", null, el("span", { class: "badge" }, req.type), req.agent || "", req.attempt ? el("span", { class: "muted" }, `attempt ${req.attempt}`) : null);
  card.append(head);
  const facts = el("dl", { class: "kv" });
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(el("dt", null, k), el("dd", null, v)); };
  add("run", req.run_id ? el("a", { href: `/runs/${req.run_id}` }, req.run_id) : null);
  add("step", req.task_id ? el("code", null, req.task_id) : null);
  add("request", el("code", null, req.req_id));
  card.append(facts);
  if (req.type === "ask") card.append(el("div", { class: "lbl" }, "question"), el("pre", { class: "code" }, json(req.question)));
  if (req.prompt !== undefined && req.prompt !== null) card.append(el("div", { class: "lbl" }, "prompt"), el("pre", { class: "code prompt" }, json(req.prompt)));
  if (req.prompt_truncated) card.append(el("div", { class: "muted lbl truncated" }, `first ${req.prompt.length} of ${req.prompt_chars} characters`));
  const gate = req.type === "hook_before";
  if (req.context) card.append(el("details", { class: "context", open: gate }, el("summary", null, "context"), el("pre", { class: "code" }, json(req.context))));
  if (req.agent_def) card.append(el("details", { class: "agent-def" }, el("summary", null, `agent (${req.agent_def.kind || "?"})`), el("pre", { class: "code" }, json(req.agent_def))));
  if (req.directive) card.append(el("details", null, el("summary", null, "directive"), el("pre", { class: "code" }, req.directive)));
  const buttons = el("div", { class: "buttons" });
  if (gate) {
    const reason = el("input", { id: `${id}-reason`, placeholder: "reason (for a rejection)", "aria-label": "reason" });
    buttons.append(
      button("Approve", "primary", () => reply(req, { kind: "hook_ack", ok: true }, card)),
      button("Reject", "danger", () => reply(req, { kind: "hook_ack", ok: false, reason: reason.value || "rejected in the console" }, card)),
      reason);
  } else {
    const [area, hint] = editor(id, "");
    card.append(el("label", { for: id, class: "lbl" }, req.type === "ask" ? "Answer" : "Value"), area, hint);
    if (req.type === "ask") {
      buttons.append(button("Send answer", "primary", () => reply(req, { kind: "answer", text: area.value }, card)));
    } else {
      buttons.append(button("Submit value", "primary", () => reply(req, { kind: "spawn_ack", text: area.value, ok: true }, card)));
      const v = req.verdicts;
      if (v && v.values) {
        for (const verdict of v.values) {
          buttons.append(button(verdict, "verdict", () => reply(req, { kind: "spawn_ack", text: area.value.trim() === "" ? undefined : area.value,
            verdict, channel: v.channel, ok: true }, card), { "data-verdict": verdict }));
        }
      }
      buttons.append(
        button("Fail step", "danger", () => reply(req, { kind: "spawn_ack", text: area.value, ok: false }, card)),
        button("Halt", "", () => reply(req, { kind: "spawn_halt", text: area.value, reason: "halted in the console" }, card)));
    }
  }
  card.append(buttons);
  cards.set(req.req_id, card);
  pending.append(card);
  recount();
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/ui/api/operator/stream");
  stream.addEventListener("hello", () => setLive(true));
  stream.addEventListener("request", (m) => render(JSON.parse(m.data)));
  stream.addEventListener("cancel", (m) => {
    const frame = JSON.parse(m.data);
    const card = cards.get(frame.req_id);
    if (card) { card.remove(); cards.delete(frame.req_id); recount(); toast(`request ${frame.req_id} was cancelled`); }
  });
  stream.onerror = () => setLive(false);
}

function joined(sid) {
  document.getElementById("sid").textContent = sid;
  document.getElementById("joined").hidden = false;
  document.getElementById("join-form").hidden = true;
  connect();
  loadRuns();
}

async function loadRuns() {
  try {
    const list = await getJSON("/ui/api/runs?status=running,pending&limit=50");
    document.getElementById("running-runs").replaceChildren(...list.runs.map((r) => el("option", { value: r.run_id }, r.blueprint || "")));
  } catch { /* the datalist is a convenience */ }
}

document.getElementById("join-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const res = await post("/ui/api/operator/join", { desc: document.getElementById("join-desc").value });
    joined(res.sid);
    toast(`joined as ${res.sid}`);
  } catch (err) { toast(`could not join: ${err.message}`); }
});

document.getElementById("acquire-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const runId = document.getElementById("acquire-run").value.trim();
  const slot = document.getElementById("acquire-slot").value.trim();
  try {
    const res = await post("/ui/api/operator/acquire", { run_id: runId, slot: slot || undefined });
    toast(`seat ${res.slot ?? ""} taken on ${runId} (generation ${res.gen ?? "?"})`);
    document.getElementById("acquire-btn").dataset.done = runId;
  } catch (err) { toast(`could not take the seat: ${err.message}`); }
});

document.getElementById("leave-form")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (stream) { stream.close(); stream = null; }
  await post("/ui/api/operator/leave", {});
  location.reload();
});

if (data.session) joined(data.session.sid);
recount();
