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
import type { BulkDialect } from './bulk-gate.js';

/** Where the text is copied in the module's memory (the escape tables lie below). */
const BASE = 1024;
/** Most bytes copied in at a time (the memory is 18 pages: BASE + 1 MiB fits). */
const WINDOW = 1 << 20;
/** Offsets of the escape tables of each dialect in the module's memory. */
const TABLE: Readonly<Record<BulkDialect, number>> = { mysql: 0, postgres: 256 };

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

/** The fast path of this thread (see {@link bulkScanner}). */
export interface BulkScanner {
  /**
   * Scans `buf` from `i` to `n` (exclusive) and returns the position of
   * the first byte the caller must handle itself, or `n`; `state` is
   * updated as the byte loop would have updated it up to there.
   * `window` remembers what is already in the module's memory for this
   * buffer: pass the same object for every call on one buffer within one
   * synchronous pass, and a fresh one (`{}`) otherwise.
   */
  scan(buf: Buffer, i: number, n: number, columns: number, dialect: BulkDialect, state: ScanState, window: ScanWindow): number;
}

/** The part of a buffer in the module's memory (see {@link BulkScanner.scan}). */
export interface ScanWindow {
  buf?: Buffer;
  start?: number;
  end?: number;
}

/**
 * Per dialect, what the gate does with each escape letter: 0 passes it on
 * as written, anything else is the gate's to handle (see `bulk-gate.ts`).
 */
export type EscapeTables = Readonly<Record<BulkDialect, Int16Array>>;

function load(escapes: EscapeTables): BulkScanner | undefined {
  let ex: Exports;
  try {
    const bytes = Buffer.from(BULK_SCAN_WASM, 'base64');
    const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    if (wasm === undefined || !wasm.validate(bytes)) return undefined;
    ex = new wasm.Instance(new wasm.Module(bytes)).exports as Exports;
  } catch {
    return undefined;
  }
  // The module's tables: 1 for an escape passed on as written, 2 for the NULL marker, 0 for the gate.
  const mem = new Uint8Array(ex.memory.buffer);
  for (const [dialect, at] of Object.entries(TABLE) as [BulkDialect, number][]) {
    escapes[dialect].forEach((what, letter) => (mem[at + letter] = what !== 0 ? 0 : letter === 0x4e ? 2 : 1));
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

/**
 * The scanner of this thread, or undefined where WebAssembly SIMD is not
 * available. The first call loads it with the gate's escape tables (the
 * gate passes the same ones every time).
 *
 * @param escapes - per dialect, the gate's escape table
 */
export function bulkScanner(escapes: EscapeTables): BulkScanner | undefined {
  if (scanner === undefined) scanner = load(escapes) ?? null;
  return scanner ?? undefined;
}
