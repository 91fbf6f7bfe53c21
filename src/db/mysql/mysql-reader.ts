/**
 * The read side of MysqlSource over mysql2 connections: table metadata from
 * `information_schema`, key ranges, and rows streamed as bulk text.
 *
 * Rows are read with the text protocol, `rowsAsArray` and `typeCast:
 * false`: mysql2 then hands over each value as the server's own bytes (a
 * view into the packet, or null), so nothing is parsed into a JS number or
 * Date and nothing is allocated per value; the stream escapes those bytes
 * straight into 256 KiB chunks. When a chunk is not taken (the consumer is
 * slower), the connection is paused, so the server's result set waits in
 * TCP buffers and memory stays flat whatever the range's size.
 *
 * The server's text of each value is already exact and stable (DECIMAL
 * with its scale, BIGINT UNSIGNED in full, DOUBLE in the shortest text that
 * parses back to the same bits, DATETIME(6) with its digits, TIMESTAMP in
 * the session's `+00:00`), except FLOAT: MySQL prints it with 6 digits,
 * which loses bits, so FLOAT columns are selected as `col + 0e0` (the exact
 * double of the float, which a load rounds back to the same float).
 * Columns in `CHARACTER SET ascii` are selected as their bytes read as
 * latin1: the server stores any byte in them, and would send 0x80-0xFF as
 * `?` (a load puts the latin1 text back as the same bytes).
 *
 * @module
 */
import { Readable } from 'node:stream';
import type { Connection, PoolConnection, QueryError, QueryOptions, ResultSetHeader } from 'mysql2';
import { StowageError } from '../../errors.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { checkOptionKeys } from '../../util/options.js';
import type { RangeDigest } from '../range-digest.js';
import { checkKeyArgs, checkNextKeyArgs, checkNextKeysArgs, withLent } from '../source-common.js';
import type { KeyBounds } from '../key-probes.js';
import {
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

/** A mysql2 connection (pooled or not), callback API. */
export type MysqlConnection = Connection | PoolConnection;

/**
 * Quotes a MySQL identifier: backticks around it, each backtick inside
 * doubled. EBAD_CONFIG for an empty name or one holding NUL.
 *
 * @param name - a table or column name
 * @example
 * ```ts
 * quoteMysqlIdent('we"ird tab`le'); // '`we"ird tab``le`'
 * ```
 */
export function quoteMysqlIdent(name: string): string {
  checkIdentifier('quoteMysqlIdent', 'identifier', name);
  return `\`${name.replaceAll('`', '``')}\``;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'PROTOCOL_CONNECTION_LOST', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN', 'ENOENT']);
const AUTH_CODES = new Set(['ER_ACCESS_DENIED_ERROR', 'ER_DBACCESS_DENIED_ERROR', 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR', 'ER_NOT_SUPPORTED_AUTH_MODE', 'AUTH_SWITCH_PLUGIN_ERROR']);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'PROTOCOL_SEQUENCE_TIMEOUT']);
/** ER_NOT_ALLOWED_COMMAND, MySQL's ER_CLIENT_LOCAL_FILES_DISABLED, MariaDB's ER_LOAD_INFILE_CAPABILITY_DISABLED. */
const LOCAL_INFILE_ERRNOS = new Set([1148, 3948, 4166]);

/**
 * Wraps a mysql2 error as a StowageError with the driver's error as
 * `cause` and its `code`, `errno` and `sqlState` in `details`: ECONNECT
 * when the server cannot be reached or the connection was lost, EAUTH when
 * it refused the login, ETIMEOUT for a connect timeout, EDB otherwise.
 * StowageErrors pass through; with an aborted `signal`, its reason is
 * returned instead.
 *
 * @param err - the caught error
 * @param source - the source's name
 * @param action - what was being done ("read rows of T")
 * @param signal - the operation's signal
 */
export function mysqlError(err: unknown, source: string, action: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof StowageError) return err;
  const e = err as Partial<QueryError> | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const details = { source, action, driverCode: code, errno: e?.errno, sqlState: e?.sqlState };
  const message = e?.message || String(err);
  if (code !== undefined && CONNECT_CODES.has(code)) {
    return new StowageError('ECONNECT', `${source}: cannot ${action}: the MySQL server cannot be reached or closed the connection (${code}: ${message}).`, { details, cause: err });
  }
  if (code !== undefined && AUTH_CODES.has(code)) return new StowageError('EAUTH', `${source}: cannot ${action}: the MySQL server refused the login (${message}).`, { details, cause: err });
  if (code !== undefined && TIMEOUT_CODES.has(code)) return new StowageError('ETIMEOUT', `${source}: cannot ${action}: ${message}.`, { details, cause: err });
  const hint = e?.errno !== undefined && LOCAL_INFILE_ERRNOS.has(e.errno) ? ' (loads need LOAD DATA LOCAL INFILE: set local_infile = 1 on the server)' : '';
  return new StowageError('EDB', `${source}: cannot ${action}: ${message}${hint}`, { details, cause: err });
}

/**
 * Runs one statement on a connection (text protocol).
 *
 * @param conn - the connection
 * @param options - the statement and its per-query options
 */
export function mysqlQuery<T = unknown>(conn: MysqlConnection, options: QueryOptions): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    conn.query(options, (err: QueryError | null, result: unknown) => (err ? reject(err) : resolve(result as T)));
  });
}

/** Runs a prepared statement with bound values; rows as arrays. */
function mysqlExecute(conn: MysqlConnection, sql: string, values: (string | number)[]): Promise<unknown[][]> {
  return new Promise((resolve, reject) => {
    conn.execute({ sql, values, rowsAsArray: true }, (err: QueryError | null, rows: unknown) => (err ? reject(err) : resolve(rows as unknown[][])));
  });
}

/** Raw rows: every value the server's bytes, or null. */
/** A key as the server sent it (decimal digits), or null. */
function keyOf(v: Buffer | null | undefined): bigint | null {
  return v == null ? null : BigInt(v.toString('latin1'));
}

function rawRows(conn: MysqlConnection, sql: string): Promise<(Buffer | null)[][]> {
  return mysqlQuery<(Buffer | null)[][]>(conn, { sql, rowsAsArray: true, typeCast: false });
}

/** A connection lent for one operation: `release` is called once. */
export interface LentMysqlConnection {
  /** The connection. */
  readonly conn: MysqlConnection;
  /**
   * Gives it back.
   *
   * @param broken - the connection is in an unknown state (a query was cut
   *   short): close it instead of reusing it
   */
  release(broken: boolean): void;
}

/** How a reader gets its connections. */
export interface MysqlReaderContext {
  /** The source's name, for messages. */
  readonly name: string;
  /**
   * A connection for one operation.
   *
   * @param signal - the operation's signal
   * @param stream - for a row stream (it holds the connection until it ends), not a query
   */
  acquire(signal: AbortSignal | undefined, stream: boolean): Promise<LentMysqlConnection>;
  /** Called with each stream opened, so its owner can destroy it on close. */
  track(stream: Readable): void;
}

/** A table as the reader resolved it. */
export interface MysqlTableInfo {
  /** The table's name as stored. */
  readonly name: string;
  /** Stored columns in table order (generated columns left out). */
  readonly columns: ColumnInfo[];
  /** Per column: the `information_schema` DATA_TYPE (`bigint`, `float`...). */
  readonly dataTypes: string[];
  /** Per column: its character set (`utf8mb4`, `latin1`...), empty for columns without one. */
  readonly charsets: string[];
  /** Its storage engine (`InnoDB`, `MyISAM`...). */
  readonly engine: string;
  /** Whether that engine rolls back (InnoDB does; MyISAM, Aria, MEMORY do not). */
  readonly transactional: boolean;
}

/**
 * Character sets whose every value survives the trip through the utf8mb4
 * bulk text and back byte for byte: Unicode ones, `latin1` (every byte is
 * a character), `binary`, and `ascii`, which is carried as latin1 (see
 * {@link mysqlColumnExpr}): a server stores any byte in an ascii column,
 * strict `sql_mode` or not, and converting one of 0x80-0xFF to UTF-8 as
 * ascii would turn it into `?`.
 */
const CARRIED_CHARSETS = new Set(['', 'utf8mb4', 'utf8mb3', 'utf8', 'latin1', 'binary', 'ascii', 'ucs2', 'utf16', 'utf16le', 'utf32']);

/**
 * Refuses (EDB) to read columns whose character set does not survive the
 * utf8mb4 bulk text: cp932's duplicate NEC/IBM codes, say, come back as
 * other bytes, and both sides would then digest equal.
 *
 * @param source - the source's name
 * @param info - the resolved table
 * @param pick - the columns read, as indexes into `info.columns`
 */
export function mysqlCheckCharsets(source: string, info: MysqlTableInfo, pick: readonly number[]): void {
  const bad = pick.filter((i) => !CARRIED_CHARSETS.has(info.charsets[i]!));
  if (bad.length === 0) return;
  const list = bad.map((i) => `${JSON.stringify(info.columns[i]!.name)} (${info.charsets[i]})`).join(', ');
  throw new StowageError(
    'EDB',
    `${source}: cannot read table ${JSON.stringify(info.name)} exactly: column(s) ${list} use a character set whose values may not come back byte for byte through stowage's UTF-8 bulk text. Convert them (ALTER TABLE … CONVERT TO CHARACTER SET utf8mb4, or to VARBINARY/BLOB to keep the bytes), or leave them out with the columns option.`,
    { details: { source, table: info.name, columns: bad.map((i) => ({ name: info.columns[i]!.name, charset: info.charsets[i] })) } },
  );
}

/**
 * The SELECT expression of a stored column: FLOAT as its exact double,
 * ascii as its bytes read as latin1 (0x80-0xFF included, each one
 * character, where a conversion from ascii would give `?`), other columns
 * as they are.
 *
 * @param info - the resolved table
 * @param i - the column, as an index into `info.columns`
 */
export function mysqlColumnExpr(info: MysqlTableInfo, i: number): string {
  const q = quoteMysqlIdent(info.columns[i]!.name);
  if (info.dataTypes[i] === 'float') return `(${q} + 0e0)`;
  if (info.charsets[i] === 'ascii') return `CONVERT(CAST(${q} AS BINARY) USING latin1)`;
  return q;
}

/**
 * Character sets whose columns store the same value from bulk text sent as
 * `binary` as from the same text sent as `utf8mb4`: the server checks
 * that the bytes are well-formed in the column's character set either way,
 * and never converts them.
 */
const BINARY_LOADABLE = new Set(['binary', 'utf8mb4', 'utf8mb3', 'utf8']);

/**
 * The types without a character set whose values read the same from text
 * sent as `binary`: numbers, dates and times, bit strings, byte strings and
 * geometry. Not MariaDB's INET4, INET6 and UUID (nor any other type a
 * plugin adds): from a binary string they take the bytes as the value
 * itself, so `2001:db8::1:2:34` (16 characters) would be stored as the
 * address of those 16 bytes, and a UUID's text fails; their tables are sent
 * as `utf8mb4`, which they parse.
 */
const BINARY_LOADABLE_TYPES = new Set([
  'tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint', 'decimal', 'numeric', 'float', 'double', 'real', 'bit', 'bool', 'boolean',
  'date', 'time', 'datetime', 'timestamp', 'year',
  'binary', 'varbinary', 'tinyblob', 'blob', 'mediumblob', 'longblob',
  'geometry', 'point', 'linestring', 'polygon', 'multipoint', 'multilinestring', 'multipolygon', 'geometrycollection',
]);

/**
 * The column list and SET clause of a `LOAD DATA` of bulk text into the
 * columns picked, and the character set to send the text as.
 *
 * Each column is named, except ascii ones, which are read into a user
 * variable and stored as the bytes of its latin1 text (the reverse of
 * {@link mysqlColumnExpr}; text with a character latin1 lacks makes the
 * server warn, and the load roll back).
 *
 * The text is sent as `binary` when every column picked is UTF-8, or one of
 * the built-in types without a character set (see
 * `BINARY_LOADABLE_TYPES`): the server then stores each value exactly as it would
 * from `utf8mb4` (it checks the bytes against the column's own UTF-8, and
 * malformed text still fails with a warning), but reads the fields a byte
 * at a time instead of a character at a time (MariaDB's `read_field`
 * looks up the length of every character of a multi-byte set: about 5%
 * of the server's CPU in a 1M-row load). Other character sets (latin1,
 * ascii, UTF-16...) are converted from the UTF-8 text, and MySQL 8 refuses
 * a `JSON` value from a binary string, so such tables are sent as
 * `utf8mb4`.
 *
 * @param info - the resolved table
 * @param pick - the columns loaded, as indexes into `info.columns` in field order
 * @returns the parenthesised column list, the ` SET ...` clause (empty if none), and the character set of the text
 */
export function mysqlLoadColumns(info: MysqlTableInfo, pick: readonly number[]): { columns: string; set: string; charset: 'binary' | 'utf8mb4' } {
  const targets: string[] = [];
  const sets: string[] = [];
  pick.forEach((i, n) => {
    const q = quoteMysqlIdent(info.columns[i]!.name);
    if (info.charsets[i] !== 'ascii') {
      targets.push(q);
      return;
    }
    targets.push(`@stowage_v${n}`);
    sets.push(`${q} = CONVERT(CAST(CONVERT(@stowage_v${n} USING latin1) AS BINARY) USING ascii)`);
  });
  const charset = pick.every((i) => (info.charsets[i] === '' ? BINARY_LOADABLE_TYPES.has(info.dataTypes[i]!) : BINARY_LOADABLE.has(info.charsets[i]!) && info.dataTypes[i] !== 'json')) ? 'binary' : 'utf8mb4';
  return { columns: `(${targets.join(', ')})`, set: sets.length > 0 ? ` SET ${sets.join(', ')}` : '', charset };
}

/**
 * Whether an ENUM's list (its `COLUMN_TYPE`, `enum('a','','it''s')`) has
 * the empty string as a member. Without one, `''` in bulk text can only be
 * the error value (index 0) that a non-strict session stores for a value
 * not in the list; with one, the two read the same (a limit of the text).
 *
 * @param columnType - `information_schema.COLUMNS.COLUMN_TYPE`
 */
export function enumHasEmptyMember(columnType: string): boolean {
  const open = columnType.indexOf('(');
  if (open < 0) return false;
  let i = open + 1;
  while (i < columnType.length && columnType[i] === "'") {
    let len = 0;
    i++;
    for (;;) {
      const c = columnType[i];
      if (c === undefined) return false;
      if (c === "'" && columnType[i + 1] === "'") {
        i += 2;
      } else if (c === '\\') {
        i += 2;
      } else if (c === "'") {
        i++;
        break;
      } else {
        i++;
      }
      len++;
    }
    if (len === 0) return true;
    if (columnType[i] !== ',') return false;
    i++;
  }
  return false;
}

const INTEGER_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint']);
const GENERATED = /\b(VIRTUAL|STORED|PERSISTENT) GENERATED\b/i;

// Three plain lookups, not one join with a correlated subquery: MariaDB
// answers each from the table's definition in about a millisecond, where
// the join took 45-80 ms (it opens every table of the schema).
const COLUMNS_SQL =
  'SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, EXTRA, CHARACTER_SET_NAME FROM information_schema.COLUMNS ' +
  'WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY TABLE_NAME, ORDINAL_POSITION';
const BASE_TABLE_SQL =
  'SELECT t.TABLE_NAME, t.ENGINE, e.TRANSACTIONS, t.TABLE_TYPE FROM information_schema.TABLES t LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = ?';

/** What a name that is not a base table is, and what to do instead, by information_schema's TABLE_TYPE. */
function mysqlNotATable(source: string, table: string, type: string): StowageError {
  switch (type) {
    case 'VIEW':
      return notATable(source, table, 'a view', 'partition archives hold the rows of tables; dump the tables it reads, and keep its CREATE VIEW with the database\'s setup scripts.');
    case 'SYSTEM VERSIONED':
      return notATable(source, table, 'a system-versioned table (WITH SYSTEM VERSIONING)', 'stowage does not dump those, since its history rows could not be loaded back as they were; back it up with mariadb-dump, or dump a copy made without system versioning (CREATE TABLE copy AS SELECT * FROM it).');
    case 'SEQUENCE':
      return notATable(source, table, 'a sequence', 'partition archives hold the rows of tables; a table\'s own AUTO_INCREMENT is carried in its DDL.');
    default:
      return notATable(source, table, `a ${type.toLowerCase()} object`, 'only base tables are dumped and loaded.');
  }
}
const PRIMARY_KEY_SQL = "SELECT TABLE_NAME, COLUMN_NAME, SEQ_IN_INDEX FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'";

const text = (v: unknown): string => (v === null || v === undefined ? '' : Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

/**
 * Resolves a table name as the server does (case-sensitively unless
 * `lower_case_table_names` says otherwise) and reads its stored columns;
 * ENO_TABLE if there is no such base table.
 *
 * @param source - the source's name, for messages
 * @param conn - the connection
 * @param table - the table asked for
 */
export async function mysqlTableInfo(source: string, conn: MysqlConnection, table: string): Promise<MysqlTableInfo> {
  // Queued together: the connection runs them back to back.
  const [rows, bases, keys] = await Promise.all([mysqlExecute(conn, COLUMNS_SQL, [table]), mysqlExecute(conn, BASE_TABLE_SQL, [table]), mysqlExecute(conn, PRIMARY_KEY_SQL, [table])]);
  // On a server with lower_case_table_names set, the lookup is
  // case-insensitive and returns the stored name; prefer an exact match.
  const baseNames = new Set(bases.filter((r) => text(r[3]) === 'BASE TABLE').map((r) => text(r[0])));
  const names = [...new Set(rows.map((r) => text(r[0])))].filter((n) => baseNames.has(n));
  if (names.length === 0) {
    // There, but a view or a system-versioned table: say so, not "does not exist".
    const other = bases.find((r) => text(r[0]) === table) ?? (bases.length === 1 ? bases[0] : undefined);
    throw other === undefined || text(other[3]) === 'BASE TABLE' ? noSuchTable(source, table) : mysqlNotATable(source, table, text(other[3]));
  }
  const name = names.includes(table) ? table : names.length === 1 ? names[0]! : undefined;
  if (name === undefined) throw noSuchTable(source, table);
  const pkSeq = new Map<string, number>();
  for (const k of keys) if (text(k[0]) === name) pkSeq.set(text(k[1]), Number(k[2]));
  const columns: ColumnInfo[] = [];
  const dataTypes: string[] = [];
  const charsets: string[] = [];
  for (const r of rows) {
    if (text(r[0]) !== name || GENERATED.test(text(r[5]))) continue;
    const col = text(r[1]);
    columns.push(Object.freeze({ name: col, type: text(r[2]), nullable: text(r[4]) === 'YES', primaryKey: pkSeq.get(col) ?? 0 }));
    dataTypes.push(text(r[3]).toLowerCase());
    charsets.push(text(r[6]).toLowerCase());
  }
  if (columns.length === 0) throw noSuchTable(source, table);
  const base = bases.find((r) => text(r[0]) === name && text(r[3]) === 'BASE TABLE')!;
  return { name, columns, dataTypes, charsets, engine: text(base[1]), transactional: text(base[2]).toUpperCase() === 'YES' };
}

/**
 * Finds the key column and checks that it is an integer column (EBAD_CONFIG otherwise).
 *
 * @param source - the source's name
 * @param info - the resolved table
 * @param key - the key column asked for
 */
export function mysqlKeyColumn(source: string, info: MysqlTableInfo, key: string): ColumnInfo {
  const { column, index } = findColumn(source, info.name, info.columns, key);
  if (!INTEGER_TYPES.has(info.dataTypes[index]!)) {
    throw new StowageError('EBAD_CONFIG', `Key column ${JSON.stringify(column.name)} of table ${JSON.stringify(info.name)} in ${source} is ${column.type}, not an integer column: choose an integer key.`, {
      details: { source, table: info.name, option: 'key', key: column.name, type: column.type },
    });
  }
  return column;
}

/**
 * The SELECT of a key range: the stored columns (see
 * {@link mysqlColumnExpr}), rows with `lo <= key <= hi` (never a NULL
 * key), in key then primary-key order. Bounds are integer literals from validated bigints,
 * never strings: MySQL compares a BIGINT with a string as doubles, which
 * would blur keys beyond 2^53.
 *
 * @param info - the resolved table
 * @param keyName - the key column's name
 * @param lo - smallest key, if any
 * @param hi - largest key, if any
 * @param pick - the columns selected, as indexes into `info.columns` in field order (default: all, in table order)
 */
export function mysqlRangeQuery(info: MysqlTableInfo, keyName: string, lo: bigint | undefined, hi: bigint | undefined, pick?: readonly number[]): string {
  const cols = (pick ?? info.columns.map((_, i) => i)).map((i) => mysqlColumnExpr(info, i)).join(', ');
  const key = quoteMysqlIdent(keyName);
  const where = lo !== undefined && hi !== undefined ? `${key} BETWEEN ${lo} AND ${hi}` : lo !== undefined ? `${key} >= ${lo}` : hi !== undefined ? `${key} <= ${hi}` : `${key} IS NOT NULL`;
  const pk = info.columns
    .filter((c) => c.primaryKey > 0 && c.name !== keyName)
    .sort((a, b) => a.primaryKey - b.primaryKey)
    .map((c) => `, ${quoteMysqlIdent(c.name)}`)
    .join('');
  return `SELECT ${cols} FROM ${quoteMysqlIdent(info.name)} WHERE ${where} ORDER BY ${key}${pk}`;
}

const CHUNK_ALLOC = 256 * 1024;
const CHUNK_PUSH = 192 * 1024;
const BACKSLASH = 0x5c;
/** Byte → its escape letter, 0 for bytes written as they are. */
const ESCAPE = new Uint8Array(256);
ESCAPE[0x5c] = 0x5c;
ESCAPE[0x09] = 0x74;
ESCAPE[0x0a] = 0x6e;
ESCAPE[0x0d] = 0x72;
ESCAPE[0x00] = 0x30;

/**
 * Writes `src[start, stop)` to `out` at `pos` in bulk-text escaping;
 * returns the new position. `out` must have room for twice the bytes.
 *
 * Four bytes at a time where none needs escaping (SWAR: a word holds a
 * byte below 0x0e or a backslash iff the test is non-zero; a false alarm,
 * another control byte, only sends those four bytes the slow way): about
 * twice as fast as a byte loop on the fields of a typical table.
 *
 * @param src - the bytes, and a DataView over exactly them
 * @param out - the output, and a DataView over exactly it
 */
function escapeInto(src: Uint8Array, sv: DataView, start: number, stop: number, out: Buffer, ov: DataView, pos: number): number {
  let j = start;
  for (const last = stop - 4; j <= last; ) {
    const w = sv.getInt32(j, true);
    const b = w ^ 0x5c5c5c5c;
    if (((((w - 0x0e0e0e0e) & ~w) | ((b - 0x01010101) & ~b)) & 0x80808080) === 0) {
      ov.setInt32(pos, w, true);
      pos += 4;
      j += 4;
      continue;
    }
    for (const e = j + 4; j < e; j++) pos = escapeByte(src[j]!, out, pos);
  }
  for (; j < stop; j++) pos = escapeByte(src[j]!, out, pos);
  return pos;
}

function escapeByte(c: number, out: Buffer, pos: number): number {
  const e = ESCAPE[c]!;
  if (e === 0) {
    out[pos] = c;
    return pos + 1;
  }
  out[pos] = BACKSLASH;
  out[pos + 1] = e;
  return pos + 2;
}

/** A DataView over exactly the bytes of `b`. */
const viewOf = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** What the stream reads of a mysql2 row packet: the payload is `buffer[offset, end)`. */
interface RowPacket {
  readonly buffer: Buffer;
  readonly offset: number;
  readonly end: number;
}

/** The minimal mysql2 Query emitter surface the stream uses. */
interface QueryEmitter {
  on(event: 'result', listener: (row: (Buffer | null)[] | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'end', listener: () => void): this;
}

/**
 * Streams a query's rows as bulk text, pausing the connection when the
 * consumer does not keep up. Destroying it before the end closes the
 * connection (the server stops the query when its socket goes away).
 */
class MysqlRowStream extends Readable {
  readonly #lent: LentMysqlConnection;
  readonly #source: string;
  readonly #action: string;
  readonly #signal: AbortSignal | undefined;
  readonly #disposeAbort: () => void;
  #buf: Buffer = Buffer.allocUnsafe(CHUNK_ALLOC);
  /** A DataView over `#buf`, for escapeInto. */
  #view: DataView = viewOf(this.#buf);
  /** The last packet buffer seen, and a DataView over it. */
  #src: Uint8Array | undefined;
  #srcView: DataView = new DataView(new ArrayBuffer(0));
  #pos = 0;
  #paused = false;
  #done = false;
  #onConnectionError: (err: Error) => void = () => {};

  constructor(lent: LentMysqlConnection, sql: string, source: string, action: string, signal: AbortSignal | undefined) {
    super({ highWaterMark: 2 * CHUNK_ALLOC });
    this.#lent = lent;
    this.#source = source;
    this.#action = action;
    this.#signal = signal;
    this.#disposeAbort = onAbort(signal, (reason) => this.destroy(reason as Error));
    const onError = (err: Error): void => {
      if (this.#finish(true)) this.destroy(mysqlError(err, this.#source, this.#action, this.#signal) as Error);
    };
    // mysql2 reports a lost connection to a query without a callback only
    // as an 'error' of the connection.
    this.#onConnectionError = onError;
    lent.conn.on('error', onError);
    const q = lent.conn.query({ sql, rowsAsArray: true, typeCast: false }) as unknown as QueryEmitter;
    // Rows are encoded straight from mysql2's row packets: no Buffer per
    // field, no row array (those were about 40% of a dump's main thread).
    // The hook is mysql2's per-query row parser; if a mysql2 release stops
    // using it, rows arrive as arrays through 'result' and take the general
    // path below, so the output never depends on the hook being there.
    const encoder = {
      next: (packet: unknown, fields: unknown): null => {
        this.#packet(packet as RowPacket, (fields as unknown[]).length);
        return null;
      },
    };
    Object.defineProperty(q, '_rowParser', { configurable: true, get: () => encoder, set: () => {} });
    q.on('result', (row) => {
      if (row !== null) this.#row(row);
    });
    q.on('error', onError);
    q.on('end', () => {
      if (!this.#finish(false)) return;
      if (this.#pos > 0) this.push(this.#buf.subarray(0, this.#pos));
      this.push(null);
    });
  }

  override _read(): void {
    if (this.#paused && !this.#done) {
      this.#paused = false;
      this.#lent.conn.resume();
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#finish(true);
    callback(err);
  }

  /** Ends the query's use of the connection once; false if already done. */
  #finish(broken: boolean): boolean {
    if (this.#done) return false;
    this.#done = true;
    this.#disposeAbort();
    this.#lent.conn.off('error', this.#onConnectionError);
    if (this.#paused && !broken) this.#lent.conn.resume();
    this.#lent.release(broken);
    return true;
  }

  /** Encodes one text-protocol row packet: per field a length-coded string, or 0xFB for NULL. */
  #packet(packet: RowPacket, n: number): void {
    if (this.#done) return;
    const src = packet.buffer;
    if (src !== this.#src) {
      this.#src = src;
      this.#srcView = viewOf(src);
    }
    const sv = this.#srcView;
    let off = packet.offset;
    const end = packet.end;
    // Worst case: every byte escaped, plus the separators and \N markers.
    const worst = 2 * (end - off) + 3 * n + 1;
    if (this.#pos + worst > this.#buf.length) this.#reserve(worst);
    const buf = this.#buf;
    const ov = this.#view;
    let pos = this.#pos;
    for (let i = 0; i < n; i++) {
      if (i > 0) buf[pos++] = 0x09;
      let len = src[off++]!;
      if (len >= 0xfb) {
        if (len === 0xfb) {
          buf[pos++] = BACKSLASH;
          buf[pos++] = 0x4e;
          continue;
        }
        if (len === 0xfc) {
          len = src[off]! | (src[off + 1]! << 8);
          off += 2;
        } else if (len === 0xfd) {
          len = src[off]! | (src[off + 1]! << 8) | (src[off + 2]! << 16);
          off += 3;
        } else {
          // 0xfe: 8 bytes; a field longer than 2^53 cannot be in one packet.
          len = src.readUInt32LE(off) + src.readUInt32LE(off + 4) * 0x1_0000_0000;
          off += 8;
        }
      }
      const stop = off + len;
      if (stop > end) throw new StowageError('EDB', `${this.#source}: a row packet from the server is shorter than its fields say (${this.#action}).`, { details: { source: this.#source } });
      pos = escapeInto(src, sv, off, stop, buf, ov, pos);
      off = stop;
    }
    buf[pos++] = 0x0a;
    this.#pos = pos;
    if (pos >= CHUNK_PUSH) this.#flush();
  }

  #row(row: (Buffer | null)[]): void {
    if (this.#done) return;
    const n = row.length;
    // Worst case: every byte escaped, every field \N, plus the separators.
    let worst = 3 * n;
    for (let i = 0; i < n; i++) worst += 2 * (row[i]?.length ?? 0);
    if (this.#pos + worst > this.#buf.length) this.#reserve(worst);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < n; i++) {
      if (i > 0) buf[pos++] = 0x09;
      const v = row[i]!;
      if (v === null) {
        buf[pos++] = BACKSLASH;
        buf[pos++] = 0x4e;
        continue;
      }
      pos = escapeInto(v, viewOf(v), 0, v.length, buf, this.#view, pos);
    }
    buf[pos++] = 0x0a;
    this.#pos = pos;
    if (pos >= CHUNK_PUSH) this.#flush();
  }

  #setBuffer(b: Buffer): void {
    this.#buf = b;
    this.#view = viewOf(b);
  }

  /** Makes room for `bytes` more, pushing what is written so far. */
  #reserve(bytes: number): void {
    if (this.#pos + bytes <= this.#buf.length) return;
    if (this.#pos > 0) this.#flush();
    if (bytes > this.#buf.length) this.#setBuffer(Buffer.allocUnsafe(Math.max(bytes, CHUNK_ALLOC)));
  }

  #flush(): void {
    const chunk = this.#buf.subarray(0, this.#pos);
    this.#setBuffer(Buffer.allocUnsafe(CHUNK_ALLOC));
    this.#pos = 0;
    if (!this.push(chunk) && !this.#paused && !this.#done) {
      this.#paused = true;
      this.#lent.conn.pause();
    }
  }
}

/** Runs `fn` on a lent connection; an abort or a failure mid-query closes the connection. */
function withConnection<T>(ctx: MysqlReaderContext, action: string, signal: AbortSignal | undefined, fn: (conn: MysqlConnection) => Promise<T>): Promise<T> {
  return withLent(
    () => ctx.acquire(signal, false),
    signal,
    (lent) => fn(lent.conn),
    (err) => mysqlError(err, ctx.name, action, signal),
    (err) => (err as { fatal?: boolean } | null | undefined)?.fatal === true,
  );
}

/**
 * A {@link TableReader} over MySQL connections; the object a snapshot
 * hands to its callback, and the read side of MysqlSource.
 */
export class MysqlReader implements TableReader {
  /** Always `'mysql'`. */
  readonly engine = 'mysql' as const;
  readonly #ctx: MysqlReaderContext;

  /** @param ctx - where connections come from */
  constructor(ctx: MysqlReaderContext) {
    this.#ctx = ctx;
  }

  /** A stable label of the database, recorded in the Catalog and in manifests (see {@link TableReader.name}). */
  get name(): string {
    return this.#ctx.name;
  }

  /** The base tables of the database, sorted (see {@link TableReader.tables}). */
  async tables(options: DbOptions = {}): Promise<string[]> {
    checkOptionKeys('MysqlSource.tables', options, ['signal']);
    return withConnection(this.#ctx, 'list tables', options.signal, async (conn) => {
      const rows = await rawRows(conn, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'");
      return rows.map((r) => text(r[0])).sort(compareNames);
    });
  }

  /** The stored columns of a table in table order; ENO_TABLE if it does not exist (see {@link TableReader.columns}). */
  async columns(table: string, options: DbOptions = {}): Promise<ColumnInfo[]> {
    checkOptionKeys('MysqlSource.columns', options, ['signal']);
    checkIdentifier('MysqlSource.columns', 'table', table);
    return withConnection(this.#ctx, `read the columns of ${JSON.stringify(table)}`, options.signal, async (conn) => (await mysqlTableInfo(this.name, conn, table)).columns);
  }

  /**
   * The engine's own DDL for the table (see {@link TableReader.schema}).
   *
   * The text of `SHOW CREATE TABLE` (with backquoted names, the session's
   * `sql_mode` being stowage's), then `;` and a newline.
   */
  async schema(table: string, options: DbOptions = {}): Promise<string> {
    checkOptionKeys('MysqlSource.schema', options, ['signal']);
    checkIdentifier('MysqlSource.schema', 'table', table);
    return withConnection(this.#ctx, `read the schema of ${JSON.stringify(table)}`, options.signal, async (conn) => {
      const info = await mysqlTableInfo(this.name, conn, table);
      const rows = await rawRows(conn, `SHOW CREATE TABLE ${quoteMysqlIdent(info.name)}`);
      const ddl = rows[0]?.[1];
      if (ddl === null || ddl === undefined) throw noSuchTable(this.name, table);
      return `${ddl.toString('utf8')};\n`;
    });
  }

  /** Smallest and largest key and the row counts, in one scan (see {@link TableReader.keyRange}). */
  async keyRange(table: string, key: string, options: DbOptions = {}): Promise<KeyRange> {
    checkKeyArgs('MysqlSource.keyRange', table, key, options);
    const [lo, hi, count, nulls] = await this.#keyRow('read the key range', table, key, options.signal, (k, t) => `SELECT MIN(${k}), MAX(${k}), COUNT(${k}), COUNT(*) - COUNT(${k}) FROM ${t}`);
    return Object.freeze({ lo: keyOf(lo), hi: keyOf(hi), count: Number(text(count)), nulls: Number(text(nulls)) });
  }

  /**
   * The smallest non-NULL key with `key >= from`, or `null` if there is
   * none: one indexed `MIN()`, so a walk over a sparse key column asks once
   * per occupied range (see {@link KeySeeker}). ENO_TABLE and EBAD_CONFIG
   * as {@link MysqlReader.keyRange}.
   *
   * @param table - the table
   * @param key - the integer key column
   * @param from - the bound
   * @param options - signal
   */
  async nextKey(table: string, key: string, from: KeyBound, options: DbOptions = {}): Promise<bigint | null> {
    const lo = checkNextKeyArgs('MysqlSource.nextKey', table, key, from, options);
    // The bound is a validated bigint, written as digits: an exact integer literal, whatever the column's sign.
    const [v] = await this.#keyRow('find the next key', table, key, options.signal, (k, t) => `SELECT MIN(${k}) FROM ${t} WHERE ${k} >= ${lo}`);
    return keyOf(v);
  }

  /** Smallest and largest key, and whether a key is NULL, from the key's index (see {@link KeyProbes.bounds}). */
  async keyBounds(table: string, key: string, options: DbOptions = {}): Promise<KeyBounds> {
    checkKeyArgs('MysqlSource.keyBounds', table, key, options);
    const [lo, hi, nulls] = await this.#keyRow('read the key range', table, key, options.signal, (k, t) => `SELECT (SELECT MIN(${k}) FROM ${t}), (SELECT MAX(${k}) FROM ${t}), EXISTS(SELECT 1 FROM ${t} WHERE ${k} IS NULL)`);
    return Object.freeze({ lo: keyOf(lo), hi: keyOf(hi), nulls: Number(text(nulls)) !== 0 });
  }

  /** For each bound, the smallest key at or above it, in one query (see {@link KeyProbes.nextKeys}). */
  async nextKeys(table: string, key: string, froms: readonly bigint[], options: DbOptions = {}): Promise<(bigint | null)[]> {
    const bounds = checkNextKeysArgs('MysqlSource.nextKeys', table, key, froms, options);
    if (bounds.length === 0) return [];
    // Each bound written as nextKey writes it: one indexed MIN() per bound.
    const row = await this.#keyRow('find the next keys', table, key, options.signal, (k, t) => `SELECT ${bounds.map((lo) => `(SELECT MIN(${k}) FROM ${t} WHERE ${k} >= ${lo})`).join(', ')}`);
    return bounds.map((_, i) => keyOf(row[i]));
  }

  /** The first row of `sql(k, t)` (`k` the quoted key column, `t` the quoted table) on a lent connection; ENO_TABLE and EBAD_CONFIG as {@link MysqlReader.keyRange}. */
  #keyRow(action: string, table: string, key: string, signal: AbortSignal | undefined, sql: (k: string, t: string) => string): Promise<(Buffer | null)[]> {
    return withConnection(this.#ctx, `${action} of ${JSON.stringify(table)}`, signal, async (conn) => {
      const info = await mysqlTableInfo(this.name, conn, table);
      const k = quoteMysqlIdent(mysqlKeyColumn(this.name, info, key).name);
      return (await rawRows(conn, sql(k, quoteMysqlIdent(info.name))))[0] ?? [];
    });
  }

  /** The rows with `lo <= key <= hi` as a bulk text stream with backpressure (see {@link TableReader.rows}). */
  async rows(table: string, options: RowsOptions): Promise<Readable> {
    checkOptionKeys('MysqlSource.rows', options, ['key', 'lo', 'hi', 'signal', 'columns']);
    checkIdentifier('MysqlSource.rows', 'table', table);
    checkIdentifier('MysqlSource.rows', 'key', options?.key);
    const names = checkColumnNames('MysqlSource.rows', options.columns);
    const { lo, hi } = toKeyBounds('MysqlSource.rows', options.lo, options.hi);
    const { signal } = options;
    throwIfAborted(signal);
    const ctx = this.#ctx;
    const lent = await ctx.acquire(signal, true);
    let stream: MysqlRowStream;
    try {
      throwIfAborted(signal);
      const info = await mysqlTableInfo(ctx.name, lent.conn, table);
      const key = mysqlKeyColumn(ctx.name, info, options.key);
      throwIfAborted(signal);
      const { indexes } = pickColumns(ctx.name, info.name, info.columns, names, 'read');
      mysqlCheckCharsets(ctx.name, info, indexes);
      stream = new MysqlRowStream(lent, mysqlRangeQuery(info, key.name, lo, hi, indexes), ctx.name, `read rows of ${JSON.stringify(info.name)}`, signal);
    } catch (err) {
      lent.release(false);
      throw mysqlError(err, ctx.name, `read rows of ${JSON.stringify(table)}`, signal);
    }
    ctx.track(stream);
    return stream;
  }

  /** Count and digest of the rows with `lo <= key <= hi` (see {@link TableReader.digestRange}). */
  async digestRange(table: string, key: string, lo: KeyBound | undefined, hi: KeyBound | undefined, options: DigestRangeOptions = {}): Promise<RangeDigest> {
    checkOptionKeys('MysqlSource.digestRange', options, ['signal', 'columns', 'onProgress']);
    checkColumnNames('MysqlSource.digestRange', options.columns);
    return digestRangeOf(this, table, key, lo, hi, options);
  }
}

/** Byte order of the UTF-8 names (what a binary collation sorts by). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The result of a statement that returns no rows. */
export type MysqlOk = ResultSetHeader;
