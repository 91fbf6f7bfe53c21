/**
 * Partitioner (layer 2): incremental, partitioned backups of database
 * tables, the Daya Bay conditions-database workflow done properly.
 *
 * A table (or a group of tables sharing one key, such as a payload table
 * and its validity table) is cut into fixed key ranges (see `layout.ts`:
 * SEQNO 1-10000, 10001-20000, ...), and each range is archived once as its
 * own `DIR/<lo>-<hi>.tar.gz` with a DNA sidecar, holding every table's
 * schema and rows and a manifest with their counts and range digests (see
 * `manifest.ts`). Later runs write only what changed: new complete ranges,
 * and the partial ones (the tail, and the `settleRanges` below it) when
 * their rows changed.
 *
 * - {@link Partitioner.plan} is pure reading: it lists the occupied ranges
 *   and their state. It walks from one occupied range to the next (see
 *   `key-seek.ts`), so its cost and memory grow with the number of
 *   occupied ranges, never with the key span; runs of empty ranges are one
 *   `empty` entry each (recorded in the Catalog, never written).
 * - {@link Partitioner.dump} reads each range in one snapshot of the
 *   database (all tables of the group as of one instant), so rows
 *   committed meanwhile land whole in a later run, never half in this one.
 *   A single table is read in runs of consecutive ranges, one query and
 *   one snapshot per run, cut at the range boundaries as it streams (see
 *   `range-cutter.ts`): sources pay a per-query cost (metadata lookups, a
 *   snapshot) once per run instead of once per range. Each range's rows
 *   are held in a {@link RowSpool} (memory, then a spill file) until its
 *   archive is written, a few writes in flight behind the read. The folder is
 *   locked (`LOCKED`, see LockDir) for the duration.
 * - {@link Partitioner.restore} verifies every archive's DNA before loading
 *   anything and checks each table's rows against the manifest inside the
 *   load's transaction; {@link Partitioner.compare} proves two databases
 *   equal range by range and narrows a difference down to its keys.
 *
 * What is already archived is read from the Catalog when one is given,
 * else from the archives in the folder (their manifests).
 *
 * @module
 */
import { setMaxListeners } from 'node:events';
import { availableParallelism } from 'node:os';
import { constants as fsConstants } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { StowageError, fromFsError, isStowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { anySignal, throwIfAborted } from '../util/abort.js';
import { checkBooleanOption, checkInt, checkOptionKeys, checkSignalOption } from '../util/options.js';
import { DnaDigest, SIDECAR_SUFFIX, dnaEqual, type Dna } from '../dna/index.js';
import { BlockHasher } from '../dna/block-hasher.js';
import { LockDir } from '../lock/lock-dir.js';
import { isNoHardLinkError, isUniquePartName } from '../util/atomic-file.js';
import type { Catalog, PartitionRecord } from '../catalog/catalog.js';
import { LineSplitter } from '../db/bulk-text.js';
import { RangeDigester } from '../db/range-digest.js';
import { INT64_MAX, checkIdentifier, findColumn, toKeyBound, type ColumnInfo, type KeyRange, type TableReader, type TableSource } from '../db/table-source.js';
import { KeyCursor, isUniqueKey, keyExtent } from './key-seek.js';
import { keyProbesOf, type KeyProbes } from '../db/key-probes.js';
import { PartitionGrid, parsePartitionFileName, partitionFileName, tableDirName } from './layout.js';
import { MANIFEST_ENTRY, MANIFEST_FORMAT, MANIFEST_VERSION, formatManifest, type ManifestTable, type PartitionManifest } from './manifest.js';
import { readManifest, writePartitionArchive, type ArchiveInputEntry } from './partition-archive.js';
import { RangeCutter } from './range-cutter.js';
import { RowSpool, type SpoolWriter } from './row-spool.js';
import { restorePartitions, type RestoreOptions, type RestoreResult } from './restore.js';
import { compareTables, type CompareOptions, type CompareReport } from './compare.js';
import { mkdirRecursive } from '../util/mkdirp.js';

/** Options of {@link Partitioner}. */
export interface PartitionerOptions {
  /** The table to partition. Give this or `tables`. */
  table?: string;
  /** A group of tables sharing the key (e.g. a payload table and its validity table), dumped together range by range into one archive per range. */
  tables?: readonly string[];
  /** The integer key column (default `'SEQNO'`). */
  key?: string;
  /** Keys per partition (default 10000). */
  rowsPerPartition?: number | bigint;
  /** The first key of partition 0 (default 1, so ranges are 1-10000, 10001-20000, ...). */
  base?: number | bigint;
  /** The folder holding the partition folders; archives go to `outDir/NAME/<lo>-<hi>.tar.gz`. */
  outDir: string;
  /** The partition folder's name before encoding (default: the table's name; for a group, the first table's). */
  name?: string;
  /**
   * Where archives and partitions are recorded and state is read from
   * (default: the archives on disk). An intact archive on disk that the
   * Catalog has no record of (written before it was used, or recorded for
   * another outDir since) still counts as archived: a complete one is never
   * written again.
   */
  catalog?: Catalog;
  /**
   * Deflate level 1-9 of the archives (default 1). Partitions hold bulk
   * text, which compresses well at level 1. On the benchmark's 1M-row
   * MariaDB table, level 6 made the archives only 5.5% smaller (48.6 MB
   * against 51.4 MB) and cost twice the CPU (8.7 s against 4.7 s), on a
   * dump whose speed is set by CPU. Use 6-9 where storage matters more.
   */
  gzipLevel?: number;
  /** Bytes of one table's range held in memory before spilling to a file beside the archive (default 32 MiB). */
  spoolMemoryBytes?: number;
  /**
   * Ranges above a range that keys must reach before it counts as complete
   * (default 1): the range below the tail stays `partial` until the keys
   * pass the tail's end too. Writers commit out of key order (a transaction
   * holding SEQNO 10 commits after one holding 11): a range taken for
   * complete as soon as any higher key is visible would be archived without
   * the late row, and a complete range is never written again. One range
   * of margin lets such rows land in a later run; 0 takes a range for
   * complete at the first higher key (a single writer committing in key
   * order, such as SQLite).
   */
  settleRanges?: number;
}

const OPTION_KEYS = ['table', 'tables', 'key', 'rowsPerPartition', 'base', 'outDir', 'name', 'catalog', 'gzipLevel', 'spoolMemoryBytes', 'settleRanges'] as const;

/**
 * The state of a range in a plan:
 * - `complete`: every table of the group holds keys above it (past the
 *   {@link PartitionerOptions.settleRanges} ranges above it), and it has no
 *   archive in its final form yet: the next dump writes it;
 * - `partial`: the tail, still filling (and the `settleRanges` ranges below
 *   it, which late commits may still reach): a dump writes it, and
 *   rewrites it later only if its rows changed. In a group, the tail is
 *   that of the table whose largest key is lowest (every range while one
 *   table has no rows): payload rows committed after their validity rows
 *   are never left out of a complete archive. A partial archive some of
 *   whose rows were deleted or changed since is kept aside when it is written again
 *   (see {@link DumpResult.setAside}); one whose rows were all deleted
 *   is written again, empty (so a restore clears the range too), as
 *   partial or complete by the same rule, where the group still has rows
 *   at or below it;
 * - `archived`: its archive holds it complete: written once, left alone
 *   (also when deleting the rows above it makes it the tail again); and a
 *   partial archive whose range lost all its rows while the group has
 *   none at or below it (rows purged from the bottom, or a table emptied):
 *   left alone, it keeps what the source no longer has;
 * - `empty`: a run of ranges without rows: recorded, never written.
 */
export type PlannedState = 'complete' | 'partial' | 'archived' | 'empty';

/** One table of an existing archive, as the Catalog or the manifest records it. */
export interface ArchivedTable {
  /** The table. */
  readonly name: string;
  /** Rows archived. */
  readonly rows: number;
  /** Their range digest, when known. */
  readonly digest: string | null;
}

/** An archive already written for a range. */
export interface ArchivedPartition {
  /** Its path. */
  readonly path: string;
  /** Whether it was written when the range was already complete. */
  readonly complete: boolean;
  /** What it holds, per table. */
  readonly tables: readonly ArchivedTable[];
}

/** One entry of a {@link PartitionPlan}. */
export interface PlannedPartition {
  /** Smallest key (for `empty`, of the first empty range). */
  readonly lo: bigint;
  /** Largest key (for `empty`, of the last empty range). */
  readonly hi: bigint;
  /** Its state. */
  readonly state: PlannedState;
  /** Whether any table of the group has rows in it now. */
  readonly occupied: boolean;
  /** Where its archive is or will be (`undefined` for `empty`). */
  readonly path: string | undefined;
  /** The archive already there, if any. */
  readonly archived: ArchivedPartition | undefined;
}

/** What {@link Partitioner.plan} found. */
export interface PartitionPlan {
  /** The tables of the group. */
  readonly tables: readonly string[];
  /** The key column. */
  readonly key: string;
  /** Keys per partition. */
  readonly rowsPerPartition: bigint;
  /** First key of partition 0. */
  readonly base: bigint;
  /** The partition folder. */
  readonly dir: string;
  /** Smallest and largest key over the group (null when it has no rows), and its row count. */
  readonly keyRange: { readonly lo: bigint | null; readonly hi: bigint | null; readonly rows: number };
  /**
   * Where the archived state came from: the Catalog's records (and, for
   * ranges it has no record of in this folder, the archives on disk), or
   * the archives on disk alone.
   */
  readonly stateFrom: 'catalog' | 'disk';
  /** The ranges in key order: occupied or archived ones, and one `empty` entry per run of empty ranges between them. */
  readonly partitions: readonly PlannedPartition[];
}

/** Options of {@link Partitioner.plan}. */
export interface PlanOptions {
  /** Cancels the plan. */
  signal?: AbortSignal;
}

/** Options of {@link Partitioner.dump}. */
export interface DumpOptions {
  /** Write only what changed: new complete ranges and changed partial ones (default true). False rewrites every occupied range. */
  incremental?: boolean;
  /**
   * Ranges read at once (default 2; a single table is read in runs of
   * ranges, each run keeping up to three archive writes in flight behind
   * its read).
   */
  concurrency?: number;
  /** Cancels the dump: archives finished before stay, those being written are removed. */
  signal?: AbortSignal;
  /** Phase `dump`: bytes of bulk text read, items = ranges done of those to do. */
  onProgress?: ProgressCallback;
}

/** One table of a written partition. */
export interface WrittenTable {
  /** The table. */
  readonly name: string;
  /** Rows written. */
  readonly rows: number;
  /** Bytes of bulk text. */
  readonly bytes: number;
  /** Their range digest. */
  readonly digest: string;
}

/** A partition archive written by {@link Partitioner.dump}. */
export interface WrittenPartition {
  /** Smallest key. */
  readonly lo: bigint;
  /** Largest key. */
  readonly hi: bigint;
  /** The archive. */
  readonly path: string;
  /** Its DNA (also in `path.dna`). */
  readonly dna: Dna;
  /** Whether it was complete (false: a partial range, the tail or one of the `settleRanges` below it). */
  readonly complete: boolean;
  /** Per table. */
  readonly tables: readonly WrittenTable[];
}

/** What {@link Partitioner.dump} did. */
export interface DumpResult {
  /** The plan it followed. */
  readonly plan: PartitionPlan;
  /** Archives written, in key order. */
  readonly written: readonly WrittenPartition[];
  /** Ranges not written: read and found identical to their partial archive, or found archived complete (and intact) when about to be written. */
  readonly unchanged: readonly { readonly lo: bigint; readonly hi: bigint }[];
  /** Rows written in all. */
  readonly rows: number;
  /** Bytes of bulk text written in all. */
  readonly bytes: number;
  /** Bytes of archives written. */
  readonly archiveBytes: number;
  /**
   * Archives that were in the way of a range being written, kept with
   * their sidecars instead of lost, since they may hold rows the source no
   * longer has: damaged ones (cut, rotted, sidecar lost) as
   * `NAME.damaged-<UTC time>`, and as `NAME.replaced-<UTC time>`: in a
   * full dump (`incremental: false`), complete ones whose rows differ from
   * the source's now (rows purged or changed since), and in any dump, a
   * partial one some of whose rows the source no longer holds as they were
   * (rows deleted or changed in the tail, whatever was added). Each stays under its own
   * name until the new archive has replaced it whole (a write that fails
   * leaves it there, and keeps no copy). Look at them, then delete them.
   * Sorted.
   */
  readonly setAside: readonly string[];
  /**
   * Files a dump of this folder that died (killed, a power cut) left
   * behind, found and removed before this one wrote anything: partial
   * archives and sidecars (`NAME.part`, `NAME.dna.part`), spill files of
   * rows (`NAME.<n>.spool`) and temporary links (`.stowage-<hex>.part`).
   * The folder's lock says no other writer is at work there. Sorted.
   */
  readonly leftovers: readonly string[];
}

const MiB = 1 << 20;

/** The most ranges read with one query. */
const MAX_BLOCK = 64;

/**
 * Whether `name` is what a dump that died leaves in its folder: `NAME.part`,
 * `NAME.dna.part` or `NAME.<n>.spool` of a range's archive `NAME`, or a
 * temporary `.stowage-<hex>.part` link (see {@link DumpResult.leftovers}).
 */
function isLeftover(name: string): boolean {
  if (isUniquePartName(name)) return true;
  const m = /^(.+?)(?:\.dna\.part|\.part|\.\d+\.spool)$/.exec(name);
  return m !== null && parsePartitionFileName(m[1]!) !== undefined;
}

/** Most archive writes in flight behind one run's read (see `#dumpBlock`). */
const MAX_WRITES = 3;

/** What the ranges of one dump share. */
interface DumpContext {
  readonly meta: readonly TableMeta[];
  readonly incremental: boolean;
  readonly gzipConcurrency: number;
  readonly progress: ProgressTracker;
  readonly signal: AbortSignal | undefined;
  /** Called once per range done, with its archive or `undefined` (unchanged). */
  readonly done: (p: PlannedPartition, w: WrittenPartition | undefined) => void;
  /** Archives kept aside, damaged or replaced (see {@link DumpResult.setAside}). */
  readonly setAside: string[];
  /** Computes the range digests of unique-key tables off the main thread (see `row-spool.ts`). */
  readonly hasher: BlockHasher;
}

/** A range's upper bound as the Catalog records it: at most INT64_MAX (the grid's last range may reach past it). */
const catalogBound = (hi: bigint): bigint => (hi > INT64_MAX ? INT64_MAX : hi);

/**
 * Groups the ranges to write into runs of at most `size` that are
 * consecutive in the plan (only empty runs between them, whose keys hold
 * no rows), so that one query reads a whole run.
 */
function blocksOf(plan: PartitionPlan, todo: readonly PlannedPartition[], size: number): PlannedPartition[][] {
  const wanted = new Set(todo);
  const out: PlannedPartition[][] = [];
  let cur: PlannedPartition[] = [];
  for (const p of plan.partitions) {
    if (p.state === 'empty') continue;
    if (!wanted.has(p) || cur.length >= size) {
      if (cur.length > 0) out.push(cur);
      cur = [];
    }
    if (wanted.has(p)) cur.push(p);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** What a dump reads once per table. */
interface TableMeta {
  readonly table: string;
  readonly columns: string[];
  /** The columns' types, as the source names them (recorded in the manifest). */
  readonly types: string[];
  readonly keyIndex: number;
  /** The key is the table's whole primary key: one row per key value. */
  readonly uniqueKey: boolean;
  readonly schema: Buffer;
}

function bad(message: string, option: string): StowageError {
  return new StowageError('EBAD_CONFIG', `Partitioner: ${message}`, { details: { option } });
}

function checkTables(o: PartitionerOptions): string[] {
  if (o.table !== undefined && o.tables !== undefined) throw bad('give either "table" or "tables", not both.', 'tables');
  const list = o.table !== undefined ? [o.table] : o.tables;
  if (list === undefined) throw bad('option "table" (or "tables") is required.', 'table');
  if (!Array.isArray(list) || list.length === 0) throw bad('option "tables" must be a non-empty array of table names.', 'tables');
  list.forEach((t) => checkIdentifier('Partitioner', 'table', t));
  if (new Set(list).size !== list.length) throw bad('option "tables" names a table twice.', 'tables');
  return [...list];
}

function isSource(x: unknown): x is TableSource {
  const s = x as TableSource | undefined;
  return typeof s === 'object' && s !== null && typeof s.snapshot === 'function' && typeof s.rows === 'function' && typeof s.keyRange === 'function';
}

/**
 * The DNA in `path`'s sidecar when both are there and the file has the size
 * the sidecar gives (a cut archive keeps a readable manifest at its start);
 * undefined otherwise, also for a sidecar that cannot be read.
 */
async function sidecarIfSizeMatches(path: string): Promise<Dna | undefined> {
  try {
    const [st, dna] = await Promise.all([stat(path), DnaDigest.readSidecar(path)]);
    return st.isFile() && st.size === dna.size ? dna : undefined;
  } catch {
    return undefined;
  }
}

/** The archives a plan took from disk, by path: their DNA and manifest date, for the Catalog (see `#recordFromDisk`). */
type FromDisk = Map<string, { dna: Dna; created: Date }>;

/**
 * Whether `path` digests as its sidecar says; false when the sidecar is
 * missing or malformed. Other failures (the file cannot be read: EACCES,
 * EIO) are thrown: they say nothing of the archive's bytes.
 */
async function verifiedDna(path: string, signal: AbortSignal | undefined): Promise<Dna | undefined> {
  try {
    const v = await DnaDigest.verify(path, signal === undefined ? {} : { signal });
    return v.ok ? v.actual : undefined;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (isStowageError(err, 'ENO_SIDECAR') || isStowageError(err, 'EBAD_SIDECAR')) return undefined;
    throw err;
  }
}

/**
 * Keeps a copy of an archive that is in the way of a range being written
 * (and of its sidecar, if any) under `NAME.damaged-<UTC time>[.dna]` (or
 * `.replaced-`), where no reader takes it for a partition; returns that
 * name. The archive itself stays where it is until the new one replaces it
 * whole (see `writeTarAtomic`): a write that fails leaves it there, and
 * {@link dropAside} removes the copy. The copy is a hard link (no bytes
 * copied), or, on a file system without them, a copy made under a `.part`
 * name first.
 */
async function setAside(path: string, signal: AbortSignal | undefined, why: 'damaged' | 'replaced' = 'damaged'): Promise<string> {
  throwIfAborted(signal);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let to = `${path}.${why}-${stamp}`;
  for (let n = 2; await exists(to); n++) to = `${path}.${why}-${stamp}-${n}`;
  await keepCopy(path, to);
  try {
    await keepCopy(path + SIDECAR_SUFFIX, to + SIDECAR_SUFFIX);
  } catch (err) {
    if (!isStowageError(err, 'ENOT_FOUND')) {
      await rm(to, { force: true }).catch(() => {});
      throw err;
    }
  }
  return to;
}

/** A second name for `from` at `to`: a hard link, else a copy (under `to.part` until whole). ENOT_FOUND if `from` is not there. */
async function keepCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
    return;
  } catch (err) {
    if (!isNoHardLinkError(err)) throw fromFsError(err, 'link', from);
  }
  const part = `${to}.part`;
  try {
    await copyFile(from, part, fsConstants.COPYFILE_EXCL);
    await rename(part, to);
  } catch (err) {
    await rm(part, { force: true }).catch(() => {});
    throw fromFsError(err, 'copy', from);
  }
}

/** Removes a copy made by {@link setAside} (the archive it kept is still in place), best effort. */
async function dropAside(to: string): Promise<void> {
  await rm(to, { force: true }).catch(() => {});
  await rm(to + SIDECAR_SUFFIX, { force: true }).catch(() => {});
}

/** Whether an archive's manifest holds the very rows of these spools, table by table (count, bytes and range digest). */
function sameRows(m: PartitionManifest, read: readonly { table: string; spool: RowSpool }[]): boolean {
  return m.tables.length === read.length && m.tables.every((t, i) => t.name === read[i]!.table && t.count === read[i]!.spool.digest.count && t.bytes === read[i]!.spool.digest.bytes && t.digest === read[i]!.spool.digest.digest);
}

/**
 * Whether every row of the partial archive `m` is still in `read`: per
 * table, the first `count` rows read now (in key order) digest as the
 * archive's rows did. True for a tail that only gained rows above its old
 * ones (the common case: nothing to keep); false where one of its rows was
 * deleted or changed since, also when others were added meanwhile (or a
 * late row landed among the old ones, which errs on the side of keeping).
 */
async function keepsRows(m: PartitionManifest, read: readonly { keyIndex: number; spool: RowSpool }[]): Promise<boolean> {
  for (const [i, t] of m.tables.entries()) {
    const r = read[i];
    if (r === undefined || r.spool.digest.count < t.count) return false;
    if (t.count === 0) continue;
    const digester = new RangeDigester({ keyIndex: r.keyIndex });
    const splitter = new LineSplitter();
    let n = 0;
    for await (const chunk of r.spool.read()) {
      splitter.push(chunk, (line) => {
        if (n < t.count) {
          digester.update(line);
          n++;
        }
      });
      if (n >= t.count) break;
    }
    const d = digester.digest();
    if (d.count !== t.count || d.digest !== t.digest) return false;
  }
  return true;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isFile();
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fromFsError(err, 'stat', path);
  }
}

/**
 * Cuts tables into key ranges and archives each range once.
 *
 * @example
 * ```ts
 * await using db = new MysqlSource({ host, user, password, database: 'offline_db' });
 * const p = new Partitioner(db, { tables: ['CalibPmtSpec', 'CalibPmtSpecVld'], outDir: '/backup/dbi' });
 * const { written } = await p.dump();          // only new ranges and changed partial ones
 * // elsewhere:
 * await Partitioner.restore(otherDb, '/backup/dbi');
 * const report = await Partitioner.compare(db, otherDb, 'CalibPmtSpecVld');
 * ```
 */
export class Partitioner {
  /** The database dumped. */
  readonly source: TableSource;
  /** The tables of the group (one for a single table). */
  readonly tables: readonly string[];
  /** The key column. */
  readonly key: string;
  /** Keys per partition. */
  readonly rowsPerPartition: bigint;
  /** First key of partition 0. */
  readonly base: bigint;
  /** The partition folder: `outDir/NAME`. */
  readonly dir: string;
  readonly #grid: PartitionGrid;
  readonly #catalog: Catalog | undefined;
  readonly #gzipLevel: number;
  readonly #spoolBytes: number;
  readonly #settle: bigint;

  /**
   * @param source - the database to dump
   * @param options - see {@link PartitionerOptions}
   */
  constructor(source: TableSource, options: PartitionerOptions) {
    checkOptionKeys('Partitioner', options, OPTION_KEYS);
    if (!isSource(source)) throw bad('the source must be a TableSource (MysqlSource, PostgresSource, SqliteSource).', 'source');
    if (typeof options?.outDir !== 'string' || options.outDir.length === 0) throw bad('option "outDir" must be a non-empty path.', 'outDir');
    this.source = source;
    this.tables = Object.freeze(checkTables(options));
    this.key = checkIdentifier('Partitioner', 'key', options.key ?? 'SEQNO');
    const size = toKeyBound('Partitioner', 'rowsPerPartition', options.rowsPerPartition ?? 10000);
    if (size < 1n) throw bad(`option "rowsPerPartition" must be at least 1, got ${size}.`, 'rowsPerPartition');
    this.rowsPerPartition = size;
    this.base = toKeyBound('Partitioner', 'base', options.base ?? 1);
    this.#grid = new PartitionGrid(size, this.base);
    const name = options.name ?? this.tables[0]!;
    checkIdentifier('Partitioner', 'name', name);
    const folder = tableDirName(name);
    // File systems take names of up to 255 bytes; a non-ASCII name takes 3 per byte encoded.
    if (folder.length > 255) {
      throw bad(`the folder name of ${JSON.stringify(name)} would be ${folder.length} bytes once encoded (each byte outside A-Z, a-z, 0-9, "_", "-" and "." as %XX), more than the 255 a file system takes: give the option "name" a shorter folder name.`, 'name');
    }
    this.dir = join(resolve(options.outDir), folder);
    if (options.catalog !== undefined && (typeof options.catalog !== 'object' || typeof (options.catalog as Catalog).recordPartition !== 'function')) {
      throw bad('option "catalog" must be a Catalog.', 'catalog');
    }
    this.#catalog = options.catalog;
    this.#gzipLevel = checkInt('Partitioner', 'gzipLevel', options.gzipLevel ?? 1, 1, 9);
    this.#spoolBytes = checkInt('Partitioner', 'spoolMemoryBytes', options.spoolMemoryBytes ?? 32 * MiB, 0);
    this.#settle = BigInt(checkInt('Partitioner', 'settleRanges', options.settleRanges ?? 1, 0, 1000));
  }

  /**
   * Lists the ranges and their state; reads the database and the archived
   * state, writes nothing. EBAD_CONFIG if a table holds rows whose key is
   * NULL (no range would hold them) or the folder holds partitions of
   * another size; ENO_TABLE for a missing table or key column.
   *
   * @param options - signal
   */
  async plan(options: PlanOptions = {}): Promise<PartitionPlan> {
    options ??= {};
    checkOptionKeys('Partitioner.plan', options, ['signal']);
    checkSignalOption('Partitioner.plan', options.signal);
    return this.#plan(options.signal);
  }

  async #plan(signal: AbortSignal | undefined): Promise<PartitionPlan> {
    const p = await this.#planWithColumns(signal);
    return p.planOf(await p.rows);
  }

  /**
   * The plan (given its row count), the row count, and the columns of each
   * table (read for it, reused by a dump).
   *
   * Where the source offers {@link KeyProbes} (MysqlSource,
   * PostgresSource), the partitions are found from the key's bounds and
   * next keys asked 64 at a time, while the rows are counted beside
   * (`rows`): a dump does not wait for the count (a full scan of the key
   * index, ~0.4 s per 1M rows in MariaDB) before its first range, only
   * before it returns. Elsewhere `keyRange()` gives both, first.
   */
  async #planWithColumns(signal: AbortSignal | undefined): Promise<{ planOf: (rows: number) => PartitionPlan; rows: Promise<number>; stopCount: () => Promise<void>; columns: ColumnInfo[][]; fromDisk: FromDisk }> {
    throwIfAborted(signal);
    const grid = this.#grid;
    const probes = keyProbesOf(this.source);
    const countStop = new AbortController();
    const counted = Promise.all(this.tables.map((t) => this.source.keyRange(t, this.key, { signal: anySignal(signal, countStop.signal) })));
    // Awaited below, or by the caller through `rows`; failing first elsewhere, it must not go unhandled.
    counted.catch(() => {});
    /** Stops the count (a failed dump does not wait for it) and waits until its query is over. */
    const stopCount = async (): Promise<void> => {
      countStop.abort(new StowageError('EABORTED', 'The plan is no longer needed.'));
      await counted.catch(() => {});
    };
    try {
      return await this.#planFrom(grid, probes, counted, stopCount, signal);
    } catch (err) {
      await stopCount();
      throw err;
    }
  }

  /** The rest of {@link #planWithColumns}, once the count is under way. */
  async #planFrom(
    grid: PartitionGrid,
    probes: KeyProbes | undefined,
    counted: Promise<KeyRange[]>,
    stopCount: () => Promise<void>,
    signal: AbortSignal | undefined,
  ): Promise<{ planOf: (rows: number) => PartitionPlan; rows: Promise<number>; stopCount: () => Promise<void>; columns: ColumnInfo[][]; fromDisk: FromDisk }> {
    const [ranges, columns] = await Promise.all([
      probes === undefined ? counted : Promise.all(this.tables.map((t) => probes.bounds(t, this.key, { signal }))),
      Promise.all(this.tables.map((t) => this.source.columns(t, { signal }))),
    ]);
    // NULL keys: refused with their count (counted, then, before anything else).
    const nullsAt = ranges.findIndex((r) => (typeof r.nulls === 'boolean' ? r.nulls : r.nulls > 0));
    if (nullsAt >= 0) {
      const nulls = (await counted)[nullsAt]!.nulls;
      throw new StowageError('EBAD_CONFIG', `Table ${JSON.stringify(this.tables[nullsAt])} in ${this.source.name} has ${nulls} row(s) whose key ${JSON.stringify(this.key)} is NULL: no partition would hold them. Give them a key, or partition on another column.`, {
        details: { source: this.source.name, table: this.tables[nullsAt], option: 'key', nulls },
      });
    }
    let lo: bigint | null = null;
    let hi: bigint | null = null;
    for (const r of ranges) {
      if (r.lo !== null && (lo === null || r.lo < lo)) lo = r.lo;
      if (r.hi !== null && (hi === null || r.hi > hi)) hi = r.hi;
    }
    const rows = counted.then((rs) => rs.reduce((n, r) => n + r.count, 0));
    rows.catch(() => {});
    const fromDisk: FromDisk = new Map();
    const archived = await this.#archivedState(fromDisk, signal);

    // The occupied ranges, walked from one to the next.
    const occupied: bigint[] = [];
    if (lo !== null && hi !== null) {
      const cursors = this.tables.map((t, n) => {
        const cols = columns[n]!;
        const r = ranges[n]!;
        // Without the count, density is not known: the probes answer 64 ranges a query.
        const extent = 'count' in r ? keyExtent(r, cols, findColumn(this.source.name, t, cols, this.key).column.name) : r.lo === null || r.hi === null ? null : { lo: r.lo, hi: r.hi, dense: false };
        return new KeyCursor(this.source, t, this.key, this.rowsPerPartition, extent, probes);
      });
      const tail = grid.indexOf(hi);
      let i = grid.indexOf(lo);
      for (;;) {
        occupied.push(i);
        if (i >= tail) break;
        const from = grid.hi(i) + 1n;
        let next: bigint | null = null;
        for (const c of cursors) {
          const k = await c.next(from, signal);
          if (k !== null && (next === null || k < next)) next = k;
          // A key in the very next range cannot be beaten: the other tables need not be asked.
          if (next !== null && grid.indexOf(next) === i + 1n) break;
        }
        if (next === null) break;
        i = grid.indexOf(next);
      }
    }

    // The tail is the lowest of the tables' own last ranges: a range is
    // complete only once every table of the group has passed it, so that the
    // rows of a table lagging behind the others (payload rows written after
    // their validity rows) are not archived without it for good. A table of
    // the group with no rows yet holds every range partial.
    let tailIndex: bigint | undefined;
    if (lo !== null) {
      for (const r of ranges) {
        const t = r.hi === null ? grid.indexOf(lo) : grid.indexOf(r.hi);
        if (tailIndex === undefined || t < tailIndex) tailIndex = t;
      }
    }
    const byIndex = new Map<bigint, ArchivedPartition>();
    for (const a of archived.values()) byIndex.set(grid.indexOf(a.lo), a.archive);
    const indices = [...new Set([...occupied, ...byIndex.keys()])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const occupiedSet = new Set(occupied);
    const partitions: PlannedPartition[] = [];
    let prev: bigint | undefined;
    for (const i of indices) {
      if (prev !== undefined && i > prev + 1n) {
        partitions.push(Object.freeze({ lo: grid.lo(prev + 1n), hi: grid.hi(i - 1n), state: 'empty', occupied: false, path: undefined, archived: undefined }));
      }
      prev = i;
      const a = byIndex.get(i);
      const isOccupied = occupiedSet.has(i);
      let state: PlannedState;
      // A complete archive is written once and never again: not even when
      // its range is the tail once more because the rows above it were
      // deleted (rewriting it would drop the deleted rows from every backup).
      if (a !== undefined && a.complete) state = 'archived';
      // A range with a partial archive whose rows are all gone since is
      // written again like any other (empty, the old archive kept aside):
      // its archive would otherwise bring the deleted rows back on every
      // restore. Not where the group has no rows at all, or none at or
      // below the range (rows purged from the bottom, a table emptied by
      // mistake): the archive keeps what the source no longer has.
      else if (a !== undefined && !isOccupied && (lo === null || grid.hi(i) < lo)) state = 'archived';
      else if (tailIndex === undefined || i >= tailIndex - this.#settle) state = 'partial';
      else state = 'complete';
      const plo = grid.lo(i);
      const phi = grid.hi(i);
      partitions.push(Object.freeze({ lo: plo, hi: phi, state, occupied: isOccupied, path: join(this.dir, partitionFileName(plo, phi)), archived: a }));
    }
    const frozen = Object.freeze(partitions);
    const planOf = (n: number): PartitionPlan =>
      Object.freeze({
        tables: this.tables,
        key: this.key,
        rowsPerPartition: this.rowsPerPartition,
        base: this.base,
        dir: this.dir,
        keyRange: Object.freeze({ lo, hi, rows: n }),
        stateFrom: this.#catalog === undefined ? 'disk' : 'catalog',
        partitions: frozen,
      });
    return { planOf, rows, stopCount, columns, fromDisk };
  }

  /** EBAD_CONFIG unless `[lo, hi]` is a range of this Partitioner's grid. */
  #checkGrid(lo: bigint, hi: bigint, where: string): void {
    if (!this.#grid.isPartition(lo, hi)) {
      throw new StowageError('EBAD_CONFIG', `${where} holds the range [${lo}, ${hi}], which is not a partition of ${this.rowsPerPartition} keys from base ${this.base}: use the rowsPerPartition and base it was written with, or another outDir.`, {
        details: { dir: this.dir, lo: lo.toString(), hi: hi.toString(), option: 'rowsPerPartition' },
      });
    }
  }

  /** The archives already written, keyed by `lo`, from the Catalog or the folder. */
  async #archivedState(fromDisk: FromDisk, signal: AbortSignal | undefined): Promise<Map<bigint, { lo: bigint; archive: ArchivedPartition }>> {
    const out = new Map<bigint, { lo: bigint; archive: ArchivedPartition }>();
    const grid = this.#grid;
    if (this.#catalog !== undefined) {
      const catalog = this.#catalog;
      const perTable = this.tables.map((t) => new Map(catalog.partitions(this.source.name, t, { key: this.key }).map((r) => [`${r.lo}:${r.hi}`, r] as const)));
      for (const r of perTable[0]!.values()) {
        if ((r.state !== 'archived' && r.state !== 'partial') || r.archivePath === null || dirname(r.archivePath) !== this.dir) continue;
        throwIfAborted(signal);
        const recs = perTable.map((m) => m.get(`${r.lo}:${r.hi}`));
        if (recs.some((x) => x === undefined || x.archivePath !== r.archivePath || x.state !== r.state)) continue;
        // The file must still be the archive the Catalog recorded: one put
        // back from elsewhere (an older partial tail from a lagging mirror,
        // say) has another DNA, and is judged by what it holds, from disk.
        const side = await sidecarIfSizeMatches(r.archivePath);
        const recorded = side === undefined ? undefined : catalog.archive(r.archivePath);
        if (side === undefined || recorded === undefined || !dnaEqual(recorded.dna, side)) continue;
        // Only records of archives still there: a folder emptied by hand starts over on any grid.
        // A last range reaching past INT64_MAX is recorded up to INT64_MAX (see catalogBound).
        this.#checkGrid(r.lo, r.hi === INT64_MAX && grid.hi(grid.indexOf(r.lo)) > INT64_MAX ? grid.hi(grid.indexOf(r.lo)) : r.hi, `Catalog ${catalog.path}`);
        out.set(r.lo, {
          lo: r.lo,
          archive: Object.freeze({
            path: r.archivePath,
            complete: r.state === 'archived',
            tables: Object.freeze((recs as PartitionRecord[]).map((x) => Object.freeze({ name: x.table, rows: x.rows, digest: x.digest }))),
          }),
        });
      }
      // Archives on disk that the Catalog does not know of (written before
      // it was used, or recorded for another outDir since) count too:
      // otherwise a complete one would be written again, from a source
      // whose archived rows may have been purged.
      await this.#archivedOnDisk(out, fromDisk, signal);
      return out;
    }
    await this.#archivedOnDisk(out, fromDisk, signal);
    return out;
  }

  /** Adds to `out` the intact archives of the folder whose range it lacks (see {@link Partitioner.plan}). */
  async #archivedOnDisk(out: Map<bigint, { lo: bigint; archive: ArchivedPartition }>, fromDisk: FromDisk, signal: AbortSignal | undefined): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromFsError(err, 'list', this.dir);
    }
    const have = new Set(names);
    for (const n of names.sort()) {
      const b = parsePartitionFileName(n);
      if (b === undefined || out.has(b.lo) || !have.has(n + SIDECAR_SUFFIX)) continue;
      throwIfAborted(signal);
      this.#checkGrid(b.lo, b.hi, `Folder ${this.dir}`);
      const path = join(this.dir, n);
      // A damaged archive is not an archived partition: the dump writes it
      // again (and sets the damaged one aside). A cut file keeps a readable
      // manifest at its start: its size is checked against the sidecar.
      const dna = await sidecarIfSizeMatches(path);
      if (dna === undefined) continue;
      let m: PartitionManifest;
      try {
        m = await readManifest(path, signal);
      } catch (err) {
        // A damaged archive is not an archived partition: the dump writes it again.
        if (isStowageError(err, 'ECORRUPT_ARCHIVE')) continue;
        throw err;
      }
      if (m.key !== this.key) {
        const spelling = m.key.toLowerCase() === this.key.toLowerCase() ? `if that is the same column spelled otherwise, pass key: ${JSON.stringify(m.key)} as the earlier dumps did (manifests and Catalog records keep the key as given); otherwise ` : '';
        throw new StowageError('EBAD_CONFIG', `${path} partitions on the key ${JSON.stringify(m.key)}, not ${JSON.stringify(this.key)}: ${spelling}use another outDir or name.`, { details: { path, option: 'key', archivedKey: m.key } });
      }
      if (m.lo !== b.lo || m.hi !== b.hi) continue;
      const sameTables = m.tables.length === this.tables.length && m.tables.every((t, i) => t.name === this.tables[i]);
      if (!sameTables) {
        // Rewriting it with other tables would drop the rows of the ones it holds (a group's archive dumped again as one table).
        throw new StowageError(
          'EBAD_CONFIG',
          `${path} holds the tables ${m.tables.map((t) => JSON.stringify(t.name)).join(', ')}, and this Partitioner dumps ${this.tables.map((t) => JSON.stringify(t)).join(', ')}: dumping here would overwrite their archives. Dump the same tables together, or use another outDir or name.`,
          { details: { path, option: 'tables', archived: m.tables.map((t) => t.name), tables: [...this.tables] } },
        );
      }
      fromDisk.set(path, { dna, created: m.created });
      out.set(b.lo, {
        lo: b.lo,
        archive: Object.freeze({
          path,
          complete: m.complete,
          tables: Object.freeze(m.tables.map((t) => Object.freeze({ name: t.name, rows: t.count, digest: t.digest }))),
        }),
      });
    }
  }

  /**
   * Archives the ranges of the plan: incrementally (default) the complete
   * ranges not yet archived in their final form and the partial ones when
   * their rows changed; with `incremental: false` every occupied range. Each range is
   * read in one snapshot, then written atomically with its sidecar, and
   * recorded in the Catalog (with the runs of empty ranges). On failure or
   * abort, the archives finished so far stay and no partial archive is left.
   * A damaged archive in the way (cut short, rotted, its sidecar lost), or
   * in a full dump a complete one whose rows differ from the source's now,
   * is kept aside, never lost: see {@link DumpResult.setAside}.
   * ELOCKED if another dump holds the folder; a complete range whose rows
   * changed after it was archived is not noticed (complete ranges are
   * written once): {@link Partitioner.compare} finds such changes.
   *
   * @param options - see {@link DumpOptions}
   */
  async dump(options: DumpOptions = {}): Promise<DumpResult> {
    options ??= {};
    checkOptionKeys('Partitioner.dump', options, ['incremental', 'concurrency', 'signal', 'onProgress']);
    checkSignalOption('Partitioner.dump', options.signal);
    const { signal, onProgress } = options;
    checkBooleanOption('Partitioner.dump', 'incremental', options.incremental);
    if (onProgress !== undefined && typeof onProgress !== 'function') throw bad('option "onProgress" must be a function.', 'onProgress');
    const incremental = options.incremental ?? true;
    const concurrency = checkInt('Partitioner.dump', 'concurrency', options.concurrency ?? 2, 1, 64);
    throwIfAborted(signal);
    try {
      await mkdirRecursive(this.dir);
    } catch (err) {
      throw fromFsError(err, 'create directory', this.dir);
    }
    // One dump at a time per folder (two would write the same NAME.part); readers such as sync() skip the folder meanwhile.
    const lock = new LockDir(this.dir, { purpose: `Partitioner.dump of ${this.tables.join(', ')} from ${this.source.name}` });
    return lock.withLock((lockSignal) => this.#dump(incremental, concurrency, lockSignal, onProgress), signal === undefined ? {} : { signal });
  }

  async #dump(incremental: boolean, concurrency: number, signal: AbortSignal, onProgress: ProgressCallback | undefined): Promise<DumpResult> {
    // The lock's own signal, listened to by every range in flight (its row
    // streams, spool and archive write, a few each): past node's default of
    // 10 it would print MaxListenersExceededWarning without any leak.
    setMaxListeners(Math.max(10, concurrency * 8 + 10), signal);
    const leftovers = Object.freeze(await this.#removeLeftovers());
    // Columns and DDL are read once per dump (not per range), beside the plan: a table's schema is expected to hold still while it is dumped.
    const planning = this.#planWithColumns(signal);
    let schemas: string[];
    try {
      schemas = await Promise.all(this.tables.map((t) => this.source.schema(t, { signal })));
    } catch (err) {
      await planning.then((p) => p.stopCount(), () => {});
      throw err;
    }
    const { planOf, rows: counted, stopCount, columns, fromDisk } = await planning;
    try {
      return await this.#dumpPlanned(planOf, counted, columns, fromDisk, schemas, leftovers, incremental, concurrency, signal, onProgress);
    } catch (err) {
      await stopCount();
      throw err;
    }
  }

  /** The rest of {@link #dump}, once planned; the row count of the result's plan is taken beside it (see #planWithColumns). */
  async #dumpPlanned(
    planOf: (rows: number) => PartitionPlan,
    counted: Promise<number>,
    columns: ColumnInfo[][],
    fromDisk: FromDisk,
    schemas: string[],
    leftovers: readonly string[],
    incremental: boolean,
    concurrency: number,
    signal: AbortSignal,
    onProgress: ProgressCallback | undefined,
  ): Promise<DumpResult> {
    // The ranges do not need the row count: the plan's is filled in at the end.
    const plan = planOf(0);
    // What the plan says to write (ranges with rows, and those whose partial archive lost all its rows: written again, empty);
    // a full dump writes every range with rows besides, its complete archives too.
    const todo = plan.partitions.filter((p) => p.state === 'complete' || p.state === 'partial' || (!incremental && p.occupied));
    const meta: TableMeta[] = this.tables.map((table, i) => ({
      table,
      columns: columns[i]!.map((c) => c.name),
      types: columns[i]!.map((c) => c.type),
      keyIndex: findColumn(this.source.name, table, columns[i]!, this.key).index,
      uniqueKey: isUniqueKey(columns[i]!, findColumn(this.source.name, table, columns[i]!, this.key).column.name),
      schema: Buffer.from(schemas[i]!, 'utf8'),
    }));
    // The Catalog holds keys as 64-bit signed integers: a range starting past
    // 2^63-1 (MySQL BIGINT UNSIGNED) cannot be recorded. Refused before any
    // archive is written, rather than after one without its record.
    const beyond = this.#catalog === undefined ? undefined : plan.partitions.find((p) => p.lo > INT64_MAX);
    if (beyond !== undefined) {
      throw new StowageError(
        'EBAD_CONFIG',
        `Partitioner: ${this.tables.map((t) => JSON.stringify(t)).join(', ')} in ${this.source.name} hold(s) keys from ${beyond.lo} on, past 2^63-1, which the Catalog cannot record (it stores 64-bit signed keys). Dump these tables without the "catalog" option (their state is then read from the archives on disk). Nothing was written.`,
        { details: { source: this.source.name, tables: [...this.tables], option: 'catalog', lo: beyond.lo.toString() } },
      );
    }
    const progress = new ProgressTracker('dump', onProgress, { itemsTotal: todo.length });
    this.#recordFromDisk(plan, fromDisk);
    this.#recordEmpty(plan);

    const written: WrittenPartition[] = [];
    const unchanged: { lo: bigint; hi: bigint }[] = [];
    const done = (p: PlannedPartition, w: WrittenPartition | undefined): void => {
      if (w === undefined) unchanged.push({ lo: p.lo, hi: p.hi });
      else written.push(w);
      // Each range done is reported, unthrottled: ranges are few and each is worth knowing of.
      progress.itemsDone++;
      progress.report(true);
    };
    const setAsideList: string[] = [];
    // The dump's own hasher, at the process's priority: the range digest is on
    // the dump's critical path (a range is written once it is known), unlike
    // the DNA of an archive, which the shared, lower-priority one computes.
    // Its thread starts with the first range of 256 KiB or more.
    const hasher = new BlockHasher(MiB, 16);
    const ctx: DumpContext = { meta, incremental, gzipConcurrency: Math.max(1, Math.min(4, availableParallelism())), progress, signal, done, setAside: setAsideList, hasher };
    // A single table is read in runs of consecutive ranges, one query per run; a group range by range (one connection cannot stream two tables at once).
    const jobs = this.tables.length === 1 ? blocksOf(plan, todo, Math.min(MAX_BLOCK, Math.max(1, Math.ceil(todo.length / concurrency)))) : todo.map((p) => [p]);
    let next = 0;
    let failure: unknown;
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < jobs.length) {
        const job = jobs[next++]!;
        try {
          throwIfAborted(signal);
          if (this.tables.length === 1) await this.#dumpBlock(job, ctx);
          else done(job[0]!, await this.#dumpOne(job[0]!, ctx));
        } catch (err) {
          failure ??= err;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, jobs.length)) }, worker));
    } finally {
      await hasher.close();
    }
    if (failure !== undefined) {
      if (signal?.aborted) throw signal.reason;
      throw failure;
    }
    progress.report(true);
    const byKey = (a: { lo: bigint }, b: { lo: bigint }): number => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0);
    written.sort(byKey);
    unchanged.sort(byKey);
    let rows = 0;
    let bytes = 0;
    let archiveBytes = 0;
    for (const w of written) {
      archiveBytes += w.dna.size;
      for (const t of w.tables) {
        rows += t.rows;
        bytes += t.bytes;
      }
    }
    return Object.freeze({ plan: planOf(await counted), written: Object.freeze(written), unchanged: Object.freeze(unchanged), rows, bytes, archiveBytes, setAside: Object.freeze(setAsideList.sort()), leftovers });
  }

  /** Reads one range of every table of the group in a snapshot and writes its archive, unless it equals the archive already there. */
  async #dumpOne(p: PlannedPartition, ctx: DumpContext): Promise<WrittenPartition | undefined> {
    const { signal, progress } = ctx;
    const path = p.path!;
    const read: (TableMeta & { spool: RowSpool })[] = [];
    let filling: Promise<void> | undefined;
    try {
      await this.source.snapshot(
        async (reader: TableReader) => {
          for (const [i, m] of ctx.meta.entries()) {
            // The columns the manifest names, as the plan read them: a column
            // added since is left out, one dropped since fails the dump.
            const stream = await reader.rows(m.table, { key: this.key, lo: p.lo, hi: p.hi, columns: m.columns, signal });
            // The snapshot settles as soon as it is aborted; the fill is awaited below so that its spill file is gone before dump() returns.
            filling = RowSpool.fill(stream, {
              keyIndex: m.keyIndex,
              uniqueKey: m.uniqueKey,
              memoryBytes: this.#spoolBytes,
              spillPath: `${path}.${i}.spool`,
              signal,
              onBytes: (n) => progress.add(n),
              hasher: ctx.hasher,
            }).then((spool) => {
              read.push({ ...m, spool });
            });
            try {
              await filling;
            } finally {
              stream.destroy();
            }
          }
        },
        { signal },
      );
      return await this.#writePartition(p, read, ctx);
    } finally {
      await filling?.catch(() => {});
      await Promise.all(read.map((r) => r.spool.dispose()));
    }
  }

  /**
   * Reads a run of consecutive ranges of the (single) table with one query
   * in one snapshot, cutting the stream at the range boundaries; each range
   * is written as soon as it is read, while the next ones are being read:
   * up to `MAX_WRITES` writes in flight, as long as the rows they hold
   * in memory stay within `spoolMemoryBytes` (one always may), so memory
   * holds about two spools' worth at most, as with one write in flight.
   * A range's write takes longer than its read (deflate, fsync of the
   * archive, its sidecar and folder): with one write in flight the read
   * stalled behind it. 1M rows from MariaDB in 10k-row ranges, 2 cores,
   * 8 interleaved runs each: 3.52 s with one write in flight, 3.19 s with
   * two, 3.05 s with three.
   */
  async #dumpBlock(block: readonly PlannedPartition[], ctx: DumpContext): Promise<void> {
    const { signal, progress } = ctx;
    const m = ctx.meta[0]!;
    const writers = new Map<number, SpoolWriter>();
    let handed = 0;
    /** Writes in flight, oldest first, with the bytes of rows each holds in memory. */
    const writes: { done: Promise<void>; bytes: number }[] = [];
    const writerOf = (j: number): SpoolWriter => {
      let w = writers.get(j);
      if (w === undefined) {
        w = RowSpool.writer({ keyIndex: m.keyIndex, uniqueKey: m.uniqueKey, memoryBytes: this.#spoolBytes, spillPath: `${block[j]!.path!}.0.spool`, signal, onBytes: (n) => progress.add(n), hasher: ctx.hasher });
        writers.set(j, w);
      }
      return w;
    };
    /** Ranges before `upTo` are read: write them, waiting while the writes in flight are as many, or hold as much memory, as allowed. */
    const handOff = async (upTo: number): Promise<void> => {
      while (handed < upTo) {
        const j = handed++;
        const spool = await writerOf(j).finish();
        writers.delete(j);
        const bytes = spool.spilled ? 0 : spool.bytes;
        try {
          while (writes.length > 0 && (writes.length >= MAX_WRITES || writes.reduce((n, w) => n + w.bytes, bytes) > this.#spoolBytes)) await writes.shift()!.done;
        } catch (err) {
          // A write before failed (or was aborted): this range is never
          // written, and its spool (maybe a spill file) goes now.
          await spool.dispose();
          throw err;
        }
        const p = block[j]!;
        const done = (async () => {
          try {
            ctx.done(p, await this.#writePartition(p, [{ ...m, spool }], ctx));
          } finally {
            await spool.dispose();
          }
        })();
        // A failure surfaces when the write is awaited, as the oldest in flight or at the end.
        done.catch(() => {});
        writes.push({ done, bytes });
      }
    };
    let reading: Promise<void> | undefined;
    try {
      await this.source.snapshot(
        async (reader: TableReader) => {
          // The manifest's columns, as in #dumpOne.
          const stream = await reader.rows(m.table, { key: this.key, lo: block[0]!.lo, hi: block.at(-1)!.hi, columns: m.columns, signal });
          const cutter = new RangeCutter(
            block.map((p) => p.hi),
            m.keyIndex,
            reader.name,
            m.table,
            async (j, piece) => {
              await handOff(j);
              await writerOf(j).write(piece);
            },
            // A row in an empty range between two of the block (committed since the plan) is left for a later run.
            block.map((p) => p.lo),
          );
          // Awaited in `finally` too: the snapshot settles as soon as it is aborted.
          reading = (async () => {
            try {
              for await (const chunk of stream as AsyncIterable<Buffer>) {
                throwIfAborted(signal);
                await cutter.push(chunk);
              }
              cutter.end();
            } finally {
              stream.destroy();
            }
          })();
          await reading;
        },
        { signal },
      );
      await handOff(block.length);
      while (writes.length > 0) await writes.shift()!.done;
    } finally {
      await reading?.catch(() => {});
      for (const w of writes.splice(0)) await w.done.catch(() => {});
      await Promise.all([...writers.values()].map((w) => w.abort()));
    }
  }

  /**
   * Removes what a dump of this folder that died left behind (see
   * {@link DumpResult.leftovers}); called under the folder's lock, so no
   * live writer owns them. Names only this Partitioner makes; anything else
   * in the folder stays. Returns their paths, sorted.
   */
  async #removeLeftovers(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromFsError(err, 'list', this.dir);
    }
    const gone: string[] = [];
    for (const name of names.filter(isLeftover).sort()) {
      const path = join(this.dir, name);
      const st = await lstat(path).catch(() => undefined);
      if (st === undefined || !(st.isFile() || st.isSymbolicLink())) continue;
      try {
        await rm(path, { force: true });
      } catch (err) {
        throw fromFsError(err, 'remove', path);
      }
      gone.push(path);
    }
    return gone;
  }

  /** Writes a range's archive from its spools, unless incremental and equal to the archive already there. */
  async #writePartition(p: PlannedPartition, read: readonly (TableMeta & { spool: RowSpool })[], ctx: DumpContext): Promise<WrittenPartition | undefined> {
    const path = p.path!;
    const complete = p.state !== 'partial';
    const a = p.archived;
    if (ctx.incremental && a !== undefined && a.complete === complete && a.tables.length === read.length && a.tables.every((t, i) => t.name === read[i]!.table && t.rows === read[i]!.spool.digest.count && t.digest === read[i]!.spool.digest.digest)) {
      return undefined;
    }
    /** A copy kept of the archive in the way (see {@link setAside}). */
    let aside: string | undefined;
    // (Something else in the way, such as a folder, fails the write below.)
    if (await isFile(path)) {
      // Only damage makes it "not intact": an archive that cannot be read
      // at all (EACCES, EIO) fails the dump, and is neither set aside nor overwritten.
      const there = await readManifest(path, ctx.signal).catch((err: unknown) => {
        if (ctx.signal?.aborted) throw ctx.signal.reason;
        if (isStowageError(err, 'ECORRUPT_ARCHIVE')) return undefined;
        throw err;
      });
      // An archive already there that holds other tables (a group's, found
      // through the Catalog by a Partitioner of one of its tables) is never
      // overwritten: its other tables' rows would be lost.
      if (there !== undefined && !(there.tables.length === read.length && there.tables.every((t, i) => t.name === read[i]!.table))) {
        throw new StowageError(
          'EBAD_CONFIG',
          `${path} holds the tables ${there.tables.map((t) => JSON.stringify(t.name)).join(', ')}, and this Partitioner dumps ${read.map((r) => JSON.stringify(r.table)).join(', ')}: dumping here would overwrite their archives. Dump the same tables together, or use another outDir or name.`,
          { details: { path, option: 'tables', archived: there.tables.map((t) => t.name), tables: read.map((r) => r.table) } },
        );
      }
      const dna = there !== undefined && there.key === this.key && there.lo === p.lo && there.hi === p.hi ? await verifiedDna(path, ctx.signal) : undefined;
      const intact = dna !== undefined;
      // A complete archive is written once: one the plan did not count
      // (written by another run since, or by a run that failed before it
      // could record it) stays as it is, and the Catalog learns of it:
      // otherwise it would go on describing what was there before (a
      // partial tail, another DNA) for good, and the Monitor would find
      // the archive "not matching its recorded DNA" on every check.
      if (intact && there!.complete && ctx.incremental) {
        this.#recordArchiveFound(p.lo, p.hi, path, dna, there!);
        return undefined;
      }
      // A damaged one (cut, rotted, its sidecar lost, unreadable) is kept
      // aside, not lost: it may hold rows the source no longer has. So is
      // a complete one that a full dump (incremental: false) would replace
      // with other rows: rows purged from the source since live on in it
      // alone. It stays in place until the new archive replaces it.
      if (!intact) aside = await setAside(path, ctx.signal);
      else if (there!.complete ? !sameRows(there!, read) : !(await keepsRows(there!, read))) aside = await setAside(path, ctx.signal, 'replaced');
    }
    return this.#writeRange(p, path, read, complete, ctx, aside);
  }

  /**
   * Writes the archive of range `p` from `read` to `path`, in place of what
   * is there, and records it. `aside`, the copy {@link setAside} kept of the
   * archive there, is reported once the new archive has replaced it, and
   * removed only if the write failed (the old archive is then still in
   * place): a failure after that (the Catalog's record) keeps it, since the
   * old archive is gone.
   */
  async #writeRange(p: PlannedPartition, path: string, read: readonly (TableMeta & { spool: RowSpool })[], complete: boolean, ctx: DumpContext, aside: string | undefined): Promise<WrittenPartition> {
    const created = new Date();
    const tables: ManifestTable[] = read.map((r) => {
      const dir = tableDirName(r.table);
      const d = r.spool.digest;
      return Object.freeze({ name: r.table, schema: `${dir}/schema.sql`, rows: `${dir}/rows.tsv`, columns: r.columns, types: r.types, keyIndex: r.keyIndex, count: d.count, bytes: d.bytes, digest: d.digest, sha256: d.sha256 });
    });
    const manifest: PartitionManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      engine: this.source.engine,
      source: this.source.name,
      key: this.key,
      lo: p.lo,
      hi: p.hi,
      rowsPerPartition: this.rowsPerPartition,
      base: this.base,
      complete,
      created,
      tables,
    };
    const mbuf = formatManifest(manifest);
    const entries: ArchiveInputEntry[] = [{ name: MANIFEST_ENTRY, size: mbuf.length, data: mbuf }];
    read.forEach((r, i) => {
      const t = tables[i]!;
      entries.push({ name: t.schema, size: r.schema.length, data: r.schema });
      entries.push({ name: t.rows, size: r.spool.bytes, data: () => r.spool.read() });
    });
    let out: Awaited<ReturnType<typeof writePartitionArchive>>;
    try {
      out = await writePartitionArchive(path, entries, { gzipLevel: this.#gzipLevel, gzipConcurrency: ctx.gzipConcurrency, mtime: created, signal: ctx.signal });
    } catch (err) {
      // Not replaced: the old archive is still in place, and its copy goes.
      if (aside !== undefined) await dropAside(aside);
      throw err;
    }
    if (aside !== undefined) ctx.setAside.push(aside);
    const w: WrittenPartition = Object.freeze({
      lo: p.lo,
      hi: p.hi,
      path,
      dna: out.dna,
      complete,
      tables: Object.freeze(tables.map((t) => Object.freeze({ name: t.name, rows: t.count, bytes: t.bytes, digest: t.digest }))),
    });
    this.#recordWritten(w, created, out.bytesIn, entries.length);
    return w;
  }

  #recordWritten(w: WrittenPartition, created: Date, bytesIn: number, entries: number): void {
    const catalog = this.#catalog;
    if (catalog === undefined) return;
    catalog.transaction(() => {
      catalog.recordArchive({ path: w.path, dna: w.dna, created, bytesIn, entries });
      for (const t of w.tables) {
        catalog.recordPartition({ source: this.source.name, table: t.name, key: this.key, lo: w.lo, hi: catalogBound(w.hi), state: w.complete ? 'archived' : 'partial', rows: t.rows, digest: t.digest, archivePath: w.path });
      }
    });
  }

  /**
   * Records in the Catalog the archives the plan took from disk (written
   * before the Catalog was used, or recorded for another outDir since), so
   * that it knows every archive of this folder from now on; with the DNA
   * and date the plan read, not read again.
   */
  #recordFromDisk(plan: PartitionPlan, fromDisk: FromDisk): void {
    const catalog = this.#catalog;
    if (catalog === undefined || fromDisk.size === 0) return;
    catalog.transaction(() => {
      for (const p of plan.partitions) {
        const a = p.archived;
        const read = a === undefined ? undefined : fromDisk.get(a.path);
        if (a === undefined || read === undefined) continue;
        this.#recordArchiveIn(catalog, p.lo, p.hi, a.path, read.dna, read.created, a.complete, a.tables);
      }
    });
  }

  /** Records in the Catalog (if any) an intact archive found in the way of a write (see `#writePartition`), from its manifest and the DNA just verified. */
  #recordArchiveFound(lo: bigint, hi: bigint, path: string, dna: Dna, m: PartitionManifest): void {
    const catalog = this.#catalog;
    if (catalog === undefined) return;
    catalog.transaction(() => this.#recordArchiveIn(catalog, lo, hi, path, dna, m.created, m.complete, m.tables.map((t) => ({ name: t.name, rows: t.count, digest: t.digest }))));
  }

  /** One archive and its tables' partition records (inside the caller's transaction). */
  #recordArchiveIn(catalog: Catalog, lo: bigint, hi: bigint, path: string, dna: Dna, created: Date, complete: boolean, tables: readonly { name: string; rows: number; digest: string | null }[]): void {
    catalog.recordArchive({ path, dna, created });
    for (const t of tables) {
      catalog.recordPartition({ source: this.source.name, table: t.name, key: this.key, lo, hi: catalogBound(hi), state: complete ? 'archived' : 'partial', rows: t.rows, digest: t.digest, archivePath: path });
    }
  }

  /** Records the runs of empty ranges not recorded yet. */
  #recordEmpty(plan: PartitionPlan): void {
    const catalog = this.#catalog;
    if (catalog === undefined) return;
    const gaps = plan.partitions.filter((p) => p.state === 'empty');
    if (gaps.length === 0) return;
    const known = new Set(catalog.partitions(this.source.name, this.tables[0]!, { key: this.key }).filter((r) => r.state === 'empty').map((r) => `${r.lo}:${r.hi}`));
    const fresh = gaps.filter((g) => !known.has(`${g.lo}:${catalogBound(g.hi)}`));
    if (fresh.length === 0) return;
    catalog.transaction(() => {
      for (const g of fresh) {
        for (const table of this.tables) catalog.recordPartition({ source: this.source.name, table, key: this.key, lo: g.lo, hi: catalogBound(g.hi), state: 'empty', rows: 0 });
      }
    });
  }

  /**
   * Loads partition archives back into a database; see {@link RestoreOptions}.
   * Every archive's DNA is verified before anything is loaded (a mutant is
   * EDIGEST_MISMATCH and nothing is loaded), missing tables are created
   * from the archived DDL (same engine only), and each table's range is
   * replaced in one transaction whose rows are checked against the
   * manifest before it commits (neighbouring archives of one table that
   * replace nothing load in one transaction together, each checked
   * against its own manifest: a mismatch loads none of them). A group's range
   * that fails or is stopped halfway is taken out again of the tables
   * this restore created, so none holds it without the others. Where the
   * target keeps key sequences apart from the rows (PostgreSQL's serial
   * and identity columns), they are moved past the rows restored, in the
   * tables it created and in those that existed alike (see
   * {@link TableSource.advanceSequences}), so the next INSERT gets a new key.
   *
   * @param target - the database to load into
   * @param dir - an `outDir` (holding partition folders) or one partition folder
   * @param options - table, key range, concurrency, signal, progress
   */
  static restore(target: TableSource, dir: string, options: RestoreOptions = {}): Promise<RestoreResult> {
    return restorePartitions(target, dir, options);
  }

  /**
   * Compares a table in two databases range by range (counts and range
   * digests), and where a range differs, narrows it down by bisection to
   * the keys whose rows differ; see {@link CompareReport}. Rows are
   * compared by column name, so a side whose columns are in another order
   * (a table restored into an existing one) compares equal. Both sides
   * must be of one engine (EBAD_CONFIG otherwise): each writes its values
   * in its own text, so no row of a MariaDB table would equal its copy in
   * SQLite.
   *
   * @param a - one database (or snapshot reader)
   * @param b - the other
   * @param table - the table, named the same on both sides
   * @param options - key, grid, range, limits, signal, progress
   */
  static compare(a: TableReader, b: TableReader, table: string, options: CompareOptions = {}): Promise<CompareReport> {
    return compareTables(a, b, table, options);
  }
}
