// The runs list: filters apply at once, and the table follows the store every second without a reload.
import { age, duration, el, getJSON, pageData, setLive } from "./common.js";

const body = document.getElementById("runs-body");
const empty = document.getElementById("runs-empty");
const status = document.getElementById("f-status");
const blueprint = document.getElementById("f-blueprint");
const POLL_MS = 1000;

function row(r) {
  return el("tr", { "data-run": r.run_id, "data-status": r.status },
    el("td", null, el("a", { class: "mono", href: `/runs/${r.run_id}` }, r.run_id)),
    el("td", null, el("span", { class: `badge s-${r.status}` }, r.status)),
    el("td", null, r.blueprint ? el("a", { href: `/blueprints/${encodeURIComponent(r.blueprint)}` }, r.blueprint) : ""),
    el("td", { class: "goal", title: r.goal }, r.goal),
    el("td", { class: "num", title: new Date(r.created_at * 1000).toLocaleString() }, age(r.created_at, r.now)),
    el("td", { class: "num" }, duration(r.duration_s)),
  );
}

function render(data) {
  const rows = data.runs.map((r) => row({ ...r, now: data.now }));
  body.replaceChildren(...rows);
  empty.hidden = rows.length > 0;
}

function query() {
  const q = new URLSearchParams();
  if (status.value) q.set("status", status.value);
  if (blueprint.value) q.set("blueprint", blueprint.value);
  return q.toString();
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    render(await getJSON(`/ui/api/runs?${query()}`));
    setLive(true);
  } catch {
    setLive(false);
  }
  timer = setTimeout(refresh, POLL_MS);
}

for (const select of [status, blueprint]) {
  select.addEventListener("change", () => {
    const q = query();
    history.replaceState(null, "", q ? `/?${q}` : "/");
    refresh();
  });
}

render(pageData());
timer = setTimeout(refresh, POLL_MS);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
