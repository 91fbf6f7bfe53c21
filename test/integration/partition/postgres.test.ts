// The Partitioner against a real PostgreSQL (postgresql): see suite.ts.
import { afterAll, beforeAll } from 'vitest';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { partitionSuite, type EngineHarness } from './suite.js';

let server: PostgresServer;
let n = 0;

beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

partitionSuite(
  (): EngineHarness => ({
    engine: 'postgres',
    freshDb: () => server.createDatabase(`p${++n}`),
    source: (database) => new PostgresSource({ ...server.clientConfig, database }),
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
          await c.query('BEGIN');
          await c.query(`INSERT INTO "CalibVld" VALUES ($1, '2024-01-01 00:00:00.5', '2038-01-19 03:14:07', 1, NULL, NULL)`, [seqno]);
          await c.query('INSERT INTO "Calib" VALUES ($1, 1, 1, 0.5, 1.5, $2, NULL), ($1, 2, 2, 0.25, NULL, NULL, NULL), ($1, 3, 3, -0.5, 0, $3, $4)', [seqno, 'late\trow', '', Buffer.from([0, 9, 10])]);
          await c.query('COMMIT');
        },
        async holdPair(seqno) {
          await c.query('BEGIN');
          await c.query(`INSERT INTO "CalibVld" VALUES ($1, '2024-01-01 00:00:00.5', '2038-01-19 03:14:07', 1, NULL, NULL)`, [seqno]);
          await c.query('INSERT INTO "Calib" VALUES ($1, 1, 1, 0.5, 1.5, $2, NULL), ($1, 2, 2, 0.25, NULL, NULL, NULL), ($1, 3, 3, -0.5, 0, $3, $4)', [seqno, 'late\trow', '', Buffer.from([0, 9, 10])]);
          return {
            commit: async () => {
              await c.query('COMMIT');
            },
          };
        },
        close: () => c.end(),
      };
    },
  }),
);
