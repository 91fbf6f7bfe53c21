/**
 * Monitor while writers are at work, and sets damaged in ways a glance
 * misses. Each block opens with the defect it guards against:
 *
 * - a live LOCKED at the tree's root (the nightly recipe holds one for its
 *   whole run, `sync({ lock: true })` puts one on the far tree) hid every
 *   set, so age, size and DNA went CRITICAL on every backup night;
 * - a Catalog archive rewritten by a Partitioner (its partial tail) after
 *   the Monitor read the records was a CRITICAL DNA mismatch, flapping;
 * - a set removed by Retention between the listing and its inspection
 *   turned the check CRITICAL ("Cannot list …: it does not exist");
 * - a newest set reduced to its `.dna` sidecars was passed over silently
 *   (OK on yesterday's set), and a data file without a sidecar was skipped
 *   by the DNA check that still said "verified".
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../../src/catalog/index.js';
import { DnaDigest, type Dna, type DnaAlgorithm } from '../../../src/dna/dna-digest.js';
import { Monitor, type MonitorConstraints } from '../../../src/monitor/index.js';
import { listBackupSets } from '../../../src/retention/backup-sets.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { OpOptions, TransportEntry } from '../../../src/transport/transport.js';
import { dailyIds, makeSet, plantLock } from '../retention/helpers.js';
import { DAY, HOUR, scratch } from './helpers.js';

const local = new LocalTransport();
const IDS = dailyIds('2026-11-22', 8, '031500');
const NEWEST = Date.parse('2026-11-22T03:15:00Z');
const TONIGHT = '2026/11/23/031500';

async function nightlyTree(): Promise<string> {
  const root = await scratch('monitor-writers');
  for (const [i, id] of IDS.entries()) {
    await makeSet(root, id, { files: { 'svn.tar.gz': randomBytes(10_000 + i * 50), 'wiki.tar.gz': randomBytes(5_000 + i * 10) } });
  }
  return root;
}

const ALL: MonitorConstraints = { maxAge: { warning: '26h', critical: '48h' }, size: true, verify: true, locks: true };
const monitorOf = (root: string, c: MonitorConstraints = ALL, transport: LocalTransport = local): Monitor => new Monitor({ transport, dir: root }, c, { timeZone: 'UTC' });
const setDir = (root: string, id: string): string => join(root, ...id.split('/'));

describe('a live LOCKED at the tree root (a nightly run or a sync in progress)', () => {
  it('judges age, size and DNA on the newest complete set, passes over the one being written, and still reports the lock', async () => {
    const tree = await nightlyTree();
    const lock = await plantLock(tree);
    // Tonight's set, half written: the svn tarball is done, the wiki one is still a .part.
    await makeSet(tree, TONIGHT, { files: { 'svn.tar.gz': randomBytes(10_400) } });
    await writeFile(join(setDir(tree, TONIGHT), 'wiki.tar.gz.part'), 'half');
    const r = await monitorOf(tree).check({ now: NEWEST + DAY + 20 * 60_000 });
    expect(r.checks.map((c) => [c.check, c.status])).toEqual([
      ['age', 'ok'],
      ['size', 'ok'],
      ['dna', 'ok'],
      ['locks', 'ok'],
    ]);
    expect(r.exitCode).toBe(0);
    expect(r.check('age')).toMatchObject({ message: 'newest backup 1d old', details: { newest: IDS[7] } });
    expect(r.check('age')!.details['skipped']).toEqual([{ id: TONIGHT, reason: `incomplete: 1 .part file(s), being written under ${lock}` }]);
    expect(r.check('size')!.details).toMatchObject({ newest: IDS[7], history: 7 });
    expect(r.check('dna')!.details).toMatchObject({ sets: [IDS[7]], files: 2, problems: [] });
    expect(r.check('locks')!.message).toBe('1 live LOCKED directory, none stale');
    // Retention's view is unchanged: every set is still under the lock, so nothing is purged.
    expect((await listBackupSets(local, tree, { timeZone: 'UTC' })).every((s) => s.lockedBy === lock)).toBe(true);
  });

  it('passes over the newest set while a file of it waits for its sidecar, and a set under its own LOCKED', async () => {
    const tree = await nightlyTree();
    await plantLock(tree);
    await makeSet(tree, TONIGHT, { files: { 'svn.tar.gz': randomBytes(10_400) } });
    await makeSet(tree, TONIGHT, { files: { 'wiki.tar.gz': randomBytes(5_100) }, sidecars: false }); // renamed in, sidecar next
    const r = await monitorOf(tree).check({ now: NEWEST + DAY + 20 * 60_000 });
    expect(r.status).toBe('ok');
    expect(r.check('age')!.details['skipped']).toEqual([{ id: TONIGHT, reason: expect.stringMatching(/^being written under .*LOCKED: 1 file\(s\) without their DNA sidecar yet$/) }]);

    // A set locked in its own folder is passed over too, under a root lock or not.
    const own = await nightlyTree();
    await plantLock(own);
    await plantLock(setDir(own, IDS[7]!));
    const o = await monitorOf(own).check({ now: NEWEST + 2 * HOUR });
    expect(o.check('age')).toMatchObject({ status: 'ok', details: { newest: IDS[6] } });
    expect(o.check('locks')!.message).toBe('2 live LOCKED directories, none stale');
  });

  it('still goes critical when backups stopped, lock or no lock', async () => {
    const tree = await nightlyTree();
    await plantLock(tree);
    const r = await monitorOf(tree, { maxAge: { warning: '26h', critical: '48h' } }).check({ now: NEWEST + 3 * DAY });
    expect(r.check('age')).toMatchObject({ status: 'critical', message: 'newest backup 3d old' });
  });
});

/** A LocalTransport that runs `before` (once) ahead of the next digest or listing of a path. */
class Hooked extends LocalTransport {
  beforeDigest: ((path: string) => Promise<void>) | undefined;
  beforeList: ((dir: string) => Promise<void>) | undefined;
  override async digest(path: string, algorithm?: DnaAlgorithm, options?: OpOptions): Promise<Dna> {
    const h = this.beforeDigest;
    this.beforeDigest = undefined;
    await h?.(path);
    return super.digest(path, algorithm, options);
  }
  override async list(dir: string, options?: OpOptions): Promise<TransportEntry[]> {
    await this.beforeList?.(dir);
    return super.list(dir, options);
  }
}

describe('a Catalog archive rewritten while the Monitor checks it (a Partitioner rewriting its partial tail)', () => {
  async function partitions(): Promise<{ catalog: Catalog; root: string; tail: string; tailRel: string; created: number }> {
    const dir = await scratch('monitor-rewrite');
    const root = join(dir, 'dbi');
    const catalog = new Catalog(join(dir, 'stowage.catalog'));
    const created = Date.now() - HOUR;
    for (const [i, name] of ['0000000001-0000010000.tar.gz', '0000010001-0000020000.tar.gz'].entries()) {
      const rel = `Vld/${name}`;
      await mkdir(join(root, 'Vld'), { recursive: true });
      await writeFile(join(root, rel), randomBytes(3000));
      const dna = await DnaDigest.ofFile(join(root, rel));
      await DnaDigest.writeSidecar(join(root, rel), dna);
      catalog.recordArchive({ path: rel, dna, created: created + i });
    }
    return { catalog, root, tail: join(root, 'Vld', '0000010001-0000020000.tar.gz'), tailRel: 'Vld/0000010001-0000020000.tar.gz', created };
  }
  /** What a Partitioner does to its tail: a new file renamed into place, then its sidecar. */
  async function rewrite(file: string): Promise<Dna> {
    await writeFile(file, randomBytes(3500));
    const dna = await DnaDigest.ofFile(file);
    await DnaDigest.writeSidecar(file, dna);
    return dna;
  }

  it('is ok when the Catalog records the new archive by the time it is digested', async () => {
    const { catalog, root, tail, tailRel } = await partitions();
    using _ = catalog;
    const t = new Hooked();
    const m = new Monitor({ catalog, root, transport: t }, { verify: true }, { history: false });
    t.beforeDigest = async () => {
      catalog.recordArchive({ path: tailRel, dna: await rewrite(tail), created: Date.now() });
    };
    const r = await m.check();
    expect(r.check('dna')).toMatchObject({ status: 'ok', message: 'DNA of the newest backup verified (2 files)', details: { problems: [] } });
  });

  it('is "being rewritten", not critical, when the file matches its newer sidecar under a live writer lock; critical without the lock', async () => {
    const { catalog, root, tail } = await partitions();
    using _ = catalog;
    const t = new Hooked();
    const m = new Monitor({ catalog, root, transport: t }, { verify: true }, { history: false });
    await rewrite(tail); // renamed in, sidecar written, Catalog not updated yet
    const noLock = await m.check();
    expect(noLock.check('dna')).toMatchObject({ status: 'critical' });
    expect(noLock.check('dna')!.message).toMatch(/0000010001-0000020000\.tar\.gz does not match its recorded DNA/);

    const lock = await plantLock(join(root, 'Vld'));
    const r = await m.check();
    expect(r.check('dna')!.status).toBe('ok');
    expect(r.check('dna')!.message).toMatch(new RegExp(`^DNA of the newest backup verified \\(2 files\\); Vld: ${tail.replace(/[.]/g, '\\.')} is being rewritten: it matches its sidecar .*${lock.replace(/[.]/g, '\\.')} \\(pid 1 on elsewhere, test\\) is live`));
    expect(r.check('dna')!.details).toMatchObject({ problems: [], notes: [expect.stringContaining('being rewritten')] });
    await rm(lock, { recursive: true });

    // A lock on the outDir (the folder above the partition folder) counts as well.
    await plantLock(root);
    expect((await m.check()).check('dna')!.status).toBe('ok');
  });

  it('stays critical when the file matches neither the record nor its sidecar, lock or not', async () => {
    const { catalog, root, tail } = await partitions();
    using _ = catalog;
    await plantLock(join(root, 'Vld'));
    await writeFile(tail, randomBytes(3000)); // a mutant: the sidecar still holds the old DNA
    const r = await new Monitor({ catalog, root }, { verify: true }, { history: false }).check();
    expect(r.check('dna')).toMatchObject({ status: 'critical' });
    expect(r.check('dna')!.message).toMatch(/does not match its recorded DNA/);
  });
});

describe('a set removed by Retention while the Monitor reads the tree', () => {
  it('is passed over, not a critical "cannot list"', async () => {
    const tree = await nightlyTree();
    const t = new Hooked();
    const victim = setDir(tree, IDS[0]!);
    let seen = 0;
    t.beforeList = async (dir) => {
      // The scan lists the set once (for a lock); remove it before the inspection lists it again.
      if (dir === victim && ++seen === 2) await rm(victim, { recursive: true });
    };
    const r = await monitorOf(tree, { maxAge: '26h', size: true }, t).check({ now: NEWEST + HOUR });
    expect(seen).toBe(2);
    expect(r.check('size')).toMatchObject({ status: 'ok', details: { newest: IDS[7], history: 6 } });
    expect(r.status).toBe('ok');
  });
});

describe('damage a glance misses', () => {
  it('warns about a newest set holding only its DNA sidecars, naming it', async () => {
    const tree = await nightlyTree();
    for (const f of ['svn.tar.gz', 'wiki.tar.gz']) await unlink(join(setDir(tree, IDS[7]!), f));
    const r = await monitorOf(tree, { maxAge: { warning: '26h', critical: '48h' }, verify: true }).check({ now: NEWEST + 2 * HOUR });
    const age = r.check('age')!;
    expect(age.status).toBe('warning');
    expect(age.message).toMatch(new RegExp(`^newest backup 1d2h old; newer set ${IDS[7]} holds only 2 DNA sidecars and no data file: its data files are missing`));
    expect(age.details['skipped']).toEqual([expect.objectContaining({ id: IDS[7], problem: expect.stringContaining('data files are missing') })]);
    expect(r.check('dna')).toMatchObject({ status: 'warning', message: expect.stringContaining(`newer set ${IDS[7]} holds only 2 DNA sidecars`) });
    expect(r.status).toBe('warning');
  });

  it('warns when a data file of the newest set has no sidecar, and says how many were not verified', async () => {
    const tree = await scratch('monitor-unsigned');
    await makeSet(tree, IDS[7]!, { files: { 'svn.tar.gz': randomBytes(100) } });
    await makeSet(tree, IDS[7]!, { files: { 'wiki.tar.gz': randomBytes(100) }, sidecars: false });
    const r = await monitorOf(tree, { verify: true }).check({ now: NEWEST + HOUR });
    const dna = r.check('dna')!;
    expect(dna.status).toBe('warning');
    expect(dna.message).toBe(`DNA of the newest backup verified (1 file); 1 file has no DNA sidecar and was not verified (${join(setDir(tree, IDS[7]!), 'wiki.tar.gz')}): write its sidecar (DnaDigest.writeSidecar) or back it up again`);
    expect(dna.metrics).toContainEqual({ name: 'dna_unsigned', value: 1, unit: 'c', warning: 0, critical: null, below: false });
  });
});
