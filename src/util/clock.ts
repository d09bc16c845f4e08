// A coarse clock for timeouts and idle accounting: one read per upkeep tick, not per message.

/** Milliseconds (performance.now() scale), refreshed by tick(); good to the tick interval. */
export const clock = { now: performance.now() };

export function tickClock(): number {
  clock.now = performance.now();
  return clock.now;
}
