/**
 * Monitor statuses and check names, and how statuses compare.
 *
 * @module
 */
import type { MonitorRunStatus } from '../catalog/catalog.js';

/** How healthy something is, best first: `ok`, `warning`, `critical`. */
export type MonitorStatus = MonitorRunStatus;

/** The checks a Monitor runs, in report order. */
export type MonitorCheckName = 'age' | 'size' | 'dna' | 'freeSpace' | 'locks' | 'jobs';

/** Check names in report order. */
export const MONITOR_CHECKS: readonly MonitorCheckName[] = Object.freeze(['age', 'size', 'dna', 'freeSpace', 'locks', 'jobs']);

const RANK: Record<MonitorStatus, number> = { ok: 0, warning: 1, critical: 2 };

/**
 * The worse of statuses (`critical` over `warning` over `ok`).
 *
 * @param statuses - any number of statuses; none is `ok`
 */
export function worstStatus(...statuses: MonitorStatus[]): MonitorStatus {
  let w: MonitorStatus = 'ok';
  for (const s of statuses) if (RANK[s] > RANK[w]) w = s;
  return w;
}

/**
 * Orders statuses worst first.
 *
 * @param a - one status
 * @param b - another
 */
export function compareStatus(a: MonitorStatus, b: MonitorStatus): number {
  return RANK[b] - RANK[a];
}
