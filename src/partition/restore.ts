/**
 * `Partitioner.restore`: partition archives back into a database.
 *
 * Order of work, and why:
 * 1. Find the archives (`DIR/<lo>-<hi>.tar.gz` under the folder given, or
 *    in it) that overlap the key range asked for. An archive that is gone
 *    while its `.dna` sidecar is there fails the restore (ENOT_FOUND,
 *    nothing loaded) rather than leave its range out.
 * 2. Verify the DNA of every one of them against its sidecar before
 *    loading anything: a mutant (or a missing sidecar) stops the restore
 *    with nothing loaded. Restoring from damaged backups silently is how
 *    data is lost twice. From 24 MiB of archives on, they are read and
 *    digested on up to 4 worker threads (one per core), since the target
 *    has nothing to do until they are all checked; fewer are digested on
 *    the main thread, each archive read once, into a buffer used again
 *    for the next (no memory allocated per archive), its DNA checked on
 *    the way.
 * 3. Read the manifests; refuse archives of another engine (bulk text and
 *    DDL are engine-specific). The manifests are read, and the target's
 *    tables listed, while step 2 runs (both only read; their errors are
 *    reported only once step 2 found every archive intact): a restore of a
 *    few partitions spends much of its time on such fixed costs. A manifest
 *    is read only from an archive whose DNA matched, from its first 16 KiB
 *    where it lies whole in them (it is the first entry).
 * 4. Check every archive's columns against the table its rows go to (an
 *    existing one, or the one to be created), before anything is created
 *    or loaded. Create the tables the target lacks from the DDL of their
 *    newest archive that has every column the others hold (a column added
 *    since the older archives is there, their rows take its default; one
 *    dropped since is kept from an older archive). Where the target can (PostgreSQL), a
 *    table created so gets its primary key, unique constraints and indexes
 *    only after its rows (step 6), and so do the CHECK constraints the
 *    source holds `NOT VALID` (added back `NOT VALID`: the archived rows
 *    may break them, as the source's older rows do).
 * 5. Load each table's range in one transaction of the target (replacing
 *    the rows it already has in that range), into the columns the manifest
 *    names, by name: a table of the target whose columns are in another
 *    order gets each value in its own column, one that lacks a column fails
 *    with ENO_TABLE, and a column the archive does not have takes its
 *    default. The rows are digested on
 *    their way in and compared with the manifest (bytes and SHA-256; count,
 *    bytes and range digest for archives whose manifest predates its
 *    `sha256`) before the input ends, so a mismatch fails the load and
 *    nothing of it is committed. A load the server rolled back as a
 *    deadlock victim (parallel loads over existing rows with secondary
 *    unique keys) is read from its archive and loaded again, a few times.
 *    While `concurrency` archives load, one more is read ahead: its rows
 *    are checked and up to 16 MiB of them buffered, so that the next load
 *    has rows to send as soon as a load ends. An archive read ahead is not
 *    loaded once another load has failed. The tables of a group archive
 *    (a validity table and its payload) load one after the other, each in
 *    its own transaction: when a later one fails or the restore is stopped
 *    there, the earlier ones lose the range again where this restore
 *    created their table, so that no validity rows are left without their
 *    payload (in tables that were there before they stay as loaded, and
 *    restoring again completes the range). Where the target checks
 *    foreign keys during a load (PostgreSQL: see `TableSource.references`),
 *    the archives of a table load only after those of the tables it refers
 *    to, among the tables restored, and those of a table that refers to
 *    its own rows one at a time, in key order.
 *    Neighbouring archives that each hold one table loaded without
 *    replacing a range (a table this restore created, or a range the
 *    target does not hold yet), with the same columns, load together:
 *    up to 16 archives and 32 MiB of rows in one load, that is one COPY
 *    or LOAD DATA in one transaction, each archive's rows still checked
 *    against its own manifest on the way, so that a mismatch in one loads
 *    none of them (see `loadUnits`). A statement and a transaction per
 *    archive cost the server more than the rows do: 1M rows into
 *    PostgreSQL, one connection, 100 COPYs took its backend 2.0-2.6
 *    cpu-s, one COPY 1.8-2.1.
 * 6. Build the indexes deferred at step 4, in one transaction per table,
 *    also when a load failed or the restore was aborted (over the rows
 *    committed), so that no table is left without them. Rows that break
 *    one (duplicate keys) fail the restore with EDB, and the table, which
 *    the restore created, is dropped. 1M rows in 100 archives into
 *    PostgreSQL: see the CHANGELOG for the figures.
 *
 * @module
 */
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { StowageError, fromFsError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { checkBooleanOption, checkFunctionOption, checkInt, checkOptionKeys, checkSignalOption } from '../util/options.js';
import { DnaDigest, SIDECAR_SUFFIX, dnaEqual, type Dna } from '../dna/index.js';
import { HashPool } from '../dna/hash-pool.js';
import { LineSplitter } from '../db/bulk-text.js';
import { RangeDigester } from '../db/range-digest.js';
import { checkIdentifier, findColumn, toKeyBounds, type ColumnInfo, type DeferredIndexes, type KeyBound, type KeyRange, type TableEngine, type TableSource } from '../db/table-source.js';
import { ArchiveBufferPool, archiveReadTuning, readArchive, roundUpMiB, type ArchiveBufferSource, type ArchiveBuffers } from '../archive/archive-reader.js';
import { fieldOf, parseKeyField } from './key-seek.js';
import { parsePartitionFileName, tableDirName } from './layout.js';
import { ROWS_HASH_ALGORITHM, type ManifestTable, type PartitionManifest } from './manifest.js';
import { MANIFEST_PEEK_BYTES, readSmallEntry, readVerifiedManifest } from './partition-archive.js';

/**
 * The table a PostgreSQL archive's DDL creates, as stored (its `CREATE
 * [UNLOGGED] TABLE "name" (` line, as `PostgresSource.schema` writes it),
 * or undefined where the text has no such line.
 */
function pgCreatedTable(ddl: string): string | undefined {
  const m = /^CREATE (?:UNLOGGED )?TABLE "((?:[^"]|"")+)" \(/m.exec(ddl);
  return m === null ? undefined : m[1]!.replaceAll('""', '"');
}

/**
 * `target`, with every call whose first argument is a table named in `to`
 * made with the name `to` gives it instead (the name the target holds the
 * archived table under).
 */
function tableNamesMapped(target: TableSource, to: ReadonlyMap<string, string>): TableSource {
  return new Proxy(target, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const first = args[0];
        const mapped = typeof first === 'string' ? to.get(first) : undefined;
        return (v as (...a: unknown[]) => unknown).apply(t, mapped === undefined ? args : [mapped, ...args.slice(1)]);
      };
    },
  });
}

/** Options of {@link Partitioner.restore}. */
export interface RestoreOptions {
  /** Restore only this table (from whichever archives hold it). Default: every table archived. */
  table?: string;
  /** Restore only keys `>= lo`. */
  lo?: KeyBound;
  /** Restore only keys `<= hi`. */
  hi?: KeyBound;
  /**
   * Archives loaded at once (default 2); one more is read ahead, up to 16
   * MiB of its rows held in memory. Into PostgreSQL tables with foreign
   * keys, the archives of a table wait for those of its parent tables, and
   * those of a table that refers to its own rows load one at a time.
   */
  concurrency?: number;
  /** Create missing tables from the archived DDL (default true); false makes a missing table ENO_TABLE. */
  createTables?: boolean;
  /**
   * Load into a table that exists although some of its columns have
   * other types than the table's newest archive records (default false;
   * types that store alike count as the same, see `typeKey`). The target then
   * converts each value as it stores it: a `numeric` into `numeric(8,1)` is
   * rounded, a `timestamptz` into `timestamp` loses its offset, a `double`
   * into `float` its last digits. By default such a restore is EBAD_CONFIG
   * before anything is loaded, naming the columns and both types. Archives
   * written before the types were recorded are not checked.
   */
  allowTypeChanges?: boolean;
  /**
   * Cancels the restore; a load in progress is rolled back. The indexes of
   * tables the restore created are still built (over the rows committed)
   * before it rejects, so that no table is left without them.
   */
  signal?: AbortSignal;
  /** Phase `verify` (bytes of archives digested), then `load` (bytes of bulk text loaded, items = archives done), then `index` (items = tables whose deferred indexes are built; only when there are some). */
  onProgress?: ProgressCallback;
}

/** One table of a {@link RestoreResult}. */
export interface RestoredTable {
  /** The table. */
  readonly name: string;
  /** Rows loaded. */
  readonly rows: number;
  /** Archives it was loaded from. */
  readonly partitions: number;
  /** Whether the restore created it. */
  readonly created: boolean;
}

/** What {@link Partitioner.restore} did. */
export interface RestoreResult {
  /** Archives loaded. */
  readonly partitions: number;
  /** Rows loaded in all. */
  readonly rows: number;
  /** Bytes of bulk text loaded. */
  readonly bytes: number;
  /** Per table, sorted by name. */
  readonly tables: readonly RestoredTable[];
}

interface Candidate {
  readonly path: string;
  readonly lo: bigint;
  readonly hi: bigint;
}

interface Selected extends Candidate {
  readonly manifest: PartitionManifest;
  readonly tables: readonly ManifestTable[];
}

/**
 * A column type as compared between an archive and the table it loads
 * into, so that a table created from the same DDL always compares equal:
 * spaces collapsed; PostgreSQL's schema qualifiers left out (`format_type`
 * writes `public.citext` where `public` is not on the search path, as from
 * a source in another schema, and `citext` where it is); MySQL's display
 * widths of integers and YEAR left out (`int(11)` and `year(4)`, as MariaDB
 * writes them, are MySQL 8's `int` and `year`); SQLite's declared types
 * reduced to their affinity (`INT` and `INTEGER`, `VARCHAR(10)` and `TEXT`
 * store alike), by SQLite's own rules.
 *
 * @param engine - the target's engine
 * @param type - `ColumnInfo.type`
 */
function typeKey(engine: TableEngine, type: string): string {
  const t = type.trim().replace(/\s+/g, ' ');
  if (engine === 'postgres') return t.replace(/(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\./g, '');
  if (engine === 'mysql') return t.replace(/\b(tinyint|smallint|mediumint|int|integer|bigint|year)\(\d+\)/gi, '$1');
  const u = t.toUpperCase();
  if (u.includes('INT')) return 'INTEGER';
  if (u.includes('CHAR') || u.includes('CLOB') || u.includes('TEXT')) return 'TEXT';
  if (u === '' || u.includes('BLOB')) return 'BLOB';
  if (u.includes('REAL') || u.includes('FLOA') || u.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

/**
 * Lists the partition archives in `dir` and in its sub-folders (one level).
 * Symbolic links count as what they point to (an archive or a table folder
 * kept on another disk), as the dump's plan counts them; one whose target
 * is missing is ENOT_FOUND, since what it held cannot be restored. A `dir`
 * that is not a folder is EBAD_CONFIG. Also lists, as `orphans`, the
 * archives that are gone while their DNA sidecar is still there (deleted,
 * or not copied along with it): each one's path and range, for the caller
 * to refuse (see `missingArchivesError`).
 */
async function findArchives(dir: string): Promise<{ archives: Candidate[]; orphans: Candidate[] }> {
  const list = async (d: string): Promise<import('node:fs').Dirent[]> => {
    try {
      return await readdir(d, { withFileTypes: true });
    } catch (err) {
      if (d === dir && (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        throw new StowageError('EBAD_CONFIG', `Partitioner.restore: ${dir} is not a folder: give the dump's outDir, or one table's folder in it.`, { details: { path: dir, option: 'dir' } });
      }
      throw fromFsError(err, 'list', d);
    }
  };
  const kind = async (d: string, e: import('node:fs').Dirent): Promise<'file' | 'dir' | 'other'> => {
    if (e.isFile()) return 'file';
    if (e.isDirectory()) return 'dir';
    if (!e.isSymbolicLink()) return 'other';
    const path = join(d, e.name);
    try {
      const st = await stat(path);
      return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ELOOP') {
        throw new StowageError('ENOT_FOUND', `Partitioner.restore: ${path} is a symbolic link whose target is missing (an unmounted disk?): what it holds cannot be restored, and restoring without it would leave its rows out. Mount or fix it, or move the link away, then restore again. Nothing was loaded.`, {
          details: { path },
        });
      }
      throw fromFsError(err, 'read', path);
    }
  };
  const out: Candidate[] = [];
  const orphans: Candidate[] = [];
  const scan = async (d: string, entries: import('node:fs').Dirent[], sub: boolean): Promise<void> => {
    const names = new Set(entries.map((e) => e.name));
    for (const e of entries) {
      const b = parsePartitionFileName(e.name);
      if (b === undefined && e.name.endsWith(SIDECAR_SUFFIX)) {
        // A sidecar whose archive is not there: what the archive held cannot be restored.
        const archive = e.name.slice(0, -SIDECAR_SUFFIX.length);
        const ab = parsePartitionFileName(archive);
        if (ab !== undefined && !names.has(archive) && (await kind(d, e)) === 'file') orphans.push({ path: join(d, archive), lo: ab.lo, hi: ab.hi });
        continue;
      }
      // In a table's folder only archive names matter; at the top, folders too.
      if (sub && b === undefined) continue;
      const k = await kind(d, e);
      if (k === 'file' && b !== undefined) out.push({ path: join(d, e.name), lo: b.lo, hi: b.hi });
      else if (k === 'dir' && !sub) await scan(join(d, e.name), await list(join(d, e.name)), true);
    }
  };
  await scan(dir, await list(dir), false);
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  // One archive reached twice (a folder linked under another name, `T_latest -> T`) is one archive.
  // The real paths are looked up FS_LOOKUPS at a time (see there).
  const reals: string[] = [];
  await pool(
    out.map((_, i) => i),
    FS_LOOKUPS,
    async (i) => {
      try {
        reals[i] = await realpath(out[i]!.path);
      } catch (err) {
        throw fromFsError(err, 'read', out[i]!.path);
      }
    },
  );
  const seen = new Set<string>();
  const unique: Candidate[] = [];
  out.forEach((c, i) => {
    if (seen.has(reals[i]!)) return;
    seen.add(reals[i]!);
    unique.push(c);
  });
  orphans.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { archives: unique, orphans };
}

/**
 * ENOT_FOUND for partition archives that are gone while their DNA sidecars
 * are still there: the rows of their ranges are not in any archive left,
 * and a restore that went on without them would leave those rows out and
 * report success.
 *
 * @param where - the operation, for the message
 * @param orphans - the missing archives, sorted
 */
function missingArchivesError(where: string, orphans: readonly Candidate[]): StowageError {
  const shown = orphans.slice(0, 5).map((o) => `${o.path} [${o.lo}, ${o.hi}]`);
  const more = orphans.length > shown.length ? ` and ${orphans.length - shown.length} more` : '';
  return new StowageError(
    'ENOT_FOUND',
    `${where}: ${orphans.length} partition archive(s) are missing while their DNA sidecar is there: ${shown.join(', ')}${more}. Restoring without them would leave the rows of those ranges out. Copy them back from another copy of the backup (the sidecar checks them), or, if those ranges were meant to go, remove their .dna files too; then restore again. Nothing was loaded.`,
    { details: { path: orphans[0]!.path, missing: orphans.map((o) => ({ path: o.path, lo: o.lo, hi: o.hi })) } },
  );
}

/**
 * File-system lookups (real paths, sizes) of the archives in flight at
 * once before their DNA is checked. One after the other, the real paths
 * and sizes of 100 archives took 11-14 ms of a restore's start, while the
 * target waits; 16 at a time, 2-4 ms.
 */
const FS_LOOKUPS = 16;

/** Runs `fn` over `items`, `n` at a time; the first failure stops new work and is rethrown once all in flight settled. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  if (failure !== undefined) throw failure.err;
}

function corrupt(file: string, message: string, details: Record<string, unknown> = {}): StowageError {
  return new StowageError('ECORRUPT_ARCHIVE', `Partition archive ${file}: ${message}`, { details: { path: file, ...details } });
}

/**
 * The rows of one table's entry, digested on the way and checked against
 * the manifest when they end, and checked to end where a row ends; the
 * last chunk is passed on only once both checks passed (an error then
 * fails the load before it commits, and the load never sees a truncated
 * row); with `keep`, only rows whose key lies in it are passed on.
 *
 * This is the end-to-end check: the manifest's digests were computed from
 * the rows as the database gave them, before they went through the spool,
 * tar and gzip, while the DNA seals only what the writer produced. Loading
 * DNA-checked bytes without it was tried (b4c5b15, reverted): it saved
 * ~0.5 cpu-s per million rows, but let a fault on the dump's side (a spill
 * file altered before it was read back) load silently. The rows are
 * checked against the manifest's `sha256` where it has one: 1M rows into
 * PostgreSQL took ~0.2 cpu-s less of this process than with their range
 * digest (md5, and every row's key found), which older archives still get.
 */
async function* checkedRows(data: AsyncIterable<Buffer>, t: ManifestTable, file: string, keep: { lo: bigint; hi: bigint } | undefined, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const digester = t.sha256 === undefined ? new RangeDigester({ keyIndex: t.keyIndex }) : new DnaDigest({ algorithm: ROWS_HASH_ALGORITHM });
  const splitter = keep === undefined ? undefined : new LineSplitter();
  const end = new RowEnd();
  // The last bytes are held back until the checks below have passed, so
  // that the load never gets a truncated last row (which it would report
  // as malformed bulk text, before this names the archive).
  let held: Buffer | undefined;
  for await (const chunk of data) {
    throwIfAborted(signal);
    digester.update(chunk);
    end.update(chunk);
    let out: Buffer | undefined = chunk;
    if (splitter !== undefined) {
      const kept: Buffer[] = [];
      splitter.push(chunk, (line) => {
        const k = parseKeyField(fieldOf(line, t.keyIndex), file, t.name);
        if (k >= keep!.lo && k <= keep!.hi) kept.push(line);
      });
      out = kept.length > 0 ? Buffer.concat(kept) : undefined;
    }
    if (out === undefined) continue;
    if (held !== undefined) yield held;
    held = out;
  }
  if (digester instanceof DnaDigest) {
    const { size: bytes, dig: sha256 } = digester.digest();
    if (bytes !== t.bytes || sha256 !== t.sha256) {
      throw corrupt(file, `the rows of ${JSON.stringify(t.name)} do not match its manifest (${bytes} bytes, sha256 ${sha256}; the manifest says ${t.bytes}, ${t.sha256}); nothing of it was loaded.`, {
        table: t.name,
        expected: { bytes: t.bytes, sha256: t.sha256 },
        actual: { bytes, sha256 },
      });
    }
  } else {
    const d = digester.digest();
    if (d.count !== t.count || d.bytes !== t.bytes || d.digest !== t.digest) {
      throw corrupt(file, `the rows of ${JSON.stringify(t.name)} do not match its manifest (${d.count} rows, ${d.bytes} bytes, digest ${d.digest}; the manifest says ${t.count}, ${t.bytes}, ${t.digest}); nothing of it was loaded.`, {
        table: t.name,
        expected: { count: t.count, bytes: t.bytes, digest: t.digest },
        actual: d,
      });
    }
  }
  // Rows that match their manifest can still stop inside a row (a dump cut
  // short that wrote its manifest anyway): alone, the load would refuse the
  // truncated row; loaded with the next archive, the next archive's first
  // bytes would complete it.
  if (!end.atRowEnd) {
    throw corrupt(file, `the rows of ${JSON.stringify(t.name)} end inside a row (their last line feed is missing or escaped): the dump that wrote it was cut short or is faulty. Nothing of it was loaded; restore this range from another backup.`, {
      table: t.name,
    });
  }
  if (held !== undefined) yield held;
}

/**
 * Whether bulk text seen chunk by chunk ends where a row ends: empty, or
 * after a line feed that no backslash escapes (an odd run of backslashes
 * before it makes it part of a field, in MySQL's and PostgreSQL's text
 * formats alike).
 */
class RowEnd {
  /** Whether the text so far ends a row. */
  atRowEnd = true;
  /** Backslashes at the very end of the text so far. */
  #backslashes = 0;

  update(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    const lf = chunk[n - 1] === 0x0a;
    let i = lf ? n - 2 : n - 1;
    const from = i;
    while (i >= 0 && chunk[i] === 0x5c) i--;
    // A run that reaches the chunk's start goes on from the chunk before.
    const run = from - i + (i < 0 ? this.#backslashes : 0);
    if (lf) {
      this.atRowEnd = run % 2 === 0;
      this.#backslashes = 0;
    } else {
      this.atRowEnd = false;
      this.#backslashes = run;
    }
  }
}

/** Most hashing threads checking the archives' DNA (fewer on a machine with fewer cores). */
const VERIFY_THREADS = 4;

/**
 * Archives of fewer bytes in all are digested on the main thread: starting
 * and stopping two workers takes ~40 ms here (2 cores), which the main
 * thread alone would have spent on ~15 MB. 100 archives of 52 MB in all
 * (1M rows) were checked in 115-126 ms on the workers against 153-179 ms
 * here (6 interleaved runs each).
 */
const POOL_MIN_BYTES = 24 * 1024 * 1024;

/**
 * Bytes read at once when an archive's DNA is checked on the main thread,
 * into one of a few buffers used again for every archive: a partition
 * (~0.5 MB) is one read. Reading each archive into a Buffer of its own
 * allocated as much memory outside V8's heap as the archives weigh (52 MB
 * for 1M rows), and V8 answers such allocations with full collections of
 * its heap (11-22 per million rows restored, with the load's own buffers).
 */
const CHECK_READ_BYTES = 1 << 20;

/** Rows of the next archive read ahead of its load, at most (see {@link restorePartitions}, step 5). */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

/**
 * Archives of one table loaded by one `load()` (one COPY or LOAD DATA in
 * one transaction), at most: see {@link loadUnits}.
 */
const BATCH_MAX_ARCHIVES = 16;

/** Bytes of rows (by the manifests) one batched `load()` takes, at most. */
const BATCH_MAX_BYTES = 32 * 1024 * 1024;

/**
 * The archives of a load stage cut into units, each loaded by one
 * `load()`: a run of neighbouring archives of the same table that
 * `batchKey` gives the same key (one table, the same columns, loaded
 * without replacing a range) makes units of up to BATCH_MAX_ARCHIVES
 * archives and BATCH_MAX_BYTES of rows; any other archive is a unit of its
 * own. Units shrink towards the end of the stage (what is left, halved
 * and shared among the connections: guided self-scheduling), so that the
 * connections finish together.
 *
 * Why: each `load()` is a statement and a transaction of its own, which
 * costs the server more than its rows: 1M rows in 100 archives through
 * one connection took PostgreSQL's backend 2.0-2.6 cpu-s as 100 COPYs and
 * 1.8-2.1 as one (2-2.9 s against 1.6-2.1 s).
 *
 * @param stage - archives in load order
 * @param batchKey - an archive's batch key, or undefined when it loads alone
 * @param rowBytes - an archive's bytes of rows
 * @param concurrency - loads at once
 * @internal
 */
export function loadUnits<T>(stage: readonly T[], batchKey: (s: T) => string | undefined, rowBytes: (s: T) => number, concurrency: number): T[][] {
  const units: T[][] = [];
  let i = 0;
  while (i < stage.length) {
    const first = stage[i++]!;
    const key = batchKey(first);
    const unit = [first];
    units.push(unit);
    if (key === undefined) continue;
    const want = Math.min(BATCH_MAX_ARCHIVES, Math.floor((stage.length - i + 1) / (2 * concurrency)));
    let bytes = rowBytes(first);
    while (unit.length < want && i < stage.length && batchKey(stage[i]!) === key && bytes + rowBytes(stage[i]!) <= BATCH_MAX_BYTES) {
      bytes += rowBytes(stage[i]!);
      unit.push(stage[i++]!);
    }
  }
  return units;
}

/** Room per archive of a unit beyond its rows bytes, for the rest of its tar (manifest, schema, headers). */
const UNIT_TAR_EXTRA = 128 * 1024;

/** The memory of a {@link UnitBuffers}, kept for the next unit: its slab and its buffer for the compressed files. @internal */
export interface UnitSlab {
  readonly slab: Buffer;
  readonly input: Buffer;
}

/**
 * Scratch memory for the archives of one unit (see {@link loadUnits}): one
 * slab with a region per archive, each sized from its manifest, and one
 * buffer for the compressed files, read one after the other. Nothing is
 * used again while the unit's load may still hold it: the chunks of an
 * archive are still on their way to the server while the next one is
 * read, so a region is never handed out twice, and the slab goes back to
 * `free` only once the load has committed (after a failure it is dropped).
 * A region too small for its tar, or a file over `wholeMaxBytes`, reads as
 * without pooled buffers.
 *
 * Why: a restore reading each archive into new memory made 12-19 full
 * collections per million rows into PostgreSQL where pooled buffers make
 * 2-3 (see ArchiveBufferPool).
 *
 * @internal
 */
export class UnitBuffers implements ArchiveBufferSource {
  readonly #free: UnitSlab[];
  readonly #keep: number;
  #slab: Buffer;
  #input: Buffer;
  #used = 0;
  #next = 0;

  /**
   * @param free - the slabs given back by earlier units (this one takes from and returns to it)
   * @param regions - the bytes each archive of the unit gets, in order
   * @param keep - slabs kept in `free` at most
   */
  constructor(free: UnitSlab[], regions: readonly number[], keep: number) {
    const total = roundUpMiB(regions.reduce((a, b) => a + b, 0));
    this.#free = free;
    this.#keep = keep;
    const i = free.findIndex((f) => f.slab.length >= total);
    const had = i >= 0 ? free.splice(i, 1)[0]! : undefined;
    this.#slab = had?.slab ?? Buffer.allocUnsafeSlow(total);
    this.#input = had?.input ?? Buffer.allocUnsafeSlow(roundUpMiB(1));
  }

  /** The region size of the archive read next. */
  expect(bytes: number): void {
    this.#next = bytes;
  }

  take(size: number): ArchiveBuffers | undefined {
    if (size > archiveReadTuning.wholeMaxBytes || this.#used + this.#next > this.#slab.length) return undefined;
    // One pass at a time: the previous archive's pass has settled, and nothing reads the file's bytes after it.
    if (this.#input.length <= size) this.#input = Buffer.allocUnsafeSlow(roundUpMiB(size + 1));
    const output = this.#slab.subarray(this.#used, this.#used + this.#next);
    this.#used += this.#next;
    return { input: this.#input, output };
  }

  give(): void {
    // Kept until the unit's load has committed (release).
  }

  /** After the unit's load: committed, the memory serves the next unit; else it is dropped. */
  release(committed: boolean): void {
    if (committed && this.#free.length < this.#keep) this.#free.push({ slab: this.#slab, input: this.#input });
  }
}

/**
 * The rows of table `t` in the archive `file`, checked as
 * {@link checkedRows} checks them, as one part of a batched load's input.
 * The archive is read into its region of the unit's `buffers`: its chunks
 * go on through the load's stream while the next archive is read, so none
 * may be a view of memory used again before the unit has committed.
 * ECORRUPT_ARCHIVE when the entry is missing.
 */
async function* archiveRows(file: string, t: ManifestTable, keep: { lo: bigint; hi: bigint } | undefined, signal: AbortSignal | undefined, buffers: UnitBuffers): AsyncGenerator<Buffer> {
  let hand!: (data: AsyncIterable<Buffer> | undefined) => void;
  const handed = new Promise<AsyncIterable<Buffer> | undefined>((r) => (hand = r));
  let done!: () => void;
  const consumed = new Promise<void>((r) => (done = r));
  let found = false;
  let passFailed: AbortSignal | undefined;
  /** Set when the rows are not read to their end: the pass then stops instead of reading on. */
  let stopped = false;
  buffers.expect(t.bytes + UNIT_TAR_EXTRA);
  const pass = readArchive(file, { phase: 'load', signal, buffers }, async (e, data, failed) => {
    if (found || e.name !== t.rows || e.type !== 'file') return;
    found = true;
    passFailed = failed;
    hand(data as AsyncIterable<Buffer>);
    // The data are read by the load, outside this visitor; the pass waits for it (or for its own failure).
    await new Promise<void>((r) => {
      void consumed.then(r);
      failed.addEventListener('abort', () => r(), { once: true });
    });
    return stopped;
  });
  void pass.then(
    () => hand(undefined),
    () => hand(undefined),
  );
  const data = await handed;
  let finished = false;
  try {
    if (data === undefined) {
      await pass;
      throw corrupt(file, `it lacks the rows entry of ${JSON.stringify(t.name)} named in its manifest.`);
    }
    yield* checkedRows(data, t, file, keep, signal);
    finished = true;
  } catch (err) {
    // Damage met in the rows (or a read error) reaches them as a destroyed
    // stream: the pass's own error names the archive and what is wrong.
    stopped = true;
    done();
    const own = await pass.then(
      () => undefined,
      (e: unknown) => e,
    );
    throw passFailed?.aborted === true && own !== undefined ? own : err;
  } finally {
    // Stopped early (the load failed or was aborted): that failure is the one to report.
    if (!finished) stopped = true;
    done();
    if (finished) await pass;
    else await pass.catch(() => {});
  }
}

/**
 * The loads allowed at once: `acquire` waits for a free one, `fail` makes
 * every wait (and every later one) reject, so that an archive read ahead
 * is not loaded after another load has failed the restore.
 */
class LoadSlots {
  #free: number;
  #failed: { err: unknown } | undefined;
  readonly #waiters: { grant: () => void; reject: (err: unknown) => void }[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  async acquire(signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    if (this.#failed !== undefined) throw this.#failed.err;
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        grant: (): void => {
          dispose();
          resolve();
        },
        reject: (err: unknown): void => {
          dispose();
          reject(err);
        },
      };
      this.#waiters.push(waiter);
      const dispose = onAbort(signal, (reason) => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(reason);
      });
    });
    // Granted, but the restore may have failed before this ran on.
    const failed = this.#failed as { err: unknown } | undefined;
    if (failed !== undefined) {
      this.release();
      throw failed.err;
    }
  }

  release(): void {
    const w = this.#waiters.shift();
    if (w !== undefined) w.grant();
    else this.#free++;
  }

  fail(err: unknown): void {
    this.#failed ??= { err };
    for (const w of this.#waiters.splice(0)) w.reject(this.#failed.err);
  }
}

/**
 * The name under which the archives hold a table the target calls
 * `stored`: the same, else the one archived name that differs from it in
 * letter case only (PostgreSQL and SQLite find tables so), else `stored`.
 *
 * @param stored - a table name as the target stores it
 * @param archived - the table names of the archives
 */
function archivedName(stored: string, archived: ReadonlySet<string>): string {
  if (archived.has(stored)) return stored;
  const like = sameLetters(archived, stored);
  return like.length === 1 ? like[0]! : stored;
}

/** The names of `names` equal to `name` but for letter case (itself included). */
function sameLetters(names: Iterable<string>, name: string): string[] {
  const lower = name.toLowerCase();
  return [...names].filter((n) => n.toLowerCase() === lower);
}

/**
 * The order in which tables load when some refer to others (foreign keys):
 * level 0 for a table that refers to none of `names`, else one more than
 * the highest of its parents. A cycle of references (no order satisfies
 * it) is cut where it closes; the loads of its tables may then fail on
 * the target's checks, with the target's message.
 *
 * @param names - the tables of the restore
 * @param parents - per table, the tables of `names` it refers to
 */
export function loadLevels(names: ReadonlySet<string>, parents: ReadonlyMap<string, readonly string[]>): Map<string, number> {
  const level = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (t: string): number => {
    const known = level.get(t);
    if (known !== undefined) return known;
    if (visiting.has(t)) return -1; // closes a cycle: cut here
    visiting.add(t);
    let l = 0;
    for (const p of parents.get(t) ?? []) l = Math.max(l, visit(p) + 1);
    visiting.delete(t);
    level.set(t, l);
    return l;
  };
  for (const t of [...names].sort()) visit(t);
  return level;
}

/**
 * The archives in the order of their loads: one stage after the other, the
 * archives of a stage side by side. An archive's stage is the highest
 * {@link loadLevels} level of its tables; within a level, the archives of
 * a table that refers to its own rows come last, each a stage of its own,
 * in key order. Linear in the archives (a restore may have 100,000s).
 *
 * @param archives - the archives of the restore
 * @param level - per table, its level (0 when missing)
 * @param selfReferring - the tables whose rows refer to their own rows
 */
export function loadStages<T extends { readonly lo: bigint; readonly tables: readonly { readonly name: string }[] }>(archives: readonly T[], level: ReadonlyMap<string, number>, selfReferring: ReadonlySet<string>): T[][] {
  const byLevel = new Map<number, T[]>();
  for (const s of archives) {
    const l = s.tables.reduce((m, t) => Math.max(m, level.get(t.name) ?? 0), 0);
    const list = byLevel.get(l);
    if (list === undefined) byLevel.set(l, [s]);
    else list.push(s);
  }
  const stages: T[][] = [];
  for (const l of [...byLevel.keys()].sort((a, b) => a - b)) {
    const side: T[] = [];
    const one: T[] = [];
    for (const s of byLevel.get(l)!) (s.tables.some((t) => selfReferring.has(t.name)) ? one : side).push(s);
    if (side.length > 0) stages.push(side);
    one.sort((x, y) => (x.lo < y.lo ? -1 : x.lo > y.lo ? 1 : 0));
    for (const s of one) stages.push([s]);
  }
  return stages;
}

/** Loads of one archive tried at most this many times when the target reports a deadlock. */
const DEADLOCK_TRIES = 4;

/** The pause before loading a deadlock victim again: longer with each attempt, and jittered, so that the loads it met do not meet again. */
function deadlockPause(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, 20 * attempt + Math.floor(Math.random() * 50 * attempt)));
}

/** Whether a load failed because the server chose it as a deadlock victim (SQLSTATE 40001 or PostgreSQL's 40P01): it was rolled back whole. */
function isDeadlock(err: unknown): boolean {
  if (!(err instanceof StowageError) || err.code !== 'EDB') return false;
  const state = err.details['sqlState'];
  return state === '40001' || state === '40P01';
}

function overlaps(a: { lo: bigint; hi: bigint }, b: { lo: bigint; hi: bigint }): boolean {
  return a.lo <= b.hi && b.lo <= a.hi;
}

/**
 * See {@link Partitioner.restore}.
 *
 * @param target - the database to load into
 * @param dir - an outDir or a partition folder
 * @param options - see {@link RestoreOptions}
 * @param tuning - internal: `poolMinBytes` replaces {@link POOL_MIN_BYTES} (tests take the worker path with small archives)
 */
export async function restorePartitions(target: TableSource, dir: string, options: RestoreOptions = {}, tuning: { poolMinBytes?: number } = {}): Promise<RestoreResult> {
  const where = 'Partitioner.restore';
  options ??= {};
  checkOptionKeys(where, options, ['table', 'lo', 'hi', 'concurrency', 'createTables', 'allowTypeChanges', 'signal', 'onProgress']);
  checkSignalOption(where, options.signal);
  checkFunctionOption(where, 'onProgress', options.onProgress);
  if (typeof target !== 'object' || target === null || typeof target.load !== 'function' || typeof target.createTable !== 'function') {
    throw new StowageError('EBAD_CONFIG', `${where}: the target must be a TableSource.`, { details: { option: 'target' } });
  }
  if (typeof dir !== 'string' || dir.length === 0) throw new StowageError('EBAD_CONFIG', `${where}: dir must be a non-empty path.`, { details: { option: 'dir' } });
  const table = options.table === undefined ? undefined : checkIdentifier(where, 'table', options.table);
  const bounds = toKeyBounds(where, options.lo, options.hi);
  const concurrency = checkInt(where, 'concurrency', options.concurrency ?? 2, 1, 64);
  checkBooleanOption(where, 'createTables', options.createTables);
  const createTables = options.createTables ?? true;
  checkBooleanOption(where, 'allowTypeChanges', options.allowTypeChanges);
  const allowTypeChanges = options.allowTypeChanges ?? false;
  const { signal, onProgress } = options;
  throwIfAborted(signal);
  const root = resolve(dir);
  const want = { lo: bounds.lo ?? -(1n << 64n), hi: bounds.hi ?? 1n << 64n };

  // 1. The archives in range.
  const found = await findArchives(root);
  const candidates = found.archives.filter((c) => overlaps(c, want));
  const orphans = found.orphans.filter((c) => overlaps(c, want));
  // Every table's: refused before any DNA is checked.
  if (table === undefined && orphans.length > 0) throw missingArchivesError(where, orphans);

  // 2. Every DNA, before anything is loaded. The manifests are read, and
  // the target's tables listed (which opens its first connection), while
  // the DNAs are checked: both only read, and their failures count only
  // once every archive is known to be intact.
  const sideline = new AbortController();
  const sideSignal = signal === undefined ? sideline.signal : AbortSignal.any([signal, sideline.signal]);
  const manifests = new Map<Candidate, Promise<PartitionManifest>>();
  const listing = target.tables({ signal: sideSignal });
  listing.catch(() => {}); // its failure counts at step 4, once every archive is known intact
  const progress = new ProgressTracker('verify', onProgress, { itemsTotal: candidates.length });
  const mutants: { path: string; expected: unknown; actual: unknown }[] = [];
  // Many archives (POOL_MIN_BYTES in all) are read and digested on worker
  // threads, as DnaDigest.scan does. Fewer are digested here: starting the
  // workers would cost more than it saves. Then each archive is read once,
  // CHECK_READ_BYTES at a time into a buffer used again for the next one,
  // its DNA checked on the way and its manifest parsed from its start.
  const poolMinBytes = tuning.poolMinBytes ?? POOL_MIN_BYTES;
  // Sizes FS_LOOKUPS at a time, until they reach poolMinBytes (a restore may have 100,000s of archives).
  let total = 0;
  for (let i = 0; i < candidates.length && total < poolMinBytes; i += FS_LOOKUPS) {
    const sizes = await Promise.all(
      candidates.slice(i, i + FS_LOOKUPS).map(async (c) => {
        try {
          return (await stat(c.path)).size;
        } catch (err) {
          throw fromFsError(err, 'read', c.path);
        }
      }),
    );
    for (const n of sizes) total += n;
  }
  const threads = Math.max(1, Math.min(availableParallelism(), VERIFY_THREADS));
  const hashes = candidates.length > 0 && total >= poolMinBytes ? new HashPool({ size: threads }) : undefined;
  const disposeAbort = onAbort(signal, (reason) => void hashes?.close(reason));
  /** Read buffers of the main-thread checks, one per check in flight. */
  const scratch: Buffer[] = [];
  const check = async (c: Candidate): Promise<{ expected: Dna; actual: Dna; head?: Buffer }> => {
    if (hashes !== undefined) return hashes.check(c.path, c.path + SIDECAR_SUFFIX);
    const expected = await DnaDigest.readSidecar(c.path);
    const d = new DnaDigest({ algorithm: expected.algorithm });
    const buf = scratch.pop() ?? Buffer.allocUnsafe(CHECK_READ_BYTES);
    let head: Buffer | undefined;
    try {
      const h = await open(c.path, 'r');
      try {
        for (;;) {
          const { bytesRead } = await h.read(buf, 0, buf.length, null);
          throwIfAborted(signal);
          if (bytesRead === 0) break;
          d.update(buf.subarray(0, bytesRead));
          // The start, for the manifest (a copy: the buffer is read into again).
          head ??= Buffer.from(buf.subarray(0, Math.min(bytesRead, MANIFEST_PEEK_BYTES)));
        }
      } finally {
        await h.close();
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw fromFsError(err, 'read', c.path);
    } finally {
      scratch.push(buf);
    }
    return { expected, actual: d.digest(), head: head ?? Buffer.alloc(0) };
  };
  try {
    await pool(candidates, hashes === undefined ? concurrency : 4 * threads, async (c) => {
      throwIfAborted(signal);
      const { expected, actual, head } = await check(c);
      throwIfAborted(signal);
      if (dnaEqual(expected, actual)) {
        const m = readVerifiedManifest(c.path, sideSignal, head);
        m.catch(() => {});
        manifests.set(c, m);
      } else mutants.push({ path: c.path, expected, actual });
      progress.add(actual.size, 1);
    });
  } catch (err) {
    sideline.abort(err);
    await Promise.allSettled([...manifests.values(), listing]);
    throw signal?.aborted ? signal.reason : err;
  } finally {
    disposeAbort();
    await hashes?.close(signal?.aborted ? signal.reason : undefined);
  }
  progress.report(true); // every archive checked
  if (mutants.length > 0) {
    sideline.abort();
    await Promise.allSettled([...manifests.values(), listing]);
    mutants.sort((a, b) => (a.path < b.path ? -1 : 1));
    throw new StowageError('EDIGEST_MISMATCH', `${mutants.length} partition archive(s) do not match their DNA sidecar: ${mutants.map((m) => m.path).join(', ')}. Nothing was loaded; fetch good copies and restore again.`, {
      details: { path: mutants[0]!.path, mutants },
    });
  }

  // 3. Manifests.
  const [read, listed] = await Promise.allSettled([Promise.all(candidates.map((c) => manifests.get(c)!)), listing]);
  if (read.status === 'rejected') throw read.reason;
  /** Per lower-cased table name, the spellings the archives hold. */
  const archivedByLower = new Map<string, Set<string>>();
  for (const m of read.value) {
    for (const t of m.tables) {
      const k = t.name.toLowerCase();
      const spellings = archivedByLower.get(k);
      if (spellings === undefined) archivedByLower.set(k, new Set([t.name]));
      else spellings.add(t.name);
    }
  }
  const selected: Selected[] = [];
  for (const [i, c] of candidates.entries()) {
    const m = read.value[i]!;
    if (m.lo !== c.lo || m.hi !== c.hi) throw corrupt(c.path, `its manifest says [${m.lo}, ${m.hi}], its name [${c.lo}, ${c.hi}].`);
    const tables = table === undefined ? m.tables : m.tables.filter((t) => t.name === table);
    if (tables.length === 0) continue; // another table's archive: its engine does not matter here
    if (m.engine !== target.engine) {
      throw new StowageError('EBAD_CONFIG', `${where}: ${c.path} holds a ${m.engine} dump, and the target ${target.name} is ${target.engine}: partitions restore into the same engine only.`, {
        details: { path: c.path, engine: m.engine, targetEngine: target.engine },
      });
    }
    selected.push({ ...c, manifest: m, tables });
  }
  // Two archives of one table whose ranges overlap (a folder dumped twice
  // with different range sizes, say) would load their common rows twice.
  const byTable = new Map<string, Selected[]>();
  for (const sel of selected) {
    for (const t of sel.tables) {
      const list = byTable.get(t.name);
      if (list === undefined) byTable.set(t.name, [sel]);
      else list.push(sel);
    }
  }
  for (const [name, list] of byTable) {
    const sorted = [...list].sort((x, y) => (x.lo < y.lo ? -1 : x.lo > y.lo ? 1 : 0));
    for (let i = 1; i < sorted.length; i++) {
      const [x, y] = [sorted[i - 1]!, sorted[i]!];
      if (y.lo <= x.hi) {
        throw new StowageError('EBAD_CONFIG', `${where}: ${x.path} [${x.lo}, ${x.hi}] and ${y.path} [${y.lo}, ${y.hi}] both hold rows of ${JSON.stringify(name)} in [${y.lo}, ${x.hi < y.hi ? x.hi : y.hi}]: restoring both would load those rows twice. Restore one partition folder (or pass table/lo/hi to pick one set of archives). Nothing was loaded.`, {
          details: { table: name, paths: [x.path, y.path] },
        });
      }
    }
  }
  // One table's: those in the folders of its archives (another table's folder may hold them),
  // in its own folder, or in the folder given (a table's), also where they were its only ones.
  if (table !== undefined) {
    const folders = new Set([...selected.map((sel) => dirname(sel.path)), join(root, tableDirName(table)), root]);
    const ours = orphans.filter((o) => folders.has(dirname(o.path)));
    if (ours.length > 0) throw missingArchivesError(where, ours);
  }
  if (selected.length === 0) {
    // The table asked for may be archived under another letter case (dumped as CalibPmtSpec, asked for as calibpmtspec).
    const spelled = table === undefined ? [] : sameLetters(new Set(read.value.flatMap((m) => m.tables.map((t) => t.name))), table).sort();
    throw new StowageError(
      'ENOT_FOUND',
      `${where}: no partition archive under ${root}${table === undefined ? '' : ` holds table ${JSON.stringify(table)}`}${bounds.lo === undefined && bounds.hi === undefined ? '' : ` in [${bounds.lo ?? '-inf'}, ${bounds.hi ?? '+inf'}]`}.${spelled.length > 0 ? ` Archived in another letter case: ${spelled.map((n) => JSON.stringify(n)).join(', ')} (pass that name as "table").` : ''}`,
      { details: { path: root, table, ...(spelled.length > 0 ? { archived: spelled } : {}) } },
    );
  }

  // 4. Missing tables, and what each existing one already holds.
  throwIfAborted(signal);
  if (listed.status === 'rejected') throw listed.reason;
  const existing = new Set(listed.value);
  const targetTables: readonly string[] = listed.value;
  const created = new Set<string>();
  const held = new Map<string, KeyRange>();
  // A table this restore creates gets its indexes after its rows, where the
  // target can defer them (PostgreSQL): a sort per index instead of an
  // index insert per row. They are built whether the loads succeed or not.
  const deferred: DeferredIndexes[] = [];
  const perTable = new Map<string, { rows: number; partitions: number }>();
  /** PostgreSQL: the name the target holds an archived table under, where it differs (set at step 4). */
  const stored = new Map<string, string>();
  let rows = 0;
  let bytes = 0;
  try {
    await createAndLoad();
  } catch (err) {
    await buildDeferred().catch(() => {});
    // The rows committed before the failure (or the abort) stay: keys past them, not cancellable, as the indexes.
    await advanceSequences(undefined).catch(() => {});
    throw err;
  }
  if (deferred.length > 0) {
    progress.phase('index');
    progress.bytesDone = 0;
    progress.itemsDone = 0;
    progress.itemsTotal = deferred.length;
    // Not cancellable midway: an abort now still gets the indexes built, then rejects.
    await buildDeferred();
    progress.report(true);
    throwIfAborted(signal);
  }
  await advanceSequences(signal);
  const tables = [...perTable.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, v]) => Object.freeze({ name, rows: v.rows, partitions: v.partitions, created: created.has(name) }));
  return Object.freeze({ partitions: selected.length, rows, bytes, tables: Object.freeze(tables) });

  /**
   * Moves the sequences of the tables loaded that this restore did not
   * create (the deferred build of one it created moves its own): rows
   * loaded with their keys leave a PostgreSQL sequence behind them, and the
   * table's next INSERT would take a key a restored row holds. Where it
   * fails, the rows are in and stay: EDB says so and what to run.
   *
   * @param cancel - the restore's signal, or undefined after a failure
   */
  async function advanceSequences(cancel: AbortSignal | undefined): Promise<void> {
    if (typeof target.advanceSequences !== 'function') return;
    for (const [name, v] of perTable) {
      if (created.has(name) || v.rows === 0) continue;
      try {
        await target.advanceSequences(name, { signal: cancel });
      } catch (err) {
        if (cancel?.aborted) throw cancel.reason;
        throw new StowageError(
          'EDB',
          `${where}: the rows were restored into ${JSON.stringify(name)} and stay there, but moving its sequences past them failed (${(err as Error).message}), so its next INSERT may take a key a restored row holds. Once the cause is fixed, call advanceSequences(${JSON.stringify(stored.get(name) ?? name)}) on the target (or setval the sequences to the largest key).`,
          { details: { table: name }, cause: err },
        );
      }
    }
  }

  /**
   * Builds the indexes deferred, table by table. A table whose rows break
   * one (duplicate keys under its primary key, say) cannot be what its DDL
   * says: it is dropped (this restore created it), and the restore fails
   * with EDB naming it.
   */
  async function buildDeferred(): Promise<void> {
    for (let d = deferred.shift(); d !== undefined; d = deferred.shift()) {
      try {
        await d.build();
      } catch (err) {
        const dropped = await d.discard().then(
          () => true,
          () => false,
        );
        throw new StowageError(
          'EDB',
          `${where}: the rows restored into ${JSON.stringify(d.table)} break its indexes or unique constraints (${(err as Error).message}); ${dropped ? 'the table, which this restore created, was dropped' : `the table, which this restore created, could not be dropped either: drop it`}. Check the archives for duplicate keys (Partitioner.compare), then restore again.`,
          { details: { table: d.table, statements: d.statements, dropped }, cause: err },
        );
      }
      progress.add(0, 1);
    }
  }

  /** Steps 4 and 5: creates the missing tables (deferring their indexes into `deferred`) and loads every archive. */
  async function createAndLoad(): Promise<void> {
    // A table is created from the DDL of its newest archive that has every
    // column the archives of that table hold: a column added since the first
    // archives is there (the older ones' rows take its default), and one
    // dropped since is kept from an older archive (the newer rows get NULL
    // or its default there). Before anything is created or loaded, every
    // archive's columns are checked against the table they go to: a restore
    // that would fail on a missing column midway fails here, with nothing done.
    const byNewest = new Map<string, { s: Selected; t: ManifestTable }[]>();
    for (const s of selected) {
      for (const t of s.tables) {
        const list = byNewest.get(t.name);
        if (list === undefined) byNewest.set(t.name, [{ s, t }]);
        else list.push({ s, t });
      }
    }
    const asColumns = (names: readonly string[]): ColumnInfo[] => names.map((c) => ({ name: c, type: '', nullable: true, primaryKey: 0 }));
    const holdsAll = (have: readonly ColumnInfo[], names: Iterable<string>): boolean => {
      for (const c of names) {
        try {
          findColumn(target.name, '', have, c);
        } catch {
          return false;
        }
      }
      return true;
    };
    const newest = new Map<string, { s: Selected; t: ManifestTable }>();
    for (const [name, list] of byNewest) {
      list.sort((x, y) => y.s.manifest.created.getTime() - x.s.manifest.created.getTime() || (y.s.lo > x.s.lo ? 1 : y.s.lo < x.s.lo ? -1 : 0));
      const all = new Set(list.flatMap((x) => x.t.columns));
      newest.set(name, list.find((x) => holdsAll(asColumns(x.t.columns), all)) ?? list[0]!);
    }
    // PostgreSQL keeps "Calib" and calib apart, and a source resolves a
    // name it lacks by letter case (calib to "Calib", CalibPmtSpec to
    // calibpmtspec): the table an archive holds is the one its DDL creates.
    // On the target that exact name is used, never another spelling, which
    // may be another table entirely (loading into it would replace its
    // rows). `stored` maps each archived name to it where they differ.
    const exactOnly = new Set<string>();
    /** Each table's DDL from its newest archive, read once. */
    const ddls = new Map<string, string>();
    const ddlOf = async (name: string): Promise<string> => {
      let ddl = ddls.get(name);
      if (ddl === undefined) {
        const { s: from, t: ddlTable } = newest.get(name)!;
        ddl = (await readSmallEntry(from.path, ddlTable.schema, signal)).toString('utf8');
        ddls.set(name, ddl);
      }
      return ddl;
    };
    if (target.engine === 'postgres') {
      for (const name of newest.keys()) {
        const made = pgCreatedTable(await ddlOf(name));
        if (made === undefined) continue;
        exactOnly.add(name);
        if (made !== name) stored.set(name, made);
      }
      if (stored.size > 0) target = tableNamesMapped(target, stored);
      // One table archived under two spellings (dumped once as calib, once as "Calib"): its ranges would load twice.
      const byTarget = new Map<string, string[]>();
      for (const name of newest.keys()) {
        const there = stored.get(name) ?? name;
        byTarget.set(there, [...(byTarget.get(there) ?? []), name]);
      }
      const twice = [...byTarget].find(([, names]) => names.length > 1);
      if (twice !== undefined) {
        throw new StowageError(
          'EBAD_CONFIG',
          `${where}: the archives of ${twice[1].map((n) => JSON.stringify(n)).join(' and ')} hold the same table, ${JSON.stringify(twice[0])} (their DDL creates it; it was dumped under each name): restoring both would load its ranges twice. Nothing was loaded. Restore one of them (option "table"), or keep one folder.`,
          { details: { option: 'table', table: twice[0], archived: twice[1] } },
        );
      }
    }
    const onTarget = (name: string): string => stored.get(name) ?? name;
    const archivedOf = new Map([...stored].map(([archived, there]) => [there, archived]));
    /** The archived tables the target holds already (under their name there). */
    const present = new Set<string>();
    /** The columns of existing tables whose type differs from the archived one. */
    const retyped: { table: string; column: string; archived: string; target: string; path: string }[] = [];
    for (const [name, { s: from, t: ddlTable }] of newest) {
      let columns: readonly ColumnInfo[] | undefined;
      let what: string;
      const there = onTarget(name);
      if (exactOnly.has(name) && !existing.has(there) && !createTables) {
        const likeNamed = sameLetters(targetTables, there);
        throw new StowageError(
          'ENO_TABLE',
          `${where}: ${target.name} has no table ${JSON.stringify(there)}, which the archives of ${JSON.stringify(name)} hold (their DDL creates exactly that name)${likeNamed.length > 0 ? `; ${likeNamed.map((l) => JSON.stringify(l)).join(', ')} there is another table: PostgreSQL names differing in letter case are different tables` : ''}. Nothing was loaded. Create it, or pass createTables: true (the default) to have the restore create it from ${from.path}.`,
          { details: { table: name, target: target.name, stored: there, likeNamed } },
        );
      }
      if (exactOnly.has(name) ? existing.has(there) : existing.has(name)) present.add(name);
      const likeNamed = present.has(name) || exactOnly.has(name) ? [] : sameLetters(targetTables, name);
      if (!present.has(name) && archivedByLower.get(name.toLowerCase())!.size === 1 && likeNamed.length === 1) {
        // Archived under another spelling of the one table the target has
        // by that name in any case (dumped as "CalibPmtSpec", stored by
        // PostgreSQL as calibpmtspec): the target resolves the name as it
        // does everywhere, or says ENO_TABLE (MySQL, case-sensitive). Not
        // where the archives hold two tables differing in case only
        // ("Calib" and calib, both PostgreSQL tables): each is its own.
        columns = await target.columns(name, { signal }).catch((err: unknown) => {
          if (err instanceof StowageError && err.code === 'ENO_TABLE') return undefined;
          throw err;
        });
        if (columns !== undefined) present.add(name);
      }
      if (present.has(name)) {
        columns ??= await target.columns(name, { signal });
        what = `the table ${JSON.stringify(name)} of ${target.name}`;
      } else if (createTables) {
        columns = asColumns(ddlTable.columns);
        what = `the table ${JSON.stringify(name)} as its newest archive ${from.path} defines it (no archive of it has every column the others hold)`;
      } else continue; // ENO_TABLE at its load, as before
      for (const s of selected) {
        const t = s.tables.find((x) => x.name === name);
        if (t === undefined) continue;
        for (const c of t.columns) {
          try {
            findColumn(target.name, name, columns, c);
          } catch {
            throw new StowageError(
              'ENO_TABLE',
              `${where}: ${what} has no column ${JSON.stringify(c)}, which the rows in ${s.path} have (it has ${columns.map((x) => x.name).join(', ')}). Nothing was loaded. Add the column to the table (or create the table yourself with every column), then restore again.`,
              { details: { table: name, column: c, path: s.path, columns: columns.map((x) => x.name) } },
            );
          }
        }
      }
      // An existing table's columns of another type than the newest archive records: older
      // archives keep the types of their day (complete ranges are never written again), and
      // archives written before the types were recorded have none.
      if (present.has(name) && ddlTable.types !== undefined) {
        for (const [i, c] of ddlTable.columns.entries()) {
          const there = findColumn(target.name, name, columns, c).column;
          const archived = ddlTable.types[i]!;
          if (typeKey(target.engine, archived) !== typeKey(target.engine, there.type)) retyped.push({ table: name, column: c, archived, target: there.type, path: from.path });
        }
      }
    }
    if (retyped.length > 0 && !allowTypeChanges) {
      const list = retyped;
      const shown = list.slice(0, 6).map((x) => `${JSON.stringify(x.table)}.${JSON.stringify(x.column)} is ${x.target} there and ${x.archived} in ${x.path}`);
      throw new StowageError(
        'EBAD_CONFIG',
        `${where}: tables of ${target.name} store columns with other types than the archives hold: ${shown.join('; ')}${list.length > shown.length ? `; and ${list.length - shown.length} more` : ''}. Loaded, their values would be converted as the target stores them (rounded, cut short, a time zone dropped). Nothing was loaded. Restore into tables with the archived types (drop the table, or restore into another database, and the restore creates it from the archives), alter the columns, or pass allowTypeChanges: true if that conversion is wanted.`,
        { details: { option: 'allowTypeChanges', columns: list } },
      );
    }
    for (const name of newest.keys()) {
      if (present.has(name) || !createTables) continue;
      const d = await target.createTable(name, await ddlOf(name), { signal, deferIndexes: true });
      created.add(name);
      if (d !== undefined) deferred.push(d);
    }
    for (const s of selected) {
      for (const t of s.tables) {
        if (created.has(t.name) || held.has(`${t.name}\0${s.manifest.key}`)) continue;
        held.set(`${t.name}\0${s.manifest.key}`, await target.keyRange(t.name, s.manifest.key, { signal }));
      }
    }

    // Parents first: where the target checks foreign keys as it loads
    // (PostgreSQL), the archives of a table whose rows refer to another
    // table of this restore load only once that table's are all in.
    // A table whose rows refer to its own rows loads one archive at a
    // time, in key order (a row's parent is usually an older, lower key).
    const names = new Set(selected.flatMap((s) => s.tables.map((t) => t.name)));
    const parents = new Map<string, string[]>();
    const selfReferring = new Set<string>();
    if (typeof target.references === 'function') {
      for (const name of names) {
        if (!present.has(name)) continue; // a table created from its archived DDL has no foreign keys
        // The target names the tables as it stores them; the archives, as the dump was told.
        const refs = (await target.references(name, { signal })).map((r) => archivedOf.get(r) ?? archivedName(r, names));
        if (refs.includes(name)) selfReferring.add(name);
        const ps = refs.filter((p) => p !== name && names.has(p));
        if (ps.length > 0) parents.set(name, ps);
      }
    }
    const level = loadLevels(names, parents);
    const levelOfTable = (name: string): number => level.get(name) ?? 0;
    const stages = loadStages(selected, level, selfReferring);

    // 5. Load.
    progress.bytesDone = 0;
    progress.itemsDone = 0;
    progress.bytesTotal = undefined;
    progress.itemsTotal = selected.length;
    progress.phase('load');
    // `concurrency` loads at once, and one archive more being read: its rows
    // are checked and buffered (up to READ_AHEAD_BYTES) while it waits for a
    // load to end, so that the next load starts at once with rows to send
    // instead of opening and inflating its archive first. 1M rows in 100
    // archives into PostgreSQL, 4 interleaved pairs of runs: 4.15 s -> 3.94 s
    // on average (one run varies by +-8% here).
    const slots = new LoadSlots(concurrency);
    // An archive loaded alone is read and inflated into buffers used again
    // for the next: restoring 1M rows into MariaDB after a dump made 25-38
    // full collections with new ones for every archive, 9-16 with these
    // (see ArchiveBufferPool). Archives loaded together get a slab per unit,
    // used again once the unit has committed (see UnitBuffers).
    const scratch = new ArchiveBufferPool();
    const unitSlabs: UnitSlab[] = [];
    /** The part of an archive's range that this restore loads (its range within lo/hi). */
    const keepOf = (s: Selected): { lo: bigint; hi: bigint } => ({ lo: s.lo > want.lo ? s.lo : want.lo, hi: s.hi < want.hi ? s.hi : want.hi });
    /** Counts a committed load of `partitions` archives of `name` in the result. */
    const tally = (name: string, r: { rows: number; bytes: number }, partitions: number): void => {
      const acc = perTable.get(name) ?? { rows: 0, partitions: 0 };
      acc.rows += r.rows;
      acc.partitions += partitions;
      perTable.set(name, acc);
      rows += r.rows;
      bytes += r.bytes;
    };
    /**
     * `rows` as the input of a load, once a load is free: they are read
     * (and checked) from now on, up to READ_AHEAD_BYTES ahead, and count
     * as loaded (`taken`, and the progress) as the load takes them. The
     * input is destroyed if no load comes free (the restore failed).
     */
    const readAhead = async (rows: AsyncIterable<Buffer>, taken: (bytes: number) => void): Promise<Readable> => {
      const ahead = Readable.from(rows, { objectMode: false, highWaterMark: READ_AHEAD_BYTES });
      ahead.on('error', () => {}); // reaches the load through its input
      ahead.read(0); // start reading now
      // Paused at once, so that the 'data' listener does not set the stream flowing.
      ahead.pause();
      ahead.on('data', (chunk: Buffer) => {
        taken(chunk.length);
        progress.add(chunk.length);
      });
      try {
        await slots.acquire(signal);
      } catch (err) {
        ahead.destroy();
        throw err;
      }
      return ahead;
    };
    const loadArchive = async (s: Selected, loaded: Set<string>): Promise<void> => {
      throwIfAborted(signal);
      const keep = keepOf(s);
      const whole = keep.lo === s.lo && keep.hi === s.hi;
      const byEntry = new Map(s.tables.map((t) => [t.rows, t] as const));
      const seen = new Set<string>();
      // The tables of a group archive in the order of their levels: one
      // that refers to another of the archive (a payload to its validity
      // table) loads in a later pass over the archive.
      const passes = [...new Set(s.tables.map((t) => levelOfTable(t.name)))].sort((a, b) => a - b);
      for (const pass of passes) {
        for (let attempt = 1; ; attempt++) {
          let attemptBytes = 0;
          try {
            await readArchive(s.path, { phase: 'load', signal, buffers: scratch }, async (e, data) => {
              const t = byEntry.get(e.name);
              if (t === undefined || e.type !== 'file' || loaded.has(t.name) || levelOfTable(t.name) !== pass) return;
              seen.add(t.name);
              const range = held.get(`${t.name}\0${s.manifest.key}`);
              const replace = range !== undefined && range.lo !== null && range.hi !== null && overlaps({ lo: range.lo, hi: range.hi }, keep);
              const ahead = await readAhead(checkedRows(data as AsyncIterable<Buffer>, t, s.path, whole ? undefined : keep, signal), (n) => (attemptBytes += n));
              let r: Awaited<ReturnType<TableSource['load']>>;
              try {
                r = await target.load(t.name, ahead, replace ? { signal, columns: t.columns, replaceRange: { key: s.manifest.key, lo: keep.lo, hi: keep.hi } } : { signal, columns: t.columns });
              } catch (err) {
                // Unless this archive is about to be tried again, the restore has
                // failed: the load freed below must not go to an archive read ahead.
                if (signal?.aborted || attempt >= DEADLOCK_TRIES || !isDeadlock(err)) slots.fail(err);
                throw err;
              } finally {
                slots.release();
              }
              loaded.add(t.name);
              attemptBytes = 0;
              tally(t.name, r, 1);
            });
            break;
          } catch (err) {
            // A deadlock rolled the load back whole (InnoDB picks a victim when
            // parallel loads of neighbouring ranges lock the same gaps of a
            // secondary unique index): load what is left of the archive again.
            if (signal?.aborted || attempt >= DEADLOCK_TRIES || !isDeadlock(err)) throw err;
            progress.bytesDone -= attemptBytes;
            await deadlockPause(attempt);
            throwIfAborted(signal);
          }
        }
      }
      const missing = s.tables.filter((t) => !seen.has(t.name));
      if (missing.length > 0) throw corrupt(s.path, `it lacks the rows entry of ${missing.map((t) => JSON.stringify(t.name)).join(', ')} named in its manifest.`);
      progress.itemsDone++;
      progress.report(true);
    };
    /**
     * An archive of a group (a validity table and its payload) whose load
     * failed or was stopped after some of its tables were committed, each
     * in its own transaction: the tables this restore created lose its
     * range again, so that none of them holds the range without the
     * group's other tables (validity rows whose payload is missing read as
     * wrong conditions). Best effort, not cancellable: the restore fails
     * with its own error anyway. A table that was there before keeps what
     * the failure left; restoring again completes it.
     */
    const undoPartial = async (s: Selected, loaded: ReadonlySet<string>): Promise<void> => {
      if (loaded.size === 0 || loaded.size === s.tables.length) return;
      const keep = keepOf(s);
      for (const t of s.tables) {
        if (!loaded.has(t.name) || !created.has(t.name)) continue;
        // A deadlock victim (InnoDB, beside neighbouring loads) is tried again, as loads are.
        for (let attempt = 1; attempt <= DEADLOCK_TRIES; attempt++) {
          const err = await target.load(t.name, Readable.from([]), { columns: t.columns, replaceRange: { key: s.manifest.key, lo: keep.lo, hi: keep.hi } }).then(
            () => undefined,
            (e: unknown) => e,
          );
          if (err === undefined || !isDeadlock(err)) break;
          await deadlockPause(attempt);
        }
      }
    };
    /**
     * Several archives of one table in one load (see {@link loadUnits}):
     * their rows, each archive checked against its manifest, as one input,
     * so a failure anywhere in them loads none of them. Tried again whole
     * after a deadlock, as an archive is.
     */
    const loadBatch = async (unit: readonly Selected[]): Promise<void> => {
      const t0 = unit[0]!.tables[0]!;
      for (let attempt = 1; ; attempt++) {
        throwIfAborted(signal);
        let attemptBytes = 0;
        const memory = new UnitBuffers(unitSlabs, unit.map((s) => s.tables[0]!.bytes + UNIT_TAR_EXTRA), concurrency + 1);
        const ahead = await readAhead(
          (async function* () {
            for (const s of unit) {
              const keep = keepOf(s);
              yield* archiveRows(s.path, s.tables[0]!, keep.lo === s.lo && keep.hi === s.hi ? undefined : keep, signal, memory);
            }
          })(),
          (n) => (attemptBytes += n),
        );
        let r: Awaited<ReturnType<TableSource['load']>> | undefined;
        try {
          r = await target.load(t0.name, ahead, { signal, columns: t0.columns });
        } catch (err) {
          // A load destroys its input when it fails; this one may not have read it at all.
          ahead.destroy();
          // A deadlock victim (rolled back whole) is loaded again; anything else fails the restore.
          if (signal?.aborted || attempt >= DEADLOCK_TRIES || !isDeadlock(err)) {
            slots.fail(err);
            throw err;
          }
          progress.bytesDone -= attemptBytes;
        } finally {
          slots.release();
        }
        if (r === undefined) {
          await deadlockPause(attempt);
          continue;
        }
        // Committed: every chunk of the unit has reached the server.
        memory.release(true);
        tally(t0.name, r, unit.length);
        progress.itemsDone += unit.length;
        progress.report(true);
        return;
      }
    };
    /** The key of archives that load together: one table, the same columns, nothing replaced. */
    const batchKey = (s: Selected): string | undefined => {
      if (s.tables.length !== 1) return undefined;
      const t = s.tables[0]!;
      const range = held.get(`${t.name}\0${s.manifest.key}`);
      if (range !== undefined && range.lo !== null && range.hi !== null && overlaps({ lo: range.lo, hi: range.hi }, keepOf(s))) return undefined;
      return JSON.stringify([t.name, t.columns]);
    };
    for (const stage of stages) {
      await pool(
        loadUnits(stage, batchKey, (s) => s.tables[0]!.bytes, concurrency),
        concurrency + 1,
        async (unit) => {
          if (unit.length > 1) {
            await loadBatch(unit);
            return;
          }
          const s = unit[0]!;
          const loaded = new Set<string>();
          try {
            await loadArchive(s, loaded);
          } catch (err) {
            // The restore has failed: an archive read ahead must not load now.
            slots.fail(err);
            await undoPartial(s, loaded);
            throw err;
          }
        },
      );
    }
    progress.report(true);
  }
}
