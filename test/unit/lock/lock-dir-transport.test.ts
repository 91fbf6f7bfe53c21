import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LockDir } from '../../../src/lock/lock-dir.js';
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

  it('refuses fs and transport together, and a transport without lockFs', () => {
    expect(() => new LockDir('/tmp', { transport: new LocalTransport(), fs: new LocalTransport().lockFs() })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => new LockDir('/tmp', { transport: { name: 'nolocks' } })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringContaining('nolocks') }));
  });
});
