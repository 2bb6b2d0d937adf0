// Live updates for repohub pages, and nothing else: the pages work without it.
"use strict";

// Re-reads the page and swaps in the parts that change while a run goes on.
async function refreshPipeline() {
  const r = await fetch(location.pathname, { credentials: "same-origin" });
  if (!r.ok) return;
  const doc = new DOMParser().parseFromString(await r.text(), "text/html");
  for (const id of ["pipeline-meta", "steps", "status"]) {
    const fresh = doc.getElementById(id);
    const old = document.getElementById(id);
    if (fresh && old) old.innerHTML = fresh.innerHTML;
  }
}

// Pipeline log: append lines as pcr-ci records them (Server-Sent Events).
function streamLog(pre) {
  const state = document.getElementById("log-state");
  const steps = new Map(JSON.parse(pre.dataset.steps || "[]"));
  let step = null;
  let count = 0;
  const source = new EventSource(pre.dataset.stream);
  source.addEventListener("open", () => {
    if (state) state.textContent = "Live — following the log.";
  });
  source.addEventListener("lines", (ev) => {
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const l of JSON.parse(ev.data)) {
      if (l.step !== step) {
        // A new step began, so the previous one ended: show its status and timing.
        if (step !== null) refreshPipeline();
        step = l.step;
        const h = document.createElement("span");
        h.className = "step";
        h.textContent = "==> " + l.step + " " + (steps.get(l.step) || "step") + "\n";
        frag.appendChild(h);
      }
      const s = document.createElement("span");
      s.className = "line";
      s.textContent = l.line + "\n";
      frag.appendChild(s);
      count++;
    }
    pre.appendChild(frag);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  source.addEventListener("end", (ev) => {
    source.close();
    if (state) state.textContent = count + " lines · pipeline " + ev.data + ".";
    refreshPipeline();
  });
  source.addEventListener("problem", (ev) => {
    if (state) state.textContent = "Waiting for pcr-ci: " + ev.data;
  });
}

// Deployments: when the cluster changes, fetch the fresh fragment and swap it in.
function liveDeployments(root) {
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch(root.dataset.fragment, { credentials: "same-origin" });
      if (r.ok) {
        const filter = document.getElementById("vm-filter");
        const value = filter ? filter.value : "";
        const hadFocus = filter && document.activeElement === filter;
        root.innerHTML = await r.text();
        const f = document.getElementById("vm-filter");
        if (f) { f.value = value; applyFilter(f); if (hadFocus) f.focus(); }
      }
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const source = new EventSource(root.dataset.stream);
  source.addEventListener("update", refresh);
}

function applyFilter(input) {
  const q = input.value.trim().toLowerCase();
  const rows = document.querySelectorAll("#vms tbody tr");
  for (const tr of rows) {
    tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q);
  }
}

document.addEventListener("input", (ev) => {
  if (ev.target && ev.target.id === "vm-filter") applyFilter(ev.target);
});

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (log && log.dataset.stream) streamLog(log);
  const live = document.getElementById("live");
  if (live && live.dataset.stream) liveDeployments(live);
});
