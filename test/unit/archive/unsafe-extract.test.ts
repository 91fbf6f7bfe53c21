/**
 * Extraction of hostile archives: each case is named after the attack it
 * prevents (node-tar's GHSA/CVE family). Every case asserts the refusal
 * (EUNSAFE_PATH) AND that nothing was written outside the destination.
 */
import { lstat, mkdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { craftTar, ls, rejectsWith, tempDir, type CraftEntry } from './helpers.js';

/** A root with `dest/` (where we extract) and `outside/` (which must stay untouched), and the crafted archive. */
async function attack(entries: CraftEntry[] | ((root: string) => CraftEntry[]), name = 'evil.tar'): Promise<{ root: string; dest: string; outside: string; archive: string }> {
  const root = await tempDir('unsafe');
  const dest = join(root, 'dest');
  const outside = join(root, 'outside');
  await mkdir(dest);
  await mkdir(outside);
  await writeFile(join(outside, 'victim.txt'), 'original');
  const archive = join(root, name);
  await craftTar(archive, typeof entries === 'function' ? entries(root) : entries);
  return { root, dest, outside, archive };
}

async function outsideUntouched(root: string, outside: string): Promise<void> {
  expect(await ls(outside)).toEqual(['victim.txt']);
  expect(await readFile(join(outside, 'victim.txt'), 'utf8')).toBe('original');
  expect((await ls(root)).filter((n) => !n.startsWith('evil'))).toEqual(['dest', 'outside']);
}

describe('unsafe extract', () => {
  it('absolute path', async () => {
    const { root, dest, outside, archive } = await attack((r) => [{ header: { name: join(r, 'outside', 'victim.txt') }, data: 'pwned' }]);
    const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(e.message).toContain('absolute path');
    await outsideUntouched(root, outside);
    expect(await ls(dest)).toEqual([]);
  });

  it('dotdot', async () => {
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'fine.txt' }, data: 'ok' },
      { header: { name: 'sub/../../outside/victim.txt' }, data: 'pwned' },
    ]);
    const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(e.message).toContain('..');
    await outsideUntouched(root, outside);
    // All or nothing: the entry before the refused one is not kept either.
    expect(await ls(dest)).toEqual([]);
  });

  it('dotdot in a gzip archive, also as a directory entry', async () => {
    const { root, dest, outside, archive } = await attack([{ header: { name: '../outside/newdir', type: 'directory' } }], 'evil.tar.gz');
    await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    await outsideUntouched(root, outside);
  });

  it('symlink escape', async () => {
    for (const linkname of ['../outside', '/etc', 'a/../../outside/victim.txt']) {
      const { root, dest, outside, archive } = await attack([{ header: { name: 'esc', type: 'symlink', linkname } }]);
      const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
      expect(e.message).toContain(linkname);
      await outsideUntouched(root, outside);
      expect(await ls(dest)).toEqual([]);
    }
  });

  it('symlink escape through an earlier symlink: each target stays inside on paper, followed they lead out', async () => {
    // a/b/s -> ../.. is the destination itself; t -> a/b/s/.. is then its parent.
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'a/b', type: 'directory' } },
      { header: { name: 'a/b/s', type: 'symlink', linkname: '../..' } },
      { header: { name: 't', type: 'symlink', linkname: 'a/b/s/../outside' } },
    ]);
    const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(e.message).toContain('a/b/s/../outside');
    expect(e.details).toMatchObject({ entry: 't' });
    await outsideUntouched(root, outside);
    expect(await ls(dest)).toEqual([]);
  });

  it('symlink escape spelled with ./ or // in the link\'s name: counted as the level it is, refused', async () => {
    for (const name of ['a/./s', 'a//s', './a/././s']) {
      // a/y -> .. is the destination; a/s -> y/.. (a/./s on paper two levels deep) is its parent.
      const { root, dest, outside, archive } = await attack([
        { header: { name: 'a', type: 'directory' } },
        { header: { name: 'a/y', type: 'symlink', linkname: '..' } },
        { header: { name, type: 'symlink', linkname: 'y/../outside' } },
      ]);
      const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
      expect(e.details, name).toMatchObject({ entry: 'a/s' });
      await outsideUntouched(root, outside);
      expect(await ls(dest), name).toEqual([]);
    }
    // The chain that reached /etc, one ./ more at each step.
    const { dest, archive } = await attack([
      { header: { name: 'a', type: 'directory' } },
      { header: { name: 'a/y', type: 'symlink', linkname: '..' } },
      { header: { name: 'a/./z1', type: 'symlink', linkname: 'y/..' } },
      { header: { name: 'a/././z2', type: 'symlink', linkname: 'z1/..' } },
      { header: { name: 'a/./././z3', type: 'symlink', linkname: 'z2/..' } },
      { header: { name: 'a/././././e', type: 'symlink', linkname: 'z3/etc' } },
    ]);
    await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(await ls(dest)).toEqual([]);
    // A name spelled so is found by its plain spelling too.
    const plain = await attack([{ header: { name: 'd/./f.txt' }, data: 'x' }]);
    expect((await Archiver.list(plain.archive)).map((x) => x.name)).toEqual(['d/f.txt']);
    expect((await Archiver.readEntry(plain.archive, 'd/f.txt')).toString()).toBe('x');
  });

  it('symlink escape through a symlink extracted after it: the links are checked again once all are known, and nothing is extracted', async () => {
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'a/b', type: 'directory' } },
      // While it is made, a/b/s does not exist yet: on paper t -> a/b/s/../outside is a/b/outside.
      { header: { name: 't', type: 'symlink', linkname: 'a/b/s/../outside' } },
      { header: { name: 'a/b/s', type: 'symlink', linkname: '../..' } },
      { header: { name: 'fine.txt' }, data: 'ok' },
    ]);
    const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(e.details).toMatchObject({ entry: 't', links: [{ name: 't', linkname: 'a/b/s/../outside' }] });
    await outsideUntouched(root, outside);
    expect(await ls(dest)).toEqual([]);
    // A link chain that stays inside is fine, in either order.
    const ok = await attack([
      { header: { name: 'u', type: 'symlink', linkname: 'a/b/s/x' } },
      { header: { name: 'a/b', type: 'directory' } },
      { header: { name: 'a/b/s', type: 'symlink', linkname: '..' } },
      { header: { name: 'v', type: 'symlink', linkname: 'a/b/s/../b' } },
    ]);
    await Archiver.extract(ok.archive, ok.dest);
    expect(await readlink(join(ok.dest, 'u'))).toBe('a/b/s/x');
    expect(await readlink(join(ok.dest, 'v'))).toBe('a/b/s/../b');
  });

  it('write through symlink', async () => {
    // The link points inside dest, so it is allowed; writing through it is not.
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'inner', type: 'directory' } },
      { header: { name: 'lnk', type: 'symlink', linkname: 'inner' } },
      { header: { name: 'lnk/file.txt' }, data: 'through the link' },
    ]);
    const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(e.message).toContain('symlink');
    expect(await ls(join(dest, 'inner'))).toEqual([]);
    await outsideUntouched(root, outside);
  });

  it('write through symlink replaced after a directory was used (cache must not trust it)', async () => {
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'd/one.txt' }, data: '1' },
      { header: { name: 'x', type: 'symlink', linkname: 'd' } },
      { header: { name: 'x/two.txt' }, data: '2' },
    ]);
    await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    expect(await ls(dest)).toEqual([]);
    await outsideUntouched(root, outside);
  });

  it('directory over symlink', async () => {
    // A directory entry where an earlier entry planted a symlink must not be "created" through it.
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'inner', type: 'directory' } },
      { header: { name: 'd', type: 'symlink', linkname: 'inner' } },
      { header: { name: 'd', type: 'directory' } },
    ]);
    await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    await outsideUntouched(root, outside);
  });

  it('part-file symlink: a NAME.part symlink (an entry, or already in the destination) is never written through, nor removed', async () => {
    // If the atomic writer opened "victim.part" following the link, it would truncate the outside file.
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'f.part', type: 'symlink', linkname: 'sub/x' } },
      { header: { name: 'f' }, data: 'fine' },
    ]);
    // The link is an entry like any other: extracted, and "f" is written beside it under a name of its own.
    await Archiver.extract(archive, dest);
    expect(await readFile(join(dest, 'f'), 'utf8')).toBe('fine');
    expect(await ls(dest)).toEqual(['f', 'f.part']);
    expect(await readlink(join(dest, 'f.part'))).toBe('sub/x');
    await outsideUntouched(root, outside);
    // Now a pre-existing outside-pointing .part link in dest (e.g. left by another tool).
    const { symlink } = await import('node:fs/promises');
    await symlink(join(outside, 'victim.txt'), join(dest, 'g.part'));
    const a2 = join(root, 'evil2.tar');
    await craftTar(a2, [{ header: { name: 'g' }, data: 'new' }]);
    await Archiver.extract(a2, dest);
    expect(await readFile(join(dest, 'g'), 'utf8')).toBe('new');
    expect(await readlink(join(dest, 'g.part'))).toBe(join(outside, 'victim.txt'));
    await outsideUntouched(root, outside);
  });

  it('an archive holding X.part and X extracts both; a file of the destination named X.part is kept; a name of 255 bytes extracts', async () => {
    const { root, dest, archive } = await attack([
      { header: { name: 'run42.dat.part' }, data: 'partial copy kept by the DAQ' },
      { header: { name: 'run42.dat' }, data: 'whole run' },
    ]);
    await writeFile(join(dest, 'mine.dat.part'), 'the user file');
    await Archiver.extract(archive, dest);
    expect(await readFile(join(dest, 'run42.dat.part'), 'utf8')).toBe('partial copy kept by the DAQ');
    expect(await readFile(join(dest, 'run42.dat'), 'utf8')).toBe('whole run');
    const a2 = join(root, 'mine.tar');
    await craftTar(a2, [{ header: { name: 'mine.dat' }, data: 'from the archive' }]);
    await Archiver.extract(a2, dest);
    expect(await readFile(join(dest, 'mine.dat.part'), 'utf8')).toBe('the user file');
    const long = 'n'.repeat(251) + '.dat';
    const a3 = join(root, 'long.tar');
    await craftTar(a3, [{ header: { name: long }, data: 'long name' }]);
    await Archiver.extract(a3, dest);
    expect(await readFile(join(dest, long), 'utf8')).toBe('long name');
    expect((await ls(dest)).filter((n) => n.startsWith('.stowage-'))).toEqual([]);
  });

  it('hardlink escape', async () => {
    for (const linkname of ['../outside/victim.txt', join('/', 'etc', 'passwd')]) {
      const { root, dest, outside, archive } = await attack([{ header: { name: 'hl', type: 'link', linkname } }]);
      await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
      await outsideUntouched(root, outside);
      expect(await ls(dest)).toEqual([]);
    }
  });

  it('hardlink through a symlink to an outside file', async () => {
    const { root, dest, outside, archive } = await attack([
      { header: { name: 'in', type: 'directory' } },
      { header: { name: 'ln', type: 'symlink', linkname: 'in' } },
      { header: { name: 'hl', type: 'link', linkname: 'ln/../../outside/victim.txt' } },
    ]);
    await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
    await outsideUntouched(root, outside);
  });

  it('device node', async () => {
    for (const type of ['character-device', 'block-device', 'fifo'] as const) {
      const { root, dest, outside, archive } = await attack([{ header: { name: 'null', type, devmajor: 1, devminor: 3 } }]);
      const e = await rejectsWith(Archiver.extract(archive, dest), 'EUNSAFE_PATH');
      expect(e.message).toContain(type);
      expect(await ls(dest)).toEqual([]);
      await outsideUntouched(root, outside);
    }
  });

  it('size bomb', async () => {
    // 64 MiB of zeros gzip to ~64 KiB; the cap is 16 MiB.
    const { root, dest, outside, archive } = await attack(
      [
        { header: { name: 'small.txt' }, data: 'ok' },
        { header: { name: 'bomb.bin' }, data: Buffer.alloc(64 << 20) },
      ],
      'evil.tar.gz',
    );
    const e = await rejectsWith(Archiver.extract(archive, dest, { maxBytes: 16 << 20 }), 'EUNSAFE_PATH');
    expect(e.message).toContain('maxBytes');
    expect(await ls(dest)).toEqual([]);
    await outsideUntouched(root, outside);
    // Raised cap: fine.
    const r = await Archiver.extract(archive, dest, { maxBytes: 128 << 20 });
    expect(r.bytes).toBe((64 << 20) + 2);
  });

  it('allowUnsafePaths lets a trusted archive keep a link pointing out', async () => {
    const { dest, archive } = await attack([{ header: { name: 'up', type: 'symlink', linkname: '../outside' } }]);
    await Archiver.extract(archive, dest, { allowUnsafePaths: true });
    expect(await readlink(join(dest, 'up'))).toBe('../outside');
    expect((await lstat(join(dest, 'up'))).isSymbolicLink()).toBe(true);
  });
});
