// Dashboard page in headless Chromium on a single node: a screenshot, and the DOM its script fills from the admin API; tokens.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, chromiumTempDir, removeChromiumDirs, section } from "../support/chromium.ts";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";

const QUERIES = 4;
const READ_TOKEN = "dash-read-9c1e";

let open: RunningProxy;
let guarded: RunningProxy;

beforeAll(async () => {
  [open, guarded] = await Promise.all([startProxy(), startProxy({ env: { HELIOSPROXY_READ_TOKEN: READ_TOKEN } })]);
  for (const p of [open, guarded]) for (let i = 0; i < QUERIES; i++) expect((await psql(p.port, ["-Atc", `select ${i}`])).code).toBe(0);
});

afterAll(async () => {
  await Promise.all([open.stop(), guarded.stop()]);
  removeChromiumDirs();
});

test("screenshot renders and the script fills nodes, pools, topology, throughput; no alarms and no failovers say so", async () => {
  const shotDir = chromiumTempDir("helios-shot-");
  const png = join(shotDir, "dashboard.png");
  const url = `http://127.0.0.1:${open.adminPort}/`;
  const [, dom] = await Promise.all([chromium(url, [`--screenshot=${png}`, "--window-size=1200,800"]), chromium(url, ["--dump-dom"])]);

  const bytes = readFileSync(png);
  expect([...bytes.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  expect(bytes.readUInt32BE(16)).toBe(1200); // IHDR width
  expect(bytes.readUInt32BE(20)).toBe(800); // IHDR height
  expect(statSync(png).size).toBeGreaterThan(15_000); // a blank page compresses to a few KB

  const nodes = section(dom, "table", "nodes");
  expect(nodes).toContain('<tr data-node="node1"><td>node1</td><td class="dim">127.0.0.1:5432</td><td>primary</td><td><span class="badge ok">up</span></td>');
  const pools = section(dom, "table", "pools");
  expect(pools).toContain('<tr data-pool="test/postgres@node1"><td>test</td><td>postgres</td><td>node1</td><td>transaction</td>');
  expect(section(dom, "span", "topology")).toContain("primary <b>node1</b>");
  expect(section(dom, "span", "health")).toContain("healthy");
  const queries = /<div class="v" id="queries">(\d+)<\/div>/.exec(dom);
  expect(Number(queries?.[1])).toBeGreaterThanOrEqual(QUERIES);
  expect(dom).toMatch(/<div class="v" id="qps">\d+\.\d<\/div>/);
  expect(section(dom, "div", "alarms")).toContain('<div class="calm">✓ No alarms');
  expect(section(dom, "div", "failovers")).toContain("No failover or switchover since the proxy started (policy ");
  // Axes with units on every chart, even before the first point.
  for (const [id, unit] of [["latency-chart", "ms"], ["qps-chart", "q/s"], ["errors-chart", "errors / 5 s"]]) expect(section(dom, "svg", id!)).toContain(`>${unit}</text>`);
});

test("with tokens set: the page asks for one, and a #token= fragment is used for the API calls", async () => {
  const base = `http://127.0.0.1:${guarded.adminPort}/`;
  const [without, withToken] = await Promise.all([chromium(base, ["--dump-dom"]), chromium(`${base}#token=${READ_TOKEN}`, ["--dump-dom"])]);
  expect(without).toContain('<form id="auth" style="display: flex;">');
  expect(section(without, "table", "nodes")).not.toContain("data-node=");
  expect(section(withToken, "table", "nodes")).toContain('data-node="node1"');
  expect(section(withToken, "table", "pools")).toContain('data-pool="test/postgres@node1"');
  expect(withToken).not.toContain('<form id="auth" style="display: flex;">');
});
