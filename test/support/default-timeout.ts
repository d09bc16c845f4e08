// Preloaded by `bun test` (bunfig.toml [test] preload): every test file gets the per-test timeout `npm test` passes, since Bun 1.4 reads no timeout from bunfig.

import { plugin } from "bun";

/** The same as package.json's "test": "bun test --timeout 60000". */
export const TEST_TIMEOUT_MS = 60_000;

// A file-level default: it also wins over a --timeout on the command line (a test's own timeout wins over both).
plugin({
  name: "default-test-timeout",
  setup(build) {
    // Prepended on the file's first line, so line numbers in stack traces stay right.
    build.onLoad({ filter: /\.test\.ts$/ }, async ({ path }) => ({
      contents: `import { setDefaultTimeout as __setDefaultTimeout } from "bun:test"; __setDefaultTimeout(${TEST_TIMEOUT_MS}); ${await Bun.file(path).text()}`,
      loader: "ts",
    }));
  },
});
