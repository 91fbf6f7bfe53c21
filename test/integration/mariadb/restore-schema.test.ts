// Partitioner.restore into MariaDB: a table the restore creates ends up with
// exactly the archived schema (SHOW CREATE TABLE: keys, defaults, checks)
// and the same rows; a load its keys refuse keeps earlier ranges whole.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { startMariadb, type MariadbServer } from '../../support/index.js';
import { rejectsWith, tempDir } from '../../unit/partition/helpers.js';
import { sql } from './helpers.js';

let db: MariadbServer;
let n = 0;

beforeAll(async () => {
  db = await startMariadb();
});
afterAll(async () => {
  await db?.stop();
});

const DDL = [
  `CREATE TABLE ev (seqno BIGINT NOT NULL PRIMARY KEY, run INT NOT NULL, tag VARCHAR(40) UNIQUE, v DOUBLE CHECK (v >= 0), note VARCHAR(20) DEFAULT 'x',
    KEY ev_run (run, seqno), UNIQUE KEY ev_run_tag (run, tag)) ENGINE=InnoDB`,
  "INSERT INTO ev (seqno, run, tag, v) SELECT seq, seq % 7, CONCAT('tag', seq), seq / 4 FROM seq_1_to_2500",
];

async function filled(): Promise<{ src: MysqlSource; out: string }> {
  const srcDb = await db.createDatabase(`s${++n}`);
  for (const stmt of DDL) await sql(db, srcDb, stmt);
  const out = join(await tempDir('myrs'), 'out');
  const src = new MysqlSource({ ...db.connectionConfig, database: srcDb });
  await new Partitioner(src, { table: 'ev', key: 'seqno', rowsPerPartition: 1000, outDir: out }).dump();
  return { src, out };
}

describe('Partitioner.restore into MariaDB', () => {
  it('creates the table with exactly the archived keys and checks, and the same rows; a second restore over it keeps them', async () => {
    const { src, out } = await filled();
    await using _src = src;
    await using dst = new MysqlSource({ ...db.connectionConfig, database: await db.createDatabase(`t${++n}`) });
    const r = await Partitioner.restore(dst, out, { concurrency: 2 });
    expect(r.tables).toEqual([{ name: 'ev', rows: 2500, partitions: 3, created: true }]);
    const want = await src.schema('ev');
    expect(want).toMatch(/UNIQUE KEY `ev_run_tag`/);
    expect(await dst.schema('ev')).toBe(want);
    expect((await Partitioner.compare(src, dst, 'ev', { key: 'seqno', rowsPerPartition: 1000 })).equal).toBe(true);
    const again = await Partitioner.restore(dst, out, { concurrency: 2 });
    expect(again.tables[0]).toMatchObject({ rows: 2500, created: false });
    expect(await dst.schema('ev')).toBe(want);
    expect((await Partitioner.compare(src, dst, 'ev', { key: 'seqno', rowsPerPartition: 1000 })).equal).toBe(true);
  });

  it('a load the archived keys refuse fails with EDB and keeps the ranges loaded before it whole', async () => {
    const { src, out } = await filled();
    await using _src = src;
    const dstDb = await db.createDatabase(`t${++n}`);
    await using dst = new MysqlSource({ ...db.connectionConfig, database: dstDb });
    await Partitioner.restore(dst, out, { hi: 1000 });
    // A row of the second range under a tag of the third: the third range's load breaks UNIQUE (tag).
    await sql(db, dstDb, "INSERT INTO ev (seqno, run, tag, v) VALUES (1500, 1, 'tag2500', 1)");
    const err = await rejectsWith(Partitioner.restore(dst, out, { lo: 2001, concurrency: 1 }), 'EDB');
    expect(err.message).toMatch(/Duplicate|duplicate/);
    const per = await sql(db, dstDb, 'SELECT (seqno - 1) DIV 1000 AS p, COUNT(*) FROM ev GROUP BY p ORDER BY p');
    expect(per.map((row) => row.map(Number))).toEqual([
      [0, 1000],
      [1, 1],
    ]);
  });

  it('restores over a table with secondary unique keys, four loads at once: the deadlocks InnoDB reports are loaded again', async () => {
    const srcDb = await db.createDatabase(`s${++n}`);
    for (const stmt of DDL) await sql(db, srcDb, stmt.replace('seq_1_to_2500', 'seq_1_to_4000'));
    const out = join(await tempDir('myrs'), 'out');
    await using src = new MysqlSource({ ...db.connectionConfig, database: srcDb });
    await new Partitioner(src, { table: 'ev', key: 'seqno', rowsPerPartition: 250, outDir: out }).dump();
    await using dst = new MysqlSource({ ...db.connectionConfig, database: await db.createDatabase(`t${++n}`) });
    await Partitioner.restore(dst, out, { concurrency: 4 });
    // Each DELETE-then-LOAD locks gaps of the unique (tag) and (run, tag) indexes its neighbours need.
    for (let i = 0; i < 3; i++) {
      const r = await Partitioner.restore(dst, out, { concurrency: 4 });
      expect(r.tables[0]).toMatchObject({ rows: 4000, partitions: 16, created: false });
    }
    expect((await Partitioner.compare(src, dst, 'ev', { key: 'seqno', rowsPerPartition: 250 })).equal).toBe(true);
  });

  it('leaves AUTO_INCREMENT past the rows restored, into a table it creates and one that existed (no sequences to move)', async () => {
    const srcDb = await db.createDatabase(`s${++n}`);
    const ddl = 'CREATE TABLE runlog (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB';
    await sql(db, srcDb, ddl);
    await sql(db, srcDb, "INSERT INTO runlog (note) SELECT CONCAT('run ', seq) FROM seq_1_to_250");
    await using src = new MysqlSource({ ...db.connectionConfig, database: srcDb });
    expect(typeof (src as { advanceSequences?: unknown }).advanceSequences).toBe('undefined');
    const out = join(await tempDir('myai'), 'out');
    await new Partitioner(src, { table: 'runlog', key: 'id', rowsPerPartition: 100, outDir: out }).dump();
    const made = await db.createDatabase(`t${++n}`);
    const existing = await db.createDatabase(`t${++n}`);
    await sql(db, existing, ddl);
    for (const [database, created] of [[made, true], [existing, false]] as const) {
      await using dst = new MysqlSource({ ...db.connectionConfig, database });
      expect((await Partitioner.restore(dst, out)).tables[0]).toMatchObject({ rows: 250, created });
      await sql(db, database, "INSERT INTO runlog (note) VALUES ('after the restore')");
      // Past every restored key; InnoDB may leave a gap after a bulk load (its own auto-increment batches), never a collision.
      const [[id, rows]] = (await sql(db, database, "SELECT id, (SELECT COUNT(*) FROM runlog) FROM runlog WHERE note = 'after the restore'")) as [[string | number, string | number]];
      expect(Number(id)).toBeGreaterThan(250);
      expect(Number(rows)).toBe(251);
    }
  });
});

describe('Partitioner.restore into a MariaDB that folds table names (lower_case_table_names=1)', () => {
  it('creates a table archived as CalibPmt (stored as calibpmt) and loads it; a second create of either spelling is EEXIST', async () => {
    // createTable looked the new table up by its exact name, found "calibpmt", and failed with ENO_TABLE after creating it.
    const folding = await startMariadb({ extraArgs: ['--lower-case-table-names=1'] });
    try {
      const srcDb = await db.createDatabase(`s${++n}`);
      await sql(db, srcDb, 'CREATE TABLE CalibPmt (SEQNO INT NOT NULL PRIMARY KEY, gain DOUBLE, note VARCHAR(20))');
      await sql(db, srcDb, "INSERT INTO CalibPmt SELECT seq, seq / 8, CONCAT('pmt', seq) FROM seq_1_to_25");
      const out = join(await tempDir('myfold'), 'out');
      await using src = new MysqlSource({ ...db.connectionConfig, database: srcDb });
      await new Partitioner(src, { table: 'CalibPmt', key: 'SEQNO', rowsPerPartition: 10, outDir: out }).dump();
      await using dst = new MysqlSource(folding.connectionConfig);
      const r = await Partitioner.restore(dst, out);
      expect(r.rows).toBe(25);
      expect(await dst.tables()).toEqual(['calibpmt']);
      expect((await Partitioner.compare(src, dst, 'CalibPmt', { key: 'SEQNO' })).equal).toBe(true);
      const ddl = await src.schema('CalibPmt');
      await rejectsWith(dst.createTable('CalibPmt', ddl), 'EEXIST');
      await rejectsWith(dst.createTable('calibpmt', ddl), 'EEXIST');
      // A second restore loads over what is there.
      expect((await Partitioner.restore(dst, out)).rows).toBe(25);
      expect((await Partitioner.compare(src, dst, 'CalibPmt', { key: 'SEQNO' })).equal).toBe(true);
    } finally {
      await folding.stop();
    }
  });
});
