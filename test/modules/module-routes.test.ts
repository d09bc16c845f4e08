// Admin routes a module adds are described in GET /openapi.json (with their query parameters and body), and each answers.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { startProxy, type RunningProxy } from "../support/proxy.ts";

let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startProxy({
    toml: `[auth]\nmethod = "trust"\n[query_cache]\n[query_analytics]\n[transaction_replay]\n[tracing]\nendpoint = "http://127.0.0.1:9/v1/traces"\nsample_ratio = 0.0\n`,
  });
});

afterAll(async () => {
  await proxy?.stop();
});

async function get(path: string, method = "GET", body?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, { method, ...(body !== undefined ? { body, headers: { "content-type": "application/json" } } : {}) });
  return { status: res.status, body: await res.json() };
}

const MODULE_ROUTES: [string, string][] = [
  ["/cache", "get"],
  ["/cache/invalidate", "post"],
  ["/queries", "get"],
  ["/queries/slow", "get"],
  ["/queries/n-plus-one", "get"],
  ["/queries/reset", "post"],
  ["/journal", "get"],
  ["/tracing", "get"],
];

test("every route of the enabled modules is in the OpenAPI document, and only those", async () => {
  const doc = (await get("/openapi.json")).body;
  const tagged = Object.entries(doc.paths as Record<string, Record<string, { tags?: string[] }>>).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([, op]) => op.tags?.includes("modules"))
      .map(([method]) => [path, method]),
  );
  expect(tagged.sort()).toEqual([...MODULE_ROUTES].sort());
  expect(doc.paths["/cache"].get.parameters).toEqual([{ name: "top", in: "query", required: false, description: "How many top entries to list (1..1000, default 10)", schema: { type: "string" } }]);
  expect(Object.keys(doc.paths["/cache/invalidate"].post.requestBody.content["application/json"].schema.properties).sort()).toEqual(["fingerprint", "pattern", "table"]);
  expect(doc.paths["/queries"].get.parameters.map((p: { name: string }) => p.name)).toEqual(["order", "limit"]);
  expect(doc.paths["/journal"].get.parameters.map((p: { name: string }) => p.name)).toEqual(["session"]);
  // The core's routes are still there beside them.
  expect(doc.paths["/health"].get.responses["200"]).toBeObject();
});

test("each documented module route answers (not 404/405), and a documented parameter is checked as described", async () => {
  for (const [path, method] of MODULE_ROUTES) {
    const r = await get(path, method.toUpperCase(), method === "post" ? "{}" : undefined);
    expect([path, r.status]).toEqual([path, 200]);
  }
  const bad = await get("/queries?order=banana");
  expect(bad.status).toBe(400);
  expect(bad.body.message).toContain("order");
  expect((await get("/cache/invalidate", "POST", '{"colour": "red"}')).status).toBe(400);
});

test("without the modules their routes are neither served nor described", async () => {
  const bare = await startProxy({ toml: `[auth]\nmethod = "trust"\n` });
  try {
    const res = await fetch(`http://127.0.0.1:${bare.adminPort}/openapi.json`);
    const paths = Object.keys(((await res.json()) as { paths: Record<string, unknown> }).paths);
    for (const [path] of MODULE_ROUTES) expect(paths).not.toContain(path);
    expect((await fetch(`http://127.0.0.1:${bare.adminPort}/cache`)).status).toBe(404);
  } finally {
    await bare.stop();
  }
});
