/**
 * The bulk text row format every {@link TableSource} speaks: the common
 * ground of MySQL `LOAD DATA` / `SELECT ... INTO OUTFILE` (default options)
 * and PostgreSQL `COPY ... (FORMAT text)`.
 *
 * - One row per line, each line terminated by LF (0x0A), also the last.
 * - Fields separated by TAB (0x09), in the table's column order.
 * - A field that is exactly `\N` is SQL NULL; an empty field is the empty
 *   string. `\N` anywhere else is malformed.
 * - Inside a field, these bytes are written as two-byte escapes:
 *   backslash `\\`, TAB `\t`, LF `\n`, CR `\r`, NUL `\0`. Every other
 *   byte (UTF-8 text, raw binary) is written as is. Readers also accept
 *   `\b` (0x08), `\f` (0x0C), `\v` (0x0B) and `\Z` (0x1A), which MySQL and
 *   PostgreSQL may write; any other escape is malformed.
 *
 * The encoding is injective (two different field lists never give the same
 * bytes), so comparing encoded rows compares values. How a value of each
 * SQL type becomes the text of a field is decided by each engine and
 * documented in `table-source.ts`.
 *
 * Why strict: restores read archives that were digested when written; a
 * stream that ends in the middle of a row, or holds an escape we never
 * write, is damage, and loading it silently would hide that.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer';
import { StowageError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';

/** One field to encode: text (UTF-8), raw bytes, or `null` for SQL NULL. */
export type BulkField = string | Uint8Array | null;

/** A decoded row: each field's bytes, or `null` for SQL NULL. */
export type BulkRow = (Buffer | null)[];

/** The text of a NULL field. */
export const BULK_NULL = '\\N';

const TAB = 0x09;
const LF = 0x0a;
const BACKSLASH = 0x5c;

const NEEDS_ESCAPE = /[\\\t\n\r\0]/;
const ESCAPE_ALL = /[\\\t\n\r\0]/g;
const TEXT_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' };
const escapeChar = (c: string): string => TEXT_ESCAPES[c]!;

/** Escape byte (after the backslash) → decoded byte. */
const UNESCAPE = new Int16Array(256).fill(-1);
for (const [c, v] of [
  ['\\', 0x5c],
  ['t', 0x09],
  ['n', 0x0a],
  ['r', 0x0d],
  ['0', 0x00],
  ['b', 0x08],
  ['f', 0x0c],
  ['v', 0x0b],
  ['Z', 0x1a],
] as const) {
  UNESCAPE[c.charCodeAt(0)] = v;
}

/** Byte → its escape letter, for the bytes the writer escapes. */
const BYTE_ESCAPES = new Int16Array(256).fill(-1);
BYTE_ESCAPES[0x5c] = 0x5c;
BYTE_ESCAPES[0x09] = 0x74; // t
BYTE_ESCAPES[0x0a] = 0x6e; // n
BYTE_ESCAPES[0x0d] = 0x72; // r
BYTE_ESCAPES[0x00] = 0x30; // 0

/**
 * Escapes one text field (not NULL) for the bulk text format.
 *
 * @param s - the field's text
 * @returns the escaped text (the same string when nothing needs escaping)
 */
export function escapeBulkText(s: string): string {
  return NEEDS_ESCAPE.test(s) ? s.replace(ESCAPE_ALL, escapeChar) : s;
}

/**
 * Escapes one binary field (not NULL) for the bulk text format: bytes are
 * written as they are, except the five escaped ones.
 *
 * @param b - the field's bytes
 * @returns the escaped bytes (the same bytes when nothing needs escaping)
 */
export function escapeBulkBytes(b: Uint8Array): Buffer {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let extra = 0;
  for (let i = 0; i < buf.length; i++) if (BYTE_ESCAPES[buf[i]!]! >= 0) extra++;
  if (extra === 0) return buf;
  const out = Buffer.allocUnsafe(buf.length + extra);
  let o = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]!;
    const e = BYTE_ESCAPES[c]!;
    if (e >= 0) {
      out[o++] = BACKSLASH;
      out[o++] = e;
    } else {
      out[o++] = c;
    }
  }
  return out;
}

/**
 * Encodes one row: escaped fields joined by TAB, terminated by LF.
 *
 * Convenient rather than fast: a hot loop should build its chunk from
 * {@link escapeBulkText} / {@link escapeBulkBytes} itself.
 *
 * @param fields - the row's fields in column order
 */
export function encodeBulkRow(fields: readonly BulkField[]): Buffer {
  const parts: Buffer[] = [];
  fields.forEach((f, i) => {
    if (i > 0) parts.push(Buffer.from('\t'));
    if (f === null) parts.push(Buffer.from(BULK_NULL));
    else if (typeof f === 'string') parts.push(Buffer.from(escapeBulkText(f), 'utf8'));
    else parts.push(escapeBulkBytes(f));
  });
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

/**
 * Builds the error for malformed bulk text (code EDB).
 *
 * @param row - 1-based row number
 * @param reason - what is wrong
 */
export function malformedBulkText(row: number, reason: string): StowageError {
  return new StowageError('EDB', `Malformed bulk text at row ${row}: ${reason}.`, { details: { row, reason } });
}

/**
 * The EDB of bulk text that stops in the middle of a row (no final LF).
 *
 * @param row - 1-based number of the unfinished row
 */
export function truncatedBulkText(row: number): StowageError {
  return malformedBulkText(row, 'the input ends in the middle of a row (no final LF): truncated?');
}

/** Default longest row {@link LineSplitter} and the range digest take: 1 GiB. */
export const MAX_ROW_BYTES = 1 << 30;

/** The EDB of a row longer than `max` bytes. */
export function rowTooLong(row: number, max: number): StowageError {
  return malformedBulkText(row, `a row is longer than ${max} bytes`);
}

/**
 * Decodes one field as found between TABs (without them): `\N` becomes
 * `null`, escapes are resolved.
 *
 * @param raw - the field's bytes on the wire
 * @param row - 1-based row number, for error messages
 * @returns the field's bytes (a view into `raw` when it holds no escape), or null
 */
export function decodeBulkField(raw: Buffer, row = 0): Buffer | null {
  const first = raw.indexOf(BACKSLASH);
  if (first < 0) return raw;
  if (raw.length === 2 && first === 0 && raw[1] === 0x4e) return null;
  const out = Buffer.allocUnsafe(raw.length);
  raw.copy(out, 0, 0, first);
  let o = first;
  for (let i = first; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== BACKSLASH) {
      out[o++] = c;
      continue;
    }
    if (i + 1 >= raw.length) throw malformedBulkText(row, 'a field ends with a lone backslash');
    const e = raw[++i]!;
    const v = UNESCAPE[e]!;
    if (v < 0) {
      const what = e === 0x4e ? '\\N inside a longer field' : `unknown escape \\${String.fromCharCode(e)}`;
      throw malformedBulkText(row, what);
    }
    out[o++] = v;
  }
  return out.subarray(0, o);
}

const TEXT_UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r', '0': '\0', b: '\b', f: '\f', v: '\v', Z: '\x1a' };

/**
 * Decodes one field already read as text (UTF-8): the string form of
 * {@link decodeBulkField}, with the same rules and errors.
 *
 * @param raw - the field's text on the wire
 * @param row - 1-based row number, for error messages
 */
export function decodeBulkTextField(raw: string, row = 0): string | null {
  let i = raw.indexOf('\\');
  if (i < 0) return raw;
  if (raw === BULK_NULL) return null;
  let out = '';
  let start = 0;
  while (i >= 0) {
    const c = raw[i + 1];
    const v = c === undefined ? undefined : TEXT_UNESCAPES[c];
    if (v === undefined) {
      if (c === undefined) throw malformedBulkText(row, 'a field ends with a lone backslash');
      throw malformedBulkText(row, c === 'N' ? '\\N inside a longer field' : `unknown escape \\${c}`);
    }
    out += raw.slice(start, i) + v;
    start = i + 2;
    i = raw.indexOf('\\', start);
  }
  return out + raw.slice(start);
}

/** Options of {@link LineSplitter}. */
export interface LineSplitterOptions {
  /** Longest row accepted, in bytes (default 1 GiB); a longer one is malformed. */
  maxRowBytes?: number;
}

/**
 * Cuts a byte stream into LF-terminated lines. Each line handed to the
 * callback includes its LF and stays valid after the callback returns (it
 * is a view into a chunk the caller gave, or a fresh copy).
 */
export class LineSplitter {
  /** Complete lines seen so far. */
  lines = 0;
  /** Bytes seen so far. */
  bytes = 0;
  readonly #maxRowBytes: number;
  #parts: Buffer[] = [];
  #partBytes = 0;

  /** @param options - the row size cap */
  constructor(options: LineSplitterOptions = {}) {
    this.#maxRowBytes = options.maxRowBytes ?? MAX_ROW_BYTES;
  }

  /**
   * Feeds a chunk; calls `onLine` for each line it completes.
   *
   * @param chunk - the next bytes
   * @param onLine - called with each complete line (LF included)
   */
  push(chunk: Uint8Array, onLine: (line: Buffer) => void): void {
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.bytes += buf.length;
    let start = 0;
    let nl = buf.indexOf(LF);
    if (nl >= 0 && this.#parts.length > 0) {
      this.#parts.push(buf.subarray(0, nl + 1));
      const line = Buffer.concat(this.#parts, this.#partBytes + nl + 1);
      this.#parts = [];
      this.#partBytes = 0;
      this.#check(line.length);
      this.lines++;
      onLine(line);
      start = nl + 1;
      nl = buf.indexOf(LF, start);
    }
    while (nl >= 0) {
      this.#check(nl + 1 - start);
      this.lines++;
      onLine(buf.subarray(start, nl + 1));
      start = nl + 1;
      nl = buf.indexOf(LF, start);
    }
    if (start < buf.length) {
      this.#parts.push(buf.subarray(start));
      this.#partBytes += buf.length - start;
      this.#check(this.#partBytes);
    }
  }

  /** Declares the end of input; throws EDB if it stopped in the middle of a row. */
  end(): void {
    if (this.#partBytes > 0) throw truncatedBulkText(this.lines + 1);
  }

  #check(n: number): void {
    if (n > this.#maxRowBytes) throw rowTooLong(this.lines + 1, this.#maxRowBytes);
  }
}

/**
 * Splits one line (LF included) into its raw, still escaped fields.
 *
 * @param line - a line as given by {@link LineSplitter}
 */
export function splitBulkLine(line: Buffer): Buffer[] {
  const end = line.length - 1;
  const fields: Buffer[] = [];
  let start = 0;
  let tab = line.indexOf(TAB, start);
  while (tab >= 0 && tab < end) {
    fields.push(line.subarray(start, tab));
    start = tab + 1;
    tab = line.indexOf(TAB, start);
  }
  fields.push(line.subarray(start, end));
  return fields;
}

/** Options of {@link BulkTextParser}. */
export interface BulkTextParserOptions extends LineSplitterOptions {
  /** Number of fields every row must have; a row with another count is malformed. */
  columns?: number;
  /**
   * {@link BulkTextParser.writeStrings} refuses (EDB naming the row and the
   * field) a row that is not valid UTF-8, instead of decoding the bad bytes
   * as U+FFFD (default false). No effect on {@link BulkTextParser.write},
   * which hands over bytes as they are.
   */
  strictUtf8?: boolean;
}

/**
 * Incremental, synchronous decoder of the bulk text format: feed bytes with
 * {@link BulkTextParser.write}, get decoded rows through a callback, call
 * {@link BulkTextParser.end} at the end (it throws if the input stopped in
 * the middle of a row). Memory holds at most one partial row.
 *
 * @example
 * ```ts
 * const p = new BulkTextParser({ columns: 3 });
 * for await (const chunk of stream) p.write(chunk, (fields) => insert(fields));
 * p.end();
 * ```
 */
export class BulkTextParser {
  readonly #splitter: LineSplitter;
  readonly #columns: number | undefined;
  readonly #strictUtf8: boolean;

  /** @param options - expected column count, row size cap, UTF-8 strictness */
  constructor(options: BulkTextParserOptions = {}) {
    this.#splitter = new LineSplitter(options);
    this.#columns = options.columns;
    this.#strictUtf8 = options.strictUtf8 === true;
  }

  /** Rows decoded so far. */
  get rows(): number {
    return this.#splitter.lines;
  }

  /** Bytes consumed so far. */
  get bytes(): number {
    return this.#splitter.bytes;
  }

  /**
   * Feeds a chunk; calls `onRow` for each row it completes.
   *
   * @param chunk - the next bytes
   * @param onRow - called with the decoded fields and the 1-based row number
   */
  write(chunk: Uint8Array, onRow: (fields: BulkRow, row: number) => void): void {
    this.#splitter.push(chunk, (line) => {
      const row = this.#splitter.lines;
      const raw = splitBulkLine(line);
      if (this.#columns !== undefined && raw.length !== this.#columns) {
        throw malformedBulkText(row, `expected ${this.#columns} fields, found ${raw.length}`);
      }
      const fields: BulkRow = new Array<Buffer | null>(raw.length);
      for (let i = 0; i < raw.length; i++) fields[i] = decodeBulkField(raw[i]!, row);
      onRow(fields, row);
    });
  }

  /**
   * Like {@link BulkTextParser.write}, for text-only data: each row is
   * decoded as UTF-8 and its fields are handed over as strings, which is
   * cheaper than a Buffer per field. Bytes that are not valid UTF-8 become
   * U+FFFD, unless the parser was made with `strictUtf8`: then such a row
   * is EDB (malformed bulk text naming the row and field).
   *
   * @param chunk - the next bytes
   * @param onRow - called with the decoded fields and the 1-based row number
   */
  writeStrings(chunk: Uint8Array, onRow: (fields: (string | null)[], row: number) => void): void {
    this.#splitter.push(chunk, (line) => {
      const row = this.#splitter.lines;
      const text = line.toString('utf8', 0, line.length - 1);
      // The decoder writes U+FFFD for bytes it cannot decode; only a row holding one (rare) is checked byte by byte (natively).
      if (this.#strictUtf8 && text.includes('\uFFFD') && !isUtf8(line)) throw notUtf8Row(line, row);
      const raw = text.split('\t');
      if (this.#columns !== undefined && raw.length !== this.#columns) {
        throw malformedBulkText(row, `expected ${this.#columns} fields, found ${raw.length}`);
      }
      const fields: (string | null)[] = new Array<string | null>(raw.length);
      for (let i = 0; i < raw.length; i++) fields[i] = decodeBulkTextField(raw[i]!, row);
      onRow(fields, row);
    });
  }

  /** Declares the end of input; throws EDB if it stopped in the middle of a row. */
  end(): void {
    this.#splitter.end();
  }
}

/**
 * The EDB of a row that is not valid UTF-8 (for a strict
 * {@link BulkTextParser.writeStrings}), naming the first bad field.
 *
 * @param line - the row's bytes, LF included
 * @param row - 1-based row number
 */
function notUtf8Row(line: Buffer, row: number): StowageError {
  const fields = splitBulkLine(line);
  const i = Math.max(0, fields.findIndex((f) => !isUtf8(f)));
  const bytes = fields[i]!;
  const shown = `${bytes.subarray(0, 24).toString('hex')}${bytes.length > 24 ? '…' : ''}`;
  return malformedBulkText(
    row,
    `field ${i + 1} is not valid UTF-8 (bytes ${shown}); text is carried as UTF-8 and decoding these bytes would change them. Convert the text to UTF-8, or write binary data in the target's binary form (\\x and hex for SQLite)`,
  );
}

/** Options of {@link readBulkRows}. */
export interface ReadBulkRowsOptions extends BulkTextParserOptions {
  /** Stops reading (and rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Decodes a bulk text stream into rows, as an async iterable.
 *
 * @param input - bytes (a Readable, or any async iterable of chunks)
 * @param options - expected column count, row size cap, signal
 */
export async function* readBulkRows(input: AsyncIterable<Uint8Array | string>, options: ReadBulkRowsOptions = {}): AsyncGenerator<BulkRow> {
  const { signal, ...parserOptions } = options;
  throwIfAborted(signal);
  const parser = new BulkTextParser(parserOptions);
  let batch: BulkRow[] = [];
  for await (const chunk of input) {
    throwIfAborted(signal);
    parser.write(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk, (f) => batch.push(f));
    const rows = batch;
    batch = [];
    yield* rows;
  }
  parser.end();
}
