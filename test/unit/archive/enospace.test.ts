/**
 * Full disk, for real: a 20 MiB tmpfs (needs root; fails loudly otherwise,
 * see test/support/tmpfs.ts). The archive, its `.part` and its sidecar must
 * all be gone after ENOSPACE.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { withTmpfs, type Tmpfs } from '../../support/index.js';
import { ls, rejectsWith, tempDir } from './helpers.js';

let disk: Tmpfs;
beforeAll(async () => {
  disk = await withTmpfs(20);
});
afterAll(async () => {
  await disk?.stop();
});

describe('Archiver on a full disk', () => {
  it('create: ENOSPACE, and neither the archive nor its .part nor a sidecar is left', async () => {
    const src = join(await tempDir(), 'src');
    await mkdir(src);
    for (let i = 0; i < 3; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(10 << 20));
    const e = await rejectsWith(Archiver.create(src, join(disk.dir, 'big.tar.gz')), 'ENOSPACE');
    expect(e.message).toContain(disk.dir);
    expect(await ls(disk.dir)).toEqual([]);
  });

  it('create: room for the archive but not for its sidecar is ENOSPACE too, with nothing left', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), randomBytes(3 << 20));
    const probe = await Archiver.create(src, join(root, 'probe.tar'), { deterministic: true });
    const pages = Math.ceil(probe.bytesOut / 4096) * 4096;
    await disk.fill(pages);
    try {
      await rejectsWith(Archiver.create(src, join(disk.dir, 'a.tar'), { deterministic: true }), 'ENOSPACE');
      expect(await ls(disk.dir)).toEqual(['.fill']);
    } finally {
      await disk.unfill();
    }
  });

  it('extract: ENOSPACE, and nothing is left in the destination (no .part file, and not the file that fitted)', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'small.txt'), 'fits');
    await writeFile(join(src, 'z-huge.bin'), randomBytes(24 << 20));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'));
    const dest = join(disk.dir, 'dest');
    await rejectsWith(Archiver.extract(path, dest), 'ENOSPACE');
    expect(await ls(dest)).toEqual([]);
  });
});
