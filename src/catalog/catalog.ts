/**
 * The Catalog: stowage's embedded state store, one SQLite file.
 *
 * It records what was archived (path and DNA), which key ranges of which
 * tables are in which archive, which files went where, and which jobs ran
 * and how they ended; later workflows (LazyChannel, Monitor) keep their own
 * tables in the same file through the migrations in `migrations.ts`.
 *
 * Settings, and why:
 * - WAL journal: readers (a Monitor, a second process) never block the
 *   writer and see a consistent state.
 * - `synchronous = FULL`: each commit is fsynced before it returns. The
 *   Catalog is written once per archive, partition or transfer (a few
 *   commits a second at most), so the fsync costs nothing that matters,
 *   and a record that said "done" survives a power cut, as the archives it
 *   describes do (they are fsynced too). NORMAL could lose the last
 *   commits on power loss.
 * - `busy_timeout`: another process's short write makes us wait (default
 *   5 s), not fail.
 * - `foreign_keys = ON`: a partition cannot point at an unrecorded archive.
 *
 * All methods are synchronous (better-sqlite3) and each is one statement
 * or one transaction: nothing holds a lock across an `await`, so two
 * Catalog objects on one file, in one process or several, interleave
 * safely. Times are stored as integer milliseconds since the epoch.
 *
 * @module
 */
import { hostname } from 'node:os';
import { accessSync, constants as fsConstants, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Dna, DnaAlgorithm } from '../dna/dna.js';
import { DNA_ALGORITHMS, HEX_LENGTH } from '../dna/dna.js';
import { StowageError } from '../errors.js';
import { INT64_MAX, INT64_MIN, type KeyBound } from '../db/table-source.js';
import { checkInt, checkOneOf, checkOptionKeys } from '../util/options.js';
import { CATALOG_SCHEMA_VERSION, checkCatalogFile, migrate, retryBusy } from './migrations.js';

/** Options of {@link Catalog}. */
export interface CatalogOptions {
  /**
   * Open an existing, up-to-date catalog read-only (e.g. for a Monitor,
   * which then needs `history: false`: it cannot keep its runs). Default
   * false. Where the folder cannot be written (a read-only file system
   * such as a snapshot or a read-only mount of the backup disk, or a
   * folder of another user) and SQLite finds no WAL files there to use, a
   * catalog its writer closed is read from a copy in memory made when it
   * is opened: later changes are not seen. One whose `-wal` file still
   * holds changes, but no `-shm`, is refused there (EDB, saying what to
   * do). WAL does not work over a network file system: read it on the host
   * that writes it.
   */
  readonly?: boolean;
  /** How long to wait for another writer's lock, in ms (default 5000). */
  busyTimeoutMs?: number;
}

/** A time given to the Catalog: a Date or milliseconds since the epoch. */
export type CatalogTime = Date | number;

/** An archive to record; see {@link Catalog.recordArchive}. */
export interface ArchiveInput {
  /** Where the archive is (the same string every time: the key). */
  path: string;
  /** Its DNA, computed while it was written. */
  dna: Dna;
  /** When it was written (default now). */
  created?: CatalogTime;
  /** Bytes that went into it (before compression), if known. */
  bytesIn?: number;
  /** Number of entries in it, if known. */
  entries?: number;
}

/** A recorded archive. */
export interface ArchiveRecord {
  /** Where the archive is. */
  readonly path: string;
  /** Its DNA. */
  readonly dna: Dna;
  /** When it was written. */
  readonly created: Date;
  /** Bytes that went into it, or null. */
  readonly bytesIn: number | null;
  /** Number of entries, or null. */
  readonly entries: number | null;
}

/**
 * The state of a partition (a key range of a table): `complete` (full,
 * not yet archived), `partial` (the tail, still filling), `archived`
 * (written to its archive), `empty` (no rows: recorded, never written).
 */
export type PartitionState = 'complete' | 'partial' | 'archived' | 'empty';

/** All partition states. */
export const PARTITION_STATES: readonly PartitionState[] = Object.freeze(['complete', 'partial', 'archived', 'empty']);

/** A partition to record; see {@link Catalog.recordPartition}. */
export interface PartitionInput {
  /** The source's name (`TableSource.name`). */
  source: string;
  /** The table. */
  table: string;
  /** The key column. */
  key: string;
  /** Smallest key of the range. */
  lo: KeyBound;
  /** Largest key of the range. */
  hi: KeyBound;
  /** Its state. */
  state: PartitionState;
  /** Rows in the range. */
  rows: number;
  /** The range digest (`RangeDigest.digest`), if computed. */
  digest?: string | null;
  /** The archive holding it; must be recorded first with {@link Catalog.recordArchive}. */
  archivePath?: string | null;
}

/** A recorded partition. */
export interface PartitionRecord {
  /** The source's name. */
  readonly source: string;
  /** The table. */
  readonly table: string;
  /** The key column. */
  readonly key: string;
  /** Smallest key. */
  readonly lo: bigint;
  /** Largest key. */
  readonly hi: bigint;
  /** Its state. */
  readonly state: PartitionState;
  /** Rows in the range. */
  readonly rows: number;
  /** The range digest, or null. */
  readonly digest: string | null;
  /** The archive holding it, or null. */
  readonly archivePath: string | null;
  /** When it was last recorded. */
  readonly updated: Date;
}

/** How a transfer or job ended, or `running` while it has not. */
export type RunStatus = 'running' | 'ok' | 'failed' | 'aborted';

/** All run statuses. */
export const RUN_STATUSES: readonly RunStatus[] = Object.freeze(['running', 'ok', 'failed', 'aborted']);

/** A transfer to record; see {@link Catalog.recordTransfer}. */
export interface TransferInput {
  /** Where from (a transport or host label). */
  src: string;
  /** Where to. */
  dst: string;
  /** The file's path. */
  path: string;
  /** The DNA of what was sent, if known. */
  dna?: Dna;
  /** Status (default `ok` when `finished` is given, else `running`). */
  status?: RunStatus;
  /** When it started (default now). */
  started?: CatalogTime;
  /** When it finished, if it has. */
  finished?: CatalogTime;
  /** What went wrong, for a failed transfer. */
  error?: string;
}

/** A recorded transfer. */
export interface TransferRecord {
  /** Its id. */
  readonly id: number;
  /** Where from. */
  readonly src: string;
  /** Where to. */
  readonly dst: string;
  /** The file's path. */
  readonly path: string;
  /** The DNA sent, or null. */
  readonly dna: Dna | null;
  /** Its status. */
  readonly status: RunStatus;
  /** When it started. */
  readonly started: Date;
  /** When it finished, or null. */
  readonly finished: Date | null;
  /** What went wrong, or null. */
  readonly error: string | null;
}

/** How a transfer or job ended; see {@link Catalog.finishTransfer} and {@link Catalog.finishJob}. */
export interface FinishInput {
  /** The outcome. */
  status: Exclude<RunStatus, 'running'>;
  /** What went wrong (failed, aborted). */
  error?: string;
  /** When it finished (default now). */
  finished?: CatalogTime;
}

/** A recorded job run. */
export interface JobRecord {
  /** Its id. */
  readonly id: number;
  /** The job's name, e.g. `conditions-db-dump`. */
  readonly name: string;
  /** When it started. */
  readonly started: Date;
  /** When it finished, or null while running (or if it died). */
  readonly finished: Date | null;
  /** Its status; `running` with an old `started` is a run that never finished. */
  readonly status: RunStatus;
  /** What went wrong, or null. */
  readonly error: string | null;
  /** The host it ran on. */
  readonly host: string;
  /** Its process id. */
  readonly pid: number;
  /** Caller-supplied JSON details, or null. */
  readonly details: unknown;
}

/** Options of {@link Catalog.startJob}. */
export interface StartJobOptions {
  /** JSON-serialisable facts about the run (arguments, counts). */
  details?: unknown;
  /** When it started (default now). */
  started?: CatalogTime;
}

/** Options of {@link Catalog.withJob}. */
export interface WithJobOptions {
  /** JSON-serialisable facts about the run. */
  details?: unknown;
  /** If `fn` rejects with this signal's reason, the job is recorded as `aborted`. */
  signal?: AbortSignal;
}

/** A listing limit. */
export interface ListOptions {
  /** At most this many records, newest first (default 100). */
  limit?: number;
}

/** Status of a monitor run or of one of its checks (see `Monitor`). */
export type MonitorRunStatus = 'ok' | 'warning' | 'critical';

/** All monitor statuses, best first. */
export const MONITOR_RUN_STATUSES: readonly MonitorRunStatus[] = Object.freeze(['ok', 'warning', 'critical']);

/** One check of a monitor run to record; see {@link Catalog.recordMonitorRun}. */
export interface MonitorResultInput {
  /** The check's name (`age`, `size`, ...); unique within a run. */
  check: string;
  /** Its status. */
  status: MonitorRunStatus;
  /** Its one-line message. */
  message: string;
  /** Its measured values, JSON-serialisable (for trend plots). */
  metrics?: unknown;
}

/** A monitor run to record; see {@link Catalog.recordMonitorRun}. */
export interface MonitorRunInput {
  /** The monitor's name (the key of its history). */
  monitor: string;
  /** When the check ran (default now). */
  checked?: CatalogTime;
  /** Overall status. */
  status: MonitorRunStatus;
  /** The whole report, JSON-serialisable (`MonitorReport.toJSON()`). */
  report: unknown;
  /** One entry per check. */
  results: readonly MonitorResultInput[];
}

/** A recorded monitor run. */
export interface MonitorRunRecord {
  /** Its id. */
  readonly id: number;
  /** The monitor's name. */
  readonly monitor: string;
  /** When the check ran. */
  readonly checked: Date;
  /** Overall status. */
  readonly status: MonitorRunStatus;
  /** The report as recorded (parsed JSON). */
  readonly report: unknown;
}

/** One recorded check of a monitor run. */
export interface MonitorResultRecord {
  /** The run's id. */
  readonly runId: number;
  /** When the run checked. */
  readonly checked: Date;
  /** The check's name. */
  readonly check: string;
  /** Its status. */
  readonly status: MonitorRunStatus;
  /** Its message. */
  readonly message: string;
  /** Its measured values (parsed JSON), or null. */
  readonly metrics: unknown;
}

/** Filters of {@link Catalog.monitorRuns} and {@link Catalog.monitorResults}. */
export interface MonitorHistoryOptions extends ListOptions {
  /** Only runs at or after this time. */
  since?: CatalogTime;
  /** Only runs at or before this time. */
  until?: CatalogTime;
}

/** The last state a monitor told one notifier; see {@link Catalog.monitorNotifyState}. */
export interface MonitorNotifyStateRecord {
  /** The state (parsed JSON). */
  readonly state: unknown;
  /** When it was stored. */
  readonly updated: Date;
}

interface ArchiveRow {
  path: string;
  dig: string;
  size: bigint;
  algorithm: string;
  created: bigint;
  bytes_in: bigint | null;
  entries: bigint | null;
}
interface PartitionRow {
  source: string;
  tbl: string;
  key: string;
  lo: bigint;
  hi: bigint;
  state: string;
  rows: bigint;
  digest: string | null;
  archive_path: string | null;
  updated: bigint;
}
interface TransferRow {
  id: bigint;
  src: string;
  dst: string;
  path: string;
  dig: string | null;
  size: bigint | null;
  algorithm: string | null;
  status: string;
  started: bigint;
  finished: bigint | null;
  error: string | null;
}
interface JobRow {
  id: bigint;
  name: string;
  started: bigint;
  finished: bigint | null;
  status: string;
  error: string | null;
  host: string;
  pid: bigint;
  details: string | null;
}

interface MonitorRunRow {
  id: bigint;
  monitor: string;
  checked: bigint;
  status: string;
  report: string;
}
interface MonitorResultRow {
  run_id: bigint;
  checked: bigint;
  check_name: string;
  status: string;
  message: string;
  metrics: string | null;
}

function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toJson(where: string, option: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new StowageError('EBAD_CONFIG', `${where}: "${option}" must be JSON-serialisable: ${(err as Error).message}`, { details: { where, option }, cause: err });
  }
  if (text === undefined) throw bad(where, option, `"${option}" must be JSON-serialisable, got ${typeof value}.`);
  return text;
}

const nullableNumber = (v: bigint | null): number | null => (v === null ? null : Number(v));
const nullableDate = (v: bigint | null): Date | null => (v === null ? null : new Date(Number(v)));

function toArchive(r: ArchiveRow): ArchiveRecord {
  return Object.freeze({
    path: r.path,
    dna: Object.freeze({ dig: r.dig, size: Number(r.size), algorithm: r.algorithm as DnaAlgorithm }),
    created: new Date(Number(r.created)),
    bytesIn: nullableNumber(r.bytes_in),
    entries: nullableNumber(r.entries),
  });
}
function toPartition(r: PartitionRow): PartitionRecord {
  return Object.freeze({
    source: r.source,
    table: r.tbl,
    key: r.key,
    lo: r.lo,
    hi: r.hi,
    state: r.state as PartitionState,
    rows: Number(r.rows),
    digest: r.digest,
    archivePath: r.archive_path,
    updated: new Date(Number(r.updated)),
  });
}
function toTransfer(r: TransferRow): TransferRecord {
  return Object.freeze({
    id: Number(r.id),
    src: r.src,
    dst: r.dst,
    path: r.path,
    dna: r.dig === null ? null : Object.freeze({ dig: r.dig, size: Number(r.size ?? 0n), algorithm: (r.algorithm ?? 'md5') as DnaAlgorithm }),
    status: r.status as RunStatus,
    started: new Date(Number(r.started)),
    finished: nullableDate(r.finished),
    error: r.error,
  });
}
function toJob(r: JobRow): JobRecord {
  let details: unknown = null;
  if (r.details !== null) {
    try {
      details = JSON.parse(r.details);
    } catch {
      details = r.details;
    }
  }
  return Object.freeze({
    id: Number(r.id),
    name: r.name,
    started: new Date(Number(r.started)),
    finished: nullableDate(r.finished),
    status: r.status as RunStatus,
    error: r.error,
    host: r.host,
    pid: Number(r.pid),
    details,
  });
}

function bad(where: string, option: string, message: string, value?: unknown): StowageError {
  return new StowageError('EBAD_CONFIG', `${where}: ${message}`, { details: { where, option, value } });
}

function checkString(where: string, option: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0) throw bad(where, option, `"${option}" must be a non-empty string, got ${JSON.stringify(v) ?? String(v)}.`, v);
  return v;
}

function checkTime(where: string, option: string, v: CatalogTime | undefined): number {
  if (v === undefined) return Date.now();
  const ms = v instanceof Date ? v.getTime() : v;
  // A JavaScript Date reaches ±8.64e15 ms; beyond that (1e300, say) the file's INTEGER column would refuse it as EDB.
  if (typeof ms !== 'number' || !Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw bad(where, option, `"${option}" must be a valid Date or milliseconds since the epoch, got ${String(v)}.`, v);
  return Math.round(ms);
}

function checkOptionalCount(where: string, option: string, v: number | undefined): number | null {
  return v === undefined ? null : checkInt(where, option, v, 0);
}

function checkDna(where: string, option: string, dna: unknown): Dna {
  const d = dna as Dna | undefined;
  if (typeof d !== 'object' || d === null || typeof d.dig !== 'string' || !/^[0-9a-f]+$/i.test(d.dig)) {
    throw bad(where, option, `"${option}" must be a DNA { dig, size, algorithm }.`, dna);
  }
  checkInt(where, `${option}.size`, d.size, 0);
  const algorithm = checkOneOf(where, `${option}.algorithm`, d.algorithm ?? 'md5', DNA_ALGORITHMS);
  // As a sidecar must: a digest of the algorithm's length (an md5 recorded as sha256 would never match a file).
  const digits = HEX_LENGTH[algorithm];
  if (d.dig.length !== digits) throw bad(where, `${option}.dig`, `"${option}.dig" must be ${digits} hex digits for ${algorithm}, got ${d.dig.length}.`, d.dig);
  return { dig: d.dig.toLowerCase(), size: d.size, algorithm: d.algorithm ?? 'md5' };
}

function checkKey(where: string, option: string, v: unknown): bigint {
  let b: bigint | undefined;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  if (b === undefined || b < INT64_MIN || b > INT64_MAX) {
    throw bad(where, option, `"${option}" must be a 64-bit signed integer (bigint or safe integer number), got ${String(v)}.`, typeof v === 'bigint' ? v.toString() : v);
  }
  return b;
}

/** Prepares every statement of the Catalog once. */
function prepareStatements(db: Database.Database) {
  return {
    upsertArchive: db.prepare(
      `INSERT INTO archives (path, dig, size, algorithm, created, bytes_in, entries, recorded)
       VALUES (@path, @dig, @size, @algorithm, @created, @bytesIn, @entries, @now)
       ON CONFLICT (path) DO UPDATE SET dig = excluded.dig, size = excluded.size, algorithm = excluded.algorithm,
         created = excluded.created, bytes_in = excluded.bytes_in, entries = excluded.entries, recorded = excluded.recorded
       RETURNING path, dig, size, algorithm, created, bytes_in, entries`,
    ),
    archive: db.prepare('SELECT path, dig, size, algorithm, created, bytes_in, entries FROM archives WHERE path = ?'),
    archives: db.prepare(
      "SELECT path, dig, size, algorithm, created, bytes_in, entries FROM archives WHERE substr(path, 1, length(@prefix)) = @prefix ORDER BY created DESC, path LIMIT @limit",
    ),
    deleteArchive: db.prepare('DELETE FROM archives WHERE path = ?'),
    upsertPartition: db.prepare(
      `INSERT INTO partitions (source, tbl, key, lo, hi, state, rows, digest, archive_path, updated)
       VALUES (@source, @table, @key, @lo, @hi, @state, @rows, @digest, @archivePath, @now)
       ON CONFLICT (source, tbl, key, lo, hi) DO UPDATE SET state = excluded.state, rows = excluded.rows,
         digest = excluded.digest, archive_path = excluded.archive_path, updated = excluded.updated
       RETURNING *`,
    ),
    dropOverlappingEmpty: db.prepare(
      `DELETE FROM partitions WHERE source = @source AND tbl = @table AND key = @key AND state = 'empty'
         AND lo <= @hi AND hi >= @lo AND NOT (lo = @lo AND hi = @hi)`,
    ),
    partitions: db.prepare('SELECT * FROM partitions WHERE source = ? AND tbl = ? ORDER BY key, lo, hi'),
    partitionsByKey: db.prepare('SELECT * FROM partitions WHERE source = ? AND tbl = ? AND key = ? ORDER BY lo, hi'),
    insertTransfer: db.prepare(
      `INSERT INTO transfers (src, dst, path, dig, size, algorithm, status, started, finished, error)
       VALUES (@src, @dst, @path, @dig, @size, @algorithm, @status, @started, @finished, @error) RETURNING *`,
    ),
    finishTransfer: db.prepare(
      `UPDATE transfers SET status = @status, finished = @finished, error = @error,
         dig = coalesce(@dig, dig), size = coalesce(@size, size), algorithm = coalesce(@algorithm, algorithm)
       WHERE id = @id AND status = 'running' RETURNING *`,
    ),
    transfer: db.prepare('SELECT * FROM transfers WHERE id = ?'),
    transfers: db.prepare(
      `SELECT * FROM transfers WHERE (@path IS NULL OR path = @path) AND (@src IS NULL OR src = @src)
         AND (@dst IS NULL OR dst = @dst) AND (@status IS NULL OR status = @status)
       ORDER BY started DESC, id DESC LIMIT @limit`,
    ),
    insertJob: db.prepare(
      `INSERT INTO jobs (name, started, status, host, pid, details) VALUES (@name, @started, 'running', @host, @pid, @details) RETURNING *`,
    ),
    finishJob: db.prepare(`UPDATE jobs SET status = @status, finished = @finished, error = @error WHERE id = @id AND status = 'running' RETURNING *`),
    job: db.prepare('SELECT * FROM jobs WHERE id = ?'),
    lastJobs: db.prepare('SELECT * FROM jobs WHERE (@name IS NULL OR name = @name) ORDER BY started DESC, id DESC LIMIT @limit'),
    unfinishedJobs: db.prepare("SELECT * FROM jobs WHERE status = 'running' AND (@name IS NULL OR name = @name) ORDER BY started, id"),
    insertMonitorRun: db.prepare('INSERT INTO monitor_runs (monitor, checked, status, report) VALUES (@monitor, @checked, @status, @report) RETURNING id'),
    insertMonitorResult: db.prepare(
      'INSERT INTO monitor_results (run_id, check_name, status, message, metrics) VALUES (@runId, @check, @status, @message, @metrics)',
    ),
    monitorRuns: db.prepare(
      `SELECT id, monitor, checked, status, report FROM monitor_runs
       WHERE monitor = @monitor AND checked >= @since AND checked <= @until ORDER BY checked DESC, id DESC LIMIT @limit`,
    ),
    monitorResults: db.prepare(
      `SELECT r.id AS run_id, r.checked, x.check_name, x.status, x.message, x.metrics
       FROM monitor_runs r JOIN monitor_results x ON x.run_id = r.id
       WHERE r.monitor = @monitor AND (@check IS NULL OR x.check_name = @check) AND r.checked >= @since AND r.checked <= @until
       ORDER BY r.checked DESC, r.id DESC, x.check_name LIMIT @limit`,
    ),
    monitorNotifyState: db.prepare('SELECT state, updated FROM monitor_notify_state WHERE monitor = ? AND notifier = ?'),
    setMonitorNotifyState: db.prepare(
      `INSERT INTO monitor_notify_state (monitor, notifier, state, updated) VALUES (@monitor, @notifier, @state, @updated)
       ON CONFLICT (monitor, notifier) DO UPDATE SET state = excluded.state, updated = excluded.updated`,
    ),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

function checkLimit(where: string, options: ListOptions | undefined): number {
  return checkInt(where, 'limit', options?.limit ?? 100, 1);
}

/**
 * The row a write statement with RETURNING gives, read to the end: with
 * `get`, better-sqlite3 takes the first row and resets the statement, and
 * an error of the implicit commit there (SQLITE_FULL on a full disk) is
 * lost, so the caller would get a record of a write that was rolled back.
 *
 * @param statement - an INSERT/UPDATE ... RETURNING
 * @param params - its parameters
 */
function returning(statement: Database.Statement, params: unknown): unknown {
  return statement.all(params)[0];
}

/**
 * stowage's state store: one SQLite file in WAL mode, schema versioned by
 * `user_version` and migrated forward on open (see `migrations.ts`).
 *
 * @example
 * ```ts
 * using catalog = new Catalog('/backup/stowage.catalog');
 * catalog.recordArchive({ path: 'Vld/0000000001-0000010000.tar.gz', dna, entries: 3 });
 * const job = catalog.startJob('conditions-db-dump');
 * catalog.finishJob(job.id, { status: 'ok' });
 * ```
 */
export class Catalog implements Disposable, AsyncDisposable {
  /** The catalog file (or `:memory:`). */
  readonly path: string;
  readonly #db: Database.Database;
  readonly #readonly: boolean;
  readonly #st: Statements;
  #closed = false;

  /**
   * Opens (creating if needed) a catalog and migrates it to the current
   * schema. EBAD_CONFIG if the file was written by a newer stowage, or,
   * to be written, its folder or the file cannot be (a read-only file
   * system); ENOT_FOUND if its directory does not exist (or, read-only,
   * the file); EDB if it is not an SQLite file or a migration fails.
   *
   * @param path - the catalog file, or `':memory:'` (tests)
   * @param options - see {@link CatalogOptions}
   */
  constructor(path: string, options: CatalogOptions = {}) {
    checkOptionKeys('Catalog', options, ['readonly', 'busyTimeoutMs']);
    checkString('Catalog', 'path', path);
    const timeout = checkInt('Catalog', 'busyTimeoutMs', options.busyTimeoutMs ?? 5000, 0, 2 ** 31 - 1);
    this.path = path;
    this.#readonly = options.readonly === true;
    if (!this.#readonly && path !== ':memory:') {
      // Where nothing can be written, SQLite would open the file read-only without a word, and fail later.
      const denied = notWritable(path);
      if (denied !== undefined) {
        throw new StowageError(
          'EBAD_CONFIG',
          `Catalog ${path}: cannot open it for writing: ${denied.what} is not writable (${denied.code}), and a catalog records into the file and its -wal and -shm files beside it. Put the catalog on a writable disk, or open it with readonly: true to read it.`,
          { details: { path, option: 'readonly', notWritable: denied.path, errno: denied.code } },
        );
      }
    }
    try {
      this.#db = this.#readonly ? openReadonly(path, timeout) : new Database(path, { timeout });
    } catch (err) {
      throw this.#error(err, 'open');
    }
    try {
      this.#db.defaultSafeIntegers(true);
      this.#db.pragma('foreign_keys = ON');
      this.#db.pragma('synchronous = FULL');
      // Before WAL mode is switched on (which is written to the file): a file
      // this code must not migrate is refused as it was found.
      const db = this.#db;
      retryBusy(() => checkCatalogFile(db, path), timeout);
      if (!this.#readonly && path !== ':memory:') {
        const mode = String(retryBusy(() => db.pragma('journal_mode = WAL', { simple: true }), timeout));
        if (mode !== 'wal') {
          throw new StowageError('EDB', `Catalog ${path}: cannot switch to WAL mode (got ${mode}); put the catalog on a local file system.`, { details: { path, journalMode: mode } });
        }
      }
      if (this.#readonly) {
        const v = Number(this.#db.pragma('user_version', { simple: true }));
        if (v !== CATALOG_SCHEMA_VERSION) {
          throw new StowageError(
            'EBAD_CONFIG',
            v > CATALOG_SCHEMA_VERSION
              ? `Catalog ${path} has schema version ${v}, newer than the ${CATALOG_SCHEMA_VERSION} this version of stowage knows: upgrade stowage to read it.`
              : `Catalog ${path} has schema version ${v}, older than ${CATALOG_SCHEMA_VERSION}: open it once without readonly to migrate it.`,
            { details: { path, version: v, known: CATALOG_SCHEMA_VERSION } },
          );
        }
      } else {
        retryBusy(() => migrate(db, path), timeout);
      }
      this.#st = prepareStatements(this.#db);
    } catch (err) {
      this.#db.close();
      throw this.#error(err, 'open');
    }
  }

  /** The file's schema version (`user_version`). */
  get schemaVersion(): number {
    return this.#run('read the schema version', () => Number(this.#db.pragma('user_version', { simple: true })));
  }

  /**
   * The underlying better-sqlite3 connection, for stowage modules that keep
   * their own tables here (added by a migration) and for ad-hoc queries.
   * Do not change its pragmas or `user_version`.
   */
  get db(): Database.Database {
    this.#checkOpen();
    return this.#db;
  }

  /**
   * Records an archive and its DNA, replacing an earlier record of the same
   * path (a rewritten partial tail).
   *
   * @param input - see {@link ArchiveInput}
   */
  recordArchive(input: ArchiveInput): ArchiveRecord {
    const where = 'Catalog.recordArchive';
    checkOptionKeys(where, input, ['path', 'dna', 'created', 'bytesIn', 'entries']);
    const path = checkString(where, 'path', input?.path);
    const dna = checkDna(where, 'dna', input.dna);
    const params = {
      path,
      dig: dna.dig,
      size: dna.size,
      algorithm: dna.algorithm,
      created: checkTime(where, 'created', input.created),
      bytesIn: checkOptionalCount(where, 'bytesIn', input.bytesIn),
      entries: checkOptionalCount(where, 'entries', input.entries),
      now: Date.now(),
    };
    return this.#run(`record archive ${path}`, () => toArchive(returning(this.#st.upsertArchive, params) as ArchiveRow));
  }

  /**
   * The record of one archive, or undefined.
   *
   * @param path - the archive's path as recorded
   */
  archive(path: string): ArchiveRecord | undefined {
    checkString('Catalog.archive', 'path', path);
    return this.#run(`read archive ${path}`, () => {
      const r = this.#st.archive.get(path) as ArchiveRow | undefined;
      return r === undefined ? undefined : toArchive(r);
    });
  }

  /**
   * Recorded archives, newest first.
   *
   * @param options - `prefix` (only paths starting with it) and `limit`
   */
  archives(options: ListOptions & { prefix?: string } = {}): ArchiveRecord[] {
    checkOptionKeys('Catalog.archives', options, ['prefix', 'limit']);
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string') throw bad('Catalog.archives', 'prefix', '"prefix" must be a string.', prefix);
    const limit = checkLimit('Catalog.archives', options);
    return this.#run('list archives', () => (this.#st.archives.all({ prefix, limit }) as ArchiveRow[]).map(toArchive));
  }

  /**
   * Forgets an archive (after it was pruned); partitions that pointed at it
   * keep their record with `archivePath` null. Returns whether it was known.
   *
   * @param path - the archive's path as recorded
   */
  forgetArchive(path: string): boolean {
    checkString('Catalog.forgetArchive', 'path', path);
    return this.#run(`forget archive ${path}`, () => this.#st.deleteArchive.run(path).changes > 0);
  }

  /**
   * Records a partition (a key range of a table), replacing an earlier
   * record of the same source, table, key and bounds. A range that is not
   * `empty` also drops the `empty` records (runs of empty ranges) that
   * overlap it, which it proves wrong: rows arrived there since. ENOT_FOUND
   * if `archivePath` names an archive not recorded yet.
   *
   * @param input - see {@link PartitionInput}
   */
  recordPartition(input: PartitionInput): PartitionRecord {
    const where = 'Catalog.recordPartition';
    checkOptionKeys(where, input, ['source', 'table', 'key', 'lo', 'hi', 'state', 'rows', 'digest', 'archivePath']);
    const lo = checkKey(where, 'lo', input?.lo);
    const hi = checkKey(where, 'hi', input.hi);
    if (lo > hi) throw bad(where, 'lo', `"lo" (${lo}) is greater than "hi" (${hi}).`, lo.toString());
    const digest = input.digest ?? null;
    if (digest !== null && (typeof digest !== 'string' || !/^[0-9a-f]+$/.test(digest))) throw bad(where, 'digest', '"digest" must be lower-case hex or null.', digest);
    const archivePath = input.archivePath ?? null;
    if (archivePath !== null) checkString(where, 'archivePath', archivePath);
    const params = {
      source: checkString(where, 'source', input.source),
      table: checkString(where, 'table', input.table),
      key: checkString(where, 'key', input.key),
      lo,
      hi,
      state: checkOneOf(where, 'state', input.state, PARTITION_STATES),
      rows: checkInt(where, 'rows', input.rows, 0),
      digest,
      archivePath,
      now: Date.now(),
    };
    return this.#run(
      `record partition ${params.table} [${lo}, ${hi}]`,
      () =>
        this.#db.transaction(() => {
          if (params.state !== 'empty') this.#st.dropOverlappingEmpty.run(params);
          return toPartition(returning(this.#st.upsertPartition, params) as PartitionRow);
        })(),
      archivePath ?? undefined,
    );
  }

  /**
   * The recorded partitions of a table, ordered by key column then range.
   *
   * @param source - the source's name
   * @param table - the table
   * @param options - `key`: only partitions on this key column
   */
  partitions(source: string, table: string, options: { key?: string } = {}): PartitionRecord[] {
    checkOptionKeys('Catalog.partitions', options, ['key']);
    checkString('Catalog.partitions', 'source', source);
    checkString('Catalog.partitions', 'table', table);
    return this.#run(`list partitions of ${table}`, () => {
      const rows = options.key === undefined ? this.#st.partitions.all(source, table) : this.#st.partitionsByKey.all(source, table, checkString('Catalog.partitions', 'key', options.key));
      return (rows as PartitionRow[]).map(toPartition);
    });
  }

  /**
   * Records a transfer: either once it is over (give `finished`, and
   * `status` if not `ok`), or when it starts (then call
   * {@link finishTransfer} with its id).
   *
   * @param input - see {@link TransferInput}
   */
  recordTransfer(input: TransferInput): TransferRecord {
    const where = 'Catalog.recordTransfer';
    checkOptionKeys(where, input, ['src', 'dst', 'path', 'dna', 'status', 'started', 'finished', 'error']);
    const dna = input?.dna === undefined ? undefined : checkDna(where, 'dna', input.dna);
    const finished = input.finished === undefined ? null : checkTime(where, 'finished', input.finished);
    const status = checkOneOf(where, 'status', input.status ?? (finished === null ? 'running' : 'ok'), RUN_STATUSES);
    if ((status === 'running') !== (finished === null)) {
      throw bad(where, 'status', status === 'running' ? 'a running transfer cannot have "finished".' : `a transfer with status "${status}" needs "finished".`, status);
    }
    if (input.error !== undefined && typeof input.error !== 'string') throw bad(where, 'error', '"error" must be a string.', input.error);
    const params = {
      src: checkString(where, 'src', input.src),
      dst: checkString(where, 'dst', input.dst),
      path: checkString(where, 'path', input.path),
      dig: dna?.dig ?? null,
      size: dna?.size ?? null,
      algorithm: dna?.algorithm ?? null,
      status,
      started: checkTime(where, 'started', input.started),
      finished,
      error: input.error ?? null,
    };
    return this.#run(`record transfer of ${params.path}`, () => toTransfer(returning(this.#st.insertTransfer, params) as TransferRow));
  }

  /**
   * Ends a running transfer. ENOT_FOUND for an unknown id; EBAD_CONFIG if
   * it has already ended.
   *
   * @param id - from {@link recordTransfer}
   * @param input - outcome, and the DNA sent if known only now
   */
  finishTransfer(id: number, input: FinishInput & { dna?: Dna }): TransferRecord {
    const where = 'Catalog.finishTransfer';
    checkInt(where, 'id', id, 1);
    checkOptionKeys(where, input, ['status', 'error', 'finished', 'dna']);
    const dna = input?.dna === undefined ? undefined : checkDna(where, 'dna', input.dna);
    const params = {
      id,
      ...this.#finishParams(where, input),
      dig: dna?.dig ?? null,
      size: dna?.size ?? null,
      algorithm: dna?.algorithm ?? null,
    };
    return this.#run(`finish transfer ${id}`, () => {
      const r = returning(this.#st.finishTransfer, params) as TransferRow | undefined;
      if (r !== undefined) return toTransfer(r);
      throw this.#notRunning('transfer', id, this.#st.transfer.get(id) as TransferRow | undefined);
    });
  }

  /**
   * Recorded transfers, newest first, filtered by any of path, src, dst, status.
   *
   * @param options - filters and limit
   */
  transfers(options: ListOptions & { path?: string; src?: string; dst?: string; status?: RunStatus } = {}): TransferRecord[] {
    const where = 'Catalog.transfers';
    checkOptionKeys(where, options, ['path', 'src', 'dst', 'status', 'limit']);
    const params = {
      path: options.path === undefined ? null : checkString(where, 'path', options.path),
      src: options.src === undefined ? null : checkString(where, 'src', options.src),
      dst: options.dst === undefined ? null : checkString(where, 'dst', options.dst),
      status: options.status === undefined ? null : checkOneOf(where, 'status', options.status, RUN_STATUSES),
      limit: checkLimit(where, options),
    };
    return this.#run('list transfers', () => (this.#st.transfers.all(params) as TransferRow[]).map(toTransfer));
  }

  /**
   * Records that a job run started (with this host and pid); finish it
   * with {@link finishJob}. A run left `running` is one that died.
   *
   * @param name - the job's name
   * @param options - details, start time
   */
  startJob(name: string, options: StartJobOptions = {}): JobRecord {
    const where = 'Catalog.startJob';
    checkString(where, 'name', name);
    checkOptionKeys(where, options, ['details', 'started']);
    let details: string | null = null;
    if (options.details !== undefined) {
      try {
        details = JSON.stringify(options.details) ?? null;
      } catch (err) {
        throw new StowageError('EBAD_CONFIG', `${where}: "details" must be JSON-serialisable: ${(err as Error).message}`, { details: { where, option: 'details' }, cause: err });
      }
    }
    const params = { name, started: checkTime(where, 'started', options.started), host: hostname(), pid: process.pid, details };
    return this.#run(`start job ${name}`, () => toJob(returning(this.#st.insertJob, params) as JobRow));
  }

  /**
   * Records how a running job ended. ENOT_FOUND for an unknown id;
   * EBAD_CONFIG if it has already ended.
   *
   * @param id - from {@link startJob}
   * @param input - outcome
   */
  finishJob(id: number, input: FinishInput): JobRecord {
    const where = 'Catalog.finishJob';
    checkInt(where, 'id', id, 1);
    checkOptionKeys(where, input, ['status', 'error', 'finished']);
    const params = { id, ...this.#finishParams(where, input) };
    return this.#run(`finish job ${id}`, () => {
      const r = returning(this.#st.finishJob, params) as JobRow | undefined;
      if (r !== undefined) return toJob(r);
      throw this.#notRunning('job', id, this.#st.job.get(id) as JobRow | undefined);
    });
  }

  /**
   * Runs `fn` as a recorded job: `running` before, then `ok`, `failed`
   * (with the error's message) or `aborted` (the signal's reason, or an
   * EABORTED / AbortError). Returns or rethrows what `fn` does.
   *
   * @param name - the job's name
   * @param fn - the work
   * @param options - details, signal
   */
  async withJob<T>(name: string, fn: () => Promise<T>, options: WithJobOptions = {}): Promise<T> {
    checkOptionKeys('Catalog.withJob', options, ['details', 'signal']);
    const job = this.startJob(name, options.details === undefined ? {} : { details: options.details });
    try {
      const result = await fn();
      this.finishJob(job.id, { status: 'ok' });
      return result;
    } catch (err) {
      const aborted =
        (options.signal?.aborted === true && err === options.signal.reason) ||
        (err instanceof StowageError && err.code === 'EABORTED') ||
        (err as Error | undefined)?.name === 'AbortError';
      this.finishJob(job.id, { status: aborted ? 'aborted' : 'failed', error: (err as Error | undefined)?.message ?? String(err) });
      throw err;
    }
  }

  /**
   * The latest job runs, newest first.
   *
   * @param options - `name` (only this job) and `limit` (default 100)
   */
  lastJobs(options: ListOptions & { name?: string } = {}): JobRecord[] {
    checkOptionKeys('Catalog.lastJobs', options, ['name', 'limit']);
    const name = options.name === undefined ? null : checkString('Catalog.lastJobs', 'name', options.name);
    const limit = checkLimit('Catalog.lastJobs', options);
    return this.#run('list jobs', () => (this.#st.lastJobs.all({ name, limit }) as JobRow[]).map(toJob));
  }

  /**
   * Job runs still marked `running`, oldest first: live ones, and ones
   * that died without finishing (compare `host`/`pid`/`started`).
   *
   * @param options - `name`: only this job
   */
  unfinishedJobs(options: { name?: string } = {}): JobRecord[] {
    checkOptionKeys('Catalog.unfinishedJobs', options, ['name']);
    const name = options.name === undefined ? null : checkString('Catalog.unfinishedJobs', 'name', options.name);
    return this.#run('list unfinished jobs', () => (this.#st.unfinishedJobs.all({ name }) as JobRow[]).map(toJob));
  }

  /**
   * Appends one run of a monitor to its history: the run (with the whole
   * report as JSON) and one row per check, in one transaction.
   *
   * @param input - see {@link MonitorRunInput}
   */
  recordMonitorRun(input: MonitorRunInput): MonitorRunRecord {
    const where = 'Catalog.recordMonitorRun';
    checkOptionKeys(where, input, ['monitor', 'checked', 'status', 'report', 'results']);
    const monitor = checkString(where, 'monitor', input?.monitor);
    const status = checkOneOf(where, 'status', input.status, MONITOR_RUN_STATUSES);
    const checked = checkTime(where, 'checked', input.checked);
    const report = toJson(where, 'report', input.report);
    if (!Array.isArray(input.results)) throw bad(where, 'results', '"results" must be an array.', input.results);
    const seen = new Set<string>();
    const results = input.results.map((r: MonitorResultInput, i) => {
      checkOptionKeys(`${where} results[${i}]`, r, ['check', 'status', 'message', 'metrics']);
      const check = checkString(where, `results[${i}].check`, r?.check);
      if (seen.has(check)) throw bad(where, `results[${i}].check`, `check "${check}" appears twice.`, check);
      seen.add(check);
      if (typeof r.message !== 'string') throw bad(where, `results[${i}].message`, '"message" must be a string.', r.message);
      return {
        check,
        status: checkOneOf(where, `results[${i}].status`, r.status, MONITOR_RUN_STATUSES),
        message: r.message,
        metrics: r.metrics === undefined ? null : toJson(where, `results[${i}].metrics`, r.metrics),
      };
    });
    // Through #run: the driver's errors inside the transaction (a read-only
    // or full file) pass through transaction() as fn's own, unwrapped.
    return this.#run('record a monitor run', () =>
      this.transaction(() => {
        const { id } = returning(this.#st.insertMonitorRun, { monitor, checked, status, report }) as { id: bigint };
        for (const r of results) this.#st.insertMonitorResult.run({ runId: id, ...r });
        return Object.freeze({ id: Number(id), monitor, checked: new Date(checked), status, report: JSON.parse(report) as unknown });
      }),
    );
  }

  /**
   * A monitor's recorded runs, newest first.
   *
   * @param monitor - the monitor's name
   * @param options - since, until, limit (default 100)
   */
  monitorRuns(monitor: string, options: MonitorHistoryOptions = {}): MonitorRunRecord[] {
    const where = 'Catalog.monitorRuns';
    checkString(where, 'monitor', monitor);
    checkOptionKeys(where, options, ['since', 'until', 'limit']);
    const params = this.#historyParams(where, monitor, options);
    return this.#run(`list runs of monitor ${monitor}`, () =>
      (this.#st.monitorRuns.all(params) as MonitorRunRow[]).map((r) =>
        Object.freeze({ id: Number(r.id), monitor: r.monitor, checked: new Date(Number(r.checked)), status: r.status as MonitorRunStatus, report: parseJson(r.report) }),
      ),
    );
  }

  /**
   * A monitor's recorded check results, newest run first (within a run, by
   * check name): the series to plot a trend of one check.
   *
   * @param monitor - the monitor's name
   * @param options - `check` (only this check), since, until, limit (rows, default 100)
   */
  monitorResults(monitor: string, options: MonitorHistoryOptions & { check?: string } = {}): MonitorResultRecord[] {
    const where = 'Catalog.monitorResults';
    checkString(where, 'monitor', monitor);
    checkOptionKeys(where, options, ['check', 'since', 'until', 'limit']);
    const params = { ...this.#historyParams(where, monitor, options), check: options.check === undefined ? null : checkString(where, 'check', options.check) };
    return this.#run(`list results of monitor ${monitor}`, () =>
      (this.#st.monitorResults.all(params) as MonitorResultRow[]).map((r) =>
        Object.freeze({
          runId: Number(r.run_id),
          checked: new Date(Number(r.checked)),
          check: r.check_name,
          status: r.status as MonitorRunStatus,
          message: r.message,
          metrics: parseJson(r.metrics),
        }),
      ),
    );
  }

  /**
   * The last state a monitor stored for one notifier (what that notifier
   * was last told), or undefined.
   *
   * @param monitor - the monitor's name
   * @param notifier - the notifier's name
   */
  monitorNotifyState(monitor: string, notifier: string): MonitorNotifyStateRecord | undefined {
    const where = 'Catalog.monitorNotifyState';
    checkString(where, 'monitor', monitor);
    checkString(where, 'notifier', notifier);
    return this.#run(`read notify state of monitor ${monitor}`, () => {
      const r = this.#st.monitorNotifyState.get(monitor, notifier) as { state: string; updated: bigint } | undefined;
      return r === undefined ? undefined : Object.freeze({ state: parseJson(r.state), updated: new Date(Number(r.updated)) });
    });
  }

  /**
   * Stores the state a monitor has told one notifier, replacing the previous one.
   *
   * @param monitor - the monitor's name
   * @param notifier - the notifier's name
   * @param state - JSON-serialisable state
   * @param updated - when (default now)
   */
  setMonitorNotifyState(monitor: string, notifier: string, state: unknown, updated?: CatalogTime): void {
    const where = 'Catalog.setMonitorNotifyState';
    const params = {
      monitor: checkString(where, 'monitor', monitor),
      notifier: checkString(where, 'notifier', notifier),
      state: toJson(where, 'state', state),
      updated: checkTime(where, 'updated', updated),
    };
    this.#run(`store notify state of monitor ${monitor}`, () => this.#st.setMonitorNotifyState.run(params));
  }

  #historyParams(where: string, monitor: string, options: MonitorHistoryOptions): { monitor: string; since: number; until: number; limit: number } {
    return {
      monitor,
      since: options.since === undefined ? Number.MIN_SAFE_INTEGER : checkTime(where, 'since', options.since),
      until: options.until === undefined ? Number.MAX_SAFE_INTEGER : checkTime(where, 'until', options.until),
      limit: checkLimit(where, options),
    };
  }

  /**
   * Runs `fn` in one write transaction (`BEGIN IMMEDIATE`): every record it
   * makes is committed together, or none if it throws. `fn` must be
   * synchronous (the Catalog's methods are).
   *
   * @param fn - the records to make
   */
  transaction<T>(fn: () => T): T {
    if (typeof fn !== 'function') throw bad('Catalog.transaction', 'fn', 'fn must be a function.');
    this.#checkOpen();
    let thrown: { error: unknown } | undefined;
    const guarded = (): T => {
      let result: T;
      try {
        result = fn();
      } catch (error) {
        thrown = { error };
        throw error;
      }
      if (result instanceof Promise) {
        result.catch(() => {});
        const error = new StowageError('EBAD_CONFIG', 'Catalog.transaction: fn must be synchronous (it returned a Promise); nothing was committed.', { details: { option: 'fn' } });
        thrown = { error };
        throw error;
      }
      return result;
    };
    try {
      return this.#db.transaction(guarded).immediate();
    } catch (err) {
      // fn's own error passes through as it is; BEGIN/COMMIT failures are wrapped.
      if (thrown !== undefined && err === thrown.error) throw err;
      throw this.#error(err, 'run a transaction');
    }
  }

  /** Closes the file. Idempotent; later calls fail with EDB. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }

  /** Same as {@link close}. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  #finishParams(where: string, input: FinishInput): { status: string; finished: number; error: string | null } {
    const status = checkOneOf(where, 'status', input?.status, ['ok', 'failed', 'aborted'] as const);
    if (input.error !== undefined && typeof input.error !== 'string') throw bad(where, 'error', '"error" must be a string.', input.error);
    return { status, finished: checkTime(where, 'finished', input.finished), error: input.error ?? null };
  }

  #notRunning(what: string, id: number, row: { status: string } | undefined): StowageError {
    if (row === undefined) return new StowageError('ENOT_FOUND', `Catalog ${this.path}: no ${what} with id ${id}.`, { details: { path: this.path, [what]: id } });
    return new StowageError('EBAD_CONFIG', `Catalog ${this.path}: ${what} ${id} has already finished (status ${row.status}).`, { details: { path: this.path, [what]: id, status: row.status } });
  }

  #checkOpen(): void {
    if (this.#closed) throw new StowageError('EDB', `Catalog ${this.path} is closed.`, { details: { path: this.path } });
  }

  #run<T>(action: string, fn: () => T, archivePath?: string): T {
    this.#checkOpen();
    try {
      return fn();
    } catch (err) {
      if (archivePath !== undefined && (err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
        throw new StowageError('ENOT_FOUND', `Catalog ${this.path}: cannot ${action}: archive ${archivePath} is not recorded; record it with recordArchive() first.`, {
          details: { path: this.path, archivePath },
          cause: err,
        });
      }
      throw this.#error(err, action);
    }
  }

  #error(err: unknown, action: string): StowageError {
    if (err instanceof StowageError) return err;
    const code = (err as { code?: unknown } | undefined)?.code;
    const message = (err as Error | undefined)?.message ?? String(err);
    // Read-only, "unable to open" is ENOT_FOUND only if nothing is there: a
    // file it may not read, or a folder at the path, is EDB below.
    if (action === 'open' && /directory does not exist|unable to open/i.test(message) && (/directory does not exist/i.test(message) || (this.#readonly && !existsSync(this.path)))) {
      return new StowageError('ENOT_FOUND', `Cannot open catalog ${this.path}: ${message}.`, { details: { path: this.path }, cause: err });
    }
    if (code === 'SQLITE_FULL') {
      return new StowageError('ENOSPACE', `Catalog ${this.path}: cannot ${action}: the disk is full (${message}); nothing of it was recorded. Free space on ${this.path}'s disk, then run again.`, {
        details: { path: this.path, action, driverCode: code },
        cause: err,
      });
    }
    // A write to a catalog opened read-only: say which option to change.
    const hint = this.#readonly && code === 'SQLITE_READONLY' ? ' (it was opened with readonly: true; open it without that option to record)' : '';
    return new StowageError('EDB', `Catalog ${this.path}: cannot ${action}: ${message}${hint}`, {
      details: { path: this.path, action, driverCode: code },
      cause: err,
      retryable: code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED',
    });
  }
}

/**
 * Where a catalog file cannot be written: its folder, or the file itself;
 * undefined when both can (or the folder is missing: SQLite says so). A
 * symlink is followed, as SQLite does: the -wal and -shm go beside the file
 * it points to.
 */
function notWritable(path: string, file = realFile(path)): { what: string; path: string; code: string } | undefined {
  const candidates: [string, string][] = [[`its folder ${dirname(file)}`, dirname(file)]];
  if (existsSync(file)) candidates.push(['the file', file]);
  for (const [what, p] of candidates) {
    try {
      accessSync(p, fsConstants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EACCES';
      if (code === 'ENOENT') continue;
      return { what, path: p, code };
    }
  }
  return undefined;
}

/** The file `path` names, symlinks followed, or `path` resolved when it does not exist. */
function realFile(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * Opens a catalog read-only. SQLite reads a WAL-mode file only beside its
 * `-wal` and `-shm` files, which it creates when they are missing (its
 * writer closed it cleanly). Where the folder cannot be written (a
 * read-only file system, another user's folder) it cannot, and refuses to
 * open. Then the file, complete without a `-wal`, is read into memory and
 * opened from there, read-only: a snapshot as of now. A `-wal` that still
 * holds changes (its writer did not close it) cannot be merged there: EDB
 * says what to do.
 */
function openReadonly(path: string, timeout: number): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout });
    db.pragma('user_version'); // SQLite opens the file at the first read
    return db;
  } catch (err) {
    db?.close();
    const code = (err as { code?: unknown } | undefined)?.code;
    // CANTOPEN on a read-only file system; READONLY_DIRECTORY in a folder this user may not write.
    if ((code !== 'SQLITE_CANTOPEN' && code !== 'SQLITE_READONLY_DIRECTORY') || path === ':memory:' || !existsSync(path)) throw err;
    const file = realFile(path);
    if (notWritable(path, file) === undefined) throw err;
    const wal = `${file}-wal`;
    let walBytes = 0;
    try {
      walBytes = statSync(wal).size;
    } catch {
      // no -wal: the file holds everything
    }
    if (walBytes > 0) {
      throw new StowageError(
        'EDB',
        `Catalog ${path}: cannot open it read-only here: ${wal} holds ${walBytes} bytes of changes not yet merged into the file (its writer did not close it), and SQLite cannot merge them where the folder cannot be written. Open it once where it can be written (or copy ${file} and ${wal} to a writable folder and open the copy).`,
        { details: { path, wal, walBytes }, cause: err },
      );
    }
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      throw err;
    }
    // Bytes 18 and 19 of the header: 2 for a WAL-mode file, which an
    // in-memory database cannot read; 1, the rollback journal, reads the same pages.
    if (bytes.length >= 100 && bytes[18] === 2 && bytes[19] === 2) bytes[18] = bytes[19] = 1;
    return new Database(bytes, { readonly: true, timeout });
  }
}
