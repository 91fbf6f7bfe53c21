/**
 * Nightly repository backup: the "back up, check, ship, prune, watch" cycle
 * every experiment runs for its Subversion repository and its wiki.
 *
 * Each night:
 *  1. Under a LOCKED on the local backup tree (readers and other runs keep
 *     out): `svnadmin hotcopy` of the repository and a consistent online
 *     copy of the wiki's SQLite database (better-sqlite3's backup API, while
 *     the wiki keeps writing), each archived as a tarball with its DNA in a
 *     dated set `YYYY/MM/DD/HHMMSS/`; the wiki database is read back out of
 *     the tarball and must pass `PRAGMA integrity_check`.
 *  2. `last` points at the new set.
 *  3. The tree is synced to the paired node over SSH with the LOCKED
 *     protocol (a LOCKED on the far tree while files arrive), every file of
 *     the new set is re-digested on the far side (the mutant check), and
 *     retention (7 days) and `last` are applied there, under a far lock.
 *  4. Only then retention keeps 7 days locally: a set that never reached
 *     the paired node, or arrived damaged, is not purged here (no local
 *     purge when the ship failed or found mutants). Both purges refuse
 *     (EDELETE_GUARD) to remove more than half of the sets at once.
 *  5. The run is recorded as a job in the Catalog; a Monitor per node says
 *     whether backups are still arriving, sane in size, verified, with room
 *     left, and tells a notifier (mail) only when that changes.
 *
 * The whole run holds the global LOCKED on the local tree: other readers
 * (another sync, a DnaDigest.scan) skip it meanwhile, and `sync()` accepts
 * it as the caller's own through `ownLockToken`.
 *
 *   npx tsx examples/nightly-repository-backup.ts backup CONFIG.json
 *   npx tsx examples/nightly-repository-backup.ts check CONFIG.json   # one Nagios line for both nodes, exit 0/1/2 (3: the check could not run)
 *
 * Ctrl-C or a SIGTERM stops a run cleanly: the hot copies are removed, the
 * unfinished set too, and the LOCKED released.
 *
 * CONFIG.json: { "svnRepo", "wikiDir", "backupRoot", "catalog",
 *   "remote": { "host", "port", "username", "privateKeyPath", "knownHosts", "dir" },
 *   "mailTo"?: "oncall@example.org", "timeZone"?: "Europe/Berlin" (of the set names; default UTC) }
 */
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  Archiver,
  LocalTransport,
  LockDir,
  Retention,
  StowageError,
  SshTransport,
  backupSetPath,
  dnaEqual,
  parseSidecar,
  posixJoin,
  sync,
  transportLockFs,
  type Dna,
  type Transport,
} from 'stowage';
import { Catalog } from 'stowage/catalog';
import { CommandNotifier, Monitor, exitCode, nagiosSummary, type MonitorReport, type Notifier } from 'stowage/monitor';

/** The job name under which runs are recorded in the Catalog. */
export const JOB_NAME = 'nightly-repository-backup';

/** Where the backups go on the paired node. */
export interface RemoteTree {
  /** How to reach it (an SshTransport; any Transport works). */
  transport: Transport;
  /** The backup tree there. */
  dir: string;
}

/** Options of {@link nightlyRepositoryBackup}. */
export interface NightlyOptions {
  /** The Subversion repository (a local path). */
  svnRepo: string;
  /** The wiki's folder (Trac-like: `conf/trac.ini`, `db/trac.db`, attachments). */
  wikiDir: string;
  /** The wiki's SQLite database, relative to `wikiDir` (default `db/trac.db`). */
  wikiDb?: string;
  /** The local dated backup tree. */
  backupRoot: string;
  /** The paired node's tree. */
  remote: RemoteTree;
  /** Where jobs, archives and transfers are recorded. */
  catalog: Catalog;
  /** The time of this run (default now): names the set and drives retention. */
  now?: Date;
  /** Days kept on both sides (default 7). */
  keepDays?: number;
  /** Most sets one retention run may purge, as a fraction of those it plans for, per side (default 0.5). */
  maxPurgeFraction?: number;
  /** Time zone of the set names and of the retention days (default UTC). */
  timeZone?: string;
  /** Scratch space for the hot copies (default the system temp dir). */
  workDir?: string;
  /** The `svnadmin` program (default from PATH). */
  svnadmin?: string;
  /** Cancels the run. */
  signal?: AbortSignal;
  /** Progress lines for a log. */
  log?: (line: string) => void;
}

/** One archive written by the run. */
export interface NightlyArchive {
  /** File name within the set. */
  readonly name: string;
  /** Its DNA, computed while writing. */
  readonly dna: Dna;
  /** Bytes that went in. */
  readonly bytesIn: number;
}

/** What {@link nightlyRepositoryBackup} did. */
export interface NightlyResult {
  /** The new set's id, `YYYY/MM/DD/HHMMSS`. */
  readonly setId: string;
  /** The new set's local folder. */
  readonly setDir: string;
  /** The archives in it. */
  readonly archives: readonly NightlyArchive[];
  /** `PRAGMA integrity_check` of the wiki database read back from its tarball. */
  readonly wikiIntegrity: string;
  /** Files the sync copied to the paired node. */
  readonly copied: readonly string[];
  /** Far files that do not match their DNA (sync check, new set, and retention's far digests). */
  readonly remoteMutants: readonly string[];
  /** Sets removed by retention, per side. */
  readonly purged: { readonly local: readonly string[]; readonly remote: readonly string[] };
  /** The `last` link's target, per side. */
  readonly last: { readonly local: string | undefined; readonly remote: string | undefined };
}

/** Runs a program (no shell); rejects with its stderr when it fails. */
async function run(program: string, args: readonly string[], signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('error', (e) => reject(signal?.aborted ? signal.reason : new StowageError((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'ENOT_FOUND' : 'EIO', `${program}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (signal?.aborted) reject(signal.reason);
      else if (code === 0) resolve(out);
      else reject(new StowageError('EIO', `${program} ${args.join(' ')} exited with status ${code}: ${err.trim()}`, { details: { program, code } }));
    });
  });
}

/** Reads a small far file (a sidecar) whole. */
async function readFar(t: Transport, path: string, signal?: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of t.createReadStream(path, signal ? { signal } : {}) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Re-digests every file of a set that has a sidecar, on the far side, and
 * returns the paths that do not match (the mutants).
 *
 * @param t - where the set is
 * @param setDir - the set's folder there
 * @param signal - cancels the check
 */
export async function mutantsIn(t: Transport, setDir: string, signal?: AbortSignal): Promise<string[]> {
  const mutants: string[] = [];
  const entries = await t.list(setDir, signal ? { signal } : {});
  const sidecars = entries.filter((e) => e.type === 'file' && e.name.endsWith('.dna'));
  if (sidecars.length === 0) throw new StowageError('ENO_SIDECAR', `${t.name}:${setDir} holds no DNA sidecar to check against.`, { details: { path: setDir } });
  for (const s of sidecars) {
    const file = s.path.slice(0, -'.dna'.length);
    const expected = parseSidecar(await readFar(t, s.path, signal), s.path);
    const actual = await t.digest(file, expected.algorithm, signal ? { signal } : {}).catch((err: unknown) => {
      if (err instanceof StowageError && err.code === 'ENOT_FOUND') return undefined;
      throw err;
    });
    if (actual === undefined || !dnaEqual(expected, actual)) mutants.push(file);
  }
  return mutants;
}

/** The wiki's database, copied consistently while the wiki may be writing. */
async function copyWikiDb(src: string, dest: string): Promise<void> {
  const db = new Database(src, { readonly: true, fileMustExist: true });
  try {
    // A write by another connection between two steps restarts the copy, so
    // after the first step copy every page in one step: it runs inside one
    // read transaction, which in WAL mode does not hold the writers up.
    await db.backup(dest, { progress: ({ totalPages }) => Math.max(100, totalPages) });
  } finally {
    db.close();
  }
  // The copy is a single self-contained file: switch it from WAL to a
  // rollback journal, so that it opens read-only anywhere (no -wal/-shm).
  const copy = new Database(dest);
  try {
    copy.pragma('journal_mode = DELETE');
  } finally {
    copy.close();
  }
}

/** `PRAGMA integrity_check` of an SQLite database given as bytes. */
function integrityOf(bytes: Buffer): string {
  const db = new Database(bytes, { readonly: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

/** Whether a process of this host is alive (signal 0; EPERM: alive, someone else's). */
function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One nightly run; see the module notes. Throws when anything fails (the
 * job is recorded as failed or aborted, and the new set is removed unless
 * it was complete and verified).
 *
 * @param o - see {@link NightlyOptions}
 */
export async function nightlyRepositoryBackup(o: NightlyOptions): Promise<NightlyResult> {
  const log = o.log ?? (() => {});
  // A backup tree inside a tree it backs up (or the other way round) takes
  // its own sets into every archive, and its LOCKED into the walk.
  const within = (a: string, b: string): boolean => {
    const [x, y] = [resolve(a), resolve(b)];
    return x === y || x.startsWith(y + sep) || y.startsWith(x + sep);
  };
  // The paired copy on this machine's own disk (a LocalTransport) must be another folder: the same one would meet its own LOCKED.
  if (o.remote.transport instanceof LocalTransport && within(o.backupRoot, o.remote.dir)) {
    throw new StowageError('EBAD_CONFIG', `remote.dir ${resolve(o.remote.dir)} and backupRoot ${resolve(o.backupRoot)} overlap: the paired copy must be another folder (on another node or disk). Nothing was done.`, {
      details: { option: 'remote.dir', backupRoot: resolve(o.backupRoot), remoteDir: resolve(o.remote.dir) },
    });
  }
  for (const [option, tree] of [['svnRepo', o.svnRepo], ['wikiDir', o.wikiDir]] as const) {
    if (within(o.backupRoot, tree)) {
      throw new StowageError('EBAD_CONFIG', `backupRoot ${resolve(o.backupRoot)} and ${option} ${resolve(tree)} overlap: put the backups outside the trees they hold (and the trees outside the backups). Nothing was done.`, {
        details: { option: 'backupRoot', backupRoot: resolve(o.backupRoot), [option]: resolve(tree) },
      });
    }
  }
  const now = o.now ?? new Date();
  const timeZone = o.timeZone ?? 'UTC';
  const keepDays = o.keepDays ?? 7;
  const signal = o.signal;
  const op = signal ? { signal } : {};
  const local = new LocalTransport();
  const started = Date.now();
  const job = o.catalog.startJob(JOB_NAME, { started: now, details: { svnRepo: o.svnRepo, wikiDir: o.wikiDir, backupRoot: o.backupRoot } });
  let work: string | undefined;
  const finished = (): Date => new Date(now.getTime() + (Date.now() - started));
  const retention = new Retention({ keepDaily: keepDays, timeZone });
  const maxPurgeFraction = o.maxPurgeFraction ?? 0.5;
  let setDir: string | undefined;
  let setDone = false;
  try {
    // Inside the try: a scratch folder that cannot be made fails the job, recorded, not left "running".
    work = await mkdtemp(join(o.workDir ?? tmpdir(), 'stowage-nightly-'));
    const scratch = work;
    // 1. Produce the set under the tree's LOCKED.
    await mkdir(o.backupRoot, { recursive: true });
    const lock = new LockDir(o.backupRoot, { purpose: `${JOB_NAME} ${now.toISOString()}`, staleMs: 10 * 60_000 });
    const setId = backupSetPath(now, { timeZone });
    const archives: NightlyArchive[] = [];
    let wikiIntegrity = '';
    const purgedLocal: string[] = [];
    let lastLocal: string | undefined;
    const { shipped, remoteMutants, purgedRemote, lastRemote } = await lock.withLock(async (lockSignal) => {
      const token = lock.owner!.token;
      // An earlier run still "running" in the Catalog died (killed, out of
      // memory, a reboot): a live one would hold this lock. Recorded as
      // aborted, so that the check reports it once (the last run failed)
      // instead of calling the job dead on every night to come.
      // (A run that started a moment ago and has yet to try the lock is
      // alive: on this host its pid says so; from another host, only runs
      // older than the lock's stale time are judged.)
      // Only runs of this backup tree (one Catalog may serve several), and
      // a pid equal to ours is another boot's (this process runs this run).
      for (const dead of o.catalog.unfinishedJobs({ name: JOB_NAME })) {
        if (dead.id === job.id || (dead.details as { backupRoot?: unknown } | null)?.backupRoot !== o.backupRoot) continue;
        if (dead.host === hostname() ? dead.pid !== process.pid && pidAlive(dead.pid) : now.getTime() - dead.started.getTime() < 10 * 60_000) continue;
        o.catalog.finishJob(dead.id, { status: 'aborted', error: `never finished: the process (pid ${dead.pid} on ${dead.host}) died; found by run #${job.id}, which took the backup tree's lock` });
        log(`run #${dead.id} of ${dead.started.toISOString()} never finished (its process died): recorded as aborted`);
      }
      // The set's own folder is made here and must be new: one already there
      // (the same second twice: a clock stepped back, an hour repeated at
      // the end of summer time in o.timeZone) is another run's set, which a
      // failure of this run must not remove, nor its success overwrite.
      const dir = join(o.backupRoot, ...setId.split('/'));
      await mkdir(dirname(dir), { recursive: true });
      try {
        await mkdir(dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        throw new StowageError('EEXIST', `Backup set ${setId} already exists in ${o.backupRoot}: the clock went back (or an hour repeats at the end of summer time in ${timeZone}), or another run made it within the same second. It was left as it is; run again later.`, {
          details: { path: dir, setId },
        });
      }
      setDir = dir;

      const repoName = basename(o.svnRepo);
      const svnStage = join(scratch, 'svn');
      await mkdir(svnStage);
      log(`svnadmin hotcopy ${o.svnRepo}`);
      await run(o.svnadmin ?? 'svnadmin', ['hotcopy', o.svnRepo, join(svnStage, repoName)], lockSignal);
      const svnArchive = `svn-${repoName}.tar.gz`;
      const svn = await Archiver.create(svnStage, join(setDir, svnArchive), { signal: lockSignal });
      archives.push({ name: svnArchive, dna: svn.dna, bytesIn: svn.bytesIn });
      log(`${svnArchive}: ${svn.entries} entries, DNA ${svn.dna.dig}`);

      const wikiName = basename(o.wikiDir);
      const dbRel = o.wikiDb ?? 'db/trac.db';
      const wikiStage = join(scratch, 'wiki');
      const dbFile = join(o.wikiDir, dbRel);
      // Everything but the live database files, then the database by the backup API.
      await mkdir(wikiStage);
      await cp(o.wikiDir, join(wikiStage, wikiName), { recursive: true, filter: (p) => ![dbFile, `${dbFile}-wal`, `${dbFile}-shm`, `${dbFile}-journal`].includes(p) });
      await mkdir(join(wikiStage, wikiName, ...dbRel.split('/').slice(0, -1)), { recursive: true });
      await copyWikiDb(dbFile, join(wikiStage, wikiName, dbRel));
      const wikiArchive = `wiki-${wikiName}.tar.gz`;
      const wiki = await Archiver.create(wikiStage, join(setDir, wikiArchive), { signal: lockSignal });
      archives.push({ name: wikiArchive, dna: wiki.dna, bytesIn: wiki.bytesIn });
      // Read the database back out of the tarball: what is archived must open and be intact.
      wikiIntegrity = integrityOf(await Archiver.readEntry(join(setDir, wikiArchive), `${wikiName}/${dbRel}`, { signal: lockSignal }));
      if (wikiIntegrity !== 'ok') {
        throw new StowageError('ECORRUPT_ARCHIVE', `${wikiArchive}: the archived wiki database fails its integrity check: ${wikiIntegrity}`, { details: { archive: wikiArchive } });
      }
      log(`${wikiArchive}: ${wiki.entries} entries, integrity ok`);
      setDone = true;
      for (const a of archives) o.catalog.recordArchive({ path: `${setId}/${a.name}`, dna: a.dna, created: now, bytesIn: a.bytesIn });

      // 2. The last link, locally, under our own lock.
      lastLocal = (await Retention.updateLastLink(local, o.backupRoot, { timeZone, ownLockToken: token, signal: lockSignal })).target;

      // 3. Ship to the paired node, LOCKED there while files arrive; our own
      //    LOCKED stays on the local tree (sync accepts it by its token).
      const r = o.remote;
      const shipped = await sync(local, o.backupRoot, r.transport, r.dir, { lock: true, ownLockToken: token, ...op, signal: lockSignal });
      for (const c of shipped.copied) o.catalog.recordTransfer({ src: local.name, dst: r.transport.name, path: c.path, dna: c.dna, started: now, finished: finished() });
      const remoteMutants = new Set(shipped.mutants.map((m) => posixJoin(r.dir, m.path)));
      for (const m of await mutantsIn(r.transport, posixJoin(r.dir, setId), lockSignal)) remoteMutants.add(m);
      log(`synced ${shipped.copied.length} files to ${r.transport.name}:${r.dir}; ${remoteMutants.size} mutants`);

      const farLock = new LockDir(r.dir, { fs: transportLockFs(r.transport), purpose: `${JOB_NAME} retention`, staleMs: 10 * 60_000 });
      const { purgedRemote, lastRemote } = await farLock.withLock(async (s) => {
        const token = farLock.owner!.token;
        const res = await retention.apply(r.transport, r.dir, { now, maxPurgeFraction, ownLockToken: token, signal: s });
        // Retention re-digested every far set: the ones that failed are mutants too (kept for a look if newer, purged if a newer good set exists).
        // A set still being written there (another run's, within the grace) is not one.
        for (const d of [...res.plan.keep, ...res.plan.purge]) if (!d.item.verified && d.item.inProgress !== true) for (const p of d.item.problems) remoteMutants.add(`${d.item.id}: ${p}`);
        const link = await Retention.updateLastLink(r.transport, r.dir, { timeZone, ownLockToken: token, signal: s });
        return { purgedRemote: res.removed.map((x) => x.id), lastRemote: link.target };
      }, { ...op, signal: lockSignal });

      // 4. Local retention, now that tonight's set is on the paired node and
      //    verified there (a failed ship threw before this point).
      if (remoteMutants.size > 0) {
        log('local retention skipped: the paired node holds mutants');
      } else {
        const kept = await retention.apply(local, o.backupRoot, { now, maxPurgeFraction, ownLockToken: token, signal: lockSignal });
        for (const x of kept.removed) {
          purgedLocal.push(x.id);
          for (const a of o.catalog.archives({ prefix: `${x.id}/` })) o.catalog.forgetArchive(a.path);
        }
      }
      return { shipped, remoteMutants, purgedRemote, lastRemote };
    }, op);
    if (remoteMutants.size > 0) {
      throw new StowageError('EDIGEST_MISMATCH', `The paired node holds files that do not match their DNA: ${[...remoteMutants].join('; ')}`, { details: { mutants: [...remoteMutants] } });
    }
    o.catalog.finishJob(job.id, { status: 'ok', finished: finished() });
    return {
      setId,
      setDir: setDir!,
      archives,
      wikiIntegrity,
      copied: shipped.copied.map((c) => c.path),
      remoteMutants: [...remoteMutants],
      purged: { local: purgedLocal, remote: purgedRemote },
      last: { local: lastLocal, remote: lastRemote },
    };
  } catch (err) {
    const aborted = signal?.aborted === true && err === signal.reason;
    o.catalog.finishJob(job.id, { status: aborted ? 'aborted' : 'failed', error: (err as Error).message ?? String(err), finished: finished() });
    // A set this run did not finish is removed; a finished one stays (its DNA is good).
    if (setDir !== undefined && !setDone) await rm(setDir, { recursive: true, force: true });
    throw err;
  } finally {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  }
}

/** Options of {@link backupMonitors} and {@link checkBackups}. */
export interface MonitorSetup {
  /** The local dated backup tree. */
  backupRoot: string;
  /** The paired node's tree. */
  remote: RemoteTree;
  /** History, notification state and jobs. */
  catalog: Catalog;
  /** Told when the state changes (e.g. a CommandNotifier running `mail`). */
  notifiers?: readonly Notifier[];
  /** Time zone of the set names (default UTC). */
  timeZone?: string;
  /** Free space below this on either node is a warning (default 10 %). */
  minFreePercent?: number;
}

/**
 * One Monitor per node: backups newer than 26 h (critical after 48 h), no
 * abrupt shrink, the newest set verified (on the far side for the paired
 * node), free space on both nodes, no stale LOCKED, and (locally) no run
 * that started and never finished.
 *
 * @param o - see {@link MonitorSetup}
 */
export function backupMonitors(o: MonitorSetup): { local: Monitor; remote: Monitor } {
  const local = new LocalTransport();
  const common = {
    maxAge: { warning: '26h', critical: '48h' },
    size: { window: 7, minPercent: 50, criticalPercent: 10 },
    verify: true,
    locks: true,
  } as const;
  const options = { catalog: o.catalog, notifiers: o.notifiers ?? [], timeZone: o.timeZone ?? 'UTC' };
  const minFreePercent = o.minFreePercent ?? 10;
  return {
    local: new Monitor(
      { transport: local, dir: o.backupRoot },
      {
        ...common,
        freeSpace: [
          { name: 'local', transport: local, path: o.backupRoot, minFreePercent },
          { name: 'paired', transport: o.remote.transport, path: o.remote.dir, minFreePercent },
        ],
        jobs: { maxRun: '6h', name: JOB_NAME },
      },
      { ...options, name: `${JOB_NAME}:local` },
    ),
    remote: new Monitor({ transport: o.remote.transport, dir: o.remote.dir }, common, { ...options, name: `${JOB_NAME}:paired` }),
  };
}

/**
 * Runs both monitors; the exit code is the worse of the two.
 *
 * @param o - see {@link MonitorSetup}, plus `now` and `signal`
 */
export async function checkBackups(o: MonitorSetup & { now?: Date; signal?: AbortSignal }): Promise<{ local: MonitorReport; remote: MonitorReport; exitCode: 0 | 1 | 2 }> {
  const { local, remote } = backupMonitors(o);
  const opts = { ...(o.now ? { now: o.now } : {}), ...(o.signal ? { signal: o.signal } : {}) };
  const l = await local.check(opts);
  const r = await remote.check(opts);
  return { local: l, remote: r, exitCode: Math.max(exitCode(l), exitCode(r)) as 0 | 1 | 2 };
}

/**
 * One Nagios status line for both nodes: Nagios shows the first line of a
 * check's output and reads what follows `|` as perfdata, so two lines
 * (one per node) would show the first node's status whatever the exit
 * status says, and repeat the perfdata labels. The line starts with the
 * worst status, names each node, and prefixes each node's labels
 * (`local_age=...`, `paired_age=...`).
 *
 * @param code - the exit status (the worst of the two)
 * @param nodes - each node's name and report
 */
export function nagiosLine(code: number, nodes: readonly (readonly [string, MonitorReport])[]): string {
  const word = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'][code] ?? 'UNKNOWN';
  const texts: string[] = [];
  const perf: string[] = [];
  for (const [name, report] of nodes) {
    const line = nagiosSummary(report);
    const bar = line.indexOf(' | ');
    texts.push(`${name}: ${(bar < 0 ? line : line.slice(0, bar)).replace(/^STOWAGE \w+ - /, '')}`);
    // A label is a word or a quoted string ('free:a b'), then =value.
    for (const m of (bar < 0 ? '' : line.slice(bar + 3)).matchAll(/('(?:[^']|'')*'|[^\s=']+)=(\S+)/g)) {
      const label = m[1]!.startsWith("'") ? `'${name}_${m[1]!.slice(1)}` : `${name}_${m[1]}`;
      perf.push(`${label}=${m[2]}`);
    }
  }
  return `STOWAGE ${word} - ${texts.join('; ')}${perf.length > 0 ? ` | ${perf.join(' ')}` : ''}`;
}

interface Config {
  svnRepo: string;
  wikiDir: string;
  backupRoot: string;
  catalog: string;
  remote: { host: string; port?: number; username: string; privateKeyPath: string; knownHosts?: string; dir: string };
  mailTo?: string;
  /** Zone of the set names (default UTC), for both commands. */
  timeZone?: string;
}

// Run as a script (also through a symlink, or from a path with a space in it,
// where import.meta.url is percent-encoded): compare real file paths.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const [command, configPath] = process.argv.slice(2);
  if ((command !== 'backup' && command !== 'check') || configPath === undefined) {
    console.error('usage: nightly-repository-backup.ts backup|check CONFIG.json');
    process.exit(3);
  }
  // Ctrl-C or a SIGTERM (cron, systemd) stops the run cleanly: the `finally`
  // blocks remove the hot copies and release LOCKED. A second signal kills at once.
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort(new StowageError('EABORTED', `stopped by ${sig}`)));
  let catalog: Catalog | undefined;
  let transport: SshTransport | undefined;
  try {
    const config = JSON.parse(await readFile(configPath, 'utf8')) as Config;
    const { dir, ...ssh } = config.remote;
    transport = new SshTransport(ssh);
    catalog = new Catalog(config.catalog);
    const remote = { transport, dir };
    if (command === 'backup') {
      const r = await nightlyRepositoryBackup({ ...config, remote, catalog, signal: stop.signal, log: (l) => console.log(l) });
      console.log(`backup set ${r.setId}: ${r.archives.map((a) => a.name).join(', ')}; purged ${r.purged.local.length} local, ${r.purged.remote.length} remote`);
    } else {
      const notifiers = config.mailTo ? [new CommandNotifier(['mail', '-s', '{subject}', config.mailTo], { name: `mail:${config.mailTo}` })] : [];
      const r = await checkBackups({ backupRoot: config.backupRoot, remote, catalog, notifiers, signal: stop.signal, ...(config.timeZone !== undefined ? { timeZone: config.timeZone } : {}) });
      // A notification that could not go out (no mail program, a relay down) is said, not only kept in the report.
      for (const [node, rep] of [['local', r.local], ['paired', r.remote]] as const) {
        for (const n of rep.notifications) if (!n.sent) console.error(`${node}: notifier ${n.notifier} failed: ${n.error?.code ?? ''} ${n.error?.message ?? ''}`.trimEnd());
      }
      console.log(nagiosLine(r.exitCode, [
        ['local', r.local],
        ['paired', r.remote],
      ]));
      process.exitCode = r.exitCode;
    }
  } catch (err) {
    const why = (err instanceof StowageError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ');
    if (command === 'check') {
      // Nagios reads one line and the exit status: a check that could not
      // run is UNKNOWN (3), not a WARNING (1) with a stack trace.
      console.log(`STOWAGE UNKNOWN - the check could not run: ${why}`);
      process.exitCode = 3;
    } else {
      console.error(`backup failed: ${why}`);
      process.exitCode = 2;
    }
  } finally {
    catalog?.close();
    await transport?.close();
  }
}
