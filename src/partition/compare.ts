/**
 * `Partitioner.compare`: are two copies of a table the same, and if not,
 * which keys differ?
 *
 * Both sides are cut on the same grid as the Partitioner's (the occupied
 * ranges of either side, found without visiting empty ones), and each
 * range's count and range digest are computed on both sides. A range whose
 * digests differ is bisected on its key values (digests of each half on
 * both sides) until a piece holds few rows; that piece is then read from
 * both sides in key order and compared key by key. Memory holds the rows
 * of one key value per side at a time; the work is one digest pass over
 * each table plus a few passes over the differing ranges.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { throwIfAborted } from '../util/abort.js';
import { checkInt, checkOptionKeys } from '../util/options.js';
import { LineSplitter } from '../db/bulk-text.js';
import type { RangeDigest } from '../db/range-digest.js';
import { checkIdentifier, findColumn, toKeyBound, toKeyBounds, type KeyBound, type TableReader } from '../db/table-source.js';
import { KeyCursor, fieldOf, parseKeyField } from './key-seek.js';
import { PartitionGrid } from './layout.js';

/** Options of {@link Partitioner.compare}. */
export interface CompareOptions {
  /** The integer key column (default `'SEQNO'`). */
  key?: string;
  /** Keys per compared range (default 10000), as for the Partitioner. */
  rowsPerPartition?: number | bigint;
  /** First key of range 0 (default 1). */
  base?: number | bigint;
  /** Compare only keys `>= lo`. */
  lo?: KeyBound;
  /** Compare only keys `<= hi`. */
  hi?: KeyBound;
  /** Stop listing differing keys after this many (default 100); the counts and ranges are still complete. */
  maxDifferences?: number;
  /** Cancels the comparison. */
  signal?: AbortSignal;
  /** Phase `compare`: bytes of bulk text digested on both sides, items = ranges compared. */
  onProgress?: ProgressCallback;
}

/** One range compared. */
export interface RangeComparison {
  /** Smallest key. */
  readonly lo: bigint;
  /** Largest key. */
  readonly hi: bigint;
  /** Count and digest on side a. */
  readonly a: RangeDigest;
  /** Count and digest on side b. */
  readonly b: RangeDigest;
  /** Whether they are equal. */
  readonly equal: boolean;
}

/**
 * How the rows of one key differ: present only on one side, or present on
 * both with different rows (different values or a different number of them).
 */
export type KeyDifferenceKind = 'only-in-a' | 'only-in-b' | 'different';

/** A key whose rows differ. */
export interface KeyDifference {
  /** The key value. */
  readonly key: bigint;
  /** How they differ. */
  readonly kind: KeyDifferenceKind;
  /** Rows with this key on side a. */
  readonly rowsA: number;
  /** Rows with this key on side b. */
  readonly rowsB: number;
}

/** What {@link Partitioner.compare} found. */
export interface CompareReport {
  /** The table. */
  readonly table: string;
  /** The key column. */
  readonly key: string;
  /** True when every range has the same count and digest on both sides, the NULL-key rows included in the counts, and the columns are the same. */
  readonly equal: boolean;
  /** Side a: the source's name, its rows (non-NULL key), rows with a NULL key, its columns. */
  readonly a: CompareSide;
  /** Side b, likewise. */
  readonly b: CompareSide;
  /** Whether both sides have the same column names in the same order. */
  readonly columnsEqual: boolean;
  /** Every occupied range (of either side), in key order. */
  readonly ranges: readonly RangeComparison[];
  /** The ranges that differ. */
  readonly differingRanges: readonly RangeComparison[];
  /** The keys whose rows differ, in key order, at most `maxDifferences`. */
  readonly differences: readonly KeyDifference[];
  /** Whether more differing keys exist than listed. */
  readonly truncated: boolean;
}

/** One side of a {@link CompareReport}. */
export interface CompareSide {
  /** The source's name. */
  readonly name: string;
  /** Rows whose key is not NULL. */
  readonly rows: number;
  /** Rows whose key is NULL (never in a range). */
  readonly nulls: number;
  /** Its column names. */
  readonly columns: readonly string[];
}

/** A piece of a differing range this small (rows on both sides) is compared key by key instead of being bisected further. */
const MERGE_ROWS = 4096;

interface KeyGroup {
  key: bigint;
  lines: Buffer[];
}

/** The rows of a stream, grouped by key value (consecutive lines with equal key). */
async function* keyGroups(stream: AsyncIterable<Buffer>, keyIndex: number, source: string, table: string): AsyncGenerator<KeyGroup> {
  const splitter = new LineSplitter();
  let cur: KeyGroup | undefined;
  const ready: KeyGroup[] = [];
  for await (const chunk of stream) {
    splitter.push(chunk, (line) => {
      const k = parseKeyField(fieldOf(line, keyIndex), source, table);
      if (cur !== undefined && cur.key === k) cur.lines.push(line);
      else {
        if (cur !== undefined) ready.push(cur);
        cur = { key: k, lines: [line] };
      }
    });
    yield* ready.splice(0);
  }
  splitter.end();
  if (cur !== undefined) yield cur;
}

function sameLines(a: Buffer[], b: Buffer[]): boolean {
  if (a.length !== b.length) return false;
  if (a.length > 1) {
    a.sort(Buffer.compare);
    b.sort(Buffer.compare);
  }
  return a.every((l, i) => l.equals(b[i]!));
}

const sameDigest = (a: RangeDigest, b: RangeDigest): boolean => a.count === b.count && a.digest === b.digest;

/**
 * See {@link Partitioner.compare}.
 *
 * @param a - one side
 * @param b - the other side
 * @param table - the table
 * @param options - see {@link CompareOptions}
 */
export async function compareTables(a: TableReader, b: TableReader, table: string, options: CompareOptions = {}): Promise<CompareReport> {
  const where = 'Partitioner.compare';
  checkOptionKeys(where, options, ['key', 'rowsPerPartition', 'base', 'lo', 'hi', 'maxDifferences', 'signal', 'onProgress']);
  for (const [side, r] of [
    ['a', a],
    ['b', b],
  ] as const) {
    if (typeof r !== 'object' || r === null || typeof r.digestRange !== 'function' || typeof r.rows !== 'function') {
      throw new StowageError('EBAD_CONFIG', `${where}: side ${side} must be a TableSource or TableReader.`, { details: { option: side } });
    }
  }
  checkIdentifier(where, 'table', table);
  const key = checkIdentifier(where, 'key', options.key ?? 'SEQNO');
  const size = toKeyBound(where, 'rowsPerPartition', options.rowsPerPartition ?? 10000);
  if (size < 1n) throw new StowageError('EBAD_CONFIG', `${where}: option "rowsPerPartition" must be at least 1.`, { details: { option: 'rowsPerPartition' } });
  const grid = new PartitionGrid(size, toKeyBound(where, 'base', options.base ?? 1));
  const bounds = toKeyBounds(where, options.lo, options.hi);
  const maxDifferences = checkInt(where, 'maxDifferences', options.maxDifferences ?? 100, 0);
  const { signal } = options;
  throwIfAborted(signal);
  const progress = new ProgressTracker('compare', options.onProgress);

  const [colsA, colsB, rangeA, rangeB] = await Promise.all([a.columns(table, { signal }), b.columns(table, { signal }), a.keyRange(table, key, { signal }), b.keyRange(table, key, { signal })]);
  const keyA = findColumn(a.name, table, colsA, key).index;
  const keyB = findColumn(b.name, table, colsB, key).index;
  const namesA = colsA.map((c) => c.name);
  const namesB = colsB.map((c) => c.name);
  const columnsEqual = namesA.length === namesB.length && namesA.every((n, i) => n === namesB[i]);

  const clampLo = (v: bigint): bigint => (bounds.lo !== undefined && v < bounds.lo ? bounds.lo : v);
  const clampHi = (v: bigint): bigint => (bounds.hi !== undefined && v > bounds.hi ? bounds.hi : v);
  const digest = async (lo: bigint, hi: bigint): Promise<[RangeDigest, RangeDigest]> => {
    throwIfAborted(signal);
    const r = await Promise.all([a.digestRange(table, key, lo, hi, { signal }), b.digestRange(table, key, lo, hi, { signal })]);
    progress.add(r[0].bytes + r[1].bytes);
    return r;
  };

  const differences: KeyDifference[] = [];
  let truncated = false;
  const note = (d: KeyDifference): boolean => {
    if (differences.length >= maxDifferences) {
      truncated = true;
      return false;
    }
    differences.push(Object.freeze(d));
    return true;
  };

  /** Reads [lo, hi] from both sides in key order and lists the keys that differ. */
  const merge = async (lo: bigint, hi: bigint): Promise<void> => {
    const [sa, sb] = await Promise.all([a.rows(table, { key, lo, hi, signal }), b.rows(table, { key, lo, hi, signal })]);
    const ga = keyGroups(sa as AsyncIterable<Buffer>, keyA, a.name, table);
    const gb = keyGroups(sb as AsyncIterable<Buffer>, keyB, b.name, table);
    try {
      let x = await ga.next();
      let y = await gb.next();
      while (!x.done || !y.done) {
        throwIfAborted(signal);
        if (!x.done && (y.done || x.value.key < y.value.key)) {
          if (!note({ key: x.value.key, kind: 'only-in-a', rowsA: x.value.lines.length, rowsB: 0 })) return;
          x = await ga.next();
        } else if (!y.done && (x.done || y.value.key < x.value.key)) {
          if (!note({ key: y.value.key, kind: 'only-in-b', rowsA: 0, rowsB: y.value.lines.length })) return;
          y = await gb.next();
        } else if (!x.done && !y.done) {
          if (!sameLines(x.value.lines, y.value.lines) && !note({ key: x.value.key, kind: 'different', rowsA: x.value.lines.length, rowsB: y.value.lines.length })) return;
          x = await ga.next();
          y = await gb.next();
        }
      }
    } finally {
      await ga.return(undefined);
      await gb.return(undefined);
      sa.destroy();
      sb.destroy();
    }
  };

  /** Bisects a differing piece down to pieces small enough to merge. */
  const narrow = async (lo: bigint, hi: bigint, da: RangeDigest, db: RangeDigest): Promise<void> => {
    if (truncated) return;
    if (lo === hi || da.count + db.count <= MERGE_ROWS) {
      await merge(lo, hi);
      return;
    }
    const mid = lo + (hi - lo) / 2n;
    for (const [l, h] of [
      [lo, mid],
      [mid + 1n, hi],
    ] as const) {
      const [xa, xb] = await digest(l, h);
      if (!sameDigest(xa, xb)) await narrow(l, h, xa, xb);
      if (truncated) return;
    }
  };

  // The occupied ranges of either side, inside [lo, hi] when given.
  const ranges: RangeComparison[] = [];
  const los = [rangeA.lo, rangeB.lo].filter((v): v is bigint => v !== null);
  const his = [rangeA.hi, rangeB.hi].filter((v): v is bigint => v !== null);
  if (los.length > 0 && his.length > 0) {
    const lo = clampLo(los.reduce((m, v) => (v < m ? v : m)));
    const hi = clampHi(his.reduce((m, v) => (v > m ? v : m)));
    const cursors = [new KeyCursor(a, table, key, grid.size, rangeA.hi), new KeyCursor(b, table, key, grid.size, rangeB.hi)];
    const firstKey = async (from: bigint): Promise<bigint | null> => {
      let best: bigint | null = null;
      for (const c of cursors) {
        const k = await c.next(from, signal);
        if (k !== null && (best === null || k < best)) best = k;
      }
      return best;
    };
    let k = lo <= hi ? await firstKey(lo) : null;
    while (k !== null && k <= hi) {
      const i = grid.indexOf(k);
      const rlo = clampLo(grid.lo(i));
      const rhi = clampHi(grid.hi(i));
      const [da, db] = await digest(rlo, rhi);
      const equal = sameDigest(da, db);
      const r: RangeComparison = Object.freeze({ lo: rlo, hi: rhi, a: da, b: db, equal });
      ranges.push(r);
      if (!equal && !truncated) await narrow(rlo, rhi, da, db);
      progress.add(0, 1);
      if (rhi >= hi) break;
      k = await firstKey(rhi + 1n);
    }
  }
  progress.report(true);
  const differingRanges = ranges.filter((r) => !r.equal);
  const equal = differingRanges.length === 0 && columnsEqual && rangeA.nulls === rangeB.nulls && (bounds.lo !== undefined || bounds.hi !== undefined || rangeA.count === rangeB.count);
  return Object.freeze({
    table,
    key,
    equal,
    a: Object.freeze({ name: a.name, rows: rangeA.count, nulls: rangeA.nulls, columns: Object.freeze(namesA) }),
    b: Object.freeze({ name: b.name, rows: rangeB.count, nulls: rangeB.nulls, columns: Object.freeze(namesB) }),
    columnsEqual,
    ranges: Object.freeze(ranges),
    differingRanges: Object.freeze(differingRanges),
    differences: Object.freeze(differences),
    truncated,
  });
}
