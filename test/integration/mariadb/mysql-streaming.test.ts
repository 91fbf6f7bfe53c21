// MysqlSource against a real MariaDB: a 200k-row table streamed with
// backpressure in flat memory, cancellation of rows() and load() before
// start and midway (the server-side query really stops), and snapshots.
// The tests are the shared streaming suite (../db-suite/streaming-suite.ts);
// this file is the MariaDB fixture.
import type { Connection } from 'mysql2/promise';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { startMariadb, type MariadbServer } from '../../support/index.js';
import { ROWS, WIDE_ROWS, streamingSuite } from '../db-suite/streaming-suite.js';
import { connectUtc, sql } from './helpers.js';

let db: MariadbServer;
let admin: Connection;
let dbCount = 0;

/** Connections ever made to the server. */
async function connections(): Promise<number> {
  const [rows] = await admin.query("SHOW GLOBAL STATUS LIKE 'Connections'");
  return Number((rows as { Value: string }[])[0]!.Value);
}

streamingSuite({
  label: 'MysqlSource',
  engine: 'mysql',
  unit: 'connection',
  queryWord: 'query',
  gone: 'the SELECT is gone from the process list',
  bigQuery: 'SELECT %FROM `big`%',
  wideQuery: 'SELECT %FROM `wide`%',
  int: 'INT',
  snapshotTables: ['CREATE TABLE payload (SEQNO INT, RC INT, v TEXT, PRIMARY KEY (SEQNO, RC))', 'CREATE TABLE vld (SEQNO INT PRIMARY KEY, t TEXT)'],
  deleteRow300000: 'DELETE FROM big WHERE SEQNO = 300000',
  async start() {
    db = await startMariadb();
    admin = await connectUtc(db);
    // 100k rows of 2 kB: 200 MB of bulk text, so that buffering it could not hide behind the
    // garbage a fast stream leaves for the collector.
    await admin.query('CREATE TABLE wide (SEQNO BIGINT PRIMARY KEY, t TEXT)');
    await admin.query(`INSERT INTO wide SELECT seq, REPEAT(MD5(seq), 64) FROM seq_1_to_${WIDE_ROWS}`);
    // Eight mixed columns, about 330 bytes of bulk text a row (66 MB in all).
    await admin.query(
      'CREATE TABLE big (SEQNO BIGINT NOT NULL PRIMARY KEY, i INT, d DOUBLE, m DECIMAL(18,6), vc VARCHAR(64), t TEXT, dt DATETIME(6), b BLOB)',
    );
    await admin.query(
      `INSERT INTO big SELECT seq, seq * 7, seq / 3e0, seq / 7, CONCAT('name-', seq), REPEAT('payload ', 30), '2024-01-01' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND, UNHEX(MD5(seq)) FROM seq_1_to_${ROWS}`,
    );
  },
  async stop() {
    await admin?.end();
    await db?.stop();
  },
  database: () => db.database,
  freshDb: () => db.createDatabase(`s${++dbCount}`),
  source: (database = db.database) => new MysqlSource({ ...db.connectionConfig, database }),
  sourceWith: (connection, options) => new MysqlSource({ ...db.connectionConfig, ...connection }, options),
  exec: (database, text) => sql(db, database, text),
  async running(like) {
    const [rows] = await admin.query('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO LIKE ?', [like]);
    return Number((rows as { n: number | string }[])[0]!.n);
  },
  async openTransactions() {
    // Open InnoDB transactions of other sessions. INNODB_TRX is served from
    // a cache that InnoDB refreshes only when it was last read more than
    // 100 ms ago: polled faster, it never refreshes and shows a transaction
    // long gone (seen in CI: a 15 s wait on a connection closed at once).
    await new Promise((r) => setTimeout(r, 150));
    const [rows] = await admin.query('SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id <> CONNECTION_ID()');
    return Number((rows as { n: number | string }[])[0]!.n);
  },
  connectionMark: () => connections(),
  newConnections: async (before) => (await connections()) - (before as number),
  async startOther() {
    const other = await startMariadb();
    try {
      const c = await other.connect();
      await c.query('CREATE TABLE t (k bigint PRIMARY KEY, v text)');
      await c.query(`INSERT INTO t SELECT seq, REPEAT('x', 500) FROM seq_1_to_100000`);
      await c.end();
    } catch (err) {
      await other.stop();
      throw err;
    }
    return { source: () => new MysqlSource(other.connectionConfig), stop: () => other.stop() };
  },
});
