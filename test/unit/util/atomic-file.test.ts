import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { AtomicFile, PART_SUFFIX, writeFileAtomic } from '../../../src/util/atomic-file.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stowage-atomic-'));
  dirs.push(d);
  return d;
}
async function rejectsWith(p: Promise<unknown>, code: string): Promise<StowageError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(StowageError);
  expect((err as StowageError).code).toBe(code);
  return err as StowageError;
}

describe('writeFileAtomic', () => {
  it('writes the bytes under the final name only, and returns the count', async () => {
    const dir = await tempDir();
    const f = join(dir, 'out.bin');
    const n = await writeFileAtomic(f, [Buffer.from('hello '), Buffer.from('world')]);
    expect(n).toBe(11);
    expect(await readFile(f, 'utf8')).toBe('hello world');
    expect(await readdir(dir)).toEqual(['out.bin']);
  });

  it('applies the mode and replaces an existing file by default', async () => {
    const dir = await tempDir();
    const f = join(dir, 'f');
    await writeFile(f, 'old');
    await writeFileAtomic(f, [Buffer.from('new')], { mode: 0o600 });
    expect(await readFile(f, 'utf8')).toBe('new');
    expect((await stat(f)).mode & 0o777).toBe(0o600);
  });

  it('leaves nothing under either name when the source fails', async () => {
    const dir = await tempDir();
    const boom = new Error('source broke');
    async function* src(): AsyncGenerator<Buffer> {
      yield Buffer.alloc(1000);
      throw boom;
    }
    await expect(writeFileAtomic(join(dir, 'f'), src())).rejects.toBe(boom);
    expect(await readdir(dir)).toEqual([]);
  });

  it('is EIO on a byte count other than expectedBytes, leaving nothing', async () => {
    const dir = await tempDir();
    const e = await rejectsWith(writeFileAtomic(join(dir, 'f'), [Buffer.alloc(10)], { expectedBytes: 11 }), 'EIO');
    expect(e.details).toMatchObject({ expected: 11, written: 10 });
    expect(await readdir(dir)).toEqual([]);
  });

  it('is EEXIST with noOverwrite when the target exists, even as a dangling link, and keeps it', async () => {
    const dir = await tempDir();
    const f = join(dir, 'f');
    await writeFile(f, 'precious');
    await rejectsWith(writeFileAtomic(f, [Buffer.from('x')], { noOverwrite: true }), 'EEXIST');
    expect(await readFile(f, 'utf8')).toBe('precious');
    await symlink(join(dir, 'nowhere'), join(dir, 'link'));
    await rejectsWith(writeFileAtomic(join(dir, 'link'), [Buffer.from('x')], { noOverwrite: true }), 'EEXIST');
    expect((await readdir(dir)).sort()).toEqual(['f', 'link']);
  });

  it('is EEXIST with noOverwrite when the target appears while writing, keeping the newcomer', async () => {
    const dir = await tempDir();
    const f = join(dir, 'f');
    async function* src(): AsyncGenerator<Buffer> {
      yield Buffer.from('mine');
      await writeFile(f, 'theirs');
    }
    await rejectsWith(writeFileAtomic(f, src(), { noOverwrite: true }), 'EEXIST');
    expect(await readFile(f, 'utf8')).toBe('theirs');
    expect(await readdir(dir)).toEqual(['f']);
  });

  it('is ENOT_FOUND when the directory does not exist', async () => {
    const dir = await tempDir();
    await rejectsWith(writeFileAtomic(join(dir, 'no', 'f'), [Buffer.from('x')]), 'ENOT_FOUND');
  });

  it('rethrows the reason when aborted before start, creating nothing', async () => {
    const dir = await tempDir();
    const reason = new Error('no');
    await expect(writeFileAtomic(join(dir, 'f'), [Buffer.from('x')], { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(await readdir(dir)).toEqual([]);
  });

  it('rethrows the reason when aborted midway, leaving nothing', async () => {
    const dir = await tempDir();
    const ac = new AbortController();
    const reason = new Error('midway');
    let sent = 0;
    const src = new Readable({
      read() {
        sent += 65536;
        this.push(Buffer.alloc(65536));
        if (sent === 65536 * 4) ac.abort(reason);
      },
    });
    await expect(writeFileAtomic(join(dir, 'f'), src, { signal: ac.signal })).rejects.toBe(reason);
    expect(await readdir(dir)).toEqual([]);
  });

  it('is ENOSPACE on a full disk, leaving nothing (64 KiB tmpfs; needs root to mount)', async () => {
    const dir = await tempDir();
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`this test mounts a 64 KiB tmpfs and needs root (mount from util-linux): ${(err as Error).message}`);
    }
    try {
      const e = await rejectsWith(writeFileAtomic(join(mnt, 'big'), [Buffer.alloc(1024 * 1024)]), 'ENOSPACE');
      expect(e.message).toContain(join(mnt, 'big'));
      expect(await readdir(mnt)).toEqual([]);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});

describe('AtomicFile', () => {
  it('is invisible until commit, then refuses writes and a second commit with EIO', async () => {
    const dir = await tempDir();
    const f = await AtomicFile.open(join(dir, 'f'));
    await f.write(Buffer.from('abc'));
    expect(await readdir(dir)).toEqual(['f' + PART_SUFFIX]);
    expect(f.bytesWritten).toBe(3);
    await f.commit(3);
    expect(await readdir(dir)).toEqual(['f']);
    await rejectsWith(f.write(Buffer.from('x')), 'EIO');
    await rejectsWith(f.commit(), 'EIO');
    await f.discard(); // no-op after commit
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('abc');
  });

  it('discards on asyncDispose, and discard twice is safe', async () => {
    const dir = await tempDir();
    {
      await using f = await AtomicFile.open(join(dir, 'f'));
      await f.write(Buffer.from('abc'));
    }
    expect(await readdir(dir)).toEqual([]);
    const g = await AtomicFile.open(join(dir, 'g'));
    await g.discard();
    await g.discard();
    await rejectsWith(g.write(Buffer.from('x')), 'EIO');
    expect(await readdir(dir)).toEqual([]);
  });

  it('truncates a stale .part left by a crash', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'f' + PART_SUFFIX), 'stale leftover bytes');
    const f = await AtomicFile.open(join(dir, 'f'));
    await f.write(Buffer.from('ok'));
    await f.commit();
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('ok');
  });

  it('works as a Writable with backpressure via writable()', async () => {
    const dir = await tempDir();
    const f = await AtomicFile.open(join(dir, 'f'));
    const { pipeline } = await import('node:stream/promises');
    await pipeline(Readable.from([Buffer.alloc(3 << 20, 1), Buffer.alloc(5, 2)]), f.writable());
    await f.commit((3 << 20) + 5);
    expect((await stat(join(dir, 'f'))).size).toBe((3 << 20) + 5);
  });
});
