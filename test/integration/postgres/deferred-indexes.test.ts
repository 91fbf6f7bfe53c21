// Indexes built after the rows, against a real PostgreSQL: what
// PostgresSource.createTable({ deferIndexes }) leaves out and puts back, and
// how Partitioner.restore uses it (the indexes come back on success, on a
// failed load, and a table whose rows break them is dropped with EDB).
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBulkRow } from '../../../src/db/index.js';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import type { Progress } from '../../../src/progress.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { rejectsWith, tempDir } from '../../unit/db/helpers.js';

let server: PostgresServer;
let n = 0;

beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

const DDL = `CREATE TABLE "we""ird" (id bigint PRIMARY KEY, v integer, r int4range, note text,
  CONSTRAINT v_unique UNIQUE (v), CONSTRAINT r_apart EXCLUDE USING gist (r WITH &&));
CREATE INDEX note_idx ON "we""ird" (note);
CREATE INDEX note_partial ON "we""ird" (lower(note)) WHERE note IS NOT NULL;`;

/** Every index of the table, as the server describes it, and its constraints. */
async function shape(database: string, table: string): Promise<{ indexes: string[]; constraints: string[] }> {
  const indexes = await server.query<{ d: string }>(
    `SELECT pg_get_indexdef(indexrelid) AS d FROM pg_index WHERE indrelid = (SELECT oid FROM pg_class WHERE relname = $1) ORDER BY 1`,
    [table],
    database,
  );
  const constraints = await server.query<{ d: string }>(
    `SELECT conname || ' ' || pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conrelid = (SELECT oid FROM pg_class WHERE relname = $1) ORDER BY 1`,
    [table],
    database,
  );
  return { indexes: indexes.map((r) => r.d), constraints: constraints.map((r) => r.d) };
}

const rows = (from: number, to: number, v = (i: number) => i): Readable =>
  Readable.from([Buffer.concat(Array.from({ length: to - from + 1 }, (_, k) => encodeBulkRow([String(from + k), String(v(from + k)), `[${(from + k) * 10},${(from + k) * 10 + 5})`, k % 3 === 0 ? null : `n${k}`])))]);

describe('PostgresSource.createTable with deferIndexes', () => {
  it('creates the table without its indexes and constraints, and builds exactly those the DDL declares', async () => {
    const whole = await server.createDatabase(`d${++n}`);
    const lean = await server.createDatabase(`d${++n}`);
    await using a = new PostgresSource({ ...server.clientConfig, database: whole });
    await using b = new PostgresSource({ ...server.clientConfig, database: lean });
    expect(await a.createTable('we"ird', DDL)).toBeUndefined();
    const d = await b.createTable('we"ird', DDL, { deferIndexes: true });
    expect(d).toBeDefined();
    expect(d!.table).toBe('we"ird');
    // Primary key first, then the other constraints, then the indexes.
    expect(d!.statements.map((s) => s.replace(/ \(.*$/s, ''))).toEqual([
      'ALTER TABLE "public"."we""ird" ADD CONSTRAINT "we""ird_pkey" PRIMARY KEY',
      'ALTER TABLE "public"."we""ird" ADD CONSTRAINT "r_apart" EXCLUDE USING gist',
      'ALTER TABLE "public"."we""ird" ADD CONSTRAINT "v_unique" UNIQUE',
      'CREATE INDEX note_idx ON public."we""ird" USING btree',
      'CREATE INDEX note_partial ON public."we""ird" USING btree',
    ]);
    expect(await shape(lean, 'we"ird')).toEqual({ indexes: [], constraints: [] });
    // NOT NULL of the primary key column stays.
    await expect(b.load('we"ird', Readable.from([encodeBulkRow(['\\N', '1', '\\N', '\\N'].map((x) => (x === '\\N' ? null : x)))]))).rejects.toMatchObject({ code: 'EDB' });
    expect((await b.load('we"ird', rows(1, 500))).rows).toBe(500);
    await d!.build();
    expect(await shape(lean, 'we"ird')).toEqual(await shape(whole, 'we"ird'));
    expect((await shape(lean, 'we"ird')).indexes).toHaveLength(5);
    // The constraints hold again.
    await expect(b.load('we"ird', rows(1, 1))).rejects.toMatchObject({ code: 'EDB' });
  });

  it('EDB from build when the rows break a constraint, leaving the table as it is; discard drops it', async () => {
    const db = await server.createDatabase(`d${++n}`);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const d = await src.createTable('we"ird', DDL, { deferIndexes: true });
    await src.load('we"ird', rows(1, 10, () => 7));
    const err = await rejectsWith(d!.build(), 'EDB');
    expect(err.message).toMatch(/could not create unique index|duplicate/i);
    expect((await shape(db, 'we"ird')).indexes).toEqual([]);
    expect(await src.tables()).toContain('we"ird');
    await d!.discard();
    expect(await src.tables()).not.toContain('we"ird');
  });

  it('resolves to undefined for a table with nothing to defer, and checks the option', async () => {
    const db = await server.createDatabase(`d${++n}`);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    expect(await src.createTable('plain', 'CREATE TABLE plain (id bigint NOT NULL, x text)', { deferIndexes: true })).toBeUndefined();
    await rejectsWith(src.createTable('other', 'CREATE TABLE other (id bigint)', { deferIndexes: 'yes' as unknown as boolean }), 'EBAD_CONFIG');
    await using lite = new SqliteSource(join(await tempDir('defer'), 'x.db'), { create: true });
    expect(await lite.createTable('t', 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)', { deferIndexes: true })).toBeUndefined();
    // MySQL takes the option too (no server needed to check its options).
    const my = new MysqlSource({ host: '127.0.0.1', port: 1, user: 'x', database: 'x' });
    await rejectsWith(my.createTable('t', 'CREATE TABLE t (id INT)', { deferIndexes: 1 as unknown as boolean }), 'EBAD_CONFIG');
    await my.close();
  });
});

describe('Partitioner.restore into PostgreSQL: indexes after the rows', () => {
  /** A source table, dumped in partitions of 100 keys to a fresh folder. */
  async function dumped(fill: string[]): Promise<{ db: string; dir: string }> {
    const db = await server.createDatabase(`d${++n}`);
    const c = await server.connect({ database: db });
    try {
      await c.query(DDL);
      for (const s of fill) await c.query(s);
    } finally {
      await c.end();
    }
    const dir = await tempDir('defer-dump');
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    await new Partitioner(src, { table: 'we"ird', key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    return { db, dir };
  }
  const fill = (from: number, to: number): string =>
    `INSERT INTO "we""ird" SELECT s, s, int4range(s * 10, s * 10 + 5), CASE WHEN s % 3 = 0 THEN NULL ELSE 'n' || s END FROM generate_series(${from}, ${to}) s`;

  it('creates the table, loads it, then builds its indexes (phase index), the same as the source', async () => {
    const { db, dir } = await dumped([fill(1, 1000)]);
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const phases: string[] = [];
    const r = await Partitioner.restore(dst, dir, { onProgress: (p: Progress) => (phases.at(-1) === p.phase ? undefined : phases.push(p.phase)) });
    expect(r.rows).toBe(1000);
    expect(r.tables[0]).toMatchObject({ name: 'we"ird', created: true });
    expect(phases).toEqual(['verify', 'load', 'index']);
    expect(await shape(target, 'we"ird')).toEqual(await shape(db, 'we"ird'));
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    expect((await Partitioner.compare(src, dst, 'we"ird', { key: 'id' })).equal).toBe(true);
    // Restoring again into the table now there replaces ranges through the key index; no index phase.
    phases.length = 0;
    await Partitioner.restore(dst, dir, { onProgress: (p: Progress) => (phases.at(-1) === p.phase ? undefined : phases.push(p.phase)) });
    expect(phases).toEqual(['verify', 'load']);
    await rm(dir, { recursive: true, force: true });
  });

  it('builds the indexes of a created table when a load fails, over the rows committed', async () => {
    const { db, dir } = await dumped([fill(1, 1000)]);
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    // The 4th load fails; the restore fails with its error. (A load may take several archives: the rows the first three committed are counted.)
    let loads = 0;
    let committed = 0;
    const failing = new Proxy(dst, {
      get(t, prop, recv) {
        if (prop === 'load') {
          return (table: string, input: Readable, o: object) => {
            if (++loads === 4) {
              input.destroy();
              return Promise.reject(Object.assign(new Error('load 4 failed'), { code: 'TEST' }));
            }
            return t.load(table, input, o).then((r) => ((committed += r.rows), r));
          };
        }
        const v = Reflect.get(t, prop, recv) as unknown;
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    await expect(Partitioner.restore(failing, dir, { concurrency: 1 })).rejects.toThrow('load 4 failed');
    expect(await shape(target, 'we"ird')).toEqual(await shape(db, 'we"ird'));
    const [counted] = await server.query<{ c: string }>('SELECT count(*) AS c FROM "we""ird"', [], target);
    expect(committed).toBeGreaterThanOrEqual(300);
    expect(committed).toBeLessThan(1000);
    expect(Number(counted?.c)).toBe(committed);
    await rm(dir, { recursive: true, force: true });
  });

  it('an abort during the index phase still builds the indexes, then rejects with its reason', async () => {
    const { db, dir } = await dumped([fill(1, 300)]);
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const ac = new AbortController();
    const reason = new Error('operator stop');
    // The abort comes as the first index build starts.
    const aborting = new Proxy(dst, {
      get(t, prop, recv) {
        if (prop === 'createTable') {
          return async (table: string, ddl: string, o: object) => {
            const d = await t.createTable(table, ddl, o);
            return d && { ...d, build: (bo?: object) => (ac.abort(reason), d.build(bo)), discard: () => d.discard() };
          };
        }
        const v = Reflect.get(t, prop, recv) as unknown;
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    await expect(Partitioner.restore(aborting, dir, { signal: ac.signal })).rejects.toBe(reason);
    expect(await shape(target, 'we"ird')).toEqual(await shape(db, 'we"ird'));
    await rm(dir, { recursive: true, force: true });
  });

  it('EDB and the created table dropped when the archives hold rows that break a unique constraint', async () => {
    // Dump A archives [1, 100] with key 50 holding v = 777; then key 50
    // gives it up and key 150 takes it, and dump B archives [101, 200]: A's
    // [1, 100] with B's [101, 200] hold v = 777 twice, as archives of a
    // table whose rows changed after their range was archived can.
    const { db, dir } = await dumped([fill(1, 210), 'UPDATE "we""ird" SET v = 777 WHERE id = 50']);
    await server.query('UPDATE "we""ird" SET v = -50 WHERE id = 50', [], db);
    await server.query('UPDATE "we""ird" SET v = 777 WHERE id = 150', [], db);
    const dir2 = await tempDir('defer-dump');
    {
      await using src = new PostgresSource({ ...server.clientConfig, database: db });
      await new Partitioner(src, { table: 'we"ird', key: 'id', rowsPerPartition: 100, outDir: dir2 }).dump({ incremental: false });
    }
    const mixed = await tempDir('defer-mixed');
    const t = 'we%22ird';
    await cp(join(dir, t), join(mixed, t), { recursive: true, filter: (f) => !/0000000101-|0000000201-/.test(f) });
    await cp(join(dir2, t), join(mixed, t), { recursive: true, filter: (f) => !/0000000001-/.test(f) });
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const err = await rejectsWith(Partitioner.restore(dst, mixed), 'EDB');
    expect(err.message).toMatch(/break its indexes or unique constraints.*was dropped/);
    expect(err.details).toMatchObject({ table: 'we"ird', dropped: true });
    expect(await dst.tables()).not.toContain('we"ird');
    for (const d of [dir, dir2, mixed]) await rm(d, { recursive: true, force: true });
  });

  it('restores rows that break a CHECK the source holds NOT VALID, and puts the check back NOT VALID', async () => {
    // Calibration rows written before a plausibility check was added; the
    // check was added NOT VALID so that they stay.
    const db = await server.createDatabase(`d${++n}`);
    await server.query('CREATE TABLE calib (id bigint PRIMARY KEY, gain double precision)', [], db);
    await server.query('INSERT INTO calib SELECT s, CASE WHEN s % 10 = 0 THEN -1 ELSE s END FROM generate_series(1, 250) s', [], db);
    await server.query('ALTER TABLE calib ADD CONSTRAINT gain_positive CHECK (gain > 0) NOT VALID', [], db);
    await server.query('ALTER TABLE calib ADD CONSTRAINT id_positive CHECK (id > 0)', [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const ddl = await src.schema('calib');
    // Outside CREATE TABLE, where the server would validate it.
    expect(ddl).toMatch(/CREATE TABLE[^;]*CONSTRAINT "id_positive" CHECK \(\(id > 0\)\)[^;]*\);\nALTER TABLE "calib" ADD CONSTRAINT "gain_positive" CHECK \(\(gain > \(0\)::double precision\)\) NOT VALID;\n/);
    const dir = await tempDir('defer-notvalid');
    await new Partitioner(src, { table: 'calib', key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const r = await Partitioner.restore(dst, dir);
    expect(r.rows).toBe(250);
    expect((await Partitioner.compare(src, dst, 'calib', { key: 'id' })).equal).toBe(true);
    expect(await shape(target, 'calib')).toEqual(await shape(db, 'calib'));
    const valid = `SELECT conname || ' ' || convalidated AS d FROM pg_constraint WHERE conrelid = 'calib'::regclass AND contype = 'c' ORDER BY 1`;
    expect(await server.query<{ d: string }>(valid, [], target)).toEqual([{ d: 'gain_positive false' }, { d: 'id_positive true' }]);
    // New rows are still checked, as in the source.
    await expect(server.query('INSERT INTO calib VALUES (1000, -5)', [], target)).rejects.toThrow(/gain_positive/);
    // Created from the DDL without deferral, the table is the source's too.
    const plain = await server.createDatabase(`d${++n}`);
    await using whole = new PostgresSource({ ...server.clientConfig, database: plain });
    expect(await whole.createTable('calib', ddl)).toBeUndefined();
    expect(await server.query<{ d: string }>(valid, [], plain)).toEqual([{ d: 'gain_positive false' }, { d: 'id_positive true' }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('moves the sequences of serial and identity columns past the rows restored, so the next INSERT gets a new key', async () => {
    const db = await server.createDatabase(`d${++n}`);
    await server.query('CREATE TABLE runlog (id bigserial PRIMARY KEY, n bigint GENERATED BY DEFAULT AS IDENTITY, note text)', [], db);
    await server.query("INSERT INTO runlog (note) SELECT 'run ' || s FROM generate_series(1, 250) s", [], db);
    await server.query('CREATE TABLE bare (id bigint GENERATED ALWAYS AS IDENTITY, note text)', [], db); // nothing to defer but its sequence
    await server.query("INSERT INTO bare (note) SELECT 'x' FROM generate_series(1, 30)", [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const dir = await tempDir('defer-seq');
    for (const table of ['runlog', 'bare']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    await Partitioner.restore(dst, dir);
    expect(await server.query("INSERT INTO runlog (note) VALUES ('after the restore') RETURNING id, n", [], target)).toEqual([{ id: '251', n: '251' }]);
    expect(await server.query("INSERT INTO bare (note) VALUES ('y') RETURNING id", [], target)).toEqual([{ id: '31' }]);
    // Never back: a sequence already past the rows stays where it is.
    await server.query("SELECT setval(pg_get_serial_sequence('runlog', 'id'), 1000)", [], target);
    await Partitioner.restore(dst, dir, { table: 'runlog' });
    expect(await server.query("INSERT INTO runlog (note) VALUES ('later') RETURNING id", [], target)).toEqual([{ id: '1001' }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('moves the sequences of a table that existed before the restore too (an incremental restore on a standby), and says so where it cannot', async () => {
    const DDL_RUNLOG = 'CREATE TABLE runlog (id bigserial PRIMARY KEY, n bigint GENERATED BY DEFAULT AS IDENTITY, note text)';
    const db = await server.createDatabase(`d${++n}`);
    await server.query(DDL_RUNLOG, [], db);
    await server.query("INSERT INTO runlog (note) SELECT 'run ' || s FROM generate_series(1, 250) s", [], db);
    await server.query('CREATE TABLE plain (id bigint PRIMARY KEY, note text)', [], db);
    await server.query("INSERT INTO plain SELECT s, 'p' FROM generate_series(1, 20) s", [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const dir = await tempDir('seq-existing');
    for (const table of ['runlog', 'plain']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });

    // The standby made its own tables (same DDL, sequences at their start) before the first restore.
    const target = await server.createDatabase(`d${++n}`);
    await server.query(DDL_RUNLOG, [], target);
    await server.query('CREATE TABLE plain (id bigint PRIMARY KEY, note text)', [], target);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const r = await Partitioner.restore(dst, dir);
    expect(r.tables.map((t) => [t.name, t.rows, t.created])).toEqual([
      ['plain', 20, false],
      ['runlog', 250, false],
    ]);
    expect(await server.query("INSERT INTO runlog (note) VALUES ('after the restore') RETURNING id, n", [], target)).toEqual([{ id: '251', n: '251' }]);
    expect(await dst.advanceSequences('runlog')).toEqual([]); // at the largest key already
    expect(await dst.advanceSequences('plain')).toEqual([]); // none to move

    // New rows at the source, an incremental dump, and a restore of it into the (now existing) table.
    await server.query("INSERT INTO runlog (note) SELECT 'late ' || s FROM generate_series(1, 60) s", [], db);
    await new Partitioner(src, { table: 'runlog', key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    await server.query('DELETE FROM runlog WHERE id = 251', [], target); // the standby's own row, not the source's
    await Partitioner.restore(dst, dir, { table: 'runlog', lo: 201n });
    expect(await server.query("INSERT INTO runlog (note) VALUES ('after the second restore') RETURNING id, n", [], target)).toEqual([{ id: '311', n: '311' }]);

    // Called directly: only ever up, and it names what it moved.
    await server.query('DELETE FROM runlog WHERE id = 311', [], target);
    await server.query("SELECT setval(pg_get_serial_sequence('runlog', 'id'), 5)", [], target);
    expect(await dst.advanceSequences('runlog')).toEqual(['public.runlog_id_seq']);
    expect(await server.query("SELECT last_value FROM runlog_id_seq", [], target)).toEqual([{ last_value: '310' }]);
    await server.query("SELECT setval(pg_get_serial_sequence('runlog', 'id'), 1000)", [], target);
    expect(await dst.advanceSequences('runlog')).toEqual([]);
    expect(await server.query("SELECT last_value FROM runlog_id_seq", [], target)).toEqual([{ last_value: '1000' }]);
    await rejectsWith(dst.advanceSequences('nosuch'), 'ENO_TABLE');

    // A restore that fails midway (a later range breaks a unique key of the target's): the ranges loaded before it stay, and so do keys past them.
    const failing = await server.createDatabase(`d${++n}`);
    await server.query(DDL_RUNLOG, [], failing);
    await server.query('ALTER TABLE runlog ADD CONSTRAINT note_unique UNIQUE (note)', [], failing);
    await server.query("INSERT INTO runlog (id, note) VALUES (0, 'run 250')", [], failing);
    await using broken = new PostgresSource({ ...server.clientConfig, database: failing });
    await rejectsWith(Partitioner.restore(broken, dir, { table: 'runlog', concurrency: 1 }), 'EDB');
    expect(await server.query('SELECT count(*)::int AS c, max(id)::int AS m FROM runlog', [], failing)).toEqual([{ c: 201, m: 200 }]);
    expect(await server.query("INSERT INTO runlog (note) VALUES ('after the failure') RETURNING id", [], failing)).toEqual([{ id: '201' }]);

    // A loader that may write the table but not its sequences: the rows go in and stay, and EDB says what is left to do.
    const other = await server.createDatabase(`d${++n}`);
    await server.query(DDL_RUNLOG, [], other);
    await server.query("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'seqless') THEN CREATE ROLE seqless LOGIN PASSWORD 'seqless-pw'; END IF; END $$", [], other);
    await server.query('GRANT USAGE ON SCHEMA public TO seqless', [], other);
    await server.query('GRANT SELECT, INSERT, DELETE ON runlog TO seqless', [], other);
    await using limited = new PostgresSource({ ...server.clientConfig, user: 'seqless', password: 'seqless-pw', database: other });
    const err = await rejectsWith(Partitioner.restore(limited, dir, { table: 'runlog' }), 'EDB');
    expect(err.message).toMatch(/the rows were restored into "runlog" and stay there, but moving its sequences past them failed \(.*permission denied for sequence runlog_id_seq.*\).*advanceSequences\("runlog"\)/);
    expect(await server.query('SELECT count(*)::int AS c, max(id)::int AS m FROM runlog', [], other)).toEqual([{ c: 310, m: 310 }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves a sequence alone where the rows do not fit it, and never loses the table over it', async () => {
    // Keys a sequence cannot take (0, negative), a start above the rows, a descending sequence, a numeric column.
    const db = await server.createDatabase(`d${++n}`);
    await server.query('CREATE TABLE zero (id serial PRIMARY KEY, k bigint)', [], db);
    await server.query('INSERT INTO zero VALUES (0, 1), (-5, 2)', [], db);
    await server.query('CREATE SEQUENCE highseq START WITH 1000', [], db);
    await server.query("CREATE TABLE high (id bigint DEFAULT nextval('highseq') PRIMARY KEY, k bigint)", [], db);
    await server.query('ALTER SEQUENCE highseq OWNED BY high.id', [], db);
    await server.query('INSERT INTO high VALUES (1, 1), (500, 2)', [], db);
    await server.query('CREATE TABLE down (id bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY -1 START WITH -1 MAXVALUE -1) PRIMARY KEY, k bigint)', [], db);
    await server.query('INSERT INTO down VALUES (-3, 1)', [], db);
    await server.query('CREATE SEQUENCE numseq', [], db);
    await server.query("CREATE TABLE num (id numeric DEFAULT nextval('numseq') PRIMARY KEY, k bigint)", [], db);
    await server.query('ALTER SEQUENCE numseq OWNED BY num.id', [], db);
    await server.query('INSERT INTO num VALUES (7, 1)', [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const dir = await tempDir('defer-seq-odd');
    for (const table of ['zero', 'high', 'down', 'num']) await new Partitioner(src, { table, key: 'k', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    const r = await Partitioner.restore(dst, dir);
    expect(r.tables.map((t) => [t.name, t.rows, t.created])).toEqual([
      ['down', 1, true],
      ['high', 2, true],
      ['num', 1, true],
      ['zero', 2, true],
    ]);
    expect(await server.query("INSERT INTO zero (k) VALUES (3) RETURNING id", [], target)).toEqual([{ id: 1 }]);
    expect(await server.query("INSERT INTO high (k) VALUES (3) RETURNING id", [], target)).toEqual([{ id: '1000' }]);
    // The identity's options are carried: it descends from -1 in the target too, and a descending sequence is left alone (-1 is free).
    expect(await dst.schema('down')).toBe(await src.schema('down'));
    expect(await server.query("INSERT INTO down (k) VALUES (3) RETURNING id", [], target)).toEqual([{ id: '-1' }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('carries an identity column\'s sequence options (start, step, bounds, cache, cycle), and moves it on by its own step', async () => {
    const db = await server.createDatabase(`d${++n}`);
    await server.query('CREATE TABLE stepped (id integer GENERATED ALWAYS AS IDENTITY (START WITH 1000 INCREMENT BY 10 MAXVALUE 50000 CACHE 5 CYCLE) PRIMARY KEY, note text)', [], db);
    await server.query("INSERT INTO stepped (note) SELECT 'n' || s FROM generate_series(1, 30) s", [], db);
    await server.query('CREATE TABLE usual (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)', [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    const ddl = await src.schema('stepped');
    expect(ddl).toContain('"id" integer GENERATED ALWAYS AS IDENTITY (START WITH 1000 INCREMENT BY 10 MINVALUE 1 MAXVALUE 50000 CACHE 5 CYCLE) NOT NULL');
    expect(await src.schema('usual')).toContain('"id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL'); // the defaults, as written
    const dir = await tempDir('identity-options');
    for (const table of ['stepped', 'usual']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: dir }).dump();
    const target = await server.createDatabase(`d${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: target });
    await Partitioner.restore(dst, dir);
    expect(await dst.schema('stepped')).toBe(ddl);
    const opts = "SELECT seqstart::text, seqincrement::text, seqmin::text, seqmax::text, seqcache::text, seqcycle FROM pg_sequence WHERE seqrelid = pg_get_serial_sequence('stepped', 'id')::regclass";
    expect(await server.query(opts, [], target)).toEqual(await server.query(opts, [], db));
    // The rows end at 1290; the next key is one step on, as at the source.
    expect(await server.query("INSERT INTO stepped (note) VALUES ('after') RETURNING id", [], target)).toEqual([{ id: 1300 }]);
    expect(await server.query("INSERT INTO stepped (note) VALUES ('after') RETURNING id", [], db)).toEqual([{ id: 1300 }]);
    await rm(dir, { recursive: true, force: true });
  });
});
