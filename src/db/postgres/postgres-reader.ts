/**
 * The read side of PostgresSource over pg clients: table metadata from the
 * system catalogs, key ranges, and rows streamed with `COPY (SELECT ...) TO
 * STDOUT` through pg-copy-streams.
 *
 * COPY's text format is the bulk text format, so its bytes are passed on
 * untouched: no row is parsed or re-encoded in JavaScript. Each value's
 * text is PostgreSQL's own output under the session settings every
 * connection gets (`TimeZone = UTC`, `DateStyle = ISO, YMD`,
 * `IntervalStyle = postgres`, `extra_float_digits = 1`, `bytea_output =
 * hex`, `client_encoding = UTF8`), which reads back to the same value. COPY
 * writes the control characters backspace, form feed and vertical tab as
 * `\b`, `\f` and `\v`, escapes the bulk text format reads (see
 * `bulk-text.ts`); text cannot hold NUL in PostgreSQL, so `\0` never occurs.
 *
 * Backpressure: the COPY stream stops reading the client's socket when its
 * consumer stops reading, so the server waits in TCP buffers.
 *
 * @module
 */
import { Readable } from 'node:stream';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { StowageError } from '../../errors.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkOptionKeys } from '../../util/options.js';
import type { RangeDigest } from '../range-digest.js';
import { checkKeyArgs, checkNextKeyArgs, checkNextKeysArgs, withLent } from '../source-common.js';
import type { KeyBounds } from '../key-probes.js';
import {
  INT64_MAX,
  INT64_MIN,
  checkColumnNames,
  checkIdentifier,
  digestRangeOf,
  findColumn,
  noSuchTable,
  notATable,
  pickColumns,
  toKeyBounds,
  type ColumnInfo,
  type DbOptions,
  type DigestRangeOptions,
  type KeyBound,
  type KeyRange,
  type RowsOptions,
  type TableReader,
} from '../table-source.js';

/**
 * Quotes a PostgreSQL identifier: double quotes around it, each double
 * quote inside doubled. EBAD_CONFIG for an empty name or one holding NUL.
 *
 * @param name - a schema, table or column name
 * @example
 * ```ts
 * quotePgIdent('we"ird tab`le'); // '"we""ird tab`le"'
 * ```
 */
export function quotePgIdent(name: string): string {
  checkIdentifier('quotePgIdent', 'identifier', name);
  return `"${name.replaceAll('"', '""')}"`;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ENOENT']);
const CONNECT_SQLSTATES = /^(08|57P0[123])/;
const AUTH_SQLSTATES = new Set(['28000', '28P01']);

/**
 * Wraps a pg error as a StowageError with the driver's error as `cause`
 * and its SQLSTATE (`code`) in `details`: ECONNECT when the server cannot
 * be reached or the connection was lost (also SQLSTATE class 08 and
 * 57P01-03), EAUTH when it refused the login (28000, 28P01), ETIMEOUT for a
 * connect timeout, EDB otherwise. StowageErrors pass through; with an
 * aborted `signal`, its reason is returned instead.
 *
 * @param err - the caught error
 * @param source - the source's name
 * @param action - what was being done ("read rows of T")
 * @param signal - the operation's signal
 */
export function pgError(err: unknown, source: string, action: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof StowageError) return err;
  const e = err as { code?: unknown; message?: string; severity?: string; detail?: string; hint?: string; position?: string } | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = e?.message || String(err);
  const details = { source, action, driverCode: code, sqlState: code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? code : undefined, detail: e?.detail, hint: e?.hint };
  const suffix = e?.detail ? ` (${e.detail})` : '';
  if (/timeout expired|connection timeout|timeout exceeded when trying to connect/i.test(message)) return new StowageError('ETIMEOUT', `${source}: cannot ${action}: ${message}.`, { details, cause: err });
  if ((code !== undefined && (CONNECT_CODES.has(code) || CONNECT_SQLSTATES.test(code))) || /Connection terminated|connection is closed|Client has encountered a connection error/i.test(message)) {
    return new StowageError('ECONNECT', `${source}: cannot ${action}: the PostgreSQL server cannot be reached or closed the connection (${code !== undefined ? `${code}: ` : ''}${message}).`, { details, cause: err });
  }
  if (code !== undefined && AUTH_SQLSTATES.has(code)) return new StowageError('EAUTH', `${source}: cannot ${action}: the PostgreSQL server refused the login (${message}).`, { details, cause: err });
  if (code === '42501' && /row-level security/i.test(message)) {
    return new StowageError(
      'EDB',
      `${source}: cannot ${action}: ${message}. Row-level security applies to this role on that table, so what it reads or replaces could be part of the table only, and stowage refuses that (as pg_dump does). Connect as the table's owner (when the table does not FORCE row-level security), a superuser, or a role with BYPASSRLS; this call read and changed nothing.`,
      { details, cause: err },
    );
  }
  return new StowageError('EDB', `${source}: cannot ${action}: ${message}${suffix}`, { details, cause: err });
}

/** A client lent for one operation: `release` is called once. */
export interface LentPgClient {
  /** The client. */
  readonly client: pg.PoolClient | pg.Client;
  /**
   * Gives it back.
   *
   * @param broken - the client is in an unknown state (a COPY or query was
   *   cut short): close it instead of reusing it
   */
  release(broken: boolean): void;
}

/** How a reader gets its clients. */
export interface PgReaderContext {
  /** The source's name, for messages. */
  readonly name: string;
  /** The schema the source works in. */
  readonly schema: string;
  /**
   * A client for one operation.
   *
   * @param signal - the operation's signal
   * @param stream - for a row stream (it holds the client until it ends), not a query
   */
  acquire(signal: AbortSignal | undefined, stream: boolean): Promise<LentPgClient>;
  /** Called with each stream opened, so its owner can destroy it on close. */
  track(stream: Readable): void;
}

/** A table as the reader resolved it. */
export interface PgTableInfo {
  /** The table's oid (as text). */
  readonly oid: string;
  /** The table's name as stored. */
  readonly name: string;
  /** Stored columns in table order (generated columns left out). */
  readonly columns: ColumnInfo[];
  /** Per column: the type's oid. */
  readonly typeOids: number[];
}

/** int2, int4, int8 */
const INTEGER_OIDS = new Set([21, 23, 20]);

const TABLE_INFO_SQL = `SELECT c.oid::int8::text AS oid, c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, a.atttypid::int4 AS typid, a.attgenerated <> '' AS generated,
  coalesce((SELECT k.n FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(att, n) WHERE i.indrelid = c.oid AND i.indisprimary AND k.att = a.attnum), 0)::int4 AS pk
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind = 'r' AND (c.relname = $2 OR lower(c.relname) = lower($2))
ORDER BY c.relname, a.attnum`;

interface TableInfoRow {
  oid: string;
  relname: string;
  attname: string;
  type: string;
  attnotnull: boolean;
  typid: number;
  generated: boolean;
  pk: number;
}

/**
 * Resolves a table name in the source's schema (exactly, else
 * case-insensitively when one table matches that way, as an unquoted name
 * would) and reads its stored columns; ENO_TABLE if there is no such table.
 *
 * @param ctx - the reader context (source name and schema)
 * @param client - the client
 * @param table - the table asked for
 */
export async function pgTableInfo(ctx: { name: string; schema: string }, client: pg.ClientBase, table: string): Promise<PgTableInfo> {
  const { rows } = await client.query<TableInfoRow>(TABLE_INFO_SQL, [ctx.schema, table]);
  const names = [...new Set(rows.map((r) => r.relname))];
  const name = names.includes(table) ? table : names.length === 1 ? names[0]! : undefined;
  if (name === undefined) throw names.length === 0 ? await pgNotATable(ctx, client, table) : noSuchTable(ctx.name, table);
  const columns: ColumnInfo[] = [];
  const typeOids: number[] = [];
  let oid = '';
  for (const r of rows) {
    if (r.relname !== name || r.generated) continue;
    oid = r.oid;
    columns.push(Object.freeze({ name: r.attname, type: r.type, nullable: !r.attnotnull, primaryKey: r.pk }));
    typeOids.push(r.typid);
  }
  if (columns.length === 0) throw noSuchTable(ctx.name, table);
  return { oid, name, columns, typeOids };
}

/**
 * ENO_TABLE for a name that is no ordinary table of the schema: saying what
 * it is where it is a view, a partitioned table, a foreign table or a
 * sequence, else that it does not exist.
 */
async function pgNotATable(ctx: { name: string; schema: string }, client: pg.ClientBase, table: string): Promise<StowageError> {
  const { rows } = await client.query<{ relname: string; relkind: string }>(
    'SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND (c.relname = $2 OR lower(c.relname) = lower($2)) ORDER BY c.relname = $2 DESC',
    [ctx.schema, table],
  );
  const kind = rows.length === 1 || rows[0]?.relname === table ? rows[0]?.relkind : undefined;
  switch (kind) {
    case 'v':
    case 'm':
      return notATable(ctx.name, table, kind === 'v' ? 'a view' : 'a materialized view', "partition archives hold the rows of tables; dump the tables it reads, and keep its definition with the database's setup scripts.");
    case 'p':
      return notATable(ctx.name, table, 'a partitioned table', 'its rows are held by its partitions: dump each of them (tables() lists them), and create the partitioned table on the target before restoring them into it.');
    case 'f':
      return notATable(ctx.name, table, 'a foreign table', 'its rows live in another server: back that one up.');
    case 'S':
      return notATable(ctx.name, table, 'a sequence', "partition archives hold the rows of tables; a table's serial and identity sequences are moved past its rows on restore.");
    default:
      return noSuchTable(ctx.name, table);
  }
}

/**
 * Finds the key column and checks that it is an integer column (smallint,
 * integer or bigint; EBAD_CONFIG otherwise).
 *
 * @param source - the source's name
 * @param info - the resolved table
 * @param key - the key column asked for
 */
export function pgKeyColumn(source: string, info: PgTableInfo, key: string): ColumnInfo {
  const { column, index } = findColumn(source, info.name, info.columns, key);
  if (!INTEGER_OIDS.has(info.typeOids[index]!)) {
    throw new StowageError('EBAD_CONFIG', `Key column ${JSON.stringify(column.name)} of table ${JSON.stringify(info.name)} in ${source} is ${column.type}, not an integer column: choose an integer key.`, {
      details: { source, table: info.name, option: 'key', key: column.name, type: column.type },
    });
  }
  return column;
}

/** A bigint bound as an int8 literal (digits only: it comes from a validated bigint). */
const int8 = (v: bigint): string => `'${v}'::int8`;

/** A key as the server sent it (`::text`), or null. */
function keyOf(v: string | null | undefined): bigint | null {
  return v === null || v === undefined ? null : BigInt(v);
}

/**
 * The condition selecting a key range: bounds clamped to int64 (the widest
 * integer PostgreSQL has) and written as int8 literals, so the key's index
 * is used; never a NULL key.
 *
 * @param key - the quoted key column
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 */
export function pgRangeCondition(key: string, lo: bigint | undefined, hi: bigint | undefined): string {
  if ((lo !== undefined && lo > INT64_MAX) || (hi !== undefined && hi < INT64_MIN)) return 'false';
  const l = lo !== undefined && lo > INT64_MIN ? lo : undefined;
  const h = hi !== undefined && hi < INT64_MAX ? hi : undefined;
  if (l !== undefined && h !== undefined) return `${key} BETWEEN ${int8(l)} AND ${int8(h)}`;
  if (l !== undefined) return `${key} >= ${int8(l)}`;
  if (h !== undefined) return `${key} <= ${int8(h)}`;
  return `${key} IS NOT NULL`;
}

/**
 * The `COPY (SELECT ...) TO STDOUT` of a key range, rows in key then
 * primary-key order.
 *
 * @param schema - the schema
 * @param info - the resolved table
 * @param keyName - the key column's name
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 * @param pick - the columns selected, as indexes into `info.columns` in field order (default: all, in table order)
 */
export function pgCopyOutSql(schema: string, info: PgTableInfo, keyName: string, lo: bigint | undefined, hi: bigint | undefined, pick?: readonly number[]): string {
  const cols = (pick ?? info.columns.map((_, i) => i)).map((i) => quotePgIdent(info.columns[i]!.name)).join(', ');
  const key = quotePgIdent(keyName);
  const pk = info.columns
    .filter((c) => c.primaryKey > 0 && c.name !== keyName)
    .sort((a, b) => a.primaryKey - b.primaryKey)
    .map((c) => `, ${quotePgIdent(c.name)}`)
    .join('');
  // ONLY: a table others inherit from holds its own rows, not theirs (each child is dumped as itself).
  return `COPY (SELECT ${cols} FROM ONLY ${quotePgIdent(schema)}.${quotePgIdent(info.name)} WHERE ${pgRangeCondition(key, lo, hi)} ORDER BY ${key}${pk}) TO STDOUT`;
}

/**
 * The COPY output stream, passed on chunk by chunk. Destroying it before
 * the end closes the client (a COPY in flight cannot be stopped otherwise
 * without reading it to the end).
 */
class PgCopyOutStream extends Readable {
  readonly #lent: LentPgClient;
  readonly #inner: Readable;
  readonly #source: string;
  readonly #action: string;
  readonly #signal: AbortSignal | undefined;
  readonly #disposeAbort: () => void;
  #done = false;

  constructor(lent: LentPgClient, sql: string, source: string, action: string, signal: AbortSignal | undefined) {
    super({ highWaterMark: 512 * 1024 });
    this.#lent = lent;
    this.#source = source;
    this.#action = action;
    this.#signal = signal;
    this.#disposeAbort = onAbort(signal, (reason) => this.destroy(reason as Error));
    const inner = lent.client.query(copyTo(sql, { highWaterMark: 256 * 1024 }));
    this.#inner = inner;
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => {
      if (!this.#finish(false)) return;
      this.push(null);
    });
    // Stays attached: pg may still report the end of a COPY cut short.
    inner.on('error', (err: Error) => {
      if (this.#finish(true)) this.destroy(pgError(err, this.#source, this.#action, this.#signal) as Error);
    });
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#finish(true);
    callback(err);
  }

  #finish(broken: boolean): boolean {
    if (this.#done) return false;
    this.#done = true;
    this.#disposeAbort();
    this.#lent.release(broken);
    return true;
  }
}

/** Runs `fn` on a lent client; an abort closes the client. */
function withClient<T>(ctx: PgReaderContext, action: string, signal: AbortSignal | undefined, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  return withLent(
    () => ctx.acquire(signal, false),
    signal,
    (lent) => fn(lent.client),
    (err) => pgError(err, ctx.name, action, signal),
  );
}

/**
 * A {@link TableReader} over PostgreSQL clients; the object a snapshot
 * hands to its callback, and the read side of PostgresSource.
 */
export class PgReader implements TableReader {
  /** Always `'postgres'`. */
  readonly engine = 'postgres' as const;
  readonly #ctx: PgReaderContext;

  /** @param ctx - where clients come from */
  constructor(ctx: PgReaderContext) {
    this.#ctx = ctx;
  }

  /** A stable label of the database, recorded in the Catalog and in manifests (see {@link TableReader.name}). */
  get name(): string {
    return this.#ctx.name;
  }

  /**
   * The base tables of the database, sorted (see {@link TableReader.tables}).
   *
   * The ordinary tables of the source's schema (a partition is listed as a
   * table of its own; a partitioned parent, which holds no rows, is not).
   */
  async tables(options: DbOptions = {}): Promise<string[]> {
    checkOptionKeys('PostgresSource.tables', options, ['signal']);
    return withClient(this.#ctx, 'list tables', options.signal, async (client) => {
      const { rows } = await client.query<{ relname: string }>(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        [this.#ctx.schema],
      );
      return rows.map((r) => r.relname).sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
    });
  }

  /** The stored columns of a table in table order; ENO_TABLE if it does not exist (see {@link TableReader.columns}). */
  async columns(table: string, options: DbOptions = {}): Promise<ColumnInfo[]> {
    checkOptionKeys('PostgresSource.columns', options, ['signal']);
    checkIdentifier('PostgresSource.columns', 'table', table);
    return withClient(this.#ctx, `read the columns of ${JSON.stringify(table)}`, options.signal, async (client) => (await pgTableInfo(this.#ctx, client, table)).columns);
  }

  /**
   * The engine's own DDL for the table (see {@link TableReader.schema}).
   *
   * Built from the catalogs, see {@link pgCreateTable}.
   */
  async schema(table: string, options: DbOptions = {}): Promise<string> {
    checkOptionKeys('PostgresSource.schema', options, ['signal']);
    checkIdentifier('PostgresSource.schema', 'table', table);
    return withClient(this.#ctx, `read the schema of ${JSON.stringify(table)}`, options.signal, async (client) => {
      const info = await pgTableInfo(this.#ctx, client, table);
      return pgCreateTable(client, this.#ctx.schema, info);
    });
  }

  /** Smallest and largest key and the row counts, in one scan (see {@link TableReader.keyRange}). */
  async keyRange(table: string, key: string, options: DbOptions = {}): Promise<KeyRange> {
    checkKeyArgs('PostgresSource.keyRange', table, key, options);
    const r = await this.#keyRow<{ lo: string | null; hi: string | null; count: string; nulls: string }>('read the key range', table, key, options.signal, (k, t) => `SELECT min(${k})::text AS lo, max(${k})::text AS hi, count(${k})::text AS count, (count(*) - count(${k}))::text AS nulls FROM ${t}`);
    return Object.freeze({ lo: keyOf(r!.lo), hi: keyOf(r!.hi), count: Number(r!.count), nulls: Number(r!.nulls) });
  }

  /**
   * The smallest non-NULL key with `key >= from`, or `null` if there is
   * none: one indexed `min()`, so a walk over a sparse key column asks once
   * per occupied range (see {@link KeySeeker}). ENO_TABLE and EBAD_CONFIG
   * as {@link PostgresReader.keyRange}.
   *
   * @param table - the table
   * @param key - the integer key column
   * @param from - the bound
   * @param options - signal
   */
  async nextKey(table: string, key: string, from: KeyBound, options: DbOptions = {}): Promise<bigint | null> {
    const lo = checkNextKeyArgs('PostgresSource.nextKey', table, key, from, options);
    const r = await this.#keyRow<{ m: string | null }>('find the next key', table, key, options.signal, (k, t) => `SELECT min(${k})::text AS m FROM ${t} WHERE ${pgRangeCondition(k, lo, undefined)}`);
    return keyOf(r?.m);
  }

  /** Smallest and largest key, and whether a key is NULL, from the key's index (see {@link KeyProbes.bounds}). */
  async keyBounds(table: string, key: string, options: DbOptions = {}): Promise<KeyBounds> {
    checkKeyArgs('PostgresSource.keyBounds', table, key, options);
    const r = await this.#keyRow<{ lo: string | null; hi: string | null; nulls: boolean }>(
      'read the key range',
      table,
      key,
      options.signal,
      (k, t) => `SELECT (SELECT min(${k}) FROM ${t})::text AS lo, (SELECT max(${k}) FROM ${t})::text AS hi, EXISTS(SELECT 1 FROM ${t} WHERE ${k} IS NULL) AS nulls`,
    );
    return Object.freeze({ lo: keyOf(r!.lo), hi: keyOf(r!.hi), nulls: r!.nulls === true });
  }

  /** For each bound, the smallest key at or above it, in one query (see {@link KeyProbes.nextKeys}). */
  async nextKeys(table: string, key: string, froms: readonly bigint[], options: DbOptions = {}): Promise<(bigint | null)[]> {
    const bounds = checkNextKeysArgs('PostgresSource.nextKeys', table, key, froms, options);
    if (bounds.length === 0) return [];
    // One indexed min() per bound, each bound written as nextKey writes it.
    const row = await this.#keyRow<Record<string, string | null>>('find the next keys', table, key, options.signal, (k, t) =>
      `SELECT ${bounds.map((lo, i) => `(SELECT min(${k}) FROM ${t} WHERE ${pgRangeCondition(k, lo, undefined)})::text AS k${i}`).join(', ')}`,
    );
    return bounds.map((_, i) => keyOf(row?.[`k${i}`]));
  }

  /** The first row of `sql(k, t)` (`k` the quoted key column, `t` the table as `ONLY schema.table`) on a pooled client; ENO_TABLE and EBAD_CONFIG as {@link PostgresReader.keyRange}. */
  #keyRow<R extends object>(action: string, table: string, key: string, signal: AbortSignal | undefined, sql: (k: string, t: string) => string): Promise<R | undefined> {
    return withClient(this.#ctx, `${action} of ${JSON.stringify(table)}`, signal, async (client) => {
      const info = await pgTableInfo(this.#ctx, client, table);
      const k = quotePgIdent(pgKeyColumn(this.name, info, key).name);
      const { rows } = await client.query<R>(sql(k, `ONLY ${quotePgIdent(this.#ctx.schema)}.${quotePgIdent(info.name)}`));
      return rows[0];
    });
  }

  /** The rows with `lo <= key <= hi` as a bulk text stream with backpressure (see {@link TableReader.rows}). */
  async rows(table: string, options: RowsOptions): Promise<Readable> {
    checkOptionKeys('PostgresSource.rows', options, ['key', 'lo', 'hi', 'signal', 'columns']);
    checkIdentifier('PostgresSource.rows', 'table', table);
    checkIdentifier('PostgresSource.rows', 'key', options?.key);
    const names = checkColumnNames('PostgresSource.rows', options.columns);
    const { lo, hi } = toKeyBounds('PostgresSource.rows', options.lo, options.hi);
    const { signal } = options;
    throwIfAborted(signal);
    const ctx = this.#ctx;
    const lent = await ctx.acquire(signal, true);
    let stream: PgCopyOutStream;
    try {
      throwIfAborted(signal);
      const info = await pgTableInfo(ctx, lent.client, table);
      const key = pgKeyColumn(ctx.name, info, options.key);
      throwIfAborted(signal);
      const { indexes } = pickColumns(ctx.name, info.name, info.columns, names, 'read');
      stream = new PgCopyOutStream(lent, pgCopyOutSql(ctx.schema, info, key.name, lo, hi, indexes), ctx.name, `read rows of ${JSON.stringify(info.name)}`, signal);
    } catch (err) {
      lent.release(false);
      throw pgError(err, ctx.name, `read rows of ${JSON.stringify(table)}`, signal);
    }
    ctx.track(stream);
    return stream;
  }

  /** Count and digest of the rows with `lo <= key <= hi` (see {@link TableReader.digestRange}). */
  async digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options: DigestRangeOptions = {}): Promise<RangeDigest> {
    checkOptionKeys('PostgresSource.digestRange', options, ['signal', 'columns', 'onProgress']);
    checkColumnNames('PostgresSource.digestRange', options.columns);
    return digestRangeOf(this, table, key, lo, hi, options);
  }
}

interface ColumnDdlRow {
  attname: string;
  type: string;
  attnotnull: boolean;
  attidentity: string;
  attgenerated: string;
  def: string | null;
  coll: string | null;
}

interface IndexRow {
  def: string;
  name: string;
  uniq: boolean;
  head: string;
}

interface SequenceRow {
  seq: string;
  col: string;
  /** An identity column's own sequence (else one a serial column owns). */
  identity: boolean;
  type: string;
  start: string;
  inc: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

/**
 * Builds the `CREATE TABLE` of a table from the catalogs, as pg_dump would
 * for the table alone: the columns in order with their types and typmods
 * (`format_type`), collations that differ from the type's, defaults,
 * identity columns with their sequence's options, generated columns, NOT
 * NULL; the primary key, unique, check and exclusion constraints
 * (`pg_get_constraintdef`; a check the source holds `NOT VALID` as an
 * `ALTER TABLE ... ADD CONSTRAINT ... NOT VALID` after the table, since
 * CREATE TABLE would validate it); the other indexes
 * (`pg_get_indexdef`, on the unqualified table); and the sequences that `serial` columns own
 * (created, then `OWNED BY` the column). Names are those of the source's
 * schema left unqualified (the session's `search_path` is that schema), so
 * the DDL creates the table in the target's schema.
 *
 * Not carried (document them where it matters): foreign keys (they name
 * other tables; add them after a restore), the current value of sequences
 * (a restore moves them past the rows it loads; see `advanceSequences`),
 * the name of an identity column's sequence (its options are carried),
 * storage parameters, tablespaces, comments, grants, row security
 * policies, triggers, and the partitioning of a partitioned table.
 *
 * The enum types and domains of the source's schema that the columns use
 * (directly, as array elements, or under a domain) come first, each
 * created only where the target's schema lacks a type of that name (see
 * {@link pgTypesDdl}). Other types (composite, range, an extension's, or
 * those of another schema) and collations must exist in the target.
 *
 * @param client - a client whose `search_path` is `schema`
 * @param schema - the source's schema
 * @param info - the resolved table
 */
export async function pgCreateTable(client: pg.ClientBase, schema: string, info: PgTableInfo): Promise<string> {
  const oid = info.oid;
  const [cols, rel, cons, idx, seqs] = [
    (
      await client.query<ColumnDdlRow>(
        `SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, a.attidentity::text AS attidentity, a.attgenerated::text AS attgenerated, pg_get_expr(d.adbin, d.adrelid) AS def,
  CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN
    CASE WHEN cn.nspname IN ('pg_catalog', $2) THEN quote_ident(co.collname) ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END END AS coll
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
        [oid, schema],
      )
    ).rows,
    (await client.query<{ relpersistence: string }>('SELECT relpersistence::text AS relpersistence FROM pg_class WHERE oid = $1::oid', [oid])).rows[0],
    (
      await client.query<{ conname: string; def: string; valid: boolean }>(
        "SELECT conname, pg_get_constraintdef(oid) AS def, convalidated AS valid FROM pg_constraint WHERE conrelid = $1::oid AND contype IN ('p', 'u', 'c', 'x') ORDER BY contype <> 'p', conname",
        [oid],
      )
    ).rows,
    (
      await client.query<IndexRow>(
        `SELECT pg_get_indexdef(i.indexrelid) AS def, ic.relname AS name, i.indisunique AS uniq,
  'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || quote_ident(ic.relname) || ' ON ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' USING ' AS head
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = $1::oid AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))
ORDER BY ic.relname`,
        [oid],
      )
    ).rows,
    (
      await client.query<SequenceRow>(
        `SELECT s.relname AS seq, a.attname AS col, dp.deptype = 'i' AS identity, format_type(q.seqtypid, NULL) AS type, q.seqstart::text AS start, q.seqincrement::text AS inc,
  q.seqmin::text AS min, q.seqmax::text AS max, q.seqcache::text AS cache, q.seqcycle AS cycle
FROM pg_depend dp JOIN pg_class s ON s.oid = dp.objid AND s.relkind = 'S' JOIN pg_sequence q ON q.seqrelid = s.oid
JOIN pg_attribute a ON a.attrelid = dp.refobjid AND a.attnum = dp.refobjsubid
WHERE dp.classid = 'pg_class'::regclass AND dp.refclassid = 'pg_class'::regclass AND dp.refobjid = $1::oid
  AND (dp.deptype = 'i' OR (dp.deptype = 'a' AND s.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = $1::oid)))
ORDER BY s.relname`,
        [oid],
      )
    ).rows,
  ];
  const t = quotePgIdent(info.name);
  const identitySeqs = new Map(seqs.filter((s) => s.identity).map((s) => [s.col, s]));
  const owned = seqs.filter((s) => !s.identity);
  const lines: string[] = [];
  for (const c of cols) {
    let line = `    ${quotePgIdent(c.attname)} ${c.type}`;
    if (c.coll !== null) line += ` COLLATE ${c.coll}`;
    if (c.attidentity === 'a' || c.attidentity === 'd') line += ` GENERATED ${c.attidentity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${identityOptions(identitySeqs.get(c.attname))}`;
    else if (c.attgenerated === 's' && c.def !== null) line += ` GENERATED ALWAYS AS (${c.def}) STORED`;
    else if (c.attgenerated === 'v' && c.def !== null) line += ` GENERATED ALWAYS AS (${c.def}) VIRTUAL`;
    else if (c.def !== null) line += ` DEFAULT ${c.def}`;
    if (c.attnotnull) line += ' NOT NULL';
    lines.push(line);
  }
  // A CHECK the source holds NOT VALID (its older rows may break it) is
  // added after the table: inside CREATE TABLE the server would drop the
  // NOT VALID and enforce it on every row loaded.
  for (const k of cons) if (k.valid) lines.push(`    CONSTRAINT ${quotePgIdent(k.conname)} ${k.def}`);
  let ddl = await pgTypesDdl(client, schema, oid);
  for (const s of owned) {
    ddl += `CREATE SEQUENCE ${quotePgIdent(s.seq)} AS ${s.type} INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'};\n`;
  }
  ddl += `CREATE ${rel?.relpersistence === 'u' ? 'UNLOGGED ' : ''}TABLE ${t} (\n${lines.join(',\n')}\n);\n`;
  for (const s of owned) ddl += `ALTER SEQUENCE ${quotePgIdent(s.seq)} OWNED BY ${t}.${quotePgIdent(s.col)};\n`;
  for (const k of cons) if (!k.valid) ddl += `ALTER TABLE ${t} ADD CONSTRAINT ${quotePgIdent(k.conname)} ${k.def};\n`;
  for (const i of idx) {
    // pg_get_indexdef names the table with its schema: name it as the
    // CREATE TABLE above does, so the index lands on the restored table.
    const def = i.def.startsWith(i.head) ? `CREATE ${i.uniq ? 'UNIQUE ' : ''}INDEX ${quotePgIdent(i.name)} ON ${t} USING ${i.def.slice(i.head.length)}` : i.def;
    ddl += `${def};\n`;
  }
  return ddl;
}

/**
 * `dep(oid, depth)`: the types the columns of the table `$1` use, and
 * under them the base type of each domain and the element type of each
 * array, with how deep each lies (a column's own type at 0).
 */
export const PG_USED_TYPES_CTE = `WITH RECURSIVE dep(oid, depth) AS (
  SELECT a.atttypid, 0 FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, d.depth + 1
  FROM dep d JOIN pg_type t ON t.oid = d.oid
  WHERE d.depth < 32 AND (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))
)`;

interface UsedTypeRow {
  name: string;
  kind: 'e' | 'd';
  /** An enum's labels as literals, in their sort order. */
  labels: string[] | null;
  /** A domain's base type with its typmod. */
  base: string | null;
  notnull: boolean;
  def: string | null;
  coll: string | null;
  /** A domain's CHECK constraints, by name. */
  checks: { conname: string; def: string; valid: boolean }[] | null;
}

/**
 * The statements that create the enum types and domains of `schema` that
 * the table's columns use, where the target's schema (the first of the
 * session's `search_path`, as `createTable` runs) has no type of that name:
 * one `DO` block each, dependencies first (an enum before a domain over it).
 * A type already there is left as it is, whatever its labels or checks: a
 * row it refuses fails the load, which says why; a type of that name of
 * another kind (a table's row type) is refused (duplicate_object). Enum
 * labels in their sort order; a domain with its base type and typmod,
 * collation where it differs from the base type's, default, NOT NULL and
 * CHECK constraints (by name; one the source holds NOT VALID is added NOT
 * VALID after: `createTable` with `deferIndexes` takes it off again until
 * the rows are in, as it does the table's own NOT VALID checks).
 *
 * @param client - a client whose `search_path` is `schema`
 * @param schema - the source's schema
 * @param oid - the table
 */
async function pgTypesDdl(client: pg.ClientBase, schema: string, oid: string): Promise<string> {
  // One query for every type and what its DDL needs (labels, base type, checks), not one per type.
  const { rows: used } = await client.query<UsedTypeRow>(
    `${PG_USED_TYPES_CTE}
SELECT t.typname AS name, t.typtype::text AS kind,
  CASE WHEN t.typtype = 'e' THEN (SELECT array_agg(quote_literal(e.enumlabel) ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END AS labels,
  CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base, t.typnotnull AS notnull, pg_get_expr(t.typdefaultbin, 0) AS def,
  CASE WHEN t.typcollation <> 0 AND t.typcollation <> b.typcollation THEN
    CASE WHEN cn.nspname IN ('pg_catalog', $2) THEN quote_ident(co.collname) ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END END AS coll,
  CASE WHEN t.typtype = 'd' THEN (SELECT json_agg(json_build_object('conname', c.conname, 'def', pg_get_constraintdef(c.oid), 'valid', c.convalidated) ORDER BY c.conname)
    FROM pg_constraint c WHERE c.contypid = t.oid AND c.contype = 'c') END AS checks
FROM (SELECT d.oid, max(d.depth) AS depth FROM dep d GROUP BY d.oid) d JOIN pg_type t ON t.oid = d.oid JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type b ON b.oid = t.typbasetype LEFT JOIN pg_collation co ON co.oid = t.typcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE t.typtype IN ('e', 'd') AND n.nspname = $2
ORDER BY d.depth DESC, t.typname`,
    [oid, schema],
  );
  let ddl = '';
  for (const u of used) {
    let create: string;
    if (u.kind === 'e') {
      create = `CREATE TYPE ${quotePgIdent(u.name)} AS ENUM (${(u.labels ?? []).join(', ')})`;
    } else {
      const checks = u.checks ?? [];
      create = `CREATE DOMAIN ${quotePgIdent(u.name)} AS ${u.base!}`;
      if (u.coll !== null) create += ` COLLATE ${u.coll}`;
      if (u.def !== null) create += ` DEFAULT ${u.def}`;
      if (u.notnull) create += ' NOT NULL';
      for (const k of checks) if (k.valid) create += ` CONSTRAINT ${quotePgIdent(k.conname)} ${k.def}`;
      // A check the source holds NOT VALID (CREATE DOMAIN has no such clause): added after, as it is.
      for (const k of checks) if (!k.valid) create += `; ALTER DOMAIN ${quotePgIdent(u.name)} ADD CONSTRAINT ${quotePgIdent(k.conname)} ${k.def}`;
    }
    // The dollar quote's tag must not occur in what it quotes (a label may hold anything).
    let tag = '$stowage$';
    for (let i = 1; create.includes(tag); i++) tag = `$stowage${i}$`;
    const lit = `'${u.name.replace(/'/g, "''")}'`;
    const named = `SELECT 1 FROM pg_type WHERE typname = ${lit} AND typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())`;
    const what = u.kind === 'e' ? 'an enum type' : 'a domain';
    // Another kind of type of that name (a table's row type, say) would silently stand in for it: refused.
    ddl +=
      `DO ${tag} BEGIN IF NOT EXISTS (${named}) THEN ${create}; ` +
      `ELSIF NOT EXISTS (${named} AND typtype = '${u.kind}') THEN RAISE EXCEPTION USING ERRCODE = 'duplicate_object', ` +
      `MESSAGE = format('type %I of schema %I is not ${what}, which the table''s columns need: rename one of them', ${lit}, current_schema()); END IF; END ${tag};\n`;
  }
  return ddl;
}

/** The bounds of the integer types a sequence can have. */
const SEQUENCE_TYPE_BOUNDS: Record<string, readonly [bigint, bigint]> = {
  smallint: [-32768n, 32767n],
  integer: [-2147483648n, 2147483647n],
  bigint: [-9223372036854775808n, 9223372036854775807n],
};

/**
 * The options of an identity column's sequence, as ` (START WITH ...)`,
 * where they differ from those `AS IDENTITY` alone gives (from 1 by 1 up
 * to the type's largest value, CACHE 1, NO CYCLE); empty otherwise, so the
 * common case reads as written.
 */
function identityOptions(s: SequenceRow | undefined): string {
  if (s === undefined) return '';
  const bounds = SEQUENCE_TYPE_BOUNDS[s.type];
  const inc = BigInt(s.inc);
  const defaults = bounds !== undefined && inc === 1n && BigInt(s.min) === 1n && BigInt(s.max) === bounds[1] && BigInt(s.start) === 1n && s.cache === '1' && !s.cycle;
  if (defaults) return '';
  return ` (START WITH ${s.start} INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'})`;
}
