// The Partitioner against a real MariaDB (mariadb-server): see suite.ts.
import { afterAll, beforeAll } from 'vitest';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { startMariadb, type MariadbServer } from '../../support/index.js';
import { partitionSuite, type EngineHarness } from './suite.js';

let server: MariadbServer;
let n = 0;

beforeAll(async () => {
  server = await startMariadb();
});
afterAll(async () => {
  await server?.stop();
});

partitionSuite(
  (): EngineHarness => ({
    engine: 'mysql',
    freshDb: () => server.createDatabase(`p${++n}`),
    source: (database) => new MysqlSource({ ...server.connectionConfig, database }),
    async exec(database, statements) {
      const c = await server.connect({ database });
      try {
        for (const s of statements) await c.query(s);
      } finally {
        await c.end();
      }
    },
    async writer(database) {
      const c = await server.connect({ database });
      return {
        async insertPair(seqno) {
          await c.beginTransaction();
          await c.query("INSERT INTO CalibVld VALUES (?, '2024-01-01 00:00:00.5', '2038-01-19 03:14:07', 1, NULL, NULL)", [seqno]);
          await c.query('INSERT INTO Calib VALUES (?, 1, 1, 0.5, 1.5, ?, NULL), (?, 2, 2, 0.25, NULL, NULL, NULL), (?, 3, 3, -0.5, 0, ?, ?)', [seqno, 'late\trow', seqno, seqno, '', Buffer.from([0, 9, 10])]);
          await c.commit();
        },
        async holdPair(seqno) {
          await c.beginTransaction();
          await c.query("INSERT INTO CalibVld VALUES (?, '2024-01-01 00:00:00.5', '2038-01-19 03:14:07', 1, NULL, NULL)", [seqno]);
          await c.query('INSERT INTO Calib VALUES (?, 1, 1, 0.5, 1.5, ?, NULL), (?, 2, 2, 0.25, NULL, NULL, NULL), (?, 3, 3, -0.5, 0, ?, ?)', [seqno, 'late\trow', seqno, seqno, '', Buffer.from([0, 9, 10])]);
          return { commit: () => c.commit() };
        },
        close: () => c.end(),
      };
    },
  }),
);
