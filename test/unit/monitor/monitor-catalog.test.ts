/**
 * Monitor with a Catalog: notifications only on state change (kept in the
 * Catalog or a state file), a failing notifier retried next run, history
 * and trends, a Catalog as the source, the job check, the Catalog's monitor
 * records, and abort before start and midway.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../../src/catalog/index.js';
import { DnaDigest } from '../../../src/dna/dna-digest.js';
import { LockDir } from '../../../src/lock/index.js';
import { HttpNotifier, Monitor, type MonitorEvent, type Notifier } from '../../../src/monitor/index.js';
import { notifyLock } from '../../../src/monitor/notify-state.js';
import type { Progress } from '../../../src/progress.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { OpOptions } from '../../../src/transport/transport.js';
import { rejectsWith, throwsWith } from '../db/helpers.js';
import { makeSet } from '../retention/helpers.js';
import { DAY, HOUR, NEWEST, NIGHTS, scratch } from './helpers.js';

const local = new LocalTransport();

async function tree(): Promise<string> {
  const root = await scratch('monitor-cat');
  for (const id of NIGHTS) await makeSet(root, id, { files: { 'svn.tar.gz': randomBytes(2000), 'wiki.tar.gz': randomBytes(1000) } });
  return root;
}

/** A notifier that records what it is told and fails while `failing` is set. */
class Recorder implements Notifier {
  readonly events: MonitorEvent[] = [];
  failing = false;
  constructor(readonly name: string) {}
  async notify(event: MonitorEvent): Promise<void> {
    if (this.failing) throw Object.assign(new Error('relay down'), { code: 'ECONNREFUSED' });
    this.events.push(event);
  }
}

describe('notifications on state change, kept in the Catalog', () => {
  let server: Server;
  let url: string;
  let status = 200;
  const posted: Record<string, unknown>[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString())).on('end', () => {
        if (status === 200) posted.push(JSON.parse(body) as Record<string, unknown>);
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('tells nobody while healthy, tells once when it breaks, retries a failed notifier, and keeps the history', async () => {
    const root = await tree();
    using catalog = new Catalog(join(await scratch('monitor-cat'), 'stowage.catalog'));
    const recorder = new Recorder('recorder');
    const monitor = new Monitor({ transport: local, dir: root }, { maxAge: { warning: '26h', critical: '48h' }, verify: true }, { catalog, notifiers: [new HttpNotifier(url), recorder], timeZone: 'UTC', name: 'svn' });

    const r1 = await monitor.check({ now: NEWEST + 2 * HOUR });
    expect(r1.status).toBe('ok');
    expect(r1.notifications).toEqual([]);
    expect(posted).toHaveLength(0);

    const r2 = await monitor.check({ now: NEWEST + 3 * DAY });
    expect(r2.status).toBe('critical');
    expect(r2.notifications).toEqual([
      { notifier: `http:${url}`, sent: true, error: null },
      { notifier: 'recorder', sent: true, error: null },
    ]);
    expect(posted).toHaveLength(1);
    expect(posted[0]).toMatchObject({ monitor: 'svn', status: 'critical', previousStatus: null, subject: 'STOWAGE CRITICAL - svn: newest backup 3d old', changes: [{ check: 'age', from: 'ok', to: 'critical' }] });
    expect(recorder.events[0]!.text).toMatch(/\[CRITICAL\] age: newest backup 3d old/);

    const r3 = await monitor.check({ now: NEWEST + 4 * DAY });
    expect(r3.status).toBe('critical');
    expect(r3.notifications).toEqual([]);
    expect(posted).toHaveLength(1);

    // Back to healthy while the web hook is down: the hook is not told, the recorder is.
    status = 500;
    const r4 = await monitor.check({ now: NEWEST + HOUR });
    expect(r4.status).toBe('ok');
    expect(r4.notifications).toEqual([
      { notifier: `http:${url}`, sent: false, error: { code: 'EIO', message: expect.stringMatching(/answered 500/) } },
      { notifier: 'recorder', sent: true, error: null },
    ]);
    expect(r4.toText()).toMatch(/notifier http:.* failed: .*answered 500/);

    // Next run, same state: only the hook, which missed the change, is told (retried).
    status = 200;
    const r5 = await monitor.check({ now: NEWEST + 2 * HOUR });
    expect(r5.notifications).toEqual([{ notifier: `http:${url}`, sent: true, error: null }]);
    expect(posted).toHaveLength(2);
    expect(posted[1]).toMatchObject({ status: 'ok', previousStatus: 'critical', changes: [{ check: 'age', from: 'critical', to: 'ok' }] });
    expect(recorder.events.map((e) => [e.previousStatus, e.status])).toEqual([
      [null, 'critical'],
      ['critical', 'ok'],
    ]);

    const r6 = await monitor.check({ now: NEWEST + 3 * HOUR });
    expect(r6.notifications).toEqual([]);

    // History: every run, oldest first (by check time), as reports.
    const all = monitor.history();
    expect(all.map((r) => [r.checkedAt.getTime() - NEWEST, r.status])).toEqual([
      [HOUR, 'ok'],
      [2 * HOUR, 'ok'],
      [2 * HOUR, 'ok'],
      [3 * HOUR, 'ok'],
      [3 * DAY, 'critical'],
      [4 * DAY, 'critical'],
    ]);
    expect(all[0]!.notifications[0]).toMatchObject({ sent: false, error: { code: 'EIO' } });
    expect(monitor.history({ since: NEWEST + DAY }).map((r) => r.status)).toEqual(['critical', 'critical']);
    expect(monitor.history({ until: NEWEST + HOUR, limit: 5 })).toHaveLength(1);
    const ages = catalog.monitorResults('svn', { check: 'age' });
    expect(ages).toHaveLength(6);
    expect(ages[0]).toMatchObject({ check: 'age', status: 'critical', checked: new Date(NEWEST + 4 * DAY), metrics: [{ name: 'age', value: 4 * 86400 + 0, unit: 's' }] });
    expect(catalog.monitorResults('svn', { since: NEWEST + DAY }).map((r) => r.check)).toEqual(['age', 'dna', 'age', 'dna']);
    expect(catalog.monitorRuns('other')).toEqual([]);
  });

  it('keeps the state in a state file when there is no Catalog, across Monitor objects', async () => {
    const root = await tree();
    const stateFile = join(await scratch('monitor-state'), 'svn.state.json');
    const make = (rec: Recorder) => new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { stateFile, notifiers: [rec], timeZone: 'UTC', name: 'svn-file' });
    const a = new Recorder('mail');
    await make(a).check({ now: NEWEST + 3 * DAY });
    expect(a.events.map((e) => e.status)).toEqual(['critical']);
    const saved = JSON.parse(await readFile(stateFile, 'utf8')) as Record<string, unknown>;
    expect(saved).toEqual({ version: 1, monitor: 'svn-file', notifiers: { mail: { state: { status: 'critical', checks: { age: 'critical' } }, updated: new Date(NEWEST + 3 * DAY).toISOString() } } });

    const b = new Recorder('mail'); // a later cron run: a new process
    await make(b).check({ now: NEWEST + 4 * DAY });
    expect(b.events).toEqual([]);
    b.failing = true;
    const failed = await make(b).check({ now: NEWEST + HOUR });
    expect(failed.notifications).toEqual([{ notifier: 'mail', sent: false, error: { code: 'ECONNREFUSED', message: 'relay down' } }]);
    expect(JSON.parse(await readFile(stateFile, 'utf8'))).toEqual(saved); // unchanged: told again next run
    b.failing = false;
    await make(b).check({ now: NEWEST + 2 * HOUR });
    expect(b.events.map((e) => [e.previousStatus, e.status])).toEqual([['critical', 'ok']]);
    expect(() => make(b).history()).toThrow(/Catalog/);
  });

  it('refuses a state file of another monitor, or one that is not a state file', async () => {
    const root = await tree();
    const dir = await scratch('monitor-state');
    await writeFile(join(dir, 'other.json'), JSON.stringify({ version: 1, monitor: 'wiki', notifiers: {} }));
    await writeFile(join(dir, 'junk.json'), '{ not json');
    for (const f of ['other.json', 'junk.json']) {
      const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { stateFile: join(dir, f), notifiers: [new Recorder('mail')], name: 'svn' });
      const err = await rejectsWith(m.check({ now: NEWEST + 3 * DAY }), 'EBAD_CONFIG');
      expect(err.message).toContain(join(dir, f));
    }
  });

  it('tells nobody when the state file\'s folder is missing (EBAD_CONFIG naming stateFile): otherwise the same mail would go out on every run', async () => {
    const root = await tree();
    const dir = await scratch('monitor-state');
    const mail = new Recorder('mail');
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { stateFile: join(dir, 'no-such-dir', 'svn.state'), notifiers: [mail], name: 'svn' });
    for (let run = 0; run < 3; run++) {
      const err = await rejectsWith(m.check({ now: NEWEST + 3 * DAY }), 'EBAD_CONFIG');
      expect(err.message).toMatch(/Monitor option "stateFile": .*no-such-dir, the folder of .*svn\.state, does not exist.*nobody was told/);
    }
    expect(mail.events).toEqual([]);
  });

  it('two overlapping runs tell a change once (they take turns through a lock beside the Catalog or the state file)', async () => {
    const root = await tree();
    const dir = await scratch('monitor-overlap');
    using catalog = new Catalog(join(dir, 'stowage.catalog'));
    /** A mail relay that takes its time, as a slow one does. */
    class Slow extends Recorder {
      override async notify(event: MonitorEvent): Promise<void> {
        await new Promise((r) => setTimeout(r, 300));
        await super.notify(event);
      }
    }
    for (const store of [{ catalog }, { stateFile: join(dir, 'svn.state.json') }]) {
      const relay = new Slow('mail');
      // Two cron runs of one monitor (two Monitor objects, as two processes have).
      const run = () => new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { ...store, notifiers: [relay], timeZone: 'UTC', name: 'svn' }).check({ now: NEWEST + 3 * DAY });
      const [a, b] = await Promise.all([run(), run()]);
      expect(relay.events.map((e) => e.status)).toEqual(['critical']);
      expect([a.notifications, b.notifications].sort((x, y) => y.length - x.length)).toEqual([[{ notifier: 'mail', sent: true, error: null }], []]);
      expect((await readdir(dir)).filter((f) => f.endsWith('.lock'))).toEqual([]);
    }
    // A run that cannot get its turn tells nobody and says why; the next run tells.
    const stateFile = join(dir, 'wiki.state.json');
    const holder = new LockDir(dir, { name: 'wiki.state.json.monitor-wiki.lock' });
    await holder.acquire();
    const saved = notifyLock.waitMs;
    notifyLock.waitMs = 200;
    const mail = new Recorder('mail');
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { stateFile, notifiers: [mail], timeZone: 'UTC', name: 'wiki' });
    try {
      const r = await m.check({ now: NEWEST + 3 * DAY });
      expect(r.notifications).toEqual([{ notifier: 'mail', sent: false, error: { code: 'ELOCKED', message: expect.stringMatching(/another run of monitor "wiki" has been notifying.*this run told nobody/) } }]);
      expect(mail.events).toEqual([]);
    } finally {
      notifyLock.waitMs = saved;
      await holder.release();
    }
    await m.check({ now: NEWEST + 3 * DAY });
    expect(mail.events.map((e) => e.status)).toEqual(['critical']);
    // Any name makes a lock name: a lone surrogate, a slash, a long one.
    for (const [i, name] of ['x\ud800y', 'a/b', 'ü'.repeat(100)].entries()) {
      const rec = new Recorder('mail');
      await new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { stateFile: join(dir, `odd-${i}.json`), notifiers: [rec], timeZone: 'UTC', name }).check({ now: NEWEST + 3 * DAY });
      expect(rec.events).toHaveLength(1);
    }
    expect((await readdir(dir)).filter((f) => f.endsWith('.lock'))).toEqual([]);
  });

  it('can run without telling anyone (notify: false) and without history (history: false)', async () => {
    const root = await tree();
    using catalog = new Catalog(':memory:');
    const rec = new Recorder('r');
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { catalog, notifiers: [rec], history: false, timeZone: 'UTC' });
    await m.check({ now: NEWEST + 3 * DAY, notify: false });
    expect(rec.events).toEqual([]);
    expect(m.history()).toEqual([]);
    await m.check({ now: NEWEST + 3 * DAY });
    expect(rec.events).toHaveLength(1);
  });
});

describe('a Catalog as the source', () => {
  async function recorded(): Promise<{ catalog: Catalog; dir: string; files: string[] }> {
    const dir = await scratch('monitor-src');
    const catalog = new Catalog(join(dir, 'stowage.catalog'));
    const files: string[] = [];
    for (const [i, id] of NIGHTS.entries()) {
      for (const name of ['svn.tar.gz', 'wiki.tar.gz']) {
        const rel = `${id}/${name}`;
        const path = join(dir, 'sets', rel);
        await makeSet(join(dir, 'sets'), id, { files: { [name]: randomBytes(name === 'svn.tar.gz' ? 4000 : 1000) }, sidecars: false });
        catalog.recordArchive({ path: rel, dna: await DnaDigest.ofFile(path), created: Date.parse(`${id.slice(0, 10).replace(/\//g, '-')}T03:15:00Z`) + i });
        files.push(path);
      }
    }
    return { catalog, dir, files };
  }

  it('groups archives by directory, measures age and size, and verifies against the recorded DNA', async () => {
    const { catalog, dir, files } = await recorded();
    using _ = catalog;
    const m = new Monitor({ catalog, root: join(dir, 'sets') }, { maxAge: '26h', size: true, verify: true });
    expect(m.source).toBe(`catalog:${join(dir, 'stowage.catalog')}`);
    const ok = await m.check({ now: NEWEST + HOUR });
    expect(ok.checks.map((c) => [c.check, c.status])).toEqual([
      ['age', 'ok'],
      ['size', 'ok'],
      ['dna', 'ok'],
    ]);
    expect(ok.check('age')!.details['newest']).toBe(NIGHTS[7]);
    expect(ok.check('size')!.details).toMatchObject({ bytes: 5000, medianBytes: 5000, history: 7 });
    expect(ok.check('dna')!.details).toMatchObject({ sets: [NIGHTS[7]], files: 2, problems: [] });

    await writeFile(files[15]!, randomBytes(1000)); // newest wiki.tar.gz: same size, other bytes
    const bad = await m.check({ now: NEWEST + HOUR });
    expect(bad.check('dna')).toMatchObject({ status: 'critical' });
    expect(bad.check('dna')!.message).toMatch(/wiki\.tar\.gz does not match its recorded DNA/);
    await rm(files[14]!);
    const gone = await m.check({ now: NEWEST + HOUR });
    expect(gone.check('dna')!.details['problems']).toEqual([expect.stringMatching(/svn\.tar\.gz is recorded but missing on local/), expect.stringMatching(/does not match/)]);

    // Only part of the catalog, by prefix; the history goes in the same catalog.
    const one = new Monitor({ catalog, prefix: NIGHTS[0]!.slice(0, 10), root: join(dir, 'sets') }, { maxAge: '26h' });
    const r = await one.check({ now: NEWEST });
    expect(r.check('age')).toMatchObject({ status: 'critical', details: { newest: NIGHTS[0] } });
    expect(one.history().map((x) => x.status)).toEqual(['critical']);
    // The prefix is a folder: a sibling whose name starts the same is not in it.
    const night = NIGHTS[7]!;
    const sibling = `${night.slice(0, 10)}-old/031500`;
    await makeSet(join(dir, 'sets'), sibling, { files: { 'svn.tar.gz': randomBytes(10) }, sidecars: false });
    catalog.recordArchive({ path: `${sibling}/svn.tar.gz`, dna: await DnaDigest.ofFile(join(dir, 'sets', sibling, 'svn.tar.gz')), created: NEWEST + HOUR });
    for (const prefix of [night.slice(0, 10), `${night.slice(0, 10)}/`]) {
      const r7 = await new Monitor({ catalog, prefix, root: join(dir, 'sets') }, { maxAge: '26h' }).check({ now: NEWEST + 2 * HOUR });
      expect(r7.check('age')).toMatchObject({ status: 'ok', details: { newest: night } });
    }
  });

  it('reports the DNA check of recorded archives as progress, up to their recorded sizes', async () => {
    const { catalog, dir } = await recorded();
    using _ = catalog;
    const seen: Progress[] = [];
    const r = await new Monitor({ catalog, root: join(dir, 'sets') }, { verify: true }).check({ now: NEWEST + HOUR, onProgress: (p) => seen.push(p) });
    expect(r.check('dna')!.status).toBe('ok');
    expect(seen.length).toBeGreaterThan(0);
    for (const p of seen) expect(p).toMatchObject({ phase: 'verify', bytesTotal: 5000, itemsTotal: 1 });
    expect(seen.at(-1)).toMatchObject({ bytesDone: 5000, itemsDone: 1 });
  });

  it('leaves out archives recorded with a date after now (a wrong clock): the age is that of the real newest, plus a warning', async () => {
    const { catalog, dir } = await recorded();
    using _ = catalog;
    await makeSet(join(dir, 'sets'), '2099/01/01/031500', { files: { 'svn.tar.gz': randomBytes(10) }, sidecars: false });
    const rel = '2099/01/01/031500/svn.tar.gz';
    catalog.recordArchive({ path: rel, dna: await DnaDigest.ofFile(join(dir, 'sets', rel)), created: Date.parse('2099-01-01T03:15:00Z') });
    const m = new Monitor({ catalog, root: join(dir, 'sets') }, { maxAge: { warning: '26h', critical: '48h' }, size: true, verify: true });
    const r = await m.check({ now: NEWEST + 3 * DAY });
    expect(r.check('age')).toMatchObject({ status: 'critical', details: { newest: NIGHTS[7], future: [{ id: '2099/01/01/031500', time: '2099-01-01T03:15:00.000Z' }] } });
    expect(r.check('age')!.message).toMatch(/^newest backup 3d old; 2099\/01\/01\/031500 is dated .* in the future/);
    expect(r.check('size')!.details).toMatchObject({ newest: NIGHTS[7], bytes: 5000 });
    expect(r.check('dna')!.details['sets']).toEqual([NIGHTS[7]]);
  });

  it('watches the LOCKED of its root (or of locks.dirs); without either the locks check is refused, not silently empty', async () => {
    const { catalog, dir } = await recorded();
    using _ = catalog;
    expect(() => new Monitor(catalog, { locks: true })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringContaining('needs a place to look') }));
    const root = join(dir, 'sets');
    const m = new Monitor({ catalog, root }, { locks: true }, { history: false });
    expect(m.constraints.locks!.dirs.map((d) => d.path)).toEqual([root]);
    expect((await m.check({ now: NEWEST })).check('locks')).toMatchObject({ status: 'ok', message: 'no LOCKED directory' });
    // A lock left by a backup that died on another host, heartbeat long gone: stale, a warning.
    await mkdir(join(root, 'LOCKED'));
    await writeFile(join(root, 'LOCKED', 'owner.json'), JSON.stringify({ host: 'primary', pid: 7, purpose: 'nightly', since: new Date(NEWEST - 5 * HOUR).toISOString(), token: 't' }));
    const old = (Date.now() - 2 * HOUR) / 1000;
    await utimes(join(root, 'LOCKED', 'owner.json'), old, old);
    const r = await m.check({ now: NEWEST });
    expect(r.check('locks')).toMatchObject({ status: 'warning', message: expect.stringMatching(new RegExp(`^stale lock local:${join(root, 'LOCKED')} \\(pid 7 on primary, nightly\\)`)) });
    // Given dirs, those are watched instead.
    const elsewhere = new Monitor(catalog, { locks: { dirs: [{ transport: new LocalTransport(), path: dir }] } }, { history: false });
    expect((await elsewhere.check({ now: NEWEST })).check('locks')).toMatchObject({ status: 'ok' });
  });

  it('is critical (EDB) when the catalog cannot be read', async () => {
    const { catalog } = await recorded();
    const m = new Monitor(catalog, { maxAge: '26h' }, { history: false });
    catalog.close();
    const r = await m.check({ now: NEWEST });
    expect(r.check('age')).toMatchObject({ status: 'critical', error: { code: 'EDB' } });
  });
});

describe('the job check', () => {
  it('flags runs that started and never finished, and jobs whose last run failed', async () => {
    using catalog = new Catalog(':memory:');
    const m = new Monitor(catalog, { jobs: { maxRun: { warning: '6h', critical: '12h' } } }, { history: false });
    expect((await m.check({ now: NEWEST })).check('jobs')).toMatchObject({ status: 'ok', message: 'no unfinished job' });

    const running = catalog.startJob('svn-nightly', { started: NEWEST - HOUR });
    expect((await m.check({ now: NEWEST })).check('jobs')).toMatchObject({ status: 'ok', message: '1 job run in progress, none overdue' });
    const w = (await m.check({ now: NEWEST + 6 * HOUR })).check('jobs')!;
    expect(w.status).toBe('warning');
    expect(w.message).toMatch(new RegExp(`^job svn-nightly #${running.id} started 7h ago on .* \\(pid ${process.pid}\\) and never finished$`));
    expect(w.details['unfinished']).toEqual([expect.objectContaining({ id: running.id, name: 'svn-nightly', runningSeconds: 7 * 3600, status: 'warning' })]);
    expect((await m.check({ now: NEWEST + 12 * HOUR })).check('jobs')!.status).toBe('critical');

    catalog.finishJob(running.id, { status: 'ok', finished: NEWEST });
    const failed = catalog.startJob('wiki-nightly', { started: NEWEST - 2 * HOUR });
    catalog.finishJob(failed.id, { status: 'failed', error: 'disk full', finished: NEWEST - HOUR });
    const f = (await m.check({ now: NEWEST })).check('jobs')!;
    expect(f).toMatchObject({ status: 'warning', message: 'last run of job wiki-nightly failed: disk full' });
    expect(f.metrics).toContainEqual({ name: 'failed_jobs', value: 1, unit: 'c', warning: 0, critical: null, below: false });
    // A later successful run clears it.
    const again = catalog.startJob('wiki-nightly', { started: NEWEST });
    catalog.finishJob(again.id, { status: 'ok', finished: NEWEST + HOUR });
    expect((await m.check({ now: NEWEST + 2 * HOUR })).check('jobs')!.status).toBe('ok');
    // Only one job name; failures can be ignored.
    catalog.finishJob(catalog.startJob('other', { started: NEWEST }).id, { status: 'aborted', finished: NEWEST });
    expect((await new Monitor(catalog, { jobs: { maxRun: '6h', name: 'wiki-nightly' } }).check({ now: NEWEST + 2 * HOUR })).status).toBe('ok');
    expect((await new Monitor(catalog, { jobs: { maxRun: '6h', failedIsWarning: false } }).check({ now: NEWEST + 2 * HOUR })).status).toBe('ok');
    expect((await new Monitor(catalog, { jobs: { maxRun: '6h' } }).check({ now: NEWEST + 2 * HOUR })).check('jobs')!.message).toBe('last run of job other aborted');
  });
});

describe("the Catalog's monitor records", () => {
  it('a read-only Catalog refuses a run record with EDB (not the driver\'s raw error); a Monitor on it checks with history: false', async () => {
    const dir = await scratch();
    const file = join(dir, 'ro.catalog');
    using writer = new Catalog(file);
    writer.recordArchive({ path: '/backups/a.tar.gz', dna: { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' }, created: NEWEST });
    using ro = new Catalog(file, { readonly: true });
    const err = throwsWith(() => ro.recordMonitorRun({ monitor: 'm', status: 'ok', report: {}, results: [] }), 'EDB');
    expect(err.message).toMatch(/cannot record a monitor run/);
    // history defaults to true: the run cannot be kept, and check says so as EDB.
    await rejectsWith(new Monitor(ro, { maxAge: '1d' }).check({ now: NEWEST + HOUR }), 'EDB');
    expect((await new Monitor(ro, { maxAge: '1d' }, { history: false }).check({ now: NEWEST + HOUR })).status).toBe('ok');
  });

  it('validates what it records and reads it back', () => {
    using catalog = new Catalog(':memory:');
    const run = catalog.recordMonitorRun({ monitor: 'm', checked: 1000, status: 'warning', report: { a: 1 }, results: [{ check: 'age', status: 'warning', message: 'old', metrics: [{ v: 1 }] }, { check: 'dna', status: 'ok', message: 'fine' }] });
    expect(run).toEqual({ id: 1, monitor: 'm', checked: new Date(1000), status: 'warning', report: { a: 1 } });
    expect(catalog.monitorRuns('m')).toEqual([run]);
    expect(catalog.monitorResults('m')).toEqual([
      { runId: 1, checked: new Date(1000), check: 'age', status: 'warning', message: 'old', metrics: [{ v: 1 }] },
      { runId: 1, checked: new Date(1000), check: 'dna', status: 'ok', message: 'fine', metrics: null },
    ]);
    throwsWith(() => catalog.recordMonitorRun({ monitor: 'm', status: 'bad' as never, report: {}, results: [] }), 'EBAD_CONFIG');
    throwsWith(() => catalog.recordMonitorRun({ monitor: 'm', status: 'ok', report: {}, results: [{ check: 'a', status: 'ok', message: '' }, { check: 'a', status: 'ok', message: '' }] }), 'EBAD_CONFIG');
    throwsWith(() => catalog.recordMonitorRun({ monitor: 'm', status: 'ok', report: { n: 1n }, results: [] }), 'EBAD_CONFIG');
    throwsWith(() => catalog.recordMonitorRun({ monitor: 'm', status: 'ok', report: {}, results: [], extra: 1 } as never), 'EBAD_CONFIG');
    throwsWith(() => catalog.monitorRuns('m', { since: 'yesterday' as never }), 'EBAD_CONFIG');
    // A failed run record leaves nothing behind (one transaction).
    expect(catalog.monitorRuns('m')).toHaveLength(1);

    expect(catalog.monitorNotifyState('m', 'mail')).toBeUndefined();
    catalog.setMonitorNotifyState('m', 'mail', { status: 'critical' }, 5000);
    catalog.setMonitorNotifyState('m', 'mail', { status: 'ok' }, 6000);
    expect(catalog.monitorNotifyState('m', 'mail')).toEqual({ state: { status: 'ok' }, updated: new Date(6000) });
    throwsWith(() => catalog.setMonitorNotifyState('', 'mail', {}), 'EBAD_CONFIG');
  });
});

/** A LocalTransport whose digest waits until the check is aborted. */
class StuckDigest extends LocalTransport {
  digestStarted: () => void = () => {};
  override async digest(_path: string, _alg?: never, options: OpOptions = {}): Promise<never> {
    const signal = options.signal;
    const stuck = new Promise<never>((_, reject) => {
      if (signal?.aborted) reject(signal.reason);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    this.digestStarted();
    return stuck;
  }
}

describe('abort', () => {
  it('rejects with the reason before start, records nothing and tells nobody', async () => {
    const root = await tree();
    using catalog = new Catalog(':memory:');
    const rec = new Recorder('r');
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { catalog, notifiers: [rec], timeZone: 'UTC' });
    const ac = new AbortController();
    ac.abort(new Error('cancelled'));
    await expect(m.check({ now: NEWEST + 3 * DAY, signal: ac.signal })).rejects.toBe(ac.signal.reason);
    expect(m.history()).toEqual([]);
    expect(rec.events).toEqual([]);
  });

  it('rejects with the reason midway (during a far digest), records nothing and tells nobody', async () => {
    const root = await tree();
    using catalog = new Catalog(':memory:');
    const rec = new Recorder('r');
    const stuck = new StuckDigest();
    const m = new Monitor({ transport: stuck, dir: root }, { maxAge: '26h', verify: true }, { catalog, notifiers: [rec], timeZone: 'UTC' });
    const ac = new AbortController();
    const reason = new Error('operator pressed ^C');
    stuck.digestStarted = () => ac.abort(reason);
    await expect(m.check({ now: NEWEST + 3 * DAY, signal: ac.signal })).rejects.toBe(reason);
    expect(m.history()).toEqual([]);
    expect(rec.events).toEqual([]);
  });

  it('rejects with the reason when aborted while a notifier runs, and tells that notifier again next run', async () => {
    const root = await tree();
    using catalog = new Catalog(':memory:');
    const ac = new AbortController();
    const reason = new Error('stop');
    let calls = 0;
    const slow: Notifier = {
      name: 'slow',
      notify: (_e, o) => {
        calls++;
        if (calls === 1) {
          queueMicrotask(() => ac.abort(reason));
          return new Promise((_, reject) => o?.signal?.addEventListener('abort', () => reject(o.signal!.reason), { once: true }));
        }
        return Promise.resolve();
      },
    };
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, { catalog, notifiers: [slow], timeZone: 'UTC' });
    await expect(m.check({ now: NEWEST + 3 * DAY, signal: ac.signal })).rejects.toBe(reason);
    expect(m.history()).toEqual([]);
    const r = await m.check({ now: NEWEST + 3 * DAY });
    expect(calls).toBe(2);
    expect(r.notifications).toEqual([{ notifier: 'slow', sent: true, error: null }]);
  });
});
