/**
 * The gate every bulk text stream passes on its way into a server's bulk
 * loader (MySQL `LOAD DATA`, PostgreSQL `COPY FROM`): it checks the bytes
 * against the bulk text format (`bulk-text.ts`), counts rows, and rewrites
 * the few escapes the engine would read differently from the format.
 *
 * Why: both loaders are lenient where stowage must be strict. MySQL's
 * `LOAD DATA LOCAL` skips bad rows with a warning, reads `\q` as `q` and
 * `\f` as `f`; PostgreSQL's `COPY` stops at a `\.` line, reads `\Z` as `Z`
 * and `\012` as an octal escape. A damaged archive must fail the load (EDB)
 * instead of loading something else, and the row count is what the load
 * compares with what the server says it stored.
 *
 * It is a pass-through for well-formed input: a chunk leaves as the same
 * `Buffer` unless it holds an escape to rewrite (rare: only text written
 * by another engine) or is larger than `maxChunkBytes`. The check is one
 * pass over each chunk: a WebAssembly SIMD scan (`bulk-scan.ts`) takes the
 * ordinary bytes, TABs, LFs and the escapes passed on as written, and the
 * byte loop here handles every byte it stops at (errors and rewrites), or
 * the whole chunk where the runtime has no WebAssembly SIMD.
 *
 * @module
 */
import { Transform, type TransformCallback } from 'node:stream';
import { StowageError } from '../errors.js';
import { malformedBulkText, truncatedBulkText } from './bulk-text.js';
import { bulkScanner, type BulkScanner, type ScanState, type ScanWindow } from './bulk-scan.js';

/** Which loader the gate feeds; it decides which escapes are rewritten. */
export type BulkDialect = 'mysql' | 'postgres';

/** Options of {@link BulkTextGate}. */
export interface BulkTextGateOptions {
  /** Fields every row must have. */
  columns: number;
  /** The loader fed. */
  dialect: BulkDialect;
  /** Largest chunk passed on; larger ones are cut (default 1 MiB). */
  maxChunkBytes?: number;
  /** 0-based fields whose empty values (zero bytes, not `\N`) are counted in {@link BulkTextGate.emptyCount}. */
  countEmpty?: readonly number[];
  /** Use the WebAssembly fast path where the runtime has it (default true; false: the byte loop alone, for tests that compare the two). */
  fastPath?: boolean;
}

const TAB = 0x09;
const LF = 0x0a;
const BACKSLASH = 0x5c;
const LETTER_N = 0x4e;

/** Byte classes: 0 ordinary, 1 TAB, 2 LF, 3 backslash. */
const CLASS = new Uint8Array(256);
CLASS[TAB] = 1;
CLASS[LF] = 2;
CLASS[BACKSLASH] = 3;

/**
 * What each escape letter does, per dialect: -1 malformed, 0 passed on as
 * is, 1..255 rewritten to that raw byte, 256 NUL that the engine cannot store.
 */
function escapeTable(dialect: BulkDialect): Int16Array {
  const t = new Int16Array(256).fill(-1);
  for (const c of '\\tnr0bfvZN') t[c.charCodeAt(0)] = 0;
  if (dialect === 'mysql') {
    // LOAD DATA reads \f as "f" and \v as "v".
    t['f'.charCodeAt(0)] = 0x0c;
    t['v'.charCodeAt(0)] = 0x0b;
  } else {
    // COPY reads \Z as "Z", and \0 as the start of an octal escape.
    t['Z'.charCodeAt(0)] = 0x1a;
    t['0'.charCodeAt(0)] = 256;
  }
  return t;
}

/** Per dialect, what the gate does with each escape letter (see {@link escapeTable}); the fast path takes the letters marked 0. */
export const BULK_ESCAPES: Readonly<Record<BulkDialect, Int16Array>> = { mysql: escapeTable('mysql'), postgres: escapeTable('postgres') };
const BACKSLASH_BUF = Buffer.from([BACKSLASH]);

/**
 * A Transform that checks bulk text and passes it on (see the module
 * documentation). It fails with EDB (`malformedBulkText`) on a row with the
 * wrong number of fields, an escape the format does not have, `\N` inside a
 * longer field, or input that ends in the middle of a row.
 */
export class BulkTextGate extends Transform {
  /** Complete rows passed so far. */
  rows = 0;
  /** Bytes of input consumed so far. */
  bytes = 0;
  /** Empty values seen in the fields of `countEmpty`. */
  emptyCount = 0;
  /** Per field, 1 if its empty values are counted; undefined when none are. */
  readonly #emptyMask: Uint8Array | undefined;
  readonly #columns: number;
  readonly #escapes: Int16Array;
  readonly #dialect: BulkDialect;
  readonly #maxChunk: number;
  /** TABs seen in the current row. */
  #tabs = 0;
  /** Bytes of the current row seen so far (0: at a row start). */
  #rowBytes = 0;
  /** The last byte processed ended a field (or nothing was processed yet). */
  #atFieldStart = true;
  /** The previous chunk ended with an unfinished escape (its backslash was held back). */
  #carry = false;
  /** The previous chunk ended right after a `\N` field: the next byte must end the field. */
  #afterNull = false;
  /** The fast path, unless this runtime lacks WebAssembly SIMD. */
  readonly #fast: BulkScanner | undefined;
  /** The state handed to and from the fast path. */
  readonly #state: ScanState = { tabs: 0, rows: 0, fieldStart: 0, rowStart: 0 };

  /** @param options - column count and dialect */
  constructor(options: BulkTextGateOptions) {
    super({ highWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
    this.#columns = options.columns;
    this.#dialect = options.dialect;
    this.#escapes = BULK_ESCAPES[options.dialect];
    this.#maxChunk = options.maxChunkBytes ?? 1 << 20;
    this.#fast = options.fastPath === false ? undefined : bulkScanner(BULK_ESCAPES);
    if (options.countEmpty !== undefined && options.countEmpty.length > 0) {
      this.#emptyMask = new Uint8Array(options.columns);
      for (const f of options.countEmpty) this.#emptyMask[f] = 1;
    }
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.isBuffer(chunk) ? chunk : Buffer.from((chunk as Uint8Array).buffer, (chunk as Uint8Array).byteOffset, (chunk as Uint8Array).byteLength);
    this.bytes += buf.length;
    if (buf.length === 0) {
      callback();
      return;
    }
    if (this.#carry) {
      buf = Buffer.concat([BACKSLASH_BUF, buf]);
      this.#carry = false;
    }
    let out: Buffer;
    try {
      out = this.#scan(buf);
    } catch (err) {
      callback(err as Error);
      return;
    }
    for (let o = 0; o < out.length; o += this.#maxChunk) this.push(o === 0 && out.length <= this.#maxChunk ? out : out.subarray(o, o + this.#maxChunk));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#rowBytes > 0 || this.#carry) {
      callback(truncatedBulkText(this.rows + 1));
      return;
    }
    callback();
  }

  /** Checks one buffer; returns what to pass on (the same buffer unless an escape was rewritten or held back). */
  #scan(buf: Buffer): Buffer {
    const n = buf.length;
    const esc = this.#escapes;
    let parts: Buffer[] | undefined;
    let copied = 0;
    let i = 0;
    if (this.#afterNull) {
      this.#afterNull = false;
      if (CLASS[buf[0]!] !== 1 && CLASS[buf[0]!] !== 2) throw malformedBulkText(this.rows + 1, '\\N inside a longer field');
    }
    let rowStart = this.#rowBytes > 0 ? -this.#rowBytes : 0;
    let fieldStart = this.#atFieldStart ? 0 : -1;
    const columns = this.#columns;
    // The whole 32-bit words of the buffer (from its first 4-aligned byte), for
    // skipOrdinary; made only when the byte loop meets ordinary bytes (the fast
    // path, where there is one, stops only at special ones).
    const first = (4 - (buf.byteOffset & 3)) & 3;
    let words: Int32Array | undefined;
    let tabs = this.#tabs;
    let rows = this.rows;
    const empties = this.#emptyMask;
    // The fast path (WebAssembly SIMD) takes the bytes it can; the loop below
    // handles each byte it stops at, then hands the rest back to it.
    const fast = empties === undefined ? this.#fast : undefined;
    const st = this.#state;
    const win: ScanWindow = {};
    try {
      while (i < n) {
        if (fast !== undefined) {
          st.tabs = tabs;
          st.rows = rows;
          st.fieldStart = fieldStart;
          st.rowStart = rowStart;
          i = fast.scan(buf, i, n, columns, this.#dialect, st, win);
          tabs = st.tabs;
          rows = st.rows;
          fieldStart = st.fieldStart;
          rowStart = st.rowStart;
          if (i >= n) break;
        }
        let cls = CLASS[buf[i]!]!;
        if (cls === 0) {
          // Ordinary bytes: skipped four at a time.
          words ??= new Int32Array(buf.buffer, buf.byteOffset + first, Math.max(0, (n - first) >> 2));
          i = skipOrdinary(buf, i + 1, words, first);
          if (i >= n) break;
          cls = CLASS[buf[i]!]!;
        }
        if (cls === 1) {
          if (empties !== undefined && fieldStart === i && empties[tabs] === 1) this.emptyCount++;
          if (++tabs >= columns) throw this.#fieldCount(rows, tabs + 1);
          fieldStart = ++i;
          continue;
        }
        if (cls === 2) {
          if (tabs + 1 !== columns) throw this.#fieldCount(rows, tabs + 1);
          if (empties !== undefined && fieldStart === i && empties[tabs] === 1) this.emptyCount++;
          rows++;
          tabs = 0;
          fieldStart = rowStart = ++i;
          continue;
        }
        // A backslash: an escape.
        if (i + 1 >= n) {
          // Unfinished: hold the backslash back until the next chunk.
          this.#carry = true;
          parts ??= [];
          parts.push(buf.subarray(copied, i));
          copied = n;
          break;
        }
        const e = buf[i + 1]!;
        const what = esc[e]!;
        if (what === 0) {
          if (e === LETTER_N) {
            const next = i + 2 < n ? CLASS[buf[i + 2]!]! : -1;
            if (fieldStart !== i || next === 0 || next === 3) throw malformedBulkText(rows + 1, '\\N inside a longer field');
            if (next === -1) this.#afterNull = true;
          }
        } else if (what < 0) {
          throw malformedBulkText(rows + 1, `unknown escape \\${printable(e)}`);
        } else if (what === 256) {
          throw new StowageError('EDB', `Row ${rows + 1} holds a NUL character (\\0), which PostgreSQL text cannot store.`, { details: { row: rows + 1, reason: 'NUL in text' } });
        } else {
          parts ??= [];
          parts.push(buf.subarray(copied, i), Buffer.of(what));
          copied = i + 2;
        }
        i += 2;
      }
    } finally {
      this.#tabs = tabs;
      this.rows = rows;
    }
    this.#rowBytes = n - rowStart;
    this.#atFieldStart = fieldStart === n;
    if (this.#carry) {
      // The held-back backslash opens a field iff the field started at it.
      this.#atFieldStart = fieldStart === n - 1;
      this.#rowBytes = n - 1 - rowStart;
    }
    if (parts === undefined) return buf;
    if (copied < n) parts.push(buf.subarray(copied));
    return Buffer.concat(parts);
  }

  #fieldCount(rows: number, found: number): StowageError {
    return malformedBulkText(rows + 1, `expected ${this.#columns} fields, found ${found}${found > this.#columns ? ' or more' : ''} (loading into ${this.#dialect === 'mysql' ? 'MySQL' : 'PostgreSQL'})`);
  }
}

/**
 * The index of the first byte at or after `i` that is a TAB, LF or
 * backslash (`buf.length` if none). Aligned 32-bit words are tested whole
 * (SWAR: a word holds a byte below 0x0b, or a backslash, iff the test is
 * non-zero; a false alarm, a control byte below TAB, costs a look at its
 * four bytes), which is about twice as fast as a byte loop on bulk text.
 *
 * @param buf - the bytes
 * @param i - where to start
 * @param words - `buf`'s whole words, from byte `first` on
 * @param first - the index in `buf` of the first byte of `words[0]`
 */
function skipOrdinary(buf: Buffer, i: number, words: Int32Array, first: number): number {
  const n = buf.length;
  // Bytes before the next word boundary, one at a time.
  while (i < n && ((i - first) & 3) !== 0) {
    if (CLASS[buf[i]!] !== 0) return i;
    i++;
  }
  if (i >= n) return n;
  const nw = words.length;
  for (let k = (i - first) >> 2; ; k++) {
    for (; k < nw; k++) {
      const w = words[k]!;
      const b = w ^ 0x5c5c5c5c;
      if ((((w - 0x0b0b0b0b) & ~w) | ((b - 0x01010101) & ~b)) & 0x80808080) break;
    }
    let j = first + k * 4;
    const end = k < nw ? j + 4 : n;
    for (; j < end; j++) if (CLASS[buf[j]!] !== 0) return j;
    if (k >= nw) return n;
  }
}

function printable(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `x${byte.toString(16).padStart(2, '0')}`;
}
