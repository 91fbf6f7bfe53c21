import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LockDir } from '../../../src/lock/lock-dir.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { sync } from '../../../src/transport/sync.js';

// A nightly job holds a global LOCKED on its backup root while it writes,
// prunes and ships. sync() refuses a source under LOCKED (being written)
// unless the lock is the caller's own, named by its token.
describe('sync ownLockToken', () => {
  let root = '';
  let src = '';
  let dst = '';
  const local = new LocalTransport();
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'stowage-sync-own-'));
    src = join(root, 'src');
    dst = join(root, 'dst');
    await mkdir(join(src, '2026', '11', '22', '031500'), { recursive: true });
    await writeFile(join(src, '2026', '11', '22', '031500', 'svn.tar.gz'), 'archive bytes');
    await mkdir(dst);
  });
  afterEach(async () => rm(root, { recursive: true, force: true }));

  it('syncs a source locked by the caller, without copying the lock', async () => {
    const lock = new LockDir(src, { purpose: 'nightly' });
    await lock.withLock(async () => {
      const r = await sync(local, src, local, dst, { ownLockToken: lock.owner!.token });
      expect(r.copied.map((c) => c.path)).toEqual(['2026/11/22/031500/svn.tar.gz']);
    });
    expect(await readFile(join(dst, '2026', '11', '22', '031500', 'svn.tar.gz'), 'utf8')).toBe('archive bytes');
    await expect(stat(join(dst, 'LOCKED'))).rejects.toThrow();
  });

  it('still refuses a source locked by someone else, and names the owner', async () => {
    const lock = new LockDir(src, { purpose: 'another writer' });
    await lock.acquire();
    try {
      await expect(sync(local, src, local, dst, { ownLockToken: 'not-the-owners-token' })).rejects.toMatchObject({
        code: 'ELOCKED',
        details: { owner: { purpose: 'another writer' } },
      });
      await expect(sync(local, src, local, dst)).rejects.toMatchObject({ code: 'ELOCKED' });
    } finally {
      await lock.release();
    }
    await expect(stat(join(dst, '2026'))).rejects.toThrow();
  });

  it("syncs a source under the caller's own lock whatever its heartbeat's age (the caller's staleMs is not sync's)", async () => {
    const lock = new LockDir(src, { purpose: 'nightly', staleMs: 600_000, heartbeatMs: 150_000 });
    await lock.acquire();
    try {
      // The last heartbeat was 90 s ago: stale by sync's default 60 s, fresh by the lock's own 10 min.
      const old = new Date(Date.now() - 90_000);
      await utimes(join(src, 'LOCKED', 'owner.json'), old, old);
      await utimes(join(src, 'LOCKED'), old, old);
      const r = await sync(local, src, local, dst, { ownLockToken: lock.owner!.token });
      expect(r.copied.map((c) => c.path)).toEqual(['2026/11/22/031500/svn.tar.gz']);
    } finally {
      await lock.release();
    }
  });

  it('refuses an empty token', async () => {
    await expect(sync(local, src, local, dst, { ownLockToken: '' })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
  });
});
