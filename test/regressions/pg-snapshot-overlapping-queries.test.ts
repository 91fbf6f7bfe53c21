/**
 * Regression: calls of a PostgresSource snapshot's reader that overlapped
 * (the Partitioner asks for every table's key range, columns and schema at
 * once) sent their queries on the snapshot's one pg client while another
 * was still running. pg queued them, and said so: "DeprecationWarning:
 * Calling client.query() when the client is already executing a query is
 * deprecated and will be removed in pg@9.0" (printed by the PostgreSQL
 * streaming tests). pg 9 refuses such a query, so the snapshot's reads
 * must take turns on the client themselves.
 *
 * The warning is emitted once per process; vitest runs each test file in a
 * process of its own, so nothing before this file can have spent it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { PostgresSource } from '../../src/db/postgres/index.js';
import { startPostgres, type PostgresServer } from '../support/index.js';

let pg: PostgresServer;

beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});

it('overlapping reads of a PostgreSQL snapshot take turns on its client (no pg query-queue deprecation)', async () => {
  const database = await pg.createDatabase('overlap');
  const c = await pg.connect({ database });
  try {
    await c.query('CREATE TABLE a (id bigint PRIMARY KEY, v text); CREATE TABLE b (id bigint PRIMARY KEY, n integer, w text)');
    await c.query("INSERT INTO a SELECT s, 'v' || s FROM generate_series(1, 50) s; INSERT INTO b SELECT s, s * 2, 'w' FROM generate_series(10, 20) s");
  } finally {
    await c.end();
  }
  const warnings: Error[] = [];
  const record = (w: Error): void => void warnings.push(w);
  process.on('warning', record);
  try {
    await using src = new PostgresSource({ ...pg.clientConfig, database });
    const got = await src.snapshot(async (r) =>
      Promise.all([r.keyRange('a', 'id'), r.keyRange('b', 'id'), r.columns('a'), r.columns('b'), r.schema('a'), r.schema('b'), r.tables(), r.digestRange('a', 'id', 1n, 50n)]),
    );
    const [ra, rb, ca, cb, sa, sb, tables, digest] = got;
    expect(ra).toMatchObject({ lo: 1n, hi: 50n, count: 50 });
    expect(rb).toMatchObject({ lo: 10n, hi: 20n, count: 11 });
    expect(ca.map((x) => x.name)).toEqual(['id', 'v']);
    expect(cb.map((x) => x.name)).toEqual(['id', 'n', 'w']);
    expect(sa).toMatch(/CREATE TABLE/);
    expect(sb).toMatch(/"?w"? text/);
    expect(tables).toEqual(['a', 'b']);
    expect(digest.count).toBe(50);
    // Let a warning emitted on the last query reach the listener.
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', record);
  }
  expect(warnings.filter((w) => /pg@9|already executing a query/.test(w.message)).map((w) => w.message)).toEqual([]);
});
