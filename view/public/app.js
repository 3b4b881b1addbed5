/* forager view: the front end (plain JS, no build step). Routes live in the URL hash:
 *   #/                      sources (runs and trajectory files)
 *   #/s/SRC                 a run: figures, failures, plots, episodes (live)
 *   #/s/SRC/t/TRAJECTORY    one trajectory, turn by turn, its diff and its evaluation
 *   #/s/SRC/task/TASK       one task: problem statement, hidden tests, reference patch
 * Charts: chart.js; diffs: diff2html (both served from node_modules by the server). */
/* global window, document, location, sessionStorage, fetch, EventSource, URLSearchParams, Chart, Diff2HtmlUI */
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) sessionStorage.setItem("forager-view-token", params.get("token"));
const TOKEN = sessionStorage.getItem("forager-view-token");

const state = { charts: [], events: undefined, filters: { task: "", outcome: "", end: "" }, sel: -1, keyNav: undefined };

/** GET a JSON API path (the token as a bearer header when one was given). */
async function api(p) {
  const res = await fetch(p, { headers: TOKEN ? { authorization: `Bearer ${TOKEN}` } : {} });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

/** el("div", {class: "x"}, child, "text", …): DOM nodes; strings become text (never HTML). */
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) n.append(c instanceof window.Node ? c : String(c));
  return n;
}
const fmt = (x, d = 3) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : x === undefined ? "–" : String(x));
const pct = (x) => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "–");
const enc = encodeURIComponent;
const main = () => document.getElementById("main");

function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.map(([text, href]) => (href ? el("a", { href }, text) : el("span", {}, text))));
}
function figure(label, value) {
  return el("div", { class: "figure" }, el("b", {}, value), el("span", { class: "label" }, label));
}
function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}
function resetPage() {
  for (const c of state.charts) c.destroy();
  state.charts = [];
  if (state.events) state.events.close();
  state.events = undefined;
  state.keyNav = undefined;
  state.sel = -1;
  document.getElementById("live").hidden = true;
}

/** Render a unified diff with diff2html (or a note when there is none). */
function diffView(diff, title) {
  const box = el("div", { class: "diff" });
  if (!diff) {
    box.append(el("p", { class: "muted" }, `${title}: none`));
    return box;
  }
  const ui = new Diff2HtmlUI(box, diff, { drawFileList: false, outputFormat: "line-by-line", matching: "lines", highlight: false, fileContentToggle: false });
  ui.draw();
  return box;
}

// ----------------------------------------------------------------------------- sources

async function pageSources() {
  crumbs();
  const list = await api("/api/sources");
  const rows = list.map((s) =>
    el(
      "tr",
      { class: "row", "data-href": `#/s/${enc(s.id)}` },
      el("td", {}, el("a", { href: `#/s/${enc(s.id)}` }, s.id)),
      el("td", {}, s.kind),
      el("td", {}, s.tasks),
      el("td", {}, s.expected !== undefined ? `${s.trajectories}/${s.expected}` : s.trajectories),
      el("td", {}, s.resolved),
      el("td", {}, s.failed),
      el("td", {}, (Object.entries(s.metrics).map(([k, v]) => `${k} ${pct(v)}`).join(" · ") || "pass@k -") + (s.tasksDone !== undefined ? ` over ${s.tasksDone}/${s.tasks} done` : "")),
      el("td", {}, s.complete ? "complete" : el("span", { class: "ok" }, "in progress")),
      el("td", { class: "muted" }, s.path),
    ),
  );
  main().replaceChildren(
    el("h1", {}, "Sources"),
    el("table", { class: "t" }, el("thead", {}, el("tr", {}, ["source", "kind", "tasks", "trajectories", "resolved", "failed", "pass@k", "state", "path"].map((h) => el("th", {}, h)))), el("tbody", {}, rows)),
  );
  listNav(rows);
}

// ----------------------------------------------------------------------------- run

function histogram(values, bins = 12) {
  if (!values.length) return { labels: [], counts: [] };
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const w = hi > lo ? (hi - lo) / bins : 1;
  const n = hi > lo ? bins : 1;
  const counts = new Array(n).fill(0);
  for (const v of values) counts[Math.min(n - 1, Math.floor((v - lo) / w))]++;
  const r = (x) => (values.every(Number.isInteger) ? String(Math.round(x)) : fmt(x, 1));
  const labels = counts.map((_, i) => (n === 1 ? r(lo) : `${r(lo + i * w)}–${r(lo + (i + 1) * w)}`));
  return { labels, counts };
}

function chart(parent, title, config) {
  const canvas = el("canvas", { "aria-label": title });
  parent.append(el("div", { class: "chart" }, canvas));
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false, plugins: { title: { display: true, text: title }, legend: { display: (config.data.datasets || []).length > 1 } } }, config.options || {});
  state.charts.push(new Chart(canvas, config));
}

/** Long task ids as axis labels: their tail. */
function shortLabel(l) {
  return l.length > 26 ? `…${l.slice(-24)}` : l;
}

/** `2 failed: evaluation/env_error 2 (oracle 2)` (orchestrator/records.ts formatFailureCounts). */
function failureCounts(fs) {
  const kinds = new Map();
  const pols = new Map();
  for (const f of fs) {
    const k = `${f.stage}/${f.kind || "error"}`;
    kinds.set(k, (kinds.get(k) || 0) + 1);
    const p = f.policy || "unknown";
    pols.set(p, (pols.get(p) || 0) + 1);
  }
  const list = (m) => [...m.entries()].map(([k, n]) => `${k} ${n}`).join(", ");
  return `${fs.length} failed: ${list(kinds)} (${list(pols)})`;
}

function reasonOf(f) {
  const first = String(f.reason || "failed").split("\n")[0];
  return `failed (${f.stage}): ${first.length > 60 ? first.slice(0, 57) + "…" : first}`;
}

function runCharts(o) {
  const box = el("div", { class: "charts" });
  const eps = o.episodes;
  const perTask = o.perTask.filter((t) => t.n > 0);
  chart(box, "resolved rate per task", {
    type: "bar",
    data: { labels: perTask.map((t) => t.taskId), datasets: [{ label: "resolved / samples", data: perTask.map((t) => t.c / t.n), backgroundColor: "#2e9d5b" }] },
    options: { scales: { y: { min: 0, max: 1 }, x: { ticks: { display: perTask.length <= 30, callback(v) { return shortLabel(this.getLabelForValue(v)); } } } } },
  });
  const turns = histogram(eps.map((e) => e.turns));
  chart(box, "turns per episode", { type: "bar", data: { labels: turns.labels, datasets: [{ label: "episodes", data: turns.counts, backgroundColor: "#3366ff" }] } });
  const toks = histogram(eps.map((e) => e.usedTokens));
  chart(box, "tokens per episode (context used at the end)", { type: "bar", data: { labels: toks.labels, datasets: [{ label: "episodes", data: toks.counts, backgroundColor: "#7a4dd8" }] } });
  chart(box, "episode and evaluation durations (s)", {
    type: "scatter",
    data: { datasets: [
      { label: "episode s", data: eps.map((e, i) => ({ x: i, y: e.episodeSeconds })), backgroundColor: "#e8a33d" },
      { label: "evaluation s", data: eps.map((e, i) => ({ x: i, y: e.evalSeconds })), backgroundColor: "#1d2330" },
    ] },
    options: { scales: { x: { title: { display: true, text: "episode #" } }, y: { min: 0 } } },
  });
  const reasons = new Map();
  for (const f of o.failures) reasons.set(reasonOf(f), (reasons.get(reasonOf(f)) || 0) + 1);
  for (const e of eps) if (!e.resolved) { const k = `unresolved: ${e.endReason} / ${e.outcome}`; reasons.set(k, (reasons.get(k) || 0) + 1); }
  const rs = [...reasons.entries()].sort((a, b) => b[1] - a[1]);
  chart(box, "failures by reason", {
    type: "bar",
    data: { labels: rs.map((r) => r[0]), datasets: [{ label: "samples", data: rs.map((r) => r[1]), backgroundColor: "#b3261e" }] },
    options: { indexAxis: "y" },
  });
  const ops = new Map();
  for (const e of eps) if (e.operator) { const v = ops.get(e.operator) || { n: 0, c: 0 }; v.n++; if (e.resolved) v.c++; ops.set(e.operator, v); }
  if (ops.size) {
    const os = [...ops.entries()].sort((a, b) => b[1].n - a[1].n);
    chart(box, "mutate-fix: episodes and resolved per operator", {
      type: "bar",
      data: { labels: os.map((x) => x[0]), datasets: [
        { label: "episodes", data: os.map((x) => x[1].n), backgroundColor: "#8f9bb3" },
        { label: "resolved", data: os.map((x) => x[1].c), backgroundColor: "#2e9d5b" },
      ] },
    });
  }
  return box;
}

function episodeTable(o) {
  const f = state.filters;
  const ends = [...new Set(o.episodes.map((e) => e.endReason))].sort();
  const visible = o.episodes.filter(
    (e) => (!f.task || e.taskId.toLowerCase().includes(f.task.toLowerCase())) && (!f.outcome || (f.outcome === "resolved") === e.resolved) && (!f.end || e.endReason === f.end),
  );
  const rows = visible.map((e) =>
    el(
      "tr",
      { class: "row", "data-href": `#/s/${enc(o.id)}/t/${enc(e.id)}` },
      el("td", {}, el("a", { href: `#/s/${enc(o.id)}/t/${enc(e.id)}` }, e.taskId)),
      el("td", {}, e.sample),
      el("td", {}, e.resolved ? el("span", { class: "ok" }, "resolved") : el("span", { class: "bad" }, "unresolved")),
      el("td", {}, fmt(e.reward)),
      el("td", {}, e.endReason),
      el("td", {}, e.outcome),
      el("td", {}, e.turns),
      el("td", {}, e.usedTokens),
      el("td", {}, fmt(e.episodeSeconds, 1)),
      el("td", {}, fmt(e.evalSeconds, 1)),
    ),
  );
  const rerender = () => renderRun(o);
  const filters = el(
    "div",
    { class: "filters" },
    el("input", { id: "f-task", placeholder: "task contains…", value: f.task, oninput: (ev) => { f.task = ev.target.value; rerender(); document.getElementById("f-task").focus(); } }),
    el("select", { id: "f-outcome", onchange: (ev) => { f.outcome = ev.target.value; rerender(); } }, [["", "any outcome"], ["resolved", "resolved"], ["unresolved", "unresolved"]].map(([v, t]) => el("option", { value: v, selected: f.outcome === v }, t))),
    el("select", { id: "f-end", onchange: (ev) => { f.end = ev.target.value; rerender(); } }, el("option", { value: "" }, "any end reason"), ends.map((v) => el("option", { value: v, selected: f.end === v }, v))),
    el("span", { class: "muted", id: "shown" }, `${visible.length} of ${o.episodes.length} episodes`),
  );
  const table = el(
    "table",
    { class: "t", id: "episodes" },
    el("thead", {}, el("tr", {}, ["task", "sample", "outcome", "reward", "end reason", "evaluation", "turns", "tokens", "episode s", "eval s"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows),
  );
  return { node: el("div", {}, filters, table), rows };
}

function renderRun(o) {
  for (const c of state.charts) c.destroy();
  state.charts = [];
  const st = o.live;
  const figures = el(
    "div",
    { class: "figures" },
    figure("tasks", o.tasks),
    o.samples !== undefined && figure("samples per task (K)", o.samples),
    figure("trajectories", el("span", { id: "n-trajectories" }, o.expected !== undefined ? `${o.trajectories}/${o.expected}` : o.trajectories)),
    figure("resolved", el("span", { id: "n-resolved" }, o.resolved)),
    figure("failed samples", o.failures.length),
    Object.entries(o.metrics).map(([k, v]) => figure(k, pct(v))),
    o.accounting && figure("tasks done (pass@k over them)", el("span", { id: "n-tasks-done" }, `${o.accounting.tasksDone}/${o.accounting.tasks}`)),
    o.accounting && o.accounting.tokens.counted > 0 && figure("tokens prompt / completion", el("span", { id: "n-tokens" }, `${o.accounting.tokens.prompt} / ${o.accounting.tokens.completion}`)),
    o.accounting && o.accounting.tokens.perResolved !== undefined && figure("tokens per resolved trajectory", fmt(o.accounting.tokens.perResolved, 0)),
    o.accounting && figure("end reasons", el("span", { id: "n-end-reasons" }, Object.entries(o.accounting.endReasons).map(([k, v]) => `${k} ${v}`).join(", ") || "-")),
    o.model && o.model.turns > 0 && figure("prefix-cache hit rate", o.model.prefixCacheHitRate === undefined ? el("span", { class: "muted", title: "the server did not report cached tokens (vLLM: --enable-prompt-tokens-details; SGLang: --enable-cache-report)" }, "not reported") : el("span", { id: "n-hit-rate" }, pct(o.model.prefixCacheHitRate))),
    o.model && o.model.turns > 0 && figure("prefill / decode tokens", `${o.model.prefillTokens} / ${o.model.decodeTokens}`),
    o.model && o.model.turns > 0 && figure("model seconds", fmt(o.model.modelSeconds, 1)),
    o.model && o.model.moves > 0 && figure("endpoint moves", o.model.moves),
    st && figure("rollouts running (Redis)", st.inFlight),
    st && figure("evaluations running (Redis)", st.evaluating),
    o.redisError && figure("Redis", el("span", { class: "bad" }, o.redisError)),
    o.manifest && o.manifest.nearDuplicates && figure("near-duplicate clusters", o.manifest.nearDuplicates.clusters),
  );
  const progress = o.expected ? el("progress", { max: o.expected, value: o.trajectories + o.failures.length }) : undefined;
  const failures = o.failures.length
    ? el("div", {},
        el("p", { class: "failure-counts" }, failureCounts(o.failures) + " — kept out of rewards and pass@k"),
        el("table", { class: "t" }, el("thead", {}, el("tr", {}, ["task", "sample", "stage", "kind", "policy", "attempts", "reason"].map((h) => el("th", {}, h)))), el("tbody", {}, o.failures.map((f) => el("tr", {}, el("td", {}, f.taskId), el("td", {}, f.sample), el("td", {}, f.stage), el("td", {}, f.kind || "error"), el("td", {}, f.policy || ""), el("td", {}, f.attempts), el("td", {}, el("pre", {}, f.reason)))))))
    : el("p", { class: "muted" }, "no failed sample");
  const spec = o.spec
    ? kv([
        ["run", o.runId],
        ["policy", o.spec.policy.kind === "http" ? `http: ${o.spec.policy.endpoints.map((e) => e.model || e.url).join(", ")}` : o.spec.policy.kind],
        ["storage", o.spec.storage],
        ["created", o.spec.createdAt],
        ["task files", o.spec.taskFiles.join(", ")],
        ["state", o.complete ? "complete" : "in progress"],
        ["summary", o.summary ? `wall ${fmt(o.summary.wallSeconds, 1)} s · ${o.summary.turns} turns · ${fmt(o.summary.turnsPerSecond, 2)} turns/s` : undefined],
      ])
    : kv([["file", o.path], ["bad lines", o.errors.length ? o.errors.map((e) => `line ${e.line}: ${e.message}`).join("; ") : undefined]]);
  const tbl = episodeTable(o);
  const repos = o.accounting && o.accounting.repos.length
    ? [el("h2", {}, "Repositories"), el("table", { class: "t", id: "repos" }, el("thead", {}, el("tr", {}, ["repository", "tasks", "done", "trajectories", "resolved", "failed", "pass@1"].map((h) => el("th", {}, h)))), el("tbody", {}, o.accounting.repos.map((r) => el("tr", {}, el("td", {}, r.repo), el("td", {}, r.tasks), el("td", {}, r.tasksDone), el("td", {}, r.trajectories), el("td", {}, r.resolved), el("td", {}, r.failed), el("td", {}, r.pass1 === undefined ? "-" : pct(r.pass1))))))]
    : [];
  main().replaceChildren(el("h1", {}, o.runId || o.id), figures, progress || "", spec, ...repos, el("h2", {}, "Plots"), runCharts(o), el("h2", {}, "Failures"), failures, el("h2", {}, "Episodes"), tbl.node);
  listNav(tbl.rows);
}

async function pageRun(src) {
  crumbs([src, `#/s/${enc(src)}`]);
  renderRun(await api(`/api/sources/${enc(src)}`));
  const q = TOKEN ? `?token=${enc(TOKEN)}` : "";
  const es = new EventSource(`/api/sources/${enc(src)}/events${q}`);
  state.events = es;
  let first = true;
  es.addEventListener("update", async (ev) => {
    const d = JSON.parse(ev.data);
    document.getElementById("live").hidden = d.complete;
    if (first) { first = false; return; }
    const sel = state.sel;
    const scroll = window.scrollY;
    renderRun(await api(`/api/sources/${enc(src)}`));
    window.scrollTo(0, scroll);
    if (sel >= 0 && state.keyNav) state.keyNav.select(sel);
  });
}

// ----------------------------------------------------------------------------- trajectory

function statusOf(turn) {
  if (turn.formatError) return { text: `format error: ${turn.formatError.type}`, bad: true };
  if (turn.finalAnswer) return { text: "final answer", bad: false };
  if (turn.toolSuccess === false) return { text: `failed${turn.errorType ? `: ${turn.errorType}` : ""}`, bad: true };
  if (turn.toolSuccess === true) return { text: `ok${turn.errorType ? ` (${turn.errorType})` : ""}`, bad: false };
  return { text: "–", bad: false };
}

function turnView(t) {
  const s = statusOf(t);
  return el(
    "section",
    { class: `turn${s.bad ? " failed" : ""}`, id: `turn-${t.index}` },
    el("h3", {}, `turn ${t.index} `, el("span", { class: "tag" }, t.toolName || (t.action && t.action.tool) || "no tool"), " ", el("span", { class: s.bad ? "bad" : "ok" }, s.text)),
    el(
      "div",
      { class: "budget" },
      `prompt ${t.promptTokens} tok · completion ${t.completionTokens} tok · context used ${t.usedTokens} tok`,
      t.remainingTurns !== undefined ? ` · remaining turns ${t.remainingTurns}` : "",
      t.remainingTokens !== undefined ? ` · remaining tokens ${t.remainingTokens}` : "",
      t.cachedPromptTokens !== undefined ? ` · cached ${t.cachedPromptTokens} tok` : "",
      ` · model ${fmt(t.modelLatencyMs, 0)} ms`,
      t.ttftMs !== undefined ? ` · TTFT ${fmt(t.ttftMs, 0)} ms` : "",
      t.endpoint ? ` · ${t.endpoint}` : "",
      t.endpointMove ? ` · moved from ${t.endpointMove.from} (${t.endpointMove.reason})` : "",
      t.toolDurationMs !== undefined ? ` · tool ${fmt(t.toolDurationMs, 0)} ms` : "",
      t.finishReason ? ` · finish ${t.finishReason}` : "",
    ),
    t.reasoning ? el("details", { open: t.reasoning.length < 600 }, el("summary", {}, "reasoning"), el("pre", { class: "reasoning" }, t.reasoning)) : "",
    t.action ? el("div", {}, el("b", {}, "action"), el("pre", { class: "action" }, t.action.argument)) : !t.reasoning ? el("pre", {}, t.text) : "",
    t.formatError ? el("pre", { class: "bad" }, t.formatError.message) : "",
    t.observation !== undefined
      ? el("div", {}, el("b", {}, `observation (${t.observationRole || "tool"})${t.observationTruncated ? " — truncated" : ""}`), el("pre", { class: "observation" }, t.observation))
      : "",
  );
}

function testsStatusView(ts) {
  const rows = [];
  for (const cat of ["FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL"]) {
    const lists = ts[cat];
    if (!lists) continue;
    for (const name of lists.success) rows.push(el("tr", {}, el("td", {}, cat), el("td", {}, name), el("td", { class: "ok" }, "success")));
    for (const name of lists.failure) rows.push(el("tr", {}, el("td", {}, cat), el("td", {}, name), el("td", { class: "bad" }, "failure")));
  }
  if (!rows.length) return el("p", { class: "muted" }, "no test listed in the report");
  return el("table", { class: "t", id: "tests-status" }, el("thead", {}, el("tr", {}, el("th", {}, "category"), el("th", {}, "test"), el("th", {}, "status"))), el("tbody", {}, rows));
}

async function pageTrajectory(src, id) {
  crumbs([src, `#/s/${enc(src)}`], [id]);
  const v = await api(`/api/sources/${enc(src)}/trajectory?id=${enc(id)}`);
  const t = v.trajectory;
  const ev = t.evaluation;
  const parts = t.rewardParts ? Object.entries(t.rewardParts).map(([k, x]) => `${k} = ${typeof x === "object" ? JSON.stringify(x) : fmt(x)}`).join(" · ") : undefined;
  const info = kv([
    ["task", v.task ? el("a", { href: `#/s/${enc(src)}/task/${enc(t.taskId)}` }, t.taskId) : t.taskId],
    ["kind", t.taskKind],
    ["policy", [t.policy.kind, t.policy.model].filter(Boolean).join(" · ")],
    ["image", t.image],
    ["end reason", t.endReason + (t.endDetail ? ` — ${t.endDetail}` : "")],
    ["reward", fmt(t.reward)],
    ["reward parts", parts],
    ["evaluation", ev ? `${ev.outcome} · ${ev.resolved ? "resolved" : "not resolved"}${ev.reason ? ` · ${ev.reason}` : ""}` : "none"],
    ["turns", t.turns.length],
    ["tokens used", t.usedTokens],
    ["sampling", `temperature ${t.sampling.temperature} · top_p ${t.sampling.topP} · max tokens ${t.sampling.maxTokens}${t.sampling.seed !== undefined ? ` · seed ${t.sampling.seed}` : ""}`],
    ["times (s)", `total ${fmt(t.times.totalSeconds, 1)} · sandbox start ${fmt(t.times.sandboxStartSeconds, 1)} · model ${fmt(t.times.modelSeconds, 1)} · tools ${fmt(t.times.toolSeconds, 1)} · evaluation ${fmt(t.times.evalSeconds, 1)} · started ${t.times.startedAt}`],
    ["environment retries", t.envRetries ? `${t.envRetries}: ${t.envErrors.join("; ")}` : undefined],
  ]);
  main().replaceChildren(
    el("h1", {}, t.id),
    info,
    el("h2", {}, "Patches"),
    el("div", { class: "patches" }, el("div", { id: "submitted" }, el("b", {}, "submitted patch"), diffView(t.submittedPatch, "submitted patch")), el("div", { id: "reference" }, el("b", {}, "reference patch"), diffView(v.task && v.task.referencePatch, "reference patch"))),
    el("h2", {}, "Evaluation report"),
    v.testsStatus ? testsStatusView(v.testsStatus) : ev && ev.report !== undefined ? el("pre", {}, JSON.stringify(ev.report, null, 2)) : el("p", { class: "muted" }, "no report"),
    el("h2", {}, "Prompt"),
    el("details", {}, el("summary", {}, `system (${t.prompt.system.length} chars)`), el("pre", {}, t.prompt.system)),
    el("details", { open: true }, el("summary", {}, `user${t.prompt.userTruncated ? " (truncated)" : ""}`), el("pre", { id: "prompt-user" }, t.prompt.user)),
    el("h2", {}, `Turns (${t.turns.length})`),
    el("div", { id: "turns" }, t.turns.map(turnView)),
  );
  // n / p: the next and previous episode of the source, in the run page's order
  const ids = (await api(`/api/sources/${enc(src)}`)).episodes.map((e) => e.id);
  const at = ids.indexOf(t.id);
  const link = (i) => (i >= 0 && i < ids.length ? `#/s/${enc(src)}/t/${enc(ids[i])}` : undefined);
  listNav([...document.querySelectorAll(".turn")], { upTo: `#/s/${enc(src)}`, next: link(at + 1), prev: link(at - 1) });
  main().prepend(el("p", { class: "muted", id: "position" }, `episode ${at + 1} of ${ids.length} · n / p: next / previous episode · j / k: turns`));
}

// ----------------------------------------------------------------------------- task

async function pageTask(src, id) {
  crumbs([src, `#/s/${enc(src)}`], [`task ${id}`]);
  const t = await api(`/api/sources/${enc(src)}/task?id=${enc(id)}`);
  main().replaceChildren(
    el("h1", {}, t.id),
    el("p", { class: "muted" }, "For people only: the agent never sees the hidden tests or the reference patch."),
    kv([["kind", t.kind], ["repository", t.repo], ["commit", t.commit], ["metadata", Object.keys(t.metadata).length ? JSON.stringify(t.metadata) : undefined]]),
    el("h2", {}, "Problem statement"),
    el("pre", { id: "problem" }, t.problemStatement),
    el("h2", {}, `FAIL_TO_PASS (${t.failToPass.length})`),
    el("pre", {}, t.failToPass.join("\n") || "(none)"),
    el("h2", {}, `PASS_TO_PASS (${t.passToPass.length})`),
    el("details", {}, el("summary", {}, "show"), el("pre", {}, t.passToPass.join("\n") || "(none)")),
    el("h2", {}, "Hidden tests (test patch)"),
    diffView(t.testPatch, "test patch"),
    el("h2", {}, "Reference patch"),
    diffView(t.referencePatch, "reference patch"),
    t.startPatch ? [el("h2", {}, "Starting state (the bug applied at sandbox start)"), diffView(t.startPatch, "start patch")] : "",
  );
}

// ----------------------------------------------------------------------------- keyboard and routing

/** j/k move the selection over `items`, Enter opens a row's link, u goes up. */
function listNav(items, opts = {}) {
  const nav = {
    items,
    select(i) {
      if (!items.length) return;
      state.sel = Math.max(0, Math.min(items.length - 1, i));
      items.forEach((n, j) => n.classList.toggle("sel", j === state.sel));
      items[state.sel].scrollIntoView({ block: "nearest" });
    },
    upTo: opts.upTo,
    next: opts.next,
    prev: opts.prev,
  };
  for (const [i, n] of items.entries()) if (n.dataset.href) n.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") { state.sel = i; location.hash = n.dataset.href; } });
  state.keyNav = nav;
}

document.addEventListener("keydown", (ev) => {
  const tag = ev.target.tagName;
  if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const nav = state.keyNav;
  if (ev.key === "j" && nav) nav.select(state.sel + 1);
  else if (ev.key === "k" && nav) nav.select(state.sel - 1);
  else if (ev.key === "Enter" && nav && state.sel >= 0 && nav.items[state.sel].dataset.href) location.hash = nav.items[state.sel].dataset.href;
  else if (ev.key === "u") location.hash = (nav && nav.upTo) || "#/";
  else if (ev.key === "n" && nav && nav.next) location.hash = nav.next;
  else if (ev.key === "p" && nav && nav.prev) location.hash = nav.prev;
  else return;
  ev.preventDefault();
});

async function route() {
  resetPage();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "s" && parts[1] && parts[2] === "t") await pageTrajectory(parts[1], parts.slice(3).join("/"));
    else if (parts[0] === "s" && parts[1] && parts[2] === "task") await pageTask(parts[1], parts.slice(3).join("/"));
    else if (parts[0] === "s" && parts[1]) await pageRun(parts[1]);
    else await pageSources();
  } catch (err) {
    main().replaceChildren(el("h1", {}, "error"), el("pre", { class: "bad" }, err.message));
  }
  document.body.dataset.ready = location.hash || "#/";
}
window.addEventListener("hashchange", route);
route();
