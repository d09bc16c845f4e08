// The dashboard an on-call DBA reads, in headless Chromium on a real cluster: alarms banner, switchover timeline, latency and SQLSTATE charts from the proxy's history, a down standby greyed.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { chromium, chromiumTempDir, removeChromiumDirs, section } from "../support/chromium.ts";
import { adminApi, startClusterProxy, usePgCluster, waitNodeState } from "../support/pg-cluster.ts";
import { waitFor } from "../support/pg-instance.ts";
import type { RunningProxy } from "../support/proxy.ts";

const cluster = usePgCluster({ databases: ["app"] });
let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startClusterProxy(cluster(), {
    health: { interval: 0.25, timeout: 1, failureThreshold: 2 },
    toml: '[failover]\npolicy = "manual"\ndrain_timeout_secs = 1\n',
  });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  removeChromiumDirs();
});

test("after a switchover, errors and a standby going down: the page shows the alarm, the timeline, the charts with axes, and greys the down node", async () => {
  const sw = await adminApi(proxy, "POST", "/switchover", {}, { target: "node2" });
  expect(sw.status).toBe(200);

  // Traffic with two kinds of errors until the history holds two steps with them.
  const c = new pg.Client({ host: "127.0.0.1", port: proxy.port, user: "postgres", database: "app" });
  await c.connect();
  const history = async () => (await adminApi(proxy, "GET", "/history")).body as { points: { qps: number; p50_ms: number | null; errors: Record<string, number> }[] };
  await waitFor(
    "two history points with traffic and errors",
    async () => {
      for (let i = 0; i < 40; i++) await c.query("SELECT pg_sleep(0.002), $1::int", [i]);
      await c.query("SELECT 1/0").catch(() => {});
      await c.query("SELECT * FROM no_such_table").catch(() => {});
      const pts = (await history()).points.filter((p) => p.qps > 0 && (p.errors["22012"] ?? 0) > 0);
      return pts.length >= 2;
    },
    40_000,
    0,
  );
  await c.end();

  await cluster().dev.node("node3").stop("immediate");
  await waitNodeState(proxy, "node3", "down", 20_000);
  const alarms = (await adminApi(proxy, "GET", "/alarms")).body.alarms as { key: string; severity: string }[];
  expect(alarms.map((a) => a.key)).toContain("cluster:down:node3");

  const url = `http://127.0.0.1:${proxy.adminPort}/`;
  const shot = join(chromiumTempDir("helios-shot-"), "oncall.png");
  const [, dom] = await Promise.all([chromium(url, [`--screenshot=${shot}`, "--window-size=1280,1100"], 4000), chromium(url, ["--dump-dom"], 4000)]);
  // Kept beside the temp files for a person to look at.
  copyFileSync(shot, join(tmpdir(), "heliosproxy-dashboard-oncall.png"));
  expect(readFileSync(shot).readUInt32BE(16)).toBe(1280);

  // Alarms banner.
  const banner = dom.slice(dom.indexOf('<div id="alarms">'), dom.indexOf('<div class="cards">'));
  expect(banner).toContain('data-alarm="cluster:down:node3"');
  expect(banner).toContain("Standby node3 is down");
  // node1, the old primary, is fenced until it follows node2; node3 is down: no standby could take over now.
  expect(banner).toContain('data-alarm="cluster:no_candidate"');
  expect(banner).toContain("node1: a fenced old primary; node3: down:");
  expect(banner.indexOf("CRITICAL")).toBeLessThan(banner.indexOf("WARNING"));
  // Header: node2 is primary; neither node1 (fenced) nor node3 (down) is listed as a standby.
  expect(section(dom, "span", "topology")).toContain("primary <b>node2</b> (no standby up) · ");
  expect(dom).toContain('<span class="down">down: node3</span>');
  expect(section(dom, "table", "nodes")).toContain("<td>standby, fenced old primary</td>");
  // The down node: greyed row, no live-looking lag or latency.
  const row = /<tr data-node="node3" class="down">(.*?)<\/tr>/.exec(section(dom, "table", "nodes"))?.[1] ?? "";
  expect(row).toContain('<span class="badge bad">down</span>');
  expect(row).toContain("standby, not serving");
  const cells = [...row.matchAll(/<td class="n stale"[^>]*>— <span>\(was ([^)]*)\)<\/span><\/td>/g)].map((m) => m[1]);
  expect(cells.length).toBeGreaterThanOrEqual(2); // lag and latency at least: only as "was ..."
  expect(row).not.toMatch(/<td class="n">0 B<\/td>/);
  // Timeline: the switchover with each step's time.
  const fo = dom.slice(dom.indexOf('<div id="failovers">'), dom.indexOf("<h2>Nodes</h2>"));
  expect(fo).toContain("<b>switchover node1 → node2</b>");
  expect(fo).toContain('<span class="badge ok">done</span>');
  expect(fo).toMatch(/<li><b>\+\d+(\.\d)? ms<\/b>candidate node2 at WAL \d+/);
  expect(fo).toMatch(/<li><b>\+[\d.]+ m?s<\/b>primary is node2 \(epoch 1\)/);
  // Charts from the proxy's history: lines and bars, with units on the axes.
  const latency = section(dom, "svg", "latency-chart");
  expect(latency).toContain(">ms</text>");
  expect(latency).toMatch(/<polyline [^>]*points="[\d.]+,[\d.]+ [\d.]+,[\d.]+[^"]*" data-series="p50_ms">/);
  expect(latency).toMatch(/<text x="[\d.]+" y="[\d.]+" text-anchor="(middle|start|end)">\d\d:\d\d(:\d\d)?<\/text>/);
  const errors = section(dom, "svg", "errors-chart");
  expect(errors).toContain('data-sqlstate="22012"');
  expect(errors).toContain('data-sqlstate="42P01"');
  expect(section(dom, "div", "errors-legend")).toMatch(/22012 ×\d+/);
  expect(section(dom, "svg", "qps-chart")).toContain(">q/s</text>");
}, 180_000);
