/**
 * The bulk text gate's fast path: `bulk-scan.wat` (compiled into
 * `bulk-scan-wasm.ts`) checks bulk text 16 bytes at a time with
 * WebAssembly SIMD, where the gate's own byte loop takes 4 (about 4 times
 * faster on mixed rows: 175 MB in ~80 ms instead of ~300 ms, the largest
 * share of a restore's work in this process after md5).
 *
 * It counts TABs and rows and passes the escapes loaders read as written,
 * and stops at anything else (a field too many or too few, an escape to
 * rewrite or refuse, `\N` that is not a whole field, a backslash near the
 * end of the bytes), which the gate's byte loop then handles as before:
 * errors and rewrites come from one place only.
 *
 * One instance serves every gate of this thread: a scan is synchronous and
 * leaves nothing behind but its result. Where WebAssembly SIMD is missing
 * (a runtime built without it), `bulkScanner()` is undefined and the gate
 * keeps to its byte loop.
 *
 * @module
 */
import { BULK_SCAN_WASM } from './bulk-scan-wasm.js';

/** Where the text is copied in the module's memory (the escape tables lie below). */
const BASE = 1024;
/** Most bytes copied in at a time (the memory is 18 pages: BASE + 1 MiB fits). */
const WINDOW = 1 << 20;
/** Offsets of the escape tables of each dialect in the module's memory. */
const TABLE = { mysql: 0, postgres: 256 } as const;

/** What the gate's byte loop keeps, in and out of a scan (positions are indexes into the buffer scanned). */
export interface ScanState {
  /** TABs seen in the current row. */
  tabs: number;
  /** Complete rows seen. */
  rows: number;
  /** Where the current field starts (the byte loop's `fieldStart`; anything before the scan's start means "not here"). */
  fieldStart: number;
  /** Where the current row starts. */
  rowStart: number;
}

/** A mutable i32 global of the module. */
interface WasmGlobal {
  value: number;
}

interface Exports {
  memory: { buffer: ArrayBuffer };
  scan(i: number, end: number, columns: number, table: number): number;
  tabs: WasmGlobal;
  rows: WasmGlobal;
  fieldStart: WasmGlobal;
  rowStart: WasmGlobal;
}

/** The part of the WebAssembly API used here (the TypeScript libraries of this package do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

/** The escapes each dialect's loader reads as written (1), and the NULL marker (2): the same as `bulk-gate.ts` passes on untouched. */
const PASSED: Record<keyof typeof TABLE, string> = { mysql: '\\tnr0bZ', postgres: '\\tnrbfv' };

/** A scanner over one chunk of bulk text, bound to a dialect and a row width. */
export interface BulkScanner {
  /**
   * Scans `buf` from `i` to `n` (exclusive) and returns the position of
   * the first byte the caller must handle itself, or `n`; `state` is
   * updated as the byte loop would have updated it up to there.
   * `window` remembers what is already in the module's memory for this
   * buffer: pass the same object for every call on one buffer within one
   * synchronous pass, and a fresh one (`{}`) otherwise.
   */
  scan(buf: Buffer, i: number, n: number, columns: number, dialect: keyof typeof TABLE, state: ScanState, window: ScanWindow): number;
}

/** The part of a buffer in the module's memory (see {@link BulkScanner.scan}). */
export interface ScanWindow {
  buf?: Buffer;
  start?: number;
  end?: number;
}

function load(): BulkScanner | undefined {
  let ex: Exports;
  try {
    const bytes = Buffer.from(BULK_SCAN_WASM, 'base64');
    const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (wasm === undefined || !wasm.validate(bytes)) return undefined;
    ex = new wasm.Instance(new wasm.Module(bytes)).exports as Exports;
  } catch {
    return undefined;
  }
  const mem = new Uint8Array(ex.memory.buffer);
  for (const [dialect, at] of Object.entries(TABLE) as [keyof typeof TABLE, number][]) {
    for (const c of PASSED[dialect]) mem[at + c.charCodeAt(0)] = 1;
    mem[at + 'N'.charCodeAt(0)] = 2;
  }
  return {
    scan(buf, i, n, columns, dialect, state, window) {
      while (i < n) {
        if (window.buf !== buf || window.start === undefined || window.end === undefined || i < window.start || i >= window.end) {
          const end = Math.min(n, i + WINDOW);
          mem.set(buf.subarray(i, end), BASE);
          window.buf = buf;
          window.start = i;
          window.end = end;
        }
        const w0 = window.start;
        const w1 = window.end;
        ex.tabs.value = state.tabs;
        ex.rows.value = 0;
        ex.fieldStart.value = state.fieldStart >= w0 ? BASE + state.fieldStart - w0 : 0;
        ex.rowStart.value = 0;
        const stop = w0 + ex.scan(BASE + i - w0, BASE + w1 - w0, columns, TABLE[dialect]) - BASE;
        state.tabs = ex.tabs.value;
        state.rows += ex.rows.value;
        const fs = ex.fieldStart.value;
        if (fs >= BASE) state.fieldStart = w0 + fs - BASE;
        const rs = ex.rowStart.value;
        if (rs >= BASE) state.rowStart = w0 + rs - BASE;
        if (stop < w1) return stop;
        i = w1;
      }
      return n;
    },
  };
}

let scanner: BulkScanner | null | undefined;

/** The scanner of this thread, or undefined where WebAssembly SIMD is not available. */
export function bulkScanner(): BulkScanner | undefined {
  if (scanner === undefined) scanner = load() ?? null;
  return scanner ?? undefined;
}
