/**
 * The Catalog's schema, as an ordered list of migrations.
 *
 * The schema version of a catalog file is SQLite's `PRAGMA user_version`:
 * the number of migrations applied. Opening a catalog applies the missing
 * ones in order, each in its own `BEGIN IMMEDIATE` transaction together
 * with the version bump, so a crash or a failing migration leaves the file
 * at the last complete version, and two processes opening an old file at
 * once migrate it once (the second sees the new version inside its
 * transaction and skips).
 *
 * Rules for whoever adds tables (LazyChannel, Monitor, ...): append a
 * migration with the next version; never edit or reorder a migration that
 * has shipped, since files in the field already carry it. Tables are
 * STRICT, times are integer milliseconds since the epoch (UTC), digests
 * lower-case hex.
 *
 * @module
 */
import type BetterSqlite3 from 'better-sqlite3';
import { StowageError } from '../errors.js';

/** One step of the Catalog's schema. */
export interface Migration {
  /** The schema version this migration brings the file to (1, 2, ...). */
  readonly version: number;
  /** What it adds, for error messages and the changelog. */
  readonly description: string;
  /** The SQL to run, or a function given the connection (inside the migration's transaction). */
  readonly up: string | ((db: BetterSqlite3.Database) => void);
}

/**
 * The Catalog's migrations, oldest first. Append only.
 */
export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    description: 'archives, partitions and transfers (issue 5: Partitioner)',
    up: `
      CREATE TABLE archives (
        path      TEXT    NOT NULL PRIMARY KEY,
        dig       TEXT    NOT NULL,
        size      INTEGER NOT NULL CHECK (size >= 0),
        algorithm TEXT    NOT NULL CHECK (algorithm IN ('md5', 'sha1', 'sha256', 'sha512')),
        created   INTEGER NOT NULL,
        bytes_in  INTEGER CHECK (bytes_in >= 0),
        entries   INTEGER CHECK (entries >= 0),
        recorded  INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE partitions (
        source       TEXT    NOT NULL,
        tbl          TEXT    NOT NULL,
        key          TEXT    NOT NULL,
        lo           INTEGER NOT NULL,
        hi           INTEGER NOT NULL CHECK (hi >= lo),
        state        TEXT    NOT NULL CHECK (state IN ('complete', 'partial', 'archived', 'empty')),
        rows         INTEGER NOT NULL CHECK (rows >= 0),
        digest       TEXT,
        archive_path TEXT    REFERENCES archives (path) ON DELETE SET NULL,
        updated      INTEGER NOT NULL,
        PRIMARY KEY (source, tbl, key, lo, hi)
      ) STRICT;
      CREATE INDEX partitions_archive ON partitions (archive_path);

      CREATE TABLE transfers (
        id        INTEGER PRIMARY KEY,
        src       TEXT    NOT NULL,
        dst       TEXT    NOT NULL,
        path      TEXT    NOT NULL,
        dig       TEXT,
        size      INTEGER CHECK (size >= 0),
        algorithm TEXT    CHECK (algorithm IN ('md5', 'sha1', 'sha256', 'sha512')),
        status    TEXT    NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'aborted')),
        started   INTEGER NOT NULL,
        finished  INTEGER,
        error     TEXT
      ) STRICT;
      CREATE INDEX transfers_path ON transfers (path, started);
    `,
  },
  {
    version: 2,
    description: 'jobs: run history, so the Monitor can find runs that started and never finished',
    up: `
      CREATE TABLE jobs (
        id       INTEGER PRIMARY KEY,
        name     TEXT    NOT NULL,
        started  INTEGER NOT NULL,
        finished INTEGER,
        status   TEXT    NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'aborted')),
        error    TEXT,
        host     TEXT    NOT NULL,
        pid      INTEGER NOT NULL,
        details  TEXT
      ) STRICT;
      CREATE INDEX jobs_name_started ON jobs (name, started);
    `,
  },
  {
    version: 3,
    description: 'monitor: history of check runs (one row per run and per check) and the last state told to each notifier',
    up: `
      CREATE TABLE monitor_runs (
        id      INTEGER PRIMARY KEY,
        monitor TEXT    NOT NULL,
        checked INTEGER NOT NULL,
        status  TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical')),
        report  TEXT    NOT NULL
      ) STRICT;
      CREATE INDEX monitor_runs_monitor_checked ON monitor_runs (monitor, checked);

      CREATE TABLE monitor_results (
        run_id  INTEGER NOT NULL REFERENCES monitor_runs (id) ON DELETE CASCADE,
        check_name TEXT NOT NULL,
        status  TEXT    NOT NULL CHECK (status IN ('ok', 'warning', 'critical')),
        message TEXT    NOT NULL,
        metrics TEXT,
        PRIMARY KEY (run_id, check_name)
      ) STRICT;

      CREATE TABLE monitor_notify_state (
        monitor  TEXT    NOT NULL,
        notifier TEXT    NOT NULL,
        state    TEXT    NOT NULL,
        updated  INTEGER NOT NULL,
        PRIMARY KEY (monitor, notifier)
      ) STRICT;
    `,
  },
] satisfies Migration[]);

/** The schema version this code writes: the number of {@link MIGRATIONS}. */
export const CATALOG_SCHEMA_VERSION = MIGRATIONS.length;

/** What {@link migrate} did. */
export interface MigrateResult {
  /** The file's version before. */
  readonly from: number;
  /** The file's version after. */
  readonly to: number;
}

function readVersion(db: BetterSqlite3.Database): number {
  return Number(db.pragma('user_version', { simple: true }));
}

/**
 * Brings a catalog database up to the last of `migrations`.
 *
 * EBAD_CONFIG if the file's version is newer than the code knows (it was
 * written by a newer stowage: refusing is the only safe choice) or if the
 * list is not numbered 1, 2, 3...; EDB if a migration fails (that
 * migration is rolled back; earlier ones stay).
 *
 * @param db - an open, writable connection
 * @param file - the file, for messages
 * @param migrations - the list to apply (default {@link MIGRATIONS})
 */
export function migrate(db: BetterSqlite3.Database, file: string, migrations: readonly Migration[] = MIGRATIONS): MigrateResult {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new StowageError('EBAD_CONFIG', `Catalog migrations must be numbered 1, 2, 3... in order; entry ${i} has version ${m.version}.`, { details: { index: i, version: m.version } });
    }
  });
  const target = migrations.length;
  const from = readVersion(db);
  checkNotNewer(from, target, file);
  let version = from;
  while (version < target) {
    let m: Migration | undefined;
    try {
      db.exec('BEGIN IMMEDIATE');
      try {
        version = readVersion(db);
        checkNotNewer(version, target, file);
        m = migrations[version];
        if (m !== undefined) {
          if (typeof m.up === 'string') db.exec(m.up);
          else m.up(db);
          db.pragma(`user_version = ${m.version}`);
          version = m.version;
        }
        db.exec('COMMIT');
      } finally {
        if (db.inTransaction) db.exec('ROLLBACK');
      }
    } catch (err) {
      if (err instanceof StowageError) throw err;
      const what = m === undefined ? 'start a migration' : `apply migration ${m.version} (${m.description})`;
      throw new StowageError('EDB', `Catalog ${file}: cannot ${what}: ${(err as Error).message}`, {
        details: { path: file, version: m?.version, driverCode: (err as { code?: unknown }).code },
        cause: err,
        retryable: (err as { code?: unknown }).code === 'SQLITE_BUSY',
      });
    }
  }
  return { from, to: version };
}

function checkNotNewer(version: number, known: number, file: string): void {
  if (version > known) {
    throw new StowageError(
      'EBAD_CONFIG',
      `Catalog ${file} has schema version ${version}, newer than the ${known} this version of stowage knows: it was written by a newer stowage. Upgrade stowage to use it; nothing was changed.`,
      { details: { path: file, version, known } },
    );
  }
}

/**
 * Checks, before anything is written to it, that a file can be opened as a
 * catalog: its version is not newer than this code knows (EBAD_CONFIG), and
 * a file at version 0 holds no tables (EBAD_CONFIG: it is some other
 * application's SQLite database, which the catalog's tables and WAL mode
 * must not be added to). An empty or new file passes.
 *
 * @param db - an open connection
 * @param file - the file, for messages
 */
export function checkCatalogFile(db: BetterSqlite3.Database, file: string): void {
  // Both read in one snapshot: another process creating the same new
  // catalog may commit its first migration in between, and its tables
  // with version 0 would look like another application's database.
  const { version, tables } = db.transaction(() => ({
    version: readVersion(db),
    tables: db.prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name LIMIT 5").pluck().all() as string[],
  }))();
  checkNotNewer(version, CATALOG_SCHEMA_VERSION, file);
  if (version !== 0) return;
  if (tables.length > 0) {
    throw new StowageError(
      'EBAD_CONFIG',
      `${file} is not a stowage catalog: it is an SQLite database with other tables (${tables.join(', ')}) and no catalog schema version. Give the Catalog a file of its own; nothing was changed.`,
      { details: { path: file, tables } },
    );
  }
}

/**
 * Runs `fn` again while SQLite answers SQLITE_BUSY, for up to `timeoutMs`:
 * for the steps of opening a catalog (the switch to WAL mode, the first
 * migration) that SQLite refuses at once, without its busy handler, when
 * another process opens the same new file at the same moment. Waits
 * (synchronously: a Catalog opens synchronously) 5 to 50 ms between tries.
 *
 * @param fn - the step
 * @param timeoutMs - how long to keep trying
 */
export function retryBusy<T>(fn: () => T, timeoutMs: number): T {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(50, wait * 2)) {
    try {
      return fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code ?? ((err as { cause?: { code?: unknown } }).cause?.code);
      const busy = code === 'SQLITE_BUSY' || (err instanceof StowageError && err.retryable && err.details['driverCode'] === 'SQLITE_BUSY');
      if (!busy || Date.now() + wait > deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
    }
  }
}
