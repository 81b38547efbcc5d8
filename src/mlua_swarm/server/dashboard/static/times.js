// Show stored timestamps (data-time, epoch seconds) as ages in the reader's clock.
import { age } from "./common.js";

for (const node of document.querySelectorAll("[data-time]")) {
  const t = Number(node.dataset.time);
  if (t) { node.textContent = age(t); node.title = new Date(t * 1000).toLocaleString(); }
}
