import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { describe, expect, it, vi } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { digestBulkText, type TableReader } from '../../../src/db/index.js';
import { DnaDigest } from '../../../src/dna/index.js';
import { Catalog } from '../../../src/catalog/index.js';
import { LocalTransport, sync } from '../../../src/transport/index.js';
import { Archiver } from '../../../src/archive/index.js';
import { Partitioner, parseManifest, type PartitionerOptions } from '../../../src/partition/index.js';
import type { StowageError } from '../../../src/errors.js';
import { readManifest } from '../../../src/partition/partition-archive.js';
import type { Progress } from '../../../src/progress.js';
import { archiveEntries, count, exec, insertPair, listFiles, makePairDb, mtimes, rejectsWith, tempDir } from './helpers.js';

const run = promisify(execFile);
const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Rows of the first table in an archive's manifest. */
async function archivedRows(path: string): Promise<number> {
  return parseManifest((await archiveEntries(path)).get('manifest.json')!, path).tables[0]!.count;
}

/** A validity row alone (no payload), as a writer that has not written its payload yet leaves it. */
function addVld(file: string, seqno: number): void {
  exec(file, 'INSERT INTO "CalibVld" ("SEQNO", "TIMESTART", "TIMEEND") VALUES (?, ?, ?)', seqno, '2011-08-15 00:00:00', '2038-01-19 03:14:07');
}

/** SEQNO 1-250 of the validity table, dumped in ranges of 100 (settleRanges 0). */
async function dumpedTail(): Promise<{ d: string; f: string; src: SqliteSource; out: string; p: Partitioner }> {
  const d = await tempDir();
  const f = join(d, 'c.db');
  makePairDb(f, seq(1, 250), 1);
  const src = new SqliteSource(f);
  const out = join(d, 'out');
  const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, settleRanges: 0 });
  await p.dump();
  return { d, f, src, out, p };
}
const names = (r: { written: readonly { path: string }[] }): string[] => r.written.map((w) => w.path.split('/').slice(-2).join('/'));

describe('Partitioner.dump', () => {
  it('writes one archive per occupied range: manifest, schema and rows of every table, with a DNA sidecar', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [...seq(1, 120), 950], 3);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const r = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out }).dump();
    expect(await listFiles(out)).toEqual([
      'CalibVld/0000000001-0000000100.tar.gz',
      'CalibVld/0000000001-0000000100.tar.gz.dna',
      'CalibVld/0000000101-0000000200.tar.gz',
      'CalibVld/0000000101-0000000200.tar.gz.dna',
      'CalibVld/0000000901-0000001000.tar.gz',
      'CalibVld/0000000901-0000001000.tar.gz.dna',
    ]);
    expect(r.written.map((w) => [w.lo, w.hi, w.complete])).toEqual([
      [1n, 100n, true],
      [101n, 200n, true],
      [901n, 1000n, false],
    ]);
    expect(r.rows).toBe(121 * 4);
    expect(r.unchanged).toEqual([]);

    const first = r.written[0]!;
    expect(await DnaDigest.readSidecar(first.path)).toEqual(first.dna);
    expect(await DnaDigest.ofFile(first.path)).toEqual(first.dna);
    expect((await Archiver.verify(first.path, { requireSidecar: true })).ok).toBe(true);
    const entries = await archiveEntries(first.path);
    expect([...entries.keys()]).toEqual(['manifest.json', 'CalibVld/schema.sql', 'CalibVld/rows.tsv', 'Calib/schema.sql', 'Calib/rows.tsv']);
    const m = parseManifest(entries.get('manifest.json')!, first.path);
    expect(m).toMatchObject({ engine: 'sqlite', source: src.name, key: 'SEQNO', lo: 1n, hi: 100n, rowsPerPartition: 100n, base: 1n, complete: true });
    expect(m.tables.map((t) => [t.name, t.count, t.keyIndex])).toEqual([
      ['CalibVld', 100, 0],
      ['Calib', 300, 0],
    ]);
    expect(m.tables[1]!.columns).toEqual(['SEQNO', 'ROW_COUNTER', 'PMTID', 'GAIN', 'NOTE', 'RAW']);
    // The rows are the source's own bulk text of the range, byte for byte; for a unique key the range digest is their md5.
    const rows = entries.get('CalibVld/rows.tsv')!;
    expect(rows.equals(Buffer.concat(await (await src.rows('CalibVld', { key: 'SEQNO', lo: 1, hi: 100 })).toArray()))).toBe(true);
    expect(createHash('md5').update(rows).digest('hex')).toBe(m.tables[0]!.digest);
    // Each table's sha256 is that of its rows entry as it lies in the archive (what `sha256sum rows.tsv` prints).
    expect(m.tables.map((t) => t.sha256)).toEqual(m.tables.map((t) => createHash('sha256').update(entries.get(t.rows)!).digest('hex')));
    expect(await digestBulkText(Readable.from([entries.get('Calib/rows.tsv')!]), { keyIndex: 0 })).toEqual(await src.digestRange('Calib', 'SEQNO', 1, 100));
    expect(entries.get('Calib/schema.sql')!.toString()).toBe(await src.schema('Calib'));
    expect(r.written[0]!.tables).toEqual([
      { name: 'CalibVld', rows: 100, bytes: m.tables[0]!.bytes, digest: m.tables[0]!.digest },
      { name: 'Calib', rows: 300, bytes: m.tables[1]!.bytes, digest: m.tables[1]!.digest },
    ]);
    // GNU tar reads the multi-member gzip.
    const { stdout } = await run('tar', ['-tzf', first.path]);
    expect(stdout.trim().split('\n')).toEqual(['manifest.json', 'CalibVld/schema.sql', 'CalibVld/rows.tsv', 'Calib/schema.sql', 'Calib/rows.tsv']);
  });

  it('names the folder after the first table, the "name" option, or the encoded table name', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 2]);
    exec(f, 'CREATE TABLE "we""ird tab`le/x" ("SEQNO" INTEGER PRIMARY KEY, "v" TEXT)');
    exec(f, 'INSERT INTO "we""ird tab`le/x" VALUES (7, \'a\')');
    await using src = new SqliteSource(f);
    await new Partitioner(src, { tables: ['CalibVld', 'Calib'], outDir: d, name: 'calib-pair' }).dump();
    await new Partitioner(src, { table: 'we"ird tab`le/x', outDir: d }).dump();
    const files = (await listFiles(d)).filter((x) => x.endsWith('.tar.gz'));
    expect(files).toEqual(['calib-pair/0000000001-0000010000.tar.gz', 'we%22ird%20tab%60le%2Fx/0000000001-0000010000.tar.gz']);
    const e = await archiveEntries(join(d, files[1]!));
    expect([...e.keys()]).toEqual(['manifest.json', 'we%22ird%20tab%60le%2Fx/schema.sql', 'we%22ird%20tab%60le%2Fx/rows.tsv']);
    expect(e.get('we%22ird%20tab%60le%2Fx/rows.tsv')!.toString()).toBe('7\ta\n');
    // A long non-ASCII name whose encoded folder name no file system takes: EBAD_CONFIG naming the "name" option, at once.
    const long = 'Калибровка'.repeat(5); // 50 characters, 100 bytes, 300 once encoded
    const err = (() => {
      try {
        new Partitioner(src, { table: long, outDir: d });
      } catch (x) {
        return x as StowageError;
      }
      return undefined;
    })();
    expect(err).toMatchObject({ code: 'EBAD_CONFIG', details: { option: 'name' } });
    expect(err!.message).toMatch(/would be 300 bytes once encoded .* give the option "name" a shorter folder name/);
    expect(() => new Partitioner(src, { table: long, outDir: d, name: 'calib-ru' })).not.toThrow();
  });

  describe.each(['disk', 'catalog'] as const)('incremental runs, state from %s', (mode) => {
    async function setup(): Promise<{ d: string; f: string; out: string; src: SqliteSource; catalog: Catalog | undefined; p: () => Partitioner }> {
      const d = await tempDir();
      const f = join(d, 'c.db');
      makePairDb(f, seq(1, 250));
      const src = new SqliteSource(f);
      const catalog = mode === 'catalog' ? new Catalog(join(d, 'stowage.catalog')) : undefined;
      const out = join(d, 'out');
      // settleRanges 0: these runs are about the tail alone (the default's margin has its own test).
      const opts: PartitionerOptions = { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out, settleRanges: 0 };
      if (catalog !== undefined) opts.catalog = catalog;
      return { d, f, out, src, catalog, p: () => new Partitioner(src, opts) };
    }

    it('writes new complete ranges and the changed tail, then nothing when no row came', async () => {
      const { f, out, src, catalog, p } = await setup();
      try {
        const r1 = await p().dump();
        expect(names(r1)).toEqual(['CalibVld/0000000001-0000000100.tar.gz', 'CalibVld/0000000101-0000000200.tar.gz', 'CalibVld/0000000201-0000000300.tar.gz']);
        expect(r1.written.map((w) => w.complete)).toEqual([true, true, false]);
        const t1 = await mtimes(out);
        await new Promise((r) => setTimeout(r, 20));

        insertPair(f, seq(251, 420));
        const r2 = await p().dump();
        // 201-300 was the partial tail and is complete now; 301-400 is new; 401-500 the new tail.
        expect(names(r2)).toEqual(['CalibVld/0000000201-0000000300.tar.gz', 'CalibVld/0000000301-0000000400.tar.gz', 'CalibVld/0000000401-0000000500.tar.gz']);
        expect(r2.written.map((w) => w.complete)).toEqual([true, true, false]);
        expect(r2.rows).toBe((100 + 100 + 20) * 3);
        const t2 = await mtimes(out);
        for (const n of ['CalibVld/0000000001-0000000100.tar.gz', 'CalibVld/0000000101-0000000200.tar.gz', 'CalibVld/0000000001-0000000100.tar.gz.dna']) expect(t2[n], n).toBe(t1[n]);
        expect(t2['CalibVld/0000000201-0000000300.tar.gz']).toBeGreaterThan(t1['CalibVld/0000000201-0000000300.tar.gz']!);

        const records = catalog === undefined ? undefined : { parts: catalog.partitions(src.name, 'Calib'), archives: catalog.archives() };
        await new Promise((r) => setTimeout(r, 20));
        const r3 = await p().dump();
        expect(r3.written).toEqual([]);
        expect(r3.unchanged).toEqual([{ lo: 401n, hi: 500n }]);
        expect(await mtimes(out)).toEqual(t2);
        if (catalog !== undefined) {
          expect(catalog.partitions(src.name, 'Calib')).toEqual(records!.parts);
          expect(catalog.archives()).toEqual(records!.archives);
        }

        // A change inside the tail without a new key rewrites it; the complete ranges stay.
        exec(f, 'UPDATE "Calib" SET "NOTE" = \'late fix\' WHERE "SEQNO" = 410 AND "ROW_COUNTER" = 2');
        const r4 = await p().dump();
        expect(names(r4)).toEqual(['CalibVld/0000000401-0000000500.tar.gz']);
        const plan = await p().plan();
        expect(plan.partitions.map((x) => x.state)).toEqual(['archived', 'archived', 'archived', 'archived', 'partial']);
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('rewrites a full tail once when keys pass it, and an archive that went missing', async () => {
      const { f, out, src, catalog, p } = await setup();
      try {
        exec(f, 'DELETE FROM "Calib" WHERE "SEQNO" > 200');
        exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" > 200');
        const r1 = await p().dump();
        expect(r1.written.map((w) => [w.lo, w.complete])).toEqual([
          [1n, true],
          [101n, false],
        ]);
        insertPair(f, [201]);
        const r2 = await p().dump();
        // 101-200 holds the same rows, but it is complete now: written once more, in its final form.
        expect(r2.written.map((w) => [w.lo, w.complete])).toEqual([
          [101n, true],
          [201n, false],
        ]);
        expect((await p().dump()).written).toEqual([]);
        await rm(join(out, 'CalibVld', '0000000001-0000000100.tar.gz'));
        const r4 = await p().dump();
        expect(names(r4)).toEqual(['CalibVld/0000000001-0000000100.tar.gz']);
        if (catalog !== undefined) {
          const recs = catalog.partitions(src.name, 'CalibVld');
          expect(recs.map((x) => [x.lo, x.hi, x.state, x.rows])).toEqual([
            [1n, 100n, 'archived', 100],
            [101n, 200n, 'archived', 100],
            [201n, 300n, 'partial', 1],
          ]);
          expect(recs[0]!.archivePath).toBe(join(out, 'CalibVld', '0000000001-0000000100.tar.gz'));
          expect(catalog.archive(recs[0]!.archivePath!)?.dna).toEqual(r4.written[0]!.dna);
        }
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('rewrites a range whose archive was put back from an older copy (a partial tail, another DNA than the one recorded)', async () => {
      const { f, out, src, catalog, p } = await setup();
      try {
        await p().dump();
        const tail = join(out, 'CalibVld', '0000000201-0000000300.tar.gz');
        const [oldTail, oldSidecar] = [await readFile(tail), await readFile(tail + '.dna')];
        insertPair(f, seq(251, 350));
        const r2 = await p().dump();
        expect(r2.written.map((w) => [w.lo, w.complete])).toEqual([
          [201n, true],
          [301n, false],
        ]);
        // The folder restored from a lagging mirror: the old partial tail, with its own (matching) sidecar.
        await writeFile(tail, oldTail);
        await writeFile(tail + '.dna', oldSidecar);
        const plan = await p().plan();
        expect(plan.partitions.find((x) => x.lo === 201n)!.state).toBe('complete');
        const r3 = await p().dump();
        expect(r3.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([[201n, true, 100]]);
        expect((await p().plan()).partitions.find((x) => x.lo === 201n)!.state).toBe('archived');
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('rewrites every occupied range with incremental: false', async () => {
      const { src, catalog, p } = await setup();
      try {
        await p().dump();
        const r = await p().dump({ incremental: false });
        expect(r.written.map((w) => w.lo)).toEqual([1n, 101n, 201n]);
        expect(r.setAside).toEqual([]); // the same rows: nothing to keep aside
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('with incremental: false, sets a complete archive aside instead of overwriting it with rows purged since', async () => {
      const { f, out, src, catalog, p } = await setup();
      try {
        const first = await p().dump();
        const old = first.written.find((w) => w.lo === 1n)!;
        const oldBytes = await readFile(old.path);
        exec(f, 'DELETE FROM "Calib" WHERE "SEQNO" BETWEEN 2 AND 9; DELETE FROM "CalibVld" WHERE "SEQNO" BETWEEN 2 AND 9');
        const r = await p().dump({ incremental: false });
        expect(r.setAside).toHaveLength(1);
        expect(r.setAside[0]).toMatch(/CalibVld\/0000000001-0000000100\.tar\.gz\.replaced-\d{8}T\d{6}Z$/);
        // The old archive, with its sidecar, whole under the new name: the purged rows live on there.
        expect((await readFile(r.setAside[0]!)).equals(oldBytes)).toBe(true);
        expect(await DnaDigest.readSidecar(r.setAside[0]!)).toEqual(old.dna);
        // The new one holds the source's rows now.
        expect(r.written.find((w) => w.lo === 1n)!.tables.map((t) => [t.name, t.rows])).toEqual([
          ['CalibVld', 92],
          ['Calib', 92 * 2],
        ]);
        expect((await listFiles(out)).filter((n) => n.includes('.replaced-'))).toHaveLength(2);
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('removes what a dump that died left in the folder (partial archives, spill files of rows, temporary links), also of ranges it does not write again, and nothing else', async () => {
      const { out, src, catalog, p } = await setup();
      try {
        const first = await p().dump();
        expect(first.leftovers).toEqual([]);
        const dir = join(out, 'CalibVld');
        // A run killed (SIGKILL, a power cut) while it wrote the complete range 1-100, which no later run writes again.
        const dead = ['0000000001-0000000100.tar.gz.part', '0000000001-0000000100.tar.gz.dna.part', '0000000001-0000000100.tar.gz.0.spool', '.stowage-0123456789abcdef.part'];
        for (const n of dead) await writeFile(join(dir, n), 'rows of a dead run');
        const kept = ['notes.txt', '0000000001-0000000100.tar.gz.replaced-20260101T000000Z', '.stowage-mine.part', '0000000001-0000000100.tar.gz.spool'];
        for (const n of kept) await writeFile(join(dir, n), 'not the dump\'s');
        const r = await p().dump();
        expect(r.written.map((w) => w.lo)).not.toContain(1n);
        expect(r.leftovers).toEqual(dead.map((n) => join(dir, n)).sort());
        const now = await listFiles(out);
        for (const n of dead) expect(now).not.toContain(`CalibVld/${n}`);
        for (const n of kept) expect(now).toContain(`CalibVld/${n}`);
        expect((await p().dump()).leftovers).toEqual([]);
      } finally {
        catalog?.close();
        await src.close();
      }
    });

    it('with incremental: false, keeps the archive set aside when the Catalog fails to record the new one (the old one is gone by then)', async () => {
      const { f, out, src, catalog, p } = await setup();
      try {
        await p().dump();
        exec(f, 'DELETE FROM "Calib" WHERE "SEQNO" BETWEEN 2 AND 9; DELETE FROM "CalibVld" WHERE "SEQNO" BETWEEN 2 AND 9');
        // The record of the new archive fails (a full disk under the Catalog, say); without one, the write itself.
        const failing = catalog ?? new Catalog(join(out, '..', 'failing.catalog'));
        const full = new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out, settleRanges: 0, catalog: failing });
        // A Catalog new to the folder records the archives on disk first (that record does not fail).
        if (catalog === undefined) await full.dump();
        const record = failing.recordArchive.bind(failing);
        failing.recordArchive = (a) => {
          if (a.path.endsWith('0000000001-0000000100.tar.gz')) throw new Error('disk full under the catalog');
          return record(a);
        };
        await expect(full.dump({ incremental: false, concurrency: 1 })).rejects.toThrow(/disk full under the catalog/);
        // The new archive replaced the old one; the old one, with the purged rows, lives on aside (it was removed with the failure).
        const aside = (await listFiles(out)).filter((n) => /0000000001-0000000100\.tar\.gz\.replaced-[^.]+$/.test(n));
        expect(aside).toHaveLength(1);
        expect((await readManifest(join(out, aside[0]!))).tables[0]!.count).toBe(100);
        expect((await DnaDigest.verify(join(out, aside[0]!))).ok).toBe(true);
        expect((await readManifest(join(out, 'CalibVld', '0000000001-0000000100.tar.gz'))).tables[0]!.count).toBe(92);
        if (catalog === undefined) failing.close();
      } finally {
        catalog?.close();
        await src.close();
      }
    });
  });

  it('refuses a folder dumped on another key (EBAD_CONFIG); the same column spelled otherwise is named as such', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 30));
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 10, outDir: out }).dump();
    const spelled = await rejectsWith(new Partitioner(src, { tables: ['CalibVld', 'Calib'], key: 'seqno', rowsPerPartition: 10, outDir: out }).plan(), 'EBAD_CONFIG');
    expect(spelled.message).toMatch(/partitions on the key "SEQNO", not "seqno": if that is the same column spelled otherwise, pass key: "SEQNO" as the earlier dumps did/);
    expect(spelled.details).toMatchObject({ option: 'key', archivedKey: 'SEQNO' });
    exec(f, 'CREATE TABLE "Other" ("SEQNO" INTEGER PRIMARY KEY, "RUN" INTEGER NOT NULL); INSERT INTO "Other" VALUES (1, 1)');
    await new Partitioner(src, { table: 'Other', rowsPerPartition: 10, outDir: join(d, 'o') }).dump();
    const other = await rejectsWith(new Partitioner(src, { table: 'Other', key: 'RUN', rowsPerPartition: 10, outDir: join(d, 'o') }).plan(), 'EBAD_CONFIG');
    expect(other.message).toMatch(/partitions on the key "SEQNO", not "RUN": use another outDir or name/);
  });

  it('records runs of empty ranges in the Catalog once, without writing them', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 10n ** 12n]);
    await using src = new SqliteSource(f);
    using catalog = new Catalog(join(d, 'cat'));
    const p = new Partitioner(src, { tables: ['CalibVld', 'Calib'], outDir: join(d, 'out'), catalog });
    const r = await p.dump();
    expect(r.written).toHaveLength(2);
    expect((await listFiles(join(d, 'out'))).filter((x) => x.endsWith('.gz'))).toHaveLength(2);
    const recs = catalog.partitions(src.name, 'Calib');
    expect(recs.map((x) => [x.lo, x.hi, x.state, x.rows, x.archivePath === null])).toEqual([
      [1n, 10000n, 'archived', 2, false],
      [10001n, 10n ** 12n - 10000n, 'empty', 0, true],
      [10n ** 12n - 9999n, 10n ** 12n, 'partial', 2, false],
    ]);
    const before = catalog.partitions(src.name, 'CalibVld');
    await p.dump();
    expect(catalog.partitions(src.name, 'CalibVld')).toEqual(before);

    // Rows arrive inside the empty run: the run record goes, the range with rows and the empty runs around it are recorded.
    insertPair(f, [50_005n]);
    await p.dump();
    expect(catalog.partitions(src.name, 'Calib').map((x) => [x.lo, x.hi, x.state])).toEqual([
      [1n, 10000n, 'archived'],
      [10001n, 50000n, 'empty'],
      [50001n, 60000n, 'archived'],
      [60001n, 10n ** 12n - 10000n, 'empty'],
      [10n ** 12n - 9999n, 10n ** 12n, 'partial'],
    ]);
  });

  it('spills a range larger than spoolMemoryBytes to a file beside the archive, and removes it', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 300), 4);
    await using src = new SqliteSource(f);
    const inMemory = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 1000, outDir: join(d, 'mem') }).dump();
    const spilled = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 1000, outDir: join(d, 'disk'), spoolMemoryBytes: 1000 }).dump();
    expect(spilled.written[0]!.tables).toEqual(inMemory.written[0]!.tables);
    const a = await archiveEntries(inMemory.written[0]!.path);
    const b = await archiveEntries(spilled.written[0]!.path);
    expect(b.get('Calib/rows.tsv')!.equals(a.get('Calib/rows.tsv')!)).toBe(true);
    expect(await listFiles(join(d, 'disk'))).toEqual(['CalibVld/0000000001-0000001000.tar.gz', 'CalibVld/0000000001-0000001000.tar.gz.dna']);
    // A symlink planted at a spill file's name is replaced, never written through.
    const victim = join(d, 'victim.txt');
    await writeFile(victim, 'keep me');
    await mkdir(join(d, 'planted', 'CalibVld'), { recursive: true });
    await symlink(victim, join(d, 'planted', 'CalibVld', '0000000001-0000001000.tar.gz.0.spool'));
    const again = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 1000, outDir: join(d, 'planted'), spoolMemoryBytes: 1000 }).dump();
    expect(again.written[0]!.tables).toEqual(inMemory.written[0]!.tables);
    expect(await readFile(victim, 'utf8')).toBe('keep me');
  });

  it('fails the range (EIO) when its spill file changed before it was read back into the archive: no archive, no leftovers', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 300), 4);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const { RowSpool } = await import('../../../src/partition/row-spool.js');
    const read = RowSpool.prototype.read;
    // Between the spool's fill and its read-back: one bit of every spill file flips (a disk fault).
    const spy = vi.spyOn(RowSpool.prototype, 'read').mockImplementation(function (this: import('../../../src/partition/row-spool.js').RowSpool) {
      for (const name of readdirSync(join(out, 'CalibVld')).filter((n) => n.endsWith('.spool'))) {
        const b = readFileSync(join(out, 'CalibVld', name));
        b[10]! ^= 0x01;
        writeFileSync(join(out, 'CalibVld', name), b);
      }
      return read.call(this);
    });
    try {
      const err = await rejectsWith(new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 1000, outDir: out, spoolMemoryBytes: 1000 }).dump(), 'EIO');
      expect(err.message).toMatch(/changed between its write and its read-back/);
    } finally {
      spy.mockRestore();
    }
    expect((await listFiles(out)).filter((n) => !n.endsWith('LOCKED'))).toEqual([]);
  });

  it('records in the Catalog a complete archive found on disk where it still describes the partial tail (written by a run that could not record it)', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 150), 1);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    using catalog = new Catalog(join(d, 'cat'));
    const opts: PartitionerOptions = { table: 'CalibVld', rowsPerPartition: 100, outDir: out, settleRanges: 0 };
    await new Partitioner(src, { ...opts, catalog }).dump();
    const tail = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    expect(catalog.partitions(src.name, 'CalibVld').map((r) => [r.lo, r.state, r.rows])).toEqual([
      [1n, 'archived', 100],
      [101n, 'partial', 50],
    ]);
    // The range fills up; a run writes its complete archive but leaves the
    // Catalog as it was (as one whose Catalog write failed after the rename).
    insertPair(f, seq(151, 201), 1);
    // (151-201: the range [101, 200] is now complete, and 201 opens the next.)
    await new Partitioner(src, opts).dump();
    const onDisk = await DnaDigest.readSidecar(tail);
    expect(catalog.archive(tail)?.dna.dig).not.toBe(onDisk.dig);
    // The next run with the Catalog finds it in the way, keeps it, and records it.
    // ([201, 300], which that run wrote too, the Catalog takes from disk as a partial range it lacks.)
    const r = await new Partitioner(src, { ...opts, catalog }).dump();
    expect(r.written).toEqual([]);
    expect(catalog.partitions(src.name, 'CalibVld').map((x) => [x.lo, x.state, x.rows])).toEqual([
      [1n, 'archived', 100],
      [101n, 'archived', 100],
      [201n, 'partial', 1],
    ]);
    expect(catalog.archive(tail)?.dna).toEqual(onDisk);
    // And the run after that takes it from the Catalog as archived: nothing read again, nothing written.
    const again = await new Partitioner(src, { ...opts, catalog }).plan();
    expect(again.partitions.filter((p) => p.lo === 101n).map((p) => p.state)).toEqual(['archived']);
  });

  it('records in the Catalog a last range reaching past 2^63-1 with its upper bound at 2^63-1, run after run', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    const max = (1n << 63n) - 1n;
    makePairDb(f, [1, 2, max], 1);
    await using src = new SqliteSource(f);
    using catalog = new Catalog(join(d, 'cat'));
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: join(d, 'out'), catalog });
    const r = await p.dump();
    expect(r.written.map((w) => w.hi > max)).toEqual([false, true]);
    const recs = catalog.partitions(src.name, 'CalibVld');
    expect(recs.map((x) => [x.state, x.hi === max])).toEqual([
      ['archived', false],
      ['empty', false],
      ['partial', true],
    ]);
    expect((await p.dump({ incremental: true })).written).toEqual([]);
    expect(catalog.partitions(src.name, 'CalibVld')).toHaveLength(3);
  });

  it.each([false, true])("refuses to dump one table of a group into the group's folder, which would overwrite the group's archives (catalog: %s)", async (withCatalog) => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 150), 2);
    await using src = new SqliteSource(f);
    using catalog = withCatalog ? new Catalog(join(d, 'cat')) : undefined;
    const out = join(d, 'out');
    const opts = (o: PartitionerOptions): PartitionerOptions => (catalog === undefined ? o : { ...o, catalog });
    const group = await new Partitioner(src, opts({ tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out })).dump();
    const before = await Promise.all(group.written.map((w) => readFile(w.path)));
    insertPair(f, [151], 2);
    const single = new Partitioner(src, opts({ table: 'CalibVld', rowsPerPartition: 100, outDir: out }));
    const err = await rejectsWith(single.dump({ incremental: true }), 'EBAD_CONFIG');
    expect(err.message).toMatch(/would overwrite their archives/);
    if (!withCatalog) await rejectsWith(single.plan(), 'EBAD_CONFIG');
    const after = await Promise.all(group.written.map((w) => readFile(w.path)));
    expect(after.every((b, i) => b.equals(before[i]!))).toBe(true);
  });


  it('never rewrites a complete archive, even when deleting the rows above it makes its range the tail again', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 150), 1);
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: join(d, 'out'), settleRanges: 0 });
    const first = await p.dump();
    const full = first.written.find((w) => w.lo === 1n)!;
    expect(full.complete).toBe(true);
    const before = await readFile(full.path);
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" >= 95');
    const plan = await p.plan();
    // The partial tail above it lost all its rows: written again, empty, so a restore clears that range too.
    expect(plan.partitions.map((x) => [x.lo, x.state, x.occupied])).toEqual([
      [1n, 'archived', true],
      [101n, 'partial', false],
    ]);
    const second = await p.dump({ incremental: true });
    expect(second.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([[101n, false, 0]]);
    expect((await p.dump({ incremental: true })).written).toEqual([]);
    // Keys 95-100 are still in the backup.
    expect((await readFile(full.path)).equals(before)).toBe(true);
    expect(await archivedRows(full.path)).toBe(100);
  });

  it('a group range is complete only once every table has passed it: payload rows written after their validity rows are archived too', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 40), 2);
    // Validity rows up to 300, their payload not written yet.
    const vld = new Database(f);
    vld.transaction(() => {
      for (let n = 41; n <= 300; n++) vld.prepare('INSERT INTO "CalibVld" ("SEQNO", "TIMESTART", "TIMEEND") VALUES (?, ?, ?)').run(n, '2011-08-15 00:00:00', '2038-01-19 03:14:07');
    })();
    vld.close();
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out, settleRanges: 0 });
    // The payload's tail (SEQNO 40) holds every range partial.
    expect((await p.plan()).partitions.map((x) => `${x.lo} ${x.state}`)).toEqual(['1 partial', '101 partial', '201 partial']);
    expect((await p.dump()).written.map((w) => [w.lo, w.complete])).toEqual([
      [1n, false],
      [101n, false],
      [201n, false],
    ]);
    // The payload catches up: its rows land in the archives.
    const pay = new Database(f);
    pay.transaction(() => {
      for (let n = 41; n <= 300; n++) for (let r = 1; r <= 2; r++) pay.prepare('INSERT INTO "Calib" ("SEQNO", "ROW_COUNTER") VALUES (?, ?)').run(n, r);
    })();
    pay.close();
    expect((await p.dump()).written.map((w) => [w.lo, w.complete, w.tables[1]!.rows])).toEqual([
      [1n, true, 200],
      [101n, true, 200],
      [201n, false, 200],
    ]);
    const g = join(d, 'copy.db');
    await using dst = new SqliteSource(g, { create: true });
    await Partitioner.restore(dst, out);
    expect(count(g, 'Calib')).toBe(600);
    expect(count(g, 'CalibVld')).toBe(300);
    expect((await Partitioner.compare(src, dst, 'Calib', { key: 'SEQNO' })).equal).toBe(true);
  });

  it('a partial range whose rows were all deleted is written again, empty, and a restore clears it', async () => {
    const { d, f, src: opened, out, p } = await dumpedTail();
    await using src = opened;
    const g = join(d, 'copy.db');
    await using dst = new SqliteSource(g, { create: true });
    await Partitioner.restore(dst, out);
    expect(count(g, 'CalibVld')).toBe(250);
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" > 200');
    const emptied = await p.dump();
    expect(emptied.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([[201n, false, 0]]);
    // The rows it held are kept aside, not lost.
    expect(emptied.setAside).toHaveLength(1);
    expect(emptied.setAside[0]).toMatch(/0000000201-0000000300\.tar\.gz\.replaced-/);
    expect(await archivedRows(emptied.setAside[0]!)).toBe(50);
    await Partitioner.restore(dst, out);
    expect(count(g, 'CalibVld')).toBe(200);
    // Keys jump past it: the empty range settles as complete (still empty), the old rows do not come back.
    insertPair(f, [450], 1);
    expect((await p.dump()).written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([
      [201n, true, 0],
      [401n, false, 1],
    ]);
    expect((await p.dump()).written).toEqual([]);
    await Partitioner.restore(dst, out);
    expect((await Partitioner.compare(src, dst, 'CalibVld', { key: 'SEQNO' })).equal).toBe(true);
  });

  it('a partial tail that lost or changed rows is written again, the old archive kept aside; a table emptied keeps its partial archives', async () => {
    const { d, f, src: opened, out, p } = await dumpedTail();
    await using src = opened;
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" > 240');
    const shrunk = await p.dump();
    expect(shrunk.written.map((w) => [w.lo, w.tables[0]!.rows])).toEqual([[201n, 40]]);
    expect(shrunk.setAside).toHaveLength(1);
    expect(await archivedRows(shrunk.setAside[0]!)).toBe(50);
    // Rows added to the tail: written again, nothing set aside.
    addVld(f, 245);
    expect((await p.dump()).setAside).toEqual([]);
    // A row deleted and two added in the same range (the count grows): the old archive, which holds the deleted row, is kept aside.
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" = 210');
    for (const k of [246, 247]) addVld(f, k);
    const swapped = await p.dump();
    expect(swapped.written.map((w) => [w.lo, w.tables[0]!.rows])).toEqual([[201n, 42]]);
    expect(swapped.setAside).toHaveLength(1);
    expect(await archivedRows(swapped.setAside[0]!)).toBe(41);
    // A row changed in place: kept aside too.
    exec(f, 'UPDATE "CalibVld" SET "TIMEEND" = \'2030-01-01 00:00:00\' WHERE "SEQNO" = 205');
    expect((await p.dump()).setAside).toHaveLength(1);
    // Rows added again: nothing set aside.
    addVld(f, 248);
    expect((await p.dump()).setAside).toEqual([]);
    // Every row deleted (a mistake, or the table moved elsewhere): nothing is written over, a restore gets them back.
    exec(f, 'DELETE FROM "CalibVld"');
    const plan = await p.plan();
    expect(plan.partitions.map((x) => `${x.lo} ${x.state}`)).toEqual(['1 archived', '101 archived', '201 archived']);
    expect((await p.dump()).written).toEqual([]);
    // Nor by a full dump, which rewrites every range with rows.
    expect((await p.dump({ incremental: false })).written).toEqual([]);
    const g = join(d, 'copy.db');
    await using dst = new SqliteSource(g, { create: true });
    expect((await Partitioner.restore(dst, out)).rows).toBe(243);
    // Rows purged from the bottom while the tail goes on: the partial archives below the lowest key stay.
    addVld(f, 290);
    expect((await p.plan()).partitions.map((x) => `${x.lo} ${x.state}`)).toEqual(['1 archived', '101 archived', '201 partial']);
  });

  it('a table named LOCKED is archived in a folder that sync and DnaDigest.scan do not take for a lock', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    exec(f, 'CREATE TABLE "LOCKED" (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO "LOCKED" VALUES (1, \'a\'), (2, \'b\')');
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const r = await new Partitioner(src, { table: 'LOCKED', key: 'id', outDir: out }).dump();
    expect(r.written.map((w) => w.path)).toEqual([join(out, '%4COCKED', '0000000001-0000010000.tar.gz')]);
    const warnings: string[] = [];
    const scanned: boolean[] = [];
    for await (const v of DnaDigest.scan(out, { onWarning: (w) => warnings.push(w.code) })) scanned.push(v.ok);
    expect([scanned, warnings]).toEqual([[true], []]);
    const local = new LocalTransport();
    expect((await sync(local, out, local, join(d, 'mirror'))).copied).toHaveLength(2);
    const g = join(d, 'copy.db');
    await using dst = new SqliteSource(g, { create: true });
    expect((await Partitioner.restore(dst, join(d, 'mirror'), { table: 'LOCKED' })).rows).toBe(2);
  });

  it('prints no MaxListenersExceededWarning while many ranges are in flight under the caller\'s signal', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    exec(f, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 20000) INSERT INTO t SELECT x, hex(randomblob(20)) FROM s');
    await using src = new SqliteSource(f);
    const warnings: string[] = [];
    const on = (w: Error): void => void warnings.push(w.name);
    process.on('warning', on);
    try {
      const r = await new Partitioner(src, { table: 't', key: 'id', rowsPerPartition: 100, outDir: join(d, 'out') }).dump({ signal: new AbortController().signal, concurrency: 4 });
      expect(r.written).toHaveLength(200);
      await new Promise((res) => setTimeout(res, 20)); // warnings are emitted on a later tick
    } finally {
      process.off('warning', on);
    }
    expect(warnings).toEqual([]);
  });

  it('a row committed out of key order (10 after 11) lands in a later run: the range below the tail settles first (settleRanges: 1)', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 2, 11], 1);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = (settleRanges?: number): Partitioner => new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 10, outDir: out, ...(settleRanges === undefined ? {} : { settleRanges }) });
    const r1 = await p().dump();
    expect(r1.written.map((w) => [w.lo, w.complete])).toEqual([
      [1n, false],
      [11n, false],
    ]);
    // The writer holding SEQNO 10 commits now.
    insertPair(f, [10], 1);
    insertPair(f, seq(12, 25), 1);
    const r2 = await p().dump();
    expect(r2.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([
      [1n, true, 3],
      [11n, false, 10],
      [21n, false, 5],
    ]);
    const fresh = join(d, 'fresh.db');
    makePairDb(fresh, []);
    await using dst = new SqliteSource(fresh);
    await Partitioner.restore(dst, out, { table: 'CalibVld' });
    expect((await Partitioner.compare(src, dst, 'CalibVld')).equal).toBe(true);

    // With no margin, the range is complete at the first higher key, and the late row is never archived.
    const f0 = join(d, 'c0.db');
    makePairDb(f0, [1, 2, 11], 1);
    await using src0 = new SqliteSource(f0);
    const p0 = new Partitioner(src0, { table: 'CalibVld', rowsPerPartition: 10, outDir: join(d, 'out0'), settleRanges: 0 });
    expect((await p0.dump()).written.map((w) => [w.lo, w.complete])).toEqual([
      [1n, true],
      [11n, false],
    ]);
    insertPair(f0, [10], 1);
    expect((await p0.dump()).written).toEqual([]);
    expect(() => new Partitioner(src, { table: 'CalibVld', outDir: out, settleRanges: -1 })).toThrow(/settleRanges/);
  });

  it('a row committed after the plan into a range it found empty goes to no archive of this run, and to its own range in the next', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [...seq(1, 50), ...seq(301, 350), ...seq(501, 550)], 1);
    await using real = new SqliteSource(f);
    let inserted = false;
    // Between the plan and the read of the ranges (one query for 1-600, the empty ranges between them included), key 150 arrives.
    const src = new Proxy(real, {
      get(t, prop) {
        if (prop === 'snapshot') {
          return async (fn: (r: TableReader) => Promise<unknown>, o: unknown) => {
            if (!inserted) {
              insertPair(f, [150], 1);
              inserted = true;
            }
            return (t.snapshot as (...a: unknown[]) => Promise<unknown>)(fn, o);
          };
        }
        const v = Reflect.get(t, prop, t) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    });
    const out = join(d, 'out');
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out });
    const first = await p.dump({ concurrency: 1 });
    expect(inserted).toBe(true);
    const keysOf = async (path: string): Promise<string[]> =>
      (await archiveEntries(path))
        .get('CalibVld/rows.tsv')!
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]!);
    expect(first.written.map((w) => [w.lo, w.hi])).toEqual([
      [1n, 100n],
      [301n, 400n],
      [501n, 600n],
    ]);
    const mid = first.written.find((w) => w.lo === 301n)!;
    expect(await keysOf(mid.path)).toEqual(seq(301, 350).map(String));
    const second = await p.dump({ incremental: true });
    expect(second.written.map((w) => [w.lo, w.hi])).toEqual([[101n, 200n]]);
    expect(await keysOf(second.written[0]!.path)).toEqual(['150']);
  });

  it('reads each range in one snapshot: a pair committed during the dump is archived whole or not at all', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250), 3);
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: join(d, 'out'), spoolMemoryBytes: 0 });
    const writer = new Database(f);
    const vld = writer.prepare('INSERT INTO "CalibVld" VALUES (?, \'t\', \'t\', 1, NULL)');
    const pay = writer.prepare('INSERT INTO "Calib" VALUES (?, ?, 0, 0.5, NULL, NULL)');
    let next = 251;
    const r = await p.dump({
      concurrency: 1,
      onProgress: () => {
        // Between reads of the payload and validity tables, a new SEQNO and its payload are committed together.
        writer.transaction(() => {
          vld.run(next);
          for (let i = 1; i <= 3; i++) pay.run(next, i);
        })();
        next++;
      },
    });
    writer.close();
    expect(next).toBeGreaterThan(251);
    const tail = await archiveEntries(r.written.at(-1)!.path);
    const keysOf = (b: Buffer): Set<string> => new Set(b.toString().split('\n').filter(Boolean).map((l) => l.split('\t')[0]!));
    const vk = keysOf(tail.get('CalibVld/rows.tsv')!);
    const pk = keysOf(tail.get('Calib/rows.tsv')!);
    expect([...pk].sort()).toEqual([...vk].sort());
    for (const k of pk) expect(tail.get('Calib/rows.tsv')!.toString().split('\n').filter((l) => l.startsWith(`${k}\t`))).toHaveLength(3);
    // The next run picks up every pair committed meanwhile.
    const again = await p.dump();
    const last = await archiveEntries(again.written.at(-1)!.path);
    expect(keysOf(last.get('CalibVld/rows.tsv')!).has(String(next - 1))).toBe(true);
  });

  it('reports progress: bytes of bulk text and ranges done', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 450));
    await using src = new SqliteSource(f);
    const seen: Progress[] = [];
    const r = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: d }).dump({ onProgress: (p) => seen.push(p) });
    const last = seen.at(-1)!;
    expect(last).toMatchObject({ phase: 'dump', itemsDone: 5, itemsTotal: 5, bytesDone: r.bytes });
    expect(seen.every((p, i) => i === 0 || p.bytesDone >= seen[i - 1]!.bytesDone)).toBe(true);
  });

  it('rejects with the reason when aborted before it starts, and writes nothing', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), seq(1, 10));
    await using src = new SqliteSource(join(d, 'c.db'));
    const ac = new AbortController();
    const reason = new Error('cancelled');
    ac.abort(reason);
    await expect(new Partitioner(src, { table: 'CalibVld', outDir: join(d, 'out') }).dump({ signal: ac.signal })).rejects.toBe(reason);
    expect(await listFiles(join(d, 'out'))).toEqual([]);
  });

  it.each([
    ['while reading a range', (p: Progress) => p.bytesDone > 0],
    ['after some ranges were written', (p: Progress) => p.itemsDone >= 2],
  ])('leaves no partial archive when aborted midway (%s)', async (_what, when) => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 2000), 3);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const ac = new AbortController();
    const reason = new Error('midway');
    const p = new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 200, outDir: out, spoolMemoryBytes: 4096 });
    await expect(p.dump({ concurrency: 2, signal: ac.signal, onProgress: (x) => when(x) && ac.abort(reason) })).rejects.toBe(reason);
    const files = await listFiles(out);
    expect(files.filter((x) => !x.endsWith('.tar.gz') && !x.endsWith('.tar.gz.dna'))).toEqual([]);
    const archives = files.filter((x) => x.endsWith('.tar.gz'));
    expect(archives.length).toBeLessThan(10);
    for (const a of archives) {
      expect(files).toContain(a + '.dna');
      expect((await Archiver.verify(join(out, a), { requireSidecar: true })).ok).toBe(true);
    }
    // The next run completes the job.
    const r = await p.dump();
    expect(r.written.length + archives.length).toBe(10);
  });

  it('writes again an archive that is damaged on disk', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250));
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: d });
    const r1 = await p.dump();
    await truncate(r1.written[0]!.path, 30);
    const r2 = await p.dump();
    expect(r2.written.map((w) => w.lo)).toEqual([1n]);
    expect((await Archiver.verify(r2.written[0]!.path, { requireSidecar: true })).ok).toBe(true);
    // One without its sidecar is not taken for archived either.
    await rm(r1.written[1]!.path + '.dna');
    expect((await p.dump()).written.map((w) => w.lo)).toEqual([101n]);
  });

  it('sets a damaged archive aside instead of overwriting it: one cut short (its manifest still readable), one that lost its sidecar', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250));
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: d });
    const r1 = await p.dump();
    const [first, second] = r1.written.map((w) => w.path) as [string, string];
    // Cut by 200 bytes: the manifest at its start still reads, the rows do not.
    const size = (await stat(first)).size;
    await truncate(first, size - 200);
    const cut = await readFile(first);
    expect((await readManifest(first)).tables[0]!.count).toBe(100);
    expect((await p.plan()).partitions[0]!.state).toBe('complete');
    const r2 = await p.dump();
    expect(r2.written.map((w) => w.lo)).toEqual([1n]);
    expect(r2.setAside).toHaveLength(1);
    expect(r2.setAside[0]).toMatch(/0000000001-0000000100\.tar\.gz\.damaged-\d{8}T\d{6}Z$/);
    expect(await readFile(r2.setAside[0]!)).toEqual(cut);
    expect(existsSync(r2.setAside[0]! + '.dna')).toBe(true);
    expect((await Archiver.verify(first, { requireSidecar: true })).ok).toBe(true);

    // Its sidecar lost and the source purged since: the archive holding the
    // purged rows is kept aside, not replaced by the fewer rows left.
    await rm(second + '.dna');
    const before = await readFile(second);
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" BETWEEN 101 AND 150');
    const r3 = await p.dump();
    expect(r3.written.map((w) => [w.lo, w.tables[0]!.rows])).toEqual([[101n, 50]]);
    expect(r3.setAside).toHaveLength(1);
    expect(await readFile(r3.setAside[0]!)).toEqual(before);
    expect((await readManifest(r3.setAside[0]!)).tables[0]!.count).toBe(100);
    // Set-aside files are no partitions: a restore and the next plan skip them.
    expect((await p.dump()).written).toEqual([]);
    const restored = join(d, 'restored.db');
    makePairDb(restored, []);
    await using target = new SqliteSource(restored);
    expect((await Partitioner.restore(target, d, { table: 'CalibVld' })).partitions).toBe(3);
  });

  it.each([
    ['one table (read in runs of ranges)', ['CalibVld']],
    ['a group (read range by range)', ['CalibVld', 'Calib']],
  ])('a column added between the plan and the snapshot: %s: the archives hold the columns their manifest names, and restore', async (_what, tables) => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250));
    await using src = new SqliteSource(f);
    let altered = false;
    // The schema changes right when the first range's snapshot opens.
    const racing = new Proxy(src, {
      get(target, prop, receiver) {
        if (prop === 'snapshot') {
          return (...args: unknown[]) => {
            if (!altered) {
              altered = true;
              for (const t of tables) exec(f, `ALTER TABLE "${t}" ADD COLUMN "EXTRA" TEXT DEFAULT 'new'`);
            }
            return (target.snapshot as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const out = join(d, 'out');
    const r = await new Partitioner(racing, { tables, rowsPerPartition: 100, outDir: out }).dump({ concurrency: 1 });
    expect(altered).toBe(true);
    expect(r.written).toHaveLength(3);
    const fresh = join(d, 'fresh.db');
    exec(fresh, 'CREATE TABLE "other" ("x" INTEGER)');
    await using dst = new SqliteSource(fresh);
    const restored = await Partitioner.restore(dst, out);
    expect(restored.rows).toBe(r.rows);
  });

  it('never rewrites a complete archive from a purged source: archives on disk count for a Catalog that does not know them', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250));
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const opts = { table: 'CalibVld', rowsPerPartition: 100, outDir: out };
    await new Partitioner(src, opts).dump();
    const first = join(out, 'CalibVld', '0000000001-0000000100.tar.gz');
    const bytes = await readFile(first);
    // The DBA purges archived rows; then the site starts using a Catalog.
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" BETWEEN 1 AND 50');
    using catalog = new Catalog(join(d, 'cat.sqlite'));
    const r = await new Partitioner(src, { ...opts, catalog }).dump();
    expect(r.written).toEqual([]);
    expect(await readFile(first)).toEqual(bytes);
    expect((await readManifest(first)).tables[0]!.count).toBe(100);
    // The Catalog now knows every archive of the folder, as if it had written them.
    expect(catalog.partitions(src.name, 'CalibVld', { key: 'SEQNO' }).map((x) => [x.lo, x.hi, x.state, x.rows, x.archivePath])).toEqual([
      [1n, 100n, 'archived', 100, first],
      [101n, 200n, 'partial', 100, join(out, 'CalibVld', '0000000101-0000000200.tar.gz')],
      [201n, 300n, 'partial', 50, join(out, 'CalibVld', '0000000201-0000000300.tar.gz')],
    ]);
    expect(catalog.archive(first)?.dna).toEqual(await DnaDigest.readSidecar(first));

    // Two outDirs recorded in one Catalog (its records keep one archive per range).
    const f2 = join(d, 'c2.db');
    makePairDb(f2, seq(1, 250));
    await using src2 = new SqliteSource(f2);
    const both = (dir: string): Partitioner => new Partitioner(src2, { table: 'CalibVld', rowsPerPartition: 100, outDir: join(d, dir), catalog });
    await both('A').dump();
    await both('B').dump();
    const a1 = join(d, 'A', 'CalibVld', '0000000001-0000000100.tar.gz');
    const aBytes = await readFile(a1);
    exec(f2, 'DELETE FROM "CalibVld" WHERE "SEQNO" BETWEEN 1 AND 50');
    const again = await both('A').dump();
    expect(again.written).toEqual([]);
    expect(await readFile(a1)).toEqual(aBytes);
  });

  it('fails with the error of a range it cannot write, keeping the archives already written', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 250));
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out });
    await p.dump();
    insertPair(f, seq(251, 350));
    // A directory in the way of the next archive's name.
    await mkdir(join(out, 'CalibVld', '0000000301-0000000400.tar.gz'));
    const err = await rejectsWith(p.dump({ concurrency: 1 }), 'EIO');
    expect(err.message).toContain('0000000301-0000000400.tar.gz');
    const files = await listFiles(out);
    expect(files).toContain('CalibVld/0000000201-0000000300.tar.gz');
    expect(files.filter((x) => x.endsWith('.part'))).toEqual([]);
    expect(JSON.parse(await readFile(join(out, 'CalibVld', '0000000201-0000000300.tar.gz.dna'), 'utf8'))).toHaveProperty('dig');
  });

  describe('a single table, read in runs of ranges with one query each', () => {
    it('cuts the stream exactly at range boundaries, around gaps, in memory or spilled', async () => {
      const d = await tempDir();
      const f = join(d, 'c.db');
      makePairDb(f, [...seq(1, 230), ...seq(560, 575), 2000, 10 ** 9], 3);
      await using src = new SqliteSource(f);
      for (const spool of [32 << 20, 700]) {
        const out = join(d, `out-${spool}`);
        const r = await new Partitioner(src, { table: 'Calib', rowsPerPartition: 100, outDir: out, spoolMemoryBytes: spool }).dump({ concurrency: 1 });
        expect(r.written.map((w) => [w.lo, w.tables[0]!.rows])).toEqual([
          [1n, 300],
          [101n, 300],
          [201n, 90],
          [501n, 48],
          [1901n, 3],
          [10n ** 9n - 99n, 3],
        ]);
        for (const w of r.written) {
          const rows = (await archiveEntries(w.path)).get('Calib/rows.tsv')!;
          const expected = Buffer.concat(await (await src.rows('Calib', { key: 'SEQNO', lo: w.lo, hi: w.hi })).toArray());
          expect(rows.equals(expected), `${w.lo}`).toBe(true);
        }
        expect((await listFiles(out)).filter((x) => !/\.tar\.gz(\.dna)?$/.test(x))).toEqual([]);
      }
    });

    it('asks one query per run of ranges (per worker), not one per range', async () => {
      const d = await tempDir();
      const f = join(d, 'c.db');
      makePairDb(f, seq(1, 1000));
      await using src = new SqliteSource(f);
      let calls = 0;
      const counted = new Proxy(src, {
        get(t, p) {
          const v = Reflect.get(t, p, t) as unknown;
          if (p === 'snapshot') {
            return (fn: (r: TableReader) => Promise<unknown>, o: object) =>
              t.snapshot(async (r) => fn(new Proxy(r, { get: (rt, rp) => (rp === 'rows' ? (...a: unknown[]) => (calls++, (rt.rows as (...x: unknown[]) => unknown)(...a)) : Reflect.get(rt, rp, rt)) })), o);
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
        },
      });
      const one = await new Partitioner(counted, { table: 'CalibVld', rowsPerPartition: 50, outDir: join(d, 'a') }).dump({ concurrency: 1 });
      expect(one.written).toHaveLength(20);
      expect(calls).toBe(1);
      calls = 0;
      const two = await new Partitioner(counted, { table: 'CalibVld', rowsPerPartition: 50, outDir: join(d, 'b') }).dump({ concurrency: 2 });
      expect(two.written).toHaveLength(20);
      expect(calls).toBe(2);
      // Archived ranges between break the runs: only the ranges to write are read.
      insertPair(f, seq(1001, 1120));
      exec(f, 'UPDATE "CalibVld" SET "SITEMASK" = 0 WHERE "SEQNO" = 1');
      calls = 0;
      const three = await new Partitioner(counted, { table: 'CalibVld', rowsPerPartition: 50, outDir: join(d, 'a') }).dump({ concurrency: 1 });
      // 901-950 was kept partial (the default settleRanges: 1) and is complete now.
      expect(three.written.map((w) => w.lo)).toEqual([901n, 951n, 1001n, 1051n, 1101n]);
      expect(calls).toBe(1);
    });

    it('runs incrementally and survives aborts like a group does', async () => {
      const d = await tempDir();
      const f = join(d, 'c.db');
      makePairDb(f, seq(1, 2000), 2);
      await using src = new SqliteSource(f);
      const out = join(d, 'out');
      const p = new Partitioner(src, { table: 'Calib', rowsPerPartition: 100, outDir: out, spoolMemoryBytes: 2048 });
      const ac = new AbortController();
      const reason = new Error('stop');
      await expect(p.dump({ concurrency: 2, signal: ac.signal, onProgress: (x) => x.itemsDone >= 3 && ac.abort(reason) })).rejects.toBe(reason);
      const files = await listFiles(out);
      expect(files.filter((x) => !/\.tar\.gz(\.dna)?$/.test(x))).toEqual([]);
      for (const a of files.filter((x) => x.endsWith('.tar.gz'))) expect((await Archiver.verify(join(out, a), { requireSidecar: true })).ok).toBe(true);
      const r1 = await p.dump();
      expect(r1.written.length + files.filter((x) => x.endsWith('.tar.gz')).length).toBe(20);
      insertPair(f, seq(2001, 2150), 2);
      const r2 = await p.dump();
      // The range below the tail stays partial (settleRanges: 1) until the keys pass the tail's end.
      expect(r2.written.map((w) => [w.lo, w.complete])).toEqual([
        [1801n, true],
        [1901n, true],
        [2001n, false],
        [2101n, false],
      ]);
      const t = await mtimes(out);
      expect((await p.dump()).written).toEqual([]);
      expect(await mtimes(out)).toEqual(t);
    });
  });

  it('holds LOCKED in the folder while it dumps: a second dump there is refused (ELOCKED)', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, seq(1, 500));
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: d });
    let second: Promise<unknown> | undefined;
    let sawLock = false;
    await p.dump({
      concurrency: 1,
      onProgress: () => {
        if (second !== undefined) return;
        sawLock = existsSync(join(d, 'CalibVld', 'LOCKED', 'owner.json'));
        second = p.dump();
        second.catch(() => {});
      },
    });
    expect(sawLock).toBe(true);
    const err = await rejectsWith(second!, 'ELOCKED');
    expect(err.message).toMatch(/Partitioner\.dump of CalibVld/);
    expect(existsSync(join(d, 'CalibVld', 'LOCKED'))).toBe(false);
    expect((await p.dump()).written).toEqual([]);
  });

  it('rejects bad dump options', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), [1]);
    await using src = new SqliteSource(join(d, 'c.db'));
    const p = new Partitioner(src, { table: 'CalibVld', outDir: d });
    await rejectsWith(p.dump({ concurency: 2 } as never), 'EBAD_CONFIG');
    await rejectsWith(p.dump({ concurrency: 0 }), 'EBAD_CONFIG');
    await rejectsWith(p.dump({ incremental: 'yes' as never }), 'EBAD_CONFIG');
    await rejectsWith(p.dump({ onProgress: 5 as never }), 'EBAD_CONFIG');
  });
});
