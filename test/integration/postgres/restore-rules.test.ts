// Partitioner.restore into PostgreSQL where the target's rules matter:
// tables that refer to each other (foreign keys: COPY checks every row
// against the parent table whatever the session, so parents load first);
// a table created unquoted (CalibPmtSpec, stored as calibpmtspec) and
// dumped under the name the user writes; DDL with backslashes into a
// database whose sessions default to standard_conforming_strings = off;
// and tables whose columns use types of their own: enum types and domains
// (carried), a type of another schema (not carried: a clear error).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
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

// Names sort children first ("a_..." before "run"), as the archives' folders do.
const DDL = [
  'CREATE TABLE run (id bigint PRIMARY KEY, name text)',
  'CREATE TABLE a_calib (id bigint PRIMARY KEY, run_id bigint NOT NULL REFERENCES run(id), gain double precision)',
  'CREATE TABLE a_channel (id bigint PRIMARY KEY, calib_id bigint REFERENCES a_calib(id), run_id bigint REFERENCES run(id), parent bigint REFERENCES a_channel(id))',
];

async function database(withRows: boolean): Promise<string> {
  const db = await server.createDatabase(`fk${++n}`);
  for (const d of DDL) await server.query(d, [], db);
  if (withRows) {
    await server.query("INSERT INTO run SELECT s, 'run ' || s FROM generate_series(1, 250) s", [], db);
    await server.query('INSERT INTO a_calib SELECT s, s, s / 10.0 FROM generate_series(1, 250) s', [], db);
    // parent refers to a row of the same table in an earlier range only.
    await server.query('INSERT INTO a_channel SELECT s, s, s, CASE WHEN s > 1 THEN 1 END FROM generate_series(1, 250) s', [], db);
  }
  return db;
}

describe('PostgresSource.references', () => {
  it('names the parent tables of the foreign keys in the schema (itself for a key onto its own rows), not those of another schema; ENO_TABLE for a missing table', async () => {
    const db = await database(false);
    await server.query('CREATE SCHEMA other', [], db);
    await server.query('CREATE TABLE other.site (id bigint PRIMARY KEY)', [], db);
    await server.query('ALTER TABLE a_channel ADD COLUMN site bigint REFERENCES other.site(id)', [], db);
    await using src = new PostgresSource({ ...server.clientConfig, database: db });
    expect(await src.references('run')).toEqual([]);
    expect(await src.references('a_calib')).toEqual(['run']);
    expect(await src.references('a_channel')).toEqual(['a_calib', 'a_channel', 'run']);
    await rejectsWith(src.references('nope'), 'ENO_TABLE');
    await rejectsWith(src.references('run', { sigma: 1 } as never), 'EBAD_CONFIG');
  });
});

describe('Partitioner.restore into tables with foreign keys', () => {
  it('loads parent tables before their children, whatever the folder order and the concurrency', async () => {
    const from = await database(true);
    const dir = await tempDir('fk-dump');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    for (const table of ['run', 'a_calib', 'a_channel']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 50, outDir: dir }).dump({ incremental: true });
    for (const concurrency of [1, 3]) {
      const to = await database(false);
      await using dst = new PostgresSource({ ...server.clientConfig, database: to });
      const r = await Partitioner.restore(dst, dir, { concurrency });
      expect(r.tables.map((t) => [t.name, t.rows, t.created])).toEqual([
        ['a_calib', 250, false],
        ['a_channel', 250, false],
        ['run', 250, false],
      ]);
      for (const table of ['run', 'a_calib', 'a_channel']) expect((await Partitioner.compare(src, dst, table, { key: 'id' })).equal).toBe(true);
    }
    // One child alone, into a copy whose parents are already there.
    const to = await database(false);
    await server.query("INSERT INTO run SELECT s, 'run ' || s FROM generate_series(1, 250) s", [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    expect((await Partitioner.restore(dst, dir, { table: 'a_calib' })).rows).toBe(250);
    // A child whose parent rows are missing still fails with the server's reason.
    const bare = await database(false);
    await using empty = new PostgresSource({ ...server.clientConfig, database: bare });
    const err = await rejectsWith(Partitioner.restore(empty, dir, { table: 'a_calib' }), 'EDB');
    expect(err.message).toMatch(/foreign key constraint/);
    await rm(dir, { recursive: true, force: true });
  });

  it('restores again over parent rows the children refer to (an incremental restore of the rewritten tail): merged in place; a parent row gone from the source fails with EDB', async () => {
    const from = await database(true);
    const dir = await tempDir('fk-again');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    const tables = ['run', 'a_calib', 'a_channel'];
    const dump = async (): Promise<void> => {
      for (const table of tables) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    };
    await dump(); // [201, 300] is the partial tail of each table
    const to = await database(false);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    await Partitioner.restore(dst, dir);
    // New rows at the source; the tails are rewritten, and restored again over the rows the children refer to.
    await server.query("INSERT INTO run SELECT s, 'run ' || s FROM generate_series(251, 280) s", [], from);
    await server.query('INSERT INTO a_calib SELECT s, s, s / 10.0 FROM generate_series(251, 280) s', [], from);
    await server.query('INSERT INTO a_channel SELECT s, s, s, 1 FROM generate_series(251, 280) s', [], from);
    await server.query("UPDATE run SET name = 'renamed' WHERE id = 222", [], from);
    await dump();
    const again = await Partitioner.restore(dst, dir, { lo: 201n });
    expect(again.tables.map((t) => [t.name, t.rows, t.created])).toEqual([
      ['a_calib', 80, false],
      ['a_channel', 80, false],
      ['run', 80, false],
    ]);
    for (const table of tables) expect((await Partitioner.compare(src, dst, table, { key: 'id' })).equal).toBe(true);
    // A row gone from the source while the target's children still refer to it: the restore of its range fails, and that range stays as it was.
    await server.query('DELETE FROM a_channel WHERE id = 230', [], from);
    await server.query('DELETE FROM a_calib WHERE id = 230', [], from);
    await dump();
    const err = await rejectsWith(Partitioner.restore(dst, dir, { table: 'a_calib', lo: 201n }), 'EDB');
    expect(err.message).toMatch(/foreign key constraint/);
    expect(await server.query('SELECT count(*)::int AS n FROM a_calib WHERE id BETWEEN 201 AND 300', [], to)).toEqual([{ n: 80 }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a group archive whose payload refers to its validity table in that order, whatever order the group names them', async () => {
    const group = ['CREATE TABLE vld (seqno bigint PRIMARY KEY, since timestamp)', 'CREATE TABLE payload (row_id bigint PRIMARY KEY, seqno bigint NOT NULL REFERENCES vld(seqno), adc integer)'];
    const from = await server.createDatabase(`fk${++n}`);
    for (const d of group) await server.query(d, [], from);
    await server.query("INSERT INTO vld SELECT s, TIMESTAMP '2012-01-01' + s * INTERVAL '1 hour' FROM generate_series(1, 120) s", [], from);
    // The payload keyed by SEQNO too, many rows per SEQNO, as DBI tables are.
    await server.query('ALTER TABLE payload DROP CONSTRAINT payload_pkey', [], from);
    await server.query('INSERT INTO payload SELECT s * 10 + k, s, k FROM generate_series(1, 120) s, generate_series(0, 2) k', [], from);
    const dir = await tempDir('fk-group');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    await new Partitioner(src, { tables: ['payload', 'vld'], key: 'seqno', rowsPerPartition: 50, outDir: dir }).dump({ incremental: true });
    const to = await server.createDatabase(`fk${++n}`);
    for (const d of group) await server.query(d, [], to);
    await server.query('ALTER TABLE payload DROP CONSTRAINT payload_pkey', [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    const r = await Partitioner.restore(dst, dir, { concurrency: 2 });
    expect(r.tables.map((t) => [t.name, t.rows])).toEqual([
      ['payload', 360],
      ['vld', 120],
    ]);
    for (const table of ['vld', 'payload']) expect((await Partitioner.compare(src, dst, table, { key: 'seqno' })).equal).toBe(true);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Partitioner.restore of a table dumped under another letter case', () => {
  it('PostgreSQL: restores CalibPmtSpec (stored calibpmtspec) into an empty database and into one that has the table', async () => {
    const from = await server.createDatabase(`nm${++n}`);
    await server.query('CREATE TABLE CalibPmtSpec (SEQNO bigint PRIMARY KEY, gain double precision)', [], from);
    await server.query('INSERT INTO CalibPmtSpec SELECT s, s / 7.0 FROM generate_series(1, 230) s', [], from);
    const dir = await tempDir('names');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    await new Partitioner(src, { table: 'CalibPmtSpec', key: 'SEQNO', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    for (const precreate of [false, true]) {
      const to = await server.createDatabase(`nm${++n}`);
      if (precreate) await server.query('CREATE TABLE CalibPmtSpec (SEQNO bigint PRIMARY KEY, gain double precision)', [], to);
      await using dst = new PostgresSource({ ...server.clientConfig, database: to });
      const r = await Partitioner.restore(dst, dir);
      expect(r.tables).toEqual([{ name: 'CalibPmtSpec', rows: 230, partitions: 3, created: !precreate }]);
      expect(await dst.tables()).toEqual(['calibpmtspec']);
      expect((await Partitioner.compare(src, dst, 'CalibPmtSpec', { key: 'SEQNO' })).equal).toBe(true);
      // Again over what is there: the ranges are replaced.
      expect((await Partitioner.restore(dst, dir)).rows).toBe(230);
      expect((await Partitioner.compare(src, dst, 'CalibPmtSpec', { key: 'SEQNO' })).equal).toBe(true);
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('PostgreSQL: two tables differing in case only ("Calib" and calib) each restore into their own table', async () => {
    const from = await server.createDatabase(`nm${++n}`);
    await server.query('CREATE TABLE "Calib" (id bigint PRIMARY KEY, v text)', [], from);
    await server.query('CREATE TABLE calib (id bigint PRIMARY KEY, v text)', [], from);
    await server.query(`INSERT INTO "Calib" VALUES (1, 'upper-1'), (2, 'upper-2')`, [], from);
    await server.query(`INSERT INTO calib VALUES (1, 'lower-1'), (2, 'lower-2')`, [], from);
    const dir = await tempDir('names-two');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    for (const table of ['Calib', 'calib']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    // Into an empty database: both created.
    const empty = await server.createDatabase(`nm${++n}`);
    await using a = new PostgresSource({ ...server.clientConfig, database: empty });
    expect((await Partitioner.restore(a, dir)).tables.map((t) => [t.name, t.rows, t.created])).toEqual([
      ['Calib', 2, true],
      ['calib', 2, true],
    ]);
    // Into one holding only "Calib": calib is created, "Calib" keeps its rows.
    const one = await server.createDatabase(`nm${++n}`);
    await server.query(`CREATE TABLE "Calib" (id bigint PRIMARY KEY, v text)`, [], one);
    await server.query(`INSERT INTO "Calib" VALUES (1, 'upper-1'), (2, 'upper-2')`, [], one);
    await using b = new PostgresSource({ ...server.clientConfig, database: one });
    expect((await Partitioner.restore(b, dir, { table: 'calib' })).tables).toEqual([{ name: 'calib', rows: 2, partitions: 1, created: true }]);
    expect(await server.query('SELECT v FROM "Calib" ORDER BY id', [], one)).toEqual([{ v: 'upper-1' }, { v: 'upper-2' }]);
    expect(await server.query('SELECT v FROM calib ORDER BY id', [], one)).toEqual([{ v: 'lower-1' }, { v: 'lower-2' }]);
    await rm(dir, { recursive: true, force: true });
  });

  it('PostgreSQL: "Calib" restored into a database holding only another table calib creates "Calib" and leaves calib alone', async () => {
    const from = await server.createDatabase(`nm${++n}`);
    await server.query('CREATE TABLE "Calib" (id bigint PRIMARY KEY, v text)', [], from);
    await server.query(`INSERT INTO "Calib" VALUES (1, 'source-1'), (2, 'source-2')`, [], from);
    const dir = await tempDir('names-other');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    await new Partitioner(src, { table: 'Calib', key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    const to = await server.createDatabase(`nm${++n}`);
    await server.query('CREATE TABLE calib (id bigint PRIMARY KEY, v text)', [], to);
    await server.query(`INSERT INTO calib VALUES (1, 'other-1'), (3, 'other-3')`, [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    // Without createTables: refused, naming the other table; nothing loaded.
    const err = await rejectsWith(Partitioner.restore(dst, dir, { createTables: false }), 'ENO_TABLE');
    expect(err.message).toMatch(/has no table "Calib".*"calib" there is another table/);
    expect(await server.query('SELECT id, v FROM calib ORDER BY id', [], to)).toEqual([
      { id: '1', v: 'other-1' },
      { id: '3', v: 'other-3' },
    ]);
    expect((await Partitioner.restore(dst, dir)).tables).toEqual([{ name: 'Calib', rows: 2, partitions: 1, created: true }]);
    expect(await dst.tables()).toEqual(['Calib', 'calib']);
    expect(await server.query('SELECT id, v FROM calib ORDER BY id', [], to)).toEqual([
      { id: '1', v: 'other-1' },
      { id: '3', v: 'other-3' },
    ]);
    expect(await server.query('SELECT id, v FROM "Calib" ORDER BY id', [], to)).toEqual([
      { id: '1', v: 'source-1' },
      { id: '2', v: 'source-2' },
    ]);
    expect((await Partitioner.compare(src, dst, 'Calib', { key: 'id' })).equal).toBe(true);
    await rm(dir, { recursive: true, force: true });

    // Dumped as table: 'calib' (the source resolves it to "Calib"): the archives hold "Calib" all the same.
    const typed = await tempDir('names-typed');
    await new Partitioner(src, { table: 'calib', key: 'id', rowsPerPartition: 100, outDir: typed }).dump({ incremental: true });
    const other = await server.createDatabase(`nm${++n}`);
    await server.query('CREATE TABLE calib (id bigint PRIMARY KEY, v text)', [], other);
    await server.query(`INSERT INTO calib VALUES (1, 'other-1'), (3, 'other-3')`, [], other);
    await using dst2 = new PostgresSource({ ...server.clientConfig, database: other });
    const refused = await rejectsWith(Partitioner.restore(dst2, typed, { createTables: false }), 'ENO_TABLE');
    expect(refused.message).toMatch(/has no table "Calib", which the archives of "calib" hold.*"calib" there is another table/);
    expect((await Partitioner.restore(dst2, typed)).tables).toEqual([{ name: 'calib', rows: 2, partitions: 1, created: true }]);
    expect(await dst2.tables()).toEqual(['Calib', 'calib']);
    expect(await server.query('SELECT id, v FROM calib ORDER BY id', [], other)).toEqual([
      { id: '1', v: 'other-1' },
      { id: '3', v: 'other-3' },
    ]);
    // Again, into the "Calib" it now has: its range replaced, calib still untouched.
    await server.query(`UPDATE "Calib" SET v = 'damaged' WHERE id = 2`, [], other);
    expect((await Partitioner.restore(dst2, typed)).tables).toEqual([{ name: 'calib', rows: 2, partitions: 1, created: false }]);
    expect(await server.query('SELECT id, v FROM "Calib" ORDER BY id', [], other)).toEqual([
      { id: '1', v: 'source-1' },
      { id: '2', v: 'source-2' },
    ]);
    expect(await server.query('SELECT id, v FROM calib ORDER BY id', [], other)).toEqual([
      { id: '1', v: 'other-1' },
      { id: '3', v: 'other-3' },
    ]);
    // Dumped again as "Calib" into the same outDir: two folders of one table, refused before anything loads.
    await new Partitioner(src, { table: 'Calib', key: 'id', rowsPerPartition: 100, outDir: typed }).dump({ incremental: true });
    const both = await rejectsWith(Partitioner.restore(dst2, typed), 'EBAD_CONFIG');
    expect(both.message).toMatch(/the archives of "Calib" and "calib" hold the same table, "Calib"/);
    expect((await Partitioner.restore(dst2, typed, { table: 'Calib' })).rows).toBe(2);
    await rm(typed, { recursive: true, force: true });
  });

  it('SQLite: restores a table dumped as "calib" into a file whose table is "Calib"', async () => {
    const dir = await tempDir('names-lite');
    await using src = new SqliteSource(join(dir, 'a.db'), { create: true });
    await src.createTable('Calib', 'CREATE TABLE Calib (SEQNO INTEGER PRIMARY KEY, gain REAL)');
    await src.load('Calib', Readable.from([Buffer.from('1\t0.5\n2\t1.5\n3\t2.5\n')]));
    await new Partitioner(src, { table: 'calib', key: 'SEQNO', rowsPerPartition: 2, outDir: join(dir, 'out') }).dump({ incremental: true });
    await using dst = new SqliteSource(join(dir, 'b.db'), { create: true });
    await dst.createTable('Calib', 'CREATE TABLE Calib (SEQNO INTEGER PRIMARY KEY, gain REAL)');
    expect((await Partitioner.restore(dst, join(dir, 'out'))).tables).toEqual([{ name: 'calib', rows: 3, partitions: 2, created: false }]);
    expect((await Partitioner.compare(src, dst, 'Calib', { key: 'SEQNO' })).equal).toBe(true);
  });
});

describe('PostgresSource DDL with backslashes', () => {
  it("keeps a default and a check with backslashes in a database where standard_conforming_strings is off", async () => {
    const from = await server.createDatabase(`nm${++n}`);
    await server.query("CREATE TABLE paths (id bigint PRIMARY KEY, dir text DEFAULT 'C:\\new\\table', w text CHECK (w <> 'a\\tb'))", [], from);
    await server.query("INSERT INTO paths (id, w) VALUES (1, 'x')", [], from);
    const dir = await tempDir('names-scs');
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    await new Partitioner(src, { table: 'paths', key: 'id', rowsPerPartition: 100, outDir: dir }).dump({ incremental: true });
    const to = await server.createDatabase(`nm${++n}`);
    await server.query(`ALTER DATABASE ${to} SET standard_conforming_strings = off`, [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    await Partitioner.restore(dst, dir);
    // The default and the check as values (printed DDL reads differently under either setting).
    for (const db of [from, to]) {
      await server.query('INSERT INTO paths (id, w) VALUES (2, $1)', ['a\tb'], db); // a real TAB passes the check
      await expect(server.query('INSERT INTO paths (id, w) VALUES (3, $1)', ['a\\tb'], db)).rejects.toThrow(/check constraint/);
    }
    expect(await server.query('SELECT dir FROM paths WHERE id = 2', [], to)).toEqual([{ dir: 'C:\\new\\table' }]);
    expect(await server.query('SELECT dir FROM paths WHERE id = 2', [], from)).toEqual([{ dir: 'C:\\new\\table' }]);
    await rm(dir, { recursive: true, force: true });
  });
});

/** A new database made by `statements`, and its `table` dumped (key id, 10 rows per partition) to a new folder. */
async function dumpedDatabase(statements: readonly string[], table: string): Promise<{ from: string; dir: string }> {
  const from = await server.createDatabase(`ob${++n}`);
  for (const q of statements) await server.query(q, [], from);
  const dir = await tempDir(`dumped-${table}`);
  await using src = new PostgresSource({ ...server.clientConfig, database: from });
  await new Partitioner(src, { table, key: 'id', rowsPerPartition: 10, outDir: dir }).dump({ incremental: true });
  return { from, dir };
}

describe('Partitioner.restore of a table using types of its own', () => {
  it('carries the enum types and domains its columns use (arrays of them, a domain over an enum), created where the target lacks them', async () => {
    const { from, dir } = await dumpedDatabase(
      [
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s $stowage$ fine')",
        // Used only as the element of an array column; a label holding what an array literal quotes.
        "CREATE TYPE level AS ENUM ('lo', 'hi', 'a,{b} \"c\" \\ d', 'NULL')",
        // No labels at all.
        'CREATE TYPE nothing AS ENUM ()',
        'CREATE DOMAIN posint AS integer NOT NULL DEFAULT 1 CONSTRAINT positive CHECK (VALUE > 0)',
        "CREATE DOMAIN good_mood AS mood CHECK (VALUE <> 'sad')",
        'CREATE DOMAIN small AS integer',
        'CREATE TABLE feel (id bigint PRIMARY KEY, m mood NOT NULL, p posint, g good_mood, ms mood[], ls level[], sm small, no nothing)',
        "INSERT INTO feel SELECT s, (enum_range(NULL::mood))[1 + s % 3], s, 'ok', ARRAY['ok', 'sad']::mood[], ARRAY['hi', 'lo']::level[], s * 100 FROM generate_series(1, 30) s",
        // A check added NOT VALID (CREATE DOMAIN has no such clause) after rows that break it (sm 1000 to 3000).
        'ALTER DOMAIN small ADD CONSTRAINT small_max CHECK (VALUE < 1000) NOT VALID',
      ],
      'feel',
    );
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    const to = await server.createDatabase(`ob${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    expect((await Partitioner.restore(dst, dir)).rows).toBe(30);
    expect((await Partitioner.compare(src, dst, 'feel', { key: 'id' })).equal).toBe(true);
    expect(await dst.schema('feel')).toBe(await src.schema('feel'));
    expect(await server.query<{ r: string }>('SELECT enum_range(NULL::mood)::text AS r', [], to)).toEqual([{ r: '{sad,ok,"it\'s $stowage$ fine"}' }]);
    // The domains keep their rules: NOT NULL, the default, the named check, the check over the enum.
    await expect(server.query('INSERT INTO feel (id, m, p) VALUES (100, $1, 0)', ['ok'], to)).rejects.toThrow(/positive/);
    await expect(server.query('INSERT INTO feel (id, m, p, g) VALUES (101, $1, 2, $2)', ['ok', 'sad'], to)).rejects.toThrow(/good_mood_check/);
    await expect(server.query('INSERT INTO feel (id, m, p) VALUES (102, $1, NULL)', ['ok'], to)).rejects.toThrow(/null/);
    expect(await server.query<{ d: string | null }>("SELECT typdefault AS d FROM pg_type WHERE typname = 'posint'", [], to)).toEqual([{ d: '1' }]);
    expect(await server.query<{ r: string[] }>('SELECT enum_range(NULL::level)::text[] AS r', [], to)).toEqual([{ r: ['lo', 'hi', 'a,{b} "c" \\ d', 'NULL'] }]);
    expect(await server.query<{ n: number }>('SELECT cardinality(enum_range(NULL::nothing))::int AS n', [], to)).toEqual([{ n: 0 }]);
    // The rows that break the NOT VALID check are in, and the check is back, NOT VALID, for new rows.
    expect(await server.query<{ n: number }>('SELECT count(*)::int AS n FROM feel WHERE sm >= 1000', [], to)).toEqual([{ n: 21 }]);
    expect(await server.query("SELECT conname, convalidated FROM pg_constraint WHERE conname = 'small_max'", [], to)).toEqual([{ conname: 'small_max', convalidated: false }]);
    await expect(server.query('INSERT INTO feel (id, m, p, sm) VALUES (103, $1, 2, 5000)', ['ok'], to)).rejects.toThrow(/small_max/);
    // A target that has the type already (with a label more) keeps it as it is.
    const other = await server.createDatabase(`ob${++n}`);
    await server.query("CREATE TYPE mood AS ENUM ('sad', 'ok', 'it''s $stowage$ fine', 'happy')", [], other);
    await using dst2 = new PostgresSource({ ...server.clientConfig, database: other });
    expect((await Partitioner.restore(dst2, dir)).rows).toBe(30);
    expect(await server.query<{ r: string }>('SELECT enum_range(NULL::mood)::text AS r', [], other)).toEqual([{ r: '{sad,ok,"it\'s $stowage$ fine",happy}' }]);
    expect((await Partitioner.compare(src, dst2, 'feel', { key: 'id' })).equal).toBe(true);
    // While the rows load the check is off; a table given up (discard) leaves it back on too.
    const third = await server.createDatabase(`ob${++n}`);
    await using dst4 = new PostgresSource({ ...server.clientConfig, database: third });
    const deferred = await dst4.createTable('feel', await src.schema('feel'), { deferIndexes: true });
    const smallMax = "SELECT convalidated FROM pg_constraint WHERE conname = 'small_max'";
    expect(await server.query(smallMax, [], third)).toEqual([]);
    await deferred!.discard();
    expect(await dst4.tables()).toEqual([]);
    expect(await server.query(smallMax, [], third)).toEqual([{ convalidated: false }]);
    // A table of that name (its row type is a type "mood" too) is not taken for the enum: refused, nothing created.
    const clash = await server.createDatabase(`ob${++n}`);
    await server.query('CREATE TABLE mood (x int)', [], clash);
    await using dst3 = new PostgresSource({ ...server.clientConfig, database: clash });
    const e = await rejectsWith(Partitioner.restore(dst3, dir), 'EDB');
    expect(e.message).toMatch(/type mood of schema public is not an enum type/);
    expect(await dst3.tables()).toEqual(['mood']);
    await rm(dir, { recursive: true, force: true });
  });

  it('fails with EDB naming what is missing and what to do, nothing created, for a type of another schema; restores once it exists', async () => {
    const { from, dir } = await dumpedDatabase(
      ['CREATE SCHEMA shared', "CREATE TYPE shared.kind AS ENUM ('a', 'b')", 'CREATE TABLE tagged (id bigint PRIMARY KEY, k shared.kind)', "INSERT INTO tagged SELECT s, 'b' FROM generate_series(1, 30) s"],
      'tagged',
    );
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    const to = await server.createDatabase(`ob${++n}`);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    const err = await rejectsWith(Partitioner.restore(dst, dir), 'EDB');
    expect(err.message).toContain('schema "shared" does not exist');
    expect(err.message).toMatch(/pg_dump --schema-only/);
    expect(err.message).toMatch(/nothing was created/);
    expect(err.details).toMatchObject({ sqlState: '3F000' });
    expect(await dst.tables()).toEqual([]);
    // A type that is not there (undefined_object), a function a default calls (undefined_function) and a sequence it names say the same.
    for (const [ddl, state] of [
      ['CREATE TABLE f (id bigint, t no_such_type)', '42704'],
      ['CREATE TABLE f (id bigint DEFAULT no_such_fn())', '42883'],
      // A sequence the table does not own (shared by several tables): undefined_table.
      ["CREATE TABLE f (id bigint DEFAULT nextval('shared_seq'))", '42P01'],
    ] as const) {
      const e = await rejectsWith(dst.createTable('f', ddl), 'EDB');
      expect(e.details).toMatchObject({ sqlState: state });
      expect(e.message).toMatch(/pg_dump --schema-only/);
    }
    // A plain syntax error keeps its own message, without the advice.
    const syntax = await rejectsWith(dst.createTable('f', 'CREATE TABLEX f (id int)'), 'EDB');
    expect(syntax.message).not.toMatch(/schema-only/);
    await server.query('CREATE SCHEMA shared', [], to);
    await server.query("CREATE TYPE shared.kind AS ENUM ('a', 'b')", [], to);
    expect((await Partitioner.restore(dst, dir)).rows).toBe(30);
    expect((await Partitioner.compare(src, dst, 'tagged', { key: 'id' })).equal).toBe(true);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('Partitioner.restore into an existing table whose columns have other types', () => {
  it('refuses (EBAD_CONFIG, nothing loaded) to let the target convert the values, naming each column and both types; allowTypeChanges loads them converted', async () => {
    const { from, dir } = await dumpedDatabase(
      [
        'CREATE TABLE ev (id int PRIMARY KEY, n numeric, ts timestamptz, f float8, c varchar(10))',
        "INSERT INTO ev VALUES (1, 1.23456, '2020-01-01 23:30:00+00', 0.1, 'abc'), (2, 99999.99, '2020-06-01 00:00:00-05', 0.123456789012345, 'x')",
      ],
      'ev',
    );
    await using src = new PostgresSource({ ...server.clientConfig, database: from });
    const to = await server.createDatabase(`ob${++n}`);
    await server.query('CREATE TABLE ev (id int PRIMARY KEY, n numeric(8,1), ts timestamp, f float4, c varchar(10))', [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    // Loaded as they were, 1.23456 became 1.2, the offset was dropped, 0.123456789012345 became 0.12345679; and the restore said "2 rows".
    const err = await rejectsWith(Partitioner.restore(dst, dir), 'EBAD_CONFIG');
    expect(err.message).toContain('"ev"."n" is numeric(8,1) there and numeric in');
    expect(err.message).toContain('"ev"."ts" is timestamp without time zone there and timestamp with time zone in');
    expect(err.message).toContain('"ev"."f" is real there and double precision in');
    expect(err.message).not.toContain('"c"');
    expect(err.message).toMatch(/Nothing was loaded\..*allowTypeChanges: true/);
    expect(err.details).toMatchObject({ option: 'allowTypeChanges', columns: expect.arrayContaining([expect.objectContaining({ table: 'ev', column: 'n', archived: 'numeric', target: 'numeric(8,1)' })]) });
    expect(await server.query('SELECT count(*)::int AS n FROM ev', [], to)).toEqual([{ n: 0 }]);
    await rejectsWith(Partitioner.restore(dst, dir, { allowTypeChanges: 'yes' as unknown as boolean }), 'EBAD_CONFIG');
    // Asked for: loaded, converted.
    expect((await Partitioner.restore(dst, dir, { allowTypeChanges: true })).rows).toBe(2);
    expect(await server.query<{ n: string }>('SELECT n::text AS n FROM ev ORDER BY id', [], to)).toEqual([{ n: '1.2' }, { n: '100000.0' }]);
    // A table the restore created from the archives has their types: restored again over it, no question.
    const fresh = await server.createDatabase(`ob${++n}`);
    await using dst2 = new PostgresSource({ ...server.clientConfig, database: fresh });
    expect((await Partitioner.restore(dst2, dir)).rows).toBe(2);
    expect((await Partitioner.restore(dst2, dir)).rows).toBe(2);
    expect((await Partitioner.compare(src, dst2, 'ev', { key: 'id' })).equal).toBe(true);
  });
});

describe('Partitioner.restore again into a table it created, from a source in another schema', () => {
  it('takes a type of another schema as the same type, qualified or not (format_type qualifies it only off the search path)', async () => {
    const from = await server.createDatabase(`ob${++n}`);
    for (const q of ['CREATE SCHEMA dbi', "CREATE TYPE public.lvl AS ENUM ('lo', 'hi')", 'CREATE TABLE dbi.ev (id int PRIMARY KEY, l public.lvl)', "INSERT INTO dbi.ev VALUES (1, 'lo'), (2, 'hi')"]) await server.query(q, [], from);
    await using src = new PostgresSource({ ...server.clientConfig, database: from }, { schema: 'dbi' });
    expect((await src.columns('ev'))[1]!.type).toBe('public.lvl');
    const dir = await tempDir('other-schema');
    await new Partitioner(src, { table: 'ev', key: 'id', outDir: dir }).dump();
    const to = await server.createDatabase(`ob${++n}`);
    await server.query("CREATE TYPE lvl AS ENUM ('lo', 'hi')", [], to);
    await using dst = new PostgresSource({ ...server.clientConfig, database: to });
    expect((await Partitioner.restore(dst, dir)).tables).toEqual([{ name: 'ev', rows: 2, partitions: 1, created: true }]);
    expect((await dst.columns('ev'))[1]!.type).toBe('lvl');
    // Before: EBAD_CONFIG, "ev"."l" is lvl there and public.lvl in ...
    expect((await Partitioner.restore(dst, dir)).tables).toEqual([{ name: 'ev', rows: 2, partitions: 1, created: false }]);
  });
});
