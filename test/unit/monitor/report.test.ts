/**
 * MonitorReport: the stable JSON (key order, ISO times, numbers), reading
 * it back, the exit statuses and the one-line Nagios summary.
 */
import { describe, expect, it } from 'vitest';
import { Monitor, MonitorReport, exitCode, nagiosSummary, perfData, worstStatus, type MonitorCheckResult } from '../../../src/monitor/index.js';
import { formatBytes, formatDuration } from '../../../src/monitor/checks.js';
import { throwsWith } from '../db/helpers.js';

const age = (status: MonitorCheckResult['status'], seconds: number): MonitorCheckResult => ({
  check: 'age',
  status,
  message: `newest backup ${formatDuration(seconds * 1000)} old`,
  metrics: [{ name: 'age', value: seconds, unit: 's', warning: 93600, critical: 172800, below: false }],
  details: { newest: '2026/11/19/031500', newestTime: '2026-11-19T03:15:00.000Z', sets: 1, skipped: [] },
  error: null,
});
const free: MonitorCheckResult = {
  check: 'freeSpace',
  status: 'warning',
  message: 'only 7.5% free on backup node',
  metrics: [{ name: 'free:backup node', value: 7.5, unit: '%', warning: 10, critical: 5, below: true }],
  details: { nodes: [] },
  error: null,
};

function report(checks: MonitorCheckResult[]): MonitorReport {
  return new MonitorReport({ monitor: 'svn-nightly', source: 'local:/backups/svn', checkedAt: new Date('2026-11-22T03:15:00Z'), durationMs: 12, checks });
}

describe('MonitorReport', () => {
  it('takes the worst check as its status and orders the checks', () => {
    const r = report([free, age('ok', 3600)]);
    expect(r.status).toBe('warning');
    expect(r.checks.map((c) => c.check)).toEqual(['age', 'freeSpace']);
    expect(report([]).status).toBe('ok');
    expect(worstStatus('ok', 'critical', 'warning')).toBe('critical');
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.checks[0]!.metrics[0])).toBe(true);
  });

  it('serialises to the documented key order, with ISO times and numbers', () => {
    const json = JSON.parse(JSON.stringify(report([age('critical', 259200)]).withNotifications([{ notifier: 'mail', sent: false, error: { code: 'EIO', message: 'mail exited 1' } }])));
    expect(Object.keys(json)).toEqual(['monitor', 'source', 'status', 'checkedAt', 'durationMs', 'checks', 'notifications']);
    expect(json.checkedAt).toBe('2026-11-22T03:15:00.000Z');
    expect(json.status).toBe('critical');
    expect(Object.keys(json.checks[0])).toEqual(['check', 'status', 'message', 'metrics', 'details', 'error']);
    expect(Object.keys(json.checks[0].metrics[0])).toEqual(['name', 'value', 'unit', 'warning', 'critical', 'below']);
    expect(json.checks[0].metrics[0]).toEqual({ name: 'age', value: 259200, unit: 's', warning: 93600, critical: 172800, below: false });
    expect(json.checks[0].error).toBeNull();
    expect(json.notifications).toEqual([{ notifier: 'mail', sent: false, error: { code: 'EIO', message: 'mail exited 1' } }]);
  });

  it('reads its JSON back to an equal report', () => {
    const r = report([age('warning', 100_000), free]).withNotifications([{ notifier: 'hook', sent: true, error: null }]);
    const back = MonitorReport.fromJSON(JSON.stringify(r));
    expect(back.toJSON()).toEqual(r.toJSON());
    expect(back.checkedAt.getTime()).toBe(r.checkedAt.getTime());
    expect(MonitorReport.fromJSON(r.toJSON()).status).toBe('warning');
  });

  it('refuses what is not a report', () => {
    throwsWith(() => MonitorReport.fromJSON('{'), 'EBAD_CONFIG');
    throwsWith(() => MonitorReport.fromJSON({ monitor: 'x', source: 'y', checkedAt: 'never', checks: [] }), 'EBAD_CONFIG');
    throwsWith(() => MonitorReport.fromJSON({ monitor: 'x', source: 'y', checkedAt: '2026-01-01T00:00:00Z', checks: [{ check: 'weather', status: 'ok' }] }), 'EBAD_CONFIG');
  });

  it('writes a text report with a line per check and failed notifiers', () => {
    const text = report([age('critical', 259200)]).withNotifications([{ notifier: 'mail', sent: false, error: { code: 'EIO', message: 'exit 1' } }]).toText();
    expect(text).toBe('svn-nightly: CRITICAL at 2026-11-22T03:15:00.000Z (local:/backups/svn)\n  [CRITICAL] age: newest backup 3d old\n  notifier mail failed: exit 1\n');
  });
});

describe('exit status and Nagios summary', () => {
  it('maps ok, warning, critical to 0, 1, 2', () => {
    expect([exitCode('ok'), exitCode('warning'), exitCode('critical')]).toEqual([0, 1, 2]);
    expect(Monitor.exitCode(report([age('critical', 259200)]))).toBe(2);
    expect(report([age('warning', 100_000)]).exitCode).toBe(1);
    expect(report([age('ok', 60)]).exitCode).toBe(0);
  });

  it('prints the one-line summary with performance data', () => {
    expect(Monitor.nagios(report([age('critical', 259200)]))).toBe('STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800');
    expect(report([age('critical', 259200)]).summary()).toBe('STOWAGE CRITICAL - newest backup 3d old | age=259200s;93600;172800');
  });

  it('lists failing checks worst first, quotes odd labels and writes lower bounds as ranges', () => {
    const line = nagiosSummary(report([free, age('critical', 259200)]));
    expect(line).toBe("STOWAGE CRITICAL - newest backup 3d old; only 7.5% free on backup node | age=259200s;93600;172800 'free:backup node'=7.5%;10:;5:");
  });

  it('lists every check when all are ok, drops empty trailing limits, and writes counts without a unit (c is a counter, plotted as a rate)', () => {
    const ok: MonitorCheckResult = {
      ...free,
      status: 'ok',
      message: 'free space ok on 1 node',
      metrics: [
        { name: 'dna_files', value: 2, unit: 'c', warning: null, critical: null, below: false },
        { name: 'stale_locks', value: 0, unit: 'c', warning: 0, critical: null, below: false },
      ],
    };
    expect(nagiosSummary(report([age('ok', 7200), ok]))).toBe('STOWAGE OK - newest backup 2h old; free space ok on 1 node | age=7200s;93600;172800 dna_files=2 stale_locks=0;0');
    // The JSON keeps the unit: a count.
    expect(ok.metrics[0]!.unit).toBe('c');
    expect(perfData(report([]))).toBe('');
    expect(nagiosSummary(report([]))).toBe('STOWAGE OK - ');
  });

  it('keeps a message with | or newlines on one line', () => {
    const odd = { ...age('warning', 100_000), message: 'a | b\nc' };
    expect(nagiosSummary(report([odd]))).toMatch(/^STOWAGE WARNING - a {3}b c \| age=/);
  });
});

describe('formatting', () => {
  it.each([
    [0, '0s'],
    [42_000, '42s'],
    [3_600_000, '1h'],
    [5_400_000, '1h30min'],
    [93_600_000, '1d2h'],
    [259_200_000, '3d'],
    [90_061_000, '1d1h'],
    [-7_200_000, '-2h'],
  ])('formatDuration(%d) = %s', (ms, text) => expect(formatDuration(ms)).toBe(text));

  it.each([
    [812, '812 B'],
    [4_100_000, '4.10 MB'],
    [34_200_000, '34.2 MB'],
    [1_230_000_000, '1.23 GB'],
    [512_000_000_000, '512 GB'],
  ])('formatBytes(%d) = %s', (n, text) => expect(formatBytes(n)).toBe(text));
});
