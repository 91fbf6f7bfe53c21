/**
 * The Monitor's constraints: what "healthy" means for a backup tree, as
 * plain data validated once, up front, into a frozen config.
 *
 * Thresholds come in two levels, `warning` and `critical`, the way Nagios
 * and cron wrappers read them. A single value is the warning level; the
 * critical level is then derived from it (twice the age, half the free
 * space), so `maxAge: '26h'` alone already escalates when a second night
 * is missed.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import type { Transport } from '../transport/transport.js';
import { checkInt, checkOptionKeys } from '../util/options.js';

/**
 * A duration: a positive number of milliseconds, or a string of whole units
 * in this order: `<n>w` weeks, `<n>d` days, `<n>h` hours, `<n>min` minutes,
 * `<n>s` seconds (`'26h'`, `'1d12h'`, `'90min'`). Exact units: a day is
 * 24 h. `m` alone is refused as ambiguous (Retention reads it as months).
 */
export type DurationInput = string | number;

/**
 * A two-level limit on a duration: above `warning` the check warns, above
 * `critical` it is critical. A single duration is the warning level, and
 * critical is twice it.
 */
export type DurationThreshold = DurationInput | { warning?: DurationInput; critical?: DurationInput };

/** The size check: is the newest backup about as large as the recent ones? */
export interface SizeConstraint {
  /** How many complete backups before the newest form the reference: their median size (default 7, at least 1). */
  window?: number;
  /** Newest below this percentage of the median: warning (default 50). */
  minPercent?: number;
  /** Newest below this percentage of the median: critical (default 10; 0 turns it off). */
  criticalPercent?: number;
  /** Newest above this percentage of the median: warning (default: no upper bound). */
  maxPercent?: number;
}

/** The DNA check: do the newest backups still match their sidecars? */
export interface VerifyConstraint {
  /** How many of the newest complete backups to re-digest (default 1). */
  newest?: number;
}

/** One file system whose free space is watched. */
export interface FreeSpaceNode {
  /** A short label for messages and metrics (default `<transport name>:<path>`). */
  name?: string;
  /** How to reach it; `freeSpace` runs on the far side for a remote host. */
  transport: Transport;
  /** A path on the file system. */
  path: string;
  /** Free space below this percentage: warning (0 < p < 100). */
  minFreePercent: number;
  /** Free space below this percentage: critical (default half of `minFreePercent`). */
  criticalFreePercent?: number;
}

/** A directory whose `LOCKED` lock is watched, besides those found in the tree. */
export interface LockLocation {
  /** How to reach it. */
  transport: Transport;
  /** The directory that would hold `LOCKED`. */
  path: string;
}

/** The lock check: `LOCKED` directories that are stale or held too long. */
export interface LocksConstraint {
  /** A lock whose heartbeat is older than this is stale (default 60 000 ms, as LockDir). */
  staleMs?: number;
  /** A live lock held longer than this (since its owner's `since`) warns / is critical (default: no limit). */
  maxHeld?: DurationThreshold;
  /** More directories to inspect (the tree's own locks are always found). */
  dirs?: readonly LockLocation[];
}

/** The job check: runs recorded in the Catalog that started and never finished. */
export interface JobsConstraint {
  /** A run still `running` after this long is a run that died. */
  maxRun: DurationThreshold;
  /** Only this job name (default all). */
  name?: string;
  /** Whether a job whose latest finished run failed or was aborted is a warning (default true). */
  failedIsWarning?: boolean;
}

/**
 * What a {@link Monitor} checks. Each key turns one check on; at least one
 * is needed. Unknown keys are EBAD_CONFIG.
 */
export interface MonitorConstraints {
  /** Newest backup age: `'26h'`, or `{ warning: '26h', critical: '48h' }`. */
  maxAge?: DurationThreshold;
  /** Newest backup size within a band of the recent ones (`true`: the defaults). */
  size?: boolean | SizeConstraint;
  /** The newest backups' DNA (`true`: the newest one). */
  verify?: boolean | VerifyConstraint;
  /** Free space on each node. */
  freeSpace?: readonly FreeSpaceNode[];
  /** Stale or long-held `LOCKED` directories (`true`: the defaults). With a Catalog source it needs `dirs`, or the source's `root`, whose `LOCKED` is then watched; otherwise EBAD_CONFIG. */
  locks?: boolean | LocksConstraint;
  /** Jobs that started and never finished (needs a Catalog). */
  jobs?: JobsConstraint;
}

/** A resolved two-level duration limit, in ms. */
export interface ResolvedThreshold {
  /** Warning above this. */
  readonly warningMs: number | null;
  /** Critical above this. */
  readonly criticalMs: number | null;
}

/** Validated constraints, each check either off (undefined) or fully resolved. */
export interface ResolvedConstraints {
  /** The age check ({@link MonitorConstraints.maxAge}), both levels in ms. */
  readonly maxAge: ResolvedThreshold | undefined;
  /** The size check ({@link SizeConstraint}) with its defaults filled in; `maxPercent` null when there is no upper bound. */
  readonly size: { readonly window: number; readonly minPercent: number; readonly criticalPercent: number; readonly maxPercent: number | null } | undefined;
  /** The DNA check ({@link VerifyConstraint}): how many of the newest complete backups are re-digested. */
  readonly verify: { readonly newest: number } | undefined;
  /** The free-space check, one resolved {@link FreeSpaceNode} per node with its label and both levels. */
  readonly freeSpace: readonly { readonly name: string; readonly transport: Transport; readonly path: string; readonly minFreePercent: number; readonly criticalFreePercent: number }[] | undefined;
  /** The lock check ({@link LocksConstraint}): stale age in ms, the held-too-long limit if any, and the extra directories. */
  readonly locks: { readonly staleMs: number; readonly maxHeld: ResolvedThreshold | undefined; readonly dirs: readonly LockLocation[] } | undefined;
  /** The job check ({@link JobsConstraint}): run limit, job name filter (undefined: all jobs), and whether a failed last run warns. */
  readonly jobs: { readonly maxRun: ResolvedThreshold; readonly name: string | undefined; readonly failedIsWarning: boolean } | undefined;
}

const UNITS: Record<string, number> = { w: 604_800_000, d: 86_400_000, h: 3_600_000, min: 60_000, s: 1000 };

function bad(where: string, option: string, message: string, value?: unknown): StowageError {
  return new StowageError('EBAD_CONFIG', `${where}: ${message}`, { details: { where, option, value } });
}

/**
 * Parses a {@link DurationInput} into milliseconds.
 *
 * @param where - the class or function, for the message
 * @param option - the option's name
 * @param value - the value
 */
export function parseDurationMs(where: string, option: string, value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value <= 0) throw bad(where, option, `option "${option}" must be a positive number of milliseconds, got ${value}.`, value);
    return value;
  }
  if (typeof value !== 'string' || value === '') throw bad(where, option, `option "${option}" must be a duration such as '26h' or milliseconds, got ${String(value)}.`, value);
  const m = /^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)min)?(?:(\d+)s)?$/.exec(value);
  if (m === null || m.slice(1).every((g) => g === undefined)) {
    const hint = /\dm(?!in)/.test(value) ? ' "m" is ambiguous: write "min" for minutes (Retention reads "m" as months).' : ' Use whole units in the order w, d, h, min, s, e.g. "26h" or "1d12h".';
    throw bad(where, option, `option "${option}" is not a duration: ${JSON.stringify(value)}.${hint}`, value);
  }
  const [, w, d, h, min, s] = m;
  const ms = Number(w ?? 0) * UNITS['w']! + Number(d ?? 0) * UNITS['d']! + Number(h ?? 0) * UNITS['h']! + Number(min ?? 0) * UNITS['min']! + Number(s ?? 0) * UNITS['s']!;
  if (ms <= 0) throw bad(where, option, `option "${option}" must be longer than zero, got ${JSON.stringify(value)}.`, value);
  return ms;
}

/**
 * Resolves a {@link DurationThreshold}.
 *
 * @param where - the class or function, for the message
 * @param option - the option's name
 * @param value - the value
 */
export function parseThreshold(where: string, option: string, value: unknown): ResolvedThreshold {
  if (typeof value === 'string' || typeof value === 'number') {
    const warningMs = parseDurationMs(where, option, value);
    return Object.freeze({ warningMs, criticalMs: warningMs * 2 });
  }
  if (value === null || typeof value !== 'object') throw bad(where, option, `option "${option}" must be a duration or { warning, critical }, got ${String(value)}.`, value);
  checkOptionKeys(`${where} ${option}`, value, ['warning', 'critical']);
  const v = value as { warning?: unknown; critical?: unknown };
  const warningMs = v.warning === undefined ? null : parseDurationMs(where, `${option}.warning`, v.warning);
  const criticalMs = v.critical === undefined ? null : parseDurationMs(where, `${option}.critical`, v.critical);
  if (warningMs === null && criticalMs === null) throw bad(where, option, `option "${option}" needs "warning", "critical" or both.`, value);
  if (warningMs !== null && criticalMs !== null && criticalMs < warningMs) {
    throw bad(where, option, `option "${option}": "critical" (${criticalMs} ms) must not be shorter than "warning" (${warningMs} ms).`, value);
  }
  return Object.freeze({ warningMs, criticalMs });
}

function checkPercent(where: string, option: string, value: unknown, allowZero: boolean, max = 100): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0) || value > max) {
    throw bad(where, option, `option "${option}" must be a percentage ${allowZero ? 'from 0' : 'above 0'} to ${max}, got ${String(value)}.`, value);
  }
  return value;
}

function checkTransport(where: string, option: string, t: unknown): Transport {
  const x = t as Partial<Transport> | null;
  if (x === null || typeof x !== 'object' || typeof x.name !== 'string' || typeof x.list !== 'function') {
    throw bad(where, option, `option "${option}" must be a Transport (LocalTransport, SshTransport, ...).`, typeof t);
  }
  return t as Transport;
}

function checkPath(where: string, option: string, p: unknown): string {
  if (typeof p !== 'string' || p === '') throw bad(where, option, `option "${option}" must be a non-empty path.`, p);
  return p;
}

/** The constraint keys, in the order the checks run and are reported. */
export const CONSTRAINT_KEYS = ['maxAge', 'size', 'verify', 'freeSpace', 'locks', 'jobs'] as const;

/**
 * Validates constraints into a frozen config. Unknown keys, bad values and
 * an empty set of constraints are EBAD_CONFIG.
 *
 * @param where - the class, for messages
 * @param c - the caller's constraints
 */
export function resolveConstraints(where: string, c: MonitorConstraints): ResolvedConstraints {
  if (c === null || typeof c !== 'object') throw bad(where, 'constraints', 'the constraints must be an object such as { maxAge: "26h" }.', c);
  checkOptionKeys(`${where} constraints`, c, CONSTRAINT_KEYS);
  const on = (v: unknown): boolean => v !== undefined && v !== false;

  let size: ResolvedConstraints['size'];
  if (on(c.size)) {
    const s = (c.size === true ? {} : c.size) as SizeConstraint;
    if (typeof s !== 'object' || s === null) throw bad(where, 'size', 'option "size" must be true or an object.', c.size);
    checkOptionKeys(`${where} size`, s, ['window', 'minPercent', 'criticalPercent', 'maxPercent']);
    const minPercent = checkPercent(where, 'size.minPercent', s.minPercent ?? 50, true);
    const criticalPercent = checkPercent(where, 'size.criticalPercent', s.criticalPercent ?? Math.min(10, minPercent), true);
    if (criticalPercent > minPercent) throw bad(where, 'size.criticalPercent', `option "size.criticalPercent" (${criticalPercent}) must not exceed "size.minPercent" (${minPercent}).`, criticalPercent);
    const maxPercent = s.maxPercent === undefined ? null : checkPercent(where, 'size.maxPercent', s.maxPercent, false, Number.MAX_SAFE_INTEGER);
    if (maxPercent !== null && maxPercent <= 100) throw bad(where, 'size.maxPercent', `option "size.maxPercent" must be above 100, got ${maxPercent}.`, maxPercent);
    size = Object.freeze({ window: checkInt(where, 'size.window', s.window ?? 7, 1, 1000), minPercent, criticalPercent, maxPercent });
  }

  let verify: ResolvedConstraints['verify'];
  if (on(c.verify)) {
    const v = (c.verify === true ? {} : c.verify) as VerifyConstraint;
    if (typeof v !== 'object' || v === null) throw bad(where, 'verify', 'option "verify" must be true or an object.', c.verify);
    checkOptionKeys(`${where} verify`, v, ['newest']);
    verify = Object.freeze({ newest: checkInt(where, 'verify.newest', v.newest ?? 1, 1, 1000) });
  }

  let freeSpace: ResolvedConstraints['freeSpace'];
  if (c.freeSpace !== undefined) {
    if (!Array.isArray(c.freeSpace) || c.freeSpace.length === 0) throw bad(where, 'freeSpace', 'option "freeSpace" must be a non-empty array of { transport, path, minFreePercent }.', c.freeSpace);
    const names = new Set<string>();
    freeSpace = Object.freeze(
      c.freeSpace.map((n: FreeSpaceNode, i) => {
        const o = `freeSpace[${i}]`;
        checkOptionKeys(`${where} ${o}`, n, ['name', 'transport', 'path', 'minFreePercent', 'criticalFreePercent']);
        const transport = checkTransport(where, `${o}.transport`, n?.transport);
        const path = checkPath(where, `${o}.path`, n.path);
        const minFreePercent = checkPercent(where, `${o}.minFreePercent`, n.minFreePercent, false, 99.999);
        const criticalFreePercent = checkPercent(where, `${o}.criticalFreePercent`, n.criticalFreePercent ?? minFreePercent / 2, true, 99.999);
        if (criticalFreePercent > minFreePercent) throw bad(where, `${o}.criticalFreePercent`, `option "${o}.criticalFreePercent" must not exceed its "minFreePercent".`, criticalFreePercent);
        const name = n.name === undefined ? `${transport.name}:${path}` : checkPath(where, `${o}.name`, n.name);
        if (names.has(name)) throw bad(where, `${o}.name`, `two freeSpace nodes are named "${name}"; give each a distinct "name".`, name);
        names.add(name);
        return Object.freeze({ name, transport, path, minFreePercent, criticalFreePercent });
      }),
    );
  }

  let locks: ResolvedConstraints['locks'];
  if (on(c.locks)) {
    const l = (c.locks === true ? {} : c.locks) as LocksConstraint;
    if (typeof l !== 'object' || l === null) throw bad(where, 'locks', 'option "locks" must be true or an object.', c.locks);
    checkOptionKeys(`${where} locks`, l, ['staleMs', 'maxHeld', 'dirs']);
    const dirs = l.dirs ?? [];
    if (!Array.isArray(dirs)) throw bad(where, 'locks.dirs', 'option "locks.dirs" must be an array of { transport, path }.', dirs);
    locks = Object.freeze({
      staleMs: checkInt(where, 'locks.staleMs', l.staleMs ?? 60_000, 1),
      maxHeld: l.maxHeld === undefined ? undefined : parseThreshold(where, 'locks.maxHeld', l.maxHeld),
      dirs: Object.freeze(
        dirs.map((d: LockLocation, i) => {
          checkOptionKeys(`${where} locks.dirs[${i}]`, d, ['transport', 'path']);
          return Object.freeze({ transport: checkTransport(where, `locks.dirs[${i}].transport`, d?.transport), path: checkPath(where, `locks.dirs[${i}].path`, d.path) });
        }),
      ),
    });
  }

  let jobs: ResolvedConstraints['jobs'];
  if (c.jobs !== undefined) {
    const j = c.jobs;
    if (typeof j !== 'object' || j === null) throw bad(where, 'jobs', 'option "jobs" must be an object such as { maxRun: "6h" }.', j);
    checkOptionKeys(`${where} jobs`, j, ['maxRun', 'name', 'failedIsWarning']);
    if (j.maxRun === undefined) throw bad(where, 'jobs.maxRun', 'option "jobs.maxRun" is required: how long a run may take before it counts as dead.');
    if (j.failedIsWarning !== undefined && typeof j.failedIsWarning !== 'boolean') throw bad(where, 'jobs.failedIsWarning', 'option "jobs.failedIsWarning" must be a boolean.', j.failedIsWarning);
    jobs = Object.freeze({
      maxRun: parseThreshold(where, 'jobs.maxRun', j.maxRun),
      name: j.name === undefined ? undefined : checkPath(where, 'jobs.name', j.name),
      failedIsWarning: j.failedIsWarning ?? true,
    });
  }

  const resolved: ResolvedConstraints = Object.freeze({
    maxAge: c.maxAge === undefined ? undefined : parseThreshold(where, 'maxAge', c.maxAge),
    size,
    verify,
    freeSpace,
    locks,
    jobs,
  });
  if (CONSTRAINT_KEYS.every((k) => resolved[k] === undefined)) {
    throw bad(where, 'constraints', `the constraints check nothing; set at least one of ${CONSTRAINT_KEYS.join(', ')} (e.g. { maxAge: '26h' }).`, c);
  }
  return resolved;
}
