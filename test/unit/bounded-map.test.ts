// BoundedMap: never more than its bound; the oldest key leaves first and its owner hears of it; reads do not reorder.

import { expect, test } from "bun:test";
import { BoundedMap } from "../../src/util/bounded-map.ts";

test("a new key past the bound drops the oldest set; overwriting or reading moves nothing", () => {
  const gone: [string, number][] = [];
  const m = new BoundedMap<string, number>(3, (v, k) => gone.push([k, v]));
  m.set("a", 1).set("b", 2).set("c", 3);
  expect(m.get("a")).toBe(1); // a read does not refresh "a"
  m.set("b", 20); // an existing key: no eviction
  expect([m.size, gone]).toEqual([3, []]);
  m.set("d", 4);
  expect([m.size, m.has("a"), m.get("b"), gone]).toEqual([3, false, 20, [["a", 1]]]);
  m.delete("c");
  m.set("e", 5); // room again after a delete
  expect([m.size, gone.length]).toEqual([3, 1]);
  for (let i = 0; i < 1000; i++) m.set(`k${i}`, i);
  expect(m.size).toBe(3);
  expect(gone.length).toBe(1 + 1000);
  m.clear();
  expect(m.size).toBe(0);
});
