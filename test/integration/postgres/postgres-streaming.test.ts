// PostgresSource against a real PostgreSQL: a 200k-row table streamed with
// backpressure in flat memory, cancellation of rows() and load() before
// start and midway (the server-side COPY really stops), and snapshots.
// The tests are the shared streaming suite (../db-suite/streaming-suite.ts);
// this file is the PostgreSQL fixture.
import type pg from 'pg';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { ROWS, WIDE_ROWS, streamingSuite } from '../db-suite/streaming-suite.js';
import { connectUtc, sql } from './helpers.js';

let db: PostgresServer;
let admin: pg.Client;
let dbCount = 0;

/** The backends of stowage sources. */
async function backends(): Promise<number[]> {
  const r = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'stowage'");
  return r.rows.map((x) => x.pid);
}

streamingSuite({
  label: 'PostgresSource',
  engine: 'postgres',
  unit: 'client',
  queryWord: 'COPY',
  gone: 'the COPY is gone from pg_stat_activity',
  bigQuery: 'COPY (SELECT %FROM ONLY "public"."big"%',
  wideQuery: 'COPY (SELECT %FROM ONLY "public"."wide"%',
  int: 'int',
  snapshotTables: ['CREATE TABLE payload ("SEQNO" int, rc int, v text, PRIMARY KEY ("SEQNO", rc))', 'CREATE TABLE vld ("SEQNO" int PRIMARY KEY, t text)'],
  deleteRow300000: 'DELETE FROM big WHERE "SEQNO" = 300000',
  async start() {
    db = await startPostgres();
    admin = await connectUtc(db);
    // 100k rows of 2 kB: 200 MB of bulk text, so that buffering it could not hide behind the
    // garbage a fast stream leaves for the collector (COPY chunks are large external buffers).
    await admin.query('CREATE TABLE wide ("SEQNO" bigint PRIMARY KEY, t text)');
    await admin.query(`INSERT INTO wide SELECT g, repeat(md5(g::text), 64) FROM generate_series(1, ${WIDE_ROWS}) g`);
    // Eight mixed columns, about 330 bytes of bulk text a row (66 MB in all).
    await admin.query('CREATE TABLE big ("SEQNO" bigint NOT NULL PRIMARY KEY, i int, d float8, m numeric(18,6), vc varchar(64), t text, dt timestamp(6), b bytea)');
    await admin.query(
      `INSERT INTO big SELECT g, g * 7, g / 3.0::float8, round(g / 7.0, 6), 'name-' || g, repeat('payload ', 30), '2024-01-01'::timestamp + g * interval '1 second' + g * interval '1 microsecond', decode(md5(g::text), 'hex') FROM generate_series(1, ${ROWS}) g`,
    );
  },
  async stop() {
    await admin?.end();
    await db?.stop();
  },
  database: () => db.database,
  freshDb: () => db.createDatabase(`s${++dbCount}`),
  source: (database = db.database) => new PostgresSource({ ...db.clientConfig, database }),
  sourceWith: (connection, options) => new PostgresSource({ ...db.clientConfig, ...connection }, options),
  exec: (database, text) => sql(db, database, text),
  async running(like) {
    // Active statements only.
    const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE $1", [like]);
    return r.rows[0]!.n;
  },
  async openTransactions() {
    // Open transactions of other client sessions.
    const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL");
    return r.rows[0]!.n;
  },
  connectionMark: () => backends(),
  // Backends that were not there before.
  newConnections: async (before) => (await backends()).filter((p) => !(before as number[]).includes(p)).length,
  async startOther() {
    const other = await startPostgres();
    try {
      const c = await other.connect();
      await c.query('CREATE TABLE t (k bigint PRIMARY KEY, v text)');
      await c.query(`INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g`);
      await c.end();
    } catch (err) {
      await other.stop();
      throw err;
    }
    return { source: () => new PostgresSource(other.clientConfig), stop: () => other.stop() };
  },
});
