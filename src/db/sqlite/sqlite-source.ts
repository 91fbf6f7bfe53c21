/**
 * SqliteSource: the TableSource contract over an SQLite file through
 * better-sqlite3.
 *
 * SQLite has no bulk text format of its own, so SqliteSource writes the
 * same bulk text as MySQL and PostgreSQL (one archive format for all
 * engines), with values spelled so that every cell comes back with its
 * storage class (see `sqlite-values.ts`). Integers are read with
 * `safeIntegers(true)`, never through a JS number; blobs as raw buffers.
 *
 * Connections: a file database gets a fresh read-only connection per row
 * stream and per snapshot, and one per load, so a dump, a snapshot and a
 * load never share a transaction and a long dump never keeps the main
 * connection busy. An in-memory database has only its one connection:
 * there, a snapshot holds the source's write lock instead (loads wait), and
 * a load fails (EDB) while a row stream of the same source is still open.
 *
 * Reader workers (`sqlite-pool.ts`): for a file opened by path, the
 * connection of a row stream or a snapshot is opened in a worker thread
 * when one is free, which steps the query and formats the bulk text there
 * (the main thread only forwards chunks). A snapshot's connection is
 * inside `BEGIN` with a first read in that worker, and every read of the
 * snapshot (metadata and rows) goes through it, so the snapshot sees one
 * state exactly as an in-thread one does; nothing relies on WAL mode. With
 * no worker free (option `workers`), for `:memory:`, and for a borrowed
 * connection, reads run in this thread as before.
 *
 * Loads are batched prepared inserts inside one `BEGIN IMMEDIATE`
 * transaction, chunk by chunk as the input arrives; any failure or abort
 * rolls everything back. Loads and table creation on one source run one at
 * a time (better-sqlite3 waits for SQLite's locks synchronously, so two
 * writers in one process must not wait on each other).
 *
 * A load runs with `foreign_keys = OFF` (set before its `BEGIN`, since
 * SQLite ignores the pragma inside a transaction, and put back to the
 * connection's previous value after `COMMIT` or `ROLLBACK`), as MySQL
 * sessions run with `foreign_key_checks = 0` and restore tools do:
 * partitions of related tables load in any order, and a `replaceRange` on
 * a parent table does not fire its children's `ON DELETE CASCADE` (or
 * `SET NULL`). The inserts are `INSERT OR ABORT`, which overrides a
 * table's own `ON CONFLICT IGNORE` / `REPLACE` clauses: a duplicate key
 * fails the load (EDB) instead of dropping the row or deleting another.
 * Text is read as strict UTF-8: a row that is not is EDB, as on the read
 * side (`sqlite-values.ts`), never stored with U+FFFD in place of its bytes.
 *
 * @module
 */
import { accessSync, closeSync, constants as fsConstants, existsSync, openSync, readSync } from 'node:fs';
import { basename, dirname, resolve as resolvePath } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { StowageError } from '../../errors.js';
import { ProgressTracker } from '../../progress.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkInt, checkOptionKeys } from '../../util/options.js';
import { BulkTextParser } from '../bulk-text.js';
import { checkCreateTableArgs, checkReplaceRange, checkSnapshotArgs, closedError, runSnapshot, tableExistsError, toLoadStream } from '../source-common.js';
import type { RangeDigest } from '../range-digest.js';
import {
  checkColumnNames,
  checkIdentifier,
  dbError,
  type ColumnInfo,
  type CreateTableOptions,
  type DbOptions,
  type DigestRangeOptions,
  type KeyBound,
  type KeyRange,
  type LoadOptions,
  type LoadResult,
  pickColumns,
  type RowsOptions,
  type TableReader,
  type TableSource,
} from '../table-source.js';
import { availableParallelism } from 'node:os';
import { SqliteWorkerPool, type SqliteWorker } from './sqlite-pool.js';
import {
  SqliteReader,
  inThreadQuery,
  inThreadSession,
  quoteSqliteIdent,
  sqliteKeyColumn,
  sqliteRangeQuery,
  sqliteTableInfo,
  type LentConnection,
  type SqliteDb,
  type SqliteQuery,
  type SqliteReaderContext,
  type SqliteStreamSession,
} from './sqlite-reader.js';
import { decodeSqliteField, sqliteColumnKind, type SqliteValue } from './sqlite-values.js';

/** Options of {@link SqliteSource}. */
export interface SqliteSourceOptions {
  /** The source's label in the Catalog and in manifests (default `sqlite:<absolute path>` or `sqlite::memory:`). */
  name?: string;
  /** Open read-only: `load` and `createTable` are refused (default false). */
  readonly?: boolean;
  /** Create the file if it does not exist, e.g. a restore target (default false: a missing file is ENOT_FOUND). */
  create?: boolean;
  /** How long to wait for another connection's lock, in ms (default 5000). */
  busyTimeoutMs?: number;
  /**
   * Reader worker threads for a database file opened by path: row streams
   * and snapshots read and format rows there, off the main thread (default
   * the number of CPUs, at most 4; 0: always in this thread). When all are
   * busy, reads run in this thread as they would without workers.
   */
  workers?: number;
}

const OPTION_KEYS = ['name', 'readonly', 'create', 'busyTimeoutMs', 'workers'] as const;

function isDatabase(x: unknown): x is SqliteDb {
  return typeof x === 'object' && x !== null && typeof (x as SqliteDb).prepare === 'function' && typeof (x as SqliteDb).exec === 'function';
}

/**
 * A {@link SqliteQuery} run on a reader worker's connection.
 *
 * @param worker - the worker
 * @param check - throws if the connection may no longer be used
 */
function workerQuery(worker: SqliteWorker, check: () => void): SqliteQuery {
  return async (sql, params, mode) => {
    check();
    return (await worker.request({ t: 'all', sql, params: [...params], raw: mode === 'raw', pluck: mode === 'pluck' })) as unknown[];
  };
}

/**
 * The EDB of a load row SQLite did not insert without an error (a
 * `BEFORE INSERT` trigger's `RAISE(IGNORE)`): the load would report rows it
 * did not store.
 *
 * @param source - the source's name
 * @param table - the table
 * @param row - 1-based row number
 */
function notInserted(source: string, table: string, row: number): StowageError {
  return new StowageError(
    'EDB',
    `${source}: row ${row} loaded into ${JSON.stringify(table)} was not inserted, with no error from SQLite (a trigger that ignores inserts?); nothing was loaded. Drop or disable the table's BEFORE INSERT triggers for the restore, then load again.`,
    { details: { source, table, row } },
  );
}

/** A tiny FIFO mutex. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#tail;
    let unlock!: () => void;
    this.#tail = new Promise<void>((r) => (unlock = r));
    await prev;
    try {
      return await fn();
    } finally {
      unlock();
    }
  }
}

/**
 * EBAD_CONFIG for a database in WAL mode that SQLite cannot read because it
 * cannot create the `-shm` file beside it (a folder this user may not
 * write, a read-only mount), saying what to do; undefined for any other
 * failure. A WAL database is read through that shared-memory index, which
 * SQLite makes when the first connection opens the file: while the
 * database's writer has it open the index is there and a reader needs no
 * write access, but a database its writer closed cleanly has none.
 *
 * @param err - what the first read threw
 * @param source - the source's name
 * @param file - the database file
 */
function walIndexError(err: unknown, source: string, file: string | undefined): StowageError | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (file === undefined || (code !== 'SQLITE_READONLY_DIRECTORY' && code !== 'SQLITE_CANTOPEN')) return undefined;
  let wal = false;
  try {
    const fd = openSync(file, 'r');
    try {
      const header = Buffer.alloc(20);
      wal = readSync(fd, header, 0, 20, 0) === 20 && header.subarray(0, 16).toString('latin1') === 'SQLite format 3\0' && header[18] === 2;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  if (!wal) return undefined;
  const dir = dirname(file);
  try {
    // A folder this user may write: something else stops SQLite (a -wal or -shm of another user's, say).
    accessSync(dir, fsConstants.W_OK);
    return undefined;
  } catch {
    // Not writable: the case this error is about.
  }
  return new StowageError(
    'EBAD_CONFIG',
    `${source}: cannot read the database: it is in WAL mode, and SQLite reads such a file through an index (${basename(file)}-shm) that it must create in ${dir}, which this user cannot write (${String(code)}). Nothing in the database is written. Give this user write access to ${dir}, read it while its writer has it open (the index is there then), or back up a copy (sqlite3 ${file} ".backup COPY.db") or a database switched out of WAL mode (PRAGMA journal_mode=DELETE, by its writer).`,
    { details: { source, path: file, dir, driverCode: code }, cause: err },
  );
}

/**
 * The TableSource of an SQLite database.
 *
 * @example
 * ```ts
 * await using src = new SqliteSource('/data/cond.db');
 * const { lo, hi } = await src.keyRange('CalibPmtSpecVld', 'SEQNO');
 * const rows = await src.rows('CalibPmtSpecVld', { key: 'SEQNO', lo: 1n, hi: 10000n });
 * ```
 */
export class SqliteSource implements TableSource {
  /** Always `'sqlite'`. */
  readonly engine = 'sqlite' as const;
  readonly name: string;
  /** The database file, or `undefined` for an in-memory database. */
  readonly file: string | undefined;
  readonly #db: SqliteDb;
  readonly #owned: boolean;
  readonly #readonly: boolean;
  readonly #timeoutMs: number;
  readonly #reader: SqliteReader;
  readonly #streams = new Set<Readable>();
  readonly #writeLock = new Mutex();
  readonly #pool: SqliteWorkerPool | undefined;
  #closed = false;

  /**
   * Opens (or adopts) an SQLite database.
   *
   * @param database - a file path, `':memory:'`, or an open better-sqlite3
   *   `Database` (borrowed: {@link SqliteSource.close} leaves it open)
   * @param options - see {@link SqliteSourceOptions}
   */
  constructor(database: string | SqliteDb, options: SqliteSourceOptions = {}) {
    checkOptionKeys('SqliteSource', options, OPTION_KEYS);
    this.#timeoutMs = checkInt('SqliteSource', 'busyTimeoutMs', options.busyTimeoutMs ?? 5000, 0, 2 ** 31 - 1);
    this.#readonly = options.readonly === true;
    const workers = checkInt('SqliteSource', 'workers', options.workers ?? Math.min(4, availableParallelism()), 0, 64);
    if (isDatabase(database)) {
      this.#db = database;
      this.#owned = false;
      this.file = database.memory ? undefined : database.name;
    } else if (typeof database === 'string' && database.length > 0) {
      const memory = database === ':memory:';
      this.file = memory ? undefined : resolvePath(database);
      if (this.file !== undefined && options.create !== true && !existsSync(this.file)) {
        throw new StowageError('ENOT_FOUND', `SQLite database ${this.file} does not exist (pass create: true to create it).`, { details: { path: this.file } });
      }
      try {
        this.#db = new Database(database, { readonly: this.#readonly, fileMustExist: options.create !== true, timeout: this.#timeoutMs });
      } catch (err) {
        throw dbError(err, `sqlite:${this.file ?? ':memory:'}`, 'open the database');
      }
      this.#owned = true;
    } else {
      throw new StowageError('EBAD_CONFIG', 'SqliteSource: the database must be a file path, ":memory:" or a better-sqlite3 Database.', { details: { database: String(database) } });
    }
    this.name = options.name ?? `sqlite:${this.file ?? ':memory:'}`;
    if (typeof this.name !== 'string' || this.name.length === 0) {
      throw new StowageError('EBAD_CONFIG', 'SqliteSource: option "name" must be a non-empty string.', { details: { option: 'name' } });
    }
    try {
      // Fails now, not at the first dump, if the file is not a database.
      this.#db.prepare('SELECT count(*) FROM sqlite_schema').get();
    } catch (err) {
      if (this.#owned) this.#db.close();
      throw walIndexError(err, this.name, this.file) ?? dbError(err, this.name, 'read the database');
    }
    // A borrowed connection may see what its owner has not committed (or another file entirely): only the source's own file goes to workers.
    if (this.file !== undefined && this.#owned && workers > 0) this.#pool = new SqliteWorkerPool(workers, this.name);
    this.#reader = new SqliteReader(this.#context(() => this.#db, () => this.#streamSession()));
  }

  /**
   * Reader worker threads running now (idle or reading); 0 after
   * {@link SqliteSource.close}, and always 0 for an in-memory or borrowed
   * database. For monitoring and tests.
   */
  get workerThreads(): number {
    return this.#pool?.size ?? 0;
  }

  /**
   * Starts the reader worker threads and resolves once they have loaded
   * (a no-op without workers). Optional: the first metadata read starts
   * them too, and a read that finds none loaded waits for one; call this
   * first to take the thread start-up (about 0.1 s) out of the first read.
   *
   * @returns the number of reader workers ready
   */
  async warmUp(): Promise<number> {
    this.#checkOpen();
    await this.#pool?.ready();
    return this.#pool?.size ?? 0;
  }

  tables(options?: DbOptions): Promise<string[]> {
    return this.#reader.tables(options);
  }

  columns(table: string, options?: DbOptions): Promise<ColumnInfo[]> {
    return this.#reader.columns(table, options);
  }

  schema(table: string, options?: DbOptions): Promise<string> {
    return this.#reader.schema(table, options);
  }

  keyRange(table: string, key: string, options?: DbOptions): Promise<KeyRange> {
    return this.#reader.keyRange(table, key, options);
  }

  rows(table: string, options: RowsOptions): Promise<Readable> {
    return this.#reader.rows(table, options);
  }

  /**
   * The smallest non-NULL key with `key >= from`, or `null` (one indexed
   * `min()`); the Partitioner uses it to skip empty ranges of a sparse key.
   *
   * @param table - the table
   * @param key - the integer key column
   * @param from - the bound
   * @param options - signal
   */
  nextKey(table: string, key: string, from: KeyBound, options?: DbOptions): Promise<bigint | null> {
    return this.#reader.nextKey(table, key, from, options);
  }

  digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options?: DigestRangeOptions): Promise<RangeDigest> {
    return this.#reader.digestRange(table, key, lo, hi, options);
  }

  /**
   * Runs `fn` with a reader that sees one consistent snapshot; see
   * {@link TableSource.snapshot}.
   *
   * A file database: a dedicated read-only connection inside `BEGIN` with a
   * first read, so SQLite pins one snapshot (in WAL mode writers go on; in
   * rollback-journal mode they wait until `fn` settles). An in-memory
   * database: its one connection, with loads held off until `fn` settles.
   */
  async snapshot<T>(fn: (reader: TableReader) => Promise<T>, options: DbOptions = {}): Promise<T> {
    checkSnapshotArgs('SqliteSource.snapshot', fn, options);
    const { signal } = options;
    throwIfAborted(signal);
    this.#checkOpen();
    if (this.file === undefined) return this.#writeLock.run(() => this.#runSnapshot(this.#db, false, fn, signal));
    const worker = await this.#openWorker(true);
    if (worker !== undefined) return this.#runWorkerSnapshot(worker, fn, signal);
    const db = this.#openConnection(true);
    return this.#runSnapshot(db, true, fn, signal);
  }

  /**
   * A snapshot held by a reader worker: the worker's connection is inside
   * `BEGIN` with a first read, and every read of the snapshot (metadata
   * and rows) goes through that one connection, so all see one state, as
   * with an in-thread snapshot connection.
   */
  async #runWorkerSnapshot<T>(worker: SqliteWorker, fn: (reader: TableReader) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const streams = new Set<Readable>();
    let open = true;
    const check = (): void => {
      if (!open) throw new StowageError('EDB', `${this.name}: the snapshot has ended; use the reader only inside the snapshot callback.`, { details: { source: this.name } });
    };
    const query = workerQuery(worker, check);
    const session: SqliteStreamSession = {
      query,
      rows: (sql, params, textAffinity, action, sig) => {
        // Checked as the request is posted: nothing reaches the worker after the snapshot's `end`.
        check();
        return worker.rows(sql, params, textAffinity, this.name, action, sig, () => {});
      },
      release: () => {},
    };
    const ctx: SqliteReaderContext = {
      name: this.name,
      query,
      streamSession: async () => {
        check();
        return session;
      },
      track: (s) => {
        streams.add(s);
        s.once('close', () => streams.delete(s));
      },
    };
    return runSnapshot(
      signal,
      async () => {},
      fn,
      () => new SqliteReader(ctx),
      async () => {
        open = false;
        for (const s of streams) s.destroy();
        try {
          await worker.request({ t: 'end' });
        } catch {
          // A read-only connection: nothing to keep; a dead worker leaves the pool by itself.
        } finally {
          this.#pool!.release(worker);
        }
      },
    );
  }

  async #runSnapshot<T>(db: SqliteDb, dedicated: boolean, fn: (reader: TableReader) => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    const streams = new Set<Readable>();
    let open = true;
    const use = (): SqliteDb => {
      if (!open) throw new StowageError('EDB', `${this.name}: the snapshot has ended; use the reader only inside the snapshot callback.`, { details: { source: this.name } });
      return db;
    };
    const ctx: SqliteReaderContext = {
      name: this.name,
      query: inThreadQuery(use),
      streamSession: async () => inThreadSession({ db: use(), release: () => {} }, this.name),
      track: (s) => {
        streams.add(s);
        s.once('close', () => streams.delete(s));
      },
    };
    return runSnapshot(
      signal,
      async () => {
        if (!dedicated) return;
        try {
          db.exec('BEGIN');
          db.prepare('SELECT count(*) FROM sqlite_schema').get();
        } catch (err) {
          throw dbError(err, this.name, 'start a snapshot');
        }
      },
      fn,
      () => new SqliteReader(ctx),
      async () => {
        open = false;
        for (const s of streams) s.destroy();
        if (dedicated) {
          try {
            if (db.inTransaction) db.exec('ROLLBACK');
          } finally {
            db.close();
          }
        }
      },
    );
  }

  /**
   * Creates `table` by running `ddl` in one transaction (see {@link TableSource.createTable}).
   * `deferIndexes` is accepted and the table created whole.
   */
  async createTable(table: string, ddl: string, options: CreateTableOptions = {}): Promise<undefined> {
    checkCreateTableArgs('SqliteSource.createTable', table, ddl, options);
    throwIfAborted(options.signal);
    this.#checkWritable('createTable');
    await this.#writeLock.run(async () => {
      throwIfAborted(options.signal);
      const db = this.#db;
      if (this.#tableExists(db, table)) {
        throw tableExistsError(this.name, table);
      }
      try {
        db.transaction(() => {
          db.exec(ddl);
          if (!this.#tableExists(db, table)) {
            throw new StowageError('ENO_TABLE', `The DDL given to create ${JSON.stringify(table)} in ${this.name} did not create it (nothing was kept).`, { details: { source: this.name, table } });
          }
        }).immediate();
      } catch (err) {
        throw dbError(err, this.name, `create table ${JSON.stringify(table)}`);
      }
    });
    return undefined;
  }

  /**
   * Loads bulk text into an existing table in one transaction; see
   * {@link TableSource.load}.
   *
   * Each field is bound by its column's affinity so that every cell gets
   * back its storage class (see `sqlite-values.ts`). Foreign-key
   * enforcement is off for the load's transaction (and put back after), so
   * related tables load in any order and a `replaceRange` cascades to no
   * other table; a duplicate key is EDB whatever the table's `ON CONFLICT`
   * clauses say; so is a row a trigger drops, and a row that is not valid
   * UTF-8.
   */
  async load(table: string, input: Readable | AsyncIterable<Uint8Array>, options: LoadOptions = {}): Promise<LoadResult> {
    checkOptionKeys('SqliteSource.load', options, ['signal', 'onProgress', 'replaceRange', 'columns']);
    checkIdentifier('SqliteSource.load', 'table', table);
    const stream = toLoadStream('SqliteSource.load', input);
    const { signal, onProgress, replaceRange } = options;
    let bounds: ReturnType<typeof checkReplaceRange>;
    let names: readonly string[] | undefined;
    try {
      bounds = checkReplaceRange('SqliteSource.load', replaceRange);
      names = checkColumnNames('SqliteSource.load', options.columns);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    try {
      throwIfAborted(signal);
      this.#checkWritable('load');
    } catch (err) {
      stream.destroy();
      throw err;
    }
    return this.#writeLock.run(async () => {
      const conn = this.#lend(false);
      const db = conn.db;
      const disposeAbort = onAbort(signal, (reason) => stream.destroy(reason as Error));
      // Off before anything is prepared (SQLite resolves a foreign key's
      // parent table when it prepares an INSERT: a child restored without
      // its parent would fail there), and before BEGIN (PRAGMA
      // foreign_keys is a no-op inside a transaction); back at the end.
      const foreignKeys = Number(db.pragma('foreign_keys', { simple: true })) === 1;
      if (foreignKeys) db.pragma('foreign_keys = OFF');
      try {
        throwIfAborted(signal);
        const info = await sqliteTableInfo(this.name, inThreadQuery(() => db), table);
        const { columns } = pickColumns(this.name, info.name, info.columns, names);
        const n = columns.length;
        const kinds = columns.map((c) => sqliteColumnKind(c.type));
        // OR ABORT overrides the table's own ON CONFLICT clauses (IGNORE would drop the row, REPLACE delete another).
        const insert = db.prepare(`INSERT OR ABORT INTO ${quoteSqliteIdent(info.name)} (${columns.map((c) => quoteSqliteIdent(c.name)).join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
        let del: { sql: string; params: [bigint, bigint] } | undefined;
        if (bounds !== undefined) {
          const column = sqliteKeyColumn(this.name, info, bounds.key);
          const { params } = sqliteRangeQuery(info, column.name, bounds.lo, bounds.hi);
          del = { sql: `DELETE FROM ${quoteSqliteIdent(info.name)} WHERE ${quoteSqliteIdent(column.name)} BETWEEN ? AND ?`, params };
        }
        const tracker = new ProgressTracker('load', onProgress);
        const parser = new BulkTextParser({ columns: n, strictUtf8: true });
        const values: SqliteValue[] = new Array<SqliteValue>(n);
        let deleted = 0;
        {
          db.exec('BEGIN IMMEDIATE');
          try {
            if (del !== undefined) deleted = db.prepare(del.sql).run(...del.params).changes;
            for await (const chunk of stream) {
              throwIfAborted(signal);
              const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Uint8Array);
              const before = parser.rows;
              parser.writeStrings(buf, (fields, row) => {
                for (let i = 0; i < n; i++) values[i] = decodeSqliteField(fields[i]!, kinds[i]!, row);
                if (insert.run(...values).changes !== 1) throw notInserted(this.name, info.name, row);
              });
              tracker.add(buf.length, parser.rows - before);
            }
            parser.end();
            throwIfAborted(signal);
            db.exec('COMMIT');
          } finally {
            if (db.inTransaction) db.exec('ROLLBACK');
          }
        }
        tracker.report(true);
        return Object.freeze({ rows: parser.rows, bytes: parser.bytes, deleted });
      } catch (err) {
        stream.destroy();
        throw dbError(err, this.name, `load rows into ${JSON.stringify(table)}`, signal);
      } finally {
        if (foreignKeys) {
          try {
            db.pragma('foreign_keys = ON');
          } catch {
            // A connection that cannot take it back (closed) is not lent again.
          }
        }
        disposeAbort();
        conn.release();
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#streams) s.destroy();
    await this.#pool?.close();
    await this.#writeLock.run(async () => {
      if (this.#owned) this.#db.close();
    });
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #context(metaDb: () => SqliteDb, streamSession: () => Promise<SqliteStreamSession>): SqliteReaderContext {
    return {
      name: this.name,
      query: inThreadQuery(() => {
        this.#checkOpen();
        // Metadata comes before a dump: start the reader workers now, while it is read.
        this.#pool?.warm();
        return metaDb();
      }),
      streamSession: async () => {
        this.#checkOpen();
        return streamSession();
      },
      track: (s) => {
        this.#streams.add(s);
        s.once('close', () => this.#streams.delete(s));
      },
    };
  }

  /**
   * The connection of one row stream outside a snapshot: a reader worker's
   * own connection when one is free, else an in-thread one (see
   * `#lend`).
   */
  async #streamSession(): Promise<SqliteStreamSession> {
    const worker = await this.#openWorker(false);
    if (worker === undefined) return inThreadSession(this.#lend(true), this.name);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      worker.post({ t: 'end', id: 0 });
      this.#pool!.release(worker);
    };
    return {
      query: workerQuery(worker, () => this.#checkOpen()),
      rows: (sql, params, textAffinity, action, signal) => worker.rows(sql, params, textAffinity, this.name, action, signal, release),
      release,
    };
  }

  /**
   * A reader worker with its connection open on the file (inside `BEGIN`
   * and a first read for a snapshot), or `undefined` when there is none to
   * be had (none configured, all busy, or threads cannot start here): the
   * caller then reads in this thread. EDB if SQLite refuses the connection.
   */
  async #openWorker(snapshot: boolean): Promise<SqliteWorker | undefined> {
    const worker = this.#pool?.acquire();
    if (worker === undefined) return undefined;
    try {
      await worker.request({ t: 'open', file: this.file!, timeout: this.#timeoutMs, snapshot });
      return worker;
    } catch (err) {
      this.#pool!.release(worker);
      this.#checkOpen();
      if (worker.dead) return undefined;
      throw dbError(err, this.name, snapshot ? 'start a snapshot' : 'open a connection');
    }
  }

  /** A connection for one stream or load: a dedicated one for a file, else the main one. */
  #lend(readonly: boolean): LentConnection {
    this.#checkOpen();
    if (this.file === undefined) return { db: this.#db, release: () => {} };
    const db = this.#openConnection(readonly);
    let released = false;
    return {
      db,
      release: () => {
        if (released) return;
        released = true;
        db.close();
      },
    };
  }

  #openConnection(readonly: boolean): SqliteDb {
    try {
      const db = new Database(this.file, { readonly: readonly || this.#readonly, fileMustExist: true, timeout: this.#timeoutMs });
      db.defaultSafeIntegers(true);
      return db;
    } catch (err) {
      throw dbError(err, this.name, 'open a connection');
    }
  }

  #tableExists(db: SqliteDb, table: string): boolean {
    return db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE").get(table) !== undefined;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError(this.name);
  }

  #checkWritable(what: string): void {
    this.#checkOpen();
    if (this.#readonly) throw new StowageError('EBAD_CONFIG', `SqliteSource.${what}: ${this.name} was opened with readonly: true.`, { details: { source: this.name, option: 'readonly' } });
  }
}
