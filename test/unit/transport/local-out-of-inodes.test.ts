/**
 * Node 20's fs.promises.mkdir(path, { recursive: true }) reports ENOSPC as
 * ENOENT: on a disk out of inodes, LocalTransport said the path "does not
 * exist" (ENOT_FOUND) when creating missing parents, never that the disk was
 * full. A tmpfs with a handful of inodes stands for that disk (needs root).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { useUpInodes, withTmpfs } from '../../support/index.js';

/** Creates empty files in `dir` until the file system has no inode left. */
async function code(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StowageError);
  return (err as StowageError).code;
}

describe('LocalTransport on a disk out of inodes', () => {
  it('mkdir -p, put creating its parents and get creating its local parents are ENOSPACE, not ENOT_FOUND', async () => {
    await using disk = await withTmpfs(4, { inodes: 32 });
    const elsewhere = await mkdtemp(join(tmpdir(), 'stowage-inodes-'));
    try {
      const src = join(elsewhere, 'src.bin');
      await writeFile(src, 'payload');
      expect(await useUpInodes(disk.dir)).toBeGreaterThan(0);
      const t = new LocalTransport();
      expect(await code(t.mkdir(join(disk.dir, 'a', 'b', 'c'), { recursive: true }))).toBe('ENOSPACE');
      expect(await code(t.put(Buffer.from('x'), join(disk.dir, 'p', 'q', 'f')))).toBe('ENOSPACE');
      expect(await code(t.get(src, join(disk.dir, 'g', 'h', 'f')))).toBe('ENOSPACE');
      // An existing folder is still fine, and a missing parent without recursive still ENOT_FOUND.
      await t.mkdir(disk.dir, { recursive: true });
      expect(await code(t.mkdir(join(disk.dir, 'none', 'x')))).toBe('ENOT_FOUND');
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });
});
