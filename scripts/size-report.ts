// What each profile's JavaScript weighs, by package: `bun scripts/size-report.ts` (bundles only; compiling the binary adds the Bun runtime).

import { ENTRY, PROFILES, definesFor } from "./build.ts";

/** "node_modules/prom-client/lib/x.js" -> "prom-client"; our sources -> "(heliosproxy)". */
function packageOf(path: string): string {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  return m ? m[1]! : "(heliosproxy)";
}

export async function bundleSizes(profile: string): Promise<{ total: number; byPackage: [string, number][] }> {
  const result = await Bun.build({ entrypoints: [ENTRY], target: "bun", minify: true, define: definesFor(profile), metafile: true });
  if (!result.success || !result.metafile) throw new Error(`bundle of ${profile} failed`);
  const meta = (typeof result.metafile === "string" ? JSON.parse(result.metafile) : result.metafile) as {
    outputs: Record<string, { bytes: number; inputs: Record<string, { bytesInOutput: number }> }>;
  };
  const byPackage = new Map<string, number>();
  let total = 0;
  for (const out of Object.values(meta.outputs)) {
    total += out.bytes;
    for (const [path, i] of Object.entries(out.inputs)) byPackage.set(packageOf(path), (byPackage.get(packageOf(path)) ?? 0) + i.bytesInOutput);
  }
  return { total, byPackage: [...byPackage].sort((a, b) => b[1] - a[1]) };
}

if (import.meta.main) {
  const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  for (const profile of Object.keys(PROFILES)) {
    const s = await bundleSizes(profile);
    console.log(`${profile}: ${kib(s.total)} of JavaScript`);
    for (const [pkg, bytes] of s.byPackage.slice(0, 12)) console.log(`  ${pkg.padEnd(28)} ${kib(bytes).padStart(9)}`);
  }
}
