// Dashboard page in headless Chromium: a screenshot, and the DOM its script fills from /nodes, /pools, /topology.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { psql, startProxy, type RunningProxy } from "../support/proxy.ts";

const QUERIES = 4;
const READ_TOKEN = "dash-read-9c1e";
const dirs: string[] = [];

let open: RunningProxy;
let guarded: RunningProxy;

beforeAll(async () => {
  [open, guarded] = await Promise.all([startProxy(), startProxy({ env: { HELIOSPROXY_READ_TOKEN: READ_TOKEN } })]);
  for (const p of [open, guarded]) for (let i = 0; i < QUERIES; i++) expect((await psql(p.port, ["-Atc", `select ${i}`])).code).toBe(0);
});

afterAll(async () => {
  await Promise.all([open.stop(), guarded.stop()]);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Run Debian's chromium headless on a URL with extra flags; fails the test if it cannot run. */
async function chromium(url: string, extra: string[]): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), "helios-chromium-"));
  dirs.push(profile);
  const proc = Bun.spawn(
    [
      "chromium",
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${profile}`,
      "--virtual-time-budget=3000",
      ...extra,
      url,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`chromium exited ${code}: ${err.slice(-2000)}`);
  return out;
}

/** The inner HTML of the element with this id in a dumped DOM. */
function section(dom: string, tag: string, id: string): string {
  const start = dom.indexOf(`<${tag} id="${id}"`);
  expect(start).toBeGreaterThanOrEqual(0);
  return dom.slice(start, dom.indexOf(`</${tag}>`, start));
}

test("screenshot renders and the script fills nodes, pools, topology and throughput", async () => {
  const shotDir = mkdtempSync(join(tmpdir(), "helios-shot-"));
  dirs.push(shotDir);
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
  expect(dom).toMatch(/<polyline [^>]*points="[\d., ]+"/);
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
