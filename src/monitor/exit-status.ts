/**
 * Exit statuses and the one-line summary for cron and Nagios-style checks:
 * exit 0 ok, 1 warning, 2 critical, and
 * `STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800`
 * (the plugin output format: text, `|`, performance data).
 *
 * @module
 */
import type { MonitorReport } from './monitor-report.js';
import { compareStatus, type MonitorStatus } from './status.js';

/**
 * The process exit status of a status: 0 ok, 1 warning, 2 critical (the
 * Nagios plugin convention; cron mails on anything but 0 when the script
 * sets it).
 *
 * @param report - a report, or a bare status
 *
 * @example
 * ```ts
 * const report = await monitor.check();
 * console.log(nagiosSummary(report));
 * process.exitCode = exitCode(report);
 * ```
 */
export function exitCode(report: Pick<MonitorReport, 'status'> | MonitorStatus): 0 | 1 | 2 {
  const status = typeof report === 'string' ? report : report.status;
  return status === 'ok' ? 0 : status === 'warning' ? 1 : 2;
}

function formatPerfValue(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000);
}

function perfLabel(name: string): string {
  return /^[A-Za-z0-9_.:/-]+$/.test(name) ? name : `'${name.replace(/'/g, "''")}'`;
}

function perfThreshold(limit: number | null, below: boolean): string {
  if (limit === null) return '';
  return below ? `${formatPerfValue(limit)}:` : formatPerfValue(limit);
}

/**
 * Nagios performance data of a report: `label=value[unit];warn;crit` per
 * metric, space-separated, trailing empty fields dropped. Lower-bound
 * limits (free space, size) are written as `N:` ranges ("alert below N").
 * Counts (unit `c` in the report) are written without a unit: in
 * performance data `c` means a continuous counter, which graphing add-ons
 * (PNP4Nagios, the Graphite and InfluxDB bridges) plot as a rate, while
 * these counts (files checked, stale locks) go up and down.
 *
 * @param report - the report
 */
export function perfData(report: Pick<MonitorReport, 'checks'>): string {
  return report.checks
    .flatMap((c) => c.metrics)
    .map((m) => `${perfLabel(m.name)}=${formatPerfValue(m.value)}${m.unit === 'c' ? '' : m.unit};${perfThreshold(m.warning, m.below)};${perfThreshold(m.critical, m.below)}`.replace(/;+$/, ''))
    .join(' ');
}

/**
 * The one-line summary: `STOWAGE <STATUS> - <text> | <perfdata>`. The text
 * is the messages of the failing checks, worst first, or of every check
 * when all are ok.
 *
 * @param report - the report
 *
 * @example
 * ```ts
 * nagiosSummary(report); // 'STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800'
 * ```
 */
export function nagiosSummary(report: Pick<MonitorReport, 'status' | 'checks'>): string {
  const failing = report.checks.filter((c) => c.status !== 'ok').sort((a, b) => compareStatus(a.status, b.status));
  const shown = failing.length > 0 ? failing : report.checks;
  const text = shown.map((c) => c.message.replace(/[|\r\n]+/g, ' ')).join('; ');
  const perf = perfData(report);
  return `STOWAGE ${report.status.toUpperCase()} - ${text}${perf ? ` | ${perf}` : ''}`;
}
