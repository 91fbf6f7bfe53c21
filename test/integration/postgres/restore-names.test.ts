// Restoring into PostgreSQL what a user names as they wrote it: a table
// created unquoted (CalibPmtSpec, stored as calibpmtspec) and dumped under
// the name the user writes; and DDL with backslashes into a database whose
// sessions default to standard_conforming_strings = off.
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { tempDir } from '../../unit/db/helpers.js';
import { join } from 'node:path';
import { Readable } from 'node:stream';

let server: PostgresServer;
let n = 0;

beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
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
