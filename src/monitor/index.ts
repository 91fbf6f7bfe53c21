/**
 * `stowage/monitor`: are backups still arriving, of sane size, verified,
 * with room left and no stale lock or dead job? A typed report (stable
 * JSON for plots), history in the Catalog, notifications on state change
 * (a command such as `mail`, or an HTTP POST), and exit statuses for cron
 * and Nagios.
 *
 * @module
 */
export { Monitor } from './monitor.js';
export type { MonitorSource, MonitorTreeSource, MonitorCatalogSource, MonitorOptions, MonitorCheckOptions, MonitorHistoryQuery } from './monitor.js';
export { MonitorReport } from './monitor-report.js';
export type { MonitorReportInit, MonitorReportJSON, MonitorCheckResult, MonitorCheckError, MonitorMetric, MetricUnit, MonitorNotification } from './monitor-report.js';
export { MONITOR_CHECKS, worstStatus, compareStatus } from './status.js';
export type { MonitorStatus, MonitorCheckName } from './status.js';
export { parseDurationMs } from './constraints.js';
export type {
  MonitorConstraints,
  ResolvedConstraints,
  ResolvedThreshold,
  DurationInput,
  DurationThreshold,
  SizeConstraint,
  VerifyConstraint,
  FreeSpaceNode,
  LockLocation,
  LocksConstraint,
  JobsConstraint,
} from './constraints.js';
export { CommandNotifier, HttpNotifier, monitorEventJSON } from './notifiers.js';
export type { Notifier, NotifyOptions, MonitorEvent, MonitorEventJSON, MonitorChange, CommandNotifierOptions, HttpNotifierOptions } from './notifiers.js';
export { exitCode, nagiosSummary, perfData } from './exit-status.js';
