/**
 * MysqlSource: the TableSource contract over a MariaDB or MySQL database
 * through mysql2.
 *
 * Connections come from a pool. Every connection is set up once with the
 * session options the bulk text depends on (`time_zone = '+00:00'`,
 * utf8mb4, a strict `sql_mode` without `ANSI_QUOTES` or
 * `NO_BACKSLASH_ESCAPES`, and day-long `net_read_timeout` /
 * `net_write_timeout` so that a dump paused by a slow consumer, or a load
 * fed by a slow stream, is not cut off by the server).
 *
 * Rows are streamed from a plain `SELECT` (see `mysql-reader.ts`); loads
 * use `LOAD DATA LOCAL INFILE` fed from the stream through mysql2's
 * `infileStreamFactory`, never `SELECT ... INTO OUTFILE` or a file on the
 * server. `LOCAL` makes the server lenient (a duplicate key or a bad value
 * is skipped with a warning instead of failing the statement), so each load
 * runs in its own transaction, and is rolled back unless the server stored
 * exactly the rows sent without a single warning (`sql_notes = 1`, so
 * that a value rounded into its column, which the server reports as a
 * Note, counts too, whatever the server's global setting); a bulk text
 * gate checks the input on the way (see `bulk-gate.ts`).
 *
 * Sessions also run with `foreign_key_checks = 0`, as restore tools do:
 * partitions of related tables are loaded in any order.
 *
 * Limits: loads are atomic on transactional engines (InnoDB) only: into
 * a MyISAM (Aria, MEMORY) table a failed load keeps the rows stored before
 * the failure (its error says how many), and `replaceRange` over rows is
 * refused (EBAD_CONFIG: a failure after the DELETE would lose them);
 * `createTable` runs one statement and, MySQL DDL not being transactional,
 * cannot undo it; MariaDB stores `-0.0` as `0`; system-versioned tables
 * (MariaDB) are not listed or read.
 *
 * @module
 */
import { pipeline, type Readable } from 'node:stream';
import mysql from 'mysql2';
import type { Pool, PoolConnection, PoolOptions, SslOptions } from 'mysql2';
import { StowageError } from '../../errors.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkOptionKeys } from '../../util/options.js';
import type { RangeDigest } from '../range-digest.js';
import {
  armLoadAbort,
  awaitPooled,
  badConfig as sourceBadConfig,
  checkCreateTableArgs,
  checkReplaceRange,
  checkServerConnection,
  checkSnapshotArgs,
  closedError,
  parseServerUri,
  releaseOnce,
  runSnapshot,
  tableExistsError,
  toLoadStream,
  trackLoad,
  type ReplaceBounds,
} from '../source-common.js';
import { SnapshotLease } from '../snapshot-lease.js';
import {
  checkColumnNames,
  checkIdentifier,
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
import { BulkTextGate } from '../bulk-gate.js';
import { KEY_PROBES, type KeyProbes } from '../key-probes.js';
import {
  MysqlReader,
  mysqlError,
  mysqlKeyColumn,
  enumHasEmptyMember,
  mysqlLoadColumns,
  mysqlQuery,
  mysqlTableInfo,
  quoteMysqlIdent,
  type LentMysqlConnection,
  type MysqlConnection,
  type MysqlOk,
  type MysqlReaderContext,
} from './mysql-reader.js';

/** Where the MySQL server is and who to log in as. */
export interface MysqlConnectionConfig {
  /** Host name or address (default `localhost`). */
  host?: string;
  /** TCP port (default 3306). */
  port?: number;
  /** Unix socket path, instead of host and port. */
  socketPath?: string;
  /** User name. */
  user?: string;
  /** Password. */
  password?: string;
  /** The database (schema) the source works in. Required. */
  database: string;
  /** TLS options, as mysql2 takes them. */
  ssl?: string | SslOptions;
  /** How long to wait for a connection to be established, in ms (default 10000). */
  connectTimeoutMs?: number;
}

/** Options of {@link MysqlSource}. */
export interface MysqlSourceOptions {
  /** The source's label in the Catalog and in manifests (default `mysql://user@host:port/database`, without the password). */
  name?: string;
  /**
   * Most connections open at once (default 8). Each open row stream, load
   * and snapshot holds one until it ends; more wait for a free one.
   */
  poolSize?: number;
}

const CONFIG_KEYS = ['host', 'port', 'socketPath', 'user', 'password', 'database', 'ssl', 'connectTimeoutMs'] as const;
const OPTION_KEYS = ['name', 'poolSize'] as const;

/** The session every connection gets (one round trip when it is first used). */
const SESSION_SQL =
  // utf8mb4 set here too, not only asked for in the handshake: a server run
  // with --skip-character-set-client-handshake ignores that request and
  // would send text in its own character set (latin1: an emoji becomes ?).
  "SET NAMES utf8mb4, time_zone = '+00:00', " +
  "SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,ALLOW_INVALID_DATES', " +
  // sql_notes: a Note (a DECIMAL value rounded into its column) counts as a warning, as by default, whatever the server's global says.
  'SESSION sql_quote_show_create = 1, SESSION foreign_key_checks = 0, SESSION sql_notes = 1, ' +
  'SESSION net_write_timeout = 86400, SESSION net_read_timeout = 86400, ' +
  // A server whose global sql_select_limit caps SELECTs would cut every read
  // short in silence (a dump archiving 1000 rows of 5000, a compare calling
  // two tables equal): no limit, whatever the global (DEFAULT would copy it).
  // sql_big_selects: a global max_join_size must not refuse a large range.
  'SESSION sql_select_limit = 18446744073709551615, SESSION sql_big_selects = 1';

/** What is sent as the LOCAL INFILE file name; the server only echoes it back. */
const INFILE_NAME = 'stowage-bulk-text';

/** How long an aborted load waits for the server to wind down before the connection is closed. */
const ABORT_GRACE_MS = 2000;

function parseUri(uri: string): MysqlConnectionConfig {
  return parseServerUri('MysqlSource', uri, ['mysql', 'mariadb'], false);
}

function badConfig(message: string, option: string): StowageError {
  return sourceBadConfig('MysqlSource', message, option);
}

/** Closes a connection at once: the server notices the socket go and stops its query. */
function destroyConnection(conn: MysqlConnection): void {
  conn.destroy();
  (conn as unknown as { stream?: { destroy(): void } }).stream?.destroy();
}

/**
 * The TableSource of a MariaDB or MySQL database.
 *
 * @example
 * ```ts
 * await using src = new MysqlSource({ host: 'db1', user: 'dayabay', password, database: 'offline_db' });
 * const { lo, hi } = await src.keyRange('CalibPmtSpecVld', 'SEQNO');
 * const rows = await src.rows('CalibPmtSpecVld', { key: 'SEQNO', lo: 1n, hi: 10000n });
 * ```
 */
export class MysqlSource implements TableSource {
  /** Always `'mysql'`. */
  readonly engine = 'mysql' as const;
  /** A stable label of the database, recorded in the Catalog and in manifests (see {@link TableReader.name}). */
  readonly name: string;
  /** The database (schema) the source works in. */
  readonly database: string;
  readonly #pool: Pool;
  readonly #inited = new WeakSet<object>();
  readonly #streams = new Set<Readable>();
  readonly #reader: MysqlReader;
  #closed = false;
  /** Whether the server folds table names to lower case (`lower_case_table_names` not 0); asked by `#exists` when it needs to know. */
  #foldsNames: Promise<boolean> | undefined;

  /**
   * Sets up a pool of connections (none is opened before the first call:
   * an unreachable server is reported then, as ECONNECT, or EAUTH when the
   * login is refused).
   *
   * @param connection - a `mysql://user:password@host:port/database` URI, or a {@link MysqlConnectionConfig}
   * @param options - see {@link MysqlSourceOptions}
   */
  constructor(connection: string | MysqlConnectionConfig, options: MysqlSourceOptions = {}) {
    const { config, poolSize, connectTimeout } = checkServerConnection('MysqlSource', connection, options, { config: CONFIG_KEYS, options: OPTION_KEYS }, parseUri, 'mysql');
    this.database = config.database;
    const where = config.socketPath !== undefined ? `localhost${config.socketPath}` : `${config.host ?? 'localhost'}:${config.port ?? 3306}`;
    this.name = options.name ?? `mysql://${config.user !== undefined ? `${encodeURIComponent(config.user)}@` : ''}${where}/${encodeURIComponent(config.database)}`;
    if (typeof this.name !== 'string' || this.name.length === 0) throw badConfig('option "name" must be a non-empty string.', 'name');
    const poolOptions: PoolOptions = {
      database: config.database,
      connectionLimit: poolSize,
      // Below the limit, so that mysql2 closes connections idle for a
      // minute (before the server's wait_timeout kills them under us).
      maxIdle: poolSize - 1,
      idleTimeout: 60_000,
      connectTimeout,
      charset: 'UTF8MB4_GENERAL_CI',
      supportBigNumbers: true,
      bigNumberStrings: true,
      dateStrings: true,
      decimalNumbers: false,
      multipleStatements: false,
      namedPlaceholders: false,
      enableKeepAlive: true,
    };
    if (config.host !== undefined) poolOptions.host = config.host;
    if (config.port !== undefined) poolOptions.port = config.port;
    if (config.socketPath !== undefined) poolOptions.socketPath = config.socketPath;
    if (config.user !== undefined) poolOptions.user = config.user;
    if (config.password !== undefined) poolOptions.password = config.password;
    if (config.ssl !== undefined) poolOptions.ssl = config.ssl;
    this.#pool = mysql.createPool(poolOptions);
    this.#reader = new MysqlReader(this.#poolContext());
  }

  /** The base tables of the database, sorted (see {@link TableReader.tables}). */
  tables(options?: DbOptions): Promise<string[]> {
    return this.#reader.tables(options);
  }

  /** The stored columns of a table in table order; ENO_TABLE if it does not exist (see {@link TableReader.columns}). */
  columns(table: string, options?: DbOptions): Promise<ColumnInfo[]> {
    return this.#reader.columns(table, options);
  }

  /**
   * The engine's own DDL for the table (see {@link TableReader.schema}):
   * the text of `SHOW CREATE TABLE` (backquoted names, under stowage's
   * session `sql_mode`), then `;` and a newline. ENO_TABLE if there is no
   * such base table.
   */
  schema(table: string, options?: DbOptions): Promise<string> {
    return this.#reader.schema(table, options);
  }

  /** Smallest and largest key and the row counts, in one scan (see {@link TableReader.keyRange}). */
  keyRange(table: string, key: string, options?: DbOptions): Promise<KeyRange> {
    return this.#reader.keyRange(table, key, options);
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

  /**
   * The Partitioner's cheap questions about a key column (bounds without a
   * count, many next keys per query); see `key-probes.ts`.
   *
   * @internal
   */
  get [KEY_PROBES](): KeyProbes {
    const r = this.#reader;
    return { bounds: (table, key, options) => r.keyBounds(table, key, options), nextKeys: (table, key, froms, options) => r.nextKeys(table, key, froms, options) };
  }

  /**
   * The rows with `lo <= key <= hi` as a bulk text stream with backpressure (see {@link TableReader.rows}).
   *
   * The stream holds a pooled connection until it ends or is destroyed;
   * destroyed early, the connection is closed (which stops the query).
   */
  rows(table: string, options: RowsOptions): Promise<Readable> {
    return this.#reader.rows(table, options);
  }

  /** Count and digest of the rows with `lo <= key <= hi` (see {@link TableReader.digestRange}). */
  digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options?: DigestRangeOptions): Promise<RangeDigest> {
    return this.#reader.digestRange(table, key, lo, hi, options);
  }

  /**
   * Runs `fn` with a reader whose every read sees one consistent snapshot (see {@link TableSource.snapshot}).
   *
   * One connection in `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ
   * ONLY` at REPEATABLE READ: InnoDB tables are read as of that instant
   * (`information_schema` and DDL are not versioned). The reader reads one
   * stream at a time on that connection: a call made while one of its row
   * streams is still open fails with EDB (read or destroy the stream
   * first); queries may overlap. A stream destroyed before its end closes
   * the connection, and the snapshot with it: later calls fail with EDB.
   */
  async snapshot<T>(fn: (reader: TableReader) => Promise<T>, options: DbOptions = {}): Promise<T> {
    checkSnapshotArgs('MysqlSource.snapshot', fn, options);
    const { signal } = options;
    throwIfAborted(signal);
    const lent = await this.#acquire(signal);
    const conn = lent.conn;
    const lease = new SnapshotLease({ name: this.name, unit: 'connection', destroy: () => destroyConnection(conn), track: (s) => this.#track(s) });
    const ctx: MysqlReaderContext = {
      name: this.name,
      acquire: async (_signal, stream) => ({ conn, release: lease.lend(stream) }),
      track: (s) => lease.track(s),
    };
    return runSnapshot(
      signal,
      async () => {
        try {
          await mysqlQuery(conn, { sql: 'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ' });
          await mysqlQuery(conn, { sql: 'START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY' });
        } catch (err) {
          throw mysqlError(err, this.name, 'start a snapshot', signal);
        }
        throwIfAborted(signal);
      },
      fn,
      () => new MysqlReader(ctx),
      async () => lent.release(await lease.end(() => mysqlQuery(conn, { sql: 'ROLLBACK' }))),
    );
  }

  /**
   * Creates `table` by running `ddl`, the text of {@link TableReader.schema} (see {@link TableSource.createTable}).
   *
   * `ddl` is one statement (a trailing `;` is dropped). MySQL commits DDL
   * at once: if the statement ran but did not create `table` (ENO_TABLE),
   * whatever it did create stays. `deferIndexes` is accepted and the
   * table created whole (InnoDB tables are stored in primary key order).
   */
  async createTable(table: string, ddl: string, options: CreateTableOptions = {}): Promise<undefined> {
    checkCreateTableArgs('MysqlSource.createTable', table, ddl, options);
    const { signal } = options;
    throwIfAborted(signal);
    const lent = await this.#acquire(signal);
    let broken = false;
    try {
      throwIfAborted(signal);
      if (await this.#exists(lent.conn, table)) {
        throw tableExistsError(this.name, table);
      }
      // A DDL waiting on a lock (FLUSH TABLES WITH READ LOCK, a long
      // transaction's metadata lock) is given up on abort: the connection is
      // closed and the call rejects at once. MySQL DDL is not transactional:
      // the server may still create the table once the lock goes.
      let disposeAbort = (): void => {};
      const stopped = new Promise<never>((_, reject) => {
        disposeAbort = onAbort(signal, (reason) => {
          broken = true;
          destroyConnection(lent.conn);
          reject(reason);
        });
      });
      stopped.catch(() => {});
      try {
        await Promise.race([mysqlQuery(lent.conn, { sql: ddl.trim().replace(/;+\s*$/, '') }), stopped]);
      } finally {
        disposeAbort();
      }
      throwIfAborted(signal);
      if (!(await this.#exists(lent.conn, table))) {
        throw new StowageError('ENO_TABLE', `The DDL given to create ${JSON.stringify(table)} in ${this.name} ran but did not create it (MySQL DDL cannot be rolled back: check what it did).`, {
          details: { source: this.name, table },
        });
      }
    } catch (err) {
      broken ||= (err as { fatal?: boolean }).fatal === true;
      throw mysqlError(err, this.name, `create table ${JSON.stringify(table)}`, signal);
    } finally {
      lent.release(broken);
    }
    return undefined;
  }

  /**
   * Loads bulk text into an existing table through the engine's bulk path, all or nothing (see {@link TableSource.load}).
   *
   * `LOAD DATA LOCAL INFILE` with `CHARACTER SET utf8mb4` (or `binary`
   * where every column is UTF-8 or has no character set: the same values
   * stored, with less work for the server), TAB, LF and backslash given
   * explicitly, and the stored columns named (an ascii
   * column through a variable, its latin1 text stored as the same bytes,
   * as `rows` reads it), inside a transaction (with the `replaceRange`
   * DELETE, if any). It commits only if the server reports as many rows as the input holds and no warning;
   * otherwise it rolls back with EDB listing the first warnings (a
   * duplicate key, a value that does not fit...). The one exception is an
   * ENUM's error value (index 0, which a non-strict session stores for a
   * value not in the list, and which reads as `''`): loading it back gives
   * one "Data truncated" warning per value, and exactly that many such
   * warnings, on ENUM columns whose list has no `''`, are accepted.
   */
  async load(table: string, input: Readable | AsyncIterable<Uint8Array>, options: LoadOptions = {}): Promise<LoadResult> {
    checkOptionKeys('MysqlSource.load', options, ['signal', 'onProgress', 'replaceRange', 'columns']);
    checkIdentifier('MysqlSource.load', 'table', table);
    const stream = toLoadStream('MysqlSource.load', input);
    const { signal, onProgress, replaceRange } = options;
    let bounds: ReplaceBounds | undefined;
    let names: readonly string[] | undefined;
    try {
      bounds = checkReplaceRange('MysqlSource.load', replaceRange);
      names = checkColumnNames('MysqlSource.load', options.columns);
      throwIfAborted(signal);
      this.#checkOpen();
    } catch (err) {
      stream.destroy();
      throw err;
    }
    const action = `load rows into ${JSON.stringify(table)}`;
    let lent: LentMysqlConnection;
    try {
      lent = await this.#acquire(signal);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    const conn = lent.conn;
    let broken = false;
    let inTransaction = false;
    let gate: BulkTextGate | undefined;
    // The server winds the LOAD down when the stream ends; if it does not
    // (stuck on a lock), closing the connection makes it roll back. mysql2
    // never calls back a query whose connection was destroyed, so giving up
    // also fails whatever the load is waiting for.
    let giveUp: (reason: unknown) => void = () => {};
    const gaveUp = new Promise<never>((_, reject) => (giveUp = reject));
    gaveUp.catch(() => {});
    const unlessGivenUp = <T>(work: Promise<T>): Promise<T> => Promise.race([work, gaveUp]);
    const disposeAbort = armLoadAbort(signal, stream, ABORT_GRACE_MS, () => {
      broken = true;
      destroyConnection(conn);
      giveUp(signal?.reason);
    });
    try {
      throwIfAborted(signal);
      // START TRANSACTION is queued with the table's lookup, not a round trip
      // of its own after it: mysql2 sends a queued command as soon as the
      // server answered the one before.
      const begun = mysqlQuery(conn, { sql: 'START TRANSACTION' });
      inTransaction = true;
      const [, info] = await unlessGivenUp(Promise.all([begun, mysqlTableInfo(this.name, conn, table)]));
      const t = quoteMysqlIdent(info.name);
      let deleteSql: string | undefined;
      if (bounds !== undefined) {
        const k = quoteMysqlIdent(mysqlKeyColumn(this.name, info, bounds.key).name);
        deleteSql = `DELETE FROM ${t} WHERE ${k} BETWEEN ${bounds.lo} AND ${bounds.hi}`;
        // An engine that cannot roll back would lose the range's rows if the
        // load after the DELETE failed: replacing rows there is refused (an
        // empty range is fine: nothing to lose).
        if (!info.transactional) {
          const held = await unlessGivenUp(mysqlQuery<{ n: number }[]>(conn, { sql: `SELECT 1 AS n FROM ${t} WHERE ${k} BETWEEN ${bounds.lo} AND ${bounds.hi} LIMIT 1` }));
          if (held.length > 0) {
            throw new StowageError(
              'EBAD_CONFIG',
              `${this.name}: cannot ${action}: ${JSON.stringify(info.name)} is a ${info.engine} table, which cannot roll back, and replacing its rows in [${bounds.lo}, ${bounds.hi}] would lose them if the load failed halfway; nothing was changed. Convert it (ALTER TABLE ${t} ENGINE=InnoDB), or restore into an empty table.`,
              { details: { source: this.name, action, table: info.name, engine: info.engine } },
            );
          }
        }
      }
      const { indexes } = pickColumns(this.name, info.name, info.columns, names);
      // An ENUM's error value (index 0, stored by a non-strict session for a
      // value not in the list) reads as ''. A strict session cannot write it
      // back, and LOAD DATA LOCAL stores it with warning 1265: one per such
      // value is expected (see below), counted by the gate.
      const enumFields = indexes.flatMap((col, field) => (info.dataTypes[col] === 'enum' && !enumHasEmptyMember(info.columns[col]!.type) ? [field] : []));
      const g = (gate = new BulkTextGate({ columns: indexes.length, dialect: 'mysql', countEmpty: enumFields }));
      const finishProgress = trackLoad(g, onProgress);
      throwIfAborted(signal);
      let deleted = 0;
      if (deleteSql !== undefined) deleted = (await unlessGivenUp(mysqlQuery<MysqlOk>(conn, { sql: deleteSql }))).affectedRows;
      throwIfAborted(signal);
      const target = mysqlLoadColumns(info, indexes);
      const sql =
        `LOAD DATA LOCAL INFILE '${INFILE_NAME}' INTO TABLE ${t} CHARACTER SET ${target.charset} ` +
        "FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES STARTING BY '' TERMINATED BY '\\n' " +
        `${target.columns}${target.set}`;
      let fed = false;
      const result = await unlessGivenUp(
        mysqlQuery<MysqlOk>(conn, {
          sql,
          infileStreamFactory: () => {
            fed = true;
            pipeline(stream, g, () => {});
            return g;
          },
        }),
      );
      if (!fed) throw new StowageError('EDB', `${this.name}: the server did not ask for the rows of LOAD DATA LOCAL INFILE.`, { details: { source: this.name } });
      throwIfAborted(signal);
      if (result.warningStatus > 0 || result.affectedRows !== g.rows) {
        const warnings = await mysqlQuery<{ Level: string; Code: number; Message: string }[]>(conn, { sql: 'SHOW WARNINGS LIMIT 10' }).catch(() => []);
        // The OK packet counts warnings in 16 bits (65535 at most): the
        // server's own count, which a diagnostic statement leaves as it is.
        const warningCount =
          result.warningStatus > 0
            ? await mysqlQuery<{ n: number | string }[]>(conn, { sql: 'SELECT @@warning_count AS n' }).then(
                (r) => Number(r[0]?.n),
                () => Number.NaN,
              )
            : 0;
        // Exactly one "Data truncated" per ENUM error value, and nothing else: the rows are as they were.
        const enumNames = enumFields.map((f) => info.columns[indexes[f]!]!.name);
        const enumZeros =
          result.affectedRows === g.rows &&
          warningCount === g.emptyCount &&
          warnings.length > 0 &&
          warnings.every((w) => w.Code === 1265 && enumNames.some((n) => w.Message.startsWith(`Data truncated for column '${n}' `)));
        const list = warnings.map((w) => `${w.Level} ${w.Code}: ${w.Message}`);
        if (!enumZeros) {
          throw new StowageError(
            'EDB',
            `${this.name}: cannot ${action}: the server stored ${result.affectedRows} of ${g.rows} rows with ${Number.isNaN(warningCount) ? result.warningStatus : warningCount} warning(s)${list.length > 0 ? `: ${list.join('; ')}` : ''}; ${info.transactional ? 'nothing was kept' : `the table is ${info.engine}, which cannot roll back: the ${result.affectedRows} rows stored were kept; remove them (or restore into an InnoDB table)`}.`,
            { details: { source: this.name, action, rows: g.rows, stored: result.affectedRows, warnings: list, warningCount: Number.isNaN(warningCount) ? result.warningStatus : warningCount, kept: info.transactional ? 0 : result.affectedRows } },
          );
        }
      }
      await unlessGivenUp(mysqlQuery(conn, { sql: 'COMMIT' }));
      inTransaction = false;
      finishProgress();
      return Object.freeze({ rows: g.rows, bytes: g.bytes, deleted });
    } catch (err) {
      stream.destroy();
      gate?.destroy();
      if ((err as { fatal?: boolean }).fatal === true) broken = true;
      if (inTransaction && !broken) {
        try {
          await mysqlQuery(conn, { sql: 'ROLLBACK' });
        } catch {
          broken = true;
        }
      }
      throw mysqlError(err, this.name, action, signal);
    } finally {
      disposeAbort();
      lent.release(broken);
    }
  }

  /** Closes every connection; further calls fail with EDB. Idempotent (see {@link TableSource.close}). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#streams) s.destroy();
    await new Promise<void>((resolve) => this.#pool.end(() => resolve()));
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #poolContext(): MysqlReaderContext {
    return {
      name: this.name,
      acquire: (signal) => this.#acquire(signal),
      track: (s) => this.#track(s),
    };
  }

  #track(s: Readable): void {
    this.#streams.add(s);
    s.once('close', () => this.#streams.delete(s));
  }

  /** A pooled connection with the session set up. */
  async #acquire(signal: AbortSignal | undefined): Promise<LentMysqlConnection> {
    this.#checkOpen();
    throwIfAborted(signal);
    let conn: PoolConnection;
    try {
      const pending = new Promise<PoolConnection>((resolve, reject) => this.#pool.getConnection((err, c) => (err ? reject(err) : resolve(c))));
      conn = await awaitPooled(pending, signal, (c) => c.release());
      if (!this.#inited.has(conn)) {
        // A pooled connection reports a lost socket as an 'error' event; the
        // query in flight gets it too, and the pool drops the connection.
        conn.on('error', () => {});
        try {
          await mysqlQuery(conn, { sql: SESSION_SQL });
        } catch (err) {
          destroyConnection(conn);
          throw err;
        }
        this.#inited.add(conn);
      }
    } catch (err) {
      throw mysqlError(err, this.name, 'connect', signal);
    }
    return {
      conn,
      release: releaseOnce((broken) => {
        if (broken) destroyConnection(conn);
        else conn.release();
      }),
    };
  }

  /**
   * Whether `table` exists: under that very name, or, on a server that
   * folds table names (`lower_case_table_names` 1 or 2, where `CalibPmt`
   * is stored and found as `calibpmt`), under the name it folds to.
   */
  async #exists(conn: MysqlConnection, table: string): Promise<boolean> {
    let stored: string;
    try {
      stored = (await mysqlTableInfo(this.name, conn, table)).name;
    } catch (err) {
      if (err instanceof StowageError && err.code === 'ENO_TABLE') return false;
      throw err;
    }
    if (stored === table) return true;
    if (stored.toLowerCase() !== table.toLowerCase()) return false;
    // The setting is read-only while the server runs: asked once.
    this.#foldsNames ??= mysqlQuery<{ n: number | string }[]>(conn, { sql: 'SELECT @@lower_case_table_names AS n' }).then((r) => Number(r[0]?.n) !== 0);
    this.#foldsNames.catch(() => (this.#foldsNames = undefined));
    return this.#foldsNames;
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError(this.name);
  }
}
