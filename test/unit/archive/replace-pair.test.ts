/**
 * Regression: replacing an archive and its sidecar was not safe at every
 * step. The old sidecar was removed before the new archive took its name,
 * so a failed rename there left the old archive without its sidecar; and a
 * sidecar that failed to take its name after the new archive had replaced
 * the old one made `rm(out)` delete the new archive too, leaving neither.
 * Now a failure at any step leaves the old pair (or the new one) intact.
 * The failures are injected into `rename` of node:fs/promises.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { ls, rejectsWith, tempDir } from './helpers.js';

const inject = vi.hoisted(() => ({ renameTo: undefined as string | undefined }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const rename: typeof fs.rename = async (from, to) => {
    if (inject.renameTo !== undefined && String(to) === inject.renameTo) {
      inject.renameTo = undefined;
      throw Object.assign(new Error(`EIO: i/o error (injected), rename '${String(from)}' -> '${String(to)}'`), { code: 'EIO', syscall: 'rename' });
    }
    return fs.rename(from, to);
  };
  return { ...fs, rename, default: { ...fs, rename } };
});

/** An archive `name` and its sidecar of "version 1" in `out/`, and the source changed to "version 2". */
async function oldPair(name = 'a.tar.gz'): Promise<{ src: string; outDir: string; out: string; oldSidecar: string; intact: () => Promise<void> }> {
  const root = await tempDir();
  const src = join(root, 'src');
  const outDir = join(root, 'out');
  await mkdir(src);
  await mkdir(outDir);
  await writeFile(join(src, 'f.txt'), 'version 1');
  const out = join(outDir, name);
  await Archiver.create(src, out);
  const oldArchive = await readFile(out);
  const oldSidecar = await readFile(out + '.dna', 'utf8');
  await writeFile(join(src, 'f.txt'), 'version 2, longer');
  const intact = async (): Promise<void> => {
    expect(await ls(outDir)).toEqual([name, name + '.dna']);
    expect((await readFile(out)).equals(oldArchive)).toBe(true);
    expect(await readFile(out + '.dna', 'utf8')).toBe(oldSidecar);
    expect((await Archiver.readEntry(out, 'f.txt')).toString()).toBe('version 1');
  };
  return { src, outDir, out, oldSidecar, intact };
}

describe('Archiver.create replacing an archive and its sidecar', () => {
  it('the new archive cannot take its name: the old archive keeps its sidecar', async () => {
    const { src, out, intact } = await oldPair();
    inject.renameTo = out;
    await rejectsWith(Archiver.create(src, out), 'EIO');
    expect(inject.renameTo).toBeUndefined();
    await intact();
  });

  it('the new archive took its name but its sidecar cannot: the old pair is put back; then a clean run gives the new pair', async () => {
    const { src, outDir, out, intact } = await oldPair();
    inject.renameTo = out + '.dna';
    await rejectsWith(Archiver.create(src, out), 'EIO');
    expect(inject.renameTo).toBeUndefined();
    await intact();
    await Archiver.create(src, out);
    expect(await ls(outDir)).toEqual(['a.tar.gz', 'a.tar.gz.dna']);
    expect((await Archiver.verify(out)).sidecarChecked).toBe(true);
    expect((await Archiver.readEntry(out, 'f.txt')).toString()).toBe('version 2, longer');
  });

  it('with sidecar: false, a failed rename keeps the old pair; success removes the old sidecar', async () => {
    const { src, outDir, out, oldSidecar } = await oldPair('a.tar');
    inject.renameTo = out;
    await rejectsWith(Archiver.create(src, out, { sidecar: false }), 'EIO');
    expect(await ls(outDir)).toEqual(['a.tar', 'a.tar.dna']);
    expect(await readFile(out + '.dna', 'utf8')).toBe(oldSidecar);
    expect((await Archiver.verify(out)).sidecarChecked).toBe(true);
    await Archiver.create(src, out, { sidecar: false });
    expect(await ls(outDir)).toEqual(['a.tar']);
    expect((await Archiver.readEntry(out, 'f.txt')).toString()).toBe('version 2, longer');
  });
});
