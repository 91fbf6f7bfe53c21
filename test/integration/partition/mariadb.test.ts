// The Partitioner against a real MariaDB (mariadb-server): see suite.ts.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../../src/catalog/index.js';
import { StowageError } from '../../../src/errors.js';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { Partitioner } from '../../../src/partition/index.js';
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

describe('Partitioner on MariaDB BIGINT UNSIGNED keys past 2^63-1', () => {
  it('with a Catalog (64-bit signed keys) is refused before anything is written; without one it round-trips', async () => {
    const db = await server.createDatabase(`p${++n}`);
    await server.query('CREATE TABLE t (SEQNO BIGINT UNSIGNED NOT NULL PRIMARY KEY, V VARCHAR(20))', undefined, db);
    await server.query("INSERT INTO t VALUES (1, 'a'), (9223372036854775807, 'b'), (9223372036854775808, 'c'), (18446744073709551615, 'd')", undefined, db);
    const out = await mkdtemp(join(tmpdir(), 'stowage-part-big-'));
    try {
      await using src = new MysqlSource({ ...server.connectionConfig, database: db });
      using catalog = new Catalog(join(out, 'stowage.catalog'));
      const err = await new Partitioner(src, { table: 't', outDir: join(out, 'parts'), catalog }).dump().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StowageError);
      expect((err as StowageError).code).toBe('EBAD_CONFIG');
      expect((err as StowageError).message).toMatch(/past 2\^63-1.*without the "catalog" option.*Nothing was written/);
      expect((await readdir(join(out, 'parts', 't')).catch(() => [] as string[])).filter((f) => f.endsWith('.tar.gz'))).toEqual([]);
      expect(catalog.partitions(src.name, 't')).toEqual([]);
      const r = await new Partitioner(src, { table: 't', outDir: join(out, 'parts') }).dump();
      expect(r.rows).toBe(4);
      const dst = await server.createDatabase(`p${++n}`);
      await using target = new MysqlSource({ ...server.connectionConfig, database: dst });
      await Partitioner.restore(target, join(out, 'parts'));
      expect((await Partitioner.compare(src, target, 't')).equal).toBe(true);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
