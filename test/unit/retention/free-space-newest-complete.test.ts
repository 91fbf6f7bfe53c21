/**
 * Free-space mode protects the newest COMPLETE set dated up to now, and only
 * complete sets count toward minKeep (regression: the set that sorted newest
 * was protected by name alone, and every set counted, so an empty
 * `2099/01/01/000000`, or tonight's set holding only the `.part` file of a
 * backup that died of the full disk, was all that was left: every complete
 * set was purged).
 *
 * No tmpfs: free space is a fixed "1 % free" so that every candidate is
 * tried.
 */
import { cp, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { FreeSpace } from '../../../src/transport/transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { dailyIds, makeSet, snapshot } from './helpers.js';

/** A local disk that is always nearly full. */
class LowSpace extends LocalTransport {
  override async freeSpace(): Promise<FreeSpace> {
    return { totalBytes: 1e12, availableBytes: 1e10, availablePercent: 1 };
  }
}

const ids = dailyIds('2026-11-21', 3); // 19, 20, 21 November
let tmp: TempDir;
let root: string;
let remote: string;
const has = (id: string) => existsSync(join(root, id));

beforeEach(async () => {
  tmp = makeTempDir('retention-free-newest');
  root = join(tmp.path, 'backups');
  remote = join(tmp.path, 'remote', 'backups');
  await mkdir(root);
  for (const id of ids) await makeSet(root, id);
  await cp(root, remote, { recursive: true }); // every complete set has a verified copy elsewhere
});
afterEach(async () => {
  await tmp.remove();
});

// No `now` (the clock): these sets are all in the past, 2099 in the future.
const opts = () => ({ minFreePercent: 99.9, minKeep: 1, verifiedElsewhere: [{ transport: new LocalTransport(), dir: remote }], timeZone: 'UTC' });

describe('Retention.applyFreeSpace protects the newest complete set', () => {
  it('an empty set dated 2099 is neither protected nor counted: the newest real set stays', async () => {
    await mkdir(join(root, '2099/01/01/000000'), { recursive: true });
    const dry = await Retention.applyFreeSpace(new LowSpace(), root, { ...opts(), dryRun: true });
    expect(dry.purge.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    const res = await Retention.applyFreeSpace(new LowSpace(), root, opts());
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(res.stoppedBy).toBe('minKeep');
    expect(has(ids[2]!)).toBe(true);
    expect(has('2099/01/01/000000')).toBe(true); // left alone, and said so
    expect(res.skipped.map((s) => [s.set.id, s.reason])).toEqual([['2099/01/01/000000', expect.stringMatching(/^dated after now \(\d{4}-\d\d-\d\dT/)]]);
  });

  it('a complete set dated 2099 (a clock error) is not protected in place of the newest real one', async () => {
    await makeSet(root, '2099/01/01/000000');
    await cp(join(root, '2099'), join(remote, '2099'), { recursive: true });
    const res = await Retention.applyFreeSpace(new LowSpace(), root, opts());
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(has(ids[2]!) && has('2099/01/01/000000')).toBe(true);
  });

  it("tonight's set holding only a .part file (the backup died of the full disk) does not take the newest complete set's place", async () => {
    await makeSet(root, '2026/11/22/030000', { files: { 'repo.tar.gz.part': 'half written' }, sidecars: false });
    const res = await Retention.applyFreeSpace(new LowSpace(), root, opts());
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(0, 2));
    expect(res.stoppedBy).toBe('minKeep');
    expect(has(ids[2]!)).toBe(true);
    expect(has('2026/11/22/030000')).toBe(true);
    expect((await snapshot(root)).filter((p) => p.includes('.stowage-'))).toEqual([]);
  });

  it('minKeep counts complete sets only: incomplete and empty sets do not make up the number', async () => {
    await makeSet(root, '2026/11/22/010000', { files: { 'db.tar.gz.part': 'half' }, sidecars: false });
    await mkdir(join(root, '2026/11/22/020000'), { recursive: true });
    await makeSet(root, '2026/11/22/030000', { files: { 'wiki.tar.gz.part': 'half' }, sidecars: false });
    const res = await Retention.applyFreeSpace(new LowSpace(), root, { ...opts(), minKeep: 2 });
    expect(res.removed.map((p) => p.set.id)).toEqual([ids[0]]);
    expect(res.stoppedBy).toBe('minKeep');
    expect(ids.map(has)).toEqual([false, true, true]);
  });

  it('option now: a set dated after it is not the newest; a bad now is EBAD_CONFIG', async () => {
    const res = await Retention.applyFreeSpace(new LowSpace(), root, { ...opts(), now: Date.parse('2026-11-20T12:00:00Z') });
    expect(res.removed.map((p) => p.set.id)).toEqual([ids[0]]); // 20 Nov is the newest complete set as of that time; 21 Nov is left
    expect(res.skipped.map((s) => s.set.id)).toEqual([ids[2]]);
    expect(ids.map(has)).toEqual([false, true, true]);
    await expect(Retention.applyFreeSpace(new LowSpace(), root, { ...opts(), now: 'today' as never })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"now"') });
  });

  it('no complete set at all: nothing is purged', async () => {
    const only = join(tmp.path, 'only');
    await makeSet(only, ids[0]!, { files: { 'a.tar.gz.part': 'half' }, sidecars: false });
    await makeSet(only, ids[1]!, { files: { 'b.tar.gz.part': 'half' }, sidecars: false });
    const res = await Retention.applyFreeSpace(new LowSpace(), only, opts());
    expect(res.removed).toEqual([]);
    expect(existsSync(join(only, ids[0]!)) && existsSync(join(only, ids[1]!))).toBe(true);
  });
});
