// The dashboard page served at GET /: one self-contained HTML document polling the admin API (alarms, history, failovers, nodes, pools).

const STYLE = `
:root { --bg:#0f1419; --panel:#171d24; --line:#26303b; --text:#d8dee6; --dim:#8a96a3; --stale:#5c6773; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; font-weight: 600; }
h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); text-transform: uppercase; letter-spacing: .06em; font-weight: 600; }
h2 .dim { text-transform: none; letter-spacing: 0; font-weight: 400; }
main { padding: 14px 24px; display: grid; gap: 14px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.ok { background: rgba(63,185,80,.15); color: var(--ok); }
.warn { background: rgba(210,153,34,.15); color: var(--warn); }
.bad { background: rgba(248,81,73,.15); color: var(--bad); }
.dim { color: var(--dim); }
#topology { color: var(--dim); }
#topology b { color: var(--text); }
#topology .down { color: var(--bad); }
#alarms { display: grid; gap: 6px; }
.alarm { display: grid; grid-template-columns: 86px 1fr auto; gap: 12px; align-items: baseline; padding: 8px 14px; border-radius: 6px; border: 1px solid; }
.alarm.critical { background: rgba(248,81,73,.12); border-color: rgba(248,81,73,.5); }
.alarm.warning { background: rgba(210,153,34,.10); border-color: rgba(210,153,34,.45); }
.alarm .sev { font-size: 11px; font-weight: 700; letter-spacing: .08em; }
.alarm.critical .sev { color: var(--bad); }
.alarm.warning .sev { color: var(--warn); }
.alarm .t { font-weight: 600; }
.alarm .d { color: var(--dim); margin-left: 6px; }
.alarm .s { color: var(--dim); font-size: 12px; white-space: nowrap; }
.calm { color: var(--ok); font-size: 13px; padding: 2px 2px; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; }
.card .v { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .l { color: var(--dim); font-size: 12px; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; min-width: 0; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--dim); font-weight: 500; font-size: 12px; }
td.n, th.n { text-align: right; }
tr:last-child td { border-bottom: none; }
tr.down td { color: var(--stale); }
td.stale { color: var(--stale); font-style: italic; }
svg.chart { display: block; width: 100%; height: 190px; }
svg.chart text { fill: var(--dim); font-size: 11px; }
svg.chart .grid { stroke: var(--line); stroke-width: 1; }
svg.chart .axis { stroke: var(--dim); stroke-width: 1; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; font-size: 12px; color: var(--dim); margin-top: 4px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.empty { color: var(--dim); font-size: 13px; padding: 8px 0; }
.fo { padding: 6px 0 10px; border-bottom: 1px solid var(--line); }
.fo:last-child { border-bottom: none; }
.fo .head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.fo .bar { display: flex; height: 8px; margin: 6px 0 4px; border-radius: 3px; overflow: hidden; background: var(--line); }
.fo .bar span { display: block; height: 100%; border-right: 1px solid var(--panel); }
.fo ol { margin: 0; padding: 0; list-style: none; font-size: 12px; columns: 2; column-gap: 18px; }
.fo li { break-inside: avoid; color: var(--dim); }
.fo li b { display: inline-block; min-width: 62px; text-align: right; margin-right: 8px; color: var(--text); font-weight: 500; font-variant-numeric: tabular-nums; }
#auth { display: none; gap: 8px; align-items: center; }
#auth input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 4px 8px; }
#auth button { background: var(--accent); color: #fff; border: 0; border-radius: 4px; padding: 5px 10px; cursor: pointer; }
#updated { margin-left: auto; color: var(--dim); font-size: 12px; }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const m = /[#&]token=([^&]+)/.exec(location.hash);
if (m) { sessionStorage.setItem("heliosproxy.token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
let token = sessionStorage.getItem("heliosproxy.token") || "";
let tick = 0;
const prevCounts = new Map();
let prevTotal = null, prevAt = null;
const ERROR_COLORS = ["#f85149", "#d29922", "#a371f7", "#db61a2", "#ff7b72", "#e3b341", "#79c0ff"];

async function get(path) {
  const r = await fetch(path, { headers: token ? { authorization: "Bearer " + token } : {}, cache: "no-store" });
  if (r.status === 401) { $("auth").style.display = "flex"; throw new Error("unauthorized"); }
  if (!r.ok && r.status !== 503) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function cell(tr, text, cls) {
  const td = el("td", cls, text);
  tr.appendChild(td);
  return td;
}

function badge(td, text, cls) {
  td.textContent = "";
  td.appendChild(el("span", "badge " + cls, text));
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}
const fmtNum = (n, d) => (n === null || n === undefined ? "-" : Number(n).toFixed(d ?? 0));
const fmtMs = (ms) => (ms === null || ms === undefined ? "-" : ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms >= 10 ? ms.toFixed(0) + " ms" : ms.toFixed(1) + " ms");
const hhmm = (t) => { const d = new Date(t); return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0"); };
const hhmmss = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const ago = (t) => { const s = Math.max(0, Math.round((Date.now() - t) / 1000)); return s < 90 ? s + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h"; };
const stateClass = { up: "ok", draining: "warn", down: "bad" };

// ---- header, alarms, cards --------------------------------------------------------------

function renderTopology(t) {
  const e = $("topology");
  e.textContent = "";
  const b = el("b", "", t.primary ?? "no primary");
  const up = t.nodes.filter((n) => n.role === "standby" && n.state !== "down" && !n.fenced).map((n) => n.id);
  const down = t.nodes.filter((n) => n.state === "down").map((n) => n.id);
  e.append("primary ", b, up.length ? " \\u2192 standbys " + up.join(", ") : " (no standby up)");
  if (down.length) e.append(" \\u00b7 ", el("span", "down", "down: " + down.join(", ")));
}

function renderAlarms(list) {
  const box = $("alarms");
  box.textContent = "";
  if (list.length === 0) { box.appendChild(el("div", "calm", "\\u2713 No alarms")); return; }
  for (const a of list) {
    const row = el("div", "alarm " + a.severity);
    row.dataset.alarm = a.key;
    row.append(el("span", "sev", a.severity.toUpperCase()));
    const text = el("div");
    text.append(el("span", "t", a.title), el("span", "d", a.detail));
    row.append(text, el("span", "s", "since " + hhmmss(Date.parse(a.since)) + " (" + ago(Date.parse(a.since)) + ")"));
    box.appendChild(row);
  }
}

// ---- charts (history kept by the proxy: a reload keeps it) ------------------------------

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Axes and grid: y from 0 to a round maximum with its unit, x over the time range with clock labels. */
function frame(svg, t0, t1, ymax, unit, fmt) {
  svg.textContent = "";
  const W = 560, H = 190, L = 52, R = 10, T = 22, B = 24;
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4, yy = y(v);
    svg.appendChild(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: yy, y2: yy }));
    svg.appendChild(svgEl("text", { x: L - 6, y: yy + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.appendChild(svgEl("text", { x: L + 6, y: 12, "text-anchor": "start" }, unit));
  // Clock ticks: the smallest round step that gives at most six over the range (at least one).
  const span = t1 - t0;
  const step = [5, 10, 15, 30, 60, 120, 300, 600, 900].map((v) => v * 1000).find((v) => span / v <= 6) ?? 1800e3;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    svg.appendChild(svgEl("line", { class: "axis", x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4 }));
    // Labels at the ends stay inside the chart.
    const anchor = x(t) > W - R - 28 ? "end" : x(t) < L + 28 ? "start" : "middle";
    svg.appendChild(svgEl("text", { x: x(t), y: H - 6, "text-anchor": anchor }, step < 60e3 ? hhmmss(t) : hhmm(t)));
  }
  svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  return { x, y, W, H, L, R, T, B };
}

function legend(id, items) {
  const box = $(id);
  box.textContent = "";
  for (const [name, color] of items) { const s = el("span"); const i = el("i"); i.style.background = color; s.append(i, name); box.appendChild(s); }
}

function lineChart(id, h, series, unit, fmt) {
  const pts = h.points;
  const t1 = Date.parse(h.now), t0 = Math.max(t1 - h.span_ms, (pts.length ? pts[0].t : t1) - h.step_ms);
  let top = 0;
  for (const s of series) for (const p of pts) if (p[s.key] !== null) top = Math.max(top, p[s.key]);
  const f = frame($(id), t0, t1, niceMax(top * 1.1), unit, fmt);
  for (const s of series) {
    let d = "";
    for (const p of pts) if (p[s.key] !== null) d += (d ? " " : "") + f.x(p.t).toFixed(1) + "," + f.y(p[s.key]).toFixed(1);
    $(id).appendChild(svgEl("polyline", { fill: "none", stroke: s.color, "stroke-width": 2, "stroke-linejoin": "round", points: d, "data-series": s.key }));
  }
}

function errorChart(h) {
  const pts = h.points, svg = $("errors-chart");
  const t1 = Date.parse(h.now), t0 = Math.max(t1 - h.span_ms, (pts.length ? pts[0].t : t1) - h.step_ms);
  const totals = new Map();
  for (const p of pts) for (const c in p.errors) totals.set(c, (totals.get(c) || 0) + p.errors[c]);
  const codes = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
  const color = (c) => ERROR_COLORS[codes.indexOf(c) % ERROR_COLORS.length];
  let top = 0;
  for (const p of pts) { let s = 0; for (const c in p.errors) s += p.errors[c]; top = Math.max(top, s); }
  const f = frame(svg, t0, t1, niceMax(top), "errors / " + h.step_ms / 1000 + " s", (v) => String(Math.round(v * 10) / 10));
  const w = Math.max(2, f.x(t0 + h.step_ms) - f.x(t0) - 1);
  for (const p of pts) {
    let base = 0;
    for (const c of codes) {
      const n = p.errors[c] || 0;
      if (!n) continue;
      const y0 = f.y(base), y1 = f.y(base + n);
      svg.appendChild(svgEl("rect", { x: (f.x(p.t) - w).toFixed(1), y: y1.toFixed(1), width: w.toFixed(1), height: Math.max(1, y0 - y1).toFixed(1), fill: color(c), "data-sqlstate": c }));
      base += n;
    }
  }
  legend("errors-legend", codes.length ? codes.map((c) => [c + " \\u00d7" + totals.get(c), color(c)]) : [["no errors in this range", "#3fb950"]]);
  $("errors").textContent = String([...totals.values()].reduce((a, b) => a + b, 0));
}

function renderHistory(h) {
  const n = h.points.length;
  $("history-span").textContent = n ? "last " + ago(h.points[0].t - h.step_ms) + ", one point per " + h.step_ms / 1000 + " s, kept by the proxy" : "collecting: one point per " + h.step_ms / 1000 + " s";
  lineChart("latency-chart", h, [{ key: "p50_ms", color: "#3fb950" }, { key: "p95_ms", color: "#d29922" }, { key: "p99_ms", color: "#f85149" }], "ms", (v) => (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)));
  legend("latency-legend", [["p50", "#3fb950"], ["p95", "#d29922"], ["p99", "#f85149"], ["1 request in " + h.latency_sample_every + " timed", "transparent"]]);
  lineChart("qps-chart", h, [{ key: "qps", color: "#58a6ff" }], "q/s", (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)));
  errorChart(h);
}

// ---- failover / switchover timeline -------------------------------------------------------

const RESULT_CLASS = { done: "ok", running: "warn", refused: "warn", aborted: "warn", failed: "bad" };
const STEP_COLORS = ["#58a6ff", "#3fb950", "#d29922", "#a371f7", "#db61a2", "#79c0ff", "#e3b341", "#56d364"];

function renderFailovers(f) {
  const box = $("failovers");
  box.textContent = "";
  const list = (f.in_progress ? [f.in_progress] : []).concat(f.failovers).slice(0, 4);
  if (list.length === 0) { box.appendChild(el("div", "empty", "No failover or switchover since the proxy started (policy " + f.policy + ").")); return; }
  for (const r of list) {
    const row = el("div", "fo");
    row.dataset.failover = String(r.id);
    const head = el("div", "head");
    const res = el("span", "badge " + (RESULT_CLASS[r.result] || "warn"), r.result);
    head.append(el("b", "", r.kind + " " + r.from + " \\u2192 " + (r.to ?? "?")), res, el("span", "dim", hhmmss(Date.parse(r.started_at)) + " \\u00b7 " + r.trigger + (r.duration_ms !== null ? " \\u00b7 took " + fmtMs(r.duration_ms) : "") + (r.hold_ms !== null ? " \\u00b7 requests held " + fmtMs(r.hold_ms) : "")));
    row.appendChild(head);
    const total = Math.max(1, r.duration_ms ?? (r.steps.length ? r.steps[r.steps.length - 1].at_ms : 1));
    const bar = el("div", "bar");
    const ol = el("ol");
    let prev = 0;
    r.steps.forEach((s, i) => {
      const span = el("span");
      span.style.width = (Math.max(0, s.at_ms - prev) / total * 100).toFixed(2) + "%";
      span.style.background = STEP_COLORS[i % STEP_COLORS.length];
      span.title = s.step;
      bar.appendChild(span);
      const li = el("li");
      li.append(el("b", "", "+" + fmtMs(s.at_ms - prev)), s.step);
      ol.appendChild(li);
      prev = s.at_ms;
    });
    row.append(bar, ol);
    if (r.reason) row.appendChild(el("div", "dim", r.reason));
    box.appendChild(row);
  }
}

// ---- nodes and pools ---------------------------------------------------------------------

/** A value that is stale for a node that is down: a dash, and the last known value greyed. */
function staleCell(tr, down, text) {
  if (!down || text === "-") return cell(tr, text, "n");
  const td = cell(tr, "\\u2014 ", "n stale");
  td.title = "last known before the node went down: " + text;
  td.appendChild(el("span", "", "(was " + text + ")"));
  return td;
}

function renderNodes(nodes, fenced) {
  const body = $("nodes").tBodies[0];
  body.textContent = "";
  for (const n of nodes) {
    const down = n.state === "down";
    const tr = body.insertRow();
    tr.dataset.node = n.id;
    if (down) tr.className = "down";
    cell(tr, n.id);
    cell(tr, n.host + ":" + n.port, "dim");
    cell(tr, n.role + (n.sync ? " (sync)" : "") + (fenced.has(n.id) ? ", fenced old primary" : down && n.role === "standby" ? ", not serving" : ""));
    badge(cell(tr, ""), n.state, stateClass[n.state] || "warn");
    staleCell(tr, down, n.role === "primary" && !down ? "-" : fmtBytes(n.lag_bytes));
    staleCell(tr, down, n.lag_seconds === null || (n.role === "primary" && !down) ? "-" : fmtNum(n.lag_seconds, 2) + " s");
    staleCell(tr, down, n.latency_ms === null ? "-" : fmtNum(n.latency_ms, 2) + " ms");
    cell(tr, String(n.pools.active), "n");
    cell(tr, String(n.pools.idle), "n");
    cell(tr, String(n.pools.waiting), "n");
    cell(tr, String(n.pools.total), "n");
    const err = cell(tr, n.last_error && down ? n.last_error : "", "dim");
    err.style.whiteSpace = "normal";
  }
}

function renderPools(pools, dt) {
  const body = $("pools").tBodies[0];
  body.textContent = "";
  if (pools.length === 0) {
    const tr = body.insertRow();
    const td = cell(tr, "no pools yet: they appear when clients log in", "dim");
    td.colSpan = 12;
  }
  for (const p of pools) {
    const key = p.database + "/" + p.user + "@" + p.node;
    const before = prevCounts.get(key);
    const qps = before === undefined || !(dt > 0) ? null : Math.max(0, p.query_count - before) / dt;
    prevCounts.set(key, p.query_count);
    const tr = body.insertRow();
    tr.dataset.pool = key;
    cell(tr, p.database);
    cell(tr, p.user);
    cell(tr, p.node);
    cell(tr, p.mode + (p.paused ? " (paused)" : ""));
    cell(tr, String(p.clients), "n");
    cell(tr, String(p.active), "n");
    cell(tr, String(p.idle), "n");
    cell(tr, String(p.waiting), "n");
    cell(tr, String(p.total), "n");
    cell(tr, String(p.query_count), "n");
    cell(tr, qps === null ? "-" : fmtNum(qps, 1), "n");
    cell(tr, (p.avg_wait_us / 1000).toFixed(2) + " ms", "n");
  }
}

async function refresh() {
  try {
    // Every second: the live state; every fifth: the history (a point per step) and the failover records.
    const slow = tick++ % 5 === 0;
    const [nodes, pools, topo, health, alarms, hist, fo] = await Promise.all([
      get("/nodes"), get("/pools"), get("/topology"), get("/health"), get("/alarms"),
      slow ? get("/history") : null, slow ? get("/failovers") : null,
    ]);
    // Rates use the proxy's own sample time: right however late the browser polls.
    const dt = prevAt === null ? 0 : (pools.uptime_ms - prevAt) / 1000;
    const total = pools.pools.reduce((a, p) => a + p.query_count, 0);
    const qps = prevTotal === null || !(dt > 0) ? null : Math.max(0, total - prevTotal) / dt;
    prevTotal = total; prevAt = pools.uptime_ms;
    renderTopology(topo);
    renderAlarms(alarms.alarms);
    renderNodes(nodes.nodes, new Set(topo.fenced));
    renderPools(pools.pools, dt);
    if (hist) renderHistory(hist);
    if (fo) renderFailovers(fo);
    badge($("health"), health.status === "ok" ? (health.paused ? "paused" : "healthy") : "unavailable", health.status !== "ok" ? "bad" : health.paused ? "warn" : "ok");
    $("health").title = health.reasons.join("; ");
    $("qps").textContent = qps === null && hist && hist.points.length ? fmtNum(hist.points[hist.points.length - 1].qps, 1) : fmtNum(qps, 1);
    $("clients").textContent = String(health.clients);
    $("servers").textContent = String(nodes.nodes.reduce((a, n) => a + n.pools.total, 0));
    $("waiting").textContent = String(nodes.nodes.reduce((a, n) => a + n.pools.waiting, 0));
    $("queries").textContent = String(total);
    $("updated").textContent = "updated " + hhmmss(Date.now());
    $("auth").style.display = "none";
  } catch (e) {
    $("updated").textContent = String(e.message || e);
  }
}

$("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("heliosproxy.token", token);
  tick = 0;
  refresh();
});
refresh();
setInterval(refresh, 1000);
`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>HeliosProxy</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>HeliosProxy</h1>
  <span id="health"><span class="badge warn">loading</span></span>
  <span id="topology"></span>
  <form id="auth"><input id="token" type="password" placeholder="admin or read token" autocomplete="off"><button>Use token</button></form>
  <span id="updated"></span>
</header>
<main>
  <div id="alarms"></div>
  <div class="cards">
    <div class="card"><div class="v" id="qps">-</div><div class="l">queries / s</div></div>
    <div class="card"><div class="v" id="queries">-</div><div class="l">queries since start</div></div>
    <div class="card"><div class="v" id="errors">-</div><div class="l">errors in the charts' range</div></div>
    <div class="card"><div class="v" id="clients">-</div><div class="l">clients</div></div>
    <div class="card"><div class="v" id="servers">-</div><div class="l">server connections</div></div>
    <div class="card"><div class="v" id="waiting">-</div><div class="l">clients waiting</div></div>
  </div>
  <div class="grid2">
    <section>
      <h2>Request latency <span class="dim" id="history-span"></span></h2>
      <svg class="chart" id="latency-chart" viewBox="0 0 560 190" preserveAspectRatio="none"></svg>
      <div class="legend" id="latency-legend"></div>
    </section>
    <section>
      <h2>Errors by SQLSTATE</h2>
      <svg class="chart" id="errors-chart" viewBox="0 0 560 190" preserveAspectRatio="none"></svg>
      <div class="legend" id="errors-legend"></div>
    </section>
    <section>
      <h2>Throughput</h2>
      <svg class="chart" id="qps-chart" viewBox="0 0 560 190" preserveAspectRatio="none"></svg>
    </section>
    <section>
      <h2>Failovers and switchovers <span class="dim">newest first, each step with its time</span></h2>
      <div id="failovers"><div class="empty">loading</div></div>
    </section>
  </div>
  <section>
    <h2>Nodes</h2>
    <table id="nodes">
      <thead><tr><th>node</th><th>address</th><th>role</th><th>state</th><th class="n">lag</th><th class="n">lag time</th><th class="n">latency</th><th class="n">active</th><th class="n">idle</th><th class="n">waiting</th><th class="n">servers</th><th>last error</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Pools</h2>
    <table id="pools">
      <thead><tr><th>database</th><th>user</th><th>node</th><th>mode</th><th class="n">clients</th><th class="n">active</th><th class="n">idle</th><th class="n">waiting</th><th class="n">servers</th><th class="n">queries</th><th class="n">q/s</th><th class="n">avg wait</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
