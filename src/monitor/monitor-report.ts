/**
 * The result of one `Monitor.check()`: an overall status, one entry per
 * check with its message and measured values, and what the notifiers did.
 *
 * `toJSON()` is a stable format for plots and dashboards: keys always
 * present, always in the documented order, times as ISO 8601 strings in
 * UTC, sizes in bytes, durations in seconds, percentages as numbers, and
 * `null` where a value does not apply. The same JSON is what the history
 * in the Catalog keeps, and {@link MonitorReport.fromJSON} reads it back.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { exitCode, nagiosSummary } from './exit-status.js';
import { MONITOR_CHECKS, worstStatus, type MonitorCheckName, type MonitorStatus } from './status.js';

/** Units of a metric: seconds, bytes, percent, a count (`c`; written without a unit in Nagios performance data, see `perfData`), or none. */
export type MetricUnit = 's' | 'B' | '%' | 'c' | '';

/**
 * One measured value with its limits, for plots and Nagios performance
 * data. JSON field order: `name, value, unit, warning, critical, below`.
 */
export interface MonitorMetric {
  /** Label, unique within a report (`age`, `size`, `free:local:/backups`). */
  readonly name: string;
  /** The value (seconds, bytes, percent or a count, per `unit`). */
  readonly value: number;
  /** Its unit. */
  readonly unit: MetricUnit;
  /** The warning limit in the same unit, or null. */
  readonly warning: number | null;
  /** The critical limit in the same unit, or null. */
  readonly critical: number | null;
  /** Whether the limits are lower bounds (alert below, as free space) rather than upper bounds (alert above, as age). */
  readonly below: boolean;
}

/** A failure that decided a check's status (a missing tree, an unreachable host). */
export interface MonitorCheckError {
  /** The StowageError code (or the error's own code or name). */
  readonly code: string;
  /** Its message. */
  readonly message: string;
}

/**
 * The outcome of one check. JSON field order: `check, status, message,
 * metrics, details, error`.
 *
 * `details` per check (keys in this order; times ISO 8601):
 * - `age`: `newest` (set id or null), `newestTime`, `sets` (complete
 *   backups looked at: 1 when one was found, else 0; the check stops at the
 *   newest), `skipped` (newer sets that are locked or incomplete),
 *   `future` (`{ id, time }` of backups dated after the run, newest first:
 *   never taken as the newest; any makes the check at least `warning`).
 * - `size`: `newest`, `bytes`, `medianBytes`, `percentOfMedian`, `history`
 *   (how many backups form the median).
 * - `dna`: `sets` (ids checked), `files` (files digested), `problems`.
 * - `freeSpace`: `nodes`: `{ name, availablePercent, availableBytes, totalBytes, status, error }`.
 * - `locks`: `locks`: `{ path, stale, reason, owner, heldSeconds, heartbeatSeconds, status, error }`
 *   (`path` is `<transport name>:<dir>/LOCKED`; `error` is set, and the
 *   other facts null, when the lock could not be inspected).
 * - `jobs`: `unfinished`: `{ id, name, started, host, pid, runningSeconds, status }`,
 *   `failed`: `{ id, name, finished, status, error }`.
 */
export interface MonitorCheckResult {
  /** Which check. */
  readonly check: MonitorCheckName;
  /** Its status. */
  readonly status: MonitorStatus;
  /** One line for a human: `newest backup 3d old`. */
  readonly message: string;
  /** Measured values. */
  readonly metrics: readonly MonitorMetric[];
  /** Check-specific facts (see above), JSON. */
  readonly details: Readonly<Record<string, unknown>>;
  /** The failure that made the check critical, or null. */
  readonly error: MonitorCheckError | null;
}

/** What one notifier did in a run. JSON field order: `notifier, sent, error`. */
export interface MonitorNotification {
  /** The notifier's name. */
  readonly notifier: string;
  /** Whether it was told (false when it failed; it is told again next run). */
  readonly sent: boolean;
  /** Why it failed, or null. */
  readonly error: MonitorCheckError | null;
}

/** The stable JSON form of a {@link MonitorReport}; keys in this order. */
export interface MonitorReportJSON {
  /** The monitor's name. */
  readonly monitor: string;
  /** What was checked: `local:/backups/svn`, `catalog:/backup/stowage.catalog`. */
  readonly source: string;
  /** Overall status: the worst of the checks. */
  readonly status: MonitorStatus;
  /** When the check ran (the `now` it was given), ISO 8601 UTC. */
  readonly checkedAt: string;
  /** How long the check took, ms. */
  readonly durationMs: number;
  /** One entry per check, in the order of {@link MONITOR_CHECKS}. */
  readonly checks: readonly MonitorCheckResult[];
  /** One entry per notifier told (or that failed) in this run. */
  readonly notifications: readonly MonitorNotification[];
}

/** Fields of a {@link MonitorReport}. */
export interface MonitorReportInit {
  /** The monitor's name. */
  readonly monitor: string;
  /** What was checked. */
  readonly source: string;
  /** When. */
  readonly checkedAt: Date;
  /** How long it took, ms. */
  readonly durationMs: number;
  /** The checks. */
  readonly checks: readonly MonitorCheckResult[];
  /** What the notifiers did. */
  readonly notifications?: readonly MonitorNotification[];
}

function freezeCheck(c: MonitorCheckResult): MonitorCheckResult {
  return Object.freeze({
    check: c.check,
    status: c.status,
    message: c.message,
    metrics: Object.freeze(
      c.metrics.map((m) => Object.freeze({ name: m.name, value: m.value, unit: m.unit, warning: m.warning, critical: m.critical, below: m.below })),
    ),
    details: Object.freeze({ ...c.details }),
    error: c.error === null ? null : Object.freeze({ code: c.error.code, message: c.error.message }),
  });
}

function badJson(what: string): StowageError {
  return new StowageError('EBAD_CONFIG', `MonitorReport.fromJSON: not a monitor report (${what}).`, { details: { what } });
}

const STATUSES: readonly string[] = ['ok', 'warning', 'critical'];

/**
 * A monitor report: overall status (the worst check), the checks, and what
 * the notifiers did.
 *
 * @example
 * ```ts
 * const report = await monitor.check();
 * if (report.status !== 'ok') console.error(report.summary());
 * await writeFile('monitor.json', JSON.stringify(report));
 * process.exitCode = report.exitCode;
 * ```
 */
export class MonitorReport {
  /** The monitor's name. */
  readonly monitor: string;
  /** What was checked. */
  readonly source: string;
  /** Overall status: the worst of the checks. */
  readonly status: MonitorStatus;
  /** When the check ran. */
  readonly checkedAt: Date;
  /** How long it took, ms. */
  readonly durationMs: number;
  /** One entry per check, in report order. */
  readonly checks: readonly MonitorCheckResult[];
  /** What each notifier did. */
  readonly notifications: readonly MonitorNotification[];

  /**
   * @param init - the fields; the status is derived from the checks
   */
  constructor(init: MonitorReportInit) {
    this.monitor = init.monitor;
    this.source = init.source;
    this.checkedAt = new Date(init.checkedAt.getTime());
    this.durationMs = init.durationMs;
    const order = (c: MonitorCheckResult): number => MONITOR_CHECKS.indexOf(c.check);
    this.checks = Object.freeze([...init.checks].sort((a, b) => order(a) - order(b)).map(freezeCheck));
    this.status = worstStatus(...this.checks.map((c) => c.status));
    this.notifications = Object.freeze(
      (init.notifications ?? []).map((n) => Object.freeze({ notifier: n.notifier, sent: n.sent, error: n.error === null ? null : Object.freeze({ ...n.error }) })),
    );
    Object.freeze(this);
  }

  /** The result of one check, if it ran. */
  check(name: MonitorCheckName): MonitorCheckResult | undefined {
    return this.checks.find((c) => c.check === name);
  }

  /** Exit status for cron and Nagios: 0 ok, 1 warning, 2 critical. */
  get exitCode(): 0 | 1 | 2 {
    return exitCode(this.status);
  }

  /**
   * A copy with the notifiers' outcomes.
   *
   * @param notifications - what each notifier did
   */
  withNotifications(notifications: readonly MonitorNotification[]): MonitorReport {
    return new MonitorReport({ ...this, notifications });
  }

  /** The stable JSON form (see {@link MonitorReportJSON}). */
  toJSON(): MonitorReportJSON {
    return {
      monitor: this.monitor,
      source: this.source,
      status: this.status,
      checkedAt: this.checkedAt.toISOString(),
      durationMs: this.durationMs,
      checks: this.checks.map((c) => ({
        check: c.check,
        status: c.status,
        message: c.message,
        metrics: c.metrics.map((m) => ({ name: m.name, value: m.value, unit: m.unit, warning: m.warning, critical: m.critical, below: m.below })),
        details: { ...c.details },
        error: c.error === null ? null : { code: c.error.code, message: c.error.message },
      })),
      notifications: this.notifications.map((n) => ({ notifier: n.notifier, sent: n.sent, error: n.error === null ? null : { code: n.error.code, message: n.error.message } })),
    };
  }

  /**
   * A human-readable report: the summary line, then one line per check.
   */
  toText(): string {
    const lines = [`${this.monitor}: ${this.status.toUpperCase()} at ${this.checkedAt.toISOString()} (${this.source})`];
    for (const c of this.checks) lines.push(`  [${c.status.toUpperCase()}] ${c.check}: ${c.message}`);
    for (const n of this.notifications) if (!n.sent) lines.push(`  notifier ${n.notifier} failed: ${n.error?.message ?? 'unknown error'}`);
    return lines.join('\n') + '\n';
  }

  /**
   * Reads a report back from its JSON form (a history row, a file).
   * EBAD_CONFIG if it is not one.
   *
   * @param json - the parsed JSON, or its text
   */
  static fromJSON(json: unknown): MonitorReport {
    let v = json;
    if (typeof v === 'string') {
      try {
        v = JSON.parse(v);
      } catch {
        throw badJson('invalid JSON text');
      }
    }
    if (v === null || typeof v !== 'object') throw badJson('not an object');
    const o = v as Record<string, unknown>;
    if (typeof o['monitor'] !== 'string' || typeof o['source'] !== 'string') throw badJson('monitor and source must be strings');
    const t = typeof o['checkedAt'] === 'string' ? Date.parse(o['checkedAt']) : NaN;
    if (!Number.isFinite(t)) throw badJson('checkedAt must be an ISO time');
    if (!Array.isArray(o['checks'])) throw badJson('checks must be an array');
    const checks = (o['checks'] as unknown[]).map((c, i): MonitorCheckResult => {
      const x = c as Record<string, unknown> | null;
      if (x === null || typeof x !== 'object' || !MONITOR_CHECKS.includes(x['check'] as MonitorCheckName) || !STATUSES.includes(x['status'] as string)) {
        throw badJson(`checks[${i}] has no valid check and status`);
      }
      return {
        check: x['check'] as MonitorCheckName,
        status: x['status'] as MonitorStatus,
        message: String(x['message'] ?? ''),
        metrics: Array.isArray(x['metrics']) ? (x['metrics'] as MonitorMetric[]) : [],
        details: (x['details'] ?? {}) as Record<string, unknown>,
        error: (x['error'] ?? null) as MonitorCheckError | null,
      };
    });
    return new MonitorReport({
      monitor: o['monitor'],
      source: o['source'],
      checkedAt: new Date(t),
      durationMs: typeof o['durationMs'] === 'number' ? o['durationMs'] : 0,
      checks,
      notifications: Array.isArray(o['notifications']) ? (o['notifications'] as MonitorNotification[]) : [],
    });
  }

  /** The one-line Nagios summary; see {@link nagiosSummary}. */
  summary(): string {
    return nagiosSummary(this);
  }
}
