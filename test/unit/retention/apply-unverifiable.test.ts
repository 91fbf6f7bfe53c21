/**
 * Sets with no DNA sidecar at all are unproven, not bad (regression: a tree
 * of nine sets from a legacy cron script, which writes no `.dna`, plus one
 * stowage set: `new Retention({ keepDaily: 30, keepMonthly: 12 }).apply()`
 * removed nine of ten as "unverified (does not match its DNA)", although
 * keepDaily 30 keeps every one of them, and although the sets' own problems
 * said "no file of the set has a DNA sidecar").
 *
 * Now such a set does not count (it never takes a verified set's place),
 * but the policy keeps it wherever it would keep it if it counted; a set
 * that fails its DNA is still purged when a newer verified set exists; and
 * every purge reason tells the set's true problem.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { dailyIds, makeSet } from './helpers.js';

const local = new LocalTransport();
const NOW = Date.parse('2026-11-22T12:00:00Z');
let tmp: TempDir;
let root: string;
const has = (id: string) => existsSync(join(root, id));

beforeEach(async () => {
  tmp = makeTempDir('retention-unverifiable');
  root = join(tmp.path, 'backups');
  await mkdir(root);
});
afterEach(async () => {
  await tmp.remove();
});

describe('Retention.apply: sets with no sidecar (a legacy script wrote them)', () => {
  it('keeps legacy sets the policy keeps; only what the policy expires goes, with the true reason', async () => {
    const legacy = dailyIds('2026-11-21', 9); // 13 … 21 November, no .dna
    for (const id of legacy) await makeSet(root, id, { files: { 'svn.tar.gz': `legacy ${id}` }, sidecars: false });
    await makeSet(root, '2026/11/22/030000'); // the first stowage set, with sidecars
    await makeSet(root, '2026/11/21/010000', { files: { 'svn.tar.gz': 'an earlier legacy run that day' }, sidecars: false });
    const r = new Retention({ keepDaily: 30, keepMonthly: 12, timeZone: 'UTC' });

    const dry = await r.apply(local, root, { now: NOW, dryRun: true });
    expect(dry.plan.purge.map((p) => [p.item.id, p.rule])).toEqual([['2026/11/21/010000', 'expired']]);
    const reason = dry.plan.purge[0]!.reason;
    expect(reason).toContain('no file of the set has a DNA sidecar');
    expect(reason).not.toContain('does not match its DNA');

    const res = await r.apply(local, root, { now: NOW });
    expect(res.removed.map((x) => x.id)).toEqual(['2026/11/21/010000']);
    for (const id of legacy) expect(has(id), id).toBe(true);
    expect(has('2026/11/22/030000')).toBe(true);
    const kept = new Map(res.plan.keep.map((k) => [k.item.id, k]));
    expect(kept.get('2026/11/22/030000')).toMatchObject({ counted: true, rules: ['newest-verified', 'daily', 'monthly'] });
    for (const id of legacy) {
      const k = kept.get(id)!;
      expect(k.counted, id).toBe(false);
      expect(k.item).toMatchObject({ verified: false, verifiable: false });
      expect(k.rules).toEqual(['daily']);
      expect(k.reasons[0]).toMatch(/^daily 2026-11-\d\d, as a stand-in \(not counted: no file of the set has a DNA sidecar, so nothing can be verified\)$/);
    }
  });

  it('a legacy set never takes the place of a verified one: the verified set of the same day stays too', async () => {
    await makeSet(root, '2026/11/21/030000'); // verified
    await makeSet(root, '2026/11/21/150000', { sidecars: false }); // legacy, later that day
    await makeSet(root, '2026/11/20/030000', { sidecars: false });
    await makeSet(root, '2026/11/22/030000');
    const res = await new Retention({ keepDaily: 2, timeZone: 'UTC' }).apply(local, root, { now: NOW });
    expect(res.plan.keep.map((k) => [k.item.id, k.rules, k.counted])).toEqual([
      ['2026/11/22/030000', ['newest-verified', 'daily'], true],
      ['2026/11/21/150000', ['daily'], false],
      ['2026/11/21/030000', ['daily'], true],
    ]);
    expect(res.removed.map((x) => x.id)).toEqual(['2026/11/20/030000']);
  });

  it('a set that fails its DNA is still purged when older than the newest verified set, and says why', async () => {
    const ids = dailyIds('2026-11-22', 3);
    for (const id of ids) await makeSet(root, id);
    await writeFile(join(root, ids[0]!, 'repo.tar.gz'), Buffer.alloc(1024)); // same size, other bytes: a mutant
    const res = await new Retention({ keepDaily: 30, timeZone: 'UTC' }).apply(local, root, { now: NOW });
    expect(res.plan.purge.map((p) => [p.item.id, p.rule])).toEqual([[ids[0], 'unverified']]);
    expect(res.plan.purge[0]!.item.verifiable).toBe(true);
    expect(res.plan.purge[0]!.reason).toMatch(/^unverified \(.*repo\.tar\.gz does not match its DNA: expected [0-9a-f]{32} \(1024 bytes\), got [0-9a-f]{32} \(1024 bytes\)\) and older than the newest verified complete backup 2026\/11\/22\/030000$/);
    expect(has(ids[0]!)).toBe(false);
  });
});
