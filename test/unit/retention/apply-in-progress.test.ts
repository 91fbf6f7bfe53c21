/**
 * A set still being written is not purged under its writer (regression:
 * with sets `2026/11/20/030000` and `2026/11/22/030000`, a weekly dump
 * `2026/11/21/010000` still writing `db-part2.tar.gz.part` at 04:00 was
 * purged as "incomplete" by `new Retention({ keepDaily: 30 }).apply()`,
 * although its own problems said "still being written" and keepDaily 30
 * would have kept it; free-space mode already left such sets alone).
 *
 * Now an incomplete set changed within `inProgressGrace` (24 h) is kept as
 * in progress whatever the policy, and an incomplete set whose writer
 * stopped is kept where the policy would keep it; only one that no rule
 * keeps is purged.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { makeSet, setTreeMtime } from './helpers.js';

const local = new LocalTransport();
const NOW = Date.parse('2026-11-22T04:00:00Z');
const DUMP = '2026/11/21/010000';
let tmp: TempDir;
let root: string;
const has = (id: string) => existsSync(join(root, id));

beforeEach(async () => {
  tmp = makeTempDir('retention-in-progress');
  root = join(tmp.path, 'backups');
  await mkdir(root);
  await makeSet(root, '2026/11/20/030000');
  await makeSet(root, '2026/11/22/030000');
  await makeSet(root, DUMP, { files: { 'db-part1.tar.gz': 'part one, finished' } });
  await writeFile(join(root, DUMP, 'db-part2.tar.gz.part'), 'part two, being written');
});
afterEach(async () => {
  await tmp.remove();
});

describe('Retention.apply and sets still being written', () => {
  it('a weekly dump still writing its .part file is kept, whatever the policy', async () => {
    await setTreeMtime(join(root, DUMP), Date.parse('2026-11-22T03:55:00Z')); // written to five minutes ago
    for (const policy of [{ keepDaily: 30 }, { keepLast: 1 }]) {
      const res = await new Retention({ ...policy, timeZone: 'UTC' }).apply(local, root, { now: NOW });
      expect(res.plan.purge.map((p) => p.item.id), JSON.stringify(policy)).not.toContain(DUMP);
      const k = res.plan.keep.find((x) => x.item.id === DUMP)!;
      expect(k.rules).toEqual(['in-progress']);
      expect(k.counted).toBe(false);
      expect(k.item.inProgress).toBe(true);
      expect(k.reasons[0]).toMatch(/^in progress \(still being written: .*db-part2\.tar\.gz\.part \(last change 2026-11-22T03:55:00\.000Z, within inProgressGrace 24h of now\)\): kept, not counted$/);
      expect(has(DUMP)).toBe(true);
      expect(existsSync(join(root, DUMP, 'db-part2.tar.gz.part'))).toBe(true);
    }
  });

  it('a set folder just made, still empty (its writer is staging elsewhere), is kept as in progress', async () => {
    await mkdir(join(root, '2026/11/21/020000'), { recursive: true }); // made now, by the clock: after NOW even
    const res = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: Date.now() });
    expect(res.plan.keep.find((k) => k.item.id === '2026/11/21/020000')?.rules).toEqual(['in-progress']);
    expect(has('2026/11/21/020000')).toBe(true);
  });

  it('a dump whose writer stopped is kept where the policy keeps it, and purged where it does not', async () => {
    await setTreeMtime(join(root, DUMP), Date.parse('2026-11-21T01:30:00Z')); // 26.5 h before now
    const daily = await new Retention({ keepDaily: 30, timeZone: 'UTC' }).apply(local, root, { now: NOW });
    const k = daily.plan.keep.find((x) => x.item.id === DUMP)!;
    expect(k).toMatchObject({ rules: ['daily'], counted: false });
    expect(k.reasons[0]).toMatch(/^daily 2026-11-21, as a stand-in \(not counted: unfinished: .*db-part2\.tar\.gz\.part \(last change 2026-11-21T01:30:00\.000Z, more than inProgressGrace 24h before now: its writer stopped\)\)$/);
    expect(daily.removed).toEqual([]);

    const last = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW });
    expect(last.plan.purge.map((p) => [p.item.id, p.rule])).toEqual([
      [DUMP, 'incomplete'],
      ['2026/11/20/030000', 'expired'],
    ]);
    expect(last.plan.purge[0]!.reason).toMatch(/^incomplete \(unfinished: .*its writer stopped\)\), kept by no rule of the policy \(keepLast 1\) even ranked as a stand-in, and older than the newest verified complete backup 2026\/11\/22\/030000$/);
    expect(has(DUMP)).toBe(false);
  });

  it('inProgressGrace sets the window; a bad value is EBAD_CONFIG', async () => {
    await setTreeMtime(join(root, DUMP), Date.parse('2026-11-21T23:00:00Z')); // 5 h before now
    const short = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, inProgressGrace: '4h', dryRun: true });
    expect(short.plan.purge.map((p) => p.item.id)).toContain(DUMP);
    const long = await new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, inProgressGrace: 6 * 3600_000, dryRun: true });
    expect(long.plan.keep.find((x) => x.item.id === DUMP)?.rules).toEqual(['in-progress']);
    for (const bad of ['soon', '0h', -1]) {
      await expect(new Retention({ keepLast: 1, timeZone: 'UTC' }).apply(local, root, { now: NOW, inProgressGrace: bad as never })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"inProgressGrace"') });
    }
    expect(has(DUMP)).toBe(true);
  });
});
