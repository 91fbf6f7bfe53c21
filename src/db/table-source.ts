/**
 * The TableSource contract (layer 1): one interface over MariaDB/MySQL,
 * PostgreSQL and SQLite, so the Partitioner cuts, dumps, restores and
 * compares tables of any of them the same way. Implementations live beside
 * this file: `mysql/mysql-source.ts` (MysqlSource), `postgres/postgres-source.ts`
 * (PostgresSource), `sqlite/sqlite-source.ts` (SqliteSource).
 *
 * ## Rows travel as bulk text
 *
 * {@link TableReader.rows} yields, and {@link TableSource.load} consumes,
 * the engine's bulk text format: the common ground of MySQL `LOAD DATA` and
 * PostgreSQL `COPY` text, specified in `bulk-text.ts` (TAB between fields,
 * LF after every row, `\N` for NULL, backslash escapes for backslash, TAB,
 * LF, CR and NUL). Rows come in ascending key order; rows sharing a key
 * value come in primary-key order where the table has one (so archives are
 * reproducible), though the range digest does not depend on that order.
 * Rows whose key is NULL are never part of a range; {@link KeyRange.nulls}
 * counts them so that a caller can refuse such a table.
 *
 * ## The text of each value
 *
 * The bulk text of a range must survive dump → load → dump byte for byte
 * in the same engine (that is what makes {@link TableReader.digestRange}
 * equal on both sides), so each engine fixes one text per value:
 *
 * | value | MysqlSource | PostgresSource | SqliteSource |
 * |---|---|---|---|
 * | NULL | `\N` | `\N` | `\N` |
 * | empty string | empty field | empty field | empty field |
 * | integers (any width, beyond 2^53) | decimal, never through a JS number | same | INTEGER: decimal (read with `safeIntegers`) |
 * | DECIMAL / NUMERIC | the server's exact text, scale kept (`12.50`) | same | no exact type: keep decimals in TEXT columns |
 * | DOUBLE / FLOAT | text that parses back to the same bits | `extra_float_digits = 1` (shortest exact), `Infinity`, `-Infinity`, `NaN` | REAL: shortest round-trip text, `.0` added when integral (`3.0`, `-0.0`), `Infinity`, `-Infinity` |
 * | text | UTF-8 (`utf8mb4` connection) | UTF-8 (`client_encoding UTF8`) | UTF-8 |
 * | binary | the raw bytes, escaped | bytea hex, `\x0a0b` (on the wire `\\x0a0b`) | BLOB: `\x` + lower-case hex, as PostgreSQL |
 * | DATETIME / TIMESTAMP without zone | `YYYY-MM-DD HH:MM:SS[.ffffff]`, the column's fractional digits | same (`DateStyle ISO, YMD`) | as stored (TEXT) |
 * | TIMESTAMP with zone | session `time_zone = '+00:00'`: UTC in the same form | session `TimeZone = UTC`: `...+00` | as stored (TEXT) |
 * | DATE, TIME | `YYYY-MM-DD`, `HH:MM:SS[.ffffff]` | same | as stored (TEXT) |
 *
 * An engine sets the session options in the table on every connection it
 * dumps or loads with, so neither the server's defaults nor the client's
 * time zone can change a value. SqliteSource keeps SQLite's per-value
 * storage classes exact too (see `sqlite/sqlite-values.ts`).
 *
 * ## Identifiers
 *
 * Every table and column name is quoted by the engine's rules before it
 * reaches SQL (MySQL: backticks, a backtick doubled; PostgreSQL and SQLite:
 * double quotes, a double quote doubled), so a table named
 * ``we"ird tab`le`` works and nothing from a name reaches SQL unquoted.
 * Values (key bounds) are bound as parameters, or, where the engine cannot
 * bind (PostgreSQL `COPY (query)`), formatted from a validated `bigint`.
 *
 * ## Errors
 *
 * A missing table or key column is `ENO_TABLE`; bad options are
 * `EBAD_CONFIG`; every driver error is wrapped as `EDB` (or a more specific
 * code) with the driver's error kept as `cause`; malformed bulk text given
 * to `load` is `EDB`; an abort rejects with the signal's reason.
 *
 * ## Writing a TableSource
 *
 * - Validate up front: `checkOptionKeys`, {@link checkIdentifier} for names,
 *   {@link toKeyBounds} for `lo`/`hi`; then `throwIfAborted(signal)`.
 * - Resolve the table ({@link noSuchTable}) and the key ({@link findColumn})
 *   before starting a query; wrap driver errors with {@link dbError}.
 * - `rows`: select {@link TableReader.columns} in order (or the `columns`
 *   named: {@link checkColumnNames}, then {@link pickColumns}; a reader
 *   must honour them, since `Partitioner.compare` relies on them to read a
 *   side whose columns are in another order), `WHERE key BETWEEN
 *   lo AND hi` (missing bounds: unbounded, NULL keys never), `ORDER BY key,
 *   <other primary-key columns>`; a Readable fed by a cursor or a copy
 *   stream with backpressure; abort → `destroy(signal.reason)`.
 * - `digestRange`: {@link digestRangeOf}, nothing engine-specific.
 * - `load`: one transaction; `replaceRange` deletes inside it; the fields
 *   go into the `columns` named, by name, else into every stored column in
 *   table order ({@link pickColumns}); on any failure roll
 *   back and destroy the input; progress with phase `'load'`.
 * - Test with the all-types fixture (`test/fixtures/db/all-types.ts`):
 *   dump, load into a fresh database, equal `digestRange`, byte-identical
 *   dumps, every value equal; plus the weird table name ``we"ird tab`le``.
 *
 * @module
 */
import type { Readable } from 'node:stream';
import { StowageError } from '../errors.js';
import type { ProgressCallback } from '../progress.js';
import { digestBulkText, type RangeDigest } from './range-digest.js';

export {
  BULK_NULL,
  BulkTextParser,
  LineSplitter,
  decodeBulkField,
  decodeBulkTextField,
  encodeBulkRow,
  escapeBulkBytes,
  escapeBulkText,
  malformedBulkText,
  readBulkRows,
  splitBulkLine,
} from './bulk-text.js';
export type { BulkField, BulkRow, BulkTextParserOptions, LineSplitterOptions, ReadBulkRowsOptions } from './bulk-text.js';
export { RANGE_DIGEST_ALGORITHM, RangeDigester, digestBulkText } from './range-digest.js';
export type { DigestBulkTextOptions, RangeDigest, RangeDigesterOptions } from './range-digest.js';

/** The database engines stowage speaks to. */
export type TableEngine = 'mysql' | 'postgres' | 'sqlite';

/** Options of every TableSource operation. */
export interface DbOptions {
  /** Cancels the operation; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@link TableSource.createTable}. */
export interface CreateTableOptions extends DbOptions {
  /**
   * Create the table without its indexes and unique constraints, and
   * resolve to a {@link DeferredIndexes} that builds them once the rows are
   * loaded, as pg_restore does: one sort per index instead of an index
   * insert per row (default false). PostgreSQL also defers the CHECK
   * constraints the DDL adds `NOT VALID`, which the rows of an archive may
   * break as the source's older rows do, and its build moves the sequences
   * of serial and identity columns up to the rows loaded. A source that
   * defers nothing creates the table whole and resolves to undefined.
   */
  deferIndexes?: boolean;
}

/**
 * The indexes and unique constraints a {@link TableSource.createTable} with
 * `deferIndexes` left out of the table it created.
 */
export interface DeferredIndexes {
  /** The table, as the engine spells it. */
  readonly table: string;
  /** The statements {@link DeferredIndexes.build} runs, in order. */
  readonly statements: readonly string[];
  /**
   * Builds them, all or nothing. EDB with the server's reason if the rows
   * break one (a duplicate key under a primary key, say); the table is then
   * left as it is, without them.
   */
  build(options?: DbOptions): Promise<void>;
  /** Drops the table (which the createTable call created), for a restore that cannot complete it. */
  discard(): Promise<void>;
}

/** One stored column of a table, in table order. */
export interface ColumnInfo {
  /** The column's name, as the engine spells it. */
  readonly name: string;
  /** The declared type, in the engine's words (`bigint(20) unsigned`, `timestamp with time zone`, `REAL`, or `''`). */
  readonly type: string;
  /** Whether NULL is allowed. */
  readonly nullable: boolean;
  /** 1-based position in the primary key, 0 if not part of it. */
  readonly primaryKey: number;
}

/** The extent of an integer key column; see {@link TableReader.keyRange}. */
export interface KeyRange {
  /** Smallest key, or `null` when the table has no row with a key. */
  readonly lo: bigint | null;
  /** Largest key, or `null` when the table has no row with a key. */
  readonly hi: bigint | null;
  /** Rows whose key is not NULL. */
  readonly count: number;
  /** Rows whose key is NULL: they belong to no range, and no dump would hold them. */
  readonly nulls: number;
}

/** A key bound: a `bigint`, or a `number` that is a safe integer. */
export type KeyBound = bigint | number;

/** Options of {@link TableReader.rows}. */
export interface RowsOptions extends DbOptions {
  /** The integer key column the range is on, e.g. `'SEQNO'`. */
  key: string;
  /** Smallest key included (default: no lower bound). */
  lo?: KeyBound;
  /** Largest key included (default: no upper bound). */
  hi?: KeyBound;
  /**
   * Only these columns, in this order: each field of a row is the column
   * named at its position (names resolved as for {@link LoadOptions.columns}:
   * exactly, else case-insensitively when that is unambiguous). Default:
   * every stored column in table order. `Partitioner.compare` reads a table
   * whose columns are in another order on the other side this way. A name
   * the table lacks is ENO_TABLE; an empty list, a name given twice or a bad
   * name is EBAD_CONFIG.
   */
  columns?: readonly string[];
}

/** Options of {@link TableReader.digestRange}. */
export interface DigestRangeOptions extends DbOptions {
  /**
   * Progress of the read: phase `digest`, bytes of bulk text digested,
   * items the rows so far (no totals: the range is read once, not counted
   * first).
   */
  onProgress?: ProgressCallback;
  /**
   * Digest the rows made of these columns, in this order, as
   * {@link RowsOptions.columns} selects them; the key column must be one of
   * them (EBAD_CONFIG otherwise). Default: every stored column.
   */
  columns?: readonly string[];
}

/** A key range to replace during a load; see {@link LoadOptions.replaceRange}. */
export interface ReplaceRange {
  /** The integer key column. */
  key: string;
  /** Smallest key deleted. */
  lo: KeyBound;
  /** Largest key deleted. */
  hi: KeyBound;
}

/** Options of {@link TableSource.load}. */
export interface LoadOptions extends DbOptions {
  /** Byte and row progress (`phase: 'load'`). */
  onProgress?: ProgressCallback;
  /**
   * Delete the table's rows with key in [lo, hi] first, in the same
   * transaction as the load: restoring a partition again (a rewritten
   * partial tail) replaces it instead of failing on duplicate keys.
   * PostgreSQL, where other tables' foreign keys point at the table (and
   * the key has a unique index of its own), merges instead: the rows that
   * come back are updated in place, the new ones inserted, and only the
   * rows that do not come back deleted, so the keys other tables refer to
   * stay (see {@link PostgresSource.load}).
   */
  replaceRange?: ReplaceRange;
  /**
   * The columns the bulk text's fields go into, by name, in field order
   * (default: every stored column, in the table's order). A stored column
   * not named takes its default. Give it whenever the text did not come
   * from a table of exactly the same column order: fields are matched to
   * columns by position, so two columns of compatible types in another
   * order would silently swap values. `Partitioner.restore` passes the
   * columns its manifest records. A name the table lacks is ENO_TABLE; an
   * empty list, a name given twice or a bad name is EBAD_CONFIG.
   */
  columns?: readonly string[];
}

/** What {@link TableSource.load} did. */
export interface LoadResult {
  /** Rows inserted. */
  readonly rows: number;
  /** Bytes of bulk text consumed. */
  readonly bytes: number;
  /** Rows the range held, which {@link LoadOptions.replaceRange} replaced (deleted first, or merged; 0 without it). */
  readonly deleted: number;
}

/**
 * The read side of a database: what a snapshot offers and what every
 * {@link TableSource} offers outside one.
 */
export interface TableReader {
  /** The engine behind it. */
  readonly engine: TableEngine;

  /**
   * A stable label of the database, recorded in the Catalog and in
   * partition manifests (given as an option, or derived from where the
   * source points, e.g. `sqlite:/data/cond.db`).
   */
  readonly name: string;

  /**
   * The base tables of the database (or schema) the source was opened on,
   * sorted, without the engine's internal tables and without views.
   */
  tables(options?: DbOptions): Promise<string[]>;

  /**
   * The stored columns of a table in table order: exactly the fields of
   * each bulk text row of {@link TableReader.rows} (unless it is given
   * `columns`). Generated columns are left out (they are computed,
   * not loaded). ENO_TABLE if the table does not exist.
   */
  columns(table: string, options?: DbOptions): Promise<ColumnInfo[]>;

  /**
   * The engine's own DDL for the table, enough for
   * {@link TableSource.createTable} on an empty database of the same engine:
   * MySQL `SHOW CREATE TABLE`, a PostgreSQL `CREATE TABLE` built from the
   * catalog (with its primary key and indexes), SQLite's `CREATE TABLE`
   * and `CREATE INDEX` text from `sqlite_schema`. Statements end with `;`
   * and a newline. ENO_TABLE if the table does not exist.
   */
  schema(table: string, options?: DbOptions): Promise<string>;

  /**
   * Smallest and largest key and the row counts, in one scan. ENO_TABLE if
   * the table or column does not exist; EBAD_CONFIG if the column holds
   * values that are not integers.
   */
  keyRange(table: string, key: string, options?: DbOptions): Promise<KeyRange>;

  /**
   * The rows with `lo <= key <= hi` as bulk text, in ascending key order, as
   * a byte stream with backpressure: rows are fetched only as fast as the
   * stream is read, so memory does not grow with the table. Resolves once
   * the table and key are checked (ENO_TABLE) and the query is started;
   * later failures (EDB) and an abort (the signal's reason) destroy the
   * stream with that error. Destroying the stream releases the query.
   */
  rows(table: string, options: RowsOptions): Promise<Readable>;

  /**
   * Count and digest of the rows with `lo <= key <= hi`, as defined in
   * `range-digest.ts`: {@link digestBulkText} over this reader's own
   * {@link rows} output (of the `columns` named, if given). Equal on both
   * sides of a dump and load.
   */
  digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options?: DigestRangeOptions): Promise<RangeDigest>;
}

/**
 * A database the Partitioner dumps from and restores into.
 *
 * Implementations are safe to use from several async operations at once
 * (the Partitioner runs `concurrency` snapshots side by side): each holds a
 * pool, or opens a connection per snapshot and per stream.
 */
export interface TableSource extends TableReader, AsyncDisposable {
  /**
   * Runs `fn` with a reader whose every read sees one consistent snapshot of
   * the database, so the Partitioner reads one key range of several tables
   * (a payload table and its validity table) as of one instant: rows
   * committed meanwhile are not seen. MySQL: a dedicated connection with
   * `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` at REPEATABLE
   * READ; PostgreSQL: a dedicated client in `BEGIN ISOLATION LEVEL
   * REPEATABLE READ READ ONLY`; SQLite: a dedicated connection in a read
   * transaction. Streams opened by the reader must be consumed before `fn`
   * settles; those still open are destroyed when the snapshot ends. The
   * snapshot ends (transaction closed, connection released) whether `fn`
   * resolves or throws; an abort rejects with the signal's reason.
   *
   * Inside a snapshot, read one stream at a time: while a row stream of the
   * reader is open, other calls on that reader may fail with EDB (MySQL and
   * PostgreSQL run a snapshot on one connection). A stream destroyed before
   * its end may end the snapshot.
   */
  snapshot<T>(fn: (reader: TableReader) => Promise<T>, options?: DbOptions): Promise<T>;

  /**
   * Creates `table` by running `ddl`, the text {@link TableReader.schema}
   * returned on a database of the same engine (the Partitioner restores it
   * from a partition archive whose DNA it has verified: the DDL is run as
   * is). EEXIST if the table already exists; ENO_TABLE if the DDL ran but
   * did not create `table`; EDB if the engine refused it. All or nothing
   * where the engine has transactional DDL. With `deferIndexes`, resolves
   * to the indexes left out, if the source deferred any.
   */
  createTable(table: string, ddl: string, options?: CreateTableOptions): Promise<DeferredIndexes | undefined>;

  /**
   * Loads bulk text (the format {@link TableReader.rows} writes, fields in
   * {@link TableReader.columns} order) into an existing table through the
   * engine's bulk path: `LOAD DATA LOCAL INFILE` from the stream, `COPY
   * FROM STDIN`, or batched prepared inserts in one transaction for SQLite.
   * All or nothing: on malformed input (EDB), a driver error (EDB, e.g. a
   * duplicate key) or an abort, the transaction is rolled back, `input` is
   * destroyed, and the table is as before. Memory does not grow with the
   * input.
   */
  load(table: string, input: Readable | AsyncIterable<Uint8Array>, options?: LoadOptions): Promise<LoadResult>;

  /**
   * The other tables that {@link load} checks the rows of `table` against
   * (the parent tables of its foreign keys, in the source's schema, the
   * table itself included when a key refers to its own rows), sorted:
   * their rows must be there first. Optional: a source whose loads skip
   * foreign key checks (MySQL sessions with `foreign_key_checks = 0`,
   * SQLite loads with `foreign_keys = OFF`) leaves it out. PostgreSQL checks
   * them on every row, whatever the session; {@link Partitioner.restore}
   * uses it to load parent tables before their children. ENO_TABLE if the
   * table does not exist.
   */
  references?(table: string, options?: DbOptions): Promise<string[]>;

  /**
   * Moves the sequences that give `table` its keys (PostgreSQL's serial and
   * identity columns) up to the largest value the rows hold, so that the
   * next INSERT that leaves the key to its default takes a key no row has.
   * Only ever up; resolves to the sequences moved. Optional: MySQL's
   * AUTO_INCREMENT and SQLite's rowid follow the rows loaded by
   * themselves, so those sources leave it out. {@link Partitioner.restore}
   * calls it after loading into a table it did not create (a table it
   * creates gets the same from {@link DeferredIndexes.build}). ENO_TABLE if
   * the table does not exist.
   */
  advanceSequences?(table: string, options?: DbOptions): Promise<string[]>;

  /** Closes every connection; further calls fail with EDB. Idempotent. */
  close(): Promise<void>;
}

/** Smallest signed 64-bit integer: the smallest key any engine stores. */
export const INT64_MIN = -(1n << 63n);
/** Largest signed 64-bit integer. */
export const INT64_MAX = (1n << 63n) - 1n;
/** Largest unsigned 64-bit integer (MySQL `BIGINT UNSIGNED`). */
export const UINT64_MAX = (1n << 64n) - 1n;

/**
 * Checks a key bound and returns it as a `bigint`: a `bigint` in
 * [{@link INT64_MIN}, {@link UINT64_MAX}], or a `number` that is a safe
 * integer (a larger `number` has already lost digits). EBAD_CONFIG otherwise.
 *
 * @param where - the method, for the message
 * @param name - the option name (`lo`, `hi`)
 * @param value - the bound
 */
export function toKeyBound(where: string, name: string, value: unknown): bigint {
  if (typeof value === 'bigint') {
    if (value >= INT64_MIN && value <= UINT64_MAX) return value;
  } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
    return BigInt(value);
  }
  throw new StowageError('EBAD_CONFIG', `${where}: "${name}" must be a bigint (64-bit) or a safe integer number, got ${typeof value === 'bigint' ? `${value}n` : String(value)}.`, {
    details: { where, option: name, value: typeof value === 'bigint' ? value.toString() : value },
  });
}

/**
 * Checks optional `lo`/`hi` bounds (each a {@link KeyBound}, `lo <= hi`).
 *
 * @param where - the method, for the message
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 */
export function toKeyBounds(where: string, lo: unknown, hi: unknown): { lo: bigint | undefined; hi: bigint | undefined } {
  const l = lo === undefined ? undefined : toKeyBound(where, 'lo', lo);
  const h = hi === undefined ? undefined : toKeyBound(where, 'hi', hi);
  if (l !== undefined && h !== undefined && l > h) {
    throw new StowageError('EBAD_CONFIG', `${where}: "lo" (${l}) is greater than "hi" (${h}).`, { details: { where, lo: l.toString(), hi: h.toString() } });
  }
  return { lo: l, hi: h };
}

/**
 * Checks that a table or column name is a non-empty string without NUL
 * (no engine allows NUL in a name, and it would cut a C string short).
 *
 * @param where - the method, for the message
 * @param what - `'table'` or `'key'`...
 * @param name - the name
 */
export function checkIdentifier(where: string, what: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.includes('\0')) {
    throw new StowageError('EBAD_CONFIG', `${where}: the ${what} name must be a non-empty string without NUL characters, got ${JSON.stringify(name) ?? String(name)}.`, {
      details: { where, [what]: name },
    });
  }
  return name;
}

/**
 * The ENO_TABLE error for a missing table.
 *
 * @param source - the source's name
 * @param table - the table asked for
 */
export function noSuchTable(source: string, table: string): StowageError {
  return new StowageError('ENO_TABLE', `Table ${JSON.stringify(table)} does not exist in ${source}.`, { details: { source, table } });
}

/**
 * ENO_TABLE for a name that exists, but as something a TableSource does not
 * read or load as a table (a view, a partitioned parent, a system-versioned
 * table), saying what it is and what to do instead.
 *
 * @param source - the source's name
 * @param table - the name asked for
 * @param kind - what it is ("a view")
 * @param advice - what to do instead
 */
export function notATable(source: string, table: string, kind: string, advice: string): StowageError {
  return new StowageError('ENO_TABLE', `${JSON.stringify(table)} in ${source} is ${kind}, not a table this source reads or loads: ${advice}`, { details: { source, table, kind } });
}

/**
 * Finds a column by name (exactly, or else case-insensitively when exactly
 * one column matches that way, as SQL matches unquoted names); ENO_TABLE if
 * the table has no such column.
 *
 * @param source - the source's name, for the message
 * @param table - the table
 * @param columns - the table's columns
 * @param name - the column asked for
 * @returns the column and its 0-based position
 */
export function findColumn(source: string, table: string, columns: readonly ColumnInfo[], name: string): { column: ColumnInfo; index: number } {
  let index = columns.findIndex((c) => c.name === name);
  if (index < 0) {
    const lower = name.toLowerCase();
    const matches = columns.flatMap((c, i) => (c.name.toLowerCase() === lower ? [i] : []));
    if (matches.length === 1) index = matches[0]!;
  }
  if (index < 0) {
    throw new StowageError('ENO_TABLE', `Table ${JSON.stringify(table)} in ${source} has no column ${JSON.stringify(name)} (it has ${columns.map((c) => c.name).join(', ')}).`, {
      details: { source, table, column: name },
    });
  }
  return { column: columns[index]!, index };
}

/**
 * Checks a `columns` option ({@link RowsOptions.columns},
 * {@link LoadOptions.columns}, {@link DigestRangeOptions.columns}):
 * EBAD_CONFIG unless it is a non-empty array of valid, distinct names.
 * Returns a frozen copy, or undefined when the option is not given.
 *
 * @param who - e.g. `MysqlSource.load`, for messages
 * @param columns - the option, or undefined
 */
export function checkColumnNames(who: string, columns: readonly string[] | undefined): readonly string[] | undefined {
  if (columns === undefined) return undefined;
  if (!Array.isArray(columns) || columns.length === 0) {
    throw new StowageError('EBAD_CONFIG', `${who}: option "columns" must be a non-empty array of column names.`, { details: { option: 'columns' } });
  }
  for (const c of columns as unknown[]) checkIdentifier(who, 'columns', c as string);
  if (new Set(columns).size !== columns.length) {
    throw new StowageError('EBAD_CONFIG', `${who}: option "columns" names a column twice (${columns.join(', ')}).`, { details: { option: 'columns' } });
  }
  return Object.freeze([...columns]);
}

/**
 * The columns a read selects or a load fills, in field order: those named
 * by `names` (each resolved as {@link findColumn} does: ENO_TABLE for a
 * name the table lacks; EBAD_CONFIG for two names resolving to one column),
 * or every stored column. `indexes` are their positions among `stored`.
 *
 * @param source - the source's name
 * @param table - the table's resolved name
 * @param stored - its stored columns, in table order
 * @param names - a `columns` option checked by {@link checkColumnNames}, or undefined
 * @param action - what the columns are for, in messages (`load`, `read`)
 */
export function pickColumns<C extends ColumnInfo>(source: string, table: string, stored: readonly C[], names: readonly string[] | undefined, action = 'load'): { columns: readonly C[]; indexes: readonly number[] } {
  if (names === undefined) return { columns: stored, indexes: stored.map((_, i) => i) };
  const indexes = names.map((n) => findColumn(source, table, stored, n).index);
  if (new Set(indexes).size !== indexes.length) {
    throw new StowageError('EBAD_CONFIG', `${source}: the columns given to ${action} ${JSON.stringify(table)} (${names.join(', ')}) name one of its columns twice.`, { details: { source, table, option: 'columns' } });
  }
  return { columns: indexes.map((i) => stored[i]!), indexes };
}

/**
 * Wraps a driver error as EDB, keeping it as `cause`; StowageErrors (and an
 * abort reason, when `signal` is aborted) pass through unchanged.
 *
 * @param err - the caught error
 * @param source - the source's name
 * @param action - what was being done ("read rows of T", "load T")
 * @param signal - the operation's signal: if it is aborted, its reason is returned
 */
export function dbError(err: unknown, source: string, action: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof StowageError) return err;
  const driverCode = (err as { code?: unknown } | undefined)?.code;
  const message = (err as Error | undefined)?.message ?? String(err);
  if (driverCode === 'SQLITE_BUSY' || driverCode === 'SQLITE_LOCKED') {
    // Another process (the DAQ writing, a VACUUM) held the SQLite file locked for longer than the source waits.
    return new StowageError(
      'EDB',
      `${source}: cannot ${action}: ${message}: another connection held it locked for longer than this source waits for a lock (option busyTimeoutMs, 5000 ms by default). Retry when its writer is idle, or give a longer busyTimeoutMs.`,
      { details: { source, action, driverCode }, cause: err, retryable: true },
    );
  }
  return new StowageError('EDB', `${source}: cannot ${action}: ${message}`, { details: { source, action, driverCode }, cause: err });
}

/**
 * The generic {@link TableReader.digestRange}: finds the key's position
 * with `columns()` (among the `columns` named, if given) and digests the
 * reader's own `rows()` output.
 *
 * @param reader - the reader
 * @param table - the table
 * @param key - the key column
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 * @param options - signal, columns
 */
export async function digestRangeOf(reader: TableReader, table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options: DigestRangeOptions = {}): Promise<RangeDigest> {
  const names = checkColumnNames(`TableReader.digestRange (${reader.name})`, options.columns);
  const stored = await reader.columns(table, { signal: options.signal });
  const { index } = findColumn(reader.name, table, stored, key);
  let keyIndex = index;
  const rowsOptions: RowsOptions = { key, signal: options.signal };
  if (names !== undefined) {
    keyIndex = pickColumns(reader.name, table, stored, names, 'read').indexes.indexOf(index);
    if (keyIndex < 0) {
      throw new StowageError('EBAD_CONFIG', `${reader.name}: the columns given to digest ${JSON.stringify(table)} (${names.join(', ')}) must include the key column ${JSON.stringify(stored[index]!.name)}.`, {
        details: { source: reader.name, table, option: 'columns', key },
      });
    }
    rowsOptions.columns = names;
  }
  if (lo !== undefined) rowsOptions.lo = lo;
  if (hi !== undefined) rowsOptions.hi = hi;
  const stream = await reader.rows(table, rowsOptions);
  try {
    return await digestBulkText(stream, { keyIndex, signal: options.signal, onProgress: options.onProgress });
  } finally {
    stream.destroy();
  }
}
