// devjobs Jobs view: live updates over server-sent events. Everything shown comes from
// the API as data and is put in the page with textContent only (never innerHTML).
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "href") node.setAttribute("href", v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

const enc = encodeURIComponent;
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const state = (s, title) => el("span", { class: "state s-" + (s || "none"), title: title || "" }, s || "");
const short = (c, n) => (c || "").slice(0, n);
const text = (id, value) => { const n = document.getElementById(id); if (n) n.textContent = value === null || value === undefined ? "" : String(value); };

function replaceBody(table, rows, empty, columns) {
  const body = table.tBodies[0];
  const fresh = document.createElement("tbody");
  if (!rows.length) fresh.append(el("tr", { class: "empty" }, el("td", { colSpan: columns }, empty)));
  for (const row of rows) fresh.append(row);
  body.replaceWith(fresh);
}

function countCells(counts) {
  const cell = el("td", {});
  for (const [s, n] of Object.entries(counts)) { const badge = state(s); badge.textContent = `${n} ${s}`; cell.append(badge, " "); }
  return cell;
}

function jobRows(data) {
  const e = data.environment;
  const base = `/environments/${enc(e.namespace)}/${enc(e.name)}`;
  const rows = [];
  for (const j of data.jobs) {
    const button = e.canRun && j.runnable ? el("button", { class: "run", type: "button", "data-source": j.source, "data-job": j.job }, j.runLabel) : null;
    rows.push(el("tr", { "data-key": j.key },
      el("td", {}, j.source),
      el("td", {}, el("a", { href: `${base}/jobs/${enc(j.source)}/${enc(j.job)}` }, j.job)),
      el("td", {}, j.trigger), el("td", {}, j.runsAs),
      el("td", {}, state(j.state, j.message), " ", el("span", { class: "why" }, j.message)),
      el("td", { class: "mono" }, short(j.commit, 7)), el("td", {}, j.started), el("td", {}, j.duration),
      el("td", { class: "mono origin" }, j.origin), el("td", {}, button)));
    for (const r of j.earlierRuns) {
      rows.push(el("tr", { class: "earlier" }, el("td", {}),
        el("td", {}, el("a", { href: `${base}/jobs/${enc(j.source)}/${enc(j.job)}?run=${enc(r.jobName)}` }, "earlier run")),
        el("td", {}, r.trigger), el("td", {}), el("td", {}, state(r.state)), el("td", { class: "mono" }, short(r.commit, 7)),
        el("td", {}, r.started), el("td", {}, r.duration), el("td", {}), el("td", {})));
    }
  }
  return rows;
}

async function run(source, job) {
  const body = document.body;
  const url = `/api/v1/environments/${enc(body.dataset.namespace)}/${enc(body.dataset.name)}/jobs/${enc(source)}/${enc(job)}/run`;
  const answer = await fetch(url, { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
  text("run-result", answer.ok ? `Asked to run ${source}/${job}.` : `Not run: ${answer.status} ${(await answer.text()).trim()}`);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.run");
  if (button) { button.disabled = true; run(button.dataset.source, button.dataset.job).finally(() => { button.disabled = false; }); }
});

function listen(url, handlers) {
  const source = new EventSource(url);
  for (const [name, handler] of Object.entries(handlers)) source.addEventListener(name, (m) => handler(JSON.parse(m.data)));
  return source;
}

function indexPage() {
  listen(document.body.dataset.events, {
    update: (data) => {
      const rows = data.environments.map((e) => el("tr", {},
        el("td", {}, el("a", { href: `/environments/${enc(e.namespace)}/${enc(e.name)}` }, `${e.namespace}/${e.name}`)),
        el("td", {}, e.phase),
        el("td", { class: "mono" }, e.commits.map((c) => `${c.source}@${short(c.commit, 7)} `).join("")),
        el("td", {}, state(e.jobsSucceeded.reason || e.jobsSucceeded.status, e.jobsSucceeded.message)),
        countCells(e.counts)));
      replaceBody(document.getElementById("environments"), rows, "No Environments you may see.", 5);
    },
  });
}

function environmentPage() {
  listen(document.body.dataset.events, {
    update: (data) => {
      if (!data) return;
      const e = data.environment;
      text("phase", e.phase || "unknown");
      const agg = document.getElementById("aggregate");
      agg.replaceWith(Object.assign(state(e.jobsSucceeded.reason || e.jobsSucceeded.status, e.jobsSucceeded.message), { id: "aggregate" }));
      text("commits", e.commits.map((c) => `${c.source}@${short(c.commit, 12)} `).join(""));
      text("plan-error", e.planError);
      replaceBody(document.getElementById("jobs"), jobRows(data), "No jobs yet.", 10);
    },
  });
}

function jobPage() {
  const log = document.getElementById("log");
  let shownJob = document.body.dataset.jobName || "";
  let source = null;
  let lines = 0;
  const words = { live: "from the pod", retained: "kept by devjobs after the pod was gone", none: "none yet" };
  function addLine(container, line) {
    log.append(el("span", { class: "line" }, el("span", { class: "c" }, `[${container}]`), " ", line), "\n");
    lines += 1;
  }
  function connect(fresh) {
    if (source) source.close();
    if (fresh) { log.replaceChildren(); lines = 0; }
    source = listen(document.body.dataset.events, {
      state: (d) => {
        if (!d) return;
        if (d.jobName && shownJob && d.jobName !== shownJob) { shownJob = d.jobName; connect(true); }
        shownJob = d.jobName || shownJob;
        const s = document.getElementById("state");
        s.replaceWith(Object.assign(state(d.state, d.message), { id: "state" }));
        text("reason", d.reason); text("message", d.message);
        text("exit-code", d.exitCode); text("commit", d.commit); text("started", d.started);
        text("duration", d.duration); text("job-name", d.jobName);
        text("log-source", words[d.logSource] || "");
        const rows = d.containers.map((c) => el("tr", { "data-container": c.name },
          el("td", { class: "mono" }, c.name), el("td", {}, c.kind), el("td", {}, state(c.state)),
          el("td", {}, c.exitCode === null ? "" : String(c.exitCode)), el("td", {}, c.words)));
        replaceBody(document.getElementById("containers"), rows, "", 5);
      },
      container: () => { if (lines === 0) log.replaceChildren(); },
      line: ([container, line]) => addLine(container, line),
      retained: (parts) => {
        if (lines > 0) return;
        log.replaceChildren();
        for (const part of parts) for (const line of part.text.split("\n").filter((x, i, a) => x || i < a.length - 1)) addLine(part.container, line);
      },
      end: () => {},
    });
  }
  connect(false);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "index") indexPage();
  else if (page === "environment") environmentPage();
  else if (page === "job") jobPage();
});
