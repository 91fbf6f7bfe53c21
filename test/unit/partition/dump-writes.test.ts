/**
 * Partitioner.dump of a single table writes a few ranges' archives at once
 * behind the read, within `spoolMemoryBytes` of rows held in memory.
 * Watched through the `.part` files of the archives being written.
 */
import Database from 'better-sqlite3';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { tempDir } from './helpers.js';

/** A table of 6,000 rows of 4 KiB (a 500-row range is ~2 MB of bulk text). */
async function bigTable(): Promise<string> {
  const f = join(await tempDir(), 'w.db');
  const db = new Database(f);
  db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
  db.exec('WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 6000) INSERT INTO t SELECT x, hex(randomblob(2048)) FROM s');
  db.close();
  return f;
}

/** Dumps with `spoolMemoryBytes`, one range read at a time, and returns the most archives seen being written at once. */
async function mostAtOnce(spoolMemoryBytes: number): Promise<{ most: number; written: number }> {
  const f = await bigTable();
  await using src = new SqliteSource(f);
  const out = join(await tempDir(), 'out');
  let most = 0;
  let done = false;
  const watch = (async () => {
    while (!done) {
      const parts = await readdir(join(out, 't')).then(
        (names) => names.filter((n) => n.endsWith('.tar.gz.part')).length,
        () => 0,
      );
      most = Math.max(most, parts);
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    const r = await new Partitioner(src, { table: 't', key: 'id', rowsPerPartition: 500, outDir: out, gzipLevel: 9, spoolMemoryBytes }).dump({ concurrency: 1 });
    return { most, written: r.written.length };
  } finally {
    done = true;
    await watch;
  }
}

describe('Partitioner.dump: archive writes behind the read', () => {
  it('writes up to three ranges at once while their rows fit in spoolMemoryBytes', async () => {
    const { most, written } = await mostAtOnce(32 << 20);
    expect(written).toBe(12);
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(3);
  });

  it('counts no memory for ranges spilled to files: they are written two or three at once too', async () => {
    // Each range (~2 MB) spills past 256 KiB.
    const { most, written } = await mostAtOnce(256 << 10);
    expect(written).toBe(12);
    expect(most).toBeGreaterThanOrEqual(2);
    expect(most).toBeLessThanOrEqual(3);
  });

  it('writes one at a time when two ranges in memory would exceed spoolMemoryBytes', async () => {
    // Each range (~2 MB) fits in 3 MB, two do not.
    const { most, written } = await mostAtOnce(3 << 20);
    expect(written).toBe(12);
    expect(most).toBe(1);
  });
});
