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
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { StowageError } from '../../errors.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkOptionKeys } from '../../util/options.js';
import { BulkTextGate } from '../bulk-gate.js';
import { KEY_PROBES, type KeyProbes } from '../key-probes.js';
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
  type DeferredIndexes,
  type KeyBound,
  type KeyRange,
  type LoadOptions,
  type LoadResult,
  pickColumns,
  type RowsOptions,
  type TableReader,
  type TableSource,
} from '../table-source.js';
import { PG_USED_TYPES_CTE, PgReader, pgError, pgKeyColumn, pgRangeCondition, pgTableInfo, quotePgIdent, type LentPgClient, type PgReaderContext } from './postgres-reader.js';


/**
 * What `createTable({ deferIndexes })` drops and puts back after loading:
 * primary key, unique and exclusion constraints (primary key first), then
 * the other indexes, then the CHECK constraints held `NOT VALID` (they
 * would refuse the older rows the source keeps under them), each as the
 * server describes it.
 */
const DEFERRABLE_INDEXES_SQL = `SELECT 'c' AS kind, conname AS name, pg_get_constraintdef(oid) AS def, CASE contype WHEN 'p' THEN 0 WHEN 'c' THEN 3 ELSE 1 END AS o FROM pg_constraint
WHERE conrelid = $1::oid AND (contype IN ('p', 'u', 'x') OR (contype = 'c' AND NOT convalidated))
UNION ALL
SELECT 'i', ic.relname, pg_get_indexdef(i.indexrelid), 2 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = $1::oid AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
ORDER BY o, name`;
/**
 * The CHECK constraints held NOT VALID of the domains the columns of table
 * `$1` use, where those domains were created in the same transaction as
 * the table (by the DDL of `schema()`): `createTable` with `deferIndexes`
 * takes them off while the rows load (COPY checks a domain's constraints on
 * every row, validated or not) and puts them back NOT VALID after.
 */
const DEFERRABLE_DOMAIN_CHECKS_SQL = `${PG_USED_TYPES_CTE}
SELECT DISTINCT t.typname AS domain, c.conname AS name, pg_get_constraintdef(c.oid) AS def
FROM dep d JOIN pg_type t ON t.oid = d.oid JOIN pg_constraint c ON c.contypid = t.oid
WHERE t.typtype = 'd' AND c.contype = 'c' AND NOT c.convalidated AND t.xmin = (SELECT xmin FROM pg_class WHERE oid = $1::oid)
ORDER BY 1, 2`;

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
  "set_config('lc_monetary', 'C', false), set_config('array_nulls', 'on', false), set_config('xmloption', 'content', false), " +
  // The DDL the server prints (defaults, checks) writes backslashes as standard strings do.
  "set_config('standard_conforming_strings', 'on', false), set_config('search_path', $1, false), " +
  // A table whose row-level security policies hide rows from this role fails every read and
  // write of it (42501), as pg_dump makes it, instead of being dumped, counted or replaced in part.
  "set_config('row_security', 'off', false)";

/** A PostgreSQL string literal (standard_conforming_strings is on in every session). */
function pgLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** `pg_constraint.confdeltype` of the foreign-key actions that change the referencing rows. */
const CHANGING_DELETE_ACTIONS: Record<string, string> = { c: 'ON DELETE CASCADE', n: 'ON DELETE SET NULL', d: 'ON DELETE SET DEFAULT' };

/**
 * Refuses (EDB) a `replaceRange` whose DELETE would reach into other
 * tables: rows of the range exist and a foreign key whose ON DELETE action
 * changes referencing rows (CASCADE, SET NULL, SET DEFAULT) points at the
 * table. PostgreSQL runs those actions whatever the session (only a
 * superuser's `session_replication_role` turns them off), and the rows
 * they delete or change in the other tables would not come back with the
 * reload. (MySQL sessions run with `foreign_key_checks = 0`, which skips
 * the actions; SQLite loads run with `foreign_keys = OFF`.) A key with
 * NO ACTION or RESTRICT needs nothing here: the DELETE fails on its own.
 *
 * @param client - inside the load's transaction
 * @param source - the source's name, for messages
 * @param action - what the load does, for messages
 * @param table - the quoted, schema-qualified table
 * @param inRange - the SQL condition of the range
 * @param bounds - the range
 * @param gone - more conditions on the rows deleted (` AND ...`, on the
 *   table as `d`): a merge deletes only the rows the load does not bring back
 */
async function refuseCascades(client: pg.Client, source: string, action: string, table: string, inRange: string, bounds: ReplaceBounds, gone = ''): Promise<void> {
  const refs = await client.query<{ conname: string; child: string; confdeltype: string }>(
    `SELECT c.conname, c.conrelid::regclass::text AS child, c.confdeltype FROM pg_catalog.pg_constraint c WHERE c.contype = 'f' AND c.confrelid = $1::regclass AND c.confdeltype IN ('c', 'n', 'd') ORDER BY c.conname`,
    [table],
  );
  if (refs.rows.length === 0) return;
  const holds = await client.query(`SELECT 1 FROM ONLY ${table} AS d WHERE ${inRange}${gone} LIMIT 1`);
  if ((holds.rowCount ?? 0) === 0) return;
  const list = refs.rows.map((r) => `${r.child} (${r.conname}, ${CHANGING_DELETE_ACTIONS[r.confdeltype] ?? r.confdeltype})`).join(', ');
  throw new StowageError(
    'EDB',
    `${source}: cannot ${action}: replacing its rows in [${bounds.lo}, ${bounds.hi}] would delete or change rows of ${list} through their foreign keys, which the reload would not bring back; nothing was loaded. Drop those constraints for the restore and add them back after it, or restore into an empty table.`,
    { details: { source, action, references: refs.rows.map((r) => ({ table: r.child, constraint: r.conname, onDelete: CHANGING_DELETE_ACTIONS[r.confdeltype] ?? r.confdeltype })) } },
  );
}

/** The temporary table a merging load copies its rows into (dropped at the end of the transaction), and its name in pg_temp. */
const MERGE_TABLE_NAME = 'stowage_merge';
const MERGE_TABLE = `pg_temp.${MERGE_TABLE_NAME}`;

/**
 * Whether a `replaceRange` load merges its rows into the range instead of
 * deleting the range first: where other tables' foreign keys point at the
 * table and the range holds rows, a DELETE of rows that come straight back
 * would fail (NO ACTION, RESTRICT) or reach into those tables (CASCADE,
 * SET NULL). A merge updates the rows that come back in place, inserts the
 * new ones and deletes only the rows that do not come back, so the keys
 * children refer to never go away. It needs a unique index on exactly the
 * key column, checked at once (`ON CONFLICT` cannot use a DEFERRABLE one),
 * and no loaded column other than the key that is `GENERATED ALWAYS AS
 * IDENTITY` (which UPDATE cannot set); otherwise the load deletes first,
 * as for any other table.
 *
 * @param client - inside the load's transaction
 * @param table - the quoted, schema-qualified table
 * @param oid - its oid
 * @param key - the key column's name
 * @param columns - the columns loaded
 * @param inRange - the SQL condition of the range
 * @returns whether the key loaded is GENERATED ALWAYS (the INSERT then
 *   says OVERRIDING SYSTEM VALUE) and how many rows the range holds (what
 *   the load replaces); undefined to delete first
 */
async function mergesInto(client: pg.Client, table: string, oid: string, key: string, columns: readonly string[], inRange: string): Promise<{ always: boolean; held: number } | undefined> {
  if (!columns.includes(key)) return undefined;
  const { rows } = await client.query<{ referenced: boolean; unique: boolean; always: string[] }>(
    `SELECT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = $1::oid) AS referenced,
  EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = $1::oid AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = $2) AS unique,
  ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped AND attidentity = 'a') AS always`,
    [oid, key],
  );
  const r = rows[0]!;
  if (!r.referenced || !r.unique || r.always.some((c) => c !== key && columns.includes(c))) return undefined;
  const held = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ONLY ${table} WHERE ${inRange}`)).rows[0]!.n);
  if (held === 0) return undefined;
  return { always: r.always.some((c) => columns.includes(c)), held };
}

/** How long an aborted load waits for the server to end the COPY before the client is closed. */
const ABORT_GRACE_MS = 2000;

function badConfig(message: string, option: string): StowageError {
  return sourceBadConfig('PostgresSource', message, option);
}

function parseUri(uri: string): PostgresConnectionConfig {
  return parseServerUri('PostgresSource', uri, ['postgres', 'postgresql'], true);
}

/** Closes a client at once: the server notices the socket go and ends its backend. */
function destroyClient(client: pg.ClientBase): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
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
    const { config, poolSize, connectTimeout } = checkServerConnection('PostgresSource', connection, options, { config: CONFIG_KEYS, options: OPTION_KEYS }, parseUri, 'postgres');
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
   * identity columns with their sequence's options (START WITH, INCREMENT
   * BY, bounds, CACHE, CYCLE), generated columns, NOT NULL; the primary
   * key, unique, check and exclusion constraints; the other indexes; the
   * sequences that `serial` columns own (created, then `OWNED BY` the
   * column); UNLOGGED.
   * Names in the source's schema are left unqualified, so the DDL creates
   * the table in the target's schema.
   *
   * Not carried: foreign keys (they name other tables; add them after a
   * restore), the current value of sequences ({@link advanceSequences}
   * moves them past the rows after a restore), the name of an identity
   * column's sequence, storage parameters, tablespaces, comments, grants,
   * row security policies, triggers. The enum types and domains of the
   * source's schema that the columns use come first, each created where the
   * target's schema lacks it; other types and collations must exist in the
   * target.
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
   * The stream holds a pooled client until it ends or is destroyed;
   * destroyed early, the client is closed (which ends the COPY).
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
   * One client in `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`, its
   * snapshot taken at once. The reader reads one stream at a time on that
   * client: a call made while one of its row streams is still open fails
   * with EDB (read or destroy the stream first); calls may overlap, and
   * their queries then take turns on the client. A
   * stream destroyed before its end closes the client, and the snapshot
   * with it: later calls fail with EDB.
   */
  async snapshot<T>(fn: (reader: TableReader) => Promise<T>, options: DbOptions = {}): Promise<T> {
    checkSnapshotArgs('PostgresSource.snapshot', fn, options);
    const { signal } = options;
    throwIfAborted(signal);
    const lent = await this.#acquire(signal);
    const client = lent.client;
    const lease = new SnapshotLease({ name: this.name, unit: 'client', destroy: () => destroyClient(client), track: (s) => this.#track(s) });
    // Calls of the reader may overlap, but one pg client runs one query at
    // a time: pg queues a query sent while another runs, which it
    // deprecates (pg 9 refuses it). So they take turns here. The lease is
    // taken first, so a call made while a row stream is open still fails at
    // once instead of waiting for a stream that its caller may never read.
    let turn: Promise<void> = Promise.resolve();
    const ctx: PgReaderContext = {
      name: this.name,
      schema: this.schemaName,
      acquire: async (_signal: AbortSignal | undefined, stream: boolean): Promise<LentPgClient> => {
        const release = lease.lend(stream);
        const previous = turn;
        let done!: () => void;
        turn = new Promise<void>((resolve) => (done = resolve));
        await previous;
        return {
          client,
          release: (broken: boolean) => {
            release(broken);
            done();
          },
        };
      },
      track: (s) => lease.track(s),
    };
    return runSnapshot(
      signal,
      async () => {
        try {
          // The snapshot is taken by the first statement, not by BEGIN.
          await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1');
        } catch (err) {
          throw pgError(err, this.name, 'start a snapshot', signal);
        }
        throwIfAborted(signal);
      },
      fn,
      () => new PgReader(ctx),
      async () => lent.release(await lease.end(() => client.query('ROLLBACK'))),
    );
  }

  /**
   * Creates `table` by running `ddl`, the text of {@link TableReader.schema} (see {@link TableSource.createTable}).
   *
   * Runs `ddl` (several statements are fine) in one transaction with the
   * source's schema first on the `search_path`: nothing is kept unless
   * `table` exists at the end. DDL naming a type, domain, function or
   * schema this database lacks fails with EDB saying to create them first
   * (the text of `schema()` creates the enum types and domains of the
   * source's schema that the columns use, where they are missing; not
   * other types, functions or schemas).
   *
   * With `deferIndexes`, the same transaction then drops the table's
   * primary key, unique and exclusion constraints, its other indexes and
   * its `NOT VALID` checks (added back `NOT VALID`, they leave the loaded
   * rows unchecked, as in the source; so are the `NOT VALID` checks of the
   * domains its columns use that `ddl` created, since COPY checks a
   * domain's constraints on every row), as the server itself describes them
   * (`pg_get_constraintdef`, `pg_get_indexdef`), and the call resolves to
   * the statements that put them back, run by {@link DeferredIndexes.build}
   * once the rows are loaded. Those statements end by moving the sequences
   * of the table's integer serial and identity columns up to the largest
   * value loaded, so that its next INSERT does not take a key its rows
   * hold: only ascending sequences, never below their start or last value
   * nor past their bounds (a descending one is left as it is). If an index
   * cannot be dropped (another object depends on it), the table is kept
   * whole, and the call resolves to the sequence statements alone, or to
   * undefined when there are none; so it does for a table with nothing to
   * defer and no such sequence.
   */
  async createTable(table: string, ddl: string, options: CreateTableOptions = {}): Promise<DeferredIndexes | undefined> {
    checkCreateTableArgs('PostgresSource.createTable', table, ddl, options);
    return this.#inTransaction(`create table ${JSON.stringify(table)}`, options.signal, async (client) => {
      const before = await this.#likeNamed(client, table);
      if (before.includes(table)) {
        throw tableExistsError(this.name, table);
      }
      try {
        await client.query(ddl);
      } catch (err) {
        throw missingObjectError(err, this.name, table);
      }
      // The table the DDL made: `table` itself, or the one new table whose
      // name differs in case only (CREATE TABLE CalibPmtSpec makes calibpmtspec).
      const after = await this.#likeNamed(client, table);
      const made = after.filter((n) => !before.includes(n));
      if (!after.includes(table) && made.length !== 1) {
        throw new StowageError('ENO_TABLE', `The DDL given to create ${JSON.stringify(table)} in ${this.name} did not create it (nothing was kept).`, { details: { source: this.name, table } });
      }
      return options.deferIndexes === true ? this.#deferIndexes(client, table) : undefined;
    });
  }

  /**
   * Loads bulk text into an existing table through the engine's bulk path, all or nothing (see {@link TableSource.load}).
   *
   * `COPY ... (columns) FROM STDIN` in text format inside a transaction,
   * fed through a bulk text gate that checks every row (and rewrites `\Z`,
   * which COPY would read as `Z`). The load commits only if COPY stored
   * exactly the rows the input holds.
   *
   * `replaceRange` deletes the range first, unless other tables' foreign
   * keys point at the table, the range holds rows and the key column has a
   * unique index of its own: then the rows are copied into a temporary
   * table and merged (`INSERT ... ON CONFLICT (key) DO UPDATE`, after a
   * DELETE of only the range's rows that do not come back), so the keys
   * the other tables refer to never go away and their ON DELETE actions do
   * not fire for rows that stay. A row that does go while another table
   * still refers to it fails as any DELETE would (NO ACTION, RESTRICT), and
   * one whose going would CASCADE, SET NULL or SET DEFAULT is refused
   * (EDB), nothing loaded. Not merged (deleted first, as before): a loaded
   * column other than the key that is `GENERATED ALWAYS AS IDENTITY`.
   */
  async load(table: string, input: Readable | AsyncIterable<Uint8Array>, options: LoadOptions = {}): Promise<LoadResult> {
    checkOptionKeys('PostgresSource.load', options, ['signal', 'onProgress', 'replaceRange', 'columns']);
    checkIdentifier('PostgresSource.load', 'table', table);
    const stream = toLoadStream('PostgresSource.load', input);
    const { signal, onProgress, replaceRange } = options;
    let bounds: ReplaceBounds | undefined;
    let names: readonly string[] | undefined;
    try {
      bounds = checkReplaceRange('PostgresSource.load', replaceRange);
      names = checkColumnNames('PostgresSource.load', options.columns);
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
    let gate: BulkTextGate | undefined;
    // The COPY is failed (CopyFail) as the stream goes; if the server does
    // not answer (stuck on a lock), closing the client makes it roll back.
    const disposeAbort = armLoadAbort(signal, stream, ABORT_GRACE_MS, () => {
      broken = true;
      destroyClient(client);
    });
    try {
      throwIfAborted(signal);
      // BEGIN is sent with the table's lookup, not a round trip of its own
      // before it: pg sends a queued query as soon as the server answered
      // the one before. The lookup then reads the catalog in the transaction.
      const begun = client.query('BEGIN');
      inTransaction = true;
      const [, info] = await Promise.all([begun, pgTableInfo({ name: this.name, schema: this.schemaName }, client, table)]);
      const t = `${quotePgIdent(this.schemaName)}.${quotePgIdent(info.name)}`;
      let inRange: string | undefined;
      let keyName: string | undefined;
      if (bounds !== undefined) {
        keyName = pgKeyColumn(this.name, info, bounds.key).name;
        inRange = pgRangeCondition(quotePgIdent(keyName), bounds.lo, bounds.hi);
      }
      const { columns } = pickColumns(this.name, info.name, info.columns, names);
      const g = (gate = new BulkTextGate({ columns: columns.length, dialect: 'postgres' }));
      const finishProgress = trackLoad(g, onProgress);
      throwIfAborted(signal);
      let deleted = 0;
      const quoted = columns.map((c) => quotePgIdent(c.name));
      const list = quoted.join(', ');
      const merge = inRange === undefined ? undefined : await mergesInto(client, t, info.oid, keyName!, columns.map((c) => c.name), inRange);
      if (merge !== undefined) {
        await client.query(`CREATE TEMP TABLE ${MERGE_TABLE_NAME} ON COMMIT DROP AS SELECT ${list} FROM ONLY ${t} WITH NO DATA`);
      } else if (inRange !== undefined) {
        await refuseCascades(client, this.name, action, t, inRange, bounds!);
        // ONLY: the rows of tables inheriting from this one are theirs, not this range's.
        deleted = (await client.query(`DELETE FROM ONLY ${t} WHERE ${inRange}`)).rowCount ?? 0;
      }
      throwIfAborted(signal);
      const copy = client.query(copyFrom(`COPY ${merge === undefined ? t : MERGE_TABLE} (${list}) FROM STDIN`));
      await pipeline(stream, g, copy);
      throwIfAborted(signal);
      if (copy.rowCount !== g.rows) {
        throw new StowageError('EDB', `${this.name}: cannot ${action}: COPY stored ${copy.rowCount} of ${g.rows} rows; nothing was kept.`, { details: { source: this.name, action, rows: g.rows, stored: copy.rowCount } });
      }
      if (merge !== undefined) {
        // The rows that do not come back go (their foreign keys act as on any DELETE); the others are updated in place, so the keys children refer to stay.
        const k = quotePgIdent(keyName!);
        const gone = ` AND NOT EXISTS (SELECT 1 FROM ${MERGE_TABLE} m WHERE m.${k} = d.${k})`;
        await refuseCascades(client, this.name, action, t, inRange!, bounds!, gone);
        deleted = merge.held;
        await client.query(`DELETE FROM ONLY ${t} AS d WHERE ${inRange!}${gone}`);
        const rest = quoted.filter((c) => c !== k);
        const onConflict = rest.length === 0 ? 'DO NOTHING' : `DO UPDATE SET (${rest.join(', ')}) = ROW(${rest.map((c) => `EXCLUDED.${c}`).join(', ')})`;
        await client.query(`INSERT INTO ${t} (${list})${merge.always ? ' OVERRIDING SYSTEM VALUE' : ''} SELECT ${list} FROM ${MERGE_TABLE} ON CONFLICT (${k}) ${onConflict}`);
      }
      await client.query('COMMIT');
      inTransaction = false;
      finishProgress();
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
      client = await awaitPooled(this.#pool.connect(), signal, (c) => c.release());
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
    return {
      client,
      release: releaseOnce((broken) => {
        if (broken) {
          destroyClient(client);
          client.release(new Error('stowage: client closed after an interrupted operation'));
        } else {
          client.release();
        }
      }),
    };
  }

  /**
   * Moves the sequences of `table`'s integer serial and identity columns
   * up to the largest value the column holds, so that the next INSERT
   * takes a key no row has (see {@link TableSource.advanceSequences}); one
   * transaction. Only ever up, only ascending sequences, and only to a
   * value the sequence can take: a sequence already past the rows, a
   * descending one, or rows whose largest key lies outside the sequence's
   * bounds (0, negative keys) leave it as it is. Resolves to the sequences
   * moved (schema-qualified as `pg_get_serial_sequence` names them).
   * ENO_TABLE if there is no such table.
   */
  async advanceSequences(table: string, options: DbOptions = {}): Promise<string[]> {
    checkOptionKeys('PostgresSource.advanceSequences', options, ['signal']);
    checkIdentifier('PostgresSource.advanceSequences', 'table', table);
    this.#checkOpen();
    return this.#inTransaction(`move the sequences of ${JSON.stringify(table)}`, options.signal, async (client) => {
      const info = await pgTableInfo({ name: this.name, schema: this.schemaName }, client, table);
      const t = `${quotePgIdent(this.schemaName)}.${quotePgIdent(info.name)}`;
      const moved: string[] = [];
      for (const sql of await this.#sequenceAdvances(client, info.oid, t)) {
        throwIfAborted(options.signal);
        const { rows } = await client.query<{ seq: string }>(sql);
        if (rows.length > 0) moved.push(rows[0]!.seq);
      }
      return moved;
    });
  }

  /**
   * The parent tables of `table`'s foreign keys in the source's schema (see
   * {@link TableSource.references}): COPY checks every row against them.
   * The table itself is among them when a key refers to its own rows; a
   * key onto another schema's table is left out (it is not restored here).
   */
  async references(table: string, options: DbOptions = {}): Promise<string[]> {
    checkOptionKeys('PostgresSource.references', options, ['signal']);
    checkIdentifier('PostgresSource.references', 'table', table);
    this.#checkOpen();
    return this.#inTransaction(`read the foreign keys of ${JSON.stringify(table)}`, options.signal, async (client) => {
      const info = await pgTableInfo({ name: this.name, schema: this.schemaName }, client, table);
      const { rows } = await client.query<{ name: string }>(
        `SELECT DISTINCT p.relname AS name FROM pg_constraint c JOIN pg_class p ON p.oid = c.confrelid JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE c.contype = 'f' AND c.conrelid = $1::oid AND n.nspname = $2`,
        [info.oid, this.schemaName],
      );
      return rows.map((r) => r.name).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    });
  }

  /**
   * The statements that move the sequences of `t`'s serial and identity
   * columns past the rows it holds (only ever up): a restored table's
   * first INSERT would otherwise take a key its rows already hold.
   * Integer columns and ascending sequences only, and only to a value the
   * sequence can take (never below its start or last value, never past its
   * bounds), so that a statement cannot fail. Each returns one row (the
   * sequence) if it moved it, none where it is at the largest key already
   * or past it.
   */
  async #sequenceAdvances(client: pg.ClientBase, oid: string, t: string): Promise<string[]> {
    const { rows: seqs } = await client.query<{ col: string; seq: string }>(
      `SELECT a.attname AS col, s.seq FROM pg_attribute a CROSS JOIN LATERAL (SELECT pg_get_serial_sequence($2, a.attname) AS seq) s
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) AND s.seq IS NOT NULL ORDER BY a.attnum`,
      [oid, t],
    );
    return seqs.map((q) => {
      const seq = `${pgLiteral(q.seq)}::regclass`;
      return (
        `SELECT ${pgLiteral(q.seq)} AS seq, setval(${seq}, x.m) FROM (SELECT max(${quotePgIdent(q.col)})::int8 AS m FROM ${t}) x, pg_sequence p ` +
        `WHERE p.seqrelid = ${seq} AND p.seqincrement > 0 AND x.m BETWEEN greatest(p.seqmin, p.seqstart) AND p.seqmax ` +
        `AND (pg_sequence_last_value(${seq}) IS NULL OR x.m > pg_sequence_last_value(${seq}))`
      );
    });
  }

  /** Drops what {@link createTable} defers, in its transaction; the statements that put it back, or undefined. */
  async #deferIndexes(client: pg.ClientBase, table: string): Promise<DeferredIndexes | undefined> {
    const info = await pgTableInfo({ name: this.name, schema: this.schemaName }, client, table);
    const { rows } = await client.query<{ kind: 'c' | 'i'; name: string; def: string }>(DEFERRABLE_INDEXES_SQL, [info.oid]);
    const t = `${quotePgIdent(this.schemaName)}.${quotePgIdent(info.name)}`;
    const advance = await this.#sequenceAdvances(client, info.oid, t);
    const { rows: domainChecks } = await client.query<{ domain: string; name: string; def: string }>(DEFERRABLE_DOMAIN_CHECKS_SQL, [info.oid]);
    if (rows.length === 0 && advance.length === 0 && domainChecks.length === 0) return undefined;
    const domainOf = (d: { domain: string }): string => `${quotePgIdent(this.schemaName)}.${quotePgIdent(d.domain)}`;
    await client.query('SAVEPOINT stowage_defer_indexes');
    try {
      for (const r of [...rows].reverse()) {
        await client.query(r.kind === 'c' ? `ALTER TABLE ${t} DROP CONSTRAINT ${quotePgIdent(r.name)}` : `DROP INDEX ${quotePgIdent(this.schemaName)}.${quotePgIdent(r.name)}`);
      }
      for (const d of domainChecks) await client.query(`ALTER DOMAIN ${domainOf(d)} DROP CONSTRAINT ${quotePgIdent(d.name)}`);
      await client.query('RELEASE SAVEPOINT stowage_defer_indexes');
    } catch {
      // Something depends on one of them: keep the table whole (its sequences still move on after the rows).
      await client.query('ROLLBACK TO SAVEPOINT stowage_defer_indexes');
      rows.length = 0;
      domainChecks.length = 0;
      if (advance.length === 0) return undefined;
    }
    // The domains' checks come back NOT VALID (their definitions say so) whether the table is built or dropped.
    const domainAdds = domainChecks.map((d) => `ALTER DOMAIN ${domainOf(d)} ADD CONSTRAINT ${quotePgIdent(d.name)} ${d.def}`);
    const statements = Object.freeze([...rows.map((r) => (r.kind === 'c' ? `ALTER TABLE ${t} ADD CONSTRAINT ${quotePgIdent(r.name)} ${r.def}` : r.def)), ...domainAdds, ...advance]);
    const name = info.name;
    return Object.freeze({
      table: name,
      statements,
      build: (options: DbOptions = {}) => this.#run(`build the indexes of ${JSON.stringify(name)}`, statements, options),
      discard: () => this.#run(`drop ${JSON.stringify(name)}`, [`DROP TABLE ${t}`, ...domainAdds], {}),
    });
  }

  /** Runs `statements` in one transaction on a pooled client. */
  async #run(action: string, statements: readonly string[], options: DbOptions): Promise<void> {
    checkOptionKeys(`PostgresSource: ${action}`, options, ['signal']);
    this.#checkOpen();
    await this.#inTransaction(action, options.signal, async (client) => {
      for (const sql of statements) {
        throwIfAborted(options.signal);
        await client.query(sql);
      }
    });
  }

  /**
   * Runs `fn` in a transaction on a pooled client: COMMIT if it resolves
   * (and no abort came), ROLLBACK if it throws; an abort closes the client,
   * which makes the server roll back. Errors become {@link pgError}s of
   * `action`.
   */
  async #inTransaction<T>(action: string, signal: AbortSignal | undefined, fn: (client: LentPgClient['client']) => Promise<T>): Promise<T> {
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
      const result = await fn(client);
      throwIfAborted(signal);
      await client.query('COMMIT');
      inTransaction = false;
      return result;
    } catch (err) {
      if (inTransaction && !broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw pgError(err, this.name, action, signal);
    } finally {
      disposeAbort();
      lent.release(broken);
    }
  }

  /** The tables of the schema whose names equal `table` but for letter case. */
  async #likeNamed(client: pg.ClientBase, table: string): Promise<string[]> {
    const { rows } = await client.query<{ relname: string }>(
      "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND lower(c.relname) = lower($2) AND c.relkind IN ('r', 'p')",
      [this.schemaName, table],
    );
    return rows.map((r) => r.relname);
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError(this.name);
  }
}

/**
 * SQLSTATEs of DDL naming an object the database lacks: undefined_object
 * (a type, domain or collation), undefined_function, invalid_schema_name,
 * undefined_table (a sequence a DEFAULT takes its values from, shared with
 * other tables, so not created with this one).
 */
const MISSING_OBJECT_SQLSTATES: ReadonlySet<string> = new Set(['42704', '42883', '3F000', '42P01']);

/**
 * A CREATE TABLE that names an object the target lacks (a type of another
 * schema, an extension's, a function in a default or check, a schema):
 * the archives carry the table's DDL and the enum types and domains of its
 * own schema, not the rest. EDB saying so and what to do; other failures
 * as they are (pgError).
 */
function missingObjectError(err: unknown, source: string, table: string): unknown {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !MISSING_OBJECT_SQLSTATES.has(code)) return err;
  const plain = pgError(err, source, `create table ${JSON.stringify(table)}`) as StowageError;
  return new StowageError(
    'EDB',
    `${plain.message}. The DDL names an object this database lacks, such as a type, function, operator, collation, sequence or schema (partition archives carry a table's DDL with the enum types and domains of its schema, not other objects it uses): create those here first (\`pg_dump --schema-only\` of the source holds them), then run again; nothing was created.`,
    { details: plain.details, cause: err },
  );
}
