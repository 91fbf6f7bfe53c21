/**
 * Monitor: are the backups still arriving, of sane size, verified, with
 * room left on every node, no stale lock and no job that died?
 *
 * A cron job that stops does not fail: it just stops writing. The Monitor
 * is the other half of every backup script: it looks at what is there (a
 * dated backup tree on any transport, or the archives a Catalog records)
 * and says `ok`, `warning` or `critical`, with one line per check and the
 * measured values for plots. It keeps the history of its runs in the
 * Catalog, and tells notifiers only when the state changes, so a nightly
 * cron run does not send the same mail every night, and a state change is
 * retried until a notifier took it. Overlapping runs of one monitor (a slow
 * check under cron) take turns at notifying, through a lock folder beside
 * the Catalog or the state file (`NAME.monitor-MONITOR.lock`), so a change
 * is told once.
 *
 * @module
 */
import type { Catalog } from '../catalog/catalog.js';
import { StowageError } from '../errors.js';
import { resolveTreeOptions } from '../retention/backup-sets.js';
import { LocalTransport } from '../transport/local/local-transport.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';
import type { ProgressCallback } from '../progress.js';
import { checkInt, checkOptionKeys } from '../util/options.js';
import { catalogView, treeView, type BackupView, type CatalogSourceSpec, type TreeSourceSpec } from './backup-view.js';
import { checkAge, checkDna, checkFreeSpace, checkJobs, checkLocks, checkSize, errorOf, type CheckContext } from './checks.js';
import { resolveConstraints, type MonitorConstraints, type ResolvedConstraints } from './constraints.js';
import { exitCode, nagiosSummary } from './exit-status.js';
import { MonitorReport, type MonitorCheckError, type MonitorCheckResult, type MonitorNotification } from './monitor-report.js';
import type { MonitorChange, MonitorEvent, Notifier } from './notifiers.js';
import { LockDir } from '../lock/lock-dir.js';
import { catalogStateStore, fileStateStore, notifyLock, type NotifyState, type NotifyStateStore } from './notify-state.js';
import { MONITOR_CHECKS, type MonitorStatus } from './status.js';

/** A dated backup tree `YYYY/MM/DD/HHMMSS/` on any transport. */
export interface MonitorTreeSource {
  /** Where the tree lives (LocalTransport, SshTransport: digests and free space are computed on the far side). */
  transport: Transport;
  /** The tree's root (beside the `last` link). */
  dir: string;
}

/** Archives recorded in a Catalog; a backup is the archives of one directory. */
export interface MonitorCatalogSource {
  /** The catalog. */
  catalog: Catalog;
  /**
   * Only archives recorded under this folder (default all): `svn` (or
   * `svn/`) takes `svn/2026/...`, not `svn-old/...`.
   */
  prefix?: string;
  /** Where the recorded archive paths are, for the DNA check (default the local disk). */
  transport?: Transport;
  /** Directory that relative archive paths are under (default: as recorded). */
  root?: string;
}

/** What a Monitor watches: a dated tree, a Catalog, or a Catalog with options. */
export type MonitorSource = MonitorTreeSource | Catalog | MonitorCatalogSource;

/** Options of {@link Monitor}. */
export interface MonitorOptions {
  /** The monitor's name: the key of its history and notification state (default from the source: `local:/backups/svn`). */
  name?: string;
  /** A Catalog for the history, the notification state and the job check, when the source is a tree. */
  catalog?: Catalog;
  /** Keep each run in the Catalog's history (default true when there is a Catalog). */
  history?: boolean;
  /** A local JSON file for the notification state, when there is no Catalog. */
  stateFile?: string;
  /** Told when the state changes. Names must be unique. */
  notifiers?: readonly Notifier[];
  /** IANA time zone the tree's folder names are written in (default: the machine's). */
  timeZone?: string;
  /** Name of the link beside the year folders (default `last`). */
  linkName?: string;
}

/** Options of {@link Monitor.check}. */
export interface MonitorCheckOptions {
  /** The time to judge ages against (default now): a cron wrapper's clock, or a test's. */
  now?: Date | number;
  /** Tell the notifiers about a state change (default true). */
  notify?: boolean;
  /** Cancels the run: nothing is recorded and nobody is told; rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Progress of the DNA check (`verify` constraint), the long part of a run:
   * phase `verify`, bytes of the backups re-digested out of their total,
   * items the backups done.
   */
  onProgress?: ProgressCallback;
}

/** Options of {@link Monitor.history}. */
export interface MonitorHistoryQuery {
  /** Only runs at or after this time. */
  since?: Date | number;
  /** Only runs at or before this time. */
  until?: Date | number;
  /** At most this many runs, the latest ones (default 1000). */
  limit?: number;
}

const OPTION_KEYS = ['name', 'catalog', 'history', 'stateFile', 'notifiers', 'timeZone', 'linkName'];

function isCatalog(v: unknown): v is Catalog {
  const c = v as Partial<Catalog> | null;
  return c !== null && typeof c === 'object' && typeof c.archives === 'function' && typeof c.unfinishedJobs === 'function' && typeof c.recordMonitorRun === 'function';
}

function bad(option: string, message: string, value?: unknown): StowageError {
  return new StowageError('EBAD_CONFIG', `Monitor: ${message}`, { details: { where: 'Monitor', option, value } });
}

function toMs(option: string, v: unknown): number {
  const t = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : NaN;
  if (!Number.isFinite(t)) throw bad(option, `option "${option}" must be a valid Date or epoch milliseconds, got ${String(v)}.`, String(v));
  return t;
}

function stateOf(report: MonitorReport): NotifyState {
  const checks: NotifyState['checks'] = {};
  for (const c of report.checks) (checks as Record<string, MonitorStatus>)[c.check] = c.status;
  return { status: report.status, checks };
}

/**
 * The checks whose status differs from what was last told. Before the
 * first notification everything counts as `ok`, so a healthy first run
 * tells nobody and a failing one tells everybody.
 */
function changesBetween(prev: NotifyState | undefined, now: NotifyState): MonitorChange[] {
  const out: MonitorChange[] = [];
  for (const check of MONITOR_CHECKS) {
    const to = now.checks[check] ?? null;
    const from = prev?.checks[check] ?? (prev === undefined && to !== null ? 'ok' : null);
    if ((from ?? 'ok') !== (to ?? 'ok')) out.push({ check, from, to });
  }
  return out;
}

/**
 * Watches a backup source against constraints.
 *
 * @example
 * ```ts
 * const monitor = new Monitor(
 *   { transport: new LocalTransport(), dir: '/backups/svn' },
 *   { maxAge: { warning: '26h', critical: '48h' }, size: { minPercent: 50 }, verify: true,
 *     freeSpace: [{ transport: local, path: '/backups', minFreePercent: 10 }], locks: true, jobs: { maxRun: '6h' } },
 *   { catalog, notifiers: [new CommandNotifier(['mail', '-s', '{subject}', 'oncall@example.org'])] },
 * );
 * const report = await monitor.check();
 * console.log(Monitor.nagios(report));   // STOWAGE OK - newest backup 2h old; ...
 * process.exitCode = Monitor.exitCode(report);
 * ```
 */
export class Monitor {
  /** The monitor's name (key of its history and notification state). */
  readonly name: string;
  /** What it watches, for messages: `local:/backups/svn`, `catalog:/backup/stowage.catalog`. */
  readonly source: string;
  /** The validated constraints. */
  readonly constraints: ResolvedConstraints;
  readonly #tree: TreeSourceSpec | undefined;
  readonly #catalogSource: CatalogSourceSpec | undefined;
  readonly #catalog: Catalog | undefined;
  readonly #history: boolean;
  readonly #notifiers: readonly Notifier[];
  readonly #state: NotifyStateStore | undefined;

  /**
   * @param source - a dated tree `{ transport, dir }`, a Catalog, or `{ catalog, prefix, transport, root }`
   * @param constraints - what to check (see {@link MonitorConstraints}); unknown keys are EBAD_CONFIG
   * @param options - name, catalog, history, stateFile, notifiers, timeZone, linkName
   */
  constructor(source: MonitorSource, constraints: MonitorConstraints, options: MonitorOptions = {}) {
    checkOptionKeys('Monitor', options, OPTION_KEYS);
    options ??= {}; // null means no options, as for checkOptionKeys
    if (source === null || typeof source !== 'object') throw bad('source', 'the source must be { transport, dir } or a Catalog.', source);
    if (options.catalog !== undefined && !isCatalog(options.catalog)) throw bad('catalog', 'option "catalog" must be a Catalog.');
    if (isCatalog(source) || isCatalog((source as MonitorCatalogSource).catalog)) {
      const s: MonitorCatalogSource = isCatalog(source) ? { catalog: source } : (source as MonitorCatalogSource);
      checkOptionKeys('Monitor source', s, ['catalog', 'prefix', 'transport', 'root']);
      if (s.prefix !== undefined && typeof s.prefix !== 'string') throw bad('prefix', 'source "prefix" must be a string.', s.prefix);
      if (s.root !== undefined && (typeof s.root !== 'string' || s.root === '')) throw bad('root', 'source "root" must be a non-empty path.', s.root);
      if (s.transport !== undefined && typeof (s.transport as Partial<Transport>).digest !== 'function') throw bad('transport', 'source "transport" must be a Transport.');
      if (options.catalog !== undefined && options.catalog !== s.catalog) throw bad('catalog', 'the source is a Catalog; option "catalog" must be left out or be the same one.');
      if (options.timeZone !== undefined || options.linkName !== undefined) throw bad(options.timeZone !== undefined ? 'timeZone' : 'linkName', 'options "timeZone" and "linkName" apply to a tree source only.');
      // A folder, so that `/backups/svn` does not take in `/backups/svn-old`.
      const prefix = s.prefix === undefined || s.prefix === '' || s.prefix.endsWith('/') ? (s.prefix ?? '') : `${s.prefix}/`;
      this.#catalogSource = { catalog: s.catalog, prefix, transport: s.transport ?? new LocalTransport(), root: s.root };
      this.#catalog = s.catalog;
      this.source = `catalog:${s.catalog.path}${s.prefix ? `:${s.prefix}` : ''}`;
    } else {
      const s = source as MonitorTreeSource;
      checkOptionKeys('Monitor source', s, ['transport', 'dir']);
      const t = s.transport as Partial<Transport> | undefined;
      if (t === null || typeof t !== 'object' || typeof t.list !== 'function' || typeof t.name !== 'string') throw bad('transport', 'the source needs a "transport" (LocalTransport, SshTransport, ...) and a "dir", or must be a Catalog.');
      if (typeof s.dir !== 'string' || s.dir === '') throw bad('dir', 'source "dir" must be a non-empty path.', s.dir);
      this.#tree = { transport: s.transport, dir: s.dir, timeZone: options.timeZone, linkName: options.linkName };
      this.#catalog = options.catalog;
      this.source = `${s.transport.name}:${s.dir}`;
      resolveTreeOptions('Monitor', { ...(options.timeZone !== undefined ? { timeZone: options.timeZone } : {}), ...(options.linkName !== undefined ? { linkName: options.linkName } : {}) });
    }
    const resolved = resolveConstraints('Monitor', constraints);
    const cs = this.#catalogSource;
    if (cs !== undefined && resolved.locks !== undefined && resolved.locks.dirs.length === 0) {
      // A Catalog records archives, not LOCKED directories: with nothing
      // to inspect, the check would report "ok" while watching nothing.
      if (cs.root === undefined) {
        throw bad('locks', 'the "locks" check of a Catalog source needs a place to look: give "locks.dirs" ({ transport, path }), or the source\'s "root" (its LOCKED is then watched).');
      }
      this.constraints = Object.freeze({ ...resolved, locks: Object.freeze({ ...resolved.locks, dirs: Object.freeze([{ transport: cs.transport, path: cs.root }]) }) });
    } else {
      this.constraints = resolved;
    }
    if (this.constraints.jobs !== undefined && this.#catalog === undefined) throw bad('jobs', 'the "jobs" check reads job runs from a Catalog: give the source as a Catalog or option "catalog".');
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name.trim() === '')) throw bad('name', 'option "name" must be a non-empty string.', options.name);
    this.name = options.name ?? this.source;
    if (options.history !== undefined && typeof options.history !== 'boolean') throw bad('history', 'option "history" must be a boolean.', options.history);
    this.#history = (options.history ?? true) && this.#catalog !== undefined;

    const notifiers = options.notifiers ?? [];
    if (!Array.isArray(notifiers)) throw bad('notifiers', 'option "notifiers" must be an array.');
    const names = new Set<string>();
    for (const [i, n] of notifiers.entries()) {
      if (n === null || typeof n !== 'object' || typeof n.notify !== 'function' || typeof n.name !== 'string' || n.name === '') {
        throw bad('notifiers', `notifiers[${i}] must have a non-empty "name" and a notify(event) method.`);
      }
      if (names.has(n.name)) throw bad('notifiers', `two notifiers are named "${n.name}"; give each a distinct name (their state is kept by name).`, n.name);
      names.add(n.name);
    }
    this.#notifiers = Object.freeze([...notifiers]);
    if (options.stateFile !== undefined && (typeof options.stateFile !== 'string' || options.stateFile === '')) throw bad('stateFile', 'option "stateFile" must be a non-empty path.', options.stateFile);
    if (options.stateFile !== undefined && this.#catalog !== undefined) throw bad('stateFile', 'the notification state goes in the Catalog when there is one; leave out option "stateFile".');
    if (this.#catalog !== undefined) this.#state = catalogStateStore(this.#catalog, this.name);
    else if (options.stateFile !== undefined) this.#state = fileStateStore(options.stateFile, this.name);
    if (this.#notifiers.length > 0 && this.#state === undefined) {
      throw bad('stateFile', 'notifiers are told only when the state changes, so the last state must be kept somewhere: give option "catalog" or "stateFile".');
    }
  }

  /**
   * Runs every check, then tells the notifiers whose last known state
   * differs, then appends the run to the Catalog's history. Never throws
   * for what it finds (a missing tree is a critical check with error code
   * ENOT_FOUND, an unreachable node a critical free-space entry); rejects
   * only when aborted (nothing is recorded then, nobody is told) or when
   * the history or state cannot be written, or the notify lock beside it
   * cannot be made (EACCES, EIO...).
   *
   * A notifier that fails is reported in `report.notifications` and its
   * state is left as it was, so the change is told again next run. Runs of
   * one monitor take turns at notifying: a run that waits 2 minutes for
   * another's turn to end tells nobody (each notification `sent: false`
   * with error ELOCKED), and the next run tells what is still untold.
   *
   * @param options - now, notify, signal
   */
  async check(options: MonitorCheckOptions = {}): Promise<MonitorReport> {
    checkOptionKeys('Monitor.check', options, ['now', 'notify', 'signal', 'onProgress']);
    options ??= {}; // null means no options, as for checkOptionKeys
    const { signal } = options;
    const now = options.now === undefined ? Date.now() : toMs('now', options.now);
    if (options.notify !== undefined && typeof options.notify !== 'boolean') throw bad('notify', 'option "notify" must be a boolean.', options.notify);
    if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw bad('onProgress', 'option "onProgress" must be a function.', options.onProgress);
    throwIfAborted(signal);
    const started = performance.now();

    let view: BackupView | MonitorCheckError;
    try {
      view = this.#tree !== undefined ? await treeView(this.#tree, signal, now) : catalogView(this.#catalogSource!, now, this.constraints.locks?.staleMs);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      view = errorOf(err);
    }
    const ctx: CheckContext = { now, signal, view, catalog: this.#catalog, config: this.constraints, isTree: this.#tree !== undefined, onProgress: options.onProgress };
    const c = this.constraints;
    const checks: MonitorCheckResult[] = [];
    if (c.maxAge) checks.push(await checkAge(ctx));
    if (c.size) checks.push(await checkSize(ctx));
    if (c.verify) checks.push(await checkDna(ctx));
    if (c.freeSpace) checks.push(await checkFreeSpace(ctx));
    if (c.locks) checks.push(await checkLocks(ctx));
    if (c.jobs) checks.push(await checkJobs(ctx));
    throwIfAborted(signal);

    let report = new MonitorReport({ monitor: this.name, source: this.source, checkedAt: new Date(now), durationMs: Math.round(performance.now() - started), checks });
    if (options.notify ?? true) report = report.withNotifications(await this.#notify(report, signal));
    throwIfAborted(signal);
    if (this.#history) {
      this.#catalog!.recordMonitorRun({
        monitor: this.name,
        checked: report.checkedAt,
        status: report.status,
        report: report.toJSON(),
        results: report.checks.map((r) => ({ check: r.check, status: r.status, message: r.message, metrics: r.metrics })),
      });
    }
    return report;
  }

  async #notify(report: MonitorReport, signal: AbortSignal | undefined): Promise<MonitorNotification[]> {
    if (this.#notifiers.length === 0) return [];
    const store = this.#state!;
    await store.ready?.();
    // Runs of this monitor take turns: the second of two overlapping runs
    // reads what the first told, and does not tell it again.
    const lock = store.lock === undefined ? undefined : new LockDir(store.lock.dir, { name: store.lock.name, purpose: `monitor ${this.name} notifying` });
    if (lock !== undefined) {
      try {
        await lock.acquire({ waitMs: notifyLock.waitMs, ...(signal ? { signal } : {}) });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!(err instanceof StowageError) || err.code !== 'ELOCKED') throw err;
        const error = { code: 'ELOCKED', message: `another run of monitor "${this.name}" has been notifying for over ${Math.round(notifyLock.waitMs / 1000)} s (${err.message}); this run told nobody, and the next run tells what is still untold.` };
        return this.#notifiers.map((n) => ({ notifier: n.name, sent: false, error }));
      }
    }
    try {
      return await this.#notifyEach(report, store, signal);
    } finally {
      await lock?.release().catch(() => {});
    }
  }

  async #notifyEach(report: MonitorReport, store: NotifyStateStore, signal: AbortSignal | undefined): Promise<MonitorNotification[]> {
    const out: MonitorNotification[] = [];
    const current = stateOf(report);
    for (const n of this.#notifiers) {
      throwIfAborted(signal);
      const prev = await store.get(n.name);
      const changes = changesBetween(prev, current);
      if (changes.length === 0 && (prev === undefined || prev.status === current.status)) continue;
      const subjectText = nagiosSummary(report).split(' | ')[0]!.replace(/^STOWAGE (\w+) - /, `STOWAGE $1 - ${this.name}: `);
      const event: MonitorEvent = {
        monitor: this.name,
        status: report.status,
        previousStatus: prev?.status ?? null,
        changes,
        subject: subjectText.length > 200 ? `${subjectText.slice(0, 197)}...` : subjectText,
        text: report.toText(),
        report,
      };
      try {
        await n.notify(event, signal ? { signal } : {});
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        out.push({ notifier: n.name, sent: false, error: errorOf(err) });
        continue;
      }
      await store.set(n.name, current, report.checkedAt);
      out.push({ notifier: n.name, sent: true, error: null });
    }
    return out;
  }

  /**
   * The recorded runs of this monitor, oldest first, as reports (for trend
   * plots: `r.checkedAt` against `r.check('size')?.metrics`). EBAD_CONFIG
   * without a Catalog.
   *
   * @param query - since, until, limit
   */
  history(query: MonitorHistoryQuery = {}): MonitorReport[] {
    checkOptionKeys('Monitor.history', query, ['since', 'until', 'limit']);
    query ??= {}; // null means no query, as for checkOptionKeys
    if (this.#catalog === undefined) throw bad('catalog', 'the history is kept in a Catalog; this monitor has none (give option "catalog").');
    const runs = this.#catalog.monitorRuns(this.name, {
      ...(query.since !== undefined ? { since: toMs('since', query.since) } : {}),
      ...(query.until !== undefined ? { until: toMs('until', query.until) } : {}),
      limit: checkInt('Monitor.history', 'limit', query.limit ?? 1000, 1),
    });
    return runs.reverse().map((r) => MonitorReport.fromJSON(r.report));
  }

  /**
   * Exit status for cron and Nagios: 0 ok, 1 warning, 2 critical.
   *
   * @param report - a report
   */
  static exitCode(report: Pick<MonitorReport, 'status'>): 0 | 1 | 2 {
    return exitCode(report);
  }

  /**
   * The one-line Nagios summary,
   * `STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800`.
   *
   * @param report - a report
   */
  static nagios(report: Pick<MonitorReport, 'status' | 'checks'>): string {
    return nagiosSummary(report);
  }
}
