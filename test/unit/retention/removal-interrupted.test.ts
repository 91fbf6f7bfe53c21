/**
 * A removal that is stopped before it is decided puts the set back
 * (regression: an abort, or a transport error, between renaming a set to
 * `.stowage-aside-…` and removing it left the whole set as trash; a dry run
 * said nothing about it; and the next real run removed it unannounced, with
 * no plan and no maxPurge count. Applying `keepLast: 1` by mistake, pressing
 * ^C, and running again with the corrected `keepDaily: 30` still lost set
 * 2026/11/18, which the corrected policy keeps. Free-space mode went through
 * the same removal).
 *
 * Now every step after the rename puts the set back on any error, an abort
 * included; a removal is marked decided (`.stowage-purging-…`) before
 * anything is deleted; and the next run puts back what was never decided
 * (planning it under the policy in force), removes only what was, and says
 * so in `leftovers`, in the dry run too.
 */
import { cp, mkdir, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError, type StowageWarning } from '../../../src/errors.js';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { FreeSpace, OpOptions, TransportEntry } from '../../../src/transport/transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { dailyIds, makeSet, snapshot } from './helpers.js';

const NOW = Date.parse('2026-11-22T12:00:00Z');
const ids = dailyIds('2026-11-22', 5); // 18 … 22 November
let tmp: TempDir;
let root: string;
const has = (id: string) => existsSync(join(root, id));
const junk = async () => (await snapshot(root)).filter((p) => p.includes('.stowage-'));

/** Aborts `ac` (or throws an I/O error) when a trash folder is listed: right after the rename, before anything is decided. */
class TroubleAtTrash extends LocalTransport {
  constructor(
    private readonly onTrash: () => void,
    private readonly full = false,
  ) {
    super();
  }
  override async list(dir: string, o?: OpOptions): Promise<TransportEntry[]> {
    if (basename(dir).startsWith('.stowage-aside-')) this.onTrash();
    return super.list(dir, o);
  }
  override async freeSpace(path: string, o?: OpOptions): Promise<FreeSpace> {
    return this.full ? { totalBytes: 1e12, availableBytes: 1e10, availablePercent: 1 } : super.freeSpace(path, o);
  }
}

beforeEach(async () => {
  tmp = makeTempDir('retention-interrupted');
  root = join(tmp.path, 'backups');
  await mkdir(root);
  for (const id of ids) await makeSet(root, id);
});
afterEach(async () => {
  await tmp.remove();
});

describe('a removal stopped before it is decided puts the set back', () => {
  it('^C during a wrong policy, then the corrected policy: set 2026/11/18 is still there', async () => {
    const ac = new AbortController();
    const reason = new Error('operator pressed ^C');
    const t = new TroubleAtTrash(() => ac.abort(reason));
    await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(t, root, { now: NOW, signal: ac.signal })).rejects.toBe(reason);
    expect(await junk()).toEqual([]);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);

    const fixed = new Retention({ keepDaily: 30, timeZone: 'UTC' });
    const dry = await fixed.apply(new LocalTransport(), root, { now: NOW, dryRun: true });
    expect(dry.leftovers).toEqual([]);
    expect(dry.plan.purge).toEqual([]);
    const res = await fixed.apply(new LocalTransport(), root, { now: NOW });
    expect(res.removed).toEqual([]);
    expect(res.leftoversRemoved).toEqual([]);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
  });

  it('a transport error after the rename puts the set back and is thrown', async () => {
    const boom = new StowageError('EIO', 'listing failed: connection reset');
    const t = new TroubleAtTrash(() => {
      throw boom;
    });
    await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(t, root, { now: NOW })).rejects.toBe(boom);
    expect(await junk()).toEqual([]);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
  });

  it('free-space mode: ^C during a removal puts the set back', async () => {
    const remote = join(tmp.path, 'remote', 'backups');
    await cp(root, remote, { recursive: true });
    const ac = new AbortController();
    const reason = new Error('stop');
    const t = new TroubleAtTrash(() => ac.abort(reason), true);
    await expect(Retention.applyFreeSpace(t, root, { minFreePercent: 50, verifiedElsewhere: [{ transport: new LocalTransport(), dir: remote }], timeZone: 'UTC', signal: ac.signal })).rejects.toBe(reason);
    expect(await junk()).toEqual([]);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
  });

  it('an abort once the removal is decided leaves .stowage-purging-…, which the next run reports and removes', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    class AbortWhileRemoving extends LocalTransport {
      override async remove(path: string, o?: OpOptions & { recursive?: boolean; force?: boolean }): Promise<void> {
        if (basename(path).startsWith('.stowage-purging-')) ac.abort(reason);
        return super.remove(path, o);
      }
    }
    await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(new AbortWhileRemoving(), root, { now: NOW, signal: ac.signal })).rejects.toBe(reason);
    const left = await junk();
    expect(left).toEqual([expect.stringMatching(/^2026\/11\/18\/\.stowage-purging-030000-[0-9a-f]{8}\/$/), expect.stringMatching(/^2026\/11\/18\/\.stowage-purging-030000-[0-9a-f]{8}\/repo\.tar\.gz$/), expect.stringMatching(/repo\.tar\.gz\.dna$/)]);
    expect(has(ids[0]!)).toBe(false);

    const r = new Retention({ keepDaily: 30, timeZone: 'UTC' });
    const dry = await r.apply(new LocalTransport(), root, { now: NOW, dryRun: true });
    expect(dry.leftovers).toEqual([{ path: join(root, left[0]!.slice(0, -1)), action: 'remove', setId: ids[0], reason: expect.stringContaining('whose purge an earlier run decided') }]);
    expect(await junk()).toEqual(left);
    const res = await r.apply(new LocalTransport(), root, { now: NOW });
    expect(res.leftoversRemoved).toEqual([join(root, left[0]!.slice(0, -1))]);
    expect(await junk()).toEqual([]);
    expect(ids.slice(1).map(has)).toEqual([true, true, true, true]);
  });
});

describe('leftover trash whose removal was never decided (a run killed outright)', () => {
  it('the dry run says it would put it back and plans it; the real run puts it back and keeps it', async () => {
    const trash = '2026/11/18/.stowage-aside-030000-ef275a13';
    await rename(join(root, ids[0]!), join(root, trash)); // what kill -9 right after the rename leaves
    const r = new Retention({ keepDaily: 30, timeZone: 'UTC' });
    const dry = await r.apply(new LocalTransport(), root, { now: NOW, dryRun: true });
    expect(dry.leftovers).toEqual([{ path: join(root, trash), action: 'put back', to: join(root, ids[0]!), setId: ids[0], reason: expect.stringContaining('put back, and planned again') }]);
    expect(dry.plan.keep.find((k) => k.item.id === ids[0])).toMatchObject({ rules: ['daily'], counted: true });
    expect(has(trash)).toBe(true);

    const res = await r.apply(new LocalTransport(), root, { now: NOW });
    expect(res.leftovers.map((l) => l.action)).toEqual(['put back']);
    expect(res.leftoversRemoved).toEqual([]);
    expect(res.removed).toEqual([]);
    expect(await junk()).toEqual([]);
    expect(ids.map(has)).toEqual([true, true, true, true, true]);
  });

  it('put back and planned under the policy in force: purged only through the plan (and its guards)', async () => {
    await rename(join(root, ids[0]!), join(root, '2026/11/18/.stowage-aside-030000-ef275a13'));
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    await expect(r.apply(new LocalTransport(), root, { now: NOW, maxPurge: 3 })).rejects.toMatchObject({ code: 'EDELETE_GUARD', details: { purge: 4 } });
    expect(has(ids[0]!)).toBe(true); // put back, not removed
    const res = await r.apply(new LocalTransport(), root, { now: NOW });
    expect(res.removed.map((x) => x.id)).toEqual(ids.slice(0, 4));
  });

  it('left alone, with a warning, when its place is taken again or its name is not one stowage gives', async () => {
    await cp(join(root, ids[0]!), join(root, '2026/11/18/.stowage-aside-030000-0000aaaa'), { recursive: true });
    await mkdir(join(root, '2026/11/19/.stowage-aside-oddname'));
    await writeFile(join(root, '2026/11/19/.stowage-aside-oddname/x.tar.gz'), 'x');
    const warnings: StowageWarning[] = [];
    const res = await new Retention({ keepDaily: 30, timeZone: 'UTC' }).apply(new LocalTransport(), root, { now: NOW, onWarning: (w) => warnings.push(w) });
    expect(res.leftovers.map((l) => [basename(l.path), l.action])).toEqual([
      ['.stowage-aside-030000-0000aaaa', 'leave'],
      ['.stowage-aside-oddname', 'leave'],
    ]);
    expect(warnings.map((w) => w.code).sort()).toEqual(['EBAD_CONFIG', 'EEXIST']);
    expect(warnings.find((w) => w.code === 'EEXIST')!.message).toContain(`${join(root, ids[0]!)} exists again`);
    expect(has('2026/11/18/.stowage-aside-030000-0000aaaa') && has('2026/11/19/.stowage-aside-oddname/x.tar.gz')).toBe(true);
  });

  it('trash an earlier version left (.stowage-trash-…, maybe half deleted) is neither put back nor removed: left, with a warning, and not counted', async () => {
    // The old removal used this one name before and during the recursive delete: here half the set is gone.
    const legacy = '2026/11/18/.stowage-trash-030000-ef275a13';
    await rename(join(root, ids[0]!), join(root, legacy));
    const files = await readdir(join(root, legacy));
    await rm(join(root, legacy, files.find((f) => !f.endsWith('.dna'))!));
    const warnings: StowageWarning[] = [];
    const r = new Retention({ keepDaily: 30, timeZone: 'UTC' });
    for (const dryRun of [true, false]) {
      const res = await r.apply(new LocalTransport(), root, { now: NOW, dryRun, onWarning: (w) => warnings.push(w) });
      expect(res.leftovers).toEqual([{ path: join(root, legacy), action: 'leave', reason: expect.stringContaining('may be half deleted') }]);
      expect(res.plan.keep.map((k) => k.item.id)).not.toContain(ids[0]);
      expect(res.removed).toEqual([]);
    }
    expect(warnings.map((w) => w.code)).toEqual(['EBAD_CONFIG', 'EBAD_CONFIG']);
    expect(warnings[0]!.message).toContain(`move it back to ${join(root, ids[0]!)}`);
    expect(has(legacy) && !has(ids[0]!)).toBe(true);
  });

  it('two leftovers of one set: one is put back (also in a dry run), the other left with a warning', async () => {
    await cp(join(root, ids[0]!), join(root, '2026/11/18/.stowage-aside-030000-aaaa1111'), { recursive: true });
    await rename(join(root, ids[0]!), join(root, '2026/11/18/.stowage-aside-030000-bbbb2222'));
    const r = new Retention({ keepDaily: 30, timeZone: 'UTC' });
    for (const dryRun of [true, false]) {
      const warnings: StowageWarning[] = [];
      const res = await r.apply(new LocalTransport(), root, { now: NOW, dryRun, onWarning: (w) => warnings.push(w) });
      expect(res.leftovers.map((l) => l.action), String(dryRun)).toEqual(['put back', 'leave']);
      expect(warnings.map((w) => w.code)).toEqual(['EEXIST']);
    }
    expect(has(ids[0]!) && has('2026/11/18/.stowage-aside-030000-bbbb2222')).toBe(true);
  });

  it('a copy moved aside by a last repair stopped once the new link was in place is removed', async () => {
    await cp(join(root, ids[4]!), join(root, '.stowage-aside-last-1a2b3c4d'), { recursive: true });
    await symlink(ids[4]!, join(root, 'last'));
    const res = await new Retention({ keepDaily: 30, timeZone: 'UTC' }).apply(new LocalTransport(), root, { now: NOW });
    expect(res.leftovers.map((l) => l.action)).toEqual(['remove']);
    expect(existsSync(join(root, '.stowage-aside-last-1a2b3c4d'))).toBe(false);
    expect(await readlink(join(root, 'last'))).toBe(ids[4]);
  });

  it('a collapsed last folder moved aside by an interrupted link update goes back to last', async () => {
    await cp(join(root, ids[4]!), join(root, '.stowage-aside-last-1a2b3c4d'), { recursive: true });
    const res = await new Retention({ keepDaily: 30, timeZone: 'UTC' }).apply(new LocalTransport(), root, { now: NOW });
    expect(res.leftovers).toEqual([{ path: join(root, '.stowage-aside-last-1a2b3c4d'), action: 'put back', to: join(root, 'last'), reason: expect.any(String) }]);
    expect(existsSync(join(root, 'last', 'repo.tar.gz'))).toBe(true);
    const link = await Retention.updateLastLink(new LocalTransport(), root, { timeZone: 'UTC', now: NOW });
    expect(link).toMatchObject({ action: 'repaired', target: ids[4] });
    expect(await junk()).toEqual([]);
  });
});
