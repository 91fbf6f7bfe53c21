/** Helpers of the MysqlSource tests: the all-types fixture on a real MariaDB, read back through text casts. */
import type { Connection } from 'mysql2/promise';
import type { MariadbServer } from '../../support/index.js';
import { quoteMysqlIdent } from '../../../src/db/mysql/index.js';
import { ALL_TYPES_TABLE, columnsFor, createAllTypesTable, rowsFor, type FixtureValue } from '../../fixtures/db/all-types.js';

/** A connection to `database` with the session in UTC (TIMESTAMP values are read and written as UTC). */
export async function connectUtc(db: MariadbServer, database = db.database): Promise<Connection> {
  const c = await db.connect({ database, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true });
  await c.query("SET time_zone = '+00:00'");
  return c;
}

/** Runs SQL in `database` (UTC session) and returns the rows as arrays. */
export async function sql(db: MariadbServer, database: string, text: string, values: unknown[] = []): Promise<unknown[][]> {
  const c = await connectUtc(db, database);
  try {
    const [rows] = await c.query({ sql: text, rowsAsArray: true }, values);
    return rows as unknown[][];
  } finally {
    await c.end();
  }
}

/** A value bound through mysql2's binary protocol: integers as decimal strings (never a JS number), binary as a Buffer. */
export function bind(v: FixtureValue): string | number | Buffer | null {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v);
  return v;
}

/** Creates the all-types table in `database` and inserts the fixture rows with bound parameters. */
export async function makeFixture(db: MariadbServer, database: string, table = ALL_TYPES_TABLE): Promise<void> {
  const c = await connectUtc(db, database);
  try {
    await c.query(createAllTypesTable('mysql', table, quoteMysqlIdent));
    const rows = rowsFor('mysql');
    const ins = `INSERT INTO ${quoteMysqlIdent(table)} VALUES (${rows[0]!.map(() => '?').join(', ')})`;
    for (const r of rows) await c.execute(ins, r.map(bind));
  } finally {
    await c.end();
  }
}

/** Per fixture column: the SELECT expression that gives its value as text. */
const TEXT_EXPR: Record<string, (q: string) => string> = {
  bin: (q) => `LOWER(HEX(${q}))`,
  dt: (q) => `DATE_FORMAT(${q}, '%Y-%m-%d %H:%i:%s.%f')`,
  ts: (q) => `DATE_FORMAT(${q}, '%Y-%m-%d %H:%i:%s.%f')`,
  d: (q) => `DATE_FORMAT(${q}, '%Y-%m-%d')`,
};

/** Every row of the fixture table, each value cast to text by the server, in key order. */
export async function textRows(db: MariadbServer, database: string, table = ALL_TYPES_TABLE): Promise<(string | null)[][]> {
  const exprs = columnsFor('mysql').map((c) => (TEXT_EXPR[c.name] ?? ((q: string) => `CAST(${q} AS CHAR)`))(quoteMysqlIdent(c.name)));
  const rows = await sql(db, database, `SELECT ${exprs.join(', ')} FROM ${quoteMysqlIdent(table)} ORDER BY SEQNO, ROW_COUNTER`);
  return rows.map((r) => r.map((v) => (v === null ? null : String(v))));
}

const INT_COLUMNS = new Set(['SEQNO', 'ROW_COUNTER', 'i32', 'i64', 'u64']);

/** A fixture value and a server's text of it, made comparable: -0 and every bit of a double kept, bytes as hex. */
export function norm(column: string, v: FixtureValue | string | null): string {
  if (v === null) return 'NULL';
  if (column === 'dbl') {
    const x = typeof v === 'number' ? v : Number(v);
    return `double:${Object.is(x, -0) ? '-0' : String(x)}`;
  }
  if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`;
  if (column === 'bin') return `hex:${String(v)}`;
  if (INT_COLUMNS.has(column)) return `int:${String(v)}`;
  return `text:${JSON.stringify(v)}`;
}

/** Rows of values (fixture or text) normalised with {@link norm}, by the fixture's MySQL columns. */
export function normRows(rows: readonly (readonly (FixtureValue | string | null)[])[]): string[][] {
  const cols = columnsFor('mysql');
  return rows.map((r) => r.map((v, i) => norm(cols[i]!.name, v)));
}
