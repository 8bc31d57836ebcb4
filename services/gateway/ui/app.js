// Quaero's web UI: a hash-routed page per resource over the REST API. No build step, no
// dependencies. Every value from the API reaches the page as text (never as HTML).

const $app = document.getElementById("app");
const $flash = document.getElementById("flash");
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const JOB_EVENTS = ["snapshot", "created", "started", "progress", "completed", "failed", "cancelled"];
const EXECUTION_EVENTS = [
  "snapshot", "created", "started", "step_started", "step_accepted", "step_progress", "step_completed",
  "step_failed", "step_retry", "post_jobs_triggered", "completed", "failed", "cancelled",
];

// ------------------------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("aria-") && typeof value === "boolean") {
      el.setAttribute(key, String(value)); // ARIA states are spelled "true" and "false"
      continue;
    }
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function link(href, text) {
  return h("a", { href }, text);
}

function badge(status) {
  return h("span", { class: `badge ${status || ""}`, "data-status": status }, status || "-");
}

function when(value) {
  return value ? new Date(value).toLocaleString() : "-";
}

function duration(start, end) {
  if (!start) return "-";
  const seconds = Math.max(0, ((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60 ? `${minutes}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s` : `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`;
}

function short(id) {
  return id ? id.slice(0, 8) : "-";
}

function progressBar(job) {
  const p = job.progress;
  const pct = Math.max(0, Math.min(100, p.percentage || (TERMINAL.has(job.status) && p.total_urls === 0 ? 100 : 0)));
  return h(
    "div",
    {
      class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": Math.round(pct), "data-status": job.status, "data-job": job.id,
    },
    h("span", { style: `width: ${pct.toFixed(1)}%` }),
    h("em", {}, `${p.completed_urls}/${p.total_urls} urls · ${Math.round(pct)}%`),
  );
}

function table(columns, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h(
    "table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.endsWith("#") ? "num" : null }, c.replace(/#$/, ""))))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { class: columns[i].endsWith("#") ? "num" : null }, cell))))),
  );
}

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value ?? "-")]));
}

// Snippets mark matches with **…**; show them highlighted, everything else as text.
function snippet(text) {
  const out = h("p", { class: "snippet" });
  const parts = String(text || "").split("**");
  parts.forEach((part, i) => out.append(i % 2 ? h("mark", {}, part) : document.createTextNode(part)));
  return out;
}

function flash(message, kind = "error") {
  $flash.textContent = message;
  $flash.className = kind === "error" ? "" : kind;
  $flash.hidden = !message;
}

// ---------------------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}), ...options.headers },
  });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body?.error?.message || `HTTP ${response.status}`;
    if (response.status === 401) showTokenForm(message);
    throw new ApiError(message, response.status);
  }
  return body;
}

function qs(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== null && value !== undefined && value !== "") search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A watched SSE stream: `onData` gets each event's JSON. It is closed once `done(data)` says the
// resource finished, and when the page changes; until then the browser reconnects by itself
// with Last-Event-ID (and stops on its own when the gateway answers 204).
function follow(page, url, types, onData, done) {
  const source = new EventSource(url, { withCredentials: true });
  for (const type of types) {
    source.addEventListener(type, (event) => {
      const data = JSON.parse(event.data);
      onData(data, type);
      if (done(data)) source.close();
    });
  }
  page.cleanup(() => source.close());
  return source;
}

// ------------------------------------------------------------------------------------- token

function showTokenForm(message) {
  const input = h("input", { type: "password", name: "token", placeholder: "QUAERO_API_TOKEN", autocomplete: "off", required: true });
  $app.replaceChildren(
    h("h1", {}, "API token"),
    h("form", {
      class: "token card",
      onsubmit: (event) => {
        event.preventDefault();
        // The cookie carries the token to the API and to EventSource streams; SameSite=Strict
        // keeps other sites from making the browser send it.
        document.cookie = `quaero_token=${encodeURIComponent(input.value)}; path=/; SameSite=Strict`;
        flash("");
        route();
      },
    },
    h("p", { class: "muted" }, message || "This Quaero requires an API token."),
    input,
    h("button", { class: "primary", type: "submit" }, "Continue")),
  );
}

// -------------------------------------------------------------------------------------- pages

async function definitionsPage(page) {
  const data = await api("/api/job-definitions?limit=200&order_by=name&order_dir=asc");
  const execute = async (definition, button) => {
    button.disabled = true;
    try {
      const started = await api(`/api/job-definitions/${encodeURIComponent(definition.id)}/execute`, { method: "POST" });
      location.hash = `#/executions/${started.execution_id}`;
    } catch (error) {
      flash(`${definition.id}: ${error.message}`);
      button.disabled = false;
    }
  };
  const toggle = async (definition) => {
    try {
      const { created_at, updated_at, ...body } = definition;
      await api(`/api/job-definitions/${encodeURIComponent(definition.id)}`, {
        method: "PUT", body: JSON.stringify({ ...body, enabled: !definition.enabled }),
      });
      flash(`${definition.id} ${definition.enabled ? "disabled" : "enabled"}`, "info");
      page.refresh();
    } catch (error) {
      flash(`${definition.id}: ${error.message}`);
    }
  };
  page.render(
    h("div", { class: "row" }, h("h1", {}, "Job definitions"), h("span", { class: "muted" }, `${data.total_count} in all`)),
    h("p", { class: "muted" }, "Add more with ", h("code", {}, "quaero apply -f FILE"), " or POST /api/job-definitions."),
    table(
      ["Id", "Name", "Type", "Steps", "Schedule", "Post-jobs", "Enabled", ""],
      data.job_definitions.map((d) => [
        h("span", { class: "mono" }, d.id),
        d.name,
        d.type,
        d.steps.map((s) => s.action).join(", "),
        d.schedule || "-",
        d.post_jobs.join(", ") || "-",
        h("button", { class: "toggle", "data-definition": d.id, onclick: () => toggle(d) }, d.enabled ? "Disable" : "Enable"),
        h("div", { class: "row" },
          h("button", {
            class: "primary execute", "data-definition": d.id, disabled: !d.enabled,
            title: d.enabled ? "Start an execution" : "Enable it first",
            onclick: (event) => execute(d, event.currentTarget),
          }, "Execute"),
          link(`#/executions?definition=${encodeURIComponent(d.id)}`, "runs")),
      ]),
      "No job definitions yet.",
    ),
  );
}

function jobRows(jobs) {
  return jobs.map((j) => [
    link(`#/jobs/${j.id}`, short(j.id)),
    h("span", { class: "wrap" }, j.name),
    badge(j.status),
    progressBar(j),
    h("span", { class: "num" }, j.result_count),
    j.metadata.job_definition_id ? link(`#/executions/${j.metadata.execution_id}`, j.metadata.job_definition_id) : "-",
    when(j.created_at),
  ]);
}

async function jobsPage(page, _params, query) {
  const status = query.get("status") || "";
  const [stats, data] = await Promise.all([
    api("/api/jobs/stats"),
    api(`/api/jobs${qs({ status, limit: 100 })}`),
  ]);
  const filter = h("select", {
    "aria-label": "Status",
    onchange: (event) => { location.hash = `#/jobs${qs({ status: event.target.value })}`; },
  }, ["", "running", "completed", "failed", "cancelled", "pending"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  page.render(
    h("div", { class: "row" }, h("h1", {}, "Crawl jobs"), h("span", { class: "spacer" }), filter),
    h("div", { class: "stats" }, ["total", "running", "completed", "failed", "cancelled"].map((k) => h("div", { class: "stat" }, h("b", {}, stats[k]), h("span", {}, k)))),
    table(["Job", "Name", "Status", "Progress", "Docs#", "Definition", "Created"], jobRows(data.jobs), "No crawl jobs yet."),
  );
  // Live progress: refresh while any job runs.
  if (data.jobs.some((j) => !TERMINAL.has(j.status)) || stats.running) page.every(1500, () => page.refresh());
}

async function jobPage(page, [id]) {
  let job = await api(`/api/jobs/${encodeURIComponent(id)}`);
  const head = h("div");
  const tabs = { logs: "Logs", urls: "URLs", documents: "Documents", changes: "Changes" };
  let current = page.state.tab || "logs";
  const tabBar = h("div", { class: "tabs", role: "tablist" });
  const panel = h("div", { class: "panel" });

  const drawHead = () => {
    const m = job.metadata;
    head.replaceChildren(
      h("div", { class: "row" },
        h("h1", {}, job.name || job.id), badge(job.status), h("span", { class: "spacer" }),
        h("button", { class: "danger", disabled: job.status !== "running", onclick: () => act("cancel") }, "Cancel"),
        h("button", { onclick: () => act("rerun") }, "Rerun"),
        h("button", { class: "danger", disabled: !TERMINAL.has(job.status), onclick: () => act("delete") }, "Delete")),
      h("div", { class: "card" }, progressBar(job)),
      h("div", { class: "card" }, fields([
        ["id", h("span", { class: "mono" }, job.id)],
        ["seeds", job.seed_urls.join(", ")],
        ["source", `${job.source_id} (${job.source_type})`],
        ["urls", `${job.progress.completed_urls} done of ${job.progress.total_urls} · ${job.progress.failed_urls} failed · ${job.progress.skipped_urls} skipped · ${job.progress.pending_urls} pending`],
        ["documents", String(job.result_count)],
        ["definition", m.job_definition_id || "-"],
        ["execution", m.execution_id ? link(`#/executions/${m.execution_id}`, m.execution_id) : "-"],
        ["rerun of", m.rerun_of ? link(`#/jobs/${m.rerun_of}`, m.rerun_of) : "-"],
        ["started", when(job.started_at || job.created_at)],
        ["duration", duration(job.started_at || job.created_at, job.completed_at)],
        ["error", job.error || "-"],
      ])),
    );
  };

  const act = async (action) => {
    try {
      if (action === "delete") {
        await api(`/api/jobs/${id}`, { method: "DELETE" });
        location.hash = "#/jobs";
      } else if (action === "rerun") {
        const result = await api(`/api/jobs/${id}/rerun`, { method: "POST" });
        location.hash = `#/jobs/${result.new_job_id}`;
      } else {
        job = await api(`/api/jobs/${id}/cancel`, { method: "POST" });
        drawHead();
      }
    } catch (error) {
      flash(error.message);
    }
  };

  // Only the latest request may fill the panel: a slow answer for a tab the user already left
  // must not replace the one they are looking at.
  let ticket = 0;
  const drawPanel = async () => {
    const mine = ++ticket;
    page.state.tab = current;
    tabBar.replaceChildren(...Object.entries(tabs).map(([key, label]) =>
      h("button", { role: "tab", "aria-selected": key === current, "data-tab": key, onclick: () => { current = key; drawPanel(); } }, label)));
    let nodes;
    try {
      const draw = { logs: drawLogs, urls: drawUrls, documents: drawDocuments, changes: drawChanges }[current] || drawLogs;
      nodes = await draw();
    } catch (error) {
      nodes = [h("p", { class: "muted" }, error.message)];
    }
    if (mine === ticket) panel.replaceChildren(...nodes);
  };

  const select = (name, values, value, onchange) => h("select", { name, "aria-label": name, onchange: (e) => onchange(e.target.value) },
    values.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));

  const drawLogs = async () => {
    const level = page.state.level || "";
    const data = await api(`/api/jobs/${id}/logs${qs({ level, limit: 200 })}`);
    return [
      h("div", { class: "row", style: "margin: 10px 0" }, "Level",
        select("level", [["", "all"], ["debug", "debug +"], ["info", "info +"], ["warn", "warn +"], ["error", "error"]], level,
          (value) => { page.state.level = value; drawPanel(); }),
        h("span", { class: "muted" }, `${data.total_count} lines, newest first`)),
      table(["Time", "Level", "Message"], data.logs.map((l) => [when(l.timestamp), badge(l.level), h("span", { class: "wrap" }, l.message)]), "No log lines."),
    ];
  };

  const drawUrls = async () => {
    const state = page.state.urlState || "";
    const data = await api(`/api/jobs/${id}/urls${qs({ state, limit: 200 })}`);
    return [
      h("div", { class: "row", style: "margin: 10px 0" }, "State",
        select("state", [["", "all"], ["queued", "queued"], ["done", "done"], ["failed", "failed"], ["skipped", "skipped"], ["cancelled", "cancelled"]], state,
          (value) => { page.state.urlState = value; drawPanel(); }),
        h("span", { class: "muted" }, `${data.total_count} urls`)),
      table(["URL", "Depth#", "State", "Reason", "HTTP#", "Document"], data.urls.map((u) => [
        h("span", { class: "wrap" }, u.url), u.depth, badge(u.state), u.reason || "-", u.http_status || "-",
        u.document_id ? link(`#/documents/${u.document_id}`, short(u.document_id)) : (u.redirected_to ? `→ ${u.redirected_to}` : "-"),
      ]), "No URLs."),
    ];
  };

  const drawDocuments = async () => {
    const data = await api(`/api/jobs/${id}/documents?limit=200`);
    return [
      h("p", { class: "muted" }, `${data.total_count} documents`),
      table(["Title", "URL", "Updated"], data.documents.map((d) => [
        link(`#/documents/${d.id}`, d.title || d.url), h("span", { class: "wrap" }, d.url), when(d.updated_at),
      ]), "No documents yet."),
    ];
  };

  const drawChanges = async () => {
    const change = page.state.change || "";
    const data = await api(`/api/jobs/${id}/changes${qs({ change, limit: 200 })}`);
    return [
      h("div", { class: "row", style: "margin: 10px 0" }, "Change",
        select("change", [["", "all"], ["new", "new"], ["changed", "changed"], ["unchanged", "unchanged"], ["removed", "removed"]], change,
          (value) => { page.state.change = value; drawPanel(); }),
        h("span", { class: "muted" }, `${data.total_count} documents`)),
      table(["URL", "Change", "Document"], data.changes.map((c) => [
        h("span", { class: "wrap" }, c.url), badge(c.change),
        c.document_id ? link(`#/documents/${c.document_id}`, short(c.document_id)) : "-",
      ]), "No changes recorded."),
    ];
  };

  drawHead();
  page.render(head, tabBar, panel);
  await drawPanel();
  if (!TERMINAL.has(job.status)) {
    follow(page, `/api/jobs/${id}/events`, JOB_EVENTS, (data, type) => {
      job = data.job;
      drawHead();
      // Finished (perhaps before the stream opened: then the snapshot says so) or moving.
      if (type === "progress" || TERMINAL.has(job.status)) drawPanel();
    }, (data) => TERMINAL.has(data.job.status));
  }
}

async function executionsPage(page, _params, query) {
  const definition = query.get("definition") || "";
  const data = await api(`/api/executions${qs({ job_definition_id: definition, limit: 100 })}`);
  page.render(
    h("div", { class: "row" }, h("h1", {}, "Executions"), definition ? h("span", { class: "muted" }, `of ${definition}`) : null),
    table(["Execution", "Definition", "Status", "Trigger", "Started", "Duration", "Parent"], data.executions.map((e) => [
      link(`#/executions/${e.id}`, short(e.id)),
      e.job_definition_id,
      badge(e.status),
      e.trigger,
      when(e.started_at || e.created_at),
      duration(e.started_at, e.completed_at),
      e.parent_execution_id ? link(`#/executions/${e.parent_execution_id}`, short(e.parent_execution_id)) : "-",
    ]), "No executions yet."),
  );
  if (data.executions.some((e) => !TERMINAL.has(e.status))) page.every(2000, () => page.refresh());
}

async function executionPage(page, [id]) {
  let execution = await api(`/api/executions/${encodeURIComponent(id)}`);
  const head = h("div");
  const body = h("div");

  const ancestors = async () => {
    const chain = [];
    let parent = execution.parent_execution_id;
    while (parent && chain.length < 20) {
      const found = await api(`/api/executions/${parent}`);
      chain.unshift(found);
      parent = found.parent_execution_id;
    }
    return chain;
  };
  const chain = await ancestors();

  let ticket = 0;
  const draw = async () => {
    const mine = ++ticket;
    const [jobs, children] = await Promise.all([
      api(`/api/jobs?execution_id=${id}&limit=200&order_dir=asc`),
      api(`/api/executions?parent_execution_id=${id}&order_dir=asc&limit=100`),
    ]);
    if (mine !== ticket) return; // a later draw has newer data
    const jobsById = Object.fromEntries(jobs.jobs.map((j) => [j.id, j]));
    const childStatus = Object.fromEntries(children.executions.map((c) => [c.id, c.status]));
    const e = execution;
    head.replaceChildren(
      h("div", { class: "row" }, h("h1", {}, e.job_name || e.job_definition_id), badge(e.status)),
      h("div", { class: "card" }, fields([
        ["execution", h("span", { class: "mono" }, e.id)],
        ["definition", e.job_definition_id],
        ["trigger", e.trigger],
        ["lineage", h("span", { class: "lineage" },
          chain.flatMap((a) => [link(`#/executions/${a.id}`, a.job_definition_id), h("span", { class: "arrow" }, "→")]),
          h("b", {}, e.job_definition_id))],
        ["started", when(e.started_at || e.created_at)],
        ["duration", duration(e.started_at, e.completed_at)],
        ["error", e.error ? `${e.error.code}: ${e.error.message}` : "-"],
      ])),
    );
    body.replaceChildren(
      h("h2", {}, "Steps"),
      table(["#", "Step", "Action", "Status", "Attempts#", "Crawl jobs", "Error"], e.steps.map((s) => [
        s.index, s.name, s.action, badge(s.status), s.attempts,
        h("div", {}, s.crawl_job_ids.map((jobId) => h("div", { class: "row" },
          link(`#/jobs/${jobId}`, short(jobId)), jobsById[jobId] ? progressBar(jobsById[jobId]) : null))),
        s.error || "-",
      ])),
      h("h2", {}, "Post-jobs"),
      e.post_jobs.triggered.length || e.post_jobs.skipped.length
        ? table(["Definition", "Outcome", "Execution"], [
          ...e.post_jobs.triggered.map((t) => [t.job_definition_id, badge(childStatus[t.execution_id] || "started"), link(`#/executions/${t.execution_id}`, t.execution_id)]),
          ...e.post_jobs.skipped.map((s) => [s.job_definition_id, `skipped: ${s.reason}${s.detail ? ` (${s.detail})` : ""}`, "-"]),
        ])
        : h("p", { class: "muted" }, e.post_jobs.state === "none" && !TERMINAL.has(e.status) ? "Started when every step succeeds." : "None."),
    );
  };

  page.render(head, body);
  await draw();
  if (!TERMINAL.has(execution.status)) {
    let pending = null;
    follow(page, `/api/executions/${id}/events`, EXECUTION_EVENTS, (data) => {
      execution = data.execution;
      // Events come in bursts; redraw at most every 300 ms.
      pending = pending || setTimeout(() => { pending = null; draw().catch((error) => flash(error.message)); }, 300);
      // Once it ends, its post-jobs run: show how they get on for a little while.
      if (TERMINAL.has(execution.status)) page.every(2000, () => draw(), { times: 3 });
    }, (data) => TERMINAL.has(data.execution.status));
  } else if (execution.post_jobs.triggered.length) {
    page.every(2000, () => draw(), { times: 5 });
  }
}

async function documentsPage(page, _params, query) {
  const q = query.get("q") || "";
  const data = await api(`/api/documents${qs({ q, limit: 50 })}`);
  const input = h("input", { type: "text", name: "q", value: q, placeholder: "Words to find", "aria-label": "Query", style: "width: 360px" });
  page.render(
    h("div", { class: "row" }, h("h1", {}, q ? "Search" : "Documents"),
      h("form", { class: "row", onsubmit: (event) => { event.preventDefault(); location.hash = `#/documents${qs({ q: input.value.trim() })}`; } },
        input, h("button", { class: "primary", type: "submit" }, "Search"))),
    h("p", { class: "muted" }, q ? `${data.total_count} documents match “${q}”` : `${data.total_count} documents, newest first`),
    data.documents.length
      ? h("ul", { class: "results" }, data.documents.map((d) => h("li", { "data-document": d.id },
        link(`#/documents/${d.id}`, d.title || d.url),
        h("div", { class: "url" }, d.url),
        d.snippet ? snippet(d.snippet) : null)))
      : h("p", { class: "muted" }, q ? "No matches." : "No documents yet."),
  );
}

async function documentPage(page, [id]) {
  const base = `/api/documents/${encodeURIComponent(id)}`;
  const [d, rendered, versions] = await Promise.all([api(base), api(`${base}/html`), api(`${base}/versions?limit=50`)]);
  const meta = d.metadata || {};
  // The server rendered the Markdown and sanitized the HTML (markdown-it + nh3): nothing of the
  // crawled page can run here.
  const view = h("div", { class: "rendered" });
  view.innerHTML = rendered.html;
  const raw = h("pre", { class: "markdown", hidden: true }, d.markdown);
  const toggle = h("button", { class: "toggle-markdown", onclick: () => {
    raw.hidden = !raw.hidden;
    view.hidden = !raw.hidden;
    toggle.textContent = raw.hidden ? "Show Markdown" : "Show rendered";
  } }, "Show Markdown");
  const diffView = h("pre", { class: "diff", hidden: true });
  const showDiff = async (from, to) => {
    const body = await api(`${base}/diff${qs({ from, to })}`);
    diffView.hidden = false;
    diffView.replaceChildren(...(body.diff ? body.diff.split("\n") : ["(no difference)"]).map((line) =>
      h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "" }, line + "\n")));
  };
  page.render(
    h("h1", {}, d.title || d.url),
    h("div", { class: "card" }, fields([
      ["url", h("a", { href: d.url, target: "_blank", rel: "noopener noreferrer" }, d.url)],
      ["source", d.source_id],
      ["crawl job", d.job_id ? link(`#/jobs/${d.job_id}`, d.job_id) : "-"],
      ["version", String(d.version)],
      ["etag", d.etag || "-"],
      ["last modified", d.last_modified || "-"],
      ["removed", d.removed_at ? when(d.removed_at) : "-"],
      ...Object.entries(meta).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]),
      ["updated", when(d.updated_at)],
    ])),
    h("h2", {}, "Versions"),
    h("div", { class: "versions" }, table(["Version#", "Fetched", "Content hash", ""], versions.versions.map((v) => [
      v.version, when(v.fetched_at), h("span", { class: "mono" }, v.content_hash),
      v.version > 1 && versions.versions.some((o) => o.version === v.version - 1)
        ? h("button", { class: "diff-button", "data-version": v.version, onclick: () => showDiff(v.version - 1, v.version).catch((e) => flash(e.message)) }, `Diff with ${v.version - 1}`)
        : "",
    ]), "No versions.")),
    diffView,
    h("div", { class: "row" }, h("h2", {}, "Content"), h("span", { class: "spacer" }), toggle),
    view,
    raw,
  );
}

// ------------------------------------------------------------------------------------- router

const ROUTES = [
  [/^\/definitions$/, definitionsPage, "definitions"],
  [/^\/jobs$/, jobsPage, "jobs"],
  [/^\/jobs\/([^/]+)$/, jobPage, "jobs"],
  [/^\/executions$/, executionsPage, "executions"],
  [/^\/executions\/([^/]+)$/, executionPage, "executions"],
  [/^\/documents$/, documentsPage, "documents"],
  [/^\/documents\/([^/]+)$/, documentPage, "documents"],
];

let current = null;

// One page on screen: its timers and streams stop when another replaces it.
class Page {
  constructor(handler, params, query) {
    this.handler = handler;
    this.params = params;
    this.query = query;
    this.state = {};
    this.stoppers = [];
    this.active = true;
    this.busy = false;
  }

  cleanup(stop) {
    this.stoppers.push(stop);
  }

  stop() {
    this.active = false;
    this.stoppers.splice(0).forEach((stop) => stop());
  }

  render(...nodes) {
    if (this.active) $app.replaceChildren(...nodes);
  }

  every(ms, work, { times = Infinity } = {}) {
    let left = times;
    const timer = setInterval(async () => {
      if (!this.active || this.busy || left-- <= 0) return;
      this.busy = true;
      try { await work(); } catch (error) { flash(error.message); } finally { this.busy = false; }
    }, ms);
    this.cleanup(() => clearInterval(timer));
  }

  async refresh() {
    // Re-run the page (the handler re-renders); timers and streams are replaced, not doubled.
    const stoppers = this.stoppers.splice(0);
    stoppers.forEach((stop) => stop());
    await this.handler(this, this.params, this.query);
  }
}

async function route() {
  const [path, search] = (location.hash.slice(1) || "/definitions").split("?");
  const query = new URLSearchParams(search || "");
  if (current) current.stop();
  for (const link of document.querySelectorAll("header nav a")) link.classList.remove("active");
  for (const [pattern, handler, section] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    document.querySelector(`header nav a[data-section=${section}]`)?.classList.add("active");
    current = new Page(handler, match.slice(1).map(decodeURIComponent), query);
    flash("");
    try {
      await handler(current, current.params, query);
    } catch (error) {
      if (error.status !== 401) current.render(h("h1", {}, "Something went wrong"), h("p", {}, error.message));
    }
    return;
  }
  $app.replaceChildren(h("h1", {}, "Not found"), h("p", {}, link("#/definitions", "Back to the definitions")));
}

document.getElementById("quick-search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = new FormData(event.target).get("q");
  location.hash = `#/documents${qs({ q: String(q || "").trim() })}`;
});
window.addEventListener("hashchange", route);
route();
