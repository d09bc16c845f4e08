// Headless Chromium for the dashboard tests: screenshots and the DOM after the page's script ran.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "bun:test";

const dirs: string[] = [];

/** A temp directory removed by removeChromiumDirs(). */
export function chromiumTempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function removeChromiumDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Run Debian's chromium headless on a URL with extra flags; fails the test if it cannot run. */
export async function chromium(url: string, extra: string[], budgetMs = 3000): Promise<string> {
  const profile = chromiumTempDir("helios-chromium-");
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
      `--virtual-time-budget=${budgetMs}`,
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
export function section(dom: string, tag: string, id: string): string {
  const start = new RegExp(`<${tag}\\b[^>]*\\sid="${id}"`).exec(dom)?.index ?? -1;
  expect({ id, found: start >= 0 }).toEqual({ id, found: true });
  return dom.slice(start, dom.indexOf(`</${tag}>`, start));
}
