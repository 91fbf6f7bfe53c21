/**
 * Free-space mode must never take the tree itself for the "verified copy
 * elsewhere" (regression: a symlinked mirror of the tree was accepted as
 * the other node, and 3 of 4 sets, the only copies, were purged).
 *
 * (a) On the local disk the same folder reached through a symlink is
 *     refused up front (real paths compared).
 * (b) Any other alias (bind mount, ssh alias of localhost, `cp -rs`
 *     mirror) is caught at removal time: once the set is renamed out of
 *     the way, its copy on the other node must still be there. A
 *     path-mapping Transport over the same folder (ChrootTransport) models
 *     an ssh alias of this host without any mount.
 *
 * No tmpfs: free space is a fixed "1 % free" so that every candidate is
 * tried.
 */
import { cp, mkdir, realpath, rm, symlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { FreeSpace } from '../../../src/transport/transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { ChrootTransport, dailyIds, makeSet, snapshot } from './helpers.js';

/** A local disk that is always nearly full. */
class LowSpace extends LocalTransport {
  renames = 0;
  override async freeSpace(): Promise<FreeSpace> {
    return { totalBytes: 100, availableBytes: 1, availablePercent: 1 };
  }
  override async rename(from: string, to: string, o?: { signal?: AbortSignal }): Promise<void> {
    this.renames++;
    return super.rename(from, to, o);
  }
}

let tmp: TempDir;
let d: string;
let root: string;
const ids = dailyIds('2026-11-22', 4);
beforeEach(async () => {
  tmp = makeTempDir('retention-same-tree');
  d = tmp.path;
  root = join(d, 'backups');
  await mkdir(root);
  for (const id of ids) await makeSet(root, id);
});
afterEach(async () => {
  await tmp.remove();
});

describe('Retention.applyFreeSpace never takes the tree itself for the copy elsewhere', () => {
  it('(a) refuses up front a local node that is the tree through a symlink, touching nothing', async () => {
    await symlink(root, join(d, 'mirror'));
    await symlink(d, join(d, 'alias')); // a symlink to a parent folder: alias/backups is the tree
    const before = await snapshot(root);
    for (const dir of [join(d, 'mirror'), join(d, 'alias', 'backups'), join(d, 'alias', 'mirror') + '/']) {
      const t = new LowSpace();
      const err = await Retention.applyFreeSpace(t, root, { minFreePercent: 50, verifiedElsewhere: [{ transport: new LocalTransport(), dir }], timeZone: 'UTC' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StowageError);
      expect(err).toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('the tree itself'), details: { option: 'verifiedElsewhere', realPath: await realpath(root) } });
      expect(t.renames).toBe(0); // refused before anything was moved
    }
    expect(await snapshot(root)).toEqual(before);
  });

  it('(b) a copy that vanishes when the set is moved aside was the tree itself: the set is put back and the run fails', async () => {
    const before = await snapshot(root);
    // The same folder seen as "/backups" through a path-mapping transport: an ssh alias of localhost.
    const alias = { transport: new ChrootTransport(d, 'ssh:localhost'), dir: '/backups' };
    const err = await Retention.applyFreeSpace(new LowSpace(), root, { minFreePercent: 50, verifiedElsewhere: [alias], timeZone: 'UTC' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StowageError);
    expect(err).toMatchObject({
      code: 'EBAD_CONFIG',
      message: expect.stringMatching(/the copy "elsewhere" ssh:localhost:\/backups\/2026\/11\/19\/030000 vanished .* it is the tree itself/),
      details: { option: 'verifiedElsewhere', set: ids[0], removed: [] },
    });
    expect(await snapshot(root)).toEqual(before); // every set in place, no trash left
  });

  it('(b) stops at the first set whose copy is the tree itself; sets with a real copy elsewhere went first', async () => {
    const remote = join(d, 'remote', 'backups');
    await cp(join(root, ids[0]!), join(remote, ids[0]!), { recursive: true }); // a real copy of the oldest set only
    const alias = { transport: new ChrootTransport(d, 'ssh:localhost'), dir: '/backups' };
    const err = await Retention.applyFreeSpace(new LowSpace(), root, { minFreePercent: 50, verifiedElsewhere: [{ transport: new LocalTransport(), dir: remote }, alias], timeZone: 'UTC' }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'EBAD_CONFIG', details: { set: ids[1], removed: [ids[0]] } });
    expect(ids.map((id) => existsSync(join(root, id)))).toEqual([false, true, true, true]);
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('a real copy removed on its node while the set is being removed: the set is kept (not "the tree itself"), and the run goes on', async () => {
    const remote = join(d, 'remote', 'backups');
    await cp(root, remote, { recursive: true });
    // The other node's own retention removes its copy of the oldest set right then.
    class RacingLocal extends LowSpace {
      override async rename(from: string, to: string, o?: { signal?: AbortSignal }): Promise<void> {
        await super.rename(from, to, o);
        if (from === join(root, ids[0]!)) await rm(join(remote, ids[0]!), { recursive: true, force: true });
      }
    }
    const res = await Retention.applyFreeSpace(new RacingLocal(), root, { minFreePercent: 50, verifiedElsewhere: [{ transport: new ChrootTransport(join(d, 'remote'), 'ssh:other'), dir: '/backups' }], timeZone: 'UTC' });
    expect(existsSync(join(root, ids[0]!))).toBe(true);
    expect(res.skipped.map((x) => [x.set.id, x.reason])).toEqual([[ids[0], expect.stringMatching(/vanished while it was removed/)]]);
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(1, 3));
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('a real copy elsewhere still lets the purge go on (the re-check finds it)', async () => {
    const remote = join(d, 'remote', 'backups');
    await cp(root, remote, { recursive: true });
    const res = await Retention.applyFreeSpace(new LowSpace(), root, { minFreePercent: 50, verifiedElsewhere: [{ transport: new ChrootTransport(join(d, 'remote'), 'ssh:other'), dir: '/backups' }], timeZone: 'UTC' });
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 3));
    expect(res.stoppedBy).toBe('minKeep');
    expect(ids.every((id) => existsSync(join(remote, id)))).toBe(true);
  });
});
