import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { archiveReadTuning, readArchive } from '../../../src/archive/archive-reader.js';
import type { Progress } from '../../../src/progress.js';
import { logText, makeTree, rejectsWith, run, tempDir } from './helpers.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** A source tree and archives of it: ours (.tar.gz, .tar) and GNU tar's. */
async function setup(opts: { chunkSize?: number } = {}): Promise<{ root: string; src: string; gz: string; tar: string; gnu: string }> {
  const root = await tempDir();
  const src = join(root, 'src');
  await mkdir(src);
  await makeTree(src);
  await writeFile(join(src, 'big.log'), logText(1 << 20));
  await writeFile(join(src, 'big.bin'), randomBytes(1 << 20));
  const gz = (await Archiver.create(src, join(root, 'ours.tar.gz'), { chunkSize: opts.chunkSize ?? 256 * 1024 })).path;
  const tar = (await Archiver.create(src, join(root, 'ours.tar'))).path;
  const gnu = join(root, 'gnu.tar.gz');
  run('tar', ['czf', gnu, '-C', src, '.']);
  return { root, src, gz, tar, gnu };
}

async function flipByte(path: string, offset: number): Promise<void> {
  const b = await readFile(path);
  b[offset] = b[offset]! ^ 0x40;
  await writeFile(path, b);
}

const defaults = { ...archiveReadTuning };

// Every case on both paths of a gzipped archive: read whole and inflated in one call (up to 4 MiB, the default), and streamed.
describe.each([
  ['read whole', defaults.wholeMaxBytes],
  ['streamed', 0],
])('Archiver.verify (gzip %s)', (_, wholeMaxBytes) => {
  beforeAll(() => {
    archiveReadTuning.wholeMaxBytes = wholeMaxBytes;
  });
  afterAll(() => Object.assign(archiveReadTuning, defaults));

  it('an archive that inflates to more than the whole read allows is streamed instead: same result, damage still found', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'zeros'), Buffer.alloc(3 << 20));
    await writeFile(join(src, 'text.log'), logText(1 << 20));
    const { path, dna } = await Archiver.create(src, join(root, 'z.tar.gz'));
    archiveReadTuning.wholeMaxOut = 1 << 20;
    try {
      expect((await stat(path)).size).toBeLessThan(1 << 20);
      const r = await Archiver.verify(path);
      expect(r).toMatchObject({ ok: true, entries: 2, sidecarChecked: true });
      expect(r.dna).toEqual(dna);
      expect((await Archiver.readEntry(path, 'zeros')).equals(Buffer.alloc(3 << 20))).toBe(true);
      await rm(path + '.dna');
      await flipByte(path, Math.floor((await stat(path)).size * 0.6));
      await rejectsWith(Archiver.verify(path), 'ECORRUPT_ARCHIVE');
    } finally {
      archiveReadTuning.wholeMaxOut = defaults.wholeMaxOut;
    }
  });

  it('a damaged archive visits the entries before the damage, then fails (ECORRUPT_ARCHIVE), as a stream meets it', async () => {
    const { gz } = await setup({ chunkSize: 64 * 1024 });
    const whole = await readFile(gz);
    const names: string[] = [];
    await readArchive(gz, { phase: 'read' }, async (e) => void names.push(e.name));
    await truncate(gz, whole.length - 1000);
    const seen: string[] = [];
    await rejectsWith(
      readArchive(gz, { phase: 'read' }, async (e) => void seen.push(e.name)),
      'ECORRUPT_ARCHIVE',
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.length).toBeLessThanOrEqual(names.length);
    expect(seen).toEqual(names.slice(0, seen.length));
    // A reader that stops at the first entry does not reach the damage.
    const first: string[] = [];
    await readArchive(gz, { phase: 'read' }, async (e) => {
      first.push(e.name);
      return true;
    });
    expect(first).toEqual(names.slice(0, 1));
  });

  it('aborted while a small archive is read: rejects with the reason, on either path', async () => {
    const { gz } = await setup();
    expect((await stat(gz)).size).toBeLessThan(defaults.wholeMaxBytes);
    const ac = new AbortController();
    const reason = new Error('stop');
    await expect(
      Archiver.verify(gz, {
        signal: ac.signal,
        onProgress: (p) => {
          if (p.bytesDone > 0) ac.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    // Aborted while its entries are visited (after the whole file was read and inflated).
    const ac2 = new AbortController();
    let visited = 0;
    await expect(
      readArchive(gz, { phase: 'read', signal: ac2.signal }, async () => {
        if (++visited === 3) ac2.abort(reason);
      }),
    ).rejects.toBe(reason);
    expect(visited).toBeLessThan(16);
  });

  it('passes sound archives (ours gzip and plain, GNU tar czf), re-checking the sidecar when present', async () => {
    const { gz, tar, gnu } = await setup();
    for (const f of [gz, tar]) {
      const r = await Archiver.verify(f);
      const bytes = await readFile(f);
      expect(r).toMatchObject({ ok: true, path: f, bytes: bytes.length, sidecarChecked: true });
      expect(r.dna.dig).toBe(md5(bytes));
      expect(r.entries).toBe(16);
    }
    const g = await Archiver.verify(gnu);
    expect(g.sidecarChecked).toBe(false);
    expect(g.dna.dig).toBe(md5(await readFile(gnu)));
    expect(g.entries).toBe(17); // GNU tar also stores "./"
  });

  it('a flipped byte in gzip data is ECORRUPT_ARCHIVE (CRC or deflate error), not a pass', async () => {
    const { gz } = await setup();
    await rm(gz + '.dna');
    const size = (await stat(gz)).size;
    for (const at of [Math.floor(size * 0.2), Math.floor(size * 0.5), size - 20]) {
      const copy = gz.replace('.tar.gz', `-${at}.tar.gz`);
      await writeFile(copy, await readFile(gz));
      await flipByte(copy, at);
      const e = await rejectsWith(Archiver.verify(copy), 'ECORRUPT_ARCHIVE');
      expect(e.message).toContain(copy);
    }
  });

  it('a flipped byte in a tar header of a plain .tar is ECORRUPT_ARCHIVE', async () => {
    const { tar } = await setup();
    await rm(tar + '.dna');
    // The third header: after the first entries' data. Find a header by its "ustar" magic.
    const b = await readFile(tar);
    const magic = b.indexOf('ustar', 1024);
    const header = magic - 257;
    expect(header % 512).toBe(0);
    await flipByte(tar, header + 5); // inside the name
    await rejectsWith(Archiver.verify(tar), 'ECORRUPT_ARCHIVE');
  });

  it('a truncated .tar.gz is ECORRUPT_ARCHIVE, also when cut exactly between two gzip members', async () => {
    const { gz } = await setup({ chunkSize: 64 * 1024 });
    await rm(gz + '.dna');
    const whole = await readFile(gz);
    await truncate(gz, whole.length - 1000);
    await rejectsWith(Archiver.verify(gz), 'ECORRUPT_ARCHIVE');
    // Cut at a member boundary: the gzip stream is then valid, the tar is not.
    const second = whole.indexOf(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0]), Math.floor(whole.length / 2));
    expect(second).toBeGreaterThan(0);
    await writeFile(gz, whole.subarray(0, second));
    run('gzip', ['-t', gz]);
    await rejectsWith(Archiver.verify(gz), 'ECORRUPT_ARCHIVE');
  });

  it('accepts whole archives of GNU tar in its formats (PAX, GNU, old GNU), with long names, hard links and symlinks', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'n'.repeat(150)), Buffer.alloc(5000));
    await writeFile(join(src, 'd', 'plain'), 'p');
    await link(join(src, 'd', 'plain'), join(src, 'd', 'hard'));
    await symlink('plain', join(src, 'd', 'soft'));
    for (const format of ['posix', 'gnu', 'oldgnu']) {
      const tar = join(root, `${format}.tar`);
      run('tar', ['--format', format, '-C', src, '-cf', tar, 'd']);
      expect((await Archiver.verify(tar)).entries, format).toBe(5);
    }
  });

  it('a .tar or .tar.gz cut between two entries is ECORRUPT_ARCHIVE even when the entry it keeps ends in zeros', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    // A disk image: a few bytes, then zeros to the end; then another file, and a long name (a PAX header) after it.
    const img = Buffer.alloc(8192);
    img.write('boot', 0);
    await writeFile(join(src, 'a.img'), img);
    await writeFile(join(src, 'b.txt'), 'b');
    await writeFile(join(src, 'c'.repeat(150)), 'c');
    const { path } = await Archiver.create(src, join(root, 'x.tar'), { sidecar: false, entries: ['a.img', 'b.txt', 'c'.repeat(150)] });
    expect((await Archiver.verify(path)).entries).toBe(3);
    await truncate(path, 512 + 8192); // a.img whole, its last 1024 bytes all zero; b.txt and the rest gone
    await rejectsWith(Archiver.verify(path), 'ECORRUPT_ARCHIVE');
    await rejectsWith(Archiver.list(path), 'ECORRUPT_ARCHIVE');
    // The same cut inside a gzip stream.
    const whole = await readFile(join(root, 'x.tar'));
    const gz = join(root, 'x.tar.gz');
    await writeFile(gz, gzipSync(whole.subarray(0, 512 + 8192)));
    await rejectsWith(Archiver.verify(gz), 'ECORRUPT_ARCHIVE');
    // Untouched archives with long names still verify.
    const again = await Archiver.create(src, join(root, 'y.tar.gz'), { entries: ['a.img', 'b.txt', 'c'.repeat(150)] });
    expect((await Archiver.verify(again.path)).entries).toBe(3);
  });

  it('a plain .tar cut exactly between two entries (no end-of-archive marker) is ECORRUPT_ARCHIVE', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), Buffer.alloc(512, 1));
    await writeFile(join(src, 'b'), Buffer.alloc(512, 2));
    const { path } = await Archiver.create(src, join(root, 'x.tar'), { sidecar: false });
    await truncate(path, 1024); // header + data of "a" only
    await rejectsWith(Archiver.verify(path), 'ECORRUPT_ARCHIVE');
    await writeFile(path, '');
    await rejectsWith(Archiver.verify(path), 'ECORRUPT_ARCHIVE');
    await writeFile(path, randomBytes(4096));
    await rejectsWith(Archiver.verify(path), 'ECORRUPT_ARCHIVE');
  });

  it('EDIGEST_MISMATCH when the archive reads fine but its sidecar says otherwise', async () => {
    const { tar, gz } = await setup();
    // A flipped byte in file data of a plain tar passes every tar check: only the DNA catches it.
    const b = await readFile(tar);
    const at = b.indexOf(Buffer.from('hello from c'));
    expect(at).toBeGreaterThan(0);
    await flipByte(tar, at);
    const e = await rejectsWith(Archiver.verify(tar), 'EDIGEST_MISMATCH');
    expect(e.message).toContain(tar);
    // A sidecar that describes other bytes.
    await writeFile(gz + '.dna', JSON.stringify({ dig: 'f'.repeat(32), size: (await stat(gz)).size }));
    await rejectsWith(Archiver.verify(gz), 'EDIGEST_MISMATCH');
  });

  it('requireSidecar without one is ENO_SIDECAR; a missing archive is ENOT_FOUND; unknown options EBAD_CONFIG', async () => {
    const { gnu, root } = await setup();
    await rejectsWith(Archiver.verify(gnu, { requireSidecar: true }), 'ENO_SIDECAR');
    await rejectsWith(Archiver.verify(join(root, 'nope.tar.gz')), 'ENOT_FOUND');
    await rejectsWith(Archiver.verify(gnu, { requireSidecars: true } as never), 'EBAD_CONFIG');
  });

  it('reports progress over the archive bytes', async () => {
    const { gz } = await setup();
    const seen: Progress[] = [];
    await Archiver.verify(gz, { onProgress: (p) => seen.push(p) });
    const last = seen.at(-1)!;
    expect(last.phase).toBe('verify');
    expect(last.bytesDone).toBe((await stat(gz)).size);
    expect(last.bytesTotal).toBe(last.bytesDone);
  });

  it('aborted before start and midway: rejects with the reason', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'big.bin'), randomBytes(8 << 20));
    const { path } = await Archiver.create(src, join(root, 'x.tar.gz'));
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(Archiver.verify(path, { signal: ac.signal })).rejects.toBe(reason);
    const ac2 = new AbortController();
    let calls = 0;
    await expect(
      Archiver.verify(path, {
        signal: ac2.signal,
        onProgress: (p) => {
          calls++;
          if (p.bytesDone > 0 && p.bytesDone < (8 << 20)) ac2.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(calls).toBeGreaterThan(0);
  });
});
