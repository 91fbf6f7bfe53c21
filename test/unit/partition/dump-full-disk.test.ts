/**
 * Partitioner.dump onto a full disk, for real: a 20 MiB tmpfs (needs root;
 * fails loudly otherwise, see test/support/tmpfs.ts). Several archive
 * writes are in flight at once: the one that meets the full disk fails the
 * dump with ENOSPACE, and no `.part`, spill file or sidecar-less archive is
 * left; every archive under its final name is whole (its DNA matches).
 */
import Database from 'better-sqlite3';
import { open, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { DnaDigest } from '../../../src/dna/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { readManifest } from '../../../src/partition/partition-archive.js';
import { useUpInodes, withTmpfs, type Tmpfs } from '../../support/index.js';
import { exec, listFiles, rejectsWith, tempDir } from './helpers.js';

let disk: Tmpfs;
beforeAll(async () => {
  disk = await withTmpfs(20);
});
afterAll(async () => {
  await disk?.stop();
});

describe('Partitioner.dump on a full disk', () => {
  it('is ENOSPACE naming the folder written to, leaves no partial file, and every archive left is whole', async () => {
    const f = join(await tempDir(), 'big.db');
    const db = new Database(f);
    // 4 KiB of hex per row (compresses to about half): ~30 MB of archives, more than the disk holds.
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    db.exec('WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 15000) INSERT INTO t SELECT x, hex(randomblob(2048)) FROM s');
    db.close();
    await using src = new SqliteSource(f);
    const out = join(disk.dir, 'out');
    const err = await rejectsWith(new Partitioner(src, { table: 't', key: 'id', rowsPerPartition: 500, outDir: out }).dump({ concurrency: 2 }), 'ENOSPACE');
    expect(err.message).toContain(out);
    const files = await listFiles(out);
    expect(files.filter((n) => /\.part$|\.spool$|stowage-/.test(n))).toEqual([]);
    expect(files.filter((n) => n.startsWith('LOCKED') || n.includes('/LOCKED'))).toEqual([]);
    const archives = files.filter((n) => n.endsWith('.tar.gz'));
    // The disk filled midway: some archives were written, not all 30.
    expect(archives.length).toBeGreaterThan(0);
    expect(archives.length).toBeLessThan(30);
    expect(files.filter((n) => n.endsWith('.dna')).sort()).toEqual(archives.map((a) => `${a}.dna`).sort());
    for (const a of archives) {
      expect((await DnaDigest.verify(join(out, a))).ok).toBe(true);
      expect((await readManifest(join(out, a))).tables[0]!.count).toBe(500);
    }
  });

  it('a full dump (incremental: false) that cannot write a range holding other rows now leaves the old archive in place, not only its copy aside', async () => {
    const f = join(await tempDir(), 'purged.db');
    const db = new Database(f);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    db.exec('WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 300) INSERT INTO t SELECT x, hex(randomblob(2048)) FROM s');
    db.close();
    await using src = new SqliteSource(f);
    // A disk of its own (the test above leaves the shared one full).
    await using own = await withTmpfs(8);
    const out = join(own.dir, 'purged');
    const p = (): Partitioner => new Partitioner(src, { table: 't', key: 'id', rowsPerPartition: 100, outDir: out });
    await p().dump();
    const first = join(out, 't', '0000000001-0000000100.tar.gz');
    // Rows purged from the first range: a full dump sets its archive aside, then writes the rows left.
    exec(f, 'DELETE FROM t WHERE id BETWEEN 2 AND 9');
    // The disk filled but for 64 KiB (room for the lock, not for an archive of ~400 KiB).
    const ballast = join(own.dir, 'ballast');
    const st = await statfs(own.dir);
    const h = await open(ballast, 'w');
    try {
      const chunk = Buffer.alloc(1 << 20, 1);
      for (let left = st.bavail * st.bsize - 64 * 1024; left > 0; left -= chunk.length) await h.write(chunk, 0, Math.min(left, chunk.length));
    } finally {
      await h.close();
    }
    await rejectsWith(p().dump({ incremental: false, concurrency: 1 }), 'ENOSPACE');
    // The old archive under its own name, whole, with its sidecar (it was renamed away before the write, and the range had no archive); no copy left aside.
    expect((await DnaDigest.verify(first)).ok).toBe(true);
    expect((await readManifest(first)).tables[0]!.count).toBe(100);
    const files = await listFiles(out);
    expect(files.filter((n) => /\.replaced-|\.part$/.test(n))).toEqual([]);
    // Room again: the full dump writes the rows left and keeps the old archive aside.
    await rm(ballast);
    const r = await p().dump({ incremental: false, concurrency: 1 });
    expect(r.setAside).toHaveLength(1);
    expect((await readManifest(r.setAside[0]!)).tables[0]!.count).toBe(100);
    expect((await DnaDigest.verify(r.setAside[0]!)).ok).toBe(true);
    expect((await readManifest(first)).tables[0]!.count).toBe(92);
  });

  it('on a disk out of inodes, the outDir that cannot be made is ENOSPACE, not ENOT_FOUND', async () => {
    await using full = await withTmpfs(4, { inodes: 32 });
    expect(await useUpInodes(full.dir)).toBeGreaterThan(0);
    const f = join(await tempDir(), 'small.db');
    const db = new Database(f);
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, \'a\')');
    db.close();
    await using src = new SqliteSource(f);
    const out = join(full.dir, 'dumps', 'today');
    const err = await rejectsWith(new Partitioner(src, { table: 't', key: 'id', outDir: out }).dump(), 'ENOSPACE');
    expect(err.message).toContain(join(out, 't'));
  });
});
