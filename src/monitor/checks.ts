/**
 * The Monitor's checks, one function each. Each returns a result and never
 * throws for what it finds: a missing tree, an unreachable host or a
 * mutant is a status with a message. Only an abort is thrown (the signal's
 * reason), so that a cancelled run records and notifies nothing.
 *
 * @module
 */
import { posix } from 'node:path';
import type { Catalog, JobRecord } from '../catalog/catalog.js';
import { LockDir } from '../lock/lock-dir.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { LOCK_DIR_NAME } from '../dna/dna-scan.js';
import { posixDirname } from '../transport/put-source.js';
import { transportLockFs } from '../transport/lock-fs.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';
import type { NewestBackups, BackupView } from './backup-view.js';
import type { ResolvedConstraints, ResolvedThreshold } from './constraints.js';
import type { MonitorCheckError, MonitorCheckResult, MonitorMetric } from './monitor-report.js';
import { worstStatus, type MonitorCheckName, type MonitorStatus } from './status.js';

/** What every check is given. */
export interface CheckContext {
  /** The time of the run, ms. */
  readonly now: number;
  /** Cancels the run. */
  readonly signal: AbortSignal | undefined;
  /** The source's backups, or why they could not be listed. */
  readonly view: BackupView | MonitorCheckError;
  /** The Catalog, for the job check. */
  readonly catalog: Catalog | undefined;
  /** The constraints. */
  readonly config: ResolvedConstraints;
  /** Whether the source is a dated tree (its locks are checked). */
  readonly isTree: boolean;
  /** The user's progress callback (the DNA check reports phase `verify`). */
  readonly onProgress?: ProgressCallback | undefined;
}

/**
 * The check error of a caught value.
 *
 * @param err - anything caught
 */
export function errorOf(err: unknown): MonitorCheckError {
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'Error';
  return { code, message: typeof e?.message === 'string' ? e.message : String(err) };
}

function isError(v: BackupView | MonitorCheckError): v is MonitorCheckError {
  return typeof (v as MonitorCheckError).code === 'string' && typeof (v as BackupView).newest !== 'function';
}

/**
 * A duration for people: the two largest units, `3d`, `1d2h`, `5h30min`, `42s`.
 *
 * @param ms - milliseconds
 */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let s = Math.round(Math.abs(ms) / 1000);
  const units: [string, number][] = [
    ['d', 86_400],
    ['h', 3600],
    ['min', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  for (const [u, n] of units) {
    const q = Math.floor(s / n);
    if (q > 0) {
      parts.push(`${q}${u}`);
      s -= q * n;
    } else if (parts.length > 0) break; // only adjacent units: 1d2h, never 1d5s
    if (parts.length === 2) break;
  }
  return sign + (parts.length > 0 ? parts.join('') : '0s');
}

/**
 * A byte count for people: `812 B`, `4.1 MB`, `1.23 GB` (powers of 1000).
 *
 * @param n - bytes
 */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
const seconds = (ms: number | null): number | null => (ms === null ? null : Math.round(ms / 1000));

function statusAbove(value: number, t: ResolvedThreshold): MonitorStatus {
  if (t.criticalMs !== null && value > t.criticalMs) return 'critical';
  if (t.warningMs !== null && value > t.warningMs) return 'warning';
  return 'ok';
}

function result(check: MonitorCheckName, status: MonitorStatus, message: string, metrics: MonitorMetric[], details: Record<string, unknown>, error: MonitorCheckError | null = null): MonitorCheckResult {
  return { check, status, message, metrics, details, error };
}

function metric(name: string, value: number, unit: MonitorMetric['unit'], warning: number | null = null, critical: number | null = null, below = false): MonitorMetric {
  return { name, value, unit, warning, critical, below };
}

/** Runs `fn`, turning anything but an abort into a critical result. */
async function guarded(check: MonitorCheckName, ctx: CheckContext, details: Record<string, unknown>, fn: () => Promise<MonitorCheckResult>): Promise<MonitorCheckResult> {
  throwIfAborted(ctx.signal);
  try {
    return await fn();
  } catch (err) {
    if (ctx.signal?.aborted) throw ctx.signal.reason;
    const e = errorOf(err);
    return result(check, 'critical', `cannot check: ${e.message}`, [], details, e);
  }
}

async function newestOf(ctx: CheckContext, n: number): Promise<NewestBackups | MonitorCheckError> {
  if (isError(ctx.view)) return ctx.view;
  return ctx.view.newest(n, ctx.signal);
}

/**
 * The warning about backups dated after the run, or undefined. They never
 * count as the newest (one of them would hide that backups stopped).
 */
function futureWarning(n: NewestBackups, now: number): string | undefined {
  const f = n.future[0];
  if (f === undefined) return undefined;
  const more = n.future.length > 1 ? `, and ${n.future.length - 1} more` : '';
  return `${f.id} is dated ${formatDuration(f.time.getTime() - now)} in the future (not counted${more}): check the clock or the folder name`;
}

/**
 * The warning about newer sets passed over for a failure of their own (their
 * data files are gone), not because a writer is at work, or undefined.
 */
function damagedWarning(n: NewestBackups): string | undefined {
  const d = n.skipped.filter((s) => s.problem !== undefined);
  if (d.length === 0) return undefined;
  const more = d.length > 1 ? ` (and ${d.length - 1} more set${d.length > 2 ? 's' : ''})` : '';
  return `newer set ${d[0]!.id} ${d[0]!.problem}${more}: restore it from the paired node or run the backup again`;
}

/** Newest backup age; backups dated after the run are left out and warned about. */
export async function checkAge(ctx: CheckContext): Promise<MonitorCheckResult> {
  const t = ctx.config.maxAge!;
  const empty = { newest: null, newestTime: null, sets: 0, skipped: [], future: [] };
  return guarded('age', ctx, empty, async () => {
    const n = await newestOf(ctx, 1);
    if ('code' in n) return result('age', 'critical', `cannot list backups: ${n.message}`, [], empty, n);
    const skipped = n.skipped.map((s) => (s.problem === undefined ? { id: s.id, reason: s.reason } : { id: s.id, reason: s.reason, problem: s.problem }));
    const future = n.future.map((f) => ({ id: f.id, time: f.time.toISOString() }));
    const warnings = [damagedWarning(n), futureWarning(n, ctx.now)].filter((w): w is string => w !== undefined);
    const newest = n.backups[0];
    if (newest === undefined) {
      const none = skipped.length > 0 ? `no complete backup (${skipped.length} locked or incomplete)` : 'no backup found';
      return result('age', 'critical', [none, ...warnings].join('; '), [], { ...empty, skipped, future });
    }
    const ageMs = ctx.now - newest.time.getTime();
    const details = { newest: newest.id, newestTime: newest.time.toISOString(), sets: 1, skipped, future };
    const m = [metric('age', Math.round(ageMs / 1000), 's', seconds(t.warningMs), seconds(t.criticalMs))];
    const status = statusAbove(ageMs, t);
    const message = `newest backup ${formatDuration(ageMs)} old`;
    if (warnings.length === 0) return result('age', status, message, m, details);
    return result('age', worstStatus(status, 'warning'), [message, ...warnings].join('; '), m, details);
  });
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Newest backup size against the median of the ones before. */
export async function checkSize(ctx: CheckContext): Promise<MonitorCheckResult> {
  const c = ctx.config.size!;
  const empty = { newest: null, bytes: null, medianBytes: null, percentOfMedian: null, history: 0 };
  return guarded('size', ctx, empty, async () => {
    const n = await newestOf(ctx, c.window + 1);
    if ('code' in n) return result('size', 'critical', `cannot list backups: ${n.message}`, [], empty, n);
    const [newest, ...before] = n.backups;
    if (newest === undefined) return result('size', 'critical', 'no backup to measure', [], empty);
    if (before.length === 0) {
      return result('size', 'ok', `newest backup ${formatBytes(newest.bytes)} (no earlier backup to compare with)`, [metric('size', newest.bytes, 'B')], {
        ...empty,
        newest: newest.id,
        bytes: newest.bytes,
      });
    }
    const med = median(before.map((b) => b.bytes));
    const pct = med > 0 ? (newest.bytes / med) * 100 : newest.bytes > 0 ? null : 100;
    const details = { newest: newest.id, bytes: newest.bytes, medianBytes: med, percentOfMedian: pct === null ? null : round2(pct), history: before.length };
    const warnB = c.minPercent > 0 ? Math.round((c.minPercent / 100) * med) : null;
    const critB = c.criticalPercent > 0 ? Math.round((c.criticalPercent / 100) * med) : null;
    const metrics = [metric('size', newest.bytes, 'B', warnB, critB, true), metric('size_median', Math.round(med), 'B')];
    const of = `${pct === null ? 'n/a' : `${Math.round(pct)}%`} of the median ${formatBytes(med)} of the ${before.length} before`;
    let status: MonitorStatus = 'ok';
    let message = `newest backup ${formatBytes(newest.bytes)}, ${of}`;
    if (pct !== null && c.criticalPercent > 0 && pct < c.criticalPercent) {
      status = 'critical';
      message = `newest backup shrank to ${formatBytes(newest.bytes)}, ${of} (below ${c.criticalPercent}%)`;
    } else if (pct !== null && c.minPercent > 0 && pct < c.minPercent) {
      status = 'warning';
      message = `newest backup shrank to ${formatBytes(newest.bytes)}, ${of} (below ${c.minPercent}%)`;
    } else if (c.maxPercent !== null && (pct === null || pct > c.maxPercent)) {
      status = 'warning';
      message = `newest backup grew to ${formatBytes(newest.bytes)}, ${of} (above ${c.maxPercent}%)`;
    }
    return result('size', status, message, metrics, details);
  });
}

/** The newest backups still match their DNA. */
export async function checkDna(ctx: CheckContext): Promise<MonitorCheckResult> {
  const c = ctx.config.verify!;
  const empty = { sets: [] as string[], files: 0, problems: [] as string[] };
  return guarded('dna', ctx, empty, async () => {
    const n = await newestOf(ctx, c.newest);
    if ('code' in n) return result('dna', 'critical', `cannot list backups: ${n.message}`, [], empty, n);
    if (n.backups.length === 0) return result('dna', 'critical', 'no backup to verify', [], empty);
    let files = 0;
    const problems: string[] = [];
    const unsigned: string[] = [];
    const notes: string[] = [];
    const sets: string[] = [];
    const progress = new ProgressTracker('verify', ctx.onProgress, { bytesTotal: n.backups.reduce((s, b) => s + b.bytes, 0), itemsTotal: n.backups.length });
    progress.report(true);
    for (const b of n.backups) {
      throwIfAborted(ctx.signal);
      const before = progress.bytesDone;
      const v = await b.verify(ctx.signal, ctx.onProgress ? (k) => progress.add(k) : undefined);
      // Files that vanished meanwhile were not read: the backup counts whole.
      progress.add(before + b.bytes - progress.bytesDone, 1);
      sets.push(b.id);
      files += v.files;
      problems.push(...v.problems.map((p) => `${b.id}: ${p}`));
      unsigned.push(...v.unsigned);
      notes.push(...v.notes.map((p) => `${b.id}: ${p}`));
    }
    progress.report(true);
    const damaged = damagedWarning(n);
    const details = { sets, files, problems, unsigned, notes, ...(damaged === undefined ? {} : { damaged }) };
    const metrics = [metric('dna_files', files, 'c'), metric('dna_problems', problems.length, 'c', null, 0), metric('dna_unsigned', unsigned.length, 'c', 0)];
    const which = n.backups.length === 1 ? 'the newest backup' : `the ${n.backups.length} newest backups`;
    if (problems.length > 0) {
      return result('dna', 'critical', `DNA of ${which} does not verify: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, metrics, details);
    }
    const verified = `DNA of ${which} verified (${files} file${files === 1 ? '' : 's'})`;
    const warnings: string[] = [];
    if (unsigned.length > 0) {
      const k = unsigned.length;
      warnings.push(`${k} file${k === 1 ? ' has' : 's have'} no DNA sidecar and ${k === 1 ? 'was' : 'were'} not verified (${unsigned[0]}${k > 1 ? `, and ${k - 1} more` : ''}): write ${k === 1 ? 'its sidecar' : 'their sidecars'} (DnaDigest.writeSidecar) or back ${k === 1 ? 'it' : 'them'} up again`);
    }
    if (damaged !== undefined) warnings.push(damaged);
    const status: MonitorStatus = warnings.length > 0 ? 'warning' : 'ok';
    return result('dna', status, [verified, ...warnings, ...notes].join('; '), metrics, details);
  });
}

/** Free space on each node. */
export async function checkFreeSpace(ctx: CheckContext): Promise<MonitorCheckResult> {
  const nodes = ctx.config.freeSpace!;
  throwIfAborted(ctx.signal);
  const rows: Record<string, unknown>[] = [];
  const metrics: MonitorMetric[] = [];
  const bad: { status: MonitorStatus; text: string }[] = [];
  let lowest: { name: string; pct: number } | undefined;
  for (const n of nodes) {
    throwIfAborted(ctx.signal);
    try {
      const fs = await n.transport.freeSpace(n.path, ctx.signal ? { signal: ctx.signal } : {});
      // Graded on the exact figure; shown rounded down (4.996 % is "4.99 %", never "5 %" below a 5 % limit).
      const exact = fs.availablePercent;
      const pct = Math.floor(exact * 100) / 100;
      const status: MonitorStatus = exact < n.criticalFreePercent ? 'critical' : exact < n.minFreePercent ? 'warning' : 'ok';
      rows.push({ name: n.name, availablePercent: pct, availableBytes: fs.availableBytes, totalBytes: fs.totalBytes, status, error: null });
      metrics.push(metric(`free:${n.name}`, pct, '%', n.minFreePercent, n.criticalFreePercent, true));
      if (status !== 'ok') bad.push({ status, text: `only ${pct}% free on ${n.name} (${formatBytes(fs.availableBytes)}; below ${status === 'critical' ? n.criticalFreePercent : n.minFreePercent}%)` });
      if (lowest === undefined || pct < lowest.pct) lowest = { name: n.name, pct };
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      const e = errorOf(err);
      rows.push({ name: n.name, availablePercent: null, availableBytes: null, totalBytes: null, status: 'critical', error: e });
      bad.push({ status: 'critical', text: `cannot read free space on ${n.name}: ${e.message}` });
    }
  }
  const status = worstStatus(...bad.map((b) => b.status));
  const message =
    bad.length > 0
      ? bad.sort((a, b) => (a.status === b.status ? 0 : a.status === 'critical' ? -1 : 1)).map((b) => b.text).join('; ')
      : `free space ok on ${nodes.length} node${nodes.length === 1 ? '' : 's'} (lowest ${lowest!.name} ${lowest!.pct}%)`;
  return result('freeSpace', status, message, metrics, { nodes: rows });
}

/** Stale or long-held `LOCKED` directories. */
export async function checkLocks(ctx: CheckContext): Promise<MonitorCheckResult> {
  const c = ctx.config.locks!;
  throwIfAborted(ctx.signal);
  const rows: Record<string, unknown>[] = [];
  const problems: { status: MonitorStatus; text: string }[] = [];
  const places: { transport: Transport; parent: string }[] = c.dirs.map((d) => ({ transport: d.transport, parent: d.path }));
  if (ctx.isTree) {
    if (isError(ctx.view)) {
      return result('locks', 'critical', `cannot list backups: ${ctx.view.message}`, [], { locks: [] }, ctx.view);
    }
    const t = ctx.view.transport!;
    for (const l of ctx.view.locks) places.unshift({ transport: t, parent: posixDirname(l) });
  }
  let held = 0;
  let stale = 0;
  for (const p of places) {
    throwIfAborted(ctx.signal);
    let info;
    try {
      info = await LockDir.inspect(p.parent, { fs: transportLockFs(p.transport), staleMs: c.staleMs });
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason;
      const e = errorOf(err);
      const where = `${p.transport.name}:${posix.join(p.parent, LOCK_DIR_NAME)}`;
      rows.push({ path: where, stale: null, reason: null, owner: null, heldSeconds: null, heartbeatSeconds: null, status: 'critical', error: e });
      problems.push({ status: 'critical', text: `cannot inspect ${where}: ${e.message}` });
      continue;
    }
    if (!info.locked) continue;
    held++;
    const sinceMs = info.owner ? Date.parse(info.owner.since) : NaN;
    const heldMs = Number.isFinite(sinceMs) ? ctx.now - sinceMs : null;
    let status: MonitorStatus = 'ok';
    const where = `${p.transport.name}:${info.path}`;
    if (info.stale) {
      stale++;
      status = 'warning';
      const who = info.owner ? ` (pid ${info.owner.pid} on ${info.owner.host}${info.owner.purpose ? `, ${info.owner.purpose}` : ''})` : '';
      const why = info.reason === 'owner-dead' ? 'its owner is gone' : info.reason === 'heartbeat-expired' ? `no heartbeat for ${formatDuration(info.ageMs)}` : `no readable owner for ${formatDuration(info.ageMs)}`;
      problems.push({ status, text: `stale lock ${where}${who}: ${why}` });
    }
    if (c.maxHeld !== undefined && heldMs !== null) {
      const s = statusAbove(heldMs, c.maxHeld);
      if (s !== 'ok') problems.push({ status: s, text: `lock ${where} held for ${formatDuration(heldMs)}` });
      status = worstStatus(status, s);
    }
    rows.push({
      path: where,
      stale: info.stale,
      reason: info.reason ?? null,
      owner: info.owner ? { host: info.owner.host, pid: info.owner.pid, purpose: info.owner.purpose, since: info.owner.since } : null,
      heldSeconds: seconds(heldMs),
      heartbeatSeconds: seconds(info.ageMs),
      status,
      error: null,
    });
  }
  const status = worstStatus(...problems.map((p) => p.status));
  const metrics = [metric('locks', held, 'c'), metric('stale_locks', stale, 'c', 0)];
  const message = problems.length > 0 ? problems.map((p) => p.text).join('; ') : held === 0 ? 'no LOCKED directory' : `${held} live LOCKED director${held === 1 ? 'y' : 'ies'}, none stale`;
  return result('locks', status, message, metrics, { locks: rows });
}

/** Job runs that started and never finished, and jobs whose last run failed. */
export async function checkJobs(ctx: CheckContext): Promise<MonitorCheckResult> {
  const c = ctx.config.jobs!;
  const empty = { unfinished: [], failed: [] };
  return guarded('jobs', ctx, empty, async () => {
    const catalog = ctx.catalog!;
    const unfinishedRows: Record<string, unknown>[] = [];
    const problems: { status: MonitorStatus; text: string }[] = [];
    for (const j of catalog.unfinishedJobs(c.name === undefined ? {} : { name: c.name })) {
      const runningMs = ctx.now - j.started.getTime();
      const status = statusAbove(runningMs, c.maxRun);
      unfinishedRows.push({ id: j.id, name: j.name, started: j.started.toISOString(), host: j.host, pid: j.pid, runningSeconds: seconds(runningMs), status });
      if (status !== 'ok') problems.push({ status, text: `job ${j.name} #${j.id} started ${formatDuration(runningMs)} ago on ${j.host} (pid ${j.pid}) and never finished` });
    }
    const failedRows: Record<string, unknown>[] = [];
    if (c.failedIsWarning) {
      const latest = new Map<string, JobRecord>();
      for (const j of catalog.lastJobs({ ...(c.name === undefined ? {} : { name: c.name }), limit: 1000 })) {
        if (j.status !== 'running' && !latest.has(j.name)) latest.set(j.name, j);
      }
      for (const j of latest.values()) {
        if (j.status !== 'failed' && j.status !== 'aborted') continue;
        failedRows.push({ id: j.id, name: j.name, finished: j.finished?.toISOString() ?? null, status: j.status, error: j.error });
        problems.push({ status: 'warning', text: `last run of job ${j.name} ${j.status}${j.error ? `: ${j.error}` : ''}` });
      }
    }
    const status = worstStatus(...problems.map((p) => p.status));
    const dead = unfinishedRows.filter((r) => r['status'] !== 'ok').length;
    const metrics = [metric('unfinished_jobs', dead, 'c', 0), metric('failed_jobs', failedRows.length, 'c', c.failedIsWarning ? 0 : null)];
    const running = unfinishedRows.length - dead;
    const message = problems.length > 0 ? problems.sort((a, b) => (a.status === b.status ? 0 : a.status === 'critical' ? -1 : 1)).map((p) => p.text).join('; ') : running > 0 ? `${running} job run${running === 1 ? '' : 's'} in progress, none overdue` : 'no unfinished job';
    return result('jobs', status, message, metrics, { unfinished: unfinishedRows, failed: failedRows });
  });
}
