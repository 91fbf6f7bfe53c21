import { appendFile, mkdir, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StowageWarning } from '../../../src/errors.js';
import { LockDir } from '../../../src/lock/lock-dir.js';
import type { Progress } from '../../../src/progress.js';
import { Retention, type BackupSet } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { ChrootTransport, dailyIds, link, makeSet, plantLock, setTreeMtime, snapshot } from './helpers.js';

const local = new LocalTransport();
let tmp: TempDir;
let root: string;
beforeEach(async () => {
  tmp = makeTempDir('retention-apply');
  root = join(tmp.path, 'backups');
  await mkdir(root);
});
afterEach(async () => {
  await tmp.remove();
});

const NOW = Date.parse('2026-11-22T12:00:00Z');
const has = (id: string) => existsSync(join(root, id));

describe('Retention.apply', () => {
  it('dry run plans and touches nothing; the real run removes the purged sets and prunes empty folders', async () => {
    const ids = dailyIds('2026-11-22', 40); // 2026-10-14 … 2026-11-22
    for (const id of ids) await makeSet(root, id);
    await link(root, ids.at(-1)!);
    const r = new Retention({ keepDaily: 7, keepMonthly: 3, timeZone: 'UTC' });
    const before = await snapshot(root);

    // With maxPurgeFraction 0.5, a first run over a long history (purging most of it) is refused, also as a dry run.
    await expect(r.apply(local, root, { dryRun: true, now: NOW, maxPurgeFraction: 0.5 })).rejects.toMatchObject({ code: 'EDELETE_GUARD', details: { purge: 32, planned: 40, maxPurgeFraction: 0.5 } });
    await expect(r.apply(local, root, { now: NOW, maxPurgeFraction: 0.5 })).rejects.toMatchObject({ code: 'EDELETE_GUARD' });
    expect(await snapshot(root)).toEqual(before);
    await expect(r.apply(local, root, { now: NOW, maxPurgeFraction: 1.5 })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
    const dry = await r.apply(local, root, { dryRun: true, now: NOW, maxPurgeFraction: 0.8 });
    expect(dry.dryRun).toBe(true);
    expect(dry.removed).toEqual([]);
    expect(await snapshot(root)).toEqual(before);
    const expectedKeep = [...ids.slice(-7)].reverse().concat(['2026/10/31/030000']);
    expect(dry.plan.keep.map((k) => k.item.id)).toEqual(expectedKeep);
    expect(dry.kept).toBe(dry.plan.keep);
    expect(dry.plan.purge).toHaveLength(40 - 8);
    expect(dry.plan.keep.every((k) => k.item.verified && k.item.complete && k.counted)).toBe(true);

    const real = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    expect(real.dryRun).toBe(false);
    expect(real.plan).toEqual(dry.plan);
    expect(real.removed.map((x) => x.id)).toEqual(dry.plan.purge.map((p) => p.item.id).reverse()); // oldest first
    for (const id of ids) expect(has(id), id).toBe(expectedKeep.includes(id));
    // Every day folder of a removed set is gone, the month folders that still hold a set remain.
    expect(real.prunedDirs.map((d) => d.slice(root.length + 1))).toContain('2026/10/14');
    expect(has('2026/10/14')).toBe(false);
    expect(has('2026/10')).toBe(true);
    expect((await readdir(join(root, '2026/10'))).sort()).toEqual(['31']);
    expect(existsSync(join(root, 'last'))).toBe(true);
    // No trash left behind.
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);

    const again = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    expect(again.removed).toEqual([]);
    expect(again.plan.purge).toEqual([]);
  });

  it('removes empty month and year folders, never the root', async () => {
    await makeSet(root, '2024/12/31/030000');
    await makeSet(root, '2026/11/22/030000');
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    expect(res.removed.map((x) => x.id)).toEqual(['2024/12/31/030000']);
    expect(res.prunedDirs.map((d) => d.slice(root.length + 1))).toEqual(['2024/12/31', '2024/12', '2024']);
    expect(await snapshot(root)).toEqual(['2026/', '2026/11/', '2026/11/22/', '2026/11/22/030000/', '2026/11/22/030000/repo.tar.gz', '2026/11/22/030000/repo.tar.gz.dna']);
  });

  it('a mutant does not count: the slot goes to the next verified set; a newer mutant is kept and flagged, an older one purged', async () => {
    const ids = dailyIds('2026-11-22', 5);
    for (const id of ids) await makeSet(root, id);
    await appendFile(join(root, ids[4]!, 'repo.tar.gz'), 'x'); // newest: size differs
    await writeFile(join(root, ids[2]!, 'repo.tar.gz'), Buffer.alloc(1024)); // same size, other bytes
    const res = await new Retention({ keepLast: 2, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    const keep = Object.fromEntries(res.plan.keep.map((k) => [k.item.id, k.rules]));
    expect(keep).toEqual({ [ids[4]!]: ['unverified-newer'], [ids[3]!]: ['newest-verified', 'last'], [ids[1]!]: ['last'] });
    const newest = res.plan.keep[0]!.item;
    expect(newest.verified).toBe(false);
    expect(newest.problems[0]).toMatch(/repo\.tar\.gz does not match its DNA/);
    expect(res.plan.purge.map((p) => [p.item.id, p.rule])).toEqual([
      [ids[2]!, 'unverified'],
      [ids[0]!, 'expired'],
    ]);
    expect(has(ids[2]!)).toBe(false);
    expect(has(ids[4]!)).toBe(true);
  });

  it('verifies through the transport digest (a far tree seen only through its transport)', async () => {
    const far = new ChrootTransport(tmp.path, 'far');
    for (const id of dailyIds('2026-11-22', 4)) await makeSet(root, id, { files: { 'a.tar.gz': 'A', 'b.tar.gz': 'B' } });
    const res = await new Retention({ keepLast: 2, timeZone: 'UTC' }).apply(far, '/backups', { now: NOW, maxPurgeFraction: 1 });
    expect(far.digests).toBe(8);
    expect(res.removed.map((x) => x.set.path)).toEqual(['/backups/2026/11/19/030000', '/backups/2026/11/20/030000']);
    expect(has('2026/11/19/030000')).toBe(false);
    expect(has('2026/11/21/030000')).toBe(true);
  });

  it("sets without any sidecar cannot be verified, so 'sidecar' purges nothing; 'none' trusts them", async () => {
    const ids = dailyIds('2026-11-22', 4);
    for (const id of ids) await makeSet(root, id, { sidecars: false });
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    const strict = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    expect(strict.removed).toEqual([]);
    expect(strict.plan.keep.every((k) => k.rules.includes('unverified-newer'))).toBe(true);
    expect(strict.plan.keep[0]!.item.problems).toEqual(['no file of the set has a DNA sidecar, so nothing can be verified']);
    const trusting = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1, verify: 'none' });
    expect(trusting.removed.map((x) => x.id)).toEqual(ids.slice(0, 3));
  });

  it('an orphan sidecar (its file is gone) makes a set unverified', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id, { files: { 'a.tar.gz': 'A', 'b.tar.gz': 'B' } });
    await rename(join(root, ids[1]!, 'b.tar.gz'), join(tmp.path, 'stolen'));
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, dryRun: true });
    const mid = res.plan.purge.find((p) => p.item.id === ids[1]);
    expect(mid?.rule).toBe('unverified');
    expect(mid?.item.problems[0]).toMatch(/orphan sidecar .*b\.tar\.gz\.dna/);
  });

  it('a custom verify function decides; non-boolean answers and throws stop before anything is removed', async () => {
    const ids = dailyIds('2026-11-22', 4);
    for (const id of ids) await makeSet(root, id, { sidecars: false });
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    const seen: string[] = [];
    const res = await r.apply(local, root, {
      now: NOW,
      maxPurgeFraction: 1,
      verify: async (set: BackupSet, ctx) => {
        expect(ctx.transport).toBe(local);
        seen.push(set.id);
        return set.id !== ids[3];
      },
    });
    expect(seen).toEqual(ids);
    expect(res.plan.keep.map((k) => [k.item.id, k.rules])).toEqual([
      [ids[3]!, ['unverified-newer']],
      [ids[2]!, ['newest-verified', 'last']],
    ]);
    expect(res.removed.map((x) => x.id)).toEqual(ids.slice(0, 2));

    await expect(r.apply(local, root, { now: NOW, maxPurgeFraction: 1, verify: async () => 'yes' as never })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('boolean') });
    const boom = new Error('verifier down');
    await expect(r.apply(local, root, { now: NOW, maxPurgeFraction: 1, verify: async () => Promise.reject(boom) })).rejects.toBe(boom);
    expect(has(ids[2]!) && has(ids[3]!)).toBe(true);
  });

  it('incomplete sets whose writer stopped: a .part file or no data; the newest is kept, an older one where the policy keeps it, an empty one purged', async () => {
    const ids = dailyIds('2026-11-22', 4);
    await makeSet(root, ids[0]!, { files: { 'repo.tar.gz.part': 'half' }, sidecars: false });
    await mkdir(join(root, ids[1]!), { recursive: true }); // empty set
    await makeSet(root, ids[2]!);
    await makeSet(root, ids[3]!, { files: { 'repo.tar.gz': 'done' } });
    await writeFile(join(root, ids[3]!, 'wiki.tar.gz.part'), 'half');
    for (const id of ids) await setTreeMtime(join(root, id), Date.parse(`${id.slice(0, 10).replaceAll('/', '-')}T03:30:00Z`)); // nothing written since that night
    // 03:30 to 12:00 is past a 6 h grace: the newest set's writer stopped too.
    const res = await new Retention({ keepLast: 3, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, inProgressGrace: '6h' });
    expect(res.plan.keep.map((k) => [k.item.id, k.rules, k.counted])).toEqual([
      [ids[3]!, ['newest-verified', 'incomplete-newer'], false],
      [ids[2]!, ['last'], true],
      [ids[0]!, ['last'], false], // the unfinished file may be all there is of that night: a stand-in
    ]);
    expect(res.plan.purge.map((p) => [p.item.id, p.rule])).toEqual([
      [ids[1]!, 'unverified'], // nothing to verify in an empty set
    ]);
    expect(res.plan.keep[0]!.item.problems).toEqual([expect.stringMatching(/^unfinished: .*wiki\.tar\.gz\.part \(last change 2026-11-22T03:30:00\.000Z, more than inProgressGrace 6h before now: its writer stopped\)$/)]);
    expect(res.plan.keep[0]!.item.inProgress).toBe(false);
    expect(has(ids[0]!)).toBe(true);
    expect(has(ids[1]!)).toBe(false);
  });

  it('never touches a set under a LOCKED directory, at any level; reports it as skipped', async () => {
    const ids = ['2026/09/30/030000', '2026/10/01/030000', '2026/10/02/030000', '2026/11/01/030000', '2026/11/02/030000', '2026/11/03/030000', '2026/11/22/030000'];
    for (const id of ids) await makeSet(root, id);
    await plantLock(join(root, '2026/10'));
    await plantLock(join(root, '2026/11/02/030000'));
    const warnings: StowageWarning[] = [];
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, onWarning: (w) => warnings.push(w) });
    expect(res.skipped.map((s) => [s.set.id, s.reason.slice(0, 9)])).toEqual([
      ['2026/10/01/030000', 'locked by'],
      ['2026/10/02/030000', 'locked by'],
      ['2026/11/02/030000', 'locked by'],
    ]);
    expect(res.removed.map((x) => x.id)).toEqual(['2026/09/30/030000', '2026/11/01/030000', '2026/11/03/030000']);
    for (const id of ['2026/10/01/030000', '2026/10/02/030000', '2026/11/02/030000', '2026/11/22/030000']) expect(has(id), id).toBe(true);
    expect(warnings.filter((w) => w.code === 'ELOCKED')).toHaveLength(2);
  });

  it('a LOCKED root stops everything; the caller own lock (LockDir token) does not', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    const lock = new LockDir(root, { purpose: 'nightly backup' });
    await lock.acquire();
    try {
      const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
      const blocked = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1 });
      expect(blocked.removed).toEqual([]);
      expect(blocked.skipped).toHaveLength(3);
      expect(blocked.plan.keep).toEqual([]);
      const mine = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1, ownLockToken: lock.owner!.token });
      expect(mine.removed.map((x) => x.id)).toEqual(ids.slice(0, 2));
      expect(existsSync(join(root, 'LOCKED', 'owner.json'))).toBe(true);
    } finally {
      await lock.release();
    }
  });

  it('a lock that appears after the plan is honoured at removal time', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, {
      now: NOW,
      maxPurgeFraction: 1,
      verify: async (set) => {
        // The oldest set was listed and inspected unlocked; now someone starts writing into it.
        if (set.id === ids[2]) await mkdir(join(root, ids[0]!, 'LOCKED'));
        return true;
      },
    });
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([[ids[0]!, expect.stringMatching(/^locked by .*LOCKED \(appeared after the plan\)$/)]]);
    expect(res.removed.map((x) => x.id)).toEqual([ids[1]!]);
    expect(has(ids[0]!)).toBe(true);
  });

  it('leftovers of an interrupted run: an undecided trash set is put back and planned, a decided purge and a temporary link removed; never mistaken for sets', async () => {
    for (const id of dailyIds('2026-11-22', 2)) await makeSet(root, id);
    const undecided = '2026/11/20/.stowage-aside-030000-deadbeef';
    const decided = '2026/11/19/.stowage-purging-030000-0badcafe';
    await makeSet(root, undecided, { sidecars: false });
    await makeSet(root, decided, { sidecars: false });
    await plantLock(join(root, '2026/11/21'));
    await makeSet(root, '2026/11/21/.stowage-aside-040000-cafe', { sidecars: false });
    await symlink('2026/11/22/030000', join(root, '.stowage-tmp-last-1234'));
    const warnings: StowageWarning[] = [];
    const r = new Retention({ keepLast: 5, timeZone: 'UTC' });
    const before = await snapshot(root);
    const dry = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1, dryRun: true, onWarning: (w) => warnings.push(w) });
    expect(await snapshot(root)).toEqual(before);
    expect(dry.leftoversRemoved).toEqual([]);
    const byPath = (x: { leftovers: readonly { path: string; action: string; to?: string; setId?: string }[] }) =>
      Object.fromEntries(x.leftovers.map((l) => [l.path.slice(root.length + 1), [l.action, l.setId, l.to?.slice(root.length + 1)]]));
    expect(byPath(dry)).toEqual({
      [undecided]: ['put back', '2026/11/20/030000', '2026/11/20/030000'],
      [decided]: ['remove', '2026/11/19/030000', undefined],
      '2026/11/21/.stowage-aside-040000-cafe': ['leave', undefined, undefined], // under a lock
      '.stowage-tmp-last-1234': ['remove', undefined, undefined],
    });
    // The set to be put back is planned, where it lies for now.
    const planned = dry.plan.keep.find((k) => k.item.id === '2026/11/20/030000')!;
    expect(planned.item.set.path).toBe(join(root, undecided));

    const res = await r.apply(local, root, { now: NOW, maxPurgeFraction: 1 });
    expect(byPath(res)).toEqual(byPath(dry));
    expect(res.leftoversRemoved.slice().sort()).toEqual([join(root, '.stowage-tmp-last-1234'), join(root, decided)]);
    expect(has(undecided) || has(decided) || has('.stowage-tmp-last-1234')).toBe(false);
    expect(has('2026/11/20/030000/repo.tar.gz')).toBe(true); // back under its name
    expect(res.plan.keep.find((k) => k.item.id === '2026/11/20/030000')!.item.set.path).toBe(join(root, '2026/11/20/030000'));
    expect(res.removed).toEqual([]);
    expect(has('2026/11/21/.stowage-aside-040000-cafe')).toBe(true); // under a lock
    expect(warnings.filter((w) => w.code !== 'ELOCKED')).toEqual([]);
  });

  it('leaves trash that holds a live writer\'s LOCKED alone, with a warning (a set whose removal was rolled back halfway)', async () => {
    for (const id of dailyIds('2026-11-22', 2)) await makeSet(root, id);
    // A set renamed to trash whose rename back failed: its writer's lock is inside, at the top or deeper.
    const top = '2026/11/20/.stowage-aside-030000-deadbeef';
    const deep = '2026/11/20/.stowage-aside-040000-cafebabe';
    await makeSet(root, top);
    await plantLock(join(root, top));
    await makeSet(root, deep, { files: { 'svn/repo.tar.gz': randomBytes(100) } });
    await plantLock(join(root, deep, 'svn'));
    // Ours (the caller's own lock token) and plain trash go back.
    const own = '2026/11/21/.stowage-aside-050000-0badf00d';
    await makeSet(root, own);
    await plantLock(join(root, own), 'my-token');
    const plain = '2026/11/21/.stowage-aside-060000-12345678';
    await makeSet(root, plain, { sidecars: false });
    const warnings: StowageWarning[] = [];
    const res = await new Retention({ keepLast: 5, timeZone: 'UTC' }).apply(local, root, { now: NOW, ownLockToken: 'my-token', onWarning: (w) => warnings.push(w) });
    expect(res.leftoversRemoved).toEqual([]);
    expect(res.leftovers.filter((l) => l.action === 'put back').map((l) => l.setId).sort()).toEqual(['2026/11/21/050000', '2026/11/21/060000']);
    expect(has('2026/11/21/050000/repo.tar.gz') && has('2026/11/21/060000/repo.tar.gz')).toBe(true);
    expect(has(top) && has(join(top, 'repo.tar.gz')) && has(join(top, 'LOCKED'))).toBe(true);
    expect(has(deep) && has(join(deep, 'svn', 'repo.tar.gz')) && has(join(deep, 'svn', 'LOCKED'))).toBe(true);
    warnings.sort((a, b) => (a.path < b.path ? -1 : 1));
    expect(warnings.map((w) => [w.code, w.path])).toEqual([
      ['ELOCKED', join(root, top)],
      ['ELOCKED', join(root, deep)],
    ]);
    expect(warnings[0]!.message).toContain(`move it back to ${join(root, '2026/11/20/030000')}`);
    expect(warnings[1]!.message).toContain(join(root, deep, 'svn', 'LOCKED'));
    // strict turns the warning into the error, and the trash still stays.
    await expect(new Retention({ keepLast: 5, timeZone: 'UTC' }).apply(local, root, { now: NOW, strict: true })).rejects.toMatchObject({ code: 'ELOCKED' });
    expect(has(top) && has(deep)).toBe(true);
  });

  it('maxPurge refuses a plan that purges too much (EDELETE_GUARD), removing nothing', async () => {
    const ids = dailyIds('2026-11-22', 6);
    for (const id of ids) await makeSet(root, id);
    const before = await snapshot(root);
    await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, maxPurge: 4 })).rejects.toMatchObject({
      code: 'EDELETE_GUARD',
      details: { purge: 5, maxPurge: 4 },
    });
    expect(await snapshot(root)).toEqual(before);
    const ok = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, maxPurge: 5 });
    expect(ok.removed).toHaveLength(5);
  });

  it('reads set times in the policy zone: a Berlin tree keeps its Berlin days', async () => {
    // 23:30 and 00:30 Berlin on consecutive local days, one UTC day.
    await makeSet(root, '2026/11/20/233000');
    await makeSet(root, '2026/11/21/003000');
    await makeSet(root, '2026/11/21/010000');
    const berlin = await new Retention({ keepDaily: 2, timeZone: 'Europe/Berlin' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, dryRun: true });
    expect(berlin.plan.purge.map((p) => p.item.id)).toEqual(['2026/11/21/003000']);
    const tokyo = await new Retention({ keepDaily: 2, timeZone: 'Asia/Tokyo' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, dryRun: true });
    expect(tokyo.plan.purge.map((p) => p.item.id)).toEqual(['2026/11/21/003000']);
    expect(berlin.plan.keep[1]!.item.time.toISOString()).toBe('2026-11-20T22:30:00.000Z');
    expect(tokyo.plan.keep[1]!.item.time.toISOString()).toBe('2026-11-20T14:30:00.000Z');
  });

  it('reports progress per phase', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    const seen: Progress[] = [];
    await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, onProgress: (p) => seen.push(p) });
    const last = (phase: string) => seen.filter((p) => p.phase === phase).at(-1);
    expect(last('scan')).toMatchObject({ itemsDone: 3 });
    expect(last('verify')).toMatchObject({ itemsDone: 3, itemsTotal: 3, bytesDone: 3 * 1024 });
    expect(last('purge')).toMatchObject({ itemsDone: 2, itemsTotal: 2 });
    expect(last('purge')!.bytesDone).toBeGreaterThan(2 * 1024);
  });

  it('aborted before start: rejects with the reason and touches nothing', async () => {
    for (const id of dailyIds('2026-11-22', 3)) await makeSet(root, id);
    const before = await snapshot(root);
    const ac = new AbortController();
    const reason = new Error('stop now');
    ac.abort(reason);
    await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, maxPurgeFraction: 1, signal: ac.signal })).rejects.toBe(reason);
    expect(await snapshot(root)).toEqual(before);
  });

  it('aborted midway: the set being removed goes whole, the rest stays, no trash', async () => {
    const ids = dailyIds('2026-11-22', 6);
    for (const id of ids) await makeSet(root, id);
    const ac = new AbortController();
    const reason = new Error('operator pressed ^C');
    let doneAtAbort = -1;
    await expect(
      new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, {
        now: NOW,
        maxPurgeFraction: 1,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.phase === 'purge' && p.itemsDone >= 1 && !ac.signal.aborted) {
            doneAtAbort = p.itemsDone;
            ac.abort(reason);
          }
        },
      }),
    ).rejects.toBe(reason);
    expect(doneAtAbort).toBeGreaterThanOrEqual(1);
    expect(doneAtAbort).toBeLessThan(5);
    expect(ids.map(has)).toEqual(ids.map((_, k) => k >= doneAtAbort));
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('aborted during verification: nothing is removed', async () => {
    const ids = dailyIds('2026-11-22', 4);
    for (const id of ids) await makeSet(root, id);
    const before = await snapshot(root);
    const ac = new AbortController();
    const reason = new Error('stop');
    await expect(
      new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, {
        now: NOW,
        maxPurgeFraction: 1,
        signal: ac.signal,
        verify: async (set) => {
          if (set.id === ids[1]) ac.abort(reason);
          return true;
        },
      }),
    ).rejects.toBe(reason);
    expect(await snapshot(root)).toEqual(before);
  });

  it('a missing tree is ENOT_FOUND', async () => {
    await expect(new Retention({ keepLast: 1 }).apply(local, join(root, 'nope'))).rejects.toMatchObject({ code: 'ENOT_FOUND', details: { path: join(root, 'nope') } });
  });

  it.each([
    [{ dryrun: true }, /unknown option "dryrun".*dryRun/],
    [{ dryRun: 'yes' }, /"dryRun"/],
    [{ verify: 'md5' }, /"verify"/],
    [{ maxPurge: -1 }, /"maxPurge"/],
    [{ now: 'today' }, /now/],
    [{ linkName: '../last' }, /"linkName"/],
    [{ onWarning: 'log' }, /"onWarning"/],
  ])('refuses bad options %j with EBAD_CONFIG', async (opts, pattern) => {
    await expect(new Retention({ keepLast: 1 }).apply(local, root, opts as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(pattern) });
  });
});

describe('Retention.apply removal races', () => {
  it('a lock planted in a sub-folder of the set after the plan (a writer adding to svn/) puts the set back', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id, { files: { 'svn/repo.tar.gz': randomBytes(512), 'trac/wiki.tar.gz': randomBytes(512) } });
    class RacyTransport extends LocalTransport {
      override async rename(from: string, to: string, o?: { signal?: AbortSignal }): Promise<void> {
        if (from === join(root, ids[0]!)) await mkdir(join(from, 'svn', 'LOCKED'), { recursive: true });
        return super.rename(from, to, o);
      }
    }
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(new RacyTransport(), root, { now: NOW, maxPurgeFraction: 1 });
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([[ids[0]!, expect.stringMatching(/^locked by .*\/svn\/LOCKED \(appeared during the removal\)$/)]]);
    expect(res.removed.map((x) => x.id)).toEqual([ids[1]!]);
    expect(existsSync(join(root, ids[0]!, 'svn', 'LOCKED'))).toBe(true);
    expect(existsSync(join(root, ids[0]!, 'svn', 'repo.tar.gz'))).toBe(true);
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('a lock planted between the check and the rename puts the set back', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    // A writer that locks the oldest set at the last moment, just before our rename.
    class RacyTransport extends LocalTransport {
      override async rename(from: string, to: string, o?: { signal?: AbortSignal }): Promise<void> {
        if (from === join(root, ids[0]!)) await mkdir(join(from, 'LOCKED'), { recursive: true });
        return super.rename(from, to, o);
      }
    }
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(new RacyTransport(), root, { now: NOW, maxPurgeFraction: 1 });
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([[ids[0]!, expect.stringMatching(/^locked by .*\/LOCKED \(appeared during the removal\)$/)]]);
    expect(res.removed.map((x) => x.id)).toEqual([ids[1]!]);
    expect(existsSync(join(root, ids[0]!, 'LOCKED'))).toBe(true);
    expect(existsSync(join(root, ids[0]!, 'repo.tar.gz'))).toBe(true);
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('a set removed by someone else meanwhile is skipped, not an error', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, {
      now: NOW,
      maxPurgeFraction: 1,
      verify: async (set) => {
        if (set.id === ids[2]) await rm(join(root, ids[0]!), { recursive: true });
        return true;
      },
    });
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([[ids[0]!, 'vanished before it could be removed']]);
    expect(res.removed.map((x) => x.id)).toEqual([ids[1]!]);
  });
});
