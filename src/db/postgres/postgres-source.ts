/**
 * PostgresSource: the TableSource contract over one schema of a PostgreSQL
 * database through pg and pg-copy-streams.
 *
 * Clients come from a pg pool. Every client is set up once, when first
 * used, with the session settings the bulk text depends on (`TimeZone =
 * UTC`, `DateStyle = ISO, YMD`, `IntervalStyle = postgres`,
 * `extra_float_digits = 1`, `bytea_output = hex`, `client_encoding = UTF8`,
 * `lc_monetary = C`) and `search_path` set to the source's schema (so the
 * DDL of `schema()` names that schema's objects without qualifying them).
 *
 * Rows are dumped with `COPY (SELECT ...) TO STDOUT` and loaded with `COPY
 * ... FROM STDIN`, both in text format, which is the bulk text format:
 * neither side parses a value in JavaScript. Each load runs in a
 * transaction (with the `replaceRange` DELETE, if any) through a bulk text
 * gate (see `../mysql/bulk-gate.ts`); an error or an abort sends CopyFail
 * and rolls back, leaving the client usable.
 *
 * Requires PostgreSQL 12 or later (generated columns in the catalogs).
 *
 * @module
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { StowageError } from '../../errors.js';
import { ProgressTracker } from '../../progress.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkInt, checkOptionKeys } from '../../util/options.js';
import { BulkTextGate } from '../bulk-gate.js';
import type { RangeDigest } from '../range-digest.js';
import {
  checkIdentifier,
  toKeyBounds,
  type ColumnInfo,
  type DbOptions,
  type KeyBound,
  type KeyRange,
  type LoadOptions,
  type LoadResult,
  type RowsOptions,
  type TableReader,
  type TableSource,
} from '../table-source.js';
import { PgReader, pgError, pgKeyColumn, pgRangeCondition, pgTableInfo, quotePgIdent, type LentPgClient, type PgReaderContext } from './postgres-reader.js';

/** Where the PostgreSQL server is and who to log in as. */
export interface PostgresConnectionConfig {
  /** Host name, address, or a folder holding the unix socket (default `localhost`). */
  host?: string;
  /** Port (default 5432). */
  port?: number;
  /** User name. */
  user?: string;
  /** Password. */
  password?: string;
  /** The database. Required. */
  database: string;
  /** TLS options, as pg takes them. */
  ssl?: pg.ClientConfig['ssl'];
  /** How long to wait for a connection to be established, in ms (default 10000). */
  connectTimeoutMs?: number;
}

/** Options of {@link PostgresSource}. */
export interface PostgresSourceOptions {
  /** The source's label in the Catalog and in manifests (default `postgres://user@host:port/database`, plus `?schema=` when not public). */
  name?: string;
  /** The schema whose tables the source reads and writes (default `public`). */
  schema?: string;
  /**
   * Most clients open at once (default 8). Each open row stream, load and
   * snapshot holds one until it ends; more wait for a free one.
   */
  poolSize?: number;
}

const CONFIG_KEYS = ['host', 'port', 'user', 'password', 'database', 'ssl', 'connectTimeoutMs'] as const;
const OPTION_KEYS = ['name', 'schema', 'poolSize'] as const;

/** The session every client gets (one round trip when it is first used); $1 is the search_path. */
const SESSION_SQL =
  "SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, YMD', false), set_config('IntervalStyle', 'postgres', false), " +
  "set_config('extra_float_digits', '1', false), set_config('bytea_output', 'hex', false), set_config('client_encoding', 'UTF8', false), " +
  "set_config('lc_monetary', 'C', false), set_config('search_path', $1, false)";

/** How long an aborted load waits for the server to end the COPY before the client is closed. */
const ABORT_GRACE_MS = 2000;

function badConfig(message: string, option: string): StowageError {
  return new StowageError('EBAD_CONFIG', `PostgresSource: ${message}`, { details: { option } });
}

function parseUri(uri: string): PostgresConnectionConfig {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (err) {
    throw new StowageError('EBAD_CONFIG', `PostgresSource: ${JSON.stringify(uri)} is not a postgres:// URI.`, { details: { option: 'connection' }, cause: err });
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw badConfig(`the URI must start with postgres:// or postgresql://, got ${url.protocol}//.`, 'connection');
  }
  if (url.search !== '') throw badConfig('URI query parameters are not supported; pass a config object for TLS and timeouts.', 'connection');
  const config: PostgresConnectionConfig = { database: decodeURIComponent(url.pathname.replace(/^\//, '')) };
  if (url.hostname !== '') config.host = decodeURIComponent(url.hostname.replace(/^\[(.*)\]$/, '$1'));
  if (url.port !== '') config.port = Number(url.port);
  if (url.username !== '') config.user = decodeURIComponent(url.username);
  if (url.password !== '') config.password = decodeURIComponent(url.password);
  return config;
}

/** Closes a client at once: the server notices the socket go and ends its backend. */
function destroyClient(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

function isAsyncIterable(x: unknown): x is AsyncIterable<Uint8Array> {
  return typeof x === 'object' && x !== null && typeof (x as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
}

/**
 * The TableSource of one schema of a PostgreSQL database.
 *
 * @example
 * ```ts
 * await using src = new PostgresSource({ host: 'db1', user: 'dayabay', password, database: 'offline_db' });
 * const { lo, hi } = await src.keyRange('calibpmtspecvld', 'seqno');
 * const rows = await src.rows('calibpmtspecvld', { key: 'seqno', lo: 1n, hi: 10000n });
 * ```
 */
export class PostgresSource implements TableSource {
  /** Always `'postgres'`. */
  readonly engine = 'postgres' as const;
  /** A stable label of the database, recorded in the Catalog and in manifests (see {@link TableReader.name}). */
  readonly name: string;
  /** The database. */
  readonly database: string;
  /** The schema (namespace) the source works in. */
  readonly schemaName: string;
  readonly #pool: pg.Pool;
  readonly #inited = new WeakSet<object>();
  readonly #streams = new Set<Readable>();
  readonly #reader: PgReader;
  #closed = false;

  /**
   * Sets up a pool of clients (none is opened before the first call: an
   * unreachable server is reported then, as ECONNECT, or EAUTH when the
   * login is refused).
   *
   * @param connection - a `postgres://user:password@host:port/database` URI, or a {@link PostgresConnectionConfig}
   * @param options - see {@link PostgresSourceOptions}
   */
  constructor(connection: string | PostgresConnectionConfig, options: PostgresSourceOptions = {}) {
    checkOptionKeys('PostgresSource', options, OPTION_KEYS);
    let config: PostgresConnectionConfig;
    if (typeof connection === 'string') config = parseUri(connection);
    else if (typeof connection === 'object' && connection !== null) config = connection;
    else throw badConfig('the connection must be a postgres:// URI or a config object.', 'connection');
    checkOptionKeys('PostgresSource: connection', config, CONFIG_KEYS);
    if (typeof config.database !== 'string' || config.database.length === 0) throw badConfig('the connection needs a "database".', 'database');
    if (config.port !== undefined) checkInt('PostgresSource', 'port', config.port, 1, 65535);
    const poolSize = checkInt('PostgresSource', 'poolSize', options.poolSize ?? 8, 1, 10_000);
    const connectTimeout = checkInt('PostgresSource', 'connectTimeoutMs', config.connectTimeoutMs ?? 10_000, 1, 2 ** 31 - 1);
    this.schemaName = checkIdentifier('PostgresSource', 'schema', options.schema ?? 'public');
    this.database = config.database;
    const where = `${config.host ?? 'localhost'}:${config.port ?? 5432}`;
    this.name =
      options.name ??
      `postgres://${config.user !== undefined ? `${encodeURIComponent(config.user)}@` : ''}${config.host?.startsWith('/') ? encodeURIComponent(where) : where}/${encodeURIComponent(config.database)}${this.schemaName === 'public' ? '' : `?schema=${encodeURIComponent(this.schemaName)}`}`;
    if (typeof this.name !== 'string' || this.name.length === 0) throw badConfig('option "name" must be a non-empty string.', 'name');
    const poolConfig: pg.PoolConfig = {
      database: config.database,
      max: poolSize,
      // pg-pool would also time out a wait for a free client with this
      // (streams hold theirs as long as they are read): only the clients
      // themselves get the connect timeout.
      connectionTimeoutMillis: 0,
      Client: class extends pg.Client {
        constructor(clientConfig?: pg.ClientConfig) {
          // The pool hides the password from enumeration: inherit, do not spread.
          super(Object.assign(Object.create(clientConfig ?? null) as pg.ClientConfig, { connectionTimeoutMillis: connectTimeout }));
        }
      } as new () => pg.ClientBase,
      application_name: 'stowage',
      keepAlive: true,
    };
    if (config.host !== undefined) poolConfig.host = config.host;
    if (config.port !== undefined) poolConfig.port = config.port;
    if (config.user !== undefined) poolConfig.user = config.user;
    if (config.password !== undefined) poolConfig.password = config.password;
    if (config.ssl !== undefined) poolConfig.ssl = config.ssl;
    this.#pool = new pg.Pool(poolConfig);
    // An idle client whose server went away: the pool drops it.
    this.#pool.on('error', () => {});
    this.#reader = new PgReader({ name: this.name, schema: this.schemaName, acquire: (signal) => this.#acquire(signal), track: (s) => this.#track(s) });
  }

  /**
   * The ordinary tables of the source's schema, sorted (see {@link TableReader.tables}):
   * a partition is listed as a table of its own; a partitioned parent,
   * which holds no rows, is not.
   */
  tables(options?: DbOptions): Promise<string[]> {
    return this.#reader.tables(options);
  }

  /** The stored columns of a table in table order; ENO_TABLE if it does not exist (see {@link TableReader.columns}). */
  columns(table: string, options?: DbOptions): Promise<ColumnInfo[]> {
    return this.#reader.columns(table, options);
  }

  /**
   * The `CREATE TABLE` of the table, built from the catalogs as pg_dump
   * would for the table alone (see {@link TableReader.schema}). ENO_TABLE if
   * there is no such table.
   *
   * Carried: the columns in order with their types and typmods
   * (`format_type`), collations that differ from the type's, defaults,
   * identity and generated columns, NOT NULL; the primary key, unique,
   * check and exclusion constraints; the other indexes; the sequences that
   * `serial` columns own (created, then `OWNED BY` the column); UNLOGGED.
   * Names in the source's schema are left unqualified, so the DDL creates
   * the table in the target's schema.
   *
   * Not carried: foreign keys (they name other tables; add them after a
   * restore), the current value of sequences (call `setval` after a
   * restore), identity sequence options, storage parameters, tablespaces,
   * comments, grants, row security policies, triggers. Types, domains and
   * collations the columns use must exist in the target.
   */
  schema(table: string, options?: DbOptions): Promise<string> {
    return this.#reader.schema(table, options);
  }

  /** Smallest and largest key and the row counts, in one scan (see {@link TableReader.keyRange}). */
  keyRange(table: string, key: string, options?: DbOptions): Promise<KeyRange> {
    return this.#reader.keyRange(table, key, options);
  }

  /**
   * The rows with `lo <= key <= hi` as a bulk text stream with backpressure (see {@link TableReader.rows}).
   *
   * The stream holds a pooled client until it ends or is destroyed;
   * destroyed early, the client is closed (which ends the COPY).
   */
  rows(table: string, options: RowsOptions): Promise<Readable> {
    return this.#reader.rows(table, options);
  }

  /** Count and digest of the rows with `lo <= key <= hi` (see {@link TableReader.digestRange}). */
  digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options?: DbOptions): Promise<RangeDigest> {
    return this.#reader.digestRange(table, key, lo, hi, options);
  }

  /**
   * Runs `fn` with a reader whose every read sees one consistent snapshot (see {@link TableSource.snapshot}).
   *
   * One client in `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`, its
   * snapshot taken at once. The reader reads one stream at a time on that
   * client: a call made while one of its row streams is still open fails
   * with EDB (read or destroy the stream first); queries may overlap. A
   * stream destroyed before its end closes the client, and the snapshot
   * with it: later calls fail with EDB.
   */
  async snapshot<T>(fn: (reader: TableReader) => Promise<T>, options: DbOptions = {}): Promise<T> {
    checkOptionKeys('PostgresSource.snapshot', options, ['signal']);
    if (typeof fn !== 'function') throw new StowageError('EBAD_CONFIG', 'PostgresSource.snapshot: fn must be a function.', { details: { option: 'fn' } });
    const { signal } = options;
    throwIfAborted(signal);
    const lent = await this.#acquire(signal);
    const client = lent.client;
    const streams = new Set<Readable>();
    let open = true;
    let broken: string | undefined;
    let streaming = false;
    let queries = 0;
    const acquire = async (_signal: AbortSignal | undefined, stream: boolean): Promise<LentPgClient> => {
      if (!open) throw new StowageError('EDB', `${this.name}: the snapshot has ended; use the reader only inside the snapshot callback.`, { details: { source: this.name } });
      if (broken !== undefined) throw new StowageError('EDB', `${this.name}: the snapshot is no longer usable: ${broken}.`, { details: { source: this.name } });
      // Anything sent now would wait behind the open COPY, which waits for its reader.
      if (streaming) {
        throw new StowageError('EDB', `${this.name}: a snapshot reads on one client, and one of its row streams is still open: read it to the end or destroy it first.`, {
          details: { source: this.name },
        });
      }
      if (stream) streaming = true;
      else queries++;
      let released = false;
      return {
        client,
        release: (isBroken: boolean) => {
          if (released) return;
          released = true;
          if (stream) streaming = false;
          else queries--;
          if (isBroken && broken === undefined) {
            broken = 'a query on its client was cut short (a row stream destroyed before its end, or an abort)';
            destroyClient(client);
          }
        },
      };
    };
    const ctx: PgReaderContext = {
      name: this.name,
      schema: this.schemaName,
      acquire,
      track: (s) => {
        streams.add(s);
        this.#track(s);
        s.once('close', () => streams.delete(s));
      },
    };
    let rejectAbort: (reason: unknown) => void = () => {};
    const aborted = new Promise<never>((_, reject) => (rejectAbort = reject));
    aborted.catch(() => {});
    const disposeAbort = onAbort(signal, (reason) => rejectAbort(reason));
    try {
      try {
        // The snapshot is taken by the first statement, not by BEGIN.
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1');
      } catch (err) {
        throw pgError(err, this.name, 'start a snapshot', signal);
      }
      throwIfAborted(signal);
      return await Promise.race([fn(new PgReader(ctx)), aborted]);
    } finally {
      disposeAbort();
      open = false;
      for (const s of streams) s.destroy();
      const busy = streaming || queries > 0;
      if (broken === undefined && !busy) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = 'ROLLBACK failed';
        }
      }
      lent.release(broken !== undefined || busy);
    }
  }

  /**
   * Creates `table` by running `ddl`, the text of {@link TableReader.schema} (see {@link TableSource.createTable}).
   *
   * Runs `ddl` (several statements are fine) in one transaction with the
   * source's schema first on the `search_path`: nothing is kept unless
   * `table` exists at the end.
   */
  async createTable(table: string, ddl: string, options: DbOptions = {}): Promise<void> {
    checkOptionKeys('PostgresSource.createTable', options, ['signal']);
    checkIdentifier('PostgresSource.createTable', 'table', table);
    if (typeof ddl !== 'string' || ddl.trim().length === 0) {
      throw new StowageError('EBAD_CONFIG', 'PostgresSource.createTable: ddl must be a non-empty string of SQL.', { details: { option: 'ddl' } });
    }
    const { signal } = options;
    throwIfAborted(signal);
    const lent = await this.#acquire(signal);
    const client = lent.client;
    let inTransaction = false;
    let broken = false;
    const disposeAbort = onAbort(signal, () => {
      broken = true;
      destroyClient(client);
    });
    try {
      await client.query('BEGIN');
      inTransaction = true;
      if (await this.#exists(client, table)) {
        throw new StowageError('EEXIST', `Table ${JSON.stringify(table)} already exists in ${this.name}.`, { details: { source: this.name, table } });
      }
      await client.query(ddl);
      if (!(await this.#exists(client, table))) {
        throw new StowageError('ENO_TABLE', `The DDL given to create ${JSON.stringify(table)} in ${this.name} did not create it (nothing was kept).`, { details: { source: this.name, table } });
      }
      throwIfAborted(signal);
      await client.query('COMMIT');
      inTransaction = false;
    } catch (err) {
      if (inTransaction && !broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw pgError(err, this.name, `create table ${JSON.stringify(table)}`, signal);
    } finally {
      disposeAbort();
      lent.release(broken);
    }
  }

  /**
   * Loads bulk text into an existing table through the engine's bulk path, all or nothing (see {@link TableSource.load}).
   *
   * `COPY ... (columns) FROM STDIN` in text format inside a transaction,
   * fed through a bulk text gate that checks every row (and rewrites `\Z`,
   * which COPY would read as `Z`). The load commits only if COPY stored
   * exactly the rows the input holds.
   */
  async load(table: string, input: Readable | AsyncIterable<Uint8Array>, options: LoadOptions = {}): Promise<LoadResult> {
    checkOptionKeys('PostgresSource.load', options, ['signal', 'onProgress', 'replaceRange']);
    checkIdentifier('PostgresSource.load', 'table', table);
    const stream = input instanceof Readable ? input : isAsyncIterable(input) ? Readable.from(input, { objectMode: false }) : undefined;
    if (stream === undefined) throw new StowageError('EBAD_CONFIG', 'PostgresSource.load: input must be a Readable or an async iterable of byte chunks.', { details: { option: 'input' } });
    const { signal, onProgress, replaceRange } = options;
    let bounds: { key: string; lo: bigint; hi: bigint } | undefined;
    try {
      if (replaceRange !== undefined) {
        checkOptionKeys('PostgresSource.load: replaceRange', replaceRange, ['key', 'lo', 'hi']);
        checkIdentifier('PostgresSource.load', 'replaceRange.key', replaceRange.key);
        const { lo, hi } = toKeyBounds('PostgresSource.load: replaceRange', replaceRange.lo, replaceRange.hi);
        if (lo === undefined || hi === undefined) throw new StowageError('EBAD_CONFIG', 'PostgresSource.load: replaceRange needs both lo and hi.', { details: { option: 'replaceRange' } });
        bounds = { key: replaceRange.key, lo, hi };
      }
      throwIfAborted(signal);
      this.#checkOpen();
    } catch (err) {
      stream.destroy();
      throw err;
    }
    const action = `load rows into ${JSON.stringify(table)}`;
    let lent: LentPgClient;
    try {
      lent = await this.#acquire(signal);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    const client = lent.client;
    let broken = false;
    let inTransaction = false;
    let graceTimer: NodeJS.Timeout | undefined;
    let gate: BulkTextGate | undefined;
    const disposeAbort = onAbort(signal, (reason) => {
      stream.destroy(reason as Error);
      // The COPY is failed (CopyFail) as the stream goes; if the server does
      // not answer (stuck on a lock), closing the client makes it roll back.
      graceTimer = setTimeout(() => {
        broken = true;
        destroyClient(client);
      }, ABORT_GRACE_MS);
      graceTimer.unref();
    });
    try {
      throwIfAborted(signal);
      const info = await pgTableInfo({ name: this.name, schema: this.schemaName }, client, table);
      const t = `${quotePgIdent(this.schemaName)}.${quotePgIdent(info.name)}`;
      let deleteSql: string | undefined;
      if (bounds !== undefined) {
        const k = quotePgIdent(pgKeyColumn(this.name, info, bounds.key).name);
        deleteSql = `DELETE FROM ${t} WHERE ${pgRangeCondition(k, bounds.lo, bounds.hi)}`;
      }
      const g = (gate = new BulkTextGate({ columns: info.columns.length, dialect: 'postgres' }));
      const tracker = new ProgressTracker('load', onProgress);
      let counted = 0;
      g.on('data', () => {
        tracker.add(g.bytes - tracker.bytesDone, g.rows - counted);
        counted = g.rows;
      });
      throwIfAborted(signal);
      await client.query('BEGIN');
      inTransaction = true;
      let deleted = 0;
      if (deleteSql !== undefined) deleted = (await client.query(deleteSql)).rowCount ?? 0;
      throwIfAborted(signal);
      const copy = client.query(copyFrom(`COPY ${t} (${info.columns.map((c) => quotePgIdent(c.name)).join(', ')}) FROM STDIN`));
      await pipeline(stream, g, copy);
      throwIfAborted(signal);
      if (copy.rowCount !== g.rows) {
        throw new StowageError('EDB', `${this.name}: cannot ${action}: COPY stored ${copy.rowCount} of ${g.rows} rows; nothing was kept.`, { details: { source: this.name, action, rows: g.rows, stored: copy.rowCount } });
      }
      await client.query('COMMIT');
      inTransaction = false;
      tracker.add(g.bytes - tracker.bytesDone, g.rows - counted);
      tracker.report(true);
      return Object.freeze({ rows: g.rows, bytes: g.bytes, deleted });
    } catch (err) {
      stream.destroy();
      gate?.destroy();
      if (inTransaction && !broken) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
      }
      throw pgError(err, this.name, action, signal);
    } finally {
      disposeAbort();
      clearTimeout(graceTimer);
      lent.release(broken);
    }
  }

  /** Closes every connection; further calls fail with EDB. Idempotent (see {@link TableSource.close}). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#streams) s.destroy();
    await this.#pool.end().catch(() => {});
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #track(s: Readable): void {
    this.#streams.add(s);
    s.once('close', () => this.#streams.delete(s));
  }

  /** A pooled client with the session set up. */
  async #acquire(signal: AbortSignal | undefined): Promise<LentPgClient> {
    this.#checkOpen();
    throwIfAborted(signal);
    let client: pg.PoolClient;
    try {
      const connecting = this.#pool.connect();
      client = await new Promise<pg.PoolClient>((resolve, reject) => {
        const dispose = onAbort(signal, reject);
        connecting.then(
          (c) => {
            dispose();
            if (signal?.aborted) {
              c.release();
              reject(signal.reason);
            } else {
              resolve(c);
            }
          },
          (err: unknown) => {
            dispose();
            reject(err);
          },
        );
      });
      if (!this.#inited.has(client)) {
        // A client whose socket dies while lent reports it as an 'error'
        // event; the query in flight gets the error too.
        client.on('error', () => {});
        try {
          await client.query(SESSION_SQL, [quotePgIdent(this.schemaName)]);
        } catch (err) {
          client.release(err as Error);
          throw err;
        }
        this.#inited.add(client);
      }
    } catch (err) {
      throw pgError(err, this.name, 'connect', signal);
    }
    let released = false;
    return {
      client,
      release: (broken) => {
        if (released) return;
        released = true;
        if (broken) {
          destroyClient(client);
          client.release(new Error('stowage: client closed after an interrupted operation'));
        } else {
          client.release();
        }
      },
    };
  }

  async #exists(client: pg.ClientBase, table: string): Promise<boolean> {
    const { rows } = await client.query("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')", [this.schemaName, table]);
    return rows.length > 0;
  }

  #checkOpen(): void {
    if (this.#closed) throw new StowageError('EDB', `${this.name} is closed.`, { details: { source: this.name } });
  }
}
