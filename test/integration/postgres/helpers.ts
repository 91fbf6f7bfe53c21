/** Helpers of the PostgresSource tests: the all-types fixture on a real PostgreSQL, read back through text casts. */
import type pg from 'pg';
import type { PostgresServer } from '../../support/index.js';
import { quotePgIdent } from '../../../src/db/postgres/index.js';
import { ALL_TYPES_TABLE, columnsFor, createAllTypesTable, rowsFor, type FixtureValue } from '../../fixtures/db/all-types.js';

/** A client on `database` with the session in UTC (timestamptz values are read and written as UTC). */
export async function connectUtc(db: PostgresServer, database = db.database): Promise<pg.Client> {
  const c = await db.connect({ database });
  await c.query("SET TimeZone = 'UTC'");
  return c;
}

/** Runs SQL in `database` (UTC session) and returns the rows as arrays. */
export async function sql(db: PostgresServer, database: string, text: string, values: unknown[] = []): Promise<unknown[][]> {
  const c = await connectUtc(db, database);
  try {
    return (await c.query({ text, values, rowMode: 'array' })).rows as unknown[][];
  } finally {
    await c.end();
  }
}

/** A value bound as a parameter: integers and doubles as exact text (never through a lossy conversion), binary as a Buffer. */
export function bind(v: FixtureValue): string | Buffer | null {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (v instanceof Uint8Array) return Buffer.from(v);
  return v;
}

/** Creates the all-types table in `database` (and `schema`) and inserts the fixture rows with bound parameters. */
export async function makeFixture(db: PostgresServer, database: string, table = ALL_TYPES_TABLE, schema = 'public'): Promise<void> {
  const c = await connectUtc(db, database);
  try {
    await c.query(`SET search_path = ${quotePgIdent(schema)}`);
    await c.query(createAllTypesTable('postgres', table, quotePgIdent));
    const rows = rowsFor('postgres');
    const ins = `INSERT INTO ${quotePgIdent(table)} VALUES (${rows[0]!.map((_, i) => `$${i + 1}`).join(', ')})`;
    for (const r of rows) await c.query(ins, r.map(bind));
  } finally {
    await c.end();
  }
}

/** Per fixture column: the SELECT expression that gives its value as text. */
const TEXT_EXPR: Record<string, (q: string) => string> = {
  bin: (q) => `encode(${q}, 'hex')`,
  dt: (q) => `to_char(${q}, 'YYYY-MM-DD HH24:MI:SS.US')`,
  ts: (q) => `to_char(${q} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')`,
  d: (q) => `to_char(${q}, 'YYYY-MM-DD')`,
};

/** Every row of the fixture table, each value cast to text by the server, in key order. */
export async function textRows(db: PostgresServer, database: string, table = ALL_TYPES_TABLE): Promise<(string | null)[][]> {
  const exprs = columnsFor('postgres').map((c) => (TEXT_EXPR[c.name] ?? ((q: string) => `${q}::text`))(quotePgIdent(c.name)));
  const rows = await sql(db, database, `SELECT ${exprs.join(', ')} FROM ${quotePgIdent(table)} ORDER BY "SEQNO", "ROW_COUNTER"`);
  return rows as (string | null)[][];
}

const INT_COLUMNS = new Set(['SEQNO', 'ROW_COUNTER', 'i32', 'i64']);

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

/** Rows of values (fixture or text) normalised with {@link norm}, by the fixture's PostgreSQL columns. */
export function normRows(rows: readonly (readonly (FixtureValue | string | null)[])[]): string[][] {
  const cols = columnsFor('postgres');
  return rows.map((r) => r.map((v, i) => norm(cols[i]!.name, v)));
}
