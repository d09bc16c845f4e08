// The dashboard page served at GET /: one self-contained HTML document polling /nodes, /pools, /topology.

const STYLE = `
:root { --bg:#0f1419; --panel:#171d24; --line:#26303b; --text:#d8dee6; --dim:#8a96a3; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --accent:#58a6ff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 14px 24px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; font-weight: 600; }
h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); text-transform: uppercase; letter-spacing: .06em; font-weight: 600; }
main { padding: 18px 24px; display: grid; gap: 18px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.ok { background: rgba(63,185,80,.15); color: var(--ok); }
.warn { background: rgba(210,153,34,.15); color: var(--warn); }
.bad { background: rgba(248,81,73,.15); color: var(--bad); }
.dim { color: var(--dim); }
#topology { color: var(--dim); }
#topology b { color: var(--text); }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
.card .v { font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .l { color: var(--dim); font-size: 12px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--dim); font-weight: 500; font-size: 12px; }
td.n, th.n { text-align: right; }
tr:last-child td { border-bottom: none; }
svg { display: block; width: 100%; height: 60px; }
#auth { display: none; gap: 8px; align-items: center; }
#auth input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 4px 8px; }
#auth button { background: var(--accent); color: #fff; border: 0; border-radius: 4px; padding: 5px 10px; cursor: pointer; }
#updated { margin-left: auto; color: var(--dim); font-size: 12px; }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const m = /[#&]token=([^&]+)/.exec(location.hash);
if (m) { sessionStorage.setItem("heliosproxy.token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
let token = sessionStorage.getItem("heliosproxy.token") || "";
const history_ = [];
const prevCounts = new Map();
let prevTotal = null, prevAt = null;

async function get(path) {
  const r = await fetch(path, { headers: token ? { authorization: "Bearer " + token } : {}, cache: "no-store" });
  if (r.status === 401) { $("auth").style.display = "flex"; throw new Error("unauthorized"); }
  if (!r.ok && r.status !== 503) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function badge(td, text, cls) {
  td.textContent = "";
  const s = document.createElement("span");
  s.className = "badge " + cls;
  s.textContent = text;
  td.appendChild(s);
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}
const fmtNum = (n, d) => (n === null || n === undefined ? "-" : Number(n).toFixed(d ?? 0));
const stateClass = { up: "ok", draining: "warn", down: "bad" };

function renderNodes(nodes) {
  const body = $("nodes").tBodies[0];
  body.textContent = "";
  for (const n of nodes) {
    const tr = body.insertRow();
    tr.dataset.node = n.id;
    cell(tr, n.id);
    cell(tr, n.host + ":" + n.port, "dim");
    cell(tr, n.role + (n.sync ? " (sync)" : ""));
    badge(cell(tr, ""), n.state, stateClass[n.state] || "warn");
    cell(tr, fmtBytes(n.lag_bytes), "n");
    cell(tr, n.lag_seconds === null ? "-" : fmtNum(n.lag_seconds, 2) + " s", "n");
    cell(tr, n.latency_ms === null ? "-" : fmtNum(n.latency_ms, 2) + " ms", "n");
    cell(tr, String(n.pools.active), "n");
    cell(tr, String(n.pools.idle), "n");
    cell(tr, String(n.pools.waiting), "n");
    cell(tr, String(n.pools.total), "n");
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

function renderSpark() {
  const svg = $("spark");
  const w = 600, h = 60, peak = Math.max(0, ...history_), scale = Math.max(1, peak);
  const pts = history_.map((v, i) => (i * w / 59).toFixed(1) + "," + (h - 4 - (v / scale) * (h - 8)).toFixed(1));
  svg.querySelector("polyline").setAttribute("points", pts.join(" "));
  $("spark-max").textContent = history_.length ? "peak " + fmtNum(peak, 1) + " q/s over the last " + history_.length + " s" : "";
}

function renderTopology(t) {
  const el = $("topology");
  el.textContent = "";
  const b = document.createElement("b");
  b.textContent = t.primary ?? "no primary";
  el.append("primary ", b, t.standbys.length ? " \\u2192 standbys " + t.standbys.join(", ") : " (no standbys)");
}

async function refresh() {
  try {
    const [nodes, pools, topo, health] = await Promise.all([get("/nodes"), get("/pools"), get("/topology"), get("/health")]);
    // Rates use the proxy's own sample time: right however late the browser polls.
    const dt = prevAt === null ? 0 : (pools.uptime_ms - prevAt) / 1000;
    const total = pools.pools.reduce((a, p) => a + p.query_count, 0);
    const qps = prevTotal === null || !(dt > 0) ? null : Math.max(0, total - prevTotal) / dt;
    prevTotal = total; prevAt = pools.uptime_ms;
    if (qps !== null) { history_.push(qps); if (history_.length > 60) history_.shift(); }
    renderTopology(topo);
    renderNodes(nodes.nodes);
    renderPools(pools.pools, dt);
    renderSpark();
    badge($("health"), health.status === "ok" ? (health.paused ? "paused" : "healthy") : "unavailable", health.status !== "ok" ? "bad" : health.paused ? "warn" : "ok");
    $("health").title = health.reasons.join("; ");
    $("qps").textContent = fmtNum(qps, 1);
    $("clients").textContent = String(health.clients);
    $("servers").textContent = String(nodes.nodes.reduce((a, n) => a + n.pools.total, 0));
    $("waiting").textContent = String(nodes.nodes.reduce((a, n) => a + n.pools.waiting, 0));
    $("queries").textContent = String(total);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("auth").style.display = "none";
  } catch (e) {
    $("updated").textContent = String(e.message || e);
  }
}

$("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("heliosproxy.token", token);
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
  <div class="cards">
    <div class="card"><div class="v" id="qps">-</div><div class="l">queries / s</div></div>
    <div class="card"><div class="v" id="queries">-</div><div class="l">queries since start</div></div>
    <div class="card"><div class="v" id="clients">-</div><div class="l">clients</div></div>
    <div class="card"><div class="v" id="servers">-</div><div class="l">server connections</div></div>
    <div class="card"><div class="v" id="waiting">-</div><div class="l">clients waiting</div></div>
  </div>
  <section>
    <h2>Throughput <span class="dim" id="spark-max"></span></h2>
    <svg id="spark" viewBox="0 0 600 60" preserveAspectRatio="none"><polyline fill="none" stroke="#58a6ff" stroke-width="2" points=""/></svg>
  </section>
  <section>
    <h2>Nodes</h2>
    <table id="nodes">
      <thead><tr><th>node</th><th>address</th><th>role</th><th>state</th><th class="n">lag</th><th class="n">lag time</th><th class="n">latency</th><th class="n">active</th><th class="n">idle</th><th class="n">waiting</th><th class="n">servers</th></tr></thead>
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
