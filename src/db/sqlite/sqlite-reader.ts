/**
 * The read side of SqliteSource: table metadata, key ranges, and rows
 * streamed as bulk text. Queries go through a {@link SqliteQuery} and row
 * streams through a {@link SqliteStreamSession}, either in this thread
 * (below) or on a reader worker (`sqlite-pool.ts`).
 *
 * In this thread, rows stream straight from a statement iterator (a
 * Readable whose `_read` steps the iterator only as far as asked, so memory
 * stays flat whatever the table's size). better-sqlite3 is synchronous:
 * each `_read` runs one short burst of `sqlite3_step` calls (one chunk of
 * about 64 KiB) and returns to the event loop, so a long dump never blocks
 * it for long.
 *
 * @module
 */
import { Readable } from 'node:stream';
import type BetterSqlite3 from 'better-sqlite3';
import { StowageError } from '../../errors.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkOptionKeys } from '../../util/options.js';
import type { RangeDigest } from '../range-digest.js';
import { checkKeyArgs, checkNextKeyArgs } from '../source-common.js';
import {
  INT64_MAX,
  INT64_MIN,
  checkColumnNames,
  checkIdentifier,
  dbError,
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
import { sqliteSelectExpr, sqliteTextAffinity, sqliteWireField } from './sqlite-values.js';

/** A better-sqlite3 connection. */
export type SqliteDb = BetterSqlite3.Database;

/**
 * Quotes an SQLite identifier: double quotes around it, each double quote
 * inside doubled. EBAD_CONFIG for an empty name or one holding NUL.
 *
 * @param name - a table or column name
 * @example
 * ```ts
 * quoteSqliteIdent('we"ird tab`le'); // '"we""ird tab`le"'
 * ```
 */
export function quoteSqliteIdent(name: string): string {
  checkIdentifier('quoteSqliteIdent', 'identifier', name);
  return `"${name.replaceAll('"', '""')}"`;
}

/** A table as the reader resolved it. */
export interface SqliteTableInfo {
  /** The table's name as stored in sqlite_schema. */
  readonly name: string;
  /** Stored columns in table order. */
  readonly columns: ColumnInfo[];
  /** Per column: TEXT affinity? */
  readonly textAffinity: boolean[];
}

/** A connection lent for one stream: `release` is called once when the stream is done. */
export interface LentConnection {
  /** The connection. */
  readonly db: SqliteDb;
  /** Gives it back (closes a dedicated connection). */
  release(): void;
}

/** How a query's rows come back: objects, arrays (`'raw'`), or first values (`'pluck'`). */
export type SqliteRowMode = 'object' | 'raw' | 'pluck';

/** Runs one query (safe integers on) and gives all its rows. */
export type SqliteQuery = (sql: string, params: readonly unknown[], mode: SqliteRowMode) => Promise<unknown[]>;

/**
 * A connection for one row stream, in this thread or in a worker: its
 * table lookups and its range query run on the same connection.
 */
export interface SqliteStreamSession {
  /** Runs a metadata query on the session's connection. */
  readonly query: SqliteQuery;
  /**
   * Opens the bulk text stream of a range query; the stream releases the
   * session when it ends or is destroyed.
   */
  rows(sql: string, params: [bigint, bigint], textAffinity: boolean[], action: string, signal: AbortSignal | undefined): Readable;
  /** Gives the session back unused (after a failure before {@link rows}). */
  release(): void;
}

/** How a reader gets its connections. */
export interface SqliteReaderContext {
  /** The source's name, for messages. */
  readonly name: string;
  /** Runs a metadata query. */
  readonly query: SqliteQuery;
  /** A connection for one row stream. */
  streamSession(): Promise<SqliteStreamSession>;
  /** Called with each stream opened, so its owner can destroy it on close. */
  track(stream: Readable): void;
}

/**
 * Runs a query on a better-sqlite3 connection in this thread, as a
 * {@link SqliteQuery}.
 *
 * @param db - the connection (or a function giving it, checked per call)
 */
export function inThreadQuery(db: () => SqliteDb): SqliteQuery {
  return async (sql, params, mode) => {
    const stmt = db().prepare<unknown[], unknown>(sql).safeIntegers(true);
    if (mode === 'pluck') stmt.pluck(true);
    else if (mode === 'raw') stmt.raw(true);
    return stmt.all(...params);
  };
}

/**
 * A {@link SqliteStreamSession} over a connection in this thread: the
 * range query is stepped by the stream's own `_read`.
 *
 * @param conn - the connection; released when the stream is done
 * @param source - the source's name, for messages
 */
export function inThreadSession(conn: LentConnection, source: string): SqliteStreamSession {
  return {
    query: inThreadQuery(() => conn.db),
    rows: (sql, params, textAffinity, action, signal) => {
      const iter = query(source, action, () => conn.db.prepare<[bigint, bigint], unknown[]>(sql).raw(true).safeIntegers(true).iterate(...params));
      return new SqliteRowStream(iter, textAffinity, conn, source, action, signal);
    },
    release: () => conn.release(),
  };
}

const CHUNK_CHARS = 64 * 1024;
/** Every this many chunks, the next one is made in a later event-loop turn (see _read). */
const CHUNKS_PER_TURN = 16;

/** Streams a statement iterator as bulk text. */
class SqliteRowStream extends Readable {
  readonly #iter: IterableIterator<unknown[]>;
  readonly #textAffinity: boolean[];
  readonly #conn: LentConnection;
  readonly #source: string;
  readonly #action: string;
  readonly #signal: AbortSignal | undefined;
  readonly #disposeAbort: () => void;
  #finished = false;
  #chunks = 0;

  constructor(iter: IterableIterator<unknown[]>, textAffinity: boolean[], conn: LentConnection, source: string, action: string, signal: AbortSignal | undefined) {
    super({ highWaterMark: 4 * CHUNK_CHARS });
    this.#iter = iter;
    this.#textAffinity = textAffinity;
    this.#conn = conn;
    this.#source = source;
    this.#action = action;
    this.#signal = signal;
    this.#disposeAbort = onAbort(signal, (reason) => this.destroy(reason as Error));
  }

  override _read(): void {
    // Stepping SQLite is synchronous, and a consumer that only computes (a
    // digest) would pull the whole table without the event loop ever
    // turning: timers (lock heartbeats) and aborts would wait. So every few
    // chunks the next one is made in a later turn.
    if (++this.#chunks % CHUNKS_PER_TURN === 0) {
      setImmediate(() => {
        if (!this.destroyed) this.#produce();
      });
      return;
    }
    this.#produce();
  }

  #produce(): void {
    if (this.#finished) return;
    const aff = this.#textAffinity;
    const n = aff.length;
    let chunk = '';
    try {
      while (chunk.length < CHUNK_CHARS) {
        const r = this.#iter.next();
        if (r.done === true) {
          this.#finish();
          if (chunk.length > 0) this.push(Buffer.from(chunk, 'utf8'));
          this.push(null);
          return;
        }
        const row = r.value;
        chunk += sqliteWireField(row[0], aff[0]!);
        for (let i = 1; i < n; i++) chunk += `\t${sqliteWireField(row[i], aff[i]!)}`;
        chunk += '\n';
      }
    } catch (err) {
      this.destroy(dbError(err, this.#source, this.#action, this.#signal) as Error);
      return;
    }
    this.push(Buffer.from(chunk, 'utf8'));
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    try {
      this.#finish();
    } catch (e) {
      callback(err ?? (e as Error));
      return;
    }
    callback(err);
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#disposeAbort();
    try {
      this.#iter.return?.();
    } finally {
      this.#conn.release();
    }
  }
}

/** Runs a query in this thread, wrapping driver errors. */
function query<T>(source: string, action: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw dbError(err, source, action);
  }
}

/** Runs a metadata query, wrapping driver errors. */
async function ask<T>(name: string, q: SqliteQuery, action: string, sql: string, params: readonly unknown[], mode: SqliteRowMode): Promise<T[]> {
  try {
    return (await q(sql, params, mode)) as T[];
  } catch (err) {
    throw dbError(err, name, action);
  }
}

/**
 * Resolves a table name (exactly, else case-insensitively as SQLite does)
 * and reads its stored columns; ENO_TABLE if there is no such table.
 *
 * @param name - the source's name, for messages
 * @param q - runs the queries (on the connection that will use the result)
 * @param table - the table asked for
 */
export async function sqliteTableInfo(name: string, q: SqliteQuery, table: string): Promise<SqliteTableInfo> {
  const action = `read the columns of ${JSON.stringify(table)}`;
  const found = await ask<{ name: string }>(name, q, action, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE ORDER BY name = ? DESC", [table, table], 'object');
  const exact = found.find((r) => r.name === table);
  const match = exact ?? (found.length === 1 ? found[0] : undefined);
  if (match === undefined || match.name.toLowerCase().startsWith('sqlite_')) {
    const view = match === undefined ? await ask<{ name: string }>(name, q, action, "SELECT name FROM sqlite_schema WHERE type = 'view' AND name = ? COLLATE NOCASE", [table], 'object') : [];
    if (view.length > 0) throw notATable(name, table, 'a view', "partition archives hold the rows of tables; dump the tables it reads, and keep its CREATE VIEW with the database's setup scripts.");
    throw noSuchTable(name, table);
  }
  const cols = await ask<{ name: string; type: string; notnull: bigint; pk: bigint; hidden: bigint }>(
    name,
    q,
    action,
    'SELECT name, type, "notnull", pk, hidden FROM pragma_table_xinfo(?, \'main\') ORDER BY cid',
    [match.name],
    'object',
  );
  const columns: ColumnInfo[] = [];
  const textAffinity: boolean[] = [];
  for (const c of cols) {
    if (c.hidden !== 0n) continue;
    columns.push(Object.freeze({ name: c.name, type: c.type, nullable: c.notnull === 0n, primaryKey: Number(c.pk) }));
    textAffinity.push(sqliteTextAffinity(c.type));
  }
  if (columns.length === 0) throw noSuchTable(name, table);
  return { name: match.name, columns, textAffinity };
}

/**
 * Whether `column` of the table is its rowid's alias (declared `INTEGER
 * PRIMARY KEY` in a rowid table), whose values SQLite keeps integers and
 * never NULL. Told by SQLite's own indexes rather than by parsing the DDL:
 * a table's only primary-key column is the alias exactly when the primary
 * key has no index of its own (`WITHOUT ROWID` tables, any other type, and
 * the `INTEGER PRIMARY KEY DESC` quirk all get one, origin `pk`).
 *
 * @param name - the source's name, for messages
 * @param q - runs the queries
 * @param info - the resolved table
 * @param column - the column's stored name
 * @param action - what is being done, for messages
 */
async function isRowidAlias(name: string, q: SqliteQuery, info: SqliteTableInfo, column: string, action: string): Promise<boolean> {
  const pk = info.columns.filter((c) => c.primaryKey > 0);
  if (pk.length !== 1 || pk[0]!.name !== column || pk[0]!.type.toUpperCase() !== 'INTEGER') return false;
  const pkIndexes = await ask<bigint>(name, q, action, "SELECT count(*) FROM pragma_index_list(?, 'main') WHERE origin = 'pk'", [info.name], 'pluck');
  return Number(pkIndexes[0]) === 0;
}

/** Clamps a bound into SQLite's int64 range. */
function clamp(v: bigint): bigint {
  return v < INT64_MIN ? INT64_MIN : v > INT64_MAX ? INT64_MAX : v;
}

/**
 * The SQL and parameters selecting the rows of a key range, in key order
 * then primary-key order, each column through {@link sqliteSelectExpr}.
 *
 * @param info - the resolved table
 * @param keyName - the key column's name
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 * @param pick - the columns selected, as indexes into `info.columns` in field order (default: all, in table order)
 */
/**
 * The key column of a range read: EBAD_CONFIG when it has TEXT affinity,
 * whose values compare as text (`'10'` sorts before `'2'`), so a range of
 * integer bounds would silently miss keys (MySQL and PostgreSQL refuse a
 * non-integer key column the same way).
 *
 * @param source - the source's name
 * @param info - the table
 * @param key - the key column asked for
 */
export function sqliteKeyColumn(source: string, info: SqliteTableInfo, key: string): ColumnInfo {
  const { column, index } = findColumn(source, info.name, info.columns, key);
  if (info.textAffinity[index]) {
    throw new StowageError('EBAD_CONFIG', `Key column ${JSON.stringify(column.name)} of table ${JSON.stringify(info.name)} in ${source} has TEXT affinity (declared ${JSON.stringify(column.type)}): its values compare as text, so a key range would miss rows. Choose an integer key.`, {
      details: { source, table: info.name, option: 'key', key: column.name, type: column.type },
    });
  }
  return column;
}

export function sqliteRangeQuery(info: SqliteTableInfo, keyName: string, lo: bigint | undefined, hi: bigint | undefined, pick?: readonly number[]): { sql: string; params: [bigint, bigint] } {
  const cols = (pick ?? info.columns.map((_, i) => i)).map((i) => sqliteSelectExpr(quoteSqliteIdent(info.columns[i]!.name), info.textAffinity[i]!)).join(', ');
  const key = quoteSqliteIdent(keyName);
  const pk = info.columns
    .filter((c) => c.primaryKey > 0 && c.name !== keyName)
    .sort((a, b) => a.primaryKey - b.primaryKey)
    .map((c) => `, ${quoteSqliteIdent(c.name)}`)
    .join('');
  let l = clamp(lo ?? INT64_MIN);
  let h = clamp(hi ?? INT64_MAX);
  // A range entirely above or below int64 selects nothing.
  if ((lo !== undefined && lo > INT64_MAX) || (hi !== undefined && hi < INT64_MIN)) [l, h] = [1n, 0n];
  return { sql: `SELECT ${cols} FROM ${quoteSqliteIdent(info.name)} WHERE ${key} BETWEEN ? AND ? ORDER BY ${key}${pk}`, params: [l, h] };
}

/**
 * A {@link TableReader} over SQLite connections; the object a snapshot
 * hands to its callback, and the read side of SqliteSource.
 */
export class SqliteReader implements TableReader {
  /** Always `'sqlite'`. */
  readonly engine = 'sqlite' as const;
  readonly #ctx: SqliteReaderContext;

  /** @param ctx - where connections come from */
  constructor(ctx: SqliteReaderContext) {
    this.#ctx = ctx;
  }

  get name(): string {
    return this.#ctx.name;
  }

  async tables(options: DbOptions = {}): Promise<string[]> {
    checkOptionKeys('SqliteSource.tables', options, ['signal']);
    throwIfAborted(options.signal);
    const ctx = this.#ctx;
    return ask<string>(ctx.name, ctx.query, 'list tables', "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name", [], 'pluck');
  }

  async columns(table: string, options: DbOptions = {}): Promise<ColumnInfo[]> {
    checkOptionKeys('SqliteSource.columns', options, ['signal']);
    checkIdentifier('SqliteSource.columns', 'table', table);
    throwIfAborted(options.signal);
    return (await sqliteTableInfo(this.#ctx.name, this.#ctx.query, table)).columns;
  }

  async schema(table: string, options: DbOptions = {}): Promise<string> {
    checkOptionKeys('SqliteSource.schema', options, ['signal']);
    checkIdentifier('SqliteSource.schema', 'table', table);
    throwIfAborted(options.signal);
    const ctx = this.#ctx;
    const info = await sqliteTableInfo(ctx.name, ctx.query, table);
    const sqls = await ask<string>(
      ctx.name,
      ctx.query,
      `read the schema of ${JSON.stringify(table)}`,
      "SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type <> 'table', rowid",
      [info.name],
      'pluck',
    );
    let ddl = sqls.map((s) => `${s};\n`).join('');
    // An AUTOINCREMENT table never hands out a rowid it gave before, also of
    // rows deleted since: its high-water mark (sqlite_sequence) goes with the
    // DDL, so a table created from it does not give those rowids again
    // (loading rows raises it further by itself).
    const action = `read the AUTOINCREMENT counter of ${JSON.stringify(table)}`;
    const counted =
      /\bAUTOINCREMENT\b/i.test(sqls[0] ?? '') && (await ask<string>(ctx.name, ctx.query, action, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_sequence'", [], 'pluck')).length > 0;
    const seq = counted ? await ask<bigint | number | null>(ctx.name, ctx.query, action, 'SELECT seq FROM sqlite_sequence WHERE name = ?', [info.name], 'pluck') : [];
    if (seq[0] !== undefined && seq[0] !== null) ddl += `INSERT INTO sqlite_sequence (name, seq) VALUES ('${info.name.replaceAll("'", "''")}', ${BigInt(seq[0]).toString()});\n`;
    return ddl;
  }

  async keyRange(table: string, key: string, options: DbOptions = {}): Promise<KeyRange> {
    checkKeyArgs('SqliteSource.keyRange', table, key, options);
    throwIfAborted(options.signal);
    const ctx = this.#ctx;
    const info = await sqliteTableInfo(ctx.name, ctx.query, table);
    const { column } = findColumn(ctx.name, info.name, info.columns, key);
    const k = quoteSqliteIdent(column.name);
    const t = quoteSqliteIdent(info.name);
    const action = `read the key range of ${JSON.stringify(table)}`;
    // The rowid's alias holds only integers, never NULL: its bounds are two
    // seeks and its rows a count of the table's cells, without reading a
    // value (~60 ms for 1M rows instead of ~260).
    const rowid = await isRowidAlias(ctx.name, ctx.query, info, column.name, action);
    const [r] = await ask<[unknown, unknown, bigint, bigint, bigint]>(
      ctx.name,
      ctx.query,
      action,
      rowid
        ? `SELECT (SELECT min(${k}) FROM ${t}), (SELECT max(${k}) FROM ${t}), (SELECT count(*) FROM ${t}), 0, 0`
        : `SELECT min(${k}), max(${k}), count(${k}), count(*) - count(${k}), coalesce(sum(typeof(${k}) NOT IN ('integer', 'null')), 0) FROM ${t}`,
      [],
      'raw',
    );
    const [lo, hi, count, nulls, odd] = r!;
    if (odd > 0n) {
      throw new StowageError('EBAD_CONFIG', `Key column ${JSON.stringify(column.name)} of table ${JSON.stringify(info.name)} in ${ctx.name} holds ${odd} value(s) that are not integers: choose an integer key.`, {
        details: { source: ctx.name, table: info.name, option: 'key', key: column.name, nonIntegers: Number(odd) },
      });
    }
    return Object.freeze({ lo: typeof lo === 'bigint' ? lo : null, hi: typeof hi === 'bigint' ? hi : null, count: Number(count), nulls: Number(nulls) });
  }

  /**
   * The smallest non-NULL key with `key >= from`, or `null` if there is
   * none: one indexed `min()`, so a walk over a sparse key column (keys 1
   * and 10^15) asks once per occupied range, never per empty one. The
   * Partitioner uses it when a source has it. ENO_TABLE and EBAD_CONFIG as
   * {@link SqliteReader.keyRange}.
   *
   * @param table - the table
   * @param key - the integer key column
   * @param from - the bound
   * @param options - signal
   */
  async nextKey(table: string, key: string, from: KeyBound, options: DbOptions = {}): Promise<bigint | null> {
    const lo = checkNextKeyArgs('SqliteSource.nextKey', table, key, from, options);
    throwIfAborted(options.signal);
    const ctx = this.#ctx;
    const info = await sqliteTableInfo(ctx.name, ctx.query, table);
    const column = sqliteKeyColumn(ctx.name, info, key);
    if (lo > INT64_MAX) return null;
    const k = quoteSqliteIdent(column.name);
    const [v] = await ask<unknown>(
      ctx.name,
      ctx.query,
      `find the next key of ${JSON.stringify(table)}`,
      `SELECT min(${k}) FROM ${quoteSqliteIdent(info.name)} WHERE ${k} BETWEEN ? AND ?`,
      [clamp(lo), INT64_MAX],
      'pluck',
    );
    if (v === null || v === undefined) return null;
    if (typeof v !== 'bigint') {
      throw new StowageError('EBAD_CONFIG', `Key column ${JSON.stringify(column.name)} of table ${JSON.stringify(info.name)} in ${ctx.name} holds a value that is not an integer (${String(v)}): choose an integer key.`, {
        details: { source: ctx.name, table: info.name, option: 'key', key: column.name },
      });
    }
    return v;
  }

  async rows(table: string, options: RowsOptions): Promise<Readable> {
    checkOptionKeys('SqliteSource.rows', options, ['key', 'lo', 'hi', 'signal', 'columns']);
    checkIdentifier('SqliteSource.rows', 'table', table);
    checkIdentifier('SqliteSource.rows', 'key', options?.key);
    const names = checkColumnNames('SqliteSource.rows', options.columns);
    const { lo, hi } = toKeyBounds('SqliteSource.rows', options.lo, options.hi);
    const { signal } = options;
    throwIfAborted(signal);
    const ctx = this.#ctx;
    const session = await ctx.streamSession();
    let stream: Readable;
    try {
      throwIfAborted(signal);
      const info = await sqliteTableInfo(ctx.name, session.query, table);
      const column = sqliteKeyColumn(ctx.name, info, options.key);
      const { indexes } = pickColumns(ctx.name, info.name, info.columns, names, 'read');
      const { sql, params } = sqliteRangeQuery(info, column.name, lo, hi, indexes);
      stream = session.rows(sql, params, indexes.map((i) => info.textAffinity[i]!), `read rows of ${JSON.stringify(info.name)}`, signal);
    } catch (err) {
      session.release();
      throw err;
    }
    ctx.track(stream);
    return stream;
  }

  async digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options: DigestRangeOptions = {}): Promise<RangeDigest> {
    checkOptionKeys('SqliteSource.digestRange', options, ['signal', 'columns', 'onProgress']);
    checkColumnNames('SqliteSource.digestRange', options.columns);
    return digestRangeOf(this, table, key, lo, hi, options);
  }
}
