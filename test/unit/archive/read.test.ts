import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, readlink, realpath, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { StowageError } from '../../../src/errors.js';
import { logText, makeTree, rejectsWith, run, tempDir } from './helpers.js';

async function setup(): Promise<{ root: string; src: string; ours: string; gnu: string; big: Buffer }> {
  const root = await tempDir();
  const src = join(root, 'src');
  await mkdir(join(src, 'db'), { recursive: true });
  await makeTree(src);
  const big = Buffer.concat([logText(2 << 20), randomBytes(1 << 20)]);
  await writeFile(join(src, 'db', 'trac.db'), big);
  const ours = (await Archiver.create(src, join(root, 'ours.tar.gz'), { chunkSize: 256 * 1024 })).path;
  const gnu = join(root, 'gnu.tar.gz');
  run('tar', ['czf', gnu, '-C', src, '.']);
  return { root, src, ours, gnu, big };
}

describe('Archiver.list', () => {
  it('lists names, types, sizes, modes and link targets', async () => {
    const { ours } = await setup();
    const entries = await Archiver.list(ours);
    const by = new Map(entries.map((e) => [e.name, e]));
    expect(by.get('db')).toMatchObject({ type: 'directory', size: 0 });
    expect(by.get('db/trac.db')).toMatchObject({ type: 'file', size: 3 << 20, linkname: undefined });
    expect(by.get('sub/c.txt')).toMatchObject({ type: 'file', size: 13 });
    expect(by.get('link-to-c')).toMatchObject({ type: 'symlink', linkname: 'sub/c.txt' });
    expect(by.get('ünïcødé/名前.txt')?.type).toBe('file');
    expect([...by.keys()].some((n) => n.endsWith('long-name-file.txt') && n.length > 100)).toBe(true);
    expect(by.get('db/trac.db')!.mode & 0o777).toBe(0o644);
  });

  it('normalises the "./" prefix of archives made by tar czf -C dir .', async () => {
    const { gnu, ours } = await setup();
    const names = (await Archiver.list(gnu)).map((e) => e.name);
    expect(names).toContain('db/trac.db');
    expect(names).toContain(''); // "./" itself
    expect(names.filter((n) => n !== '').sort()).toEqual((await Archiver.list(ours)).map((e) => e.name).sort());
  });

  it('a damaged archive is ECORRUPT_ARCHIVE here too', async () => {
    const root = await tempDir();
    const bad = join(root, 'bad.tar.gz');
    await writeFile(bad, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), randomBytes(1000)]));
    await rejectsWith(Archiver.list(bad), 'ECORRUPT_ARCHIVE');
    await rejectsWith(Archiver.list(bad, { singal: undefined } as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.openEntry(bad, 'x', { filter: () => true } as never), 'EBAD_CONFIG');
  });
});

describe('Archiver.readEntry', () => {
  it('pulls one file out of ours and out of a tar czf archive, with or without "./"', async () => {
    const { ours, gnu, big } = await setup();
    expect((await Archiver.readEntry(ours, 'db/trac.db')).equals(big)).toBe(true);
    expect((await Archiver.readEntry(gnu, 'db/trac.db')).equals(big)).toBe(true);
    expect((await Archiver.readEntry(gnu, './sub/c.txt')).toString()).toBe('hello from c\n');
    expect((await Archiver.readEntry(ours, 'empty.txt')).length).toBe(0);
  });

  it('a missing entry is ENOT_FOUND naming the entry and the archive; a directory is not a file', async () => {
    const { ours } = await setup();
    const e = await rejectsWith(Archiver.readEntry(ours, 'db/nope.db'), 'ENOT_FOUND');
    expect(e.message).toContain('db/nope.db');
    expect(e.message).toContain(ours);
    expect(e.details).toMatchObject({ entry: 'db/nope.db', path: ours });
    const d = await rejectsWith(Archiver.readEntry(ours, 'db'), 'ENOT_FOUND');
    expect(d.message).toContain('directory');
  });

  it('aborted before start rejects with the reason; unknown options are EBAD_CONFIG', async () => {
    const { ours } = await setup();
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(Archiver.readEntry(ours, 'db/trac.db', { signal: ac.signal })).rejects.toBe(reason);
    await rejectsWith(Archiver.readEntry(ours, 'db/trac.db', { maxBytes: 1 } as never), 'EBAD_CONFIG');
  });
});

describe('Archiver.openEntry', () => {
  it('streams one entry; missing is ENOT_FOUND before any stream exists', async () => {
    const { ours, big } = await setup();
    const s = await Archiver.openEntry(ours, 'db/trac.db');
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    await rejectsWith(Archiver.openEntry(ours, 'nothing/here'), 'ENOT_FOUND');
  });

  it('can be destroyed early without hanging or leaking an error', async () => {
    const { ours } = await setup();
    const s = await Archiver.openEntry(ours, 'db/trac.db');
    const first = await new Promise<Buffer>((res) => s.once('data', res));
    expect(first.length).toBeGreaterThan(0);
    s.destroy();
    await new Promise((res) => s.once('close', res));
    expect(s.destroyed).toBe(true);
  });

  it('aborted midway: the stream errors with the reason', async () => {
    const { ours } = await setup();
    const ac = new AbortController();
    const reason = new Error('stop reading');
    const s = await Archiver.openEntry(ours, 'db/trac.db', { signal: ac.signal });
    const got = new Promise<unknown>((res) => {
      s.on('error', res);
      s.on('end', () => res('ended'));
    });
    s.once('data', () => ac.abort(reason));
    s.resume();
    expect(await got).toBe(reason);
  });
});

/** Reads a stream to its end; resolves with what it gave, or rejects with its error. */
async function drain(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('readEntry, openEntry and extract check the whole archive and its sidecar', () => {
  /**
   * A `tar cf` archive of a random file followed by 8 MiB of text, gzipped
   * as one member of stored blocks, with one byte flipped near the end of
   * the random file. Only the member's CRC, 8 MiB of output later, shows it.
   */
  async function flipped(): Promise<{ bad: string; data: Buffer }> {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'a'), { recursive: true });
    await mkdir(join(src, 'b'));
    const data = randomBytes(1 << 20);
    await writeFile(join(src, 'a', 'trac.db'), data);
    await writeFile(join(src, 'b', 'zz.log'), logText(8 << 20));
    const bad = join(root, 'flipped.tar.gz');
    run('tar', ['cf', join(root, 'plain.tar'), '-C', src, 'a', 'b']);
    // One gzip member of stored blocks (level 0), as gzip or pigz write for data that does not compress.
    const bytes = gzipSync(await readFile(join(root, 'plain.tar')), { level: 0 });
    // Somewhere in the last 4 KiB of the file, where a stored block holds it verbatim.
    let at = -1;
    for (let off = data.length - 64; at < 0 && off > data.length - 4096; off -= 64) at = bytes.indexOf(data.subarray(off, off + 32));
    expect(at).toBeGreaterThan(0);
    bytes[at + 5]! ^= 1;
    await writeFile(bad, bytes);
    return { bad, data };
  }

  it('a flipped byte in the entry itself, caught only by the CRC after it, is ECORRUPT_ARCHIVE, never bytes returned', async () => {
    const { bad } = await flipped();
    await rejectsWith(Archiver.readEntry(bad, 'a/trac.db'), 'ECORRUPT_ARCHIVE');
    // The stream gives the bytes, then errors instead of ending.
    const s = await Archiver.openEntry(bad, 'a/trac.db');
    const err = await drain(s).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('ECORRUPT_ARCHIVE');
    await rejectsWith(Archiver.verify(bad), 'ECORRUPT_ARCHIVE');
  });

  it('an archive that is sound but not the one its sidecar describes is EDIGEST_MISMATCH; extract writes nothing and says so', async () => {
    const { root, ours, gnu, big } = await setup();
    // gnu.tar.gz holds the same files; give it ours' sidecar, as a swapped or re-made file would have.
    const other = join(root, 'other.tar.gz');
    await copyFile(gnu, other);
    await copyFile(ours + '.dna', other + '.dna');
    await rejectsWith(Archiver.readEntry(other, 'db/trac.db'), 'EDIGEST_MISMATCH');
    const s = await Archiver.openEntry(other, 'db/trac.db');
    const err = await drain(s).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as StowageError).code).toBe('EDIGEST_MISMATCH');
    const dest = join(root, 'out');
    const x = await rejectsWith(Archiver.extract(other, dest), 'EDIGEST_MISMATCH');
    expect(x.details).toMatchObject({ path: other, dest: await realpath(dest) });
    expect(x.message).toContain('nothing was extracted into');
    expect(await readdir(dest)).toEqual([]);
    // The right archive with its sidecar: checked and fine, in the same one pass.
    expect((await Archiver.readEntry(ours, 'db/trac.db')).equals(big)).toBe(true);
    expect((await drain(await Archiver.openEntry(ours, 'db/trac.db'))).equals(big)).toBe(true);
    expect(await Archiver.extract(ours, join(root, 'good'))).toMatchObject({ sidecarChecked: true });
    expect(await Archiver.extract(gnu, join(root, 'good2'))).toMatchObject({ sidecarChecked: false });
    // A sidecar that cannot be parsed is an error, as verify says, which says how to do without it.
    await writeFile(other + '.dna', 'not a sidecar');
    const bad = await rejectsWith(Archiver.readEntry(other, 'db/trac.db'), 'EBAD_SIDECAR');
    expect(bad.message).toContain('checkSidecar: false');
    await rejectsWith(Archiver.extract(other, join(root, 'out3')), 'EBAD_SIDECAR');
    expect((await Archiver.readEntry(other, 'db/trac.db', { checkSidecar: false })).equals(big)).toBe(true);
    expect((await drain(await Archiver.openEntry(other, 'db/trac.db', { checkSidecar: false }))).equals(big)).toBe(true);
    expect(await Archiver.extract(other, join(root, 'out4'), { checkSidecar: false })).toMatchObject({ sidecarChecked: false });
    await rejectsWith(Archiver.readEntry(other, 'db/trac.db', { checkSidecar: 'no' } as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.list(other, { checkSidecar: false } as never), 'EBAD_CONFIG');
  });

  it('an entry appended again (tar rf): readEntry and extract take the last copy, as tar -x does; openEntry errors (EEXIST) after the first', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const file = join(root, 'dup.tar');
    await writeFile(join(src, 'x'), 'first');
    run('tar', ['cf', file, '-C', src, 'x']);
    await writeFile(join(src, 'x'), 'second, appended');
    run('tar', ['rf', file, '-C', src, 'x']);
    expect((await Archiver.readEntry(file, 'x')).toString()).toBe('second, appended');
    await Archiver.extract(file, join(root, 'out'));
    expect(await readFile(join(root, 'out', 'x'), 'utf8')).toBe('second, appended');
    const s = await Archiver.openEntry(file, 'x');
    const got: Buffer[] = [];
    const err = await (async () => {
      for await (const c of s) got.push(c as Buffer);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Buffer.concat(got).toString()).toBe('first');
    expect((err as StowageError).code).toBe('EEXIST');
  });

  it('openEntry: a stream closed after its last byte, before its end, stops the rest of the read', async () => {
    // A small entry, then 1 GiB of zeros (1 MiB once gzipped): reading all of it would take seconds.
    const root = await tempDir();
    const file = join(root, 'two.tar.gz');
    const p = pack();
    const written = pipeline(p, createGzip({ level: 1 }), createWriteStream(file));
    p.entry({ name: 'a', mtime: new Date(0) }, 'small first entry');
    const zeros = Buffer.alloc(1 << 20);
    const b = p.entry({ name: 'b', size: 1 << 30, mtime: new Date(0) }) as unknown as Writable;
    for (let i = 0; i < 1024; i++) if (!b.write(zeros)) await once(b, 'drain');
    b.end();
    p.finalize();
    await written;
    const open = async (): Promise<boolean> => {
      for (const fd of await readdir('/proc/self/fd')) if ((await readlink(join('/proc/self/fd', fd)).catch(() => '')) === file) return true;
      return false;
    };
    const s = await Archiver.openEntry(file, 'a');
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    // Past the entry's last byte: the read has moved on into b.
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(got).toString()).toBe('small first entry');
    expect(await open()).toBe(true);
    const t0 = performance.now();
    s.destroy();
    while ((await open()) && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    expect(performance.now() - t0).toBeLessThan(400);
  });
});
