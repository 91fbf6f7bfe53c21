import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { ArchiveBufferPool, readArchive } from '../../../src/archive/archive-reader.js';
import { logText, makeTree, rejectsWith, run, tempDir } from './helpers.js';

interface Seen {
  name: string;
  data: Buffer;
  /** The ArrayBuffers the entry's chunks were views of. */
  buffers: Set<ArrayBufferLike>;
}

/** Every file entry of `file` with its bytes, read with `pool` (or without one). */
async function entries(file: string, pool?: ArchiveBufferPool): Promise<Seen[]> {
  const out: Seen[] = [];
  await readArchive(file, { phase: 'read', buffers: pool }, async (e, data) => {
    const parts: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const c of data as AsyncIterable<Buffer>) {
      buffers.add(c.buffer);
      parts.push(Buffer.from(c)); // a copy: the views are valid only during the pass
    }
    if (e.type === 'file') out.push({ name: e.name, data: Buffer.concat(parts), buffers });
  });
  return out;
}

/** Names, sizes and md5s (toEqual on large Buffers is slow). */
const plain = (xs: Seen[]): { name: string; size: number; md5: string }[] => xs.map(({ name, data }) => ({ name, size: data.length, md5: createHash('md5').update(data).digest('hex') }));

async function setup(): Promise<{ root: string; gz: string; gnu: string; tar: string; src: string }> {
  const root = await tempDir();
  const src = join(root, 'src');
  await mkdir(src);
  await makeTree(src);
  await writeFile(join(src, 'rows.tsv'), logText(1 << 20));
  await writeFile(join(src, 'blob.bin'), randomBytes(300_000));
  const gz = (await Archiver.create(src, join(root, 'ours.tar.gz'), { chunkSize: 256 * 1024 })).path;
  const tar = (await Archiver.create(src, join(root, 'ours.tar'))).path;
  const gnu = join(root, 'gnu.tar.gz');
  run('tar', ['czf', gnu, '-C', src, '.']);
  return { root, gz, gnu, tar, src };
}

describe('readArchive with an ArchiveBufferPool', () => {
  it('reads the same entries and bytes as without one (ours, several gzip members; GNU tar, one; plain tar)', async () => {
    const { gz, gnu, tar } = await setup();
    for (const file of [gz, gnu, tar]) {
      const pool = new ArchiveBufferPool();
      const want = await entries(file);
      expect(want.length).toBeGreaterThan(2);
      expect(plain(await entries(file, pool))).toEqual(plain(want));
      expect(plain(await entries(file, pool))).toEqual(plain(want));
    }
  });

  it('a gzipped archive read whole is inflated into the pool: the next pass gets views of the same memory', async () => {
    const { gz } = await setup();
    const pool = new ArchiveBufferPool();
    const first = await entries(gz, pool);
    const second = await entries(gz, pool);
    const rows1 = first.find((e) => e.name === 'rows.tsv')!;
    const rows2 = second.find((e) => e.name === 'rows.tsv')!;
    expect(rows1.buffers.size).toBe(1);
    expect([...rows2.buffers]).toEqual([...rows1.buffers]);
    // Without a pool every pass inflates into new memory.
    const a = (await entries(gz)).find((e) => e.name === 'rows.tsv')!;
    const b = (await entries(gz)).find((e) => e.name === 'rows.tsv')!;
    expect([...a.buffers][0]).not.toBe([...b.buffers][0]);
  });

  it('passes at the same time get buffers of their own', async () => {
    const { gz, gnu } = await setup();
    const pool = new ArchiveBufferPool();
    const want = plain(await entries(gz));
    const [x, y, z] = await Promise.all([entries(gz, pool), entries(gnu, pool), entries(gz, pool)]);
    expect(plain(x!)).toEqual(want);
    expect(plain(z!)).toEqual(want);
    expect(plain(y!).find((e) => e.name === 'rows.tsv')).toEqual(want.find((e) => e.name === 'rows.tsv'));
    const mem = (s: Seen[]): ArrayBufferLike => [...s.find((e) => e.name === 'rows.tsv')!.buffers][0]!;
    expect(new Set([mem(x!), mem(y!), mem(z!)]).size).toBe(3);
  });

  it('a damaged archive still visits the entries before the damage and fails with ECORRUPT_ARCHIVE; the buffers go back', async () => {
    const { gz } = await setup();
    const pool = new ArchiveBufferPool();
    const good = await entries(gz, pool);
    const whole = await readFile(gz);
    const damaged = gz.replace(/\.tar\.gz$/, '-cut.tar.gz');
    await writeFile(damaged, whole);
    await truncate(damaged, whole.length - 1000);
    const seen: string[] = [];
    await rejectsWith(
      readArchive(damaged, { phase: 'read', buffers: pool }, async (e) => void seen.push(e.name)),
      'ECORRUPT_ARCHIVE',
    );
    expect(seen.length).toBeGreaterThan(0);
    const flipped = gz.replace(/\.tar\.gz$/, '-flip.tar.gz');
    whole[Math.floor(whole.length * 0.6)]! ^= 0x40;
    await writeFile(flipped, whole);
    await rejectsWith(entries(flipped, pool), 'ECORRUPT_ARCHIVE');
    const again = await entries(gz, pool);
    expect(plain(again)).toEqual(plain(good));
    expect([...again.find((e) => e.name === 'rows.tsv')!.buffers]).toEqual([...good.find((e) => e.name === 'rows.tsv')!.buffers]);
  });

  it('the buffers go back when the visitor fails, too', async () => {
    const { gz } = await setup();
    const pool = new ArchiveBufferPool();
    const before = await entries(gz, pool);
    await expect(
      readArchive(gz, { phase: 'read', buffers: pool }, async () => {
        throw new Error('visitor gave up');
      }),
    ).rejects.toThrow();
    const after = await entries(gz, pool);
    expect([...after.find((e) => e.name === 'rows.tsv')!.buffers]).toEqual([...before.find((e) => e.name === 'rows.tsv')!.buffers]);
  });

  it('an archive that inflates to more than the pool allows is read as before', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'zeros'), Buffer.alloc(24 << 20));
    const { path } = await Archiver.create(src, join(root, 'z.tar.gz'));
    // ~24 KiB of gzip for 24 MiB: far more than 8 times its size.
    expect((await stat(path)).size).toBeLessThan(1 << 20);
    const got = await entries(path, new ArchiveBufferPool());
    expect(got).toHaveLength(1);
    expect(got[0]!.data.equals(Buffer.alloc(24 << 20))).toBe(true);
  });

  it('take() sizes a pair for the file and 8 times it inflated, and none beyond the whole-read limit', () => {
    const pool = new ArchiveBufferPool();
    const a = pool.take(500_000)!;
    expect(a.input.length).toBeGreaterThan(500_000);
    expect(a.output.length).toBeGreaterThanOrEqual(4 << 20);
    const b = pool.take(3 << 20)!;
    expect(b.output.length).toBeGreaterThanOrEqual(24 << 20);
    expect(pool.take((4 << 20) + 1)).toBeUndefined();
    pool.give(a);
    pool.give(b);
    // The big pair fits a small file too; the small one does not fit the big file.
    expect(pool.take(3 << 20)).toBe(b);
    expect(pool.take(100)).toBe(a);
  });
});
