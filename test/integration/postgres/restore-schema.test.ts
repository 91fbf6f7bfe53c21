// Partitioner.restore into PostgreSQL: a table the restore creates ends up
// with exactly the archived schema (constraints, indexes, defaults) and the
// same rows; loading over it again keeps that schema.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { rejectsWith, tempDir } from '../../unit/partition/helpers.js';
import { sql } from './helpers.js';

let db: PostgresServer;
let n = 0;

beforeAll(async () => {
  db = await startPostgres();
});
afterAll(async () => {
  await db?.stop();
});

const DDL = `
CREATE TABLE ev (seqno bigint PRIMARY KEY, run integer NOT NULL, tag text UNIQUE, v double precision CHECK (v >= 0), note varchar(20) DEFAULT 'x', id serial);
CREATE INDEX ev_run ON ev (run, seqno DESC);
CREATE UNIQUE INDEX ev_tag_lower ON ev (lower(tag)) WHERE run > 0;
INSERT INTO ev (seqno, run, tag, v) SELECT s, s % 7, 'tag' || s, s / 4.0 FROM generate_series(1, 2500) s;
`;

/** The indexes and constraints of a table, as the server describes them. */
async function shape(database: string): Promise<unknown[][]> {
  const idx = await sql(db, database, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ev' ORDER BY indexname");
  const con = await sql(db, database, "SELECT conname, contype::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'ev'::regclass ORDER BY conname");
  return [...idx, ...con];
}

describe('Partitioner.restore into PostgreSQL', () => {
  it('creates the table with exactly the archived constraints and indexes, and the same rows; a second restore over it keeps them', async () => {
    const srcDb = await db.createDatabase(`s${++n}`);
    for (const stmt of DDL.split(';\n').filter((x) => x.trim())) await sql(db, srcDb, stmt);
    const out = join(await tempDir('pgrs'), 'out');
    await using src = new PostgresSource({ ...db.clientConfig, database: srcDb });
    await new Partitioner(src, { table: 'ev', key: 'seqno', rowsPerPartition: 1000, outDir: out }).dump();
    const dstDb = await db.createDatabase(`t${++n}`);
    await using dst = new PostgresSource({ ...db.clientConfig, database: dstDb });
    const r = await Partitioner.restore(dst, out, { concurrency: 2 });
    expect(r.tables).toEqual([{ name: 'ev', rows: 2500, partitions: 3, created: true }]);
    expect(await dst.schema('ev')).toBe(await src.schema('ev'));
    const want = await shape(srcDb);
    expect(want.length).toBe(7); // 4 indexes; primary key, unique, check
    expect(await shape(dstDb)).toEqual(want);
    expect((await Partitioner.compare(src, dst, 'ev', { key: 'seqno', rowsPerPartition: 1000 })).equal).toBe(true);
    const again = await Partitioner.restore(dst, out, { concurrency: 2 });
    expect(again.tables[0]).toMatchObject({ rows: 2500, created: false });
    expect(await shape(dstDb)).toEqual(want);
    expect((await Partitioner.compare(src, dst, 'ev', { key: 'seqno', rowsPerPartition: 1000 })).equal).toBe(true);
  });

  it('a load the archived constraints refuse fails with EDB and keeps the ranges loaded before it whole', async () => {
    const srcDb = await db.createDatabase(`s${++n}`);
    for (const stmt of DDL.split(';\n').filter((x) => x.trim())) await sql(db, srcDb, stmt);
    const out = join(await tempDir('pgrs'), 'out');
    await using src = new PostgresSource({ ...db.clientConfig, database: srcDb });
    await new Partitioner(src, { table: 'ev', key: 'seqno', rowsPerPartition: 1000, outDir: out }).dump();
    const dstDb = await db.createDatabase(`t${++n}`);
    await using dst = new PostgresSource({ ...db.clientConfig, database: dstDb });
    await Partitioner.restore(dst, out, { hi: 1000 });
    // A row of the second range under a tag of the third: the third range's load breaks the UNIQUE (tag).
    await sql(db, dstDb, "INSERT INTO ev (seqno, run, tag, v) VALUES (1500, 1, 'tag2500', 1)");
    const err = await rejectsWith(Partitioner.restore(dst, out, { lo: 2001, concurrency: 1 }), 'EDB');
    expect(err.message).toMatch(/ev_tag_key|duplicate key/);
    const per = await sql(db, dstDb, 'SELECT (seqno - 1) / 1000 AS p, count(*)::int FROM ev GROUP BY p ORDER BY p');
    expect(per).toEqual([
      ['0', 1000],
      ['1', 1],
    ]);
  });
});
