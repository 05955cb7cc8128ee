// Timers for any delay. Node's setTimeout takes at most 2^31-1 ms (24.8 days) and fires a longer
// one at once, so a `poll-interval: 30d` was a busy loop and a 30-day health timeout an instant
// failure. These wait a long delay out in steps.

/** The longest delay one Node timer takes. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Timer {
  clear(): void;
}

/**
 * Calls `fn` once `ms` have passed (steps of at most `step` ms, for tests). `unref`: the timer
 * alone does not keep the process alive, as AbortSignal.timeout's does not.
 */
export function after(ms: number, fn: () => void, step = MAX_TIMER_MS, unref = false): Timer {
  const due = Date.now() + Math.max(0, ms);
  let handle: NodeJS.Timeout;
  const arm = (): void => {
    const left = due - Date.now();
    handle = setTimeout(left > step ? arm : fn, Math.max(0, Math.min(left, step)));
    if (unref) handle.unref();
  };
  arm();
  return { clear: () => clearTimeout(handle) };
}

export function sleepFor(ms: number, step = MAX_TIMER_MS): Promise<void> {
  return new Promise((resolve) => after(ms, resolve, step));
}

/** A signal that aborts once `ms` have passed, as AbortSignal.timeout does for short delays. */
export function timeoutSignal(ms: number): AbortSignal {
  const controller = new AbortController();
  after(ms, () => controller.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), MAX_TIMER_MS, true);
  return controller.signal;
}
