import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DnaDigest, assertDna, dnaEqual, formatSidecar, parseSidecar, type Dna } from '../../../src/dna/index.js';
import { coreutils, data, hex, put, rejectsWith, tempDir, throwsWith } from './helpers.js';

const MD5 = '7b87e78cc03ea544e2ad3abae46eecd1';

/** What Python's ast.literal_eval makes of a file, as JSON. */
function pythonReads(file: string): unknown {
  const out = execFileSync('python3', ['-c', 'import ast, json, sys; print(json.dumps(ast.literal_eval(open(sys.argv[1]).read())))', file], { encoding: 'utf8' });
  return JSON.parse(out);
}

describe('DnaDigest.writeSidecar', () => {
  it('writes FILE.dna as JSON that Python\'s ast.literal_eval also reads', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'run-1234.tar.gz', data(4321));
    const dna = await DnaDigest.ofFile(f);
    const sidecar = await DnaDigest.writeSidecar(f, dna);
    expect(sidecar).toBe(f + '.dna');
    const text = await readFile(sidecar, 'utf8');
    expect(text).toBe(`{"dig": "${coreutils('md5sum', f)}", "size": 4321}\n`);
    expect(JSON.parse(text)).toEqual({ dig: dna.dig, size: 4321 });
    expect(pythonReads(sidecar)).toEqual({ dig: dna.dig, size: 4321 });
    expect(await readdir(dir)).toEqual(['run-1234.tar.gz', 'run-1234.tar.gz.dna']);
  });

  it('adds "algorithm" when not md5, still a Python literal, and reads back equal', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'x', data(999));
    const dna = await DnaDigest.ofFile(f, { algorithm: 'sha256' });
    await DnaDigest.writeSidecar(f, dna);
    expect(pythonReads(f + '.dna')).toEqual({ dig: coreutils('sha256sum', f), size: 999, algorithm: 'sha256' });
    expect(await DnaDigest.readSidecar(f)).toEqual(dna);
  });

  it('keeps sizes past 2^32 exact (no float notation)', async () => {
    const dir = await tempDir();
    const f = join(dir, 'huge');
    await DnaDigest.writeSidecar(f, { dig: MD5, size: 1915051630123, algorithm: 'md5' });
    expect(await readFile(f + '.dna', 'utf8')).toBe(`{"dig": "${MD5}", "size": 1915051630123}\n`);
    expect(pythonReads(f + '.dna')).toEqual({ dig: MD5, size: 1915051630123 });
  });

  it('replaces an older sidecar', async () => {
    const dir = await tempDir();
    const f = join(dir, 'f');
    await writeFile(f + '.dna', 'garbage');
    await DnaDigest.writeSidecar(f, { dig: MD5, size: 1, algorithm: 'md5' });
    expect((await DnaDigest.readSidecar(f)).dig).toBe(MD5);
  });

  it.each<[string, Dna]>([
    ['a short digest', { dig: 'abc', size: 1, algorithm: 'md5' }],
    ['an md5-length digest claimed as sha1', { dig: MD5, size: 1, algorithm: 'sha1' }],
    ['a non-hex digest', { dig: 'z'.repeat(32), size: 1, algorithm: 'md5' }],
    ['a negative size', { dig: MD5, size: -1, algorithm: 'md5' }],
    ['a fractional size', { dig: MD5, size: 1.5, algorithm: 'md5' }],
    ['an unknown algorithm', { dig: MD5, size: 1, algorithm: 'crc' as 'md5' }],
  ])('is EBAD_CONFIG for %s, and writes nothing', async (_what, dna) => {
    const dir = await tempDir();
    const f = join(dir, 'f');
    const err = await rejectsWith(DnaDigest.writeSidecar(f, dna), 'EBAD_CONFIG');
    expect(err.message).toContain(f + '.dna');
    expect(await readdir(dir)).toEqual([]);
  });

  it('is ENOSPACE on a full disk, leaving no sidecar nor .part (64 KiB tmpfs; needs root to mount)', async () => {
    const dir = await tempDir();
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`this test mounts a 64 KiB tmpfs and needs root (mount from util-linux): ${(err as Error).message}`);
    }
    try {
      await writeFile(join(mnt, 'f'), Buffer.alloc(64 * 1024)).catch(() => {}); // fill it
      const before = await readdir(mnt);
      await rejectsWith(DnaDigest.writeSidecar(join(mnt, 'f'), { dig: MD5, size: 1, algorithm: 'md5' }), 'ENOSPACE');
      expect(await readdir(mnt)).toEqual(before);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('is ENOT_FOUND when the directory does not exist, leaving no .part', async () => {
    const dir = await tempDir();
    await rejectsWith(DnaDigest.writeSidecar(join(dir, 'no', 'f'), { dig: MD5, size: 1, algorithm: 'md5' }), 'ENOT_FOUND');
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('DnaDigest.readSidecar', () => {
  it.each([
    ['the legacy Python-2 repr with L', `{'dig': '${MD5}', 'size': 1915051630L}`],
    ['the legacy repr with a newline', `{'dig': '${MD5}', 'size': 1915051630L}\n`],
    ['unicode-prefixed keys and values', `{u'dig': u'${MD5}', u'size': 1915051630L}`],
    ['size first, int without L, trailing comma', `{ 'size' : 1915051630 ,\n 'dig':'${MD5.toUpperCase()}', }`],
    ['double quotes with L', `{"dig": "${MD5}", "size": 1915051630L}`],
    ['JSON', `{"dig": "${MD5}", "size": 1915051630}`],
    ['JSON with a BOM and extra keys', `\uFEFF{"dig": "${MD5}", "size": 1915051630, "note": "x"}`],
  ])('reads %s', async (_what, text) => {
    const dir = await tempDir();
    await writeFile(join(dir, 'f.dna'), text);
    expect(await DnaDigest.readSidecar(join(dir, 'f'))).toEqual({ dig: MD5, size: 1915051630, algorithm: 'md5' });
  });

  it('reads a legacy repr naming sha1', async () => {
    const dir = await tempDir();
    const dig = hex('sha1', Buffer.from('x'));
    await writeFile(join(dir, 'f.dna'), `{'algorithm': 'sha1', 'dig': '${dig}', 'size': 1L}`);
    expect(await DnaDigest.readSidecar(join(dir, 'f'))).toEqual({ dig, size: 1, algorithm: 'sha1' });
  });

  it('is ENO_SIDECAR naming the missing sidecar', async () => {
    const dir = await tempDir();
    const err = await rejectsWith(DnaDigest.readSidecar(join(dir, 'f')), 'ENO_SIDECAR');
    expect(err.message).toContain(join(dir, 'f.dna'));
    expect(err.details).toMatchObject({ path: join(dir, 'f'), sidecar: join(dir, 'f.dna') });
  });

  it.each([
    ['an empty file', ''],
    ['prose', 'the md5 is 7b87e78cc03ea544e2ad3abae46eecd1'],
    ['an array', `["${MD5}", 12]`],
    ['null', 'null'],
    ['an empty dict', '{}'],
    ['no size', `{"dig": "${MD5}"}`],
    ['no dig', '{"size": 12}'],
    ['a short digest', '{"dig": "7b87e7", "size": 12}'],
    ['a non-hex digest', `{"dig": "${'g'.repeat(32)}", "size": 12}`],
    ['a sha256-length digest for md5', `{"dig": "${'a'.repeat(64)}", "size": 12}`],
    ['a negative size', `{"dig": "${MD5}", "size": -1}`],
    ['a fractional size', `{"dig": "${MD5}", "size": 1.5}`],
    ['a string size', `{"dig": "${MD5}", "size": "12"}`],
    ['an unsafe size', `{"dig": "${MD5}", "size": 123456789012345678901}`],
    ['an unknown algorithm', `{"dig": "${MD5}", "size": 1, "algorithm": "crc32"}`],
    ['an unterminated repr', `{'dig': '${MD5}', 'size': 12L`],
    ['a repr with trailing junk', `{'dig': '${MD5}', 'size': 12L} x`],
    ['a repr with an escape', `{'dig': '${MD5}\\'', 'size': 12L}`],
    ['a repr with a float', `{'dig': '${MD5}', 'size': 12.5}`],
    ['a repr missing a colon', `{'dig' '${MD5}', 'size': 12L}`],
  ])('is EBAD_SIDECAR naming the file for %s', async (_what, text) => {
    const dir = await tempDir();
    await writeFile(join(dir, 'f.dna'), text);
    const err = await rejectsWith(DnaDigest.readSidecar(join(dir, 'f')), 'EBAD_SIDECAR');
    expect(err.message).toContain(join(dir, 'f.dna'));
    expect(err.details['sidecar']).toBe(join(dir, 'f.dna'));
  });

  it('is EBAD_SIDECAR for a sidecar over 64 KiB, and for a directory', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'big.dna'), `{"dig": "${MD5}", "size": 1, "pad": "${'x'.repeat(70_000)}"}`);
    expect((await rejectsWith(DnaDigest.readSidecar(join(dir, 'big')), 'EBAD_SIDECAR')).message).toContain('larger than');
    await mkdir(join(dir, 'd.dna'));
    expect((await rejectsWith(DnaDigest.readSidecar(join(dir, 'd')), 'EBAD_SIDECAR')).message).toContain('directory');
  });

  it("refuses a legacy size with a leading zero (Python 2 reads 012 as octal), but takes 0 and plain numbers", () => {
    for (const text of [`{'dig': '${MD5}', 'size': 012}`, `{'dig': '${MD5}', 'size': 00}`, `{'dig': '${MD5}', 'size': 012L}`]) {
      throwsWith(() => parseSidecar(text, 'old.dna'), 'EBAD_SIDECAR');
    }
    expect(parseSidecar(`{'dig': '${MD5}', 'size': 0}`, 'zero.dna').size).toBe(0);
    expect(parseSidecar(`{'dig': '${MD5}', 'size': 120L}`, 'plain.dna').size).toBe(120);
  });

  it('parses a pathological legacy-looking input quickly (no regex backtracking)', () => {
    const evil = `{'dig': '${MD5}', ` + ' '.repeat(50_000) + ','.repeat(50_000);
    const t0 = performance.now();
    throwsWith(() => parseSidecar(evil, 'evil.dna'), 'EBAD_SIDECAR');
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe('formatSidecar / dnaEqual / assertDna', () => {
  it('formats what parseSidecar reads back', () => {
    const dna: Dna = { dig: hex('sha512', Buffer.from('a')), size: 1, algorithm: 'sha512' };
    expect(parseSidecar(formatSidecar(dna), 's')).toEqual(dna);
    expect(formatSidecar({ dig: MD5.toUpperCase(), size: 0, algorithm: 'md5' })).toBe(`{"dig": "${MD5}", "size": 0}\n`);
  });

  it('compares algorithm, size and digest, ignoring hex case', () => {
    const a: Dna = { dig: MD5, size: 5, algorithm: 'md5' };
    expect(dnaEqual(a, { ...a, dig: MD5.toUpperCase() })).toBe(true);
    expect(dnaEqual(a, { ...a, size: 6 })).toBe(false);
    expect(dnaEqual(a, { ...a, dig: MD5.replace('7', '8') })).toBe(false);
    expect(dnaEqual(a, { ...a, algorithm: 'sha1' })).toBe(false);
  });

  it('assertDna throws EDIGEST_MISMATCH naming the file and both DNAs', () => {
    const a: Dna = { dig: MD5, size: 5, algorithm: 'md5' };
    expect(() => assertDna('f', a, a)).not.toThrow();
    const err = throwsWith(() => assertDna('/data/run.tar', a, { ...a, size: 4 }), 'EDIGEST_MISMATCH');
    expect(err.message).toContain('/data/run.tar');
    expect(err.details).toMatchObject({ path: '/data/run.tar', expected: a, actual: { ...a, size: 4 } });
  });
});

describe('DnaDigest.verify', () => {
  it('is ok for an intact file and reports both DNAs', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(10_000));
    const dna = await DnaDigest.ofFile(f);
    await DnaDigest.writeSidecar(f, dna);
    expect(await DnaDigest.verify(f)).toEqual({ path: f, ok: true, expected: dna, actual: dna });
  });

  it('finds a mutant with the same size (one flipped byte) and one with another size', async () => {
    const dir = await tempDir();
    const buf = data(10_000);
    const f = await put(dir, 'f', buf);
    const dna = await DnaDigest.ofFile(f);
    await DnaDigest.writeSidecar(f, dna);
    buf[5000] = buf[5000]! ^ 1;
    await writeFile(f, buf);
    const r1 = await DnaDigest.verify(f);
    expect(r1.ok).toBe(false);
    expect(r1.actual).toEqual({ dig: coreutils('md5sum', f), size: 10_000, algorithm: 'md5' });
    await writeFile(f, buf.subarray(1));
    const r2 = await DnaDigest.verify(f);
    expect(r2.ok).toBe(false);
    expect(r2.actual.size).toBe(9_999);
  });

  it('re-digests with the algorithm the sidecar names', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(3000));
    await DnaDigest.writeSidecar(f, await DnaDigest.ofFile(f, { algorithm: 'sha512' }));
    const r = await DnaDigest.verify(f);
    expect(r.ok).toBe(true);
    expect(r.actual).toEqual({ dig: coreutils('sha512sum', f), size: 3000, algorithm: 'sha512' });
  });

  it('is ENO_SIDECAR without a sidecar, EBAD_SIDECAR with a bad one, ENOT_FOUND when the file is gone', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', 'abc');
    await rejectsWith(DnaDigest.verify(f), 'ENO_SIDECAR');
    await writeFile(f + '.dna', '{oops');
    await rejectsWith(DnaDigest.verify(f), 'EBAD_SIDECAR');
    await writeFile(join(dir, 'gone.dna'), `{"dig": "${MD5}", "size": 3}`);
    await rejectsWith(DnaDigest.verify(join(dir, 'gone')), 'ENOT_FOUND');
  });

  it('is EBAD_CONFIG for an algorithm option (the sidecar decides) or an unknown one', async () => {
    await rejectsWith(DnaDigest.verify('/x', { algorithm: 'md5' } as never), 'EBAD_CONFIG');
    await rejectsWith(DnaDigest.verify('/x', { sginal: undefined } as never), 'EBAD_CONFIG');
  });

  it('rethrows the reason when aborted before start', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', 'abc');
    await DnaDigest.writeSidecar(f, await DnaDigest.ofFile(f));
    const ac = new AbortController();
    const reason = new Error('halt');
    ac.abort(reason);
    await expect(DnaDigest.verify(f, { signal: ac.signal })).rejects.toBe(reason);
    expect(existsSync(f)).toBe(true);
  });
});
