import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import type { Progress } from '../../../src/progress.js';
import { craftTar, expectSameTree, logText, ls, makeTree, readTree, rejectsWith, run, tempDir } from './helpers.js';

/** Every path under `dir` (recursive), for "no .part left" checks. */
async function allPaths(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String);
}

describe('Archiver.extract', () => {
  it('round-trips a tree (files, empty file, dirs, symlink, long and non-ASCII names, modes)', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const spec = await makeTree(src);
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
    spec['run.sh'] = '#!/bin/sh\n';
    const { path } = await Archiver.create(src, join(root, 'a.tar.gz'));
    const dest = join(root, 'dest');
    const r = await Archiver.extract(path, dest);
    expectSameTree(await readTree(dest), spec);
    expect((await stat(join(dest, 'run.sh'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dest, 'a.log'))).mtimeMs).toBe(Math.floor((await stat(join(src, 'a.log'))).mtimeMs / 1000) * 1000);
    expect(r.entries).toBe(Object.keys(spec).length + 6);
    expect(r.dest).toBe(dest);
  });

  it('extracts archives made by GNU tar czf (with "./" names)', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const spec = await makeTree(src);
    const gnu = join(root, 'gnu.tar.gz');
    run('tar', ['czf', gnu, '-C', src, '.']);
    const dest = join(root, 'dest');
    await Archiver.extract(gnu, dest);
    expectSameTree(await readTree(dest), spec);
  });

  it('filter picks entries; hard links inside the destination become hard links', async () => {
    const root = await tempDir();
    const archive = join(root, 'h.tar');
    await craftTar(archive, [
      { header: { name: 'data/a.txt' }, data: 'shared content' },
      { header: { name: 'data/b.txt', type: 'link', linkname: 'data/a.txt' } },
      { header: { name: 'skip/me.txt' }, data: 'no' },
    ]);
    const dest = join(root, 'dest');
    const r = await Archiver.extract(archive, dest, { filter: (e) => !e.name.startsWith('skip') });
    expect(await ls(dest)).toEqual(['data']);
    const [a, b] = await Promise.all([stat(join(dest, 'data/a.txt')), stat(join(dest, 'data/b.txt'))]);
    expect(a.ino).toBe(b.ino);
    expect(r.entries).toBe(2);
  });

  it('EEXIST when an entry would replace a directory or go under a file', async () => {
    const root = await tempDir();
    const underFile = join(root, 'a.tar');
    await craftTar(underFile, [
      { header: { name: 'a' }, data: 'a file' },
      { header: { name: 'a/b' }, data: 'under a file' },
    ]);
    await rejectsWith(Archiver.extract(underFile, join(root, 'd1')), 'EEXIST');
    const linkOnDir = join(root, 'b.tar');
    await craftTar(linkOnDir, [
      { header: { name: 'x/y' }, data: 'y' },
      { header: { name: 'x', type: 'symlink', linkname: 'elsewhere' } },
    ]);
    await rejectsWith(Archiver.extract(linkOnDir, join(root, 'd2')), 'EEXIST');
    // All or nothing: x/y, read before the refused entry, is not kept (nor the folder made for it).
    expect(await ls(join(root, 'd2'))).toEqual([]);
  });

  it('an entry of an unsupported type is skipped with an EUNSAFE_PATH warning; strict makes it an error', async () => {
    const root = await tempDir();
    const archive = join(root, 'v.tar');
    await craftTar(archive, [
      { header: { name: 'label' }, data: '' },
      { header: { name: 'kept.txt' }, data: 'kept' },
    ]);
    // Turn the first entry into a GNU volume label ('V'), fixing its header checksum.
    const buf = await readFile(archive);
    buf[156] = 'V'.charCodeAt(0);
    buf.fill(' ', 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += buf[i]!;
    buf.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    await writeFile(archive, buf);
    const warnings: string[] = [];
    const dest = join(root, 'dest');
    await Archiver.extract(archive, dest, { onWarning: (w) => warnings.push(`${w.code} ${w.path}`) });
    expect(warnings).toEqual(['EUNSAFE_PATH label']);
    expect(await ls(dest)).toEqual(['kept.txt']);
    await rejectsWith(Archiver.extract(archive, join(root, 'd2'), { strict: true }), 'EUNSAFE_PATH');
  });

  it('a damaged archive is ECORRUPT_ARCHIVE, and no .part file is left behind', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'big.log'), logText(4 << 20));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'), { sidecar: false });
    const { truncate } = await import('node:fs/promises');
    await truncate(path, (await stat(path)).size - 5000);
    const dest = join(root, 'dest');
    await rejectsWith(Archiver.extract(path, dest), 'ECORRUPT_ARCHIVE');
    expect(await allPaths(dest)).toEqual([]);
  });

  it('an entry it cannot extract (a GNU sparse file) is listed in the result as skipped, not only warned about', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.txt'), 'kept');
    run('truncate', ['-s', '10M', join(src, 'holes.img')]);
    const archive = join(root, 'sparse.tar');
    run('tar', ['--format=gnu', '-cSf', archive, '-C', src, 'a.txt', 'holes.img']);
    const r = await Archiver.extract(archive, join(root, 'dest'));
    expect(r.entries).toBe(1);
    expect(r.skipped).toEqual([{ name: 'holes.img', type: 'unknown' }]);
    expect(await ls(join(root, 'dest'))).toEqual(['a.txt']);
    await rejectsWith(Archiver.extract(archive, join(root, 'dest2'), { strict: true }), 'EUNSAFE_PATH');
    expect((await Archiver.extract(archive, join(root, 'dest3'), { filter: (e) => e.name === 'a.txt' })).skipped).toEqual([]);
  });

  it('reports progress and takes no unknown options', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await makeTree(src);
    const { path } = await Archiver.create(src, join(root, 'p.tar.gz'));
    const seen: Progress[] = [];
    await Archiver.extract(path, join(root, 'dest'), { onProgress: (p) => seen.push(p) });
    expect(seen.at(-1)).toMatchObject({ phase: 'extract', bytesDone: (await stat(path)).size });
    await rejectsWith(Archiver.extract(path, join(root, 'd2'), { preservePaths: true } as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.extract(path, join(root, 'd2'), { maxBytes: -1 }), 'EBAD_CONFIG');
  });

  it('aborted before start writes nothing; aborted midway leaves no .part file', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    for (let i = 0; i < 3; i++) await writeFile(join(src, `f${i}.bin`), randomBytes(4 << 20));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'));
    const reason = new Error('stop');
    const ac = new AbortController();
    ac.abort(reason);
    await expect(Archiver.extract(path, join(root, 'd1'), { signal: ac.signal })).rejects.toBe(reason);
    expect(await ls(root)).not.toContain('d1');
    const ac2 = new AbortController();
    const dest = join(root, 'd2');
    await expect(
      Archiver.extract(path, dest, {
        signal: ac2.signal,
        onProgress: (p) => {
          if (p.bytesDone > 0 && p.bytesDone < p.bytesTotal!) ac2.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    const left = await allPaths(dest);
    expect(left.filter((n) => n.endsWith('.part'))).toEqual([]);
    expect(left.length).toBeLessThan(3);
  });
});
