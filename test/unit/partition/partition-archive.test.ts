import { randomBytes } from 'node:crypto';
// readVerifiedManifest (what Partitioner.restore reads once an archive's DNA
// is checked) takes a short path: the first 16 KiB read, a few KiB inflated
// and the first tar header parsed by hand. It must give the same manifest as
// the full streaming pass (readManifest), and leave anything unusual to it.
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { formatManifest, MANIFEST_ENTRY } from '../../../src/partition/manifest.js';
import { manifestAtStart, readManifest, readVerifiedManifest, writePartitionArchive } from '../../../src/partition/partition-archive.js';
import { makePairDb, rejectsWith, tempDir } from './helpers.js';

describe('readVerifiedManifest: the manifest from the first bytes of an archive', () => {
  it('gives the manifest the full pass gives, from the first KiB of the first member', async () => {
    const d = await tempDir();
    try {
      const f = join(d, 'src.db');
      makePairDb(f, Array.from({ length: 250 }, (_, i) => i + 1), 3);
      await using src = new SqliteSource(f);
      const out = join(d, 'out');
      await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: out }).dump();
      const files = (await readdir(join(out, 'CalibVld'))).filter((n) => n.endsWith('.tar.gz'));
      expect(files.length).toBe(3);
      for (const name of files) {
        const file = join(out, 'CalibVld', name);
        const bytes = await readFile(file);
        expect(manifestAtStart(bytes.subarray(0, 16 * 1024))).toBeDefined();
        expect(await readVerifiedManifest(file)).toEqual(await readManifest(file));
      }
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('leaves a broken or unusual start to the full pass, which decides', async () => {
    const d = await tempDir();
    try {
      const file = join(d, 'a.tar.gz');
      const manifest = formatManifest({ format: 'stowage-partition', version: 1, engine: 'sqlite', source: 's', key: 'SEQNO', lo: 1n, hi: 100n, rowsPerPartition: 100, base: 1n, complete: true, created: new Date(0), tables: [] } as never);
      await writePartitionArchive(file, [{ name: MANIFEST_ENTRY, size: manifest.length, data: manifest }], { gzipLevel: 1, gzipConcurrency: 1, mtime: new Date(0) });
      const good = await readFile(file);
      const tar = gunzipSync(good);
      expect(manifestAtStart(good)?.equals(manifest)).toBe(true);
      // A header checksum that does not hold: the full pass reports the damage.
      const badSum = Buffer.from(tar);
      badSum[10] = badSum[10]! ^ 0x01;
      expect(manifestAtStart(gzipSync(badSum))).toBeUndefined();
      const broken = join(d, 'broken.tar.gz');
      await writeFile(broken, gzipSync(badSum));
      await rejectsWith(readVerifiedManifest(broken), 'ECORRUPT_ARCHIVE');
      // Another first entry: not a partition archive.
      const other = Buffer.from(tar);
      other.write('other.json\0\0\0', 0, 'latin1');
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : other[i]!;
      other.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      expect(manifestAtStart(gzipSync(other))).toBeUndefined();
      await writeFile(broken, gzipSync(other));
      await rejectsWith(readVerifiedManifest(broken), 'ECORRUPT_ARCHIVE');
      // A manifest past the first 4 KiB inflated is found in the first 16 KiB; one past those, by the full pass.
      for (const [hexBytes, atStart] of [
        [6_000, true],
        [40_000, false],
      ] as const) {
        const big = formatManifest({ format: 'stowage-partition', version: 1, engine: 'sqlite', source: randomBytes(hexBytes).toString('hex'), key: 'SEQNO', lo: 1n, hi: 100n, rowsPerPartition: 100, base: 1n, complete: true, created: new Date(0), tables: [{ name: 'T', schema: 'T/schema.sql', rows: 'T/rows.tsv', columns: ['SEQNO'], keyIndex: 0, count: 0, bytes: 0, digest: 'd41d8cd98f00b204e9800998ecf8427e' }] } as never);
        const bigFile = join(d, `big-${hexBytes}.tar.gz`);
        await writePartitionArchive(bigFile, [{ name: MANIFEST_ENTRY, size: big.length, data: big }], { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date(0) });
        const bytes = await readFile(bigFile);
        expect(bytes.length).toBeGreaterThan(4096);
        expect(manifestAtStart(bytes)?.equals(big) ?? false).toBe(atStart);
        expect((await readVerifiedManifest(bigFile)).source).toBe(JSON.parse(big.toString()).source);
      }
      // A file that is not there: the file system's error, as a StowageError.
      await rejectsWith(readVerifiedManifest(join(d, 'gone.tar.gz')), 'ENOT_FOUND');
      // Not gzip, or cut short: undefined, never a throw.
      expect(manifestAtStart(tar)).toBeUndefined();
      expect(manifestAtStart(good.subarray(0, 12))).toBeUndefined();
      expect(manifestAtStart(Buffer.alloc(0))).toBeUndefined();
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
