/**
 * AbortSignal helpers used by every long operation.
 *
 * None of the drivers stowage wraps takes an AbortSignal, so each long
 * operation checks the signal before it starts, translates an abort into
 * `destroy()`/`close()` of what it drives, removes its listener in `finally`
 * and rethrows `signal.reason`.
 *
 * @module
 */
import { setMaxListeners } from 'node:events';

/**
 * Throws `signal.reason` if the signal has already been aborted.
 *
 * @param signal - the caller's signal, if any
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/**
 * Runs `onAbort` when the signal aborts. Returns a disposer that removes the
 * listener; call it in `finally`.
 *
 * @param signal - the caller's signal, if any
 * @param onAbort - called once with the abort reason
 */
export function onAbort(signal: AbortSignal | undefined, onAbort: (reason: unknown) => void): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    onAbort(signal.reason);
    return () => {};
  }
  const listener = (): void => onAbort(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * Races a promise against the signal: resolves or rejects with the promise,
 * or rejects with `signal.reason` as soon as the signal aborts.
 *
 * @param promise - the work
 * @param signal - the caller's signal, if any
 */
export async function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  throwIfAborted(signal);
  let dispose = (): void => {};
  const aborted = new Promise<never>((_, reject) => {
    dispose = onAbort(signal, reject);
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    dispose();
  }
}

/**
 * Waits `ms` milliseconds, or rejects with `signal.reason` when aborted.
 *
 * @param ms - milliseconds
 * @param signal - the caller's signal, if any
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  // A rejected promise, not a synchronous throw: callers chain .catch() on it.
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      dispose();
      resolve();
    }, ms);
    const dispose = onAbort(signal, (reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}

/**
 * Combines several optional signals into one that aborts when any does.
 *
 * @param signals - signals, undefined entries ignored
 */
export function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  if (present.length === 0) return undefined;
  if (present.length === 1) return present[0];
  return AbortSignal.any(present);
}

/**
 * A signal that follows `signal`, for work that fans out to `fanOut`
 * operations at once, each listening to it: node warns
 * (MaxListenersExceededWarning) past 10 listeners on one signal, which 32
 * files in flight, each raced against it, pass without any leak. The
 * caller's own signal gets one listener; the limit is raised on the copy.
 *
 * @param signal - the caller's signal, if any
 * @param fanOut - operations listening at once
 */
export function fanOutSignal(signal: AbortSignal | undefined, fanOut: number): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  const copy = AbortSignal.any([signal]);
  setMaxListeners(Math.max(10, fanOut * 4 + 10), copy);
  return copy;
}
