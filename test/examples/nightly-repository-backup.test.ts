/**
 * The nightly repository backup and its recovery recipe, end to end, as a
 * user runs them (importing `stowage` by name): a real Subversion
 * repository (svnadmin/svn from Debian's `subversion`), a SQLite wiki
 * database written by another process all along, the harness's real sshd
 * as the paired node. Nights pass by giving each run its `now`; nothing
 * sleeps.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, readlink, readdir, rm, rmdir, truncate, utimes, writeFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver, LocalTransport, SshTransport, StowageError, backupSetPath, listBackupSets } from 'stowage';
import { Catalog } from 'stowage/catalog';
import { HttpNotifier, Monitor } from 'stowage/monitor';
import { JOB_NAME, backupMonitors, checkBackups, nagiosLine, nightlyRepositoryBackup, type NightlyResult } from '../../examples/nightly-repository-backup.js';
import { recoverRepositoryBackup, unifiedDiff, type ConfigChange } from '../../examples/recover-repository-backup.js';
import { makeTempDir, requireBinary, run, spawnUntil, startSshd, type SshdServer, type TempDir } from '../support/index.js';

const root = join(import.meta.dirname, '..', '..');
const execP = promisify(execFile);
/** Runs a command line with its stdin closed at once (a prompt nobody answers reads end of input, and does not hang). */
function exec(file: string, args: readonly string[], opts: { cwd: string }): Promise<{ stdout: string; stderr: string }> {
  const p = execP(file, args, { ...opts, encoding: 'utf8', timeout: 120_000 });
  p.child.stdin?.end();
  return p;
}
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const svnadmin = requireBinary({ name: 'svnadmin', commands: ['svnadmin'], debianPackage: 'subversion' });
const svn = requireBinary({ name: 'svn', commands: ['svn'], debianPackage: 'subversion' });
const svnlook = requireBinary({ name: 'svnlook', commands: ['svnlook'], debianPackage: 'subversion' });

/** Nine nights at 03:15 UTC, ending two days ago (so that no set is dated after the real clock). */
const today = new Date();
const BASE = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - 10, 3, 15, 0);
const NIGHTS = Array.from({ length: 9 }, (_, k) => new Date(BASE + k * DAY));
const LAST = NIGHTS[8]!.getTime();

/** Keeps inserting wiki page versions, every few ms, until killed. */
const WRITER = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.pragma('busy_timeout = 5000');
const ins = db.prepare('INSERT INTO wiki (name, version, text) VALUES (?, ?, ?)');
let v = 0;
setInterval(() => { ins.run('WikiStart', ++v, 'edit ' + v + ' ' + 'x'.repeat(200)); }, 3);
process.stdout.write('ready\\n');
`;

const SVNSERVE_CONF = '[general]\nanon-access = read\nauth-access = write\n# realm = My First Repository\n';
const PRE_COMMIT = '#!/bin/sh\n# site policy: every commit is fine\nexit 0\n';
const TRAC_INI = '[trac]\nbase_url = https://daq.example.org/wiki\ndatabase = sqlite:db/trac.db\n\n[logging]\nlog_type = none\n';

let sshd: SshdServer;
let ssh: SshTransport;
let tmp: TempDir;
let writer: ChildProcess | undefined;
let hook: Server;
let hookUrl: string;
const posted: { status: string; monitor: string; subject: string }[] = [];

function svnArgs(...args: string[]): string[] {
  return ['--non-interactive', '--config-dir', join(tmp.path, 'svn-config'), ...args];
}

/**
 * The paired node's transport, watched: each file the recipe puts there and
 * each folder it renames (retention moving a set out) is noted with who held
 * the far tree's LOCKED at that moment. `afterPut` can spoil a file as it
 * lands. Lock housekeeping itself (paths under LOCKED) is not noted.
 */
function watched(t: SshTransport, farRoot: string, afterPut?: (path: string) => Promise<void>): { transport: SshTransport; seen: { op: string; path: string; holder: string | undefined }[] } {
  const seen: { op: string; path: string; holder: string | undefined }[] = [];
  const holder = (): string | undefined => {
    try {
      return (JSON.parse(readFileSync(join(farRoot, 'LOCKED', 'owner.json'), 'utf8')) as { purpose: string }).purpose;
    } catch {
      return undefined;
    }
  };
  const transport = new Proxy(t, {
    get(target, key) {
      const v = Reflect.get(target, key, target) as unknown;
      if (typeof v !== 'function') return v;
      if (key === 'put' || key === 'rename') {
        return async (...args: unknown[]) => {
          const path = String(args[key === 'put' ? 1 : 0]);
          if (!path.includes('/LOCKED')) seen.push({ op: key, path, holder: holder() });
          const r = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (key === 'put') await afterPut?.(path);
          return r;
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
  return { transport, seen };
}

/** A wiki database with `pages` pages, after one pragma (`journal_mode = WAL`, `page_size = 4096`). */
function makeWikiDb(file: string, pages: number, pragma: string): void {
  const db = new Database(file);
  try {
    db.pragma(pragma);
    db.exec('CREATE TABLE wiki (name TEXT, version INTEGER, text TEXT, PRIMARY KEY (name, version))');
    const ins = db.prepare('INSERT INTO wiki (name, version, text) VALUES (?, ?, ?)');
    db.transaction(() => {
      for (let i = 0; i < pages; i++) ins.run(`Page${i}`, 1, `text of page ${i} `.repeat(20));
    })();
  } finally {
    db.close();
  }
}

function rowsOf(bytesOrFile: Buffer | string): number {
  const db = new Database(bytesOrFile, { readonly: true });
  try {
    return Number(db.prepare('SELECT count(*) FROM wiki').pluck().get());
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  tmp = makeTempDir('nightly');
  sshd = await startSshd();
  ssh = new SshTransport({ host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey, knownHosts: sshd.knownHostsPath });
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString())).on('end', () => {
      posted.push(JSON.parse(body) as (typeof posted)[number]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts`;
});

afterAll(async () => {
  writer?.kill('SIGKILL');
  hook?.closeAllConnections();
  await new Promise((r) => hook?.close(r));
  await ssh?.close();
  await sshd?.stop();
  await tmp?.remove();
});

describe('examples/nightly-repository-backup.ts and examples/recover-repository-backup.ts', () => {
  const paths = {
    repo: '',
    wc: '',
    wiki: '',
    backups: '',
    remote: '',
  };
  let catalog: Catalog;
  const results: NightlyResult[] = [];
  let rowsBefore = 0;

  it('backs up a real svn repository and a live SQLite wiki for nine nights, ships, checks and prunes both sides', async () => {
    paths.repo = join(tmp.path, 'svn', 'daq');
    paths.wc = join(tmp.path, 'wc');
    paths.wiki = join(tmp.path, 'wiki', 'daqwiki');
    paths.backups = join(tmp.path, 'backups');
    paths.remote = join(sshd.root, 'backups');
    catalog = new Catalog(join(tmp.path, 'stowage.catalog'));

    // A repository with a layout, a config and a hook; a wiki with its database in WAL mode.
    await mkdir(join(tmp.path, 'svn'), { recursive: true });
    await run(svnadmin, ['create', paths.repo]);
    await writeFile(join(paths.repo, 'conf', 'svnserve.conf'), SVNSERVE_CONF);
    await writeFile(join(paths.repo, 'hooks', 'pre-commit'), PRE_COMMIT);
    await chmod(join(paths.repo, 'hooks', 'pre-commit'), 0o755);
    const src = join(tmp.path, 'import');
    await mkdir(join(src, 'daq'), { recursive: true });
    await writeFile(join(src, 'daq', 'readout.c'), '/* readout */\nint main(void) { return 0; }\n');
    await writeFile(join(src, 'README'), 'DAQ software\n');
    await run(svn, svnArgs('import', src, `file://${paths.repo}/trunk`, '-m', 'initial import'));
    await run(svn, svnArgs('checkout', `file://${paths.repo}/trunk`, paths.wc));

    await mkdir(join(paths.wiki, 'conf'), { recursive: true });
    await mkdir(join(paths.wiki, 'db'), { recursive: true });
    await mkdir(join(paths.wiki, 'attachments'), { recursive: true });
    await writeFile(join(paths.wiki, 'conf', 'trac.ini'), TRAC_INI);
    await writeFile(join(paths.wiki, 'attachments', 'cabling.txt'), 'crate 3 slot 7 -> TDC 2\n');
    const dbFile = join(paths.wiki, 'db', 'trac.db');
    makeWikiDb(dbFile, 2000, 'journal_mode = WAL');
    // Another process keeps editing the wiki during every backup.
    writer = spawn(process.execPath, ['-e', WRITER, dbFile], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      writer!.stdout!.once('data', () => resolve());
      writer!.once('exit', (code) => reject(new Error(`wiki writer exited with ${code}`)));
    });
    rowsBefore = rowsOf(dbFile);

    for (const [k, now] of NIGHTS.entries()) {
      await writeFile(join(paths.wc, 'daq', 'readout.c'), `/* readout, night ${k} */\nint main(void) { return ${k}; }\n`);
      await run(svn, svnArgs('commit', paths.wc, '-m', `night ${k}`));
      // Each progress line is emitted while the run holds the global LOCKED of the local tree.
      const lines: { line: string; holder: string | undefined }[] = [];
      const holder = (): string | undefined => {
        try {
          return (JSON.parse(readFileSync(join(paths.backups, 'LOCKED', 'owner.json'), 'utf8')) as { purpose: string; pid: number }).purpose;
        } catch {
          return undefined;
        }
      };
      const log = (line: string): void => void lines.push({ line, holder: holder() });
      const far = watched(ssh, paths.remote);
      const r = await nightlyRepositoryBackup({ svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: paths.backups, remote: { transport: far.transport, dir: paths.remote }, catalog, now, timeZone: 'UTC', svnadmin, log });
      // The LOCKED protocol on the far side: every file arrives under the sync's lock, and
      // retention moves sets out under the recipe's own far lock.
      const puts = far.seen.filter((x) => x.op === 'put');
      expect(puts.length).toBeGreaterThanOrEqual(4); // the night's two tarballs and their sidecars at least
      for (const x of puts) expect(x.holder, x.path).toBe(`stowage sync from local:${paths.backups}`);
      const moved = far.seen.filter((x) => x.op === 'rename' && x.path.startsWith(paths.remote + '/2'));
      expect(moved.length > 0, `night ${k}: sets moved out on the far side`).toBe(k >= 7);
      for (const x of moved) expect(x.holder, x.path).toBe(`${JOB_NAME} retention`);
      expect(lines.map((l) => l.line)).toEqual([
        `svnadmin hotcopy ${paths.repo}`,
        expect.stringMatching(/^svn-daq\.tar\.gz: \d+ entries, DNA [0-9a-f]{32}$/),
        expect.stringMatching(/^wiki-daqwiki\.tar\.gz: \d+ entries, integrity ok$/),
        expect.stringMatching(/^synced \d+ files to ssh:\/\/.*; 0 mutants$/),
      ]);
      for (const l of lines) expect(l.holder, l.line).toBe(`${JOB_NAME} ${now.toISOString()}`);
      await expect(stat(join(paths.backups, 'LOCKED'))).rejects.toMatchObject({ code: 'ENOENT' }); // released at the end
      expect(r.wikiIntegrity).toBe('ok');
      expect(r.remoteMutants).toEqual([]);
      expect(r.archives.map((a) => a.name)).toEqual(['svn-daq.tar.gz', 'wiki-daqwiki.tar.gz']);
      results.push(r);
    }
    const rowsAfter = rowsOf(dbFile);
    expect(rowsAfter).toBeGreaterThan(rowsBefore); // the writer was busy all along

    const ids = results.map((r) => r.setId);
    expect(ids[8]).toBe(`${NIGHTS[8]!.toISOString().slice(0, 10).replace(/-/g, '/')}/031500`);
    // Seven days kept on both sides; night 0 went on night 7, night 1 on night 8.
    expect(results.map((r) => r.purged)).toEqual([...Array(7).fill({ local: [], remote: [] }), { local: [ids[0]], remote: [ids[0]] }, { local: [ids[1]], remote: [ids[1]] }]);
    expect((await listBackupSets(new LocalTransport(), paths.backups, { timeZone: 'UTC' })).map((s) => s.id)).toEqual(ids.slice(2));
    expect((await listBackupSets(ssh, paths.remote, { timeZone: 'UTC' })).map((s) => s.id)).toEqual(ids.slice(2));
    expect(await readlink(join(paths.backups, 'last'))).toBe(ids[8]);
    expect(await readlink(join(paths.remote, 'last'))).toBe(ids[8]);
    expect(results[8]!.last).toEqual({ local: ids[8], remote: ids[8] });
    // No lock left behind on either side.
    expect((await readdir(paths.backups)).filter((n) => n === 'LOCKED')).toEqual([]);
    expect((await readdir(paths.remote)).filter((n) => n === 'LOCKED')).toEqual([]);

    // The far copy is byte-identical, sidecar and all.
    const set8 = join(...ids[8]!.split('/'));
    for (const f of ['svn-daq.tar.gz', 'wiki-daqwiki.tar.gz', 'svn-daq.tar.gz.dna']) {
      expect((await readFile(join(paths.remote, set8, f))).equals(await readFile(join(paths.backups, set8, f))), f).toBe(true);
    }
    // The archived wiki database is a consistent snapshot taken while the writer ran.
    const archivedDb = await Archiver.readEntry(join(paths.backups, set8, 'wiki-daqwiki.tar.gz'), 'daqwiki/db/trac.db');
    const archivedRows = rowsOf(archivedDb);
    expect(archivedRows).toBeGreaterThan(rowsBefore);
    expect(archivedRows).toBeLessThanOrEqual(rowsAfter);
    const names = (await Archiver.list(join(paths.backups, set8, 'wiki-daqwiki.tar.gz'))).map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(['daqwiki/conf/trac.ini', 'daqwiki/attachments/cabling.txt', 'daqwiki/db/trac.db']));
    expect(names.filter((n) => n.endsWith('-wal') || n.endsWith('-shm'))).toEqual([]);

    // The Catalog knows every run, the archives still kept and what went where.
    const jobs = catalog.lastJobs({ name: JOB_NAME });
    expect(jobs.map((j) => j.status)).toEqual(Array(9).fill('ok'));
    expect(jobs[0]!.started.getTime()).toBe(LAST);
    expect(catalog.archives().map((a) => a.path).sort()).toEqual(ids.slice(2).flatMap((id) => [`${id}/svn-daq.tar.gz`, `${id}/wiki-daqwiki.tar.gz`]).sort());
    expect(catalog.transfers({ path: `${ids[8]}/svn-daq.tar.gz` })).toHaveLength(1);
  });

  it('reports healthy the morning after, and alerts (once) after the backups stop', async () => {
    const notifiers = [new HttpNotifier(hookUrl, { name: 'alerts' })];
    const setup = { backupRoot: paths.backups, remote: { transport: ssh, dir: paths.remote }, catalog, notifiers, minFreePercent: 1 };
    const morning = await checkBackups({ ...setup, now: new Date(LAST + 2 * HOUR) });
    for (const r of [morning.local, morning.remote]) {
      expect(r.checks.map((c) => [c.check, c.status, c.message])).toEqual(
        expect.arrayContaining([
          ['age', 'ok', 'newest backup 2h old'],
          ['dna', 'ok', 'DNA of the newest backup verified (2 files)'],
          ['locks', 'ok', 'no LOCKED directory'],
        ]),
      );
      expect(r.status, Monitor.nagios(r)).toBe('ok');
    }
    expect(morning.local.check('jobs')!.message).toBe('no unfinished job');
    expect(morning.local.check('freeSpace')!.details['nodes']).toEqual([expect.objectContaining({ name: 'local', status: 'ok' }), expect.objectContaining({ name: 'paired', status: 'ok' })]);
    expect(morning.remote.source).toBe(`${ssh.name}:${paths.remote}`);
    expect(morning.exitCode).toBe(0);
    expect(posted).toEqual([]);

    // The cron job stopped: three days later both nodes are critical, and the alert goes out once per node.
    const later = await checkBackups({ ...setup, now: new Date(LAST + 3 * DAY) });
    expect(later.exitCode).toBe(2);
    // One Nagios line for both nodes: the worst status first, whichever node has it; each node's perfdata labels prefixed.
    const line = nagiosLine(2, [
      ['local', morning.local],
      ['paired', later.remote],
    ]);
    expect(line).toMatch(/^STOWAGE CRITICAL - local: newest backup 2h old.*; paired: newest backup 3d old.* \| local_age=7200s;93600;172800 .*paired_age=259200s;93600;172800/);
    expect(line.split('\n')).toHaveLength(1);
    expect(line.match(/ age=/g)).toBeNull();
    for (const r of [later.local, later.remote]) {
      expect(r.status).toBe('critical');
      expect(Monitor.nagios(r)).toMatch(/^STOWAGE CRITICAL - newest backup 3d old \| age=259200s;93600;172800 size=\d+B;\d+:;\d+: /);
    }
    expect(posted.map((p) => [p.monitor, p.status])).toEqual([
      [`${JOB_NAME}:local`, 'critical'],
      [`${JOB_NAME}:paired`, 'critical'],
    ]);
    expect(posted[0]!.subject).toBe(`STOWAGE CRITICAL - ${JOB_NAME}:local: newest backup 3d old`);
    await checkBackups({ ...setup, now: new Date(LAST + 4 * DAY) });
    expect(posted).toHaveLength(2); // same state: nobody is told again

    const history = backupMonitors(setup).local.history();
    expect(history.map((r) => [r.checkedAt.getTime() - LAST, r.status])).toEqual([
      [2 * HOUR, 'ok'],
      [3 * DAY, 'critical'],
      [4 * DAY, 'critical'],
    ]);
  });

  it('fails the run, records it and names the file when a far copy turns into a mutant', async () => {
    const victimSet = results[5]!.setId;
    const victim = join(paths.remote, ...victimSet.split('/'), 'svn-daq.tar.gz');
    const before = await stat(victim);
    const bytes = await readFile(victim);
    const mid = bytes.length >> 1;
    bytes[mid] = bytes[mid]! ^ 0xff; // one flipped byte, same size, same mtime: sync cannot see it
    await writeFile(victim, bytes);
    await utimes(victim, before.atime, before.mtime);
    const err = await nightlyRepositoryBackup({
      svnRepo: paths.repo,
      wikiDir: paths.wiki,
      backupRoot: paths.backups,
      remote: { transport: ssh, dir: paths.remote },
      catalog,
      now: new Date(LAST + DAY),
      timeZone: 'UTC',
      svnadmin,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('EDIGEST_MISMATCH');
    expect((err as StowageError).message).toContain(`${victimSet}: ${victim} does not match its DNA`);
    const [last] = catalog.lastJobs({ name: JOB_NAME, limit: 1 });
    expect(last).toMatchObject({ status: 'failed', error: expect.stringContaining('does not match its DNA') });
    const watch = backupMonitors({ backupRoot: paths.backups, remote: { transport: ssh, dir: paths.remote }, catalog, minFreePercent: 1 }).local;
    const r = await watch.check({ now: new Date(LAST + DAY + HOUR), notify: false });
    expect(r.check('jobs')).toMatchObject({ status: 'warning', message: expect.stringMatching(/^last run of job nightly-repository-backup failed: The paired node holds files that do not match/) });
  });

  it('fails the run naming the file when tonight\'s tarball lands spoiled on the paired node', async () => {
    const now = new Date(LAST + DAY + 2 * HOUR);
    const setId = `${now.toISOString().slice(0, 10).replace(/-/g, '/')}/051500`;
    const spoiled = join(paths.remote, ...setId.split('/'), 'svn-daq.tar.gz');
    // The put reports the DNA of what it sent; the far copy then loses a byte in the middle.
    const far = watched(ssh, paths.remote, async (path) => {
      if (path !== spoiled) return;
      const bytes = await readFile(path);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x01;
      await writeFile(path, bytes);
    });
    const err = await nightlyRepositoryBackup({ svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: paths.backups, remote: { transport: far.transport, dir: paths.remote }, catalog, now, timeZone: 'UTC', svnadmin }).catch((e: unknown) => e);
    expect(far.seen.map((x) => x.path)).toContain(spoiled);
    expect(err).toMatchObject({ code: 'EDIGEST_MISMATCH' });
    expect((err as Error).message).toContain(spoiled);
    expect(catalog.lastJobs({ name: JOB_NAME, limit: 1 })[0]).toMatchObject({ status: 'failed', error: expect.stringContaining(spoiled) });
    // The local set is good (its DNA was computed while it was written); put the far copy right for what follows.
    const local = join(paths.backups, ...setId.split('/'), 'svn-daq.tar.gz');
    expect((await Archiver.verify(local, { requireSidecar: true })).ok).toBe(true);
    await writeFile(spoiled, await readFile(local));
  });

  it('recovers the repository and the wiki on the other node, showing config diffs and honouring a decline', async () => {
    // The other node has its own, older installation with local edits.
    const node = join(tmp.path, 'other-node');
    const target = join(node, 'svn', 'daq');
    const wikiTarget = join(node, 'wiki', 'daqwiki');
    await mkdir(join(node, 'svn'), { recursive: true });
    await run(svnadmin, ['create', target]);
    const localConf = SVNSERVE_CONF.replace('anon-access = read', 'anon-access = none');
    await writeFile(join(target, 'conf', 'svnserve.conf'), localConf);
    const localHook = PRE_COMMIT.replace('exit 0', 'echo "commits frozen during recovery" >&2\nexit 1');
    await writeFile(join(target, 'hooks', 'pre-commit'), localHook);
    await writeFile(join(target, 'hooks', 'post-commit'), '#!/bin/sh\n# mail the commit\n');
    await mkdir(join(wikiTarget, 'conf'), { recursive: true });
    const localIni = TRAC_INI.replace('https://daq.example.org/wiki', 'https://daq-backup.example.org/wiki');
    await writeFile(join(wikiTarget, 'conf', 'trac.ini'), localIni);

    // The primary died while it shipped a newer set: its LOCKED stays at the far tree's root
    // (heartbeat long gone) and the set holds half a tarball. Recovery ignores the stale lock
    // and passes over the broken set to the newest complete one.
    const newest = (await listBackupSets(ssh, paths.remote, { timeZone: 'UTC' })).at(-1)!.id;
    const broken = `${newest.slice(0, 10)}/235959`; // later the same day as the newest set
    const brokenDir = join(paths.remote, ...broken.split('/'));
    const staleLock = join(paths.remote, 'LOCKED');
    const logged: string[] = [];
    const asked: ConfigChange[] = [];
    let r: Awaited<ReturnType<typeof recoverRepositoryBackup>>;
    try {
      await mkdir(brokenDir, { recursive: true });
      await writeFile(join(brokenDir, 'svn-daq.tar.gz.part'), 'half a tarball');
      await mkdir(staleLock);
      await writeFile(join(staleLock, 'owner.json'), JSON.stringify({ host: 'primary.example.org', pid: 4242, purpose: 'stowage sync from local:/backups', since: new Date(Date.now() - 3 * HOUR).toISOString(), token: 'dead' }));
      const old = (Date.now() - 2 * HOUR) / 1000;
      await utimes(join(staleLock, 'owner.json'), old, old);

      // While that lock is live (its heartbeat fresh), nothing is restored: a named set is ELOCKED.
      const fresh = Date.now() / 1000;
      await utimes(join(staleLock, 'owner.json'), fresh, fresh);
      const targets = { source: { transport: ssh, dir: paths.remote }, svnRepo: target, wikiDir: wikiTarget, timeZone: 'UTC', svnadmin, confirm: () => true };
      await expect(recoverRepositoryBackup({ ...targets, set: newest })).rejects.toMatchObject({ code: 'ELOCKED', message: expect.stringContaining(`is locked by ${staleLock} (stowage sync from local:/backups, pid 4242 on primary.example.org)`) });
      await expect(recoverRepositoryBackup(targets)).rejects.toMatchObject({ code: 'ENOT_FOUND', message: expect.stringContaining(`${newest}: locked by ${staleLock}`) });
      expect(await readFile(join(target, 'conf', 'svnserve.conf'), 'utf8')).toBe(localConf); // untouched
      await utimes(join(staleLock, 'owner.json'), old, old);

      r = await recoverRepositoryBackup({
        log: (l) => logged.push(l),
        source: { transport: ssh, dir: paths.remote },
        svnRepo: target,
        wikiDir: wikiTarget,
        timeZone: 'UTC',
        svnadmin,
        confirm: (c) => {
          asked.push(c);
          return c.path === 'conf/svnserve.conf'; // yes to the repository config, no to the hook and trac.ini
        },
      });
    } finally {
      // Take the broken set and the lock away again, with the day, month and year folders the set alone needed.
      await rm(staleLock, { recursive: true, force: true });
      await rm(brokenDir, { recursive: true, force: true });
      for (let k = 3; k >= 1; k--) await rmdir(join(paths.remote, ...broken.split('/').slice(0, k))).catch((e: NodeJS.ErrnoException) => expect(['ENOTEMPTY', 'ENOENT']).toContain(e.code));
    }
    expect(r.set).toBe(newest);
    expect(r.skipped).toEqual([{ set: broken, reason: 'svn-daq.tar.gz.part still being written' }]);
    expect(logged.slice(0, 3)).toEqual([
      `ignoring the stale lock ${staleLock} (stowage sync from local:/backups, pid 4242 on primary.example.org): heartbeat-expired`,
      `passing over set ${broken}: svn-daq.tar.gz.part still being written`,
      `restoring set ${newest} from ${ssh.name}:${paths.remote}`,
    ]);

    // Each changed config file was shown as a diff from the installed file to the backup's.
    expect(asked.map((c) => [c.tree, c.path])).toEqual([
      ['svn', 'conf/svnserve.conf'],
      ['svn', 'hooks/pre-commit'],
      ['wiki', 'conf/trac.ini'],
    ]);
    expect(asked[0]!.diff).toBe(
      '--- installed/conf/svnserve.conf\n+++ backup/conf/svnserve.conf\n@@ -1,4 +1,4 @@\n [general]\n-anon-access = none\n+anon-access = read\n auth-access = write\n # realm = My First Repository\n',
    );
    expect(asked[2]!.diff).toContain('-base_url = https://daq-backup.example.org/wiki\n+base_url = https://daq.example.org/wiki\n');
    expect(asked[2]!.file).toBe(join(wikiTarget, 'conf', 'trac.ini'));

    // Confirmed: replaced. Declined: left exactly as it was. Not in the backup: carried over.
    expect(await readFile(join(target, 'conf', 'svnserve.conf'), 'utf8')).toBe(SVNSERVE_CONF);
    expect(await readFile(join(target, 'hooks', 'pre-commit'), 'utf8')).toBe(localHook);
    expect(await readFile(join(target, 'hooks', 'post-commit'), 'utf8')).toBe('#!/bin/sh\n# mail the commit\n');
    expect(await readFile(join(wikiTarget, 'conf', 'trac.ini'), 'utf8')).toBe(localIni);
    expect(r.svn).toMatchObject({ replaced: ['conf/svnserve.conf'], kept: ['hooks/pre-commit'], carried: ['hooks/post-commit'] });
    expect(r.wiki).toMatchObject({ replaced: [], kept: ['conf/trac.ini'], integrity: 'ok' });

    // The recovered repository verifies and holds every night's commit.
    await run(svnadmin, ['verify', '--quiet', target]);
    expect(r.svn.youngest).toBe(10); // import + nine nights
    expect(Number((await run(svnlook, ['youngest', target])).stdout.trim())).toBe(10);
    expect((await run(svn, svnArgs('cat', `file://${target}/trunk/daq/readout.c`))).stdout).toBe('/* readout, night 8 */\nint main(void) { return 8; }\n');
    // The wiki database is the archived snapshot; the attachments came back.
    const archived = rowsOf(await Archiver.readEntry(join(paths.backups, ...newest.split('/'), 'wiki-daqwiki.tar.gz'), 'daqwiki/db/trac.db'));
    expect(rowsOf(join(wikiTarget, 'db', 'trac.db'))).toBe(archived);
    expect(await readFile(join(wikiTarget, 'attachments', 'cabling.txt'), 'utf8')).toBe('crate 3 slot 7 -> TDC 2\n');
    // Nothing was deleted: the previous installations are kept beside the new ones.
    expect(r.svn.previous).toMatch(/daq\.before-restore-/);
    expect(await readFile(join(r.svn.previous!, 'conf', 'svnserve.conf'), 'utf8')).toBe(localConf);
    expect(await readFile(join(r.wiki.previous!, 'conf', 'trac.ini'), 'utf8')).toBe(localIni);
    expect((await readdir(join(node, 'svn'))).sort()).toEqual(['daq', expect.stringMatching(/^daq\.before-restore-/)]);
    // A second recovery right after (within the same minute, even second): its own names for the trees it sets aside.
    const again = await recoverRepositoryBackup({ source: { transport: new LocalTransport(), dir: paths.backups }, svnRepo: target, wikiDir: wikiTarget, timeZone: 'UTC', svnadmin, confirm: () => true });
    expect(again.svn.previous).toMatch(/daq\.before-restore-/);
    expect(again.svn.previous).not.toBe(r.svn.previous);
    expect(again.wiki.previous).not.toBe(r.wiki.previous);
    expect((await readdir(join(node, 'svn'))).filter((n) => n.startsWith('daq.before-restore-'))).toHaveLength(2);
  });

  /**
   * A set whose wiki tarball is built from `wikiFiles` (its svn tarball copied
   * from the newest nightly set), in a tree of its own; returns the tree.
   */
  async function treeWithWiki(name: string, wikiFiles: (wiki: string) => Promise<void>): Promise<string> {
    const newest = (await listBackupSets(new LocalTransport(), paths.backups, { timeZone: 'UTC' })).at(-1)!;
    const tree = join(tmp.path, name);
    const setDir = join(tree, ...newest.id.split('/'));
    await mkdir(setDir, { recursive: true });
    for (const f of ['svn-daq.tar.gz', 'svn-daq.tar.gz.dna']) await writeFile(join(setDir, f), await readFile(join(paths.backups, ...newest.id.split('/'), f)));
    const stage = join(tmp.path, `${name}-stage`);
    await mkdir(join(stage, 'daqwiki', 'conf'), { recursive: true });
    await mkdir(join(stage, 'daqwiki', 'db'), { recursive: true });
    await mkdir(join(stage, 'daqwiki', 'attachments'), { recursive: true });
    await writeFile(join(stage, 'daqwiki', 'conf', 'trac.ini'), TRAC_INI);
    await wikiFiles(join(stage, 'daqwiki'));
    await Archiver.create(stage, join(setDir, 'wiki-daqwiki.tar.gz'));
    return tree;
  }

  it('recovers a wiki whose attachments include a *.db file that is no database (only db/trac.db is checked)', async () => {
    const tree = await treeWithWiki('attach-tree', async (wiki) => {
      makeWikiDb(join(wiki, 'db', 'trac.db'), 50, 'page_size = 4096');
      await writeFile(join(wiki, 'attachments', 'calib-notes.db'), 'PMT gains re-measured after the HV swap\n');
    });
    const node = join(tmp.path, 'attach-node');
    const r = await recoverRepositoryBackup({ source: { transport: new LocalTransport(), dir: tree }, svnRepo: join(node, 'svn', 'daq'), wikiDir: join(node, 'wiki', 'daqwiki'), timeZone: 'UTC', svnadmin, confirm: () => true });
    expect(r.wiki.integrity).toBe('ok');
    expect(r.svn.youngest).toBe(10);
    expect(await readFile(join(node, 'wiki', 'daqwiki', 'attachments', 'calib-notes.db'), 'utf8')).toBe('PMT gains re-measured after the HV swap\n');
    expect(rowsOf(join(node, 'wiki', 'daqwiki', 'db', 'trac.db'))).toBe(50);
  });

  it('checks both trees before swapping either in: a damaged trac.db fails, naming it, with the installed repository untouched', async () => {
    const tree = await treeWithWiki('bad-db-tree', async (wiki) => {
      const dbFile = join(wiki, 'db', 'trac.db');
      makeWikiDb(dbFile, 500, 'page_size = 4096');
      const bytes = await readFile(dbFile);
      const page = Math.floor(bytes.length / 4096 / 2) * 4096;
      bytes.fill(0x5a, page + 16, page + 4096 - 16);
      await writeFile(dbFile, bytes);
    });
    const node = join(tmp.path, 'bad-db-node');
    const svnTarget = join(node, 'svn', 'daq');
    await mkdir(join(node, 'svn'), { recursive: true });
    await run(svnadmin, ['create', svnTarget]);
    await writeFile(join(svnTarget, 'conf', 'svnserve.conf'), 'installed\n');
    const err = await recoverRepositoryBackup({ source: { transport: new LocalTransport(), dir: tree }, svnRepo: svnTarget, wikiDir: join(node, 'wiki', 'daqwiki'), timeZone: 'UTC', svnadmin, confirm: () => true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StowageError);
    expect(err).toMatchObject({ code: 'ECORRUPT_ARCHIVE', message: expect.stringMatching(/^db\/trac\.db in wiki-daqwiki\.tar\.gz fails its integrity check/) });
    // Nothing swapped in, nothing left behind beside the targets.
    expect(await readFile(join(svnTarget, 'conf', 'svnserve.conf'), 'utf8')).toBe('installed\n');
    expect(await readdir(join(node, 'svn'))).toEqual(['daq']);
    expect(await readdir(join(node, 'wiki'))).toEqual([]);
  });

  it('takes targets with trailing slashes, refuses one target inside the other, and puts the repository back when the wiki cannot go in', async () => {
    const tree = await treeWithWiki('targets-tree', async (wiki) => makeWikiDb(join(wiki, 'db', 'trac.db'), 5, 'page_size = 4096'));
    const source = { transport: new LocalTransport(), dir: tree };
    const node = join(tmp.path, 'targets-node');
    const r = await recoverRepositoryBackup({ source, svnRepo: join(node, 'svn', 'daq') + '/', wikiDir: join(node, 'wiki', 'daqwiki') + '/', timeZone: 'UTC', svnadmin, confirm: () => true });
    expect([r.svn.path, r.wiki.path]).toEqual([join(node, 'svn', 'daq'), join(node, 'wiki', 'daqwiki')]);
    expect(rowsOf(join(node, 'wiki', 'daqwiki', 'db', 'trac.db'))).toBe(5);
    for (const [svnRepo, wikiDir] of [
      [join(node, 'same'), join(node, 'same') + '/'],
      [join(node, 'svn', 'daq'), join(node, 'svn', 'daq', 'wiki')],
    ] as const) {
      const err = await recoverRepositoryBackup({ source, svnRepo, wikiDir, timeZone: 'UTC', svnadmin, confirm: () => true }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(/must be two separate folders.*Nothing was changed/) });
    }
    // A file where the wiki target's folder should be: refused up front, not a raw EEXIST.
    await writeFile(join(node, 'not-a-folder'), 'x');
    const blocked = await recoverRepositoryBackup({ source, svnRepo: join(node, 'svn', 'daq'), wikiDir: join(node, 'not-a-folder', 'daqwiki'), timeZone: 'UTC', svnadmin, confirm: () => true }).catch((e: unknown) => e);
    expect(blocked).toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(/^Cannot make the folder of the target .*not-a-folder\/daqwiki: .*Nothing was changed\.$/) });
    // The wiki folder cannot be renamed aside (a mount point: EBUSY): the repository installed before stays.
    const svnTarget = join(node, 'svn', 'daq');
    await writeFile(join(svnTarget, 'conf', 'svnserve.conf'), 'installed\n');
    const before = (await readdir(join(node, 'svn'))).sort();
    const wikiTarget = join(node, 'wiki', 'daqwiki');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', wikiTarget]);
    try {
      const err = await recoverRepositoryBackup({ source, svnRepo: svnTarget, wikiDir: wikiTarget, timeZone: 'UTC', svnadmin, confirm: () => true }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'EIO', message: expect.stringMatching(/^Cannot put the recovered wiki in place at .*EBUSY.*The repository at .* was put back as it was; nothing was changed/) });
    } finally {
      await run('umount', [wikiTarget]);
    }
    expect(await readFile(join(svnTarget, 'conf', 'svnserve.conf'), 'utf8')).toBe('installed\n');
    expect((await readdir(join(node, 'svn'))).sort()).toEqual(before);
  });

  it('purges locally only after tonight\'s set reached the paired node, and never more than half of the sets', async () => {
    // A copy of the local tree, so that the sets of the runs above stay as they are.
    const backups = join(tmp.path, 'purge-backups');
    await cp(paths.backups, backups, { recursive: true, verbatimSymlinks: true });
    const ids = async (): Promise<string[]> => (await listBackupSets(new LocalTransport(), backups, { timeZone: 'UTC' })).map((x) => x.id);
    const before = await ids();
    const purgeCatalog = new Catalog(join(tmp.path, 'purge.catalog'));
    try {
      // Three days on, retention would purge the oldest sets; but the link to the paired node is down.
      const down = new Proxy(ssh, {
        get(target, key) {
          if (key === 'put') return async () => Promise.reject(new StowageError('EIO', 'link to the paired node is down'));
          const v = Reflect.get(target, key, target) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const now = new Date(LAST + 3 * DAY);
      const options = { svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: backups, catalog: purgeCatalog, now, timeZone: 'UTC', svnadmin };
      const failed = await nightlyRepositoryBackup({ ...options, remote: { transport: down, dir: join(sshd.root, 'purge-far') } }).catch((e: unknown) => e);
      expect(failed).toMatchObject({ message: expect.stringContaining('link to the paired node is down') });
      const tonight = backupSetPath(now, { timeZone: 'UTC' });
      expect(await ids()).toEqual([...before, tonight]); // nothing purged; tonight's set (complete) kept

      // A policy edited by mistake (1 day kept) would purge most of the history: refused on both sides.
      const guarded = await nightlyRepositoryBackup({ ...options, now: new Date(LAST + 3 * DAY + HOUR), keepDays: 1, remote: { transport: ssh, dir: join(sshd.root, 'purge-far') } }).catch((e: unknown) => e);
      expect(guarded).toMatchObject({ code: 'EDELETE_GUARD' });
      expect(await ids()).toEqual(expect.arrayContaining([...before, tonight]));
      expect((await listBackupSets(ssh, join(sshd.root, 'purge-far'), { timeZone: 'UTC' })).map((x) => x.id)).toEqual(expect.arrayContaining(before));
    } finally {
      purgeCatalog.close();
    }
  });

  it('check: a check that cannot run prints one Nagios UNKNOWN line and exits 3', async () => {
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const nightly = join(root, 'examples', 'nightly-repository-backup.ts');
    const missing = await exec(process.execPath, [tsx, nightly, 'check', join(tmp.path, 'no-such-config.json')], { cwd: root }).catch((e: unknown) => e as { code: number; stdout: string; stderr: string });
    expect(missing).toMatchObject({ code: 3, stderr: '' });
    expect((missing as { stdout: string }).stdout).toMatch(/^STOWAGE UNKNOWN - the check could not run: .*no-such-config\.json'?\n$/);
  });

  it('refuses to recover from a tree without any backup (ENOT_FOUND)', async () => {
    const empty = join(sshd.root, 'empty');
    await mkdir(empty);
    const err = await recoverRepositoryBackup({ source: { transport: ssh, dir: empty }, svnRepo: join(tmp.path, 'x', 'repo'), wikiDir: join(tmp.path, 'x', 'wiki'), confirm: () => true }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ENOT_FOUND' });
    expect((err as Error).message).toBe(`Nothing to restore in ${ssh.name}:${empty}: no complete backup set.`);

    // A tree whose only set lacks the wiki tarball: passed over, then named in the refusal.
    const partial = join(sshd.root, 'partial');
    const setDir = join(partial, '2026', '11', '20', '031500');
    await mkdir(setDir, { recursive: true });
    await writeFile(join(setDir, 'svn-daq.tar.gz'), 'x');
    await writeFile(join(setDir, 'svn-daq.tar.gz.dna'), '{"dig": "9dd4e461268c8034f5c8564e155c67a6", "size": 1}');
    const targets = { svnRepo: join(tmp.path, 'y', 'repo'), wikiDir: join(tmp.path, 'y', 'wiki'), confirm: () => true, timeZone: 'UTC' };
    const none = await recoverRepositoryBackup({ source: { transport: ssh, dir: partial }, ...targets }).catch((e: unknown) => e);
    expect(none).toMatchObject({ code: 'ENOT_FOUND', message: `Nothing to restore in ${ssh.name}:${partial}: no complete backup set (passed over: 2026/11/20/031500: no wiki-*.tar.gz archive).` });
    const named = await recoverRepositoryBackup({ source: { transport: ssh, dir: partial }, set: '2026/11/20/031500', ...targets }).catch((e: unknown) => e);
    expect(named).toMatchObject({ code: 'ENOT_FOUND', message: expect.stringContaining('Set 2026/11/20/031500 in') });
    expect((named as Error).message).toContain('cannot be restored: no wiki-*.tar.gz archive.');
    const missing = await recoverRepositoryBackup({ source: { transport: ssh, dir: partial }, set: '2026/11/21/031500', ...targets }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'ENOT_FOUND', message: `Nothing to restore in ${ssh.name}:${partial}: no set 2026/11/21/031500.` });
    // Nothing was created at the targets.
    await expect(stat(join(tmp.path, 'y'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a wiki whose database is damaged: the run fails, is recorded, and leaves no set behind', async () => {
    // A wiki whose database has a page of garbage in the middle of a table's b-tree.
    const wiki = join(tmp.path, 'bad-wiki', 'daqwiki');
    await mkdir(join(wiki, 'db'), { recursive: true });
    const dbFile = join(wiki, 'db', 'trac.db');
    makeWikiDb(dbFile, 500, 'page_size = 4096');
    const bytes = await readFile(dbFile);
    const page = Math.floor(bytes.length / 4096 / 2) * 4096;
    bytes.fill(0x5a, page + 16, page + 4096 - 16); // the page header stays, its cells turn to noise
    await writeFile(dbFile, bytes);

    const backups = join(tmp.path, 'bad-backups');
    const badCatalog = new Catalog(join(tmp.path, 'bad.catalog'));
    try {
      const err = await nightlyRepositoryBackup({ svnRepo: paths.repo, wikiDir: wiki, backupRoot: backups, remote: { transport: ssh, dir: join(sshd.root, 'bad-backups') }, catalog: badCatalog, now: new Date(LAST), timeZone: 'UTC', svnadmin }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StowageError);
      expect(err).toMatchObject({ code: 'ECORRUPT_ARCHIVE', message: expect.stringContaining('wiki-daqwiki.tar.gz: the archived wiki database fails its integrity check') });
      expect(badCatalog.lastJobs({ name: JOB_NAME, limit: 1 })[0]).toMatchObject({ status: 'failed', error: expect.stringContaining('integrity check') });
      // Nothing half-made stays: no set folder, no lock, and nothing was shipped.
      expect(await listBackupSets(new LocalTransport(), backups, { timeZone: 'UTC' })).toEqual([]);
      expect((await readdir(backups)).filter((n) => n === 'LOCKED')).toEqual([]);
      await expect(stat(join(sshd.root, 'bad-backups'))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      badCatalog.close();
    }
  });

  it('a run whose set already exists (the same second twice: a clock stepped back) fails with EEXIST and leaves that set whole; a scratch folder that cannot be made fails the job, recorded', async () => {
    const backups = join(tmp.path, 'twice-backups');
    const twiceCatalog = new Catalog(join(tmp.path, 'twice.catalog'));
    try {
      const options = { svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: backups, remote: { transport: ssh, dir: join(sshd.root, 'twice-backups') }, catalog: twiceCatalog, now: new Date(LAST), timeZone: 'UTC', svnadmin };
      const first = await nightlyRepositoryBackup(options);
      const files = (await readdir(first.setDir)).sort();
      const bytes = await readFile(join(first.setDir, 'svn-daq.tar.gz'));
      // The same set id again, failing (its repository is gone) or not: the first set stays as it was.
      for (const svnRepo of [join(tmp.path, 'no-such-repo'), paths.repo]) {
        const err = await nightlyRepositoryBackup({ ...options, svnRepo }).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'EEXIST', message: expect.stringContaining(`Backup set ${first.setId} already exists`) });
        expect((await readdir(first.setDir)).sort()).toEqual(files);
        expect((await readFile(join(first.setDir, 'svn-daq.tar.gz'))).equals(bytes)).toBe(true);
        expect(twiceCatalog.lastJobs({ name: JOB_NAME, limit: 1 })[0]).toMatchObject({ status: 'failed' });
      }
      // No scratch folder: the job is recorded failed, not left running for the Monitor to call dead.
      const noScratch = await nightlyRepositoryBackup({ ...options, now: new Date(LAST + HOUR), workDir: join(tmp.path, 'no-such-scratch') }).catch((e: unknown) => e);
      expect(noScratch).toMatchObject({ code: 'ENOENT' });
      expect(twiceCatalog.unfinishedJobs({ name: JOB_NAME })).toEqual([]);
      expect(twiceCatalog.lastJobs({ name: JOB_NAME, limit: 1 })[0]).toMatchObject({ status: 'failed' });
    } finally {
      twiceCatalog.close();
    }
  });

  it('refuses a backup root inside a tree it backs up, or holding one (EBAD_CONFIG, nothing done, no job recorded)', async () => {
    const overlapCatalog = new Catalog(join(tmp.path, 'overlap.catalog'));
    try {
      for (const [svnRepo, wikiDir, backupRoot] of [
        [paths.repo, paths.wiki, join(paths.wiki, 'backups')],
        [paths.repo, paths.wiki, paths.repo],
        [paths.repo, paths.wiki, dirname(paths.wiki)],
      ] as const) {
        const err = await nightlyRepositoryBackup({ svnRepo, wikiDir, backupRoot, remote: { transport: ssh, dir: join(sshd.root, 'overlap') }, catalog: overlapCatalog, now: new Date(LAST), timeZone: 'UTC', svnadmin }).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(/^backupRoot .* and (svnRepo|wikiDir) .* overlap/) });
      }
      expect(existsSync(join(paths.wiki, 'backups'))).toBe(false);
      // The paired copy on this machine's disk, in the backup tree itself.
      const own = join(tmp.path, 'own-backups');
      const same = await nightlyRepositoryBackup({ svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: own, remote: { transport: new LocalTransport(), dir: own + '/' }, catalog: overlapCatalog, now: new Date(LAST), timeZone: 'UTC', svnadmin }).catch((e: unknown) => e);
      expect(same).toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringMatching(/^remote\.dir .* and backupRoot .* overlap: the paired copy must be another folder/) });
      expect(overlapCatalog.lastJobs()).toEqual([]);
    } finally {
      overlapCatalog.close();
    }
  });

  it('a run killed midway (its job left "running") is recorded as aborted by the next run, so the job check does not call it dead every night', async () => {
    const file = join(tmp.path, 'dead.catalog');
    // The killed run: its process started the job and died without finishing it.
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const backups = join(tmp.path, 'dead-backups');
    const code = `import { Catalog } from ${JSON.stringify(join(root, 'src', 'catalog', 'index.ts'))}; const c = new Catalog(${JSON.stringify(file)}); c.startJob(${JSON.stringify(JOB_NAME)}, { started: new Date(${LAST - DAY}), details: { backupRoot: ${JSON.stringify(backups)} } }); c.close();`;
    await run(process.execPath, [tsx, '--input-type=module', '-e', code], { cwd: root });
    const deadCatalog = new Catalog(file);
    try {
      // A run of another boot whose pid this process has now, and a live run of another backup tree (left alone).
      deadCatalog.startJob(JOB_NAME, { started: new Date(LAST - DAY / 2), details: { backupRoot: backups } });
      const other = deadCatalog.startJob(JOB_NAME, { started: new Date(LAST - DAY / 2), details: { backupRoot: join(tmp.path, 'other-tree') } });
      expect(deadCatalog.unfinishedJobs({ name: JOB_NAME })).toHaveLength(3);
      const lines: string[] = [];
      await nightlyRepositoryBackup({ svnRepo: paths.repo, wikiDir: paths.wiki, backupRoot: backups, remote: { transport: ssh, dir: join(sshd.root, 'dead-backups') }, catalog: deadCatalog, now: new Date(LAST), timeZone: 'UTC', svnadmin, log: (l) => lines.push(l) });
      expect(deadCatalog.unfinishedJobs({ name: JOB_NAME }).map((j) => j.id)).toEqual([other.id]);
      expect(deadCatalog.lastJobs({ name: JOB_NAME }).map((j) => [j.id, j.status, j.error]).sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
        [1, 'aborted', expect.stringMatching(/^never finished: the process \(pid \d+ on .*\) died; found by run #4/)],
        [2, 'aborted', expect.stringMatching(/^never finished: the process \(pid \d+ on .*\) died; found by run #4/)],
        [3, 'running', null],
        [4, 'ok', null],
      ]);
      expect(lines).toContainEqual(expect.stringMatching(/^run #1 of .* never finished \(its process died\): recorded as aborted$/));
    } finally {
      deadCatalog.close();
    }
  });

  it('runs as the command lines the module comments show: recover (local tree), then backup and check from a config file', async () => {
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const newest = (await listBackupSets(new LocalTransport(), paths.backups, { timeZone: 'UTC' })).at(-1)!.id;
    const node = join(tmp.path, 'cli-node');
    const rec = await exec(process.execPath, [tsx, join(root, 'examples', 'recover-repository-backup.ts'), paths.backups, join(node, 'svn', 'daq'), join(node, 'wiki', 'daqwiki')], { cwd: root });
    expect(rec.stdout).toContain(`restoring set ${newest} from local:${paths.backups}`);
    expect(rec.stdout).toContain(`set ${newest}: ${join(node, 'svn', 'daq')} at r10, wiki database ok`);
    await run(svnadmin, ['verify', '--quiet', join(node, 'svn', 'daq')]);
    const usage = await exec(process.execPath, [tsx, join(root, 'examples', 'recover-repository-backup.ts')], { cwd: root }).catch((e: unknown) => e);
    expect(usage).toMatchObject({ code: 3 });

    // A backup run and a check run of the nightly recipe, from a config file, as cron would start them.
    const config = join(tmp.path, 'nightly.json');
    const cliBackups = join(tmp.path, 'cli-backups');
    const cliRemote = join(sshd.root, 'cli-backups');
    await writeFile(config, JSON.stringify({
      svnRepo: paths.repo,
      wikiDir: paths.wiki,
      backupRoot: cliBackups,
      catalog: join(tmp.path, 'cli.catalog'),
      remote: { host: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath, knownHosts: sshd.knownHostsPath, dir: cliRemote },
    }));
    const nightly = join(root, 'examples', 'nightly-repository-backup.ts');
    const backup = await exec(process.execPath, [tsx, nightly, 'backup', config], { cwd: root });
    const [set] = await listBackupSets(new LocalTransport(), cliBackups, { timeZone: 'UTC' });
    expect(set).toBeDefined();
    expect(backup.stdout).toContain(`backup set ${set!.id}: svn-daq.tar.gz, wiki-daqwiki.tar.gz; purged 0 local, 0 remote`);
    expect((await readFile(join(cliRemote, ...set!.id.split('/'), 'svn-daq.tar.gz'))).equals(await readFile(join(cliBackups, ...set!.id.split('/'), 'svn-daq.tar.gz')))).toBe(true);
    // Exit status 0 (exec resolves), one Nagios line per node.
    const check = await exec(process.execPath, [tsx, nightly, 'check', config], { cwd: root });
    const lines = check.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^STOWAGE OK - local: newest backup \d+s old; .*DNA of the newest backup verified \(2 files\).*; paired: newest backup \d+s old; .* \| local_age=\d+s;93600;172800 .*paired_age=\d+s;93600;172800 /);
    // A timeZone in the config holds for both commands: sets named in Tokyo time are not read as 9 h in the future.
    const tokyoConfig = join(tmp.path, 'nightly-tokyo.json');
    const base = JSON.parse(await readFile(config, 'utf8')) as { remote: object };
    await writeFile(tokyoConfig, JSON.stringify({ ...base, timeZone: 'Asia/Tokyo', backupRoot: join(tmp.path, 'tokyo-backups'), catalog: join(tmp.path, 'tokyo.catalog'), remote: { ...base.remote, dir: join(sshd.root, 'tokyo-backups') } }));
    await exec(process.execPath, [tsx, nightly, 'backup', tokyoConfig], { cwd: root });
    const tokyo = await exec(process.execPath, [tsx, nightly, 'check', tokyoConfig], { cwd: root });
    expect(tokyo.stdout).toMatch(/^STOWAGE OK - local: newest backup \d+s old/);
    // Nothing backed up on either node: critical, exit status 2, as Nagios reads it.
    const emptyConfig = join(tmp.path, 'nightly-empty.json');
    await mkdir(join(tmp.path, 'empty-backups'));
    await mkdir(join(sshd.root, 'empty-backups'));
    const cfg = JSON.parse(await readFile(config, 'utf8')) as { backupRoot: string; catalog: string; remote: { dir: string } };
    await writeFile(emptyConfig, JSON.stringify({ ...cfg, backupRoot: join(tmp.path, 'empty-backups'), catalog: join(tmp.path, 'empty.catalog'), remote: { ...cfg.remote, dir: join(sshd.root, 'empty-backups') } }));
    const critical = await exec(process.execPath, [tsx, nightly, 'check', emptyConfig], { cwd: root }).catch((e: unknown) => e as { code: number; stdout: string });
    expect(critical).toMatchObject({ code: 2 });
    expect((critical as { stdout: string }).stdout.trim().split('\n')).toEqual([expect.stringMatching(/^STOWAGE CRITICAL - local: no backup found.*; paired: no backup found/)]);
    const bad = await exec(process.execPath, [tsx, nightly, 'restore', config], { cwd: root }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 3, stderr: expect.stringContaining('usage: nightly-repository-backup.ts backup|check CONFIG.json') });
  });

  it('recover: Ctrl-C at a config prompt stops the recovery (exit 2, EABORTED) with both installed trees untouched and no scratch folder left', async () => {
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const recover = join(root, 'examples', 'recover-repository-backup.ts');
    const node = join(tmp.path, 'cli-node'); // recovered by the command-line test above
    const conf = join(node, 'svn', 'daq', 'conf', 'svnserve.conf');
    const edited = `${await readFile(conf, 'utf8')}# edited on this node since the backup\n`;
    await writeFile(conf, edited);
    // The recovery's scratch folders sit beside its targets.
    const beside = async (): Promise<string[][]> => [await readdir(join(node, 'svn')), await readdir(join(node, 'wiki'))];
    const before = await beside();
    // Signalled once its output shows it at work: waiting at the prompt
    const proc = await spawnUntil(process.execPath, [tsx, recover, paths.backups, join(node, 'svn', 'daq'), join(node, 'wiki', 'daqwiki')], { cwd: root, until: /Replace .*svnserve\.conf with the backup's\? \[y\/N\] $/ });
    const { child, exited } = proc;
    child.kill('SIGINT');
    expect(await exited, proc.stdout() + proc.stderr()).toBe(2);
    expect(proc.stderr()).toMatch(/^recovery failed: EABORTED: stopped by SIGINT/m);
    expect(await readFile(conf, 'utf8')).toBe(edited);
    expect(await beside()).toEqual(before); // nothing swapped in, no previous copy set aside, no scratch folder left
    // With no terminal (stdin at its end: cron, </dev/null): a clear refusal, not a readline stack trace.
    const piped = (await exec(process.execPath, [tsx, recover, paths.backups, join(node, 'svn', 'daq'), join(node, 'wiki', 'daqwiki')], { cwd: root }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(piped.code).toBe(2);
    expect(piped.stderr).toMatch(/^recovery failed: EBAD_CONFIG: a configuration file differs \(.*svnserve\.conf\) and needs a y\/N answer, but the input ended/m);
    expect(piped.stderr).not.toMatch(/ERR_USE_AFTER_CLOSE|\n\s+at /);
    expect(await readFile(conf, 'utf8')).toBe(edited);
    expect(await beside()).toEqual(before);
  });

  it('backup: stopped by SIGTERM in the middle of a run, exits 2 with the job recorded aborted, and leaves no set, no LOCKED and no work folder; the next run succeeds', async () => {
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const nightly = join(root, 'examples', 'nightly-repository-backup.ts');
    // A wiki of its own, with a 512 MiB attachment (sparse here) that keeps the run busy archiving.
    const wiki = join(tmp.path, 'sig-wiki');
    await mkdir(join(wiki, 'db'), { recursive: true });
    await mkdir(join(wiki, 'attachments'));
    const db = new Database(join(wiki, 'db', 'trac.db'));
    db.exec("CREATE TABLE wiki (name TEXT, version INTEGER, text TEXT); INSERT INTO wiki VALUES ('WikiStart', 1, 'hello')");
    db.close();
    await writeFile(join(wiki, 'attachments', 'big.bin'), '');
    await truncate(join(wiki, 'attachments', 'big.bin'), 512 * 2 ** 20);
    const work = join(tmp.path, 'sig-tmp');
    await mkdir(work);
    const backups = join(tmp.path, 'sig-backups');
    const far = join(sshd.root, 'sig-backups');
    const catalogFile = join(tmp.path, 'sig.catalog');
    const config = join(tmp.path, 'sig.json');
    await writeFile(config, JSON.stringify({
      svnRepo: paths.repo,
      wikiDir: wiki,
      backupRoot: backups,
      catalog: catalogFile,
      remote: { host: sshd.host, port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath, knownHosts: sshd.knownHostsPath, dir: far },
    }));
    // Signalled once its output shows it at work: the repository is archived; the wiki is next
    const proc = await spawnUntil(process.execPath, [tsx, nightly, 'backup', config], { cwd: root, env: { ...process.env, TMPDIR: work }, until: /^svn-daq\.tar\.gz: /m });
    const { child, exited } = proc;
    child.kill('SIGTERM');
    expect(await exited, proc.stdout() + proc.stderr()).toBe(2);
    expect(proc.stderr()).toMatch(/^backup failed: EABORTED: stopped by SIGTERM/m);
    expect(proc.stdout()).not.toMatch(/wiki-sig-wiki\.tar\.gz: .*integrity ok/);
    // The half-made set is gone (its svn tarball too), the lock released, the hot copies removed, nothing shipped.
    expect(await listBackupSets(new LocalTransport(), backups, { timeZone: 'UTC' })).toEqual([]);
    const left: string[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(d, e.name));
        else left.push(join(d, e.name));
      }
    };
    await walk(backups);
    expect(left).toEqual([]);
    expect(existsSync(join(backups, 'LOCKED'))).toBe(false);
    expect((await readdir(work)).filter((n) => n.startsWith('stowage-nightly-'))).toEqual([]); // tsx keeps its cache there too
    expect(existsSync(far)).toBe(false);
    const jobs = new Catalog(catalogFile);
    try {
      expect(jobs.lastJobs({ name: JOB_NAME, limit: 1 })[0]).toMatchObject({ status: 'aborted', error: expect.stringContaining('stopped by SIGTERM') });
    } finally {
      jobs.close();
    }

    const again = await exec(process.execPath, [tsx, nightly, 'backup', config], { cwd: root });
    expect(again.stdout).toMatch(/^backup set \d{4}\/\d\d\/\d\d\/\d{6}: svn-daq\.tar\.gz, wiki-sig-wiki\.tar\.gz; purged 0 local, 0 remote$/m);
  });
});

/** `diff -u` of two files with fixed labels (exit status 1 means "they differ"). */
async function diffU(a: string, b: string): Promise<string> {
  const diff = requireBinary({ name: 'diff', commands: ['diff'], debianPackage: 'diffutils' });
  return new Promise((resolve, reject) => {
    const child = spawn(diff, ['-u', '--label', 'old', '--label', 'new', a, b], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.on('error', reject).on('close', (code) => (code === 0 || code === 1 ? resolve(out) : reject(new Error(`diff exited with ${code}`))));
  });
}

describe('unifiedDiff (recover recipe)', () => {
  it('matches `diff -u` line for line on random edits', async () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    const dir = join(tmp.path, 'diff');
    await mkdir(dir, { recursive: true });
    for (let t = 0; t < 60; t++) {
      const a = Array.from({ length: Math.floor(rnd() * 25) }, (_, i) => `line ${i}`);
      const b = [...a];
      for (let e = 0, edits = 1 + Math.floor(rnd() * 4); e < edits; e++) {
        const k = Math.floor(rnd() * (b.length + 1));
        const r = rnd();
        if (r < 0.33) b.splice(k, 1);
        else if (r < 0.66) b.splice(k, 0, `new ${t}.${e}`);
        else if (k < b.length) b[k] = `changed ${t}.${e}`;
      }
      const A = a.join('\n') + (a.length > 0 && rnd() < 0.8 ? '\n' : '');
      const B = b.join('\n') + (b.length > 0 && rnd() < 0.8 ? '\n' : '');
      await writeFile(join(dir, 'a'), A);
      await writeFile(join(dir, 'b'), B);
      const ref = await diffU(join(dir, 'a'), join(dir, 'b'));
      expect(unifiedDiff(A, B, 'old', 'new'), `case ${t}`).toBe(ref);
    }
    expect(unifiedDiff('same\n', 'same\n', 'a', 'b')).toBe('');
  });
});
