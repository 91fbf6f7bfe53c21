/**
 * Progress reporting shared by every long operation.
 *
 * The library never prints: long work calls an `onProgress` callback with a
 * {@link Progress} snapshot, throttled so that a callback that draws a bar
 * is not called a million times for a million rows.
 *
 * @module
 */

/** A snapshot of the progress of one long operation. */
export interface Progress {
  /** What is being done now, e.g. `"hash"`, `"archive"`, `"upload"`, `"dump"`. */
  readonly phase: string;
  /** Bytes processed so far. */
  readonly bytesDone: number;
  /** Bytes to process in all, when known. */
  readonly bytesTotal?: number;
  /** Items (files, rows, partitions) processed so far. */
  readonly itemsDone: number;
  /** Items to process in all, when known. */
  readonly itemsTotal?: number;
  /** Bytes per second since the operation started. */
  readonly rateBps: number;
}

/** A progress callback; see {@link Progress}. */
export type ProgressCallback = (p: Progress) => void;

/** Options of {@link ProgressTracker}. */
export interface ProgressTrackerOptions {
  /** Totals, when known up front. */
  bytesTotal?: number;
  /** Item total, when known up front. */
  itemsTotal?: number;
  /** Minimum milliseconds between two callbacks (default 100); the final report is never throttled. */
  intervalMs?: number;
}

/**
 * Counts bytes and items for one operation and calls a progress callback at
 * most every `intervalMs`. Cheap to call on every chunk.
 */
export class ProgressTracker {
  /** Bytes processed so far. */
  bytesDone = 0;
  /** Items processed so far. */
  itemsDone = 0;
  /** Byte total, when known. */
  bytesTotal: number | undefined;
  /** Item total, when known. */
  itemsTotal: number | undefined;
  readonly #callback: ProgressCallback | undefined;
  readonly #intervalMs: number;
  readonly #started = performance.now();
  #phase: string;
  #last = 0;

  /**
   * @param phase - initial phase name
   * @param callback - the user's callback; may be undefined (then nothing is reported)
   * @param options - totals and throttle interval
   */
  constructor(phase: string, callback: ProgressCallback | undefined, options: ProgressTrackerOptions = {}) {
    this.#phase = phase;
    this.#callback = callback;
    this.#intervalMs = options.intervalMs ?? 100;
    this.bytesTotal = options.bytesTotal;
    this.itemsTotal = options.itemsTotal;
  }

  /** Switches to a new phase and reports it. */
  phase(name: string): void {
    this.#phase = name;
    this.report(true);
  }

  /** Adds processed bytes (and items) and reports if the interval has passed. */
  add(bytes: number, items = 0): void {
    this.bytesDone += bytes;
    this.itemsDone += items;
    this.report(false);
  }

  /** The current snapshot. */
  snapshot(): Progress {
    const seconds = (performance.now() - this.#started) / 1000;
    const p: { -readonly [K in keyof Progress]: Progress[K] } = {
      phase: this.#phase,
      bytesDone: this.bytesDone,
      itemsDone: this.itemsDone,
      rateBps: seconds > 0 ? this.bytesDone / seconds : 0,
    };
    if (this.bytesTotal !== undefined) p.bytesTotal = this.bytesTotal;
    if (this.itemsTotal !== undefined) p.itemsTotal = this.itemsTotal;
    return p;
  }

  /**
   * Calls the callback with the current snapshot.
   *
   * @param force - report even if the throttle interval has not passed
   */
  report(force = false): void {
    if (this.#callback === undefined) return;
    const now = performance.now();
    if (!force && now - this.#last < this.#intervalMs) return;
    this.#last = now;
    this.#callback(this.snapshot());
  }
}
