/**
 * Finding the occupied partitions of a key column without visiting the
 * empty ones: a walk that asks for the smallest key at or above the next
 * partition's first key, so the work grows with the number of occupied
 * partitions, never with the key span (keys 1 and 10^15 make two
 * partitions and two questions, not 10^11).
 *
 * A source that offers {@link KeySeeker.nextKey} (one indexed
 * `SELECT MIN(key) ... WHERE key >= ?`) is asked directly. Any other
 * {@link TableReader} is asked through its `rows()` stream over bounded
 * windows: first `[from, from + window - 1]` (one partition: in a dense
 * table the next key is there), then windows twice as wide each time up to
 * the table's largest key, so a gap of any width costs a few dozen empty
 * probes, and no probe asks an engine to sort an unbounded range. The first
 * row of a window is its smallest key; the stream is destroyed after it.
 * Either way the key column should be indexed (it is the primary key of
 * conditions tables), or each question scans the table.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { findColumn, type ColumnInfo, type DbOptions, type KeyBound, type KeyRange, type TableReader } from '../db/table-source.js';
import { throwIfAborted } from '../util/abort.js';
import { KEY_PROBES_MAX, type KeyProbes } from '../db/key-probes.js';

/**
 * An optional TableReader capability: the smallest key at or above a bound.
 * The Partitioner uses it when a source has it.
 */
export interface KeySeeker {
  /**
   * The smallest non-NULL key with `key >= from`, or `null` if there is none.
   *
   * @param table - the table
   * @param key - the integer key column
   * @param from - the bound
   * @param options - signal
   */
  nextKey(table: string, key: string, from: KeyBound, options?: DbOptions): Promise<bigint | null>;
}

function hasNextKey(r: TableReader): r is TableReader & KeySeeker {
  return typeof (r as Partial<KeySeeker>).nextKey === 'function';
}

const LF = 0x0a;
const TAB = 0x09;

/**
 * Parses the text of a key field (decimal integer) of a row.
 *
 * @param raw - the field's bytes
 * @param source - for the message
 * @param table - for the message
 */
export function parseKeyField(raw: Buffer, source: string, table: string): bigint {
  const s = raw.toString('latin1');
  if (!/^-?\d{1,20}$/.test(s)) {
    throw new StowageError('EBAD_CONFIG', `The key of table ${JSON.stringify(table)} in ${source} is not an integer: ${JSON.stringify(s.slice(0, 40))}.`, {
      details: { source, table, value: s.slice(0, 40) },
    });
  }
  return BigInt(s);
}

/**
 * The raw bytes of field `index` of a bulk text line (LF included or not).
 *
 * @param line - the line
 * @param index - 0-based field
 */
export function fieldOf(line: Buffer, index: number): Buffer {
  let start = 0;
  for (let i = 0; i < index; i++) {
    const tab = line.indexOf(TAB, start);
    if (tab < 0) return Buffer.alloc(0);
    start = tab + 1;
  }
  let end = line.indexOf(TAB, start);
  if (end < 0) end = line[line.length - 1] === LF ? line.length - 1 : line.length;
  return line.subarray(start, end);
}

/** What is known of a table's keys before any question: from {@link TableReader.keyRange} and its primary key. */
export interface KeyExtent {
  /** Smallest key. */
  readonly lo: bigint;
  /** Largest key. */
  readonly hi: bigint;
  /** Whether every integer in [lo, hi] is a key (a unique key with `hi - lo + 1` rows): then no question needs a query. */
  readonly dense: boolean;
}

/**
 * The extent of a table's key: whether it is dense is proven by the count
 * when the key is the table's whole primary key (so unique).
 *
 * @param range - from keyRange()
 * @param columns - from columns()
 * @param key - the key column's name as found by findColumn
 */
export function keyExtent(range: KeyRange, columns: readonly ColumnInfo[], key: string): KeyExtent | null {
  if (range.lo === null || range.hi === null) return null;
  return { lo: range.lo, hi: range.hi, dense: isUniqueKey(columns, key) && BigInt(range.count) === range.hi - range.lo + 1n };
}

/**
 * Whether `key` is the table's whole primary key, so no two rows share a value.
 *
 * @param columns - the table's columns
 * @param key - the key column's name as found by findColumn
 */
export function isUniqueKey(columns: readonly ColumnInfo[], key: string): boolean {
  const pk = columns.filter((c) => c.primaryKey > 0);
  return pk.length === 1 && pk[0]!.name === key;
}

/** Asks one table for its next occupied key; see the module documentation. */
export class KeyCursor {
  readonly #reader: TableReader;
  readonly #table: string;
  readonly #key: string;
  readonly #window: bigint;
  readonly #extent: KeyExtent | null;
  readonly #probes: KeyProbes | undefined;
  /** The answers of the last {@link KeyProbes.nextKeys} query, by bound. */
  #probed = new Map<bigint, bigint | null>();
  #keyIndex: number | undefined;

  /**
   * @param reader - the source or snapshot reader
   * @param table - the table
   * @param key - the key column
   * @param window - the first probe's width (the partition size)
   * @param extent - what is known of the keys (`null`: the table has none, every answer is `null`)
   * @param probes - the reader's {@link KeyProbes}, if it has them: each
   *   question then also asks for the next 63 ranges' first keys in the same
   *   query (`window` apart, none past the largest key), and a later
   *   question for one of them is answered from that
   */
  constructor(reader: TableReader, table: string, key: string, window: bigint, extent: KeyExtent | null, probes?: KeyProbes) {
    this.#reader = reader;
    this.#table = table;
    this.#key = key;
    this.#window = window > 0n ? window : 1n;
    this.#extent = extent;
    this.#probes = probes;
  }

  /**
   * The smallest key `>= from`, or `null`. Answered without a query when
   * `from` is at or below the smallest key, above the largest, or inside a
   * dense table.
   *
   * @param from - the bound
   * @param signal - cancels the question
   */
  async next(from: bigint, signal?: AbortSignal): Promise<bigint | null> {
    throwIfAborted(signal);
    const x = this.#extent;
    if (x === null || from > x.hi) return null;
    if (from <= x.lo) return x.lo;
    if (x.dense) return from;
    const max = x.hi;
    const r = this.#reader;
    if (this.#probes !== undefined) {
      if (this.#probed.has(from)) return this.#probed.get(from)!;
      const froms: bigint[] = [];
      for (let f = from; froms.length < KEY_PROBES_MAX && f <= max; f += this.#window) froms.push(f);
      const answers = await this.#probes.nextKeys(this.#table, this.#key, froms, signal === undefined ? {} : { signal });
      this.#probed = new Map(froms.map((f, i) => [f, answers[i] ?? null]));
      return answers[0] ?? null;
    }
    if (hasNextKey(r)) return r.nextKey(this.#table, this.#key, from, signal === undefined ? {} : { signal });
    this.#keyIndex ??= findColumn(r.name, this.#table, await r.columns(this.#table, { signal }), this.#key).index;
    let lo = from;
    let width = this.#window;
    for (;;) {
      const hi = lo + width - 1n >= max ? max : lo + width - 1n;
      const k = await this.#first(lo, hi, signal);
      if (k !== null || hi >= max) return k;
      lo = hi + 1n;
      width *= 2n;
    }
  }

  /** The first key of the rows in [lo, hi], or null. */
  async #first(lo: bigint, hi: bigint, signal: AbortSignal | undefined): Promise<bigint | null> {
    const r = this.#reader;
    const stream = await r.rows(this.#table, { key: this.#key, lo, hi, signal });
    try {
      const parts: Buffer[] = [];
      for await (const c of stream as AsyncIterable<Buffer>) {
        const nl = c.indexOf(LF);
        if (nl < 0) {
          parts.push(c);
          continue;
        }
        parts.push(c.subarray(0, nl));
        return parseKeyField(fieldOf(Buffer.concat(parts), this.#keyIndex!), r.name, this.#table);
      }
      return null;
    } finally {
      stream.destroy();
    }
  }
}
