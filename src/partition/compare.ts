/**
 * `Partitioner.compare`: are two copies of a table the same, and if not,
 * which keys differ?
 *
 * Each side is read once, as one `rows()` stream in key order, and cut on
 * the same grid as the Partitioner's: the count and range digest of every
 * occupied range are computed on the way (so empty ranges cost nothing, and
 * a source pays one query per side, not one per range). A range whose
 * digests differ is then bisected on its key values (`digestRange` of each
 * half on both sides) until a piece holds few rows; that piece is read from
 * both sides in key order and compared key by key. Memory holds the rows of
 * one key value per side at a time (and one entry per occupied range for
 * the report).
 *
 * Rows are compared by column name: a side whose columns are in another
 * order is read in the order of side a (`columns` of `rows()` and
 * `digestRange()`), so a table restored into a target whose columns are
 * ordered differently compares equal. Columns only one side has are left
 * out of the rows compared (and make the report not equal).
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { throwIfAborted } from '../util/abort.js';
import { checkFunctionOption, checkInt, checkOptionKeys, checkSignalOption } from '../util/options.js';
import { LineSplitter } from '../db/bulk-text.js';
import { RangeDigester, type RangeDigest } from '../db/range-digest.js';
import { checkIdentifier, findColumn, toKeyBound, toKeyBounds, type KeyBound, type RowsOptions, type TableReader } from '../db/table-source.js';
import { fieldOf, parseKeyField } from './key-seek.js';
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
  /**
   * True when every range has the same count and digest on both sides and
   * both sides have the same columns (in any order). Rows whose key is NULL
   * lie in no range and are never compared: without `lo`/`hi`, a side
   * holding any makes this false (their counts are `a.nulls`, `b.nulls`).
   */
  readonly equal: boolean;
  /** Side a: the source's name, its rows (non-NULL key), rows with a NULL key, its columns. */
  readonly a: CompareSide;
  /** Side b, likewise. */
  readonly b: CompareSide;
  /**
   * Whether both sides have the same column names, in any order (a name
   * matched exactly, else case-insensitively when that is unambiguous on
   * both sides).
   * The rows are compared on the columns both sides have, by name.
   */
  readonly columnsEqual: boolean;
  /** Whether they are also in the same order, each column at the same position on both sides (table layout only: it does not make the sides differ). */
  readonly columnOrderEqual: boolean;
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

/**
 * The columns both sides have, matched by name, in side a's order: the key
 * columns (each resolved on its side) with each other, then every name
 * found exactly on the other side, then, among the columns left, a name
 * that matches case-insensitively where it is the only one of its
 * lower-cased spelling left on both sides. `a` and `b` are their names on
 * each side, `undefined` where a side can be read as it is stored;
 * `keyIndex` is the key's position among them. Exported for its tests only.
 *
 * @param namesA - side a's column names, as stored
 * @param namesB - side b's
 * @param keyA - the key's index among `namesA`
 * @param keyB - among `namesB`
 */
export function matchColumns(namesA: readonly string[], namesB: readonly string[], keyA: number, keyB: number): { a: string[] | undefined; b: string[] | undefined; keyIndex: number; equal: boolean } {
  const pairs = new Map<number, number>([[keyA, keyB]]);
  const takenB = new Set<number>([keyB]);
  const exactB = new Map(namesB.map((n, j) => [n, j] as const));
  for (const [i, n] of namesA.entries()) {
    const j = exactB.get(n);
    if (pairs.has(i) || j === undefined || takenB.has(j)) continue;
    pairs.set(i, j);
    takenB.add(j);
  }
  const byLower = (names: readonly string[], taken: (i: number) => boolean): Map<string, number[]> => {
    const m = new Map<string, number[]>();
    for (const [i, n] of names.entries()) if (!taken(i)) m.set(n.toLowerCase(), [...(m.get(n.toLowerCase()) ?? []), i]);
    return m;
  };
  const leftB = byLower(namesB, (j) => takenB.has(j));
  for (const [lower, is] of byLower(namesA, (i) => pairs.has(i))) {
    const js = leftB.get(lower);
    if (is.length === 1 && js !== undefined && js.length === 1) pairs.set(is[0]!, js[0]!);
  }
  const ia = namesA.flatMap((_, i) => (pairs.has(i) ? [i] : []));
  const ib = ia.map((i) => pairs.get(i)!);
  const asStored = (idx: number[], all: number): boolean => idx.length === all && idx.every((v, k) => v === k);
  return {
    a: asStored(ia, namesA.length) ? undefined : ia.map((i) => namesA[i]!),
    b: asStored(ib, namesB.length) ? undefined : ib.map((j) => namesB[j]!),
    keyIndex: ia.indexOf(keyA),
    equal: ia.length === namesA.length && ia.length === namesB.length,
  };
}

/** `options` with `columns` when some are given. */
function withColumns<T extends object>(options: T, columns: readonly string[] | undefined): T & { columns?: readonly string[] } {
  return columns === undefined ? options : { ...options, columns };
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

/** The digest of no rows. */
const EMPTY: RangeDigest = Object.freeze(new RangeDigester({ keyIndex: 0 }).digest());

/** A key of at most 15 digits as a number, without making a bigint; `undefined` otherwise. */
function smallKey(raw: Buffer): number | undefined {
  const n = raw.length;
  if (n === 0 || n > 15) return undefined;
  let i = raw[0] === 0x2d ? 1 : 0;
  if (i === n) return undefined;
  let v = 0;
  for (; i < n; i++) {
    const c = raw[i]! - 0x30;
    if (c < 0 || c > 9) return undefined;
    v = v * 10 + c;
  }
  return raw[0] === 0x2d ? -v : v;
}

interface SideRange {
  readonly index: bigint;
  readonly digest: RangeDigest;
}

/**
 * The occupied ranges of one side with their digests, from one rows()
 * stream over [lo, hi] (each bound optional).
 */
async function* rangeDigests(
  reader: TableReader,
  table: string,
  key: string,
  keyIndex: number,
  grid: PartitionGrid,
  lo: bigint | undefined,
  hi: bigint | undefined,
  columns: readonly string[] | undefined,
  signal: AbortSignal | undefined,
  onBytes: (n: number) => void,
): AsyncGenerator<SideRange> {
  const opts: RowsOptions = withColumns({ key, signal }, columns);
  if (lo !== undefined) opts.lo = lo;
  if (hi !== undefined) opts.hi = hi;
  const stream = await reader.rows(table, opts);
  try {
    const splitter = new LineSplitter();
    let index = 0n;
    let rangeHi = 0n;
    let rangeHiNum: number | undefined;
    let digester: RangeDigester | undefined;
    const ready: SideRange[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      throwIfAborted(signal);
      splitter.push(chunk, (line) => {
        const raw = fieldOf(line, keyIndex);
        const small = rangeHiNum === undefined ? undefined : smallKey(raw);
        if (digester === undefined || small === undefined || small > rangeHiNum!) {
          const k = parseKeyField(raw, reader.name, table);
          if (digester === undefined || k > rangeHi) {
            if (digester !== undefined) ready.push({ index, digest: digester.digest() });
            index = grid.indexOf(k);
            rangeHi = grid.hi(index);
            rangeHiNum = rangeHi <= BigInt(Number.MAX_SAFE_INTEGER) && rangeHi >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(rangeHi) : undefined;
            digester = new RangeDigester({ keyIndex });
          }
        }
        digester.update(line);
      });
      onBytes(chunk.length);
      yield* ready.splice(0);
    }
    splitter.end();
    if (digester !== undefined) yield { index, digest: digester.digest() };
  } finally {
    stream.destroy();
  }
}

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
  options ??= {};
  checkOptionKeys(where, options, ['key', 'rowsPerPartition', 'base', 'lo', 'hi', 'maxDifferences', 'signal', 'onProgress']);
  checkSignalOption(where, options.signal);
  checkFunctionOption(where, 'onProgress', options.onProgress);
  for (const [side, r] of [
    ['a', a],
    ['b', b],
  ] as const) {
    if (typeof r !== 'object' || r === null || typeof r.digestRange !== 'function' || typeof r.rows !== 'function' || typeof r.columns !== 'function' || typeof r.keyRange !== 'function') {
      throw new StowageError('EBAD_CONFIG', `${where}: side ${side} must be a TableSource or TableReader.`, { details: { option: side } });
    }
  }
  if (a.engine !== b.engine) {
    // Each engine writes its values in its own text (1e+20 or 1e20, bytes raw or as \x hex): every row would differ.
    throw new StowageError(
      'EBAD_CONFIG',
      `${where}: side a is ${a.engine} (${a.name}) and side b is ${b.engine} (${b.name}): rows are compared as each engine writes them, so tables of different engines never compare equal. Compare two databases of one engine (restore the archives into a database of the source's engine, then compare that).`,
      { details: { a: a.engine, b: b.engine } },
    );
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
  const namesA = colsA.map((c) => c.name);
  const namesB = colsB.map((c) => c.name);
  // Both sides are read with the columns they share, in a's order, by name.
  const match = matchColumns(namesA, namesB, findColumn(a.name, table, colsA, key).index, findColumn(b.name, table, colsB, key).index);
  const keyIndex = match.keyIndex;
  const columnsEqual = match.equal;
  // Equal columns, each side read as stored: the same columns at the same positions.
  const columnOrderEqual = columnsEqual && match.a === undefined && match.b === undefined;

  const clampLo = (v: bigint): bigint => (bounds.lo !== undefined && v < bounds.lo ? bounds.lo : v);
  const clampHi = (v: bigint): bigint => (bounds.hi !== undefined && v > bounds.hi ? bounds.hi : v);
  const digest = async (lo: bigint, hi: bigint): Promise<[RangeDigest, RangeDigest]> => {
    throwIfAborted(signal);
    const r = await Promise.all([a.digestRange(table, key, lo, hi, withColumns({ signal }, match.a)), b.digestRange(table, key, lo, hi, withColumns({ signal }, match.b))]);
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
    // Both opened at once; where one fails, the other is destroyed (it holds a connection, or a snapshot reader's one stream).
    const opened = await Promise.allSettled([a.rows(table, withColumns({ key, lo, hi, signal }, match.a)), b.rows(table, withColumns({ key, lo, hi, signal }, match.b))]);
    if (opened[0].status === 'rejected' || opened[1].status === 'rejected') {
      for (const o of opened) if (o.status === 'fulfilled') o.value.destroy();
      throw opened[0].status === 'rejected' ? opened[0].reason : (opened[1] as PromiseRejectedResult).reason;
    }
    const [sa, sb] = [opened[0].value, opened[1].value];
    const ga = keyGroups(sa as AsyncIterable<Buffer>, keyIndex, a.name, table);
    const gb = keyGroups(sb as AsyncIterable<Buffer>, keyIndex, b.name, table);
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

  // The occupied ranges of either side, each side read once; the differing ones narrowed down afterwards
  // (a snapshot reader may have one connection, busy while its stream is open).
  const ranges: RangeComparison[] = [];
  const sa = rangeDigests(a, table, key, keyIndex, grid, bounds.lo, bounds.hi, match.a, signal, (n) => progress.add(n));
  const sb = rangeDigests(b, table, key, keyIndex, grid, bounds.lo, bounds.hi, match.b, signal, (n) => progress.add(n));
  try {
    let [x, y] = await Promise.all([sa.next(), sb.next()]);
    while (!x.done || !y.done) {
      const index = x.done ? y.value!.index : y.done ? x.value.index : x.value.index < y.value.index ? x.value.index : y.value.index;
      const da = !x.done && x.value.index === index ? x.value.digest : EMPTY;
      const db = !y.done && y.value.index === index ? y.value.digest : EMPTY;
      const lo = clampLo(grid.lo(index));
      const hi = clampHi(grid.hi(index));
      ranges.push(Object.freeze({ lo, hi, a: da, b: db, equal: sameDigest(da, db) }));
      progress.add(0, 1);
      [x, y] = await Promise.all([da === EMPTY ? x : sa.next(), db === EMPTY ? y : sb.next()]);
    }
  } finally {
    await Promise.all([sa.return(undefined), sb.return(undefined)]);
  }
  for (const r of ranges) {
    if (truncated) break;
    if (!r.equal) await narrow(r.lo, r.hi, r.a, r.b);
  }
  progress.report(true);
  const differingRanges = ranges.filter((r) => !r.equal);
  // Rows whose key is NULL lie in no range: their values are never compared,
  // so a whole-table comparison with any of them cannot say "equal".
  const bounded = bounds.lo !== undefined || bounds.hi !== undefined;
  const equal = differingRanges.length === 0 && columnsEqual && (bounded || (rangeA.count === rangeB.count && rangeA.nulls === 0 && rangeB.nulls === 0));
  return Object.freeze({
    table,
    key,
    equal,
    a: Object.freeze({ name: a.name, rows: rangeA.count, nulls: rangeA.nulls, columns: Object.freeze(namesA) }),
    b: Object.freeze({ name: b.name, rows: rangeB.count, nulls: rangeB.nulls, columns: Object.freeze(namesB) }),
    columnsEqual,
    columnOrderEqual,
    ranges: Object.freeze(ranges),
    differingRanges: Object.freeze(differingRanges),
    differences: Object.freeze(differences),
    truncated,
  });
}
