// synchronous_standby_names against the topology: parsing, application names, which standbys could commit once promoted, what the controller sets.

import { describe, expect, test } from "bun:test";
import { formatSyncNames, parseSyncNames, standbyApplicationName, syncShortfall } from "../../src/cluster/sync-names.ts";
import { promotionProblems, syncSettingFor } from "../../src/cluster/sync-watch.ts";
import { nodeStatus, nodeView } from "../support/node-views.ts";

describe("parseSyncNames", () => {
  test("the forms PostgreSQL accepts", () => {
    expect(parseSyncNames("")).toBeNull();
    expect(parseSyncNames("s1")).toEqual({ method: "FIRST", num: 1, names: ["s1"] });
    expect(parseSyncNames("s1, s2")).toEqual({ method: "FIRST", num: 1, names: ["s1", "s2"] });
    expect(parseSyncNames("2 (s1, s2, s3)")).toEqual({ method: "FIRST", num: 2, names: ["s1", "s2", "s3"] });
    expect(parseSyncNames('FIRST 1 ("node2")')).toEqual({ method: "FIRST", num: 1, names: ["node2"] });
    expect(parseSyncNames("any 2 (a,b,c)")).toEqual({ method: "ANY", num: 2, names: ["a", "b", "c"] });
    expect(parseSyncNames("*")).toEqual({ method: "FIRST", num: 1, names: ["*"] });
    expect(parseSyncNames('FIRST 1 ("my standby", b)')).toEqual({ method: "FIRST", num: 1, names: ["my standby", "b"] });
  });

  test("what does not parse is an error message, not a guess", () => {
    expect(parseSyncNames("FIRST 1 (a,)")).toContain("missing");
    expect(parseSyncNames('FIRST 1 ("a)')).toContain("unterminated");
  });

  test("written back", () => {
    expect(formatSyncNames({ method: "ANY", num: 1, names: ["node2", "my standby"] })).toBe('ANY 1 (node2, "my standby")');
    expect(formatSyncNames(null)).toBe("");
  });
});

test("a standby's application_name: primary_conninfo (keyword or URI), then cluster_name, then walreceiver", () => {
  expect(standbyApplicationName("host=h port=5 user=postgres application_name=s1", null)).toBe("s1");
  expect(standbyApplicationName("host=h application_name='my s1' port=5", null)).toBe("my s1");
  expect(standbyApplicationName("postgresql://u@h:5/db?application_name=s2&sslmode=disable", null)).toBe("s2");
  expect(standbyApplicationName("host=h port=5", "c1")).toBe("c1");
  expect(standbyApplicationName("host=h port=5", "")).toBe("walreceiver");
  expect(standbyApplicationName(null, "c1")).toBeNull();
});

test("syncShortfall: FIRST/ANY n against the standbys that would stream, names compared without case", () => {
  const spec = parseSyncNames("FIRST 1 (s1)") as Exclude<ReturnType<typeof parseSyncNames>, string>;
  expect(syncShortfall(spec, ["S1"])).toBe("");
  expect(syncShortfall(spec, ["s2"])).toBe("needs 1 of (s1), 0 would stream (s1 would not)");
  expect(syncShortfall(parseSyncNames("ANY 2 (a, b, c)") as never, ["a", "c"])).toBe("");
  expect(syncShortfall(parseSyncNames("*") as never, [])).not.toBe("");
  expect(syncShortfall(null, [])).toBe("");
});

describe("promotionProblems", () => {
  // The layout pg_basebackup gives from a typical primary: FIRST 1 (node2) on every node.
  const layout = (names: string) => [
    nodeView("node1", { role: "primary", status: nodeStatus({ inRecovery: false, syncNames: names, applicationName: "walreceiver" }) }),
    nodeView("node2", { status: nodeStatus({ syncNames: names, applicationName: "node2" }) }),
    nodeView("node3", { status: nodeStatus({ syncNames: names, applicationName: "node3" }) }),
  ];

  test("keep: the sync standby that names itself would wait forever; the other one is fine", () => {
    const p = promotionProblems(layout('FIRST 1 ("node2")'), "keep");
    expect([...p.keys()]).toEqual(["node2"]);
    expect(p.get("node2")).toContain("(it names node2, node2 itself)");
    expect(p.get("node2")).toContain("would wait forever");
  });

  test("keep: ANY 1 over every standby (the recommended layout) is fine everywhere", () => {
    expect(promotionProblems(layout("ANY 1 (node1, node2, node3)"), "keep").size).toBe(0);
  });

  test("remaining and off: the controller sets a value that commits; strict: only a lone standby is reported", () => {
    expect(promotionProblems(layout('FIRST 1 ("node2")'), "remaining").size).toBe(0);
    expect(promotionProblems(layout('FIRST 1 ("node2")'), "off").size).toBe(0);
    expect(promotionProblems(layout('FIRST 1 ("node2")'), "strict").size).toBe(0);
    const lone = layout("").slice(0, 2);
    expect([...promotionProblems(lone, "strict").keys()]).toEqual(["node2"]);
  });

  test("keep: an unreadable application_name is reported, not guessed", () => {
    const nodes = layout('FIRST 1 ("node3")');
    nodes[2] = nodeView("node3", { status: nodeStatus({ syncNames: 'FIRST 1 ("node3")', applicationName: null }) });
    expect(promotionProblems(nodes, "keep").get("node2")).toContain("pg_read_all_settings");
  });
});

test("syncSettingFor: what the controller writes", () => {
  expect(syncSettingFor("keep", "FIRST 1 (a)", ["b"])).toBeNull();
  expect(syncSettingFor("off", "FIRST 1 (a)", ["b"])).toBe("");
  expect(syncSettingFor("remaining", 'FIRST 1 ("node2")', [])).toBe("");
  expect(syncSettingFor("remaining", 'FIRST 1 ("node2")', ["node3"])).toBe("FIRST 1 (node3)");
  expect(syncSettingFor("remaining", "ANY 2 (a, b, c)", ["c", "b"])).toBe("ANY 2 (b, c)");
  expect(syncSettingFor("remaining", "FIRST 2 (a, b, c)", ["c"])).toBe("FIRST 1 (c)");
  expect(syncSettingFor("remaining", "", ["c"])).toBe("FIRST 1 (c)");
  expect(syncSettingFor("strict", "FIRST 1 (a)", [])).toBe("FIRST 1 (*)");
});
