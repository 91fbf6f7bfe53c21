/**
 * Regression: `Archiver.extract` renamed each file into place as soon as its
 * data ended, while the CRC of the gzip member holding it is only checked
 * after the member's last byte (and the sidecar DNA after the archive's).
 * A flipped byte in a.bin's stored data made the extraction fail with
 * ECORRUPT_ARCHIVE "incorrect data check", but only after the damaged bytes
 * had replaced the good a.bin already in the destination. Now every file
 * waits fsynced under a temporary name until the whole archive is checked,
 * and a failure leaves the destination as it was.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { craftTar, ls, rejectsWith, tempDir } from './helpers.js';

/** Flips one byte inside the stored copy of `data` in `archive` (random data is stored, not deflated). */
async function flipInside(archive: string, data: Buffer, at: number): Promise<void> {
  const buf = await readFile(archive);
  const probe = data.subarray(at, at + 64);
  const off = buf.indexOf(probe);
  expect(off, 'the file is stored verbatim in the archive').toBeGreaterThan(0);
  buf[off + 10] = buf[off + 10]! ^ 0xff;
  await writeFile(archive, buf);
}

describe('Archiver.extract is all or nothing', () => {
  it('a damaged gzip member after a file was read: ECORRUPT_ARCHIVE, and the files already in dest keep their bytes', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const a = randomBytes(100 << 10);
    const b = randomBytes(400 << 10);
    await writeFile(join(src, 'a.bin'), a);
    await writeFile(join(src, 'b.bin'), b);
    await symlink('a.bin', join(src, 'l'));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'), { sidecar: false });
    await flipInside(path, a, 50_000);
    const dest = join(root, 'dest');
    await mkdir(dest);
    const good = Buffer.from('the good a.bin of the destination');
    await writeFile(join(dest, 'a.bin'), good);
    await writeFile(join(dest, 'l'), 'a file where the archive has a link');
    const e = await rejectsWith(Archiver.extract(path, dest), 'ECORRUPT_ARCHIVE');
    expect(e.message).toContain('incorrect data check');
    expect((await readFile(join(dest, 'a.bin'))).equals(good)).toBe(true);
    expect((await lstat(join(dest, 'l'))).isFile()).toBe(true);
    expect(await ls(dest)).toEqual(['a.bin', 'l']);
  });

  it('a sidecar mismatch found at the end: EDIGEST_MISMATCH, nothing replaced, no folder or temporary file left', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub', 'f.txt'), 'from the archive');
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'));
    await writeFile(path + '.dna', JSON.stringify({ dig: '0'.repeat(32), size: (await stat(path)).size }));
    const dest = join(root, 'dest');
    await mkdir(dest);
    await writeFile(join(dest, 'keep.txt'), 'mine');
    await rejectsWith(Archiver.extract(path, dest), 'EDIGEST_MISMATCH');
    expect(await ls(dest)).toEqual(['keep.txt']);
  });

  it('aborted midway: the destination is left as it was', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    for (let i = 0; i < 3; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(4 << 20));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'));
    const dest = join(root, 'dest');
    await mkdir(dest);
    await writeFile(join(dest, 'f0.bin'), 'old');
    const ac = new AbortController();
    const reason = new Error('stop');
    await expect(
      Archiver.extract(path, dest, {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.bytesDone > 6 << 20) ac.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(await readdir(dest)).toEqual(['f0.bin']);
    expect(await readFile(join(dest, 'f0.bin'), 'utf8')).toBe('old');
  });

  it('hard links and symlinks to files of the same archive are made in place once all is checked (a hard link keeps the copy it was made to)', async () => {
    const root = await tempDir();
    const archive = join(root, 'h.tar');
    await craftTar(archive, [
      { header: { name: 'd/a.txt' }, data: 'first a' },
      { header: { name: 'd/h', type: 'link', linkname: 'd/a.txt' } },
      { header: { name: 's', type: 'symlink', linkname: 'd/a.txt' } },
      { header: { name: 'd/h2', type: 'link', linkname: 'd/h' } },
      { header: { name: 'd/a.txt' }, data: 'second a' },
    ]);
    const dest = join(root, 'dest');
    const r = await Archiver.extract(archive, dest);
    expect(r.entries).toBe(5);
    expect(await readFile(join(dest, 'd/a.txt'), 'utf8')).toBe('second a');
    expect(await readFile(join(dest, 'd/h'), 'utf8')).toBe('first a');
    expect((await stat(join(dest, 'd/h'))).ino).toBe((await stat(join(dest, 'd/h2'))).ino);
    expect(await readlink(join(dest, 's'))).toBe('d/a.txt');
    expect(await readFile(join(dest, 's'), 'utf8')).toBe('second a');
    expect((await ls(join(dest, 'd'))).filter((n) => n.startsWith('.stowage-'))).toEqual([]);
    expect(await ls(dest)).toEqual(['d', 's']);
  });

  it('holds no file descriptor per file waiting to be renamed', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const n = 600;
    for (let i = 0; i < n; i++) await writeFile(join(src, `f${String(i).padStart(4, '0')}.txt`), `file ${i}\n`);
    const { path } = await Archiver.create(src, join(root, 'many.tar.gz'));
    const fds = (): number => readdirSync('/proc/self/fd').length;
    const before = fds();
    let most = before;
    const dest = join(root, 'dest');
    const r = await Archiver.extract(path, dest, {
      filter: () => {
        most = Math.max(most, fds());
        return true;
      },
    });
    expect(r.entries).toBe(n);
    expect(most - before).toBeLessThan(50);
    expect((await ls(dest)).length).toBe(n);
    expect(await readFile(join(dest, 'f0599.txt'), 'utf8')).toBe('file 599\n');
  });
});
