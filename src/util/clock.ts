// A coarse clock for timeouts and idle accounting: one read per upkeep tick, not per message.

/** Milliseconds (performance.now() scale), refreshed by tick(); good to the tick interval, so it may lag: a start time a timeout is measured from reads performance.now() itself, so the timeout never fires early. */
export const clock = { now: performance.now() };

export function tickClock(): number {
  clock.now = performance.now();
  return clock.now;
}
