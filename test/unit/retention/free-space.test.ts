/**
 * Free-space mode against a real small file system: a 20 MiB tmpfs (needs
 * root; withTmpfs fails loudly otherwise) holding the tree, and a second
 * LocalTransport tree standing in for the other node.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { withTmpfs, type Tmpfs } from '../../support/tmpfs.js';
import { ChrootTransport, dailyIds, makeSet, plantLock } from './helpers.js';

const MiB = 1024 * 1024;
const local = new LocalTransport();
let fs: Tmpfs;
let tmp: TempDir;
let root: string;
let remoteRoot: string;
const ids = dailyIds('2026-11-22', 5);
const has = (id: string) => existsSync(join(root, id));

beforeAll(async () => {
  fs = await withTmpfs(20);
});
afterAll(async () => {
  await fs?.stop();
});
beforeEach(async () => {
  for (const e of await readdir(fs.dir)) await rm(join(fs.dir, e), { recursive: true, force: true });
  tmp = makeTempDir('retention-free');
  root = join(fs.dir, 'backups');
  remoteRoot = join(tmp.path, 'remote', 'backups');
  await mkdir(root);
  await mkdir(remoteRoot, { recursive: true });
  for (const id of ids) await makeSet(root, id, { files: { 'data.bin': randomBytes(2 * MiB) } });
  await writeFile(join(fs.dir, 'filler'), Buffer.alloc(6 * MiB)); // ~20 % free
});
afterEach(async () => {
  await tmp.remove();
});

async function copyToRemote(which: readonly string[]): Promise<void> {
  for (const id of which) await cp(join(root, id), join(remoteRoot, id), { recursive: true });
}

const percent = async () => (await local.freeSpace(fs.dir)).availablePercent;

describe('Retention.applyFreeSpace', () => {
  it('purges oldest first only until free space reaches the target', async () => {
    await copyToRemote(ids);
    const start = await percent();
    expect(start).toBeGreaterThan(15);
    expect(start).toBeLessThan(25);
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(res.purge).toEqual(res.removed);
    expect(res.stoppedBy).toBe('target reached');
    expect(res.reachedTarget).toBe(true);
    expect(res.before.availablePercent).toBeCloseTo(start, 0);
    expect(res.after.availablePercent).toBeGreaterThanOrEqual(35);
    expect(res.after.availablePercent).toBeCloseTo(await percent(), 5);
    expect(res.removed[0]!.copyAt).toBe(`local:${join(remoteRoot, ids[0]!)}`);
    expect(res.removed[0]!.bytes).toBeGreaterThan(2 * MiB);
    expect(ids.map(has)).toEqual([false, false, true, true, true]);
    expect(ids.map((id) => existsSync(join(remoteRoot, id)))).toEqual([true, true, true, true, true]);
    expect(res.prunedDirs.map((d) => d.slice(root.length + 1))).toEqual([ids[0]!.slice(0, 10), ids[1]!.slice(0, 10)]);
  });

  it('dry run estimates the same choice and touches nothing', async () => {
    await copyToRemote(ids);
    const start = await percent();
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC', dryRun: true });
    expect(res.dryRun).toBe(true);
    expect(res.purge.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(res.removed).toEqual([]);
    expect(res.after.availablePercent).toBeGreaterThanOrEqual(35);
    expect(res.after.availableBytes - res.before.availableBytes).toBe(res.purge.reduce((n, p) => n + p.bytes, 0));
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
    expect(await percent()).toBeCloseTo(start, 5);
  });

  it('skips sets with no copy on the other node, and the next oldest goes instead', async () => {
    await copyToRemote(ids.slice(1));
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([[ids[0]!, expect.stringMatching(/^no verified copy on another node: .*data\.bin is missing$/)]]);
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(1, 3));
    expect(ids.map(has)).toEqual([true, false, false, true, true]);
  });

  it('a remote mutant (same size, other bytes) or a locked remote set is not a verified copy', async () => {
    await copyToRemote(ids);
    await writeFile(join(remoteRoot, ids[0]!, 'data.bin'), Buffer.alloc(2 * MiB));
    await plantLock(join(remoteRoot, ids[1]!));
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.skipped.map((s) => s.set.id)).toEqual(ids.slice(0, 2));
    expect(res.skipped[0]!.reason).toMatch(/does not match the DNA of/);
    expect(res.skipped[1]!.reason).toMatch(/is locked by .*LOCKED/);
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(2, 4));
  });

  it('a node that cannot be checked does not count; another node with a copy does', async () => {
    await copyToRemote(ids);
    const broken = new ChrootTransport(join(tmp.path, 'nowhere'), 'broken');
    const far = new ChrootTransport(join(tmp.path, 'remote'), 'far');
    const res = await Retention.applyFreeSpace(local, root, {
      minFreePercent: 35,
      verifiedElsewhere: [{ transport: broken, dir: '/backups' }, { transport: far, dir: '/backups' }],
      timeZone: 'UTC',
    });
    expect(res.removed.map((p) => [p.set.id, p.copyAt])).toEqual([
      [ids[0]!, `far:/backups/${ids[0]!}`],
      [ids[1]!, `far:/backups/${ids[1]!}`],
    ]);
    expect(far.digests).toBe(2); // computed on the far side
  });

  it('never goes below minKeep, even when the target cannot be reached', async () => {
    await copyToRemote(ids);
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 90, minKeep: 3, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(res.stoppedBy).toBe('minKeep');
    expect(res.reachedTarget).toBe(false);
    expect(ids.map(has)).toEqual([false, false, true, true, true]);
  });

  it('never purges the newest set, whatever minKeep allows', async () => {
    await copyToRemote(ids.slice(1));
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 95, minKeep: 1, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(1, 4));
    expect(res.stoppedBy).toBe('no more candidates');
    expect(ids.map(has)).toEqual([true, false, false, false, true]);
  });

  it('does nothing when there is enough free space', async () => {
    await rm(join(fs.dir, 'filler'));
    await copyToRemote(ids);
    // Nor looks into any set beyond the tree's own listing (each look is a walk of its tree, over SSH too).
    const looked: string[] = [];
    const counting = new LocalTransport();
    const list = counting.list.bind(counting);
    counting.list = (dir, o) => {
      if (ids.some((id) => dir.startsWith(join(root, id)))) looked.push(dir);
      return list(dir, o);
    };
    const res = await Retention.applyFreeSpace(counting, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.removed).toEqual([]);
    expect(res.stoppedBy).toBe('target reached');
    expect(looked.sort()).toEqual(ids.map((id) => join(root, id)).sort());
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
  });

  it('leaves locked sets alone', async () => {
    await copyToRemote(ids);
    await plantLock(join(root, ids[0]!));
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(res.skipped.map((s) => [s.set.id, s.reason.slice(0, 9)])).toEqual([[ids[0]!, 'locked by']]);
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(1, 3));
  });

  it('aborted before start rejects with the reason; aborted midway stops between sets', async () => {
    await copyToRemote(ids);
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    const opts = { minFreePercent: 90, minKeep: 1, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' };
    await expect(Retention.applyFreeSpace(local, root, { ...opts, signal: ac.signal })).rejects.toBe(reason);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
    const mid = new AbortController();
    await expect(
      Retention.applyFreeSpace(local, root, {
        ...opts,
        signal: mid.signal,
        onProgress: (p) => {
          if (p.phase === 'purge' && p.itemsDone >= 1) mid.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(ids.map(has)).toEqual([false, true, true, true, true]);
  });

  it.each([
    [{ verifiedElsewhere: [] }, /"verifiedElsewhere"/],
    [{ verifiedElsewhere: [{ dir: '/x' }] }, /"verifiedElsewhere"/],
    [{ verifiedElsewhere: 'remote' }, /"verifiedElsewhere"/],
    [{ minFreePercent: 0 }, /"minFreePercent"/],
    [{ minFreePercent: 100 }, /"minFreePercent"/],
    [{ minFreePercent: '10' }, /"minFreePercent"/],
    [{ minKeep: 0 }, /"minKeep"/],
    [{ minkeep: 2 }, /unknown option "minkeep"/],
    [{ dryRun: 1 }, /"dryRun"/],
  ])('refuses %j with EBAD_CONFIG', async (bad, pattern) => {
    const opts = { minFreePercent: 10, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], ...bad };
    await expect(Retention.applyFreeSpace(local, root, opts as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(pattern) });
  });

  it('never purges a set still being written or without a finished file: nothing there can be proven copied', async () => {
    // The two oldest sets: one holds only a .part file, one holds nothing but an orphan sidecar. The other node is empty for them.
    await rm(join(root, ids[0]!), { recursive: true });
    await makeSet(root, ids[0]!, { files: { 'big.tar.gz.part': randomBytes(2 * MiB) }, sidecars: false });
    await rm(join(root, ids[1]!), { recursive: true });
    await mkdir(join(root, ids[1]!), { recursive: true });
    await writeFile(join(root, ids[1]!, 'gone.tar.gz.dna'), '{"dig": "d41d8cd98f00b204e9800998ecf8427e", "size": 0}');
    await copyToRemote(ids.slice(2));
    const res = await Retention.applyFreeSpace(local, root, { minFreePercent: 35, verifiedElsewhere: [{ transport: local, dir: remoteRoot }], timeZone: 'UTC' });
    expect(has(ids[0]!) && has(ids[1]!)).toBe(true);
    expect(res.skipped.map((x) => [x.set.id, x.reason.split(' ')[0]]).slice(0, 2)).toEqual([
      [ids[0], 'incomplete'],
      [ids[1], 'it'],
    ]);
    expect(res.removed.map((p) => p.set.id)[0]).toBe(ids[2]);
  });

  it('refuses the tree itself as the other node, and a missing tree', async () => {
    await expect(Retention.applyFreeSpace(local, root, { minFreePercent: 10, verifiedElsewhere: [{ transport: local }] })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('the tree itself') });
    // The same tree named another way: another LocalTransport, a trailing slash, a detour through "..".
    for (const other of [{ transport: new LocalTransport(), dir: root }, { transport: local, dir: root + '/' }, { transport: local, dir: join(root, 'x') + '/..' }, { transport: new LocalTransport(), dir: relative(process.cwd(), root) }]) {
      await expect(Retention.applyFreeSpace(local, root, { minFreePercent: 99, verifiedElsewhere: [other] })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('the tree itself') });
    }
    expect(ids.every(has)).toBe(true);
    await expect(Retention.applyFreeSpace(local, join(root, 'nope'), { minFreePercent: 10, verifiedElsewhere: [{ transport: local, dir: remoteRoot }] })).rejects.toMatchObject({ code: 'ENOT_FOUND' });
    await expect(Retention.applyFreeSpace(local, root, undefined as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
  });
});
