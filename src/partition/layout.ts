/**
 * Where partitions are and what they are called: the bucket arithmetic that
 * cuts a key column into ranges, the archive names, and the folder name of
 * a table.
 *
 * ## Boundaries
 *
 * With `rowsPerPartition = N` and `base = B` (default 1), partition `i`
 * covers the keys `[B + i*N, B + (i+1)*N - 1]`: with the defaults, SEQNO
 * 1-10000, 10001-20000, ..., as the Daya Bay conditions-database tool cut
 * them. Boundaries depend only on key values, never on which rows exist, so
 * a partition keeps its name from one run to the next; keys below `B` fall
 * in partitions with negative indices. A partition is *complete* once the
 * table holds a key above its upper bound, and the *tail* (the partition of
 * the largest key) is *partial*: it is still filling.
 *
 * ## Names
 *
 * An archive is `DIR/<lo>-<hi>.tar.gz`, both bounds written in decimal and
 * zero-padded to 10 digits (a negative bound is `-` followed by its padded
 * absolute value): `Vld/0000000001-0000010000.tar.gz`. `DIR` is the table's
 * name (the first table's for a group) encoded for any file system: ASCII
 * letters, digits, `_`, `-` and `.` (not leading) are kept, every other
 * byte of the UTF-8 name is written `%XX`, so `we"ird tab`le` becomes
 * `we%22ird%20tab%60le` and no name can climb out of the output folder.
 * A table named `LOCKED` gets `%4COCKED`: a folder `LOCKED` is a lock
 * (`LockDir`) to `sync`, `DnaDigest.scan` and retention, which would skip
 * or refuse the whole output folder while it is there.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { LOCK_DIR_NAME } from '../dna/dna-scan.js';
import { INT64_MIN, UINT64_MAX } from '../db/table-source.js';

/** Digits the bounds of an archive name are padded to. */
export const BOUND_DIGITS = 10;

/** The suffix of partition archives. */
export const PARTITION_SUFFIX = '.tar.gz';

const NAME_RE = /^(-?\d+)-(-?\d+)\.tar\.gz$/;

/** Floor division of bigints (`n > 0`). */
function floorDiv(a: bigint, n: bigint): bigint {
  const q = a / n;
  return a % n !== 0n && a < 0n ? q - 1n : q;
}

/** The fixed grid that cuts a key column into partitions. */
export class PartitionGrid {
  /** Keys per partition. */
  readonly size: bigint;
  /** The first key of partition 0. */
  readonly base: bigint;

  /**
   * @param size - keys per partition (> 0)
   * @param base - the first key of partition 0
   */
  constructor(size: bigint, base: bigint) {
    if (size <= 0n) throw new StowageError('EBAD_CONFIG', `rowsPerPartition must be at least 1, got ${size}.`, { details: { option: 'rowsPerPartition' } });
    this.size = size;
    this.base = base;
  }

  /** The index of the partition holding `key`. */
  indexOf(key: bigint): bigint {
    return floorDiv(key - this.base, this.size);
  }

  /** The smallest key of partition `index`, clamped to the 64-bit key space. */
  lo(index: bigint): bigint {
    const v = this.base + index * this.size;
    return v < INT64_MIN ? INT64_MIN : v;
  }

  /** The largest key of partition `index`, clamped to the 64-bit key space. */
  hi(index: bigint): bigint {
    const v = this.base + (index + 1n) * this.size - 1n;
    return v > UINT64_MAX ? UINT64_MAX : v;
  }

  /** Whether `[lo, hi]` is exactly one partition of this grid. */
  isPartition(lo: bigint, hi: bigint): boolean {
    const i = this.indexOf(lo);
    return this.lo(i) === lo && this.hi(i) === hi;
  }
}

/**
 * Writes a bound as archive names do: decimal, zero-padded to 10 digits,
 * a negative one as `-` and its padded absolute value.
 *
 * @param v - the bound
 */
export function formatBound(v: bigint): string {
  return v < 0n ? `-${(-v).toString().padStart(BOUND_DIGITS, '0')}` : v.toString().padStart(BOUND_DIGITS, '0');
}

/**
 * The archive file name of a partition, e.g. `0000000001-0000010000.tar.gz`.
 *
 * @param lo - smallest key
 * @param hi - largest key
 */
export function partitionFileName(lo: bigint, hi: bigint): string {
  return `${formatBound(lo)}-${formatBound(hi)}${PARTITION_SUFFIX}`;
}

/**
 * Reads the bounds back from an archive file name; `undefined` for a name
 * that is not a partition archive (`.part` files, sidecars, anything else).
 *
 * @param name - a file name (no folder)
 */
export function parsePartitionFileName(name: string): { lo: bigint; hi: bigint } | undefined {
  const m = NAME_RE.exec(name);
  if (m === null) return undefined;
  const [, a, b] = m;
  const ok = (s: string): boolean => s.replace('-', '').length >= BOUND_DIGITS;
  if (!ok(a!) || !ok(b!)) return undefined;
  const lo = BigInt(a!);
  const hi = BigInt(b!);
  if (lo > hi || formatBound(lo) !== a || formatBound(hi) !== b) return undefined;
  return { lo, hi };
}

const KEEP = /[A-Za-z0-9_.-]/;

/**
 * Encodes a table name as a folder name (see the module documentation):
 * injective, and never `.`, `..`, `LOCKED`, empty, or holding a `/`.
 *
 * @param name - the table's name
 */
export function tableDirName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (byte < 0x80 && KEEP.test(c) && !(c === '.' && out.length === 0)) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  // Still injective: `%` itself is always written %25.
  return out === LOCK_DIR_NAME ? `%4C${out.slice(1)}` : out;
}
