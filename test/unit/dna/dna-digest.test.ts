import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DNA_ALGORITHMS, DnaDigest } from '../../../src/dna/index.js';
import type { Progress } from '../../../src/progress.js';
import { coreutils, data, put, rejectsWith, tempDir, throwsWith } from './helpers.js';

const fdCount = (): number => readdirSync('/proc/self/fd').length;

describe('new DnaDigest()', () => {
  it('is md5 by default and counts the size in the same pass', () => {
    const d = new DnaDigest();
    d.update(Buffer.from('hel')).update(new Uint8Array([0x6c, 0x6f]));
    expect(d.size).toBe(5);
    expect(d.digest()).toEqual({ dig: '5d41402abc4b2a76b9719d911017c592', size: 5, algorithm: 'md5' });
  });

  it.each(DNA_ALGORITHMS)('computes %s like node:crypto', (algorithm) => {
    const buf = data(100_000);
    const d = new DnaDigest({ algorithm });
    d.update(buf.subarray(0, 777)).update(buf.subarray(777));
    expect(d.digest()).toEqual({ dig: createHash(algorithm).update(buf).digest('hex'), size: buf.length, algorithm });
  });

  it('returns the same frozen DNA when digest() is called again', () => {
    const d = new DnaDigest();
    const a = d.digest();
    expect(d.digest()).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(a).toEqual({ dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' });
  });

  it('refuses update() after digest() with EIO', () => {
    const d = new DnaDigest();
    d.digest();
    throwsWith(() => d.update(Buffer.from('x')), 'EIO');
  });

  it('refuses a string (UTF-8 bytes would not match the count) with EBAD_CONFIG', () => {
    const d = new DnaDigest();
    throwsWith(() => d.update('héllo' as unknown as Uint8Array), 'EBAD_CONFIG');
    expect(d.size).toBe(0);
  });

  it('rejects an unknown algorithm and a misspelled option with EBAD_CONFIG naming it', () => {
    const e1 = throwsWith(() => new DnaDigest({ algorithm: 'crc32' as 'md5' }), 'EBAD_CONFIG');
    expect(e1.message).toContain('algorithm');
    expect(e1.message).toContain('crc32');
    const e2 = throwsWith(() => new DnaDigest({ algoritm: 'sha1' } as never), 'EBAD_CONFIG');
    expect(e2.message).toContain('"algoritm"');
    expect(e2.message).toContain('Did you mean "algorithm"?');
  });
});

describe('DnaDigest.ofFile', () => {
  it('gives md5sum\'s digest and size 0 for an empty file', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'empty', Buffer.alloc(0));
    const dna = await DnaDigest.ofFile(f);
    expect(dna).toEqual({ dig: coreutils('md5sum', f), size: 0, algorithm: 'md5' });
    expect(dna.dig).toBe('d41d8cd98f00b204e9800998ecf8427e');
  });

  it.each([
    ['md5', 'md5sum'],
    ['sha1', 'sha1sum'],
    ['sha256', 'sha256sum'],
    ['sha512', 'sha512sum'],
  ] as const)('matches %s of a file crossing several 1 MiB read buffers with %s', async (algorithm, tool) => {
    const dir = await tempDir();
    const size = 5 * 1024 * 1024 + 12_345;
    const f = await put(dir, 'big.dat', data(size));
    const dna = await DnaDigest.ofFile(f, { algorithm });
    expect(dna).toEqual({ dig: coreutils(tool, f), size, algorithm });
  });

  it('matches md5sum on an exact multiple of the buffer size and one byte past it', async () => {
    const dir = await tempDir();
    for (const size of [1 << 20, (1 << 20) + 1, 3 << 20]) {
      const f = await put(dir, `f${size}`, data(size));
      expect(await DnaDigest.ofFile(f)).toEqual({ dig: coreutils('md5sum', f), size, algorithm: 'md5' });
    }
  });

  it('reports progress with the byte total, ending with every byte and one item', async () => {
    const dir = await tempDir();
    const size = 3 * 1024 * 1024 + 5;
    const f = await put(dir, 'p.dat', data(size));
    const seen: Progress[] = [];
    await DnaDigest.ofFile(f, { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.every((p) => p.phase === 'hash' && p.bytesTotal === size)).toBe(true);
    expect(seen.at(-1)).toMatchObject({ bytesDone: size, itemsDone: 1, itemsTotal: 1 });
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
  });

  it('is ENOT_FOUND naming a missing file', async () => {
    const dir = await tempDir();
    const missing = join(dir, 'nope.dat');
    const err = await rejectsWith(DnaDigest.ofFile(missing), 'ENOT_FOUND');
    expect(err.message).toContain(missing);
    expect(err.details['path']).toBe(missing);
  });

  it('is EIO for a directory', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'sub'));
    const err = await rejectsWith(DnaDigest.ofFile(join(dir, 'sub')), 'EIO');
    expect(err.details['errno']).toBe('EISDIR');
  });

  it('is EBAD_CONFIG for an unknown option or algorithm, before touching the file', async () => {
    await rejectsWith(DnaDigest.ofFile('/nonexistent', { signall: undefined } as never), 'EBAD_CONFIG');
    await rejectsWith(DnaDigest.ofFile('/nonexistent', { algorithm: 'md4' as 'md5' }), 'EBAD_CONFIG');
  });

  it('rethrows the reason when aborted before start', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'a', 'abc');
    const reason = new Error('stop now');
    const ac = new AbortController();
    ac.abort(reason);
    const before = fdCount();
    await expect(DnaDigest.ofFile(f, { signal: ac.signal })).rejects.toBe(reason);
    expect(fdCount()).toBe(before);
  });

  it('stops midway when aborted, rethrows the reason and closes the file', async () => {
    const dir = await tempDir();
    const f = join(dir, 'sparse.dat');
    await put(dir, 'sparse.dat', '');
    await truncate(f, 2 ** 31); // 2 GiB of holes: seconds of hashing if not stopped
    const reason = new Error('user cancelled');
    const ac = new AbortController();
    const before = fdCount();
    let last = 0;
    const t0 = performance.now();
    await expect(
      DnaDigest.ofFile(f, {
        signal: ac.signal,
        onProgress: (p) => {
          last = p.bytesDone;
          if (p.bytesDone > 0) ac.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(last).toBeGreaterThan(0);
    expect(last).toBeLessThan(2 ** 31);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(fdCount()).toBe(before);
  });
});
