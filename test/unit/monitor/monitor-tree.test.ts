/**
 * Monitor over a dated backup tree on the local disk: every check against
 * real files, real sidecars, real LOCKED directories and a real (tmpfs)
 * file system for free space. Time passes by giving `now`, never by sleeping.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Monitor, type MonitorConstraints } from '../../../src/monitor/index.js';
import type { Progress } from '../../../src/progress.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { withTmpfs, type Tmpfs } from '../../support/index.js';
import { scratch as tempDir } from './helpers.js';
import { dailyIds, makeSet, plantLock } from '../retention/helpers.js';

const local = new LocalTransport();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const IDS = dailyIds('2026-11-22', 8, '031500');
const NEWEST = Date.parse('2026-11-22T03:15:00Z');

/** A tree of 8 nightly sets of ~15 kB each (svn 10 kB + wiki 5 kB, sizes varying a little). */
async function nightlyTree(): Promise<string> {
  const root = await tempDir('monitor-tree');
  for (const [i, id] of IDS.entries()) {
    await makeSet(root, id, { files: { 'svn.tar.gz': randomBytes(10_000 + i * 50), 'wiki.tar.gz': randomBytes(5_000 + i * 10) } });
  }
  return root;
}

const ALL: MonitorConstraints = {
  maxAge: { warning: '26h', critical: '48h' },
  size: true,
  verify: { newest: 2 },
  freeSpace: [{ name: 'backups', transport: local, path: '/', minFreePercent: 0.001 }],
  locks: true,
};

function monitorOf(root: string, constraints: MonitorConstraints = ALL): Monitor {
  return new Monitor({ transport: local, dir: root }, constraints, { timeZone: 'UTC' });
}

describe('Monitor on a dated tree', () => {
  let root: string;
  beforeAll(async () => {
    root = await nightlyTree();
  });

  it('reports a healthy tree as ok, with a message and measured values per check', async () => {
    const r = await monitorOf(root).check({ now: NEWEST + 2 * HOUR });
    expect(r.status).toBe('ok');
    expect(r.exitCode).toBe(0);
    expect(r.checks.map((c) => [c.check, c.status])).toEqual([
      ['age', 'ok'],
      ['size', 'ok'],
      ['dna', 'ok'],
      ['freeSpace', 'ok'],
      ['locks', 'ok'],
    ]);
    expect(r.check('age')).toMatchObject({ message: 'newest backup 2h old', details: { newest: IDS[7], newestTime: '2026-11-22T03:15:00.000Z' } });
    expect(r.check('age')!.metrics).toEqual([{ name: 'age', value: 7200, unit: 's', warning: 93600, critical: 172800, below: false }]);
    const size = r.check('size')!;
    expect(size.details).toMatchObject({ newest: IDS[7], bytes: 10_350 + 5_070, history: 7 });
    expect(size.details['medianBytes']).toBe(10_150 + 5_030); // the 4th of the 7 before
    expect(size.message).toMatch(/^newest backup 15\.4 kB, 102% of the median 15\.2 kB of the 7 before$/);
    expect(r.check('dna')).toMatchObject({ message: 'DNA of the 2 newest backups verified (4 files)', details: { sets: [IDS[7], IDS[6]], files: 4, problems: [] } });
    expect(r.check('locks')!.message).toBe('no LOCKED directory');
    expect(r.check('freeSpace')!.metrics[0]).toMatchObject({ name: 'free:backups', unit: '%', warning: 0.001, below: true });
    expect(r.checkedAt.toISOString()).toBe('2026-11-22T05:15:00.000Z');
    expect(Monitor.nagios(r)).toMatch(/^STOWAGE OK - newest backup 2h old; newest backup 15\.4 kB.* \| age=7200s;93600;172800 size=15420B;7590:;1518: /);
  });

  it('warns after a missed night and goes critical when backups have stopped', async () => {
    const m = monitorOf(root, { maxAge: { warning: '26h', critical: '48h' } });
    const warn = await m.check({ now: NEWEST + 30 * HOUR });
    expect(warn.status).toBe('warning');
    expect(warn.check('age')!.message).toBe('newest backup 1d6h old');
    const crit = await m.check({ now: NEWEST + 3 * DAY });
    expect(crit.status).toBe('critical');
    expect(Monitor.exitCode(crit)).toBe(2);
    expect(Monitor.nagios(crit)).toBe('STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800');
  });

  it('derives the critical age from a single value (twice it)', async () => {
    const m = monitorOf(root, { maxAge: '26h' });
    expect((await m.check({ now: NEWEST + 30 * HOUR })).status).toBe('warning');
    expect((await m.check({ now: NEWEST + 51 * HOUR })).status).toBe('warning');
    expect((await m.check({ now: NEWEST + 53 * HOUR })).status).toBe('critical');
  });

  it('warns about a newest backup dated in the future', async () => {
    const r = await monitorOf(root, { maxAge: '26h' }).check({ now: NEWEST - HOUR });
    expect(r.status).toBe('warning');
    expect(r.check('age')!.message).toMatch(/dated 1h in the future/);
  });

  it('alerts on an abrupt shrink: warning below minPercent, critical below criticalPercent', async () => {
    const tree = await nightlyTree();
    const newest = join(tree, ...IDS[7]!.split('/'));
    await rm(newest, { recursive: true });
    await makeSet(tree, IDS[7]!, { files: { 'svn.tar.gz': randomBytes(5_000), 'wiki.tar.gz': randomBytes(1_000) } }); // 6 kB: 39%
    const m = monitorOf(tree, { size: true });
    const warn = await m.check({ now: NEWEST + HOUR });
    expect(warn.check('size')).toMatchObject({ status: 'warning', details: { bytes: 6_000, percentOfMedian: 39.53 } });
    expect(warn.check('size')!.message).toBe('newest backup shrank to 6.00 kB, 40% of the median 15.2 kB of the 7 before (below 50%)');

    await rm(newest, { recursive: true });
    await makeSet(tree, IDS[7]!, { files: { 'svn.tar.gz': randomBytes(900) } });
    const crit = await m.check({ now: NEWEST + HOUR });
    expect(crit.check('size')).toMatchObject({ status: 'critical', details: { bytes: 900 } });
    expect(crit.check('size')!.message).toMatch(/shrank to 900 B, 6% of the median .* \(below 10%\)$/);

    const grown = await monitorOf(tree, { size: { window: 3, maxPercent: 150 } }).check({ now: NEWEST + HOUR });
    expect(grown.check('size')).toMatchObject({ status: 'critical', details: { history: 3 } });
    await rm(newest, { recursive: true });
    await makeSet(tree, IDS[7]!, { files: { 'svn.tar.gz': randomBytes(40_000) } });
    const big = await monitorOf(tree, { size: { window: 3, maxPercent: 150 } }).check({ now: NEWEST + HOUR });
    expect(big.check('size')).toMatchObject({ status: 'warning' });
    expect(big.check('size')!.message).toMatch(/grew to 40\.0 kB, 261% .* \(above 150%\)/);
  });

  it('has nothing to compare a first backup with', async () => {
    const tree = await tempDir('monitor-first');
    await makeSet(tree, IDS[0]!, { files: { 'svn.tar.gz': randomBytes(100) } });
    const r = await monitorOf(tree, { size: true }).check({ now: NEWEST });
    expect(r.check('size')).toMatchObject({ status: 'ok', message: 'newest backup 100 B (no earlier backup to compare with)' });
  });

  it('is critical when the newest backup does not match its DNA, naming the file', async () => {
    const tree = await nightlyTree();
    const victim = join(tree, ...IDS[7]!.split('/'), 'svn.tar.gz');
    await writeFile(victim, randomBytes(10_350)); // same size, other bytes: a mutant
    const r = await monitorOf(tree, { verify: true }).check({ now: NEWEST + HOUR });
    expect(r.status).toBe('critical');
    const dna = r.check('dna')!;
    expect(dna.message).toContain(`DNA of the newest backup does not verify: ${IDS[7]}: ${victim} does not match its DNA`);
    expect(dna.details).toMatchObject({ sets: [IDS[7]], files: 2 });
    expect(dna.metrics).toContainEqual({ name: 'dna_problems', value: 1, unit: 'c', warning: null, critical: 0, below: false });
    // The set before is fine: only the newest is checked by default.
    expect((await monitorOf(tree, { verify: { newest: 2 } }).check({ now: NEWEST })).check('dna')!.details['problems']).toHaveLength(1);
  });

  it('reports the DNA check as progress: phase verify, bytes of the sets checked out of their total, a set an item', async () => {
    const tree = await nightlyTree();
    const seen: Progress[] = [];
    const r = await monitorOf(tree, { maxAge: '26h', verify: { newest: 2 } }).check({ now: NEWEST + HOUR, onProgress: (p) => seen.push(p) });
    expect(r.check('dna')!.status).toBe('ok');
    // The two newest sets: svn 10 000 + 50 i and wiki 5 000 + 10 i bytes for i = 6, 7.
    const total = 2 * 15_000 + 60 * (6 + 7);
    expect(seen.length).toBeGreaterThan(0);
    for (const [i, p] of seen.entries()) {
      expect(p).toMatchObject({ phase: 'verify', bytesTotal: total, itemsTotal: 2 });
      if (i > 0) expect(p.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
    }
    expect(seen[0]).toMatchObject({ bytesDone: 0, itemsDone: 0 });
    expect(seen.at(-1)).toMatchObject({ bytesDone: total, itemsDone: 2 });
    // Without the verify constraint nothing long runs, and nothing is reported.
    const quiet: Progress[] = [];
    await monitorOf(tree, { maxAge: '26h' }).check({ now: NEWEST + HOUR, onProgress: (p) => quiet.push(p) });
    expect(quiet).toEqual([]);
    await expect(monitorOf(tree, { verify: true }).check({ onProgress: 'bar' as never })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('onProgress') });
  });

  it('is critical when the newest backup has no sidecar to verify against', async () => {
    const tree = await tempDir('monitor-nodna');
    await makeSet(tree, IDS[7]!, { files: { 'svn.tar.gz': randomBytes(100) }, sidecars: false });
    const r = await monitorOf(tree, { verify: true }).check({ now: NEWEST });
    expect(r.check('dna')).toMatchObject({ status: 'critical' });
    expect(r.check('dna')!.message).toMatch(/nothing can be verified/);
  });

  it('reports a missing tree as critical with ENOT_FOUND instead of throwing', async () => {
    const gone = join(await tempDir('monitor-gone'), 'not-mounted');
    const r = await monitorOf(gone).check({ now: NEWEST });
    expect(r.status).toBe('critical');
    for (const name of ['age', 'size', 'dna', 'locks'] as const) {
      expect(r.check(name), name).toMatchObject({ status: 'critical', error: { code: 'ENOT_FOUND' } });
      expect(r.check(name)!.message).toMatch(/^cannot list backups: .*does not exist/);
    }
    expect(r.check('freeSpace')!.status).toBe('ok'); // the other checks still run
  });

  it('is critical for a tree without any backup', async () => {
    const r = await monitorOf(await tempDir('monitor-empty'), { maxAge: '1d', verify: true, size: true }).check({ now: NEWEST });
    expect(r.checks.map((c) => [c.check, c.status, c.message])).toEqual([
      ['age', 'critical', 'no backup found'],
      ['size', 'critical', 'no backup to measure'],
      ['dna', 'critical', 'no backup to verify'],
    ]);
  });

  it('passes over a newest set that is locked or still being written, and says so', async () => {
    const tree = await nightlyTree();
    await plantLock(join(tree, ...IDS[7]!.split('/')));
    // Newer than the locked set, yet before now (a set dated after now is not "newer": see the future-dated tests).
    await makeSet(tree, '2026/11/22/040000', { files: { 'svn.tar.gz': randomBytes(10) } });
    await writeFile(join(tree, '2026/11/22/040000', 'wiki.tar.gz.part'), 'half');
    const r = await monitorOf(tree, { maxAge: '26h', verify: true, locks: true }).check({ now: NEWEST + 2 * HOUR });
    expect(r.check('age')).toMatchObject({ status: 'ok', message: 'newest backup 1d2h old', details: { newest: IDS[6] } });
    expect(r.check('age')!.details['skipped']).toEqual([
      { id: '2026/11/22/040000', reason: 'incomplete: 1 .part file(s)' },
      { id: IDS[7], reason: `locked by ${join(tree, ...IDS[7]!.split('/'), 'LOCKED')}` },
    ]);
    expect(r.check('dna')!.details['sets']).toEqual([IDS[6]]);
    // The planted lock is fresh (its owner file was just written): live, not stale.
    expect(r.check('locks')).toMatchObject({ status: 'ok', message: '1 live LOCKED directory, none stale' });
  });

  it('warns about a stale lock (heartbeat expired, or owner gone) and one held too long', async () => {
    const tree = await nightlyTree();
    const lock = await plantLock(tree);
    const old = (Date.now() - 2 * HOUR) / 1000;
    await utimes(join(lock, 'owner.json'), old, old);
    const r = await monitorOf(tree, { locks: true }).check({ now: NEWEST });
    expect(r.check('locks')!.status).toBe('warning');
    expect(r.check('locks')!.message).toMatch(new RegExp(`^stale lock local:${lock} \\(pid 1 on elsewhere, test\\): no heartbeat for 2h`));
    expect(r.check('locks')!.metrics).toEqual([
      { name: 'locks', value: 1, unit: 'c', warning: null, critical: null, below: false },
      { name: 'stale_locks', value: 1, unit: 'c', warning: 0, critical: null, below: false },
    ]);
    expect(r.check('locks')!.details['locks']).toEqual([
      expect.objectContaining({ path: `local:${lock}`, stale: true, reason: 'heartbeat-expired', owner: expect.objectContaining({ host: 'elsewhere', pid: 1 }) }),
    ]);

    // A lock of this host whose process is gone is stale at once.
    const other = await tempDir('monitor-deadlock');
    await mkdir(join(other, 'LOCKED'));
    await writeFile(join(other, 'LOCKED', 'owner.json'), JSON.stringify({ host: hostname(), pid: 2 ** 22 + 17, purpose: 'nightly', since: new Date(NEWEST - 10 * HOUR).toISOString(), token: 't' }));
    const dead = await new Monitor({ transport: local, dir: tree }, { locks: { dirs: [{ transport: local, path: other }] } }, { timeZone: 'UTC' }).check({ now: NEWEST });
    expect(dead.check('locks')!.details['locks']).toContainEqual(expect.objectContaining({ reason: 'owner-dead', heldSeconds: 36_000 }));

    // A live lock held longer than maxHeld.
    const held = await tempDir('monitor-heldlock');
    await mkdir(join(held, 'LOCKED'));
    await writeFile(join(held, 'LOCKED', 'owner.json'), JSON.stringify({ host: hostname(), pid: process.pid, purpose: 'nightly', since: new Date(NEWEST - 10 * HOUR).toISOString(), token: 't' }));
    const long = await new Monitor({ transport: local, dir: held }, { locks: { maxHeld: { warning: '6h', critical: '9h' } } }).check({ now: NEWEST });
    expect(long.check('locks')).toMatchObject({ status: 'critical' });
    expect(long.check('locks')!.message).toBe(`lock local:${join(held, 'LOCKED')} held for 10h`);
  });

  it('a lock that cannot be inspected is critical, with its error in the row', async () => {
    const tree = await nightlyTree();
    const odd = await tempDir('monitor-oddlock');
    // owner.json is a directory: reading it fails with something other than "not found".
    await mkdir(join(odd, 'LOCKED', 'owner.json'), { recursive: true });
    const r = await new Monitor({ transport: local, dir: tree }, { locks: { dirs: [{ transport: local, path: odd }] } }).check({ now: NEWEST });
    const c = r.check('locks')!;
    expect(c.status).toBe('critical');
    expect(c.message).toMatch(new RegExp(`^cannot inspect local:${join(odd, 'LOCKED')}: `));
    const rows = c.details['locks'] as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(Object.keys(rows[0]!)).toEqual(['path', 'stale', 'reason', 'owner', 'heldSeconds', 'heartbeatSeconds', 'status', 'error']);
    expect(rows[0]).toMatchObject({ path: `local:${join(odd, 'LOCKED')}`, stale: null, owner: null, status: 'critical', error: { code: expect.any(String), message: expect.stringContaining('owner.json') } });
  });

  it('finds a truncated file through its sidecar', async () => {
    const tree = await nightlyTree();
    await truncate(join(tree, ...IDS[7]!.split('/'), 'wiki.tar.gz'), 10);
    const r = await monitorOf(tree, { verify: true }).check({ now: NEWEST });
    expect(r.check('dna')!.status).toBe('critical');
    expect(r.check('dna')!.message).toMatch(/wiki\.tar\.gz does not match its DNA: expected .* \(5070 bytes\), got .* \(10 bytes\)/);
  });
});

describe('Monitor free space', () => {
  let fs: Tmpfs;
  beforeAll(async () => {
    fs = await withTmpfs(8);
  });
  afterAll(async () => fs?.stop());

  it('reads each node and grades it against its limits; an unreadable node is critical', async () => {
    await fs.fill(512 * 1024);
    const node = (minFreePercent: number, criticalFreePercent?: number) =>
      new Monitor({ transport: local, dir: fs.dir }, { freeSpace: [{ name: 'tmpfs', transport: local, path: fs.dir, minFreePercent, ...(criticalFreePercent !== undefined ? { criticalFreePercent } : {}) }] });
    const actual = (await local.freeSpace(fs.dir)).availablePercent;
    expect(actual).toBeGreaterThan(4);
    expect(actual).toBeLessThan(10);
    const crit = await node(50, 20).check();
    expect(crit.check('freeSpace')).toMatchObject({ status: 'critical', details: { nodes: [expect.objectContaining({ name: 'tmpfs', status: 'critical', totalBytes: 8 * 1024 * 1024 })] } });
    expect(crit.check('freeSpace')!.message).toMatch(/^only \d+(\.\d+)?% free on tmpfs \(.* kB; below 20%\)$/);
    expect((await node(50, 1).check()).check('freeSpace')!.status).toBe('warning');
    // Graded on the exact figure, shown rounded down: 4.996 % is below a 5 % limit.
    const almost = new LocalTransport();
    almost.freeSpace = async () => ({ totalBytes: 100_000, availableBytes: 4996, availablePercent: 4.996 });
    const edge = await new Monitor({ transport: local, dir: fs.dir }, { freeSpace: [{ name: 'edge', transport: almost, path: fs.dir, minFreePercent: 10, criticalFreePercent: 5 }] }).check();
    expect(edge.check('freeSpace')).toMatchObject({ status: 'critical', message: expect.stringMatching(/^only 4\.99% free on edge .*below 5%\)$/) });
    expect((await node(1).check()).check('freeSpace')).toMatchObject({ status: 'ok', message: expect.stringMatching(/^free space ok on 1 node \(lowest tmpfs \d/) });

    const two = new Monitor({ transport: local, dir: fs.dir }, {
      freeSpace: [
        { name: 'tmpfs', transport: local, path: fs.dir, minFreePercent: 1 },
        { name: 'gone', transport: local, path: join(fs.dir, 'nope', 'nope'), minFreePercent: 1 },
      ],
    });
    const r = await two.check();
    expect(r.check('freeSpace')).toMatchObject({ status: 'critical' });
    expect(r.check('freeSpace')!.message).toMatch(/^cannot read free space on gone: /);
    expect(r.check('freeSpace')!.details['nodes']).toEqual([
      expect.objectContaining({ name: 'tmpfs', status: 'ok', error: null }),
      expect.objectContaining({ name: 'gone', status: 'critical', availablePercent: null, error: expect.objectContaining({ code: 'ENOT_FOUND' }) }),
    ]);
    await fs.unfill();
  });
});

describe('Monitor and backups dated in the future', () => {
  // Regression: the newest set was taken regardless of its date, so one set
  // misnamed 2099/… turned "backups stopped 12 days ago" into a mere warning
  // about the clock, for ever.
  const NOW = Date.parse('2026-11-22T12:00:00Z');
  const MAX_AGE = { warning: '26h', critical: '48h' };

  it('judges the age by the newest set not dated after now, and warns about the future-dated set apart', async () => {
    const tree = await tempDir('monitor-future');
    await makeSet(tree, '2026/11/09/030000', { files: { 'svn.tar.gz': randomBytes(4000) } });
    await makeSet(tree, '2026/11/10/030000', { files: { 'svn.tar.gz': randomBytes(4100) } });
    await makeSet(tree, '2099/01/01/030000', { files: { 'svn.tar.gz': randomBytes(10) } });
    const r = await monitorOf(tree, { maxAge: MAX_AGE, size: true, verify: true }).check({ now: NOW });
    const age = r.check('age')!;
    expect(age.status).toBe('critical');
    expect(age.message).toMatch(/^newest backup 12d9h old; 2099\/01\/01\/030000 is dated \d+d\d*h? in the future \(not counted\): check the clock or the folder name$/);
    expect(age.details).toMatchObject({ newest: '2026/11/10/030000', newestTime: '2026-11-10T03:00:00.000Z', future: [{ id: '2099/01/01/030000', time: '2099-01-01T03:00:00.000Z' }] });
    expect(age.metrics[0]).toMatchObject({ name: 'age', value: 12 * 86_400 + 9 * 3600 });
    // Size and DNA look at the same set, not at the 10-byte future one.
    expect(r.check('size')).toMatchObject({ status: 'ok', details: { newest: '2026/11/10/030000', bytes: 4100, history: 1 } });
    expect(r.check('dna')!.details['sets']).toEqual(['2026/11/10/030000']);
    expect(r.status).toBe('critical');
  });

  it('a fresh newest set plus a future-dated one is a warning, not ok', async () => {
    const tree = await tempDir('monitor-future');
    await makeSet(tree, '2026/11/22/030000');
    await makeSet(tree, '2099/01/01/030000');
    const r = await monitorOf(tree, { maxAge: MAX_AGE }).check({ now: NOW });
    expect(r.check('age')).toMatchObject({ status: 'warning', details: { newest: '2026/11/22/030000' } });
    expect(r.check('age')!.message).toMatch(/^newest backup 9h old; 2099\/01\/01\/030000 is dated .* in the future/);
  });

  it('only future-dated sets: no backup, critical, and it says why', async () => {
    const tree = await tempDir('monitor-future');
    await makeSet(tree, '2099/01/01/030000');
    await makeSet(tree, '2098/01/01/030000');
    const r = await monitorOf(tree, { maxAge: MAX_AGE, verify: true }).check({ now: NOW });
    expect(r.check('age')).toMatchObject({ status: 'critical', details: { newest: null, future: [{ id: '2099/01/01/030000' }, { id: '2098/01/01/030000' }] } });
    expect(r.check('age')!.message).toMatch(/^no backup found; 2099\/01\/01\/030000 is dated .* in the future \(not counted, and 1 more\)/);
    expect(r.check('dna')).toMatchObject({ status: 'critical', message: 'no backup to verify' });
  });
});
