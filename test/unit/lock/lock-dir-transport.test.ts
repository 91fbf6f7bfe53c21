import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockDir } from '../../../src/lock/lock-dir.js';
import { StowageError } from '../../../src/errors.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';

// DESIGN.md names the option `transport`: the lock is planted through the
// transport's lockFs(), exactly as with `fs: transport.lockFs()`.
describe('LockDir transport option', () => {
  let dir = '';
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('plants LOCKED/owner.json through the transport and removes it on release', async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-lock-transport-'));
    const lock = new LockDir(dir, { transport: new LocalTransport(), purpose: 'via transport' });
    await lock.acquire();
    const owner = JSON.parse(await readFile(join(dir, 'LOCKED', 'owner.json'), 'utf8')) as { purpose: string; token: string };
    expect(owner.purpose).toBe('via transport');
    expect(owner.token).toBe(lock.owner?.token);
    const inspected = await LockDir.inspect(dir, { transport: new LocalTransport() });
    expect(inspected.locked).toBe(true);
    await lock.release();
    await expect(stat(join(dir, 'LOCKED'))).rejects.toThrow();
  });

  it('a fresh lock on a host whose clock runs minutes behind the contenders\' is not taken for stale (its heartbeat is set from the holder\'s clock at once)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-lock-skew-'));
    // The contenders agree with each other, 2 minutes ahead of the host the lock lives on (here: the file system's clock).
    const realNow = Date.now.bind(Date);
    const skew = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 120_000);
    try {
      const a = new LockDir(dir, { transport: new LocalTransport(), purpose: 'a', staleMs: 60_000 });
      await a.acquire();
      const b = new LockDir(dir, { transport: new LocalTransport(), purpose: 'b', staleMs: 60_000 });
      const err = await b.acquire({ waitMs: 0 }).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).toBe('ELOCKED');
      expect(b.held).toBe(false);
      await a.release();
    } finally {
      skew.mockRestore();
    }
  });

  it('a claim whose owner file a contender holds aside for a moment (rename-then-check) is still ours: the mtime is set once it is back, or left to the heartbeat', async () => {
    dir = await mkdtemp(join(tmpdir(), 'stowage-lock-stamp-'));
    const base = new LocalTransport().lockFs();
    for (const failure of [{ code: 'ENOT_FOUND', times: 2 }, { code: 'ENOT_FOUND', times: 99 }, { code: 'EIO', times: 1 }]) {
      let left = failure.times;
      const fs = {
        ...base,
        mkdir: base.mkdir.bind(base),
        createFile: base.createFile.bind(base),
        readFile: base.readFile.bind(base),
        rename: base.rename.bind(base),
        remove: base.remove.bind(base),
        stat: base.stat.bind(base),
        setMtime: async (path: string, mtimeMs: number): Promise<void> => {
          if (left-- > 0) throw new StowageError(failure.code as 'EIO', `${path}: held aside`);
          return base.setMtime(path, mtimeMs);
        },
      };
      const lock = new LockDir(dir, { fs, purpose: failure.code });
      await lock.acquire();
      expect(lock.held).toBe(true);
      expect(JSON.parse(await readFile(join(dir, 'LOCKED', 'owner.json'), 'utf8')).token).toBe(lock.owner?.token);
      await lock.release();
    }
  });

  it('refuses fs and transport together, and a transport without lockFs', () => {
    expect(() => new LockDir('/tmp', { transport: new LocalTransport(), fs: new LocalTransport().lockFs() })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => new LockDir('/tmp', { transport: { name: 'nolocks' } })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringContaining('nolocks') }));
  });
});
