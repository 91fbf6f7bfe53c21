import { createHash, randomBytes } from 'node:crypto';
import { chown, mkdir, open, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver, DETERMINISTIC_MTIME } from '../../../src/archive/index.js';
import type { Progress } from '../../../src/progress.js';
import type { StowageWarning } from '../../../src/errors.js';
import { expectSameTree, gzipMembers, logText, ls, makeTree, readTree, rejectsWith, run, tempDir } from './helpers.js';

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

describe('Archiver.create', () => {
  it('archives a tree that GNU tar extracts identically, with the DNA of the file it wrote and a sidecar', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const spec = await makeTree(src);
    const out = join(root, 'out.tar.gz');
    const r = await Archiver.create(src, out);

    const bytes = await readFile(out);
    expect(r.path).toBe(out);
    expect(r.bytesOut).toBe(bytes.length);
    expect(r.dna).toEqual({ dig: md5(bytes), size: bytes.length, algorithm: 'md5' });
    expect(JSON.parse(await readFile(out + '.dna', 'utf8'))).toEqual({ dig: md5(bytes), size: bytes.length });
    expect(r.sidecar).toBe(out + '.dna');
    const fileBytes = Object.values(spec).filter(Buffer.isBuffer).reduce((n, b) => n + b.length, 0) + Object.entries(spec).filter(([k, v]) => typeof v === 'string' && !k.startsWith('link')).reduce((n, [, v]) => n + Buffer.byteLength(v), 0);
    expect(r.bytesIn).toBe(fileBytes);
    // 8 files and a symlink, plus the directories sub, sub/inner, deep, deep/d.., deep/d../e.., ünïcødé.
    expect(r.entries).toBe(8 + 6);

    run('gzip', ['-t', out]);
    const dest = join(root, 'gnu');
    await mkdir(dest);
    run('tar', ['xzf', out, '-C', dest]);
    expectSameTree(await readTree(dest), spec);
    expect(await ls(root)).toEqual(['gnu', 'out.tar.gz', 'out.tar.gz.dna', 'src']);
  });

  it('writes a multi-member gzip that gzip, GNU tar and Python tarfile all read', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const big = Buffer.concat([logText(600_000), randomBytes(500_000), logText(300_000, 5)]);
    await writeFile(join(src, 'big.dat'), big);
    await writeFile(join(src, 'small.txt'), 'small\n');
    const out = join(root, 'multi.tgz');
    await Archiver.create(src, out, { chunkSize: 64 * 1024 });
    const buf = await readFile(out);
    expect(gzipMembers(buf)).toBeGreaterThanOrEqual(20);
    run('gzip', ['-t', out]);
    expect(run('tar', ['tzf', out]).split('\n').filter(Boolean).sort()).toEqual(['big.dat', 'small.txt']);
    const py = run('python3', [
      '-c',
      'import sys, tarfile, hashlib\nwith tarfile.open(sys.argv[1], "r:gz") as t:\n  for m in t.getmembers():\n    print(m.name, hashlib.md5(t.extractfile(m).read()).hexdigest())',
      out,
    ]);
    expect(py.trim().split('\n').sort()).toEqual([`big.dat ${md5(big)}`, `small.txt ${md5(Buffer.from('small\n'))}`]);
  });

  it('stays within 3% of tar czf in size and stores random data instead of compressing it', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    for (let i = 0; i < 6; i++) await writeFile(join(src, `f${i}.${i % 2 ? 'bin' : 'log'}`), i % 2 ? randomBytes(400_000) : logText(400_000, i + 1));
    const ours = join(root, 'ours.tar.gz');
    const r = await Archiver.create(src, ours);
    run('tar', ['czf', join(root, 'gnu.tar.gz'), '-C', src, '.']);
    const gnu = (await stat(join(root, 'gnu.tar.gz'))).size;
    expect(r.bytesOut).toBeLessThan(gnu * 1.03);
    expect(r.bytesOut).toBeGreaterThan(3 * 400_000);
  });

  it('picks gzip from the name: .tar is plain tar, .tgz is gzip; other names need the option', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'x.txt'), logText(10_000));
    const plain = await Archiver.create(src, join(root, 'a.tar'));
    const head = (await readFile(plain.path)).subarray(0, 2);
    expect(head.equals(Buffer.from([0x1f, 0x8b]))).toBe(false);
    expect(run('tar', ['tf', plain.path]).trim()).toBe('x.txt');
    const tgz = await Archiver.create(src, join(root, 'b.tgz'));
    expect((await readFile(tgz.path)).subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(true);
    await rejectsWith(Archiver.create(src, join(root, 'c.bin')), 'EBAD_CONFIG');
    const forced = await Archiver.create(src, join(root, 'c.bin'), { gzip: true });
    expect(run('tar', ['tzf', forced.path]).trim()).toBe('x.txt');
  });

  it('archives only the listed entries, directories recursively, in the given order', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await makeTree(src);
    const out = join(root, 'part.tar');
    const r = await Archiver.create(src, out, { entries: ['sub', 'a.log'] });
    expect(run('tar', ['tf', out]).trim().split('\n')).toEqual(['sub/', 'sub/c.txt', 'sub/inner/', 'sub/inner/d.bin', 'a.log']);
    expect(r.entries).toBe(5);
    const missing = await rejectsWith(Archiver.create(src, join(root, 'm.tar'), { entries: ['nope.txt'] }), 'ENOT_FOUND');
    expect(missing.message).toContain('nope.txt');
    await rejectsWith(Archiver.create(src, join(root, 'm.tar'), { entries: ['../outside'] }), 'EUNSAFE_PATH');
    await rejectsWith(Archiver.create(src, join(root, 'm.tar'), { entries: ['/etc/passwd'] }), 'EUNSAFE_PATH');
    expect(await ls(root)).toEqual(['part.tar', 'part.tar.dna', 'src']);
  });

  it('keeps uids and gids past ustar\'s 262143 (in a PAX header, as GNU tar does), for list and for GNU tar', async () => {
    // chown needs root, as the suite runs (it fails with EPERM, loudly, otherwise).
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'big-ids.dat'), 'x');
    await writeFile(join(src, 'small-ids.dat'), 'y');
    await chown(join(src, 'big-ids.dat'), 1_000_000, 2_000_000);
    await chown(join(src, 'small-ids.dat'), 1000, 262_143);
    const a = await Archiver.create(src, join(root, 'ids.tar.gz'));
    const byName = new Map((await Archiver.list(a.path)).map((e) => [e.name, e]));
    expect(byName.get('big-ids.dat')).toMatchObject({ uid: 1_000_000, gid: 2_000_000 });
    expect(byName.get('small-ids.dat')).toMatchObject({ uid: 1000, gid: 262_143 });
    const listing = run('tar', ['-tvzf', a.path, '--numeric-owner']);
    expect(listing).toMatch(/1000000\/2000000 .* big-ids\.dat/);
    expect(listing).toMatch(/1000\/262143 .* small-ids\.dat/);
    expect((await Archiver.verify(a.path)).ok).toBe(true);
  });

  it('deterministic: identical bytes for identical content whatever the mtimes; normalised headers', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await makeTree(src);
    const a = await Archiver.create(src, join(root, 'a.tar.gz'), { deterministic: true });
    await utimes(join(src, 'a.log'), new Date(2020, 1, 1), new Date(2020, 1, 1));
    await utimes(join(src, 'sub'), new Date(2021, 1, 1), new Date(2021, 1, 1));
    const b = await Archiver.create(src, join(root, 'b.tar.gz'), { deterministic: true, concurrency: 1 });
    expect((await readFile(a.path)).equals(await readFile(b.path))).toBe(true);
    expect(a.dna.dig).toBe(b.dna.dig);
    // Without the option the changed mtime shows.
    const c = await Archiver.create(src, join(root, 'c.tar.gz'));
    await utimes(join(src, 'a.log'), new Date(2022, 1, 1), new Date(2022, 1, 1));
    const d = await Archiver.create(src, join(root, 'd.tar.gz'));
    expect(c.dna.dig).not.toBe(d.dna.dig);
    for (const e of await Archiver.list(a.path)) {
      expect(e.mtime.getTime()).toBe(DETERMINISTIC_MTIME.getTime());
      expect(e.uid).toBe(0);
      expect(e.gid).toBe(0);
      expect(e.mode).toBe(e.type === 'directory' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644);
    }
  });

  it('deterministic: the same tree written in the opposite order (other creation order, other inodes) gives the same bytes', async () => {
    const root = await tempDir();
    const names = Array.from({ length: 40 }, (_, i) => `f${String(i).padStart(2, '0')}-${'xyzabc'[i % 6]}.dat`);
    const content = (n: string): Buffer => Buffer.from(`${n}\n`.repeat(50));
    const build = async (dir: string, order: readonly string[]): Promise<void> => {
      await mkdir(join(dir, 'z-dir'), { recursive: true });
      await mkdir(join(dir, 'a-dir'));
      for (const n of order) await writeFile(join(dir, n.endsWith('a.dat') ? 'a-dir' : n.endsWith('z.dat') ? 'z-dir' : '.', n), content(n));
    };
    const one = join(root, 'one');
    const two = join(root, 'two');
    await build(one, names);
    await build(two, [...names].reverse());
    const a = await Archiver.create(one, join(root, 'one.tar.gz'), { deterministic: true });
    const b = await Archiver.create(two, join(root, 'two.tar.gz'), { deterministic: true });
    expect((await readFile(a.path)).equals(await readFile(b.path))).toBe(true);
    const listed = (await Archiver.list(a.path)).map((e) => e.name);
    // Sorted by name at every level, not by creation or inode order. (Node's readdir already hands back
    // names sorted, through libuv's scandir; the walker sorts again so as not to depend on that.)
    expect(listed).toEqual([...listed].sort());
    expect(listed).toHaveLength(2 + names.length);
  });

  it('stores symlinks as symlinks', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await makeTree(src);
    const r = await Archiver.create(src, join(root, 'l.tar'));
    const link = (await Archiver.list(r.path)).find((e) => e.name === 'link-to-c');
    expect(link).toMatchObject({ type: 'symlink', linkname: 'sub/c.txt', size: 0 });
  });

  it('skips fifos with an EUNSAFE_PATH warning; strict makes it an error and leaves nothing', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'ok.txt'), 'ok');
    run('mkfifo', [join(src, 'pipe')]);
    const warnings: StowageWarning[] = [];
    const r = await Archiver.create(src, join(root, 'w.tar'), { onWarning: (w) => warnings.push(w) });
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['EUNSAFE_PATH', join(src, 'pipe')]]);
    expect((await Archiver.list(r.path)).map((e) => e.name)).toEqual(['ok.txt']);
    await rejectsWith(Archiver.create(src, join(root, 's.tar'), { strict: true }), 'EUNSAFE_PATH');
    expect(await ls(root)).toEqual(['src', 'w.tar', 'w.tar.dna']);
  });

  it('refuses a tree holding a LOCKED directory (ELOCKED) unless allowLocked, which leaves the lock out', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'run42', 'LOCKED'), { recursive: true });
    await writeFile(join(src, 'run42', 'LOCKED', 'owner.json'), '{}');
    await writeFile(join(src, 'run42', 'data.bin'), 'x');
    const e = await rejectsWith(Archiver.create(src, join(root, 'x.tar.gz')), 'ELOCKED');
    expect(e.message).toContain(join(src, 'run42', 'LOCKED'));
    await rejectsWith(Archiver.create(src, join(root, 'x.tar.gz'), { entries: ['run42'] }), 'ELOCKED');
    expect(await ls(root)).toEqual(['src']);
    const r = await Archiver.create(src, join(root, 'x.tar.gz'), { allowLocked: true });
    expect((await Archiver.list(r.path)).map((x) => x.name)).toEqual(['run42', 'run42/data.bin']);
  });

  it('refuses a name that is not UTF-8 (EIO naming its bytes) instead of leaving the file out; nothing is left', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'ok.txt'), 'ok');
    // "résumé_run42.dat" in Latin-1, in a sub-folder: a path given as bytes.
    const latin1 = Buffer.concat([Buffer.from(join(src, 'sub') + '/'), Buffer.from('r\xe9sum\xe9_run42.dat', 'latin1')]);
    await writeFile(latin1, 'run 42');
    const e = await rejectsWith(Archiver.create(src, join(root, 'x.tar.gz')), 'EIO');
    expect(e.message).toMatch(/not valid UTF-8/);
    expect(e.details['nameHex']).toBe(Buffer.from('r\xe9sum\xe9_run42.dat', 'latin1').toString('hex'));
    expect(await ls(root)).toEqual(['src']);
    // A name that is valid UTF-8, even with U+FFFD in it, is archived.
    await rm(latin1);
    await writeFile(join(src, 'sub', 'odd\ufffdname'), 'x');
    const r = await Archiver.create(src, join(root, 'x.tar.gz'));
    expect((await Archiver.list(r.path)).map((x) => x.name)).toContain('sub/odd\ufffdname');
  });

  it('replacing an archive whose new sidecar cannot be written fails, and leaves the old archive and sidecar as they were', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), randomBytes(100_000));
    const out = join(root, 'o.tar.gz');
    const old = await Archiver.create(src, out);
    const oldBytes = await readFile(out);
    const oldSidecar = await readFile(out + '.dna', 'utf8');
    await writeFile(join(src, 'a.bin'), randomBytes(100_000));
    // Something in the way of the sidecar's .part (as a full disk or a quota would be).
    await mkdir(out + '.dna.part');
    await rejectsWith(Archiver.create(src, out), 'EIO');
    expect((await readFile(out)).equals(oldBytes)).toBe(true);
    expect(await readFile(out + '.dna', 'utf8')).toBe(oldSidecar);
    expect((await Archiver.verify(out)).dna).toEqual(old.dna);
    expect((await ls(root)).filter((n) => n.startsWith('o.tar.gz') && n !== 'o.tar.gz.dna.part').sort()).toEqual(['o.tar.gz', 'o.tar.gz.dna']);
  });

  it('a file that shrinks while it is read is EIO naming it, and nothing is left', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const victim = join(src, 'growing.dat');
    await truncate(await writeFile(victim, '').then(() => victim), 16 << 20);
    let done = false;
    const e = await rejectsWith(
      Archiver.create(src, join(root, 'x.tar.gz'), {
        onProgress: (p) => {
          if (!done && p.bytesDone > 0) {
            done = true;
            void truncate(victim, 2 << 20);
          }
        },
      }),
      'EIO',
    );
    expect(e.message).toContain(victim);
    expect(e.message).toContain('shrank');
    expect(await ls(root)).toEqual(['src']);
  });

  it('a file that grows while it is read is EIO naming it, and nothing is left', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    const victim = join(src, 'growing.dat');
    await writeFile(victim, '');
    await truncate(victim, 8 << 20);
    let done = false;
    const e = await rejectsWith(
      Archiver.create(src, join(root, 'x.tar'), {
        onProgress: (p) => {
          if (!done && p.bytesDone > 0) {
            done = true;
            void open(victim, 'a').then(async (h) => {
              await h.write(Buffer.alloc(4096, 1));
              await h.close();
            });
          }
        },
      }),
      'EIO',
    );
    expect(e.message).toContain(victim);
    expect(await ls(root)).toEqual(['src']);
  });

  it('unknown or bad options are EBAD_CONFIG naming them, before anything is read or written', async () => {
    const root = await tempDir();
    const out = join(root, 'x.tar.gz');
    const e = await rejectsWith(Archiver.create(root, out, { gzipLevl: 5 } as never), 'EBAD_CONFIG');
    expect(e.message).toContain('gzipLevl');
    expect(e.message).toContain('gzipLevel');
    await rejectsWith(Archiver.create(root, out, { gzipLevel: 10 }), 'EBAD_CONFIG');
    await rejectsWith(Archiver.create(root, out, { chunkSize: 1000 }), 'EBAD_CONFIG');
    await rejectsWith(Archiver.create(root, out, { concurrency: 0 }), 'EBAD_CONFIG');
    await rejectsWith(Archiver.create(root, out, { algorithm: 'crc32' as never }), 'EBAD_CONFIG');
    await rejectsWith(Archiver.create(root, out, { entries: [] }), 'EBAD_CONFIG');
    await rejectsWith(Archiver.create(join(root, 'missing'), out), 'ENOT_FOUND');
    expect(await ls(root)).toEqual([]);
  });

  it('aborted before start: rejects with the reason and writes nothing', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    const ac = new AbortController();
    const reason = new Error('not today');
    ac.abort(reason);
    await expect(Archiver.create(src, join(root, 'x.tar.gz'), { signal: ac.signal })).rejects.toBe(reason);
    expect(await ls(root)).toEqual(['src']);
  });

  it('aborted midway: rejects with the reason, no .part and no final file', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    for (let i = 0; i < 4; i++) await writeFile(join(src, `f${i}`), i % 2 ? randomBytes(3 << 20) : logText(3 << 20, i + 1));
    const ac = new AbortController();
    const reason = new Error('operator pressed stop');
    let seen = 0;
    await expect(
      Archiver.create(src, join(root, 'x.tar.gz'), {
        signal: ac.signal,
        chunkSize: 256 * 1024,
        onProgress: (p) => {
          seen = p.bytesDone;
          if (p.bytesDone > 0) ac.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(seen).toBeGreaterThan(0);
    expect(seen).toBeLessThan(12 << 20);
    expect(await ls(root)).toEqual(['src']);
  });

  it('aborted at any tick of a walk over many small files: rejects with the reason each time, and no rejection goes unhandled', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    for (let i = 0; i < 40; i++) await writeFile(join(src, `f${String(i).padStart(2, '0')}`), `file ${i}\n`.repeat(50));
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => {
      unhandled.push(err);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      // An abort landing while the next file is being opened (after the
      // pack was destroyed) made tar-stream's entry() throw into a promise
      // nobody handled: the caller's process died.
      for (let ticks = 0; ticks < 80; ticks++) {
        const ac = new AbortController();
        const reason = new Error(`stop at tick ${ticks}`);
        const creating = Archiver.create(src, join(root, 'x.tar.gz'), { signal: ac.signal, concurrency: 1 });
        const outcome = creating.then(
          () => 'done',
          (err: unknown) => err,
        );
        for (let t = 0; t < ticks; t++) await new Promise((r) => setImmediate(r));
        ac.abort(reason);
        const got = await outcome;
        if (got !== 'done') expect(got).toBe(reason);
        await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect((await ls(root)).filter((n) => n.endsWith('.part'))).toEqual([]);
  });

  it('reports progress: phase, bytes and items up to the totals', async () => {
    const root = await tempDir();
    const src = join(root, 'src');
    await mkdir(src);
    await makeTree(src);
    const seen: Progress[] = [];
    const r = await Archiver.create(src, join(root, 'p.tar.gz'), { onProgress: (p) => seen.push(p) });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    const last = seen.at(-1)!;
    expect(last.phase).toBe('archive');
    expect(last.bytesDone).toBe(r.bytesIn);
    expect(last.bytesTotal).toBe(r.bytesIn);
    expect(last.itemsDone).toBe(r.entries);
    expect(last.itemsTotal).toBe(r.entries);
  });

  it('sidecar: false writes none and removes a stale one when replacing an archive; the archive itself is never listed in itself', async () => {
    const root = await tempDir();
    await writeFile(join(root, 'data.txt'), 'data');
    const out = join(root, 'self.tar');
    await Archiver.create(root, out);
    expect(await ls(root)).toEqual(['data.txt', 'self.tar', 'self.tar.dna']);
    const r = await Archiver.create(root, out, { sidecar: false });
    expect(r.sidecar).toBeUndefined();
    expect(await ls(root)).toEqual(['data.txt', 'self.tar']);
    expect((await Archiver.list(out)).map((e) => e.name)).toEqual(['data.txt']);
  });
});
