import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { TableSource } from '../../../src/db/index.js';
import { Partitioner, formatBound } from '../../../src/partition/index.js';
import { formatManifest, parseManifest } from '../../../src/partition/manifest.js';
import { writePartitionArchive } from '../../../src/partition/partition-archive.js';
import { UnitBuffers, loadUnits, restorePartitions } from '../../../src/partition/restore.js';
import { readArchive } from '../../../src/archive/archive-reader.js';
import type { Progress } from '../../../src/progress.js';
import { archiveEntries, count, exec, makePairDb, rejectsWith, stopAtLoad, tempDir } from './helpers.js';

const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const PAIR = ['CalibVld', 'Calib'];

/** A source DB with a dump of the pair in `out`. */
async function dumped(keys = seq(1, 250)): Promise<{ d: string; f: string; out: string; src: SqliteSource }> {
  const d = await tempDir();
  const f = join(d, 'src.db');
  makePairDb(f, keys, 3);
  const src = new SqliteSource(f);
  const out = join(d, 'out');
  await new Partitioner(src, { tables: PAIR, rowsPerPartition: 100, outDir: out }).dump();
  return { d, f, out, src };
}

function tablesOf(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
  } finally {
    db.close();
  }
}

function rowsOf(file: string, table: string): unknown[][] {
  const db = new Database(file, { readonly: true });
  db.defaultSafeIntegers(true);
  try {
    return db.prepare(`SELECT * FROM "${table}" ORDER BY 1, 2`).raw(true).all() as unknown[][];
  } finally {
    db.close();
  }
}

describe('Partitioner.restore', () => {
  it('follows symbolic links to archives and to table folders kept elsewhere; a dangling one is ENOT_FOUND, a file given as dir EBAD_CONFIG', async () => {
    const { d, f, out, src } = await dumped();
    await using _src = src;
    // Table folder with two of its archives moved to another disk, left as links.
    const elsewhere = join(d, 'disk2');
    await mkdir(elsewhere);
    for (const n of ['0000000001-0000000100.tar.gz', '0000000101-0000000200.tar.gz']) {
      for (const x of [n, `${n}.dna`]) {
        await rename(join(out, 'CalibVld', x), join(elsewhere, x));
        await symlink(join(elsewhere, x), join(out, 'CalibVld', x));
      }
    }
    // And the whole table folder, as a link from another outDir.
    const linked = join(d, 'linked');
    await mkdir(linked);
    await symlink(join(out, 'CalibVld'), join(linked, 'CalibVld'));
    for (const dir of [out, linked]) {
      const file = join(d, `dst-${dir === out ? 'out' : 'linked'}.db`);
      await using dst = new SqliteSource(file, { create: true });
      const r = await Partitioner.restore(dst, dir);
      expect(r.partitions).toBe(3);
      expect(r.tables.map((t) => [t.name, t.rows])).toEqual([
        ['Calib', 750],
        ['CalibVld', 250],
      ]);
      expect(rowsOf(file, 'Calib')).toEqual(rowsOf(f, 'Calib'));
    }
    // An alias of a table folder beside it (CalibVld_latest -> CalibVld): its archives are the same ones, counted once.
    await symlink(join(out, 'CalibVld'), join(out, 'CalibVld_latest'));
    {
      await using dst = new SqliteSource(join(d, 'dst-alias.db'), { create: true });
      expect((await Partitioner.restore(dst, out)).partitions).toBe(3);
      expect(rowsOf(join(d, 'dst-alias.db'), 'Calib')).toEqual(rowsOf(f, 'Calib'));
    }
    await rm(join(out, 'CalibVld_latest'));
    // A link whose target went away (an unmounted disk): refused, nothing loaded.
    await rename(elsewhere, join(d, 'unmounted'));
    await using dst = new SqliteSource(join(d, 'dst-dangling.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(dst, out), 'ENOT_FOUND');
    expect(err.message).toMatch(/0000000001-0000000100\.tar\.gz is a symbolic link whose target is missing/);
    expect(await dst.tables()).toEqual([]);
    const dangling = join(d, 'dangling');
    await mkdir(dangling);
    await symlink(join(d, 'nowhere'), join(dangling, 'CalibVld'));
    await rejectsWith(Partitioner.restore(dst, dangling), 'ENOT_FOUND');
    // A file given as the folder.
    const asDir = await rejectsWith(Partitioner.restore(dst, join(d, 'unmounted', '0000000001-0000000100.tar.gz')), 'EBAD_CONFIG');
    expect(asDir.message).toMatch(/is not a folder: give the dump's outDir, or one table's folder in it/);
  });

  it('refuses (ENOT_FOUND, nothing loaded) an archive gone while its sidecar is there, for every table and for the tables of its folder; another range or table restores', async () => {
    const { d, f, out, src } = await dumped();
    await using _src = src;
    // Another table dumped into the same outDir (its own folder).
    exec(f, 'CREATE TABLE Other (SEQNO INTEGER PRIMARY KEY, v TEXT); INSERT INTO Other SELECT SEQNO, CAST(SEQNO AS TEXT) FROM CalibVld');
    await new Partitioner(src, { table: 'Other', rowsPerPartition: 100, outDir: out }).dump();
    // The middle archive of the pair deleted (or not copied to the recovery node), its sidecar left: the restore succeeded with 2 of 3 ranges.
    const gone = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    await rm(gone);
    let n = 0;
    const fresh = (): SqliteSource => new SqliteSource(join(d, `dst-orphan-${++n}.db`), { create: true });
    for (const options of [{}, { table: 'Calib' }, { table: 'CalibVld', lo: 150 }]) {
      await using dst = fresh();
      const err = await rejectsWith(Partitioner.restore(dst, out, options), 'ENOT_FOUND');
      expect(err.message).toContain(`${gone} [101, 200]`);
      expect(err.message).toMatch(/missing while their DNA sidecar is there.*Nothing was loaded\./);
      expect(err.details).toMatchObject({ path: gone, missing: [{ path: gone, lo: 101n, hi: 200n }] });
      expect(await dst.tables()).toEqual([]);
    }
    // A range that does not reach it, and a table of another folder, restore.
    {
      await using dst = fresh();
      expect((await Partitioner.restore(dst, out, { lo: 201 })).tables.map((t) => [t.name, t.rows])).toEqual([
        ['Calib', 150],
        ['CalibVld', 50],
        ['Other', 50],
      ]);
    }
    {
      await using dst = fresh();
      expect((await Partitioner.restore(dst, out, { table: 'Other' })).rows).toBe(250);
    }
    // A table whose only archive in the range asked for is the one gone: the same error, not "no partition archive holds it".
    const otherGone = join(out, 'Other', '0000000101-0000000200.tar.gz');
    await rm(otherGone);
    {
      await using dst = fresh();
      const err = await rejectsWith(Partitioner.restore(dst, out, { table: 'Other', lo: 101, hi: 200 }), 'ENOT_FOUND');
      expect(err.message).toContain(`${otherGone} [101, 200]`);
    }
    await rm(`${otherGone}.dna`);
    // Its sidecar removed too (the range was meant to go): the rest restores.
    await rm(`${gone}.dna`);
    await using dst = fresh();
    expect((await Partitioner.restore(dst, out)).partitions).toBe(4);
  });

  it('refuses (EBAD_CONFIG) an existing table whose column has another type (TEXT where the archives hold INTEGER: affinity would turn \'007\' into 7); the same type in other letter case is the same', async () => {
    const d = await tempDir();
    const f = join(d, 'typed.db');
    exec(f, "CREATE TABLE t (id INTEGER PRIMARY KEY, code TEXT, n integer); INSERT INTO t VALUES (1, '007', 5), (2, '010', 6), (30001, '3', 1)");
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    await new Partitioner(src, { table: 't', key: 'id', outDir: out }).dump();
    const other = join(d, 'other.db');
    exec(other, 'CREATE TABLE t (id INTEGER PRIMARY KEY, code INTEGER, n INTEGER)');
    {
      await using dst = new SqliteSource(other);
      const err = await rejectsWith(Partitioner.restore(dst, out), 'EBAD_CONFIG');
      expect(err.message).toContain('"t"."code" is INTEGER there and TEXT in');
      expect(err.message).not.toContain('"n"');
      expect(count(other, 't')).toBe(0);
    }
    // Types SQLite stores alike (same affinity) are the same: INT and INTEGER, VARCHAR(10) and TEXT.
    const same = join(d, 'same.db');
    exec(same, 'CREATE TABLE t (id int PRIMARY KEY, code varchar(10), n INT)');
    {
      await using dst = new SqliteSource(same);
      expect((await Partitioner.restore(dst, out)).rows).toBe(3);
      expect((await Partitioner.compare(src, dst, 't', { key: 'id' })).equal).toBe(true);
    }
    // The source's column changed type since the first archive (complete, never written again):
    // a table the restore created from the newest archive takes the older archives' rows too.
    exec(f, "ALTER TABLE t RENAME TO old; CREATE TABLE t (id INTEGER PRIMARY KEY, code BLOB, n integer); INSERT INTO t SELECT * FROM old; DROP TABLE old; INSERT INTO t VALUES (40001, x'00ff', 7)");
    const again = await new Partitioner(src, { table: 't', key: 'id', outDir: out }).dump();
    expect(again.written.map((w) => w.lo)).not.toContain(1n); // [1, 10000] stays as archived, TEXT
    const fresh = join(d, 'fresh.db');
    exec(fresh, 'SELECT 1');
    await using dst = new SqliteSource(fresh);
    expect((await Partitioner.restore(dst, out)).rows).toBe(4);
    expect((await Partitioner.restore(dst, out)).rows).toBe(4);
  });

  it('creates the tables from the archived DDL and loads every range: the copy compares equal', async () => {
    const { d, f, out, src } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const r = await Partitioner.restore(dst, out);
    expect(r).toEqual({
      partitions: 3,
      rows: 1000,
      bytes: expect.any(Number),
      tables: [
        { name: 'Calib', rows: 750, partitions: 3, created: true },
        { name: 'CalibVld', rows: 250, partitions: 3, created: true },
      ],
    });
    expect(await dst.schema('Calib')).toBe(await src.schema('Calib'));
    for (const t of PAIR) {
      const c = await Partitioner.compare(src, dst, t, { rowsPerPartition: 100 });
      expect(c.equal, t).toBe(true);
      expect(c.ranges).toHaveLength(3);
      expect(rowsOf(join(d, 'dst.db'), t)).toEqual(rowsOf(f, t));
    }
    await src.close();
  });

  it('leaves the next rowid past the rows restored, AUTOINCREMENT or not, into a table it creates and one that existed', async () => {
    const d = await tempDir();
    const f = join(d, 'src.db');
    const ddl = 'CREATE TABLE auto (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT); CREATE TABLE plain (id INTEGER PRIMARY KEY, note TEXT);';
    exec(f, ddl);
    exec(f, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 250) INSERT INTO auto (note) SELECT 'run ' || i FROM s; INSERT INTO plain SELECT id, note FROM auto;");
    await using src = new SqliteSource(f);
    expect(typeof (src as { advanceSequences?: unknown }).advanceSequences).toBe('undefined');
    const out = join(d, 'out');
    for (const table of ['auto', 'plain']) await new Partitioner(src, { table, key: 'id', rowsPerPartition: 100, outDir: out }).dump();
    const existing = join(d, 'existing.db');
    exec(existing, ddl);
    for (const [file, created] of [[join(d, 'made.db'), true], [existing, false]] as const) {
      {
        await using dst = new SqliteSource(file, { create: true });
        const r = await Partitioner.restore(dst, out);
        expect(r.tables.map((t) => [t.name, t.rows, t.created])).toEqual([
          ['auto', 250, created],
          ['plain', 250, created],
        ]);
      }
      exec(file, "INSERT INTO auto (note) VALUES ('after'); INSERT INTO plain (note) VALUES ('after');");
      expect(rowsOf(file, 'auto').length).toBe(251);
      const db = new Database(file, { readonly: true });
      try {
        expect(db.prepare('SELECT max(id) FROM auto').pluck().get()).toBe(251);
        expect(db.prepare('SELECT max(id) FROM plain').pluck().get()).toBe(251);
      } finally {
        db.close();
      }
    }
  });

  it('carries an AUTOINCREMENT table\'s high-water mark into the table it creates: rowids of rows deleted before the dump are not given again', async () => {
    const d = await tempDir();
    const f = join(d, 'src.db');
    exec(f, "CREATE TABLE \"it's\" (id INTEGER PRIMARY KEY AUTOINCREMENT, note TEXT)");
    exec(f, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 25) INSERT INTO \"it's\" (note) SELECT 'run ' || i FROM s; DELETE FROM \"it's\" WHERE id > 20;");
    await using src = new SqliteSource(f);
    expect(await src.schema("it's")).toMatch(/INSERT INTO sqlite_sequence \(name, seq\) VALUES \('it''s', 25\);/);
    const out = join(d, 'out');
    await new Partitioner(src, { table: "it's", key: 'id', rowsPerPartition: 100, outDir: out }).dump();
    const file = join(d, 'made.db');
    {
      await using dst = new SqliteSource(file, { create: true });
      expect((await Partitioner.restore(dst, out)).rows).toBe(20);
    }
    exec(file, "INSERT INTO \"it's\" (note) VALUES ('after')");
    const db = new Database(file, { readonly: true });
    try {
      expect(db.prepare('SELECT max(id) FROM "it\'s"').pluck().get()).toBe(26);
    } finally {
      db.close();
    }
  });

  it('restores again over existing rows, replacing each range (the rewritten tail)', async () => {
    const { d, out, src } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    await Partitioner.restore(dst, out);
    exec(join(d, 'dst.db'), 'UPDATE "Calib" SET "NOTE" = \'damaged\' WHERE "SEQNO" = 5');
    exec(join(d, 'dst.db'), 'DELETE FROM "CalibVld" WHERE "SEQNO" = 210');
    const r = await Partitioner.restore(dst, out);
    expect(r.tables.every((t) => !t.created)).toBe(true);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(750);
    expect((await Partitioner.compare(src, dst, 'Calib')).equal).toBe(true);
    expect((await Partitioner.compare(src, dst, 'CalibVld')).equal).toBe(true);
    await src.close();
  });

  it('loads into an existing table by column name: columns in another order keep their values, a missing one is ENO_TABLE', async () => {
    const { d, f, out, src } = await dumped();
    const vld = '"SEQNO", "TIMESTART", "TIMEEND", "SITEMASK", "VERSIONDATE"';
    // Same columns in another order (two TEXT columns swapped), and one more with a default.
    const dstFile = join(d, 'dst.db');
    exec(dstFile, 'CREATE TABLE "CalibVld" ("SEQNO" INTEGER PRIMARY KEY, "TIMEEND" TEXT NOT NULL, "VERSIONDATE" TEXT, "TIMESTART" TEXT NOT NULL, "EXTRA" TEXT DEFAULT \'none\', "SITEMASK" INTEGER)');
    await using dst = new SqliteSource(dstFile);
    const r = await Partitioner.restore(dst, out, { table: 'CalibVld' });
    expect(r.rows).toBe(250);
    const pick = (file: string): unknown[][] => {
      const db = new Database(file, { readonly: true });
      try {
        return db.prepare(`SELECT ${vld} FROM "CalibVld" ORDER BY 1`).raw(true).all() as unknown[][];
      } finally {
        db.close();
      }
    };
    expect(pick(dstFile)).toEqual(pick(f));
    expect(pick(dstFile)[0]![1]).not.toEqual(pick(dstFile)[0]![2]);
    expect(rowsOf(dstFile, 'CalibVld').every((row) => row.includes('none'))).toBe(true);
    // compare matches the columns by name: the rows are the same, the extra column makes the tables differ.
    const cmp = await Partitioner.compare(src, dst, 'CalibVld');
    expect([cmp.differingRanges.length, cmp.columnsEqual, cmp.equal]).toEqual([0, false, false]);
    // A table lacking an archived column: ENO_TABLE naming it, nothing loaded.
    const lacking = join(d, 'lacking.db');
    exec(lacking, 'CREATE TABLE "CalibVld" ("SEQNO" INTEGER PRIMARY KEY, "TIMESTART" TEXT NOT NULL, "TIMEEND" TEXT NOT NULL, "SITEMASK" INTEGER)');
    await using dst2 = new SqliteSource(lacking);
    const err = await rejectsWith(Partitioner.restore(dst2, out, { table: 'CalibVld' }), 'ENO_TABLE');
    expect(err.message).toMatch(/no column "VERSIONDATE"/);
    expect(count(lacking, 'CalibVld')).toBe(0);
    await src.close();
  });

  it('creates a table from its newest archive’s DDL: archives from before a column was added restore too; a column the table lacks fails before anything is loaded', async () => {
    const d = await tempDir();
    const f = join(d, 'src.db');
    makePairDb(f, Array.from({ length: 250 }, (_, i) => i + 1), 3);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = (): Partitioner => new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out });
    await p().dump();
    exec(f, 'ALTER TABLE "CalibVld" ADD COLUMN "EXTRA" TEXT');
    exec(f, `WITH RECURSIVE s(n) AS (SELECT 251 UNION ALL SELECT n + 1 FROM s WHERE n < 420) INSERT INTO "CalibVld" SELECT n, 'a', 'b', 1, 'c', 'v' || n FROM s`);
    await p().dump();
    const fresh = join(d, 'fresh.db');
    exec(fresh, 'CREATE TABLE "other" ("x" INTEGER)');
    await using dst = new SqliteSource(fresh);
    const r = await Partitioner.restore(dst, out);
    expect(r.rows).toBe(420);
    const cmp = await Partitioner.compare(src, dst, 'CalibVld');
    expect(cmp.equal).toBe(true);
    // The table as it was before the column came (an older restore, say): refused before any row is loaded.
    const old = join(d, 'old.db');
    makePairDb(old, []);
    await using dst2 = new SqliteSource(old);
    const err = await rejectsWith(Partitioner.restore(dst2, out), 'ENO_TABLE');
    expect(err.message).toMatch(/has no column "EXTRA"/);
    expect(err.message).toContain('Nothing was loaded');
    expect(count(old, 'CalibVld')).toBe(0);
  });

  it('a column dropped between dumps: the table is created from the newest archive that still has it, and every archive restores', async () => {
    const d = await tempDir();
    const f = join(d, 'src.db');
    makePairDb(f, Array.from({ length: 150 }, (_, i) => i + 1), 3);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = (): Partitioner => new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, settleRanges: 0 });
    await p().dump();
    const before = new Database(f, { readonly: true });
    const versionDate = (before.prepare('SELECT "VERSIONDATE" FROM "CalibVld" WHERE "SEQNO" = 42').pluck().get() as string | null) ?? null;
    before.close();
    exec(f, 'ALTER TABLE "CalibVld" DROP COLUMN "VERSIONDATE"');
    exec(f, `WITH RECURSIVE s(n) AS (SELECT 151 UNION ALL SELECT n + 1 FROM s WHERE n < 320) INSERT INTO "CalibVld" SELECT n, 'a', 'b', 1 FROM s`);
    await p().dump();
    const fresh = join(d, 'fresh.db');
    exec(fresh, 'CREATE TABLE "other" ("x" INTEGER)');
    await using dst = new SqliteSource(fresh);
    expect((await Partitioner.restore(dst, out)).rows).toBe(320);
    const db = new Database(fresh, { readonly: true });
    try {
      expect(db.prepare('SELECT "VERSIONDATE" FROM "CalibVld" WHERE "SEQNO" = 42').pluck().get()).toBe(versionDate);
      expect(db.prepare('SELECT COUNT(*) FROM "CalibVld" WHERE "SEQNO" > 150 AND "VERSIONDATE" IS NULL').pluck().get()).toBe(170);
    } finally {
      db.close();
    }
  });

  it('restores one table, or one key range (cutting partitions that straddle it)', async () => {
    const { d, out, src } = await dumped();
    await using one = new SqliteSource(join(d, 'one.db'), { create: true });
    const r = await Partitioner.restore(one, out, { table: 'Calib' });
    expect(r.tables.map((t) => t.name)).toEqual(['Calib']);
    expect(tablesOf(join(d, 'one.db'))).toEqual(['Calib']);
    expect((await Partitioner.compare(src, one, 'Calib')).equal).toBe(true);

    await using part = new SqliteSource(join(d, 'part.db'), { create: true });
    const rr = await Partitioner.restore(part, join(out, 'CalibVld'), { lo: 150, hi: 210 });
    expect(rr.partitions).toBe(2);
    expect(rr.tables).toEqual([
      { name: 'Calib', rows: 61 * 3, partitions: 2, created: true },
      { name: 'CalibVld', rows: 61, partitions: 2, created: true },
    ]);
    const c = await Partitioner.compare(src, part, 'Calib', { lo: 150, hi: 210 });
    expect(c.equal).toBe(true);
    expect((await part.keyRange('Calib', 'SEQNO'))).toMatchObject({ lo: 150n, hi: 210n });
    // A range restore next to existing rows replaces only inside the range.
    exec(join(d, 'part.db'), 'UPDATE "CalibVld" SET "SITEMASK" = 0 WHERE "SEQNO" IN (150, 211)');
    await Partitioner.restore(part, out, { lo: 100, hi: 150, table: 'CalibVld' });
    expect(rowsOf(join(d, 'part.db'), 'CalibVld').filter((row) => row[3] === 0n).map((row) => row[0])).toEqual([]);
    expect(count(join(d, 'part.db'), 'CalibVld')).toBe(61 + 50);
    await src.close();
  });

  it('refuses archives of one table whose ranges overlap (two dumps with other range sizes), loading nothing', async () => {
    const { d, out, src } = await dumped();
    // The same table dumped again with ranges of 1000 keys, in a second folder under the same root.
    const again = join(d, 'again');
    await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 1000, outDir: again }).dump();
    await rename(join(again, 'CalibVld'), join(out, 'CalibVld-1000'));
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(dst, out), 'EBAD_CONFIG');
    expect(err.message).toMatch(/would load those rows twice/);
    expect(err.details['table']).toBe('CalibVld');
    expect(tablesOf(join(d, 'dst.db'))).toEqual([]);
    // One folder of them restores.
    expect((await Partitioner.restore(dst, join(out, 'CalibVld-1000'))).rows).toBe(250);
    await src.close();
  });

  it('refuses a mutant before loading anything (EDIGEST_MISMATCH naming it)', async () => {
    const { d, out, src } = await dumped();
    const victim = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const buf = await readFile(victim);
    buf[buf.length - 100]! ^= 0x01;
    await writeFile(victim, buf);
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(dst, out), 'EDIGEST_MISMATCH');
    expect(err.message).toContain(victim);
    expect((err.details['mutants'] as { path: string }[]).map((m) => m.path)).toEqual([victim]);
    expect(tablesOf(join(d, 'dst.db'))).toEqual([]);
    // The good ranges can still be restored on their own.
    const r = await Partitioner.restore(dst, out, { hi: 100 });
    expect(r.partitions).toBe(1);
    await src.close();
  });

  it('refuses an archive without its sidecar (ENO_SIDECAR), loading nothing', async () => {
    const { d, out, src } = await dumped();
    await rm(join(out, 'CalibVld', '0000000201-0000000300.tar.gz.dna'));
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    await rejectsWith(Partitioner.restore(dst, out), 'ENO_SIDECAR');
    expect(tablesOf(join(d, 'dst.db'))).toEqual([]);
    await src.close();
  });

  it('checks the DNAs on worker threads when the archives are many: restores intact ones, refuses a mutant or a missing sidecar first', async () => {
    // poolMinBytes 0: the path a restore of 24 MiB of archives or more takes.
    const onWorkers = { poolMinBytes: 0 };
    const { d, out, src } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const phases: string[] = [];
    const r = await restorePartitions(dst, out, { onProgress: (p) => phases.at(-1) !== p.phase && phases.push(p.phase) }, onWorkers);
    expect(r.rows).toBe(1000);
    expect(phases).toEqual(['verify', 'load']);
    expect((await Partitioner.compare(src, dst, 'Calib')).equal).toBe(true);
    const victim = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const buf = await readFile(victim);
    buf[buf.length - 100]! ^= 0x01;
    await writeFile(victim, buf);
    await using fresh = new SqliteSource(join(d, 'fresh.db'), { create: true });
    const err = await rejectsWith(restorePartitions(fresh, out, {}, onWorkers), 'EDIGEST_MISMATCH');
    expect((err.details['mutants'] as { path: string }[]).map((m) => m.path)).toEqual([victim]);
    await rm(join(out, 'CalibVld', '0000000201-0000000300.tar.gz.dna'));
    await rejectsWith(restorePartitions(fresh, out, {}, onWorkers), 'ENO_SIDECAR');
    expect(tablesOf(join(d, 'fresh.db'))).toEqual([]);
    // Aborted while the workers hash: the reason, nothing loaded.
    const ac = new AbortController();
    const reason = new Error('stop');
    await expect(restorePartitions(fresh, out, { signal: ac.signal, onProgress: () => ac.abort(reason) }, onWorkers)).rejects.toBe(reason);
    expect(tablesOf(join(d, 'fresh.db'))).toEqual([]);
    await src.close();
  });

  it('rolls back a table whose rows do not match the manifest, though the DNA matches (ECORRUPT_ARCHIVE)', async () => {
    const { d, out, src } = await dumped();
    const path = join(out, 'CalibVld', '0000000001-0000000100.tar.gz');
    const e = await archiveEntries(path);
    const m = parseManifest(e.get('manifest.json')!, path);
    // Re-pack with one payload row changed and a fresh, matching sidecar: only the manifest can tell.
    const rows = Buffer.from(e.get('Calib/rows.tsv')!.toString().replace('pmt 7/1', 'pmt 7/X'));
    await writePartitionArchive(
      path,
      [...e.entries()].map(([name, data]) => (name === 'Calib/rows.tsv' ? { name, size: rows.length, data: rows } : { name, size: data.length, data })),
      { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date() },
    );
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(dst, out, { hi: 100, concurrency: 1 }), 'ECORRUPT_ARCHIVE');
    expect(err.message).toMatch(/rows of "Calib" do not match its manifest \(\d+ bytes, sha256 [0-9a-f]{64}; the manifest says/);
    expect(err.details['table']).toBe('Calib');
    expect(err.details['expected']).toEqual({ bytes: m.tables[1]!.bytes, sha256: m.tables[1]!.sha256 });
    expect(m.tables[1]!.count).toBe(300);
    // Calib, not a row of it; CalibVld (before it in the archive, committed first) lost the range again:
    // no validity rows without their payload in tables this restore created.
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(0);
    expect(count(join(d, 'dst.db'), 'CalibVld')).toBe(0);
    // Into tables that were there before, CalibVld keeps what the failure left (restoring again completes it).
    exec(join(d, 'dst.db'), 'INSERT INTO "CalibVld" VALUES (500, \'a\', \'b\', 3, \'c\')');
    await rejectsWith(Partitioner.restore(dst, out, { hi: 100, concurrency: 1 }), 'ECORRUPT_ARCHIVE');
    expect(count(join(d, 'dst.db'), 'CalibVld')).toBe(101);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(0);
    await src.close();
  });

  it('checks the rows of an archive whose manifest predates their sha256 against its range digest', async () => {
    const { d, out, src } = await dumped();
    await using _src = src;
    const path = join(out, 'CalibVld', '0000000001-0000000100.tar.gz');
    const e = await archiveEntries(path);
    const m = parseManifest(e.get('manifest.json')!, path);
    expect(m.tables.every((t) => /^[0-9a-f]{64}$/.test(t.sha256 ?? ''))).toBe(true);
    // The manifest as written before it held the sha256 of each table's rows.
    const older = formatManifest({ ...m, tables: m.tables.map(({ sha256: _, ...t }) => t) });
    expect(older.toString()).not.toContain('sha256');
    const repack = async (rows: Buffer): Promise<void> => {
      const entries = [...e.entries()].map(([name, data]) => ({ name, data: name === 'manifest.json' ? older : name === 'Calib/rows.tsv' ? rows : data }));
      await writePartitionArchive(path, entries.map((x) => ({ ...x, size: x.data.length })), { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date() });
    };
    await repack(e.get('Calib/rows.tsv')!);
    {
      await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
      expect((await Partitioner.restore(dst, out)).rows).toBe(250 + 750);
      expect((await Partitioner.compare(src, dst, 'Calib')).equal).toBe(true);
    }
    // Rows changed after the dump, with a fresh sidecar: the range digest tells.
    await repack(Buffer.from(e.get('Calib/rows.tsv')!.toString().replace('pmt 7/1', 'pmt 7/X')));
    await using fresh = new SqliteSource(join(d, 'fresh.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(fresh, out, { hi: 100 }), 'ECORRUPT_ARCHIVE');
    expect(err.message).toMatch(/rows of "Calib" do not match its manifest \(300 rows, \d+ bytes, digest [0-9a-f]{32}; the manifest says 300, \d+, [0-9a-f]{32}\)/);
    expect(count(join(d, 'fresh.db'), 'Calib')).toBe(0);
  });

  it('an abort in the middle of a group archive leaves no range of a created table without the group\'s other table', async () => {
    const { d, out, src } = await dumped(seq(1, 500));
    await using _src = src;
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const ac = new AbortController();
    const reason = new Error('stop');
    // Stopped as the second archive's payload starts loading: its validity rows are committed by then.
    const stopping = stopAtLoad(dst, 'Calib', 2, () => ac.abort(reason));
    await expect(Partitioner.restore(stopping.target, out, { concurrency: 1, signal: ac.signal })).rejects.toBe(reason);
    expect(stopping.loads()).toBe(2);
    const vld = rowsOf(join(d, 'dst.db'), 'CalibVld').map((r) => r[0] as bigint);
    const pay = new Set(rowsOf(join(d, 'dst.db'), 'Calib').map((r) => r[0] as bigint));
    expect(vld.filter((k) => !pay.has(k))).toEqual([]);
    expect(vld).toHaveLength(100); // the first archive, whole
  });

  it('refuses archives of another engine, and finds nothing to restore', async () => {
    const { d, out, src } = await dumped([1, 2]);
    const dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const pg = new Proxy(dst, {
      get: (t, p) => (p === 'engine' ? 'postgres' : ((v) => (typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v))(Reflect.get(t, p, t) as unknown)),
    }) as unknown as TableSource;
    const err = await rejectsWith(Partitioner.restore(pg, out), 'EBAD_CONFIG');
    expect(err.message).toMatch(/holds a sqlite dump.*postgres/);
    // Another engine's archives of other tables in the same outDir do not stand in the way of one table's restore.
    const pgSrc = new Proxy(src, {
      get: (t, p) => (p === 'engine' ? 'postgres' : ((v) => (typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v))(Reflect.get(t, p, t) as unknown)),
    }) as unknown as TableSource;
    const mixed = join(d, 'mixed');
    await new Partitioner(src, { tables: ['Calib'], rowsPerPartition: 100, outDir: mixed }).dump();
    await new Partitioner(pgSrc, { tables: ['CalibVld'], rowsPerPartition: 100, outDir: mixed }).dump();
    {
      await using one = new SqliteSource(join(d, 'one.db'), { create: true });
      expect((await Partitioner.restore(one, mixed, { table: 'Calib' })).tables.map((t) => [t.name, t.rows])).toEqual([['Calib', 6]]);
      await rejectsWith(Partitioner.restore(one, mixed, { table: 'CalibVld' }), 'EBAD_CONFIG');
    }
    expect((await rejectsWith(Partitioner.restore(dst, out, { table: 'Other' }), 'ENOT_FOUND')).message).not.toMatch(/letter case/);
    // A name archived in another letter case is named, with what to pass.
    const spelled = await rejectsWith(Partitioner.restore(dst, out, { table: 'calibvld' }), 'ENOT_FOUND');
    expect(spelled.message).toMatch(/holds table "calibvld"\. Archived in another letter case: "CalibVld" \(pass that name as "table"\)/);
    expect(spelled.details).toMatchObject({ archived: ['CalibVld'] });
    await rejectsWith(Partitioner.restore(dst, out, { lo: 5000 }), 'ENOT_FOUND');
    await rejectsWith(Partitioner.restore(dst, join(d, 'nowhere')), 'ENOT_FOUND');
    await rejectsWith(Partitioner.restore(dst, out, { createTables: false }), 'ENO_TABLE');
    expect(tablesOf(join(d, 'dst.db'))).toEqual([]);
    await rejectsWith(Partitioner.restore(dst, out, { tabel: 'x' } as never), 'EBAD_CONFIG');
    await rejectsWith(Partitioner.restore(dst, out, { lo: 5, hi: 4 }), 'EBAD_CONFIG');
    await rejectsWith(Partitioner.restore(dst, out, { concurrency: 0 }), 'EBAD_CONFIG');
    await rejectsWith(Partitioner.restore({} as never, out), 'EBAD_CONFIG');
    await dst.close();
    await src.close();
  });

  it('refuses an archive whose name and manifest disagree', async () => {
    const { d, out, src } = await dumped([1, 2]);
    const from = join(out, 'CalibVld', '0000000001-0000000100.tar.gz');
    const e = await archiveEntries(from);
    const m = parseManifest(e.get('manifest.json')!, from);
    const moved = join(out, 'CalibVld', `${formatBound(101n)}-${formatBound(200n)}.tar.gz`);
    const mbuf = formatManifest(m);
    await writePartitionArchive(moved, [...e.entries()].map(([name, data]) => ({ name, size: (name === 'manifest.json' ? mbuf : data).length, data: name === 'manifest.json' ? mbuf : data })), {
      gzipLevel: 6,
      gzipConcurrency: 1,
      mtime: new Date(),
    });
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    await rejectsWith(Partitioner.restore(dst, out), 'ECORRUPT_ARCHIVE');
    await src.close();
  });

  it('loads neighbouring archives of one table in one load() each unit, with every archive still checked: same rows, progress per archive, a damaged or incomplete one loads none of its unit', async () => {
    const { d, out, src } = await dumped(seq(1, 2000));
    await using _src = src;
    // One table of the pair: one table per archive, 20 archives of 300 rows.
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const counting = stopAtLoad(dst, 'Calib', 0, () => {});
    const seen: Progress[] = [];
    const r = await Partitioner.restore(counting.target, out, { table: 'Calib', concurrency: 2, onProgress: (p) => seen.push(p) });
    expect(r.partitions).toBe(20);
    expect(r.tables).toEqual([{ name: 'Calib', rows: 6000, partitions: 20, created: true }]);
    // Units of 5, 3, 3 and 2 archives, then 7 of one (see loadUnits): 11 loads instead of 20.
    expect(counting.loads()).toBe(11);
    expect((await Partitioner.compare(src, dst, 'Calib')).equal).toBe(true);
    expect(seen.at(-1)).toMatchObject({ phase: 'load', itemsDone: 20, itemsTotal: 20, bytesDone: r.bytes });
    const items = seen.filter((p) => p.phase === 'load').map((p) => p.itemsDone);
    expect(items).toEqual([...items].sort((a, b) => a - b));

    // A key range: the first and last archives of it in part, in the same units.
    await using part = new SqliteSource(join(d, 'part.db'), { create: true });
    expect((await Partitioner.restore(part, out, { table: 'Calib', lo: 150, hi: 1450 })).rows).toBe(1301 * 3);
    const keys = new Database(join(d, 'part.db'), { readonly: true });
    try {
      expect(keys.prepare('SELECT min("SEQNO"), max("SEQNO"), count(DISTINCT "SEQNO") FROM "Calib"').raw(true).get()).toEqual([150, 1450, 1301]);
    } finally {
      keys.close();
    }

    // The second archive's rows changed after the dump, with a matching sidecar: its whole unit (with concurrency 1, the first ten archives) loads nothing.
    const path = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const e = await archiveEntries(path);
    const pack = (entries: [string, Buffer][]): Promise<unknown> =>
      writePartitionArchive(path, entries.map(([name, data]) => ({ name, size: data.length, data })), { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date() });
    await pack([...e.entries()].map(([name, data]) => [name, name === 'Calib/rows.tsv' ? Buffer.from(data.toString().replace('pmt 107/1', 'pmt 107/X')) : data]));
    await using bad = new SqliteSource(join(d, 'bad.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(bad, out, { table: 'Calib', concurrency: 1 }), 'ECORRUPT_ARCHIVE');
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/rows of "Calib" do not match its manifest/);
    expect(count(join(d, 'bad.db'), 'Calib')).toBe(0);
    // Without its rows entry: ECORRUPT_ARCHIVE naming it, nothing of its unit loaded.
    await pack([...e.entries()].filter(([name]) => name !== 'Calib/rows.tsv'));
    await using gone = new SqliteSource(join(d, 'gone.db'), { create: true });
    const lacking = await rejectsWith(Partitioner.restore(gone, out, { table: 'Calib', concurrency: 1 }), 'ECORRUPT_ARCHIVE');
    expect(lacking.message).toBe(`Partition archive ${path}: it lacks the rows entry of "Calib" named in its manifest.`);
    expect(count(join(d, 'gone.db'), 'Calib')).toBe(0);
  });

  it('an archive whose rows end inside a row (no line feed after the last, or an escaped one) is ECORRUPT_ARCHIVE, loaded alone or with its neighbours, though its manifest and DNA match', async () => {
    const { d, out, src } = await dumped(seq(1, 2000));
    await using _src = src;
    const path = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const e = await archiveEntries(path);
    const m = parseManifest(e.get('manifest.json')!, path);
    const rows = e.get('Calib/rows.tsv')!;
    expect(rows.at(-1)).toBe(0x0a);
    // The rows as a faulty dump would have written them, with a manifest that matches them.
    const repack = async (cut: Buffer): Promise<void> => {
      const manifest = formatManifest({ ...m, tables: m.tables.map((t) => (t.name === 'Calib' ? { ...t, bytes: cut.length, sha256: createHash('sha256').update(cut).digest('hex') } : t)) });
      const entries: [string, Buffer][] = [...e.entries()].map(([name, data]) => [name, name === 'manifest.json' ? manifest : name === 'Calib/rows.tsv' ? cut : data]);
      await writePartitionArchive(path, entries.map(([name, data]) => ({ name, size: data.length, data })), { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date() });
    };
    let n = 0;
    for (const cut of [rows.subarray(0, -1), Buffer.concat([rows.subarray(0, -1), Buffer.from('\\\n')])]) {
      await repack(cut);
      // Loaded with its neighbours (one table, a unit of them), then alone (the pair: one load per table and archive).
      for (const options of [{ table: 'Calib', concurrency: 1 }, { lo: 101, hi: 200, concurrency: 1 }]) {
        const file = join(d, `dst-${++n}.db`);
        await using dst = new SqliteSource(file, { create: true });
        const err = await rejectsWith(Partitioner.restore(dst, out, options), 'ECORRUPT_ARCHIVE');
        expect(err.message).toBe(`Partition archive ${path}: the rows of "Calib" end inside a row (their last line feed is missing or escaped): the dump that wrote it was cut short or is faulty. Nothing of it was loaded; restore this range from another backup.`);
        expect(count(file, 'Calib')).toBe(0);
      }
    }
    // A last field that ends in a backslash (escaped: an even run before the line feed) ends its row.
    const f = join(d, 'slash.db');
    exec(f, 'CREATE TABLE t (k INTEGER PRIMARY KEY, note TEXT)');
    exec(f, "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 400) INSERT INTO t SELECT x, 'C:\\' || substr('\\\\\\', 1, x % 4) FROM s");
    await using slashes = new SqliteSource(f);
    const slashOut = join(d, 'slash-out');
    await new Partitioner(slashes, { table: 't', key: 'k', rowsPerPartition: 50, outDir: slashOut }).dump();
    await using ok = new SqliteSource(join(d, 'ok.db'), { create: true });
    expect((await Partitioner.restore(ok, slashOut, { concurrency: 1 })).rows).toBe(400);
    expect((await Partitioner.compare(slashes, ok, 't', { key: 'k' })).equal).toBe(true);
    expect(rowsOf(join(d, 'ok.db'), 't').slice(0, 4)).toEqual([[1n, 'C:\\\\'], [2n, 'C:\\\\\\'], [3n, 'C:\\\\\\\\'], [4n, 'C:\\']]);
  });

  it('an archive damaged after its DNA was checked fails a unit with its own ECORRUPT_ARCHIVE, not the load\'s error', async () => {
    const { d, out, src } = await dumped(seq(1, 2000));
    await using _src = src;
    const path = join(out, 'CalibVld', '0000000301-0000000400.tar.gz');
    const whole = await readFile(path);
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    let cut = false;
    const err = await rejectsWith(
      Partitioner.restore(dst, out, {
        table: 'Calib',
        concurrency: 1,
        // Cut short (as a disk fault would) once the DNAs were checked: its rows end in the middle of the stream.
        onProgress: (p) => {
          if (p.phase === 'load' && !cut) {
            cut = true;
            writeFileSync(path, whole.subarray(0, Math.floor(whole.length / 2)));
          }
        },
      }),
      'ECORRUPT_ARCHIVE',
    );
    expect(cut).toBe(true);
    expect(err.message).toContain(path);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(0);
  });

  it('UnitBuffers: a region per archive of one slab, never handed out twice; the slab serves the next unit only after a commit', async () => {
    const KiB = 1024;
    const free: { slab: Buffer; input: Buffer }[] = [];
    const a = new UnitBuffers(free, [300 * KiB, 500 * KiB], 2);
    a.expect(300 * KiB);
    const one = a.take(100 * KiB)!;
    a.expect(500 * KiB);
    const two = a.take(2 * 1024 * KiB)!;
    expect(one.output.length).toBe(300 * KiB);
    expect(two.output.length).toBe(500 * KiB);
    expect(two.output.buffer).toBe(one.output.buffer);
    expect(two.output.byteOffset).toBe(one.output.byteOffset + 300 * KiB);
    expect(two.input.length).toBeGreaterThan(2 * 1024 * KiB);
    // Past the slab, or a file not read whole: nothing (the pass reads without).
    a.expect(800 * KiB);
    expect(a.take(KiB)).toBeUndefined();
    a.expect(KiB);
    expect(a.take(5 * 1024 * KiB)).toBeUndefined();
    // Not committed: dropped. Committed: the next unit gets the same memory.
    a.release(false);
    expect(free).toHaveLength(0);
    const b = new UnitBuffers(free, [100 * KiB], 2);
    b.expect(100 * KiB);
    const used = b.take(KiB)!.output.buffer;
    b.release(true);
    expect(free).toHaveLength(1);
    const c = new UnitBuffers(free, [200 * KiB], 2);
    expect(free).toHaveLength(0);
    c.expect(200 * KiB);
    expect(c.take(KiB)!.output.buffer).toBe(used);

    // A pass given a unit's buffers hands out views of its slab: the same bytes as without.
    const { out, src } = await dumped(seq(1, 300));
    await using _src = src;
    const path = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const plain = await archiveEntries(path);
    const unit = new UnitBuffers([], [1024 * KiB, 1024 * KiB], 1);
    unit.expect(1024 * KiB);
    const seen = new Map<string, { bytes: Buffer; memory: Set<ArrayBufferLike> }>();
    await readArchive(path, { phase: 'test', buffers: unit }, async (e, data) => {
      const parts: Buffer[] = [];
      const memory = new Set<ArrayBufferLike>();
      for await (const chunk of data) {
        parts.push(Buffer.from(chunk as Buffer));
        memory.add((chunk as Buffer).buffer);
      }
      seen.set(e.name, { bytes: Buffer.concat(parts), memory });
    });
    unit.expect(1024 * KiB);
    const slab = unit.take(KiB)!.output.buffer;
    expect([...seen.keys()]).toEqual([...plain.keys()]);
    for (const [name, v] of seen) {
      expect(v.bytes.equals(plain.get(name)!), name).toBe(true);
      expect([...v.memory], name).toEqual([slab]);
    }
  });

  it('loadUnits: runs of one key cut into units that shrink towards the end of the stage, within the archive and byte caps; other archives alone', () => {
    const MiB = 1 << 20;
    const stage = (n: number, key: (i: number) => string | undefined = () => 'a', bytes = MiB) => Array.from({ length: n }, (_, i) => ({ i, key: key(i), bytes }));
    const sizes = (units: { i: number }[][]): number[] => units.map((u) => u.length);
    type Archive = ReturnType<typeof stage>[number];
    const cut = (st: Archive[], concurrency = 2): Archive[][] => loadUnits(st, (s) => s.key, (s) => s.bytes, concurrency);
    // In order, every archive once.
    const hundred = cut(stage(100));
    expect(hundred.flat().map((s) => s.i)).toEqual(seq(0, 99));
    expect(sizes(hundred)).toEqual([16, 16, 16, 13, 9, 7, 5, 4, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1]);
    expect(sizes(cut(stage(20)))).toEqual([5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1]);
    expect(sizes(cut(stage(20), 1))).toEqual([10, 5, 2, 1, 1, 1]);
    // 32 MiB of rows at most.
    const big = sizes(cut(stage(100, () => 'a', 10 * MiB)));
    expect(big.slice(0, 3)).toEqual([3, 3, 3]);
    expect(Math.max(...big)).toBe(3);
    // A unit never spans two keys, and an archive without one is alone.
    const mixed = cut(stage(40, (i) => (i === 7 ? undefined : i < 20 ? 'a' : 'b')));
    expect(mixed.flat().map((s) => s.i)).toEqual(seq(0, 39));
    for (const u of mixed) expect(new Set(u.map((s) => s.key)).size).toBe(1);
    expect(mixed.find((u) => u.some((s) => s.i === 7))).toHaveLength(1);
    expect(sizes(mixed).slice(0, 3)).toEqual([7, 1, 8]);
    expect(cut([])).toEqual([]);
  });

  it('reports progress: verify, then load with one item per archive', async () => {
    const { d, out, src } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const seen: Progress[] = [];
    const r = await Partitioner.restore(dst, out, { onProgress: (p) => seen.push(p) });
    const phases = [...new Set(seen.map((p) => p.phase))];
    expect(phases).toEqual(['verify', 'load']);
    // The verify phase ends with a report of every archive checked.
    const verified = seen.filter((p) => p.phase === 'verify').at(-1)!;
    expect(verified).toMatchObject({ itemsDone: 3, itemsTotal: 3 });
    // The load phase counts from zero.
    expect(seen.find((p) => p.phase === 'load')).toMatchObject({ itemsDone: 0, bytesDone: 0, itemsTotal: 3 });
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ phase: 'load', itemsDone: 3, itemsTotal: 3, bytesDone: r.bytes });
    await src.close();
  });

  it('rejects with the reason when aborted before it starts, loading nothing', async () => {
    const { d, out, src } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const ac = new AbortController();
    const reason = new Error('no');
    ac.abort(reason);
    await expect(Partitioner.restore(dst, out, { signal: ac.signal })).rejects.toBe(reason);
    expect(tablesOf(join(d, 'dst.db'))).toEqual([]);
    await src.close();
  });

  it('aborted midway, leaves each range loaded whole or not at all', async () => {
    const { d, out, src } = await dumped(seq(1, 3000));
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const ac = new AbortController();
    const reason = new Error('midway');
    await expect(
      Partitioner.restore(dst, out, {
        concurrency: 2,
        signal: ac.signal,
        onProgress: (p) => p.phase === 'load' && p.itemsDone >= 2 && ac.abort(reason),
      }),
    ).rejects.toBe(reason);
    const db = new Database(join(d, 'dst.db'), { readonly: true });
    try {
      const per = db.prepare('SELECT ("SEQNO" - 1) / 100 AS p, count(*) AS n FROM "Calib" GROUP BY p').all() as { p: number; n: number }[];
      expect(per.length).toBeGreaterThanOrEqual(2);
      expect(per.length).toBeLessThan(30);
      for (const x of per) expect(x.n, `range ${x.p}`).toBe(300);
    } finally {
      db.close();
    }
    await src.close();
  });

  it('checks an archive of many reads (over 8 MiB, read 1 MiB at a time into one buffer): intact it loads, a mutant past its first read is refused first', async () => {
    const d = await tempDir();
    const f = join(d, 'big.db');
    const db = new Database(f);
    try {
      db.exec('CREATE TABLE Blobs (SEQNO INTEGER PRIMARY KEY, payload BLOB)');
      const ins = db.prepare('INSERT INTO Blobs VALUES (?, ?)');
      // 10 random 1 MiB blobs: 20 MiB of hex in the bulk text, which deflate halves at best: one archive over 8 MiB.
      for (let i = 1; i <= 10; i++) ins.run(i, randomBytes(1024 * 1024));
      ins.run(11, randomBytes(16));
    } finally {
      db.close();
    }
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    await new Partitioner(src, { table: 'Blobs', rowsPerPartition: 10, outDir: out }).dump();
    const big = join(out, 'Blobs', '0000000001-0000000010.tar.gz');
    expect((await stat(big)).size).toBeGreaterThan(8 * 1024 * 1024);
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const r = await Partitioner.restore(dst, out);
    expect(r.rows).toBe(11);
    expect(await dst.digestRange('Blobs', 'SEQNO', undefined, undefined)).toEqual(await src.digestRange('Blobs', 'SEQNO', undefined, undefined));
    const buf = await readFile(big);
    buf[buf.length >> 1]! ^= 0x01;
    await writeFile(big, buf);
    await using dst2 = new SqliteSource(join(d, 'dst2.db'), { create: true });
    const err = await rejectsWith(Partitioner.restore(dst2, out), 'EDIGEST_MISMATCH');
    expect((err.details['mutants'] as { path: string }[]).map((m) => m.path)).toEqual([big]);
    expect(tablesOf(join(d, 'dst2.db'))).toEqual([]);
  });
});
