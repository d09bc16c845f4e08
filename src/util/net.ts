// Small TCP helpers on 127.0.0.1: a free port, whether something listens, waiting until it does.

import { readFileSync } from "node:fs";

/** The kernel's range for outgoing connections' local ports (Linux default when unreadable). */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch {}
  return [32768, 60999];
}
const EPHEMERAL = ephemeralRange();

function bindable(port: number): boolean {
  try {
    Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    return true;
  } catch {
    return false;
  }
}

/**
 * A free TCP port on 127.0.0.1 for a server to listen on. Chosen below the ephemeral range: a port
 * the kernel hands out for bind(0) can be taken as the local port of any outgoing connection
 * before the server binds it.
 */
export function freePort(): number {
  const lo = 15000;
  const hi = Math.min(EPHEMERAL[0], 65536) - 1;
  if (hi - lo > 1000) {
    for (let i = 0; i < 200; i++) {
      const p = lo + Math.floor(Math.random() * (hi - lo));
      if (bindable(p)) return p;
    }
  }
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portInUse(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(s) {
          s.end();
          resolve(true);
        },
        data() {},
        connectError() {
          resolve(false);
        },
        error() {
          resolve(false);
        },
      },
    }).catch(() => resolve(false));
  });
}

/** Wait until something accepts connections on 127.0.0.1:port; throws after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await portInUse(port)) return;
    // A refused local connect costs microseconds: a short step does not make a starting process wait a whole step.
    await Bun.sleep(10);
  }
  throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
}
