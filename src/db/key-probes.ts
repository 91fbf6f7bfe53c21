/**
 * Cheap questions about a key column, for the Partitioner's plan: its
 * bounds without counting the rows, and the next key at or above many
 * bounds in one round trip.
 *
 * Why: `keyRange()` counts the rows (`COUNT(key)`), which reads the whole
 * key index: ~0.4 s for 1M rows in MariaDB (the table's clustered index),
 * ~40 s for 100M, and a dump waited for it before reading any range. The
 * count tells whether a unique key is dense, which spares the walk over
 * the occupied ranges its questions; asked 64 at a time
 * ({@link KeyProbes.nextKeys}), the walk over a dense table costs a query
 * per 64 ranges instead, a few milliseconds for 1M rows. The count is
 * still taken, for the plan's `keyRange.rows`, but a dump no longer waits
 * for it before its first range.
 *
 * A source offers these under the {@link KEY_PROBES} symbol (MysqlSource,
 * PostgresSource); any other source is planned from `keyRange()` as before.
 *
 * @internal
 * @module
 */
import type { DbOptions } from './table-source.js';

/** Where a source offers its {@link KeyProbes}. @internal */
export const KEY_PROBES: unique symbol = Symbol('stowage.keyProbes');

/** A key column's bounds without the row count. @internal */
export interface KeyBounds {
  /** Smallest key, or null when the table has none. */
  readonly lo: bigint | null;
  /** Largest key, or null when the table has none. */
  readonly hi: bigint | null;
  /** Whether some row's key is NULL. */
  readonly nulls: boolean;
}

/** The questions of this module; see its documentation. @internal */
export interface KeyProbes {
  /**
   * The smallest and largest key of `table`, and whether a key is NULL,
   * from the key's index (no count). ENO_TABLE and EBAD_CONFIG as
   * `keyRange()`.
   */
  bounds(table: string, key: string, options?: DbOptions): Promise<KeyBounds>;
  /**
   * For each bound of `froms`, the smallest non-NULL key at or above it
   * (null where there is none): the answers `nextKey()` would give, in one
   * round trip. At most {@link KEY_PROBES_MAX} bounds.
   */
  nextKeys(table: string, key: string, froms: readonly bigint[], options?: DbOptions): Promise<(bigint | null)[]>;
}

/** Most bounds one {@link KeyProbes.nextKeys} call takes. @internal */
export const KEY_PROBES_MAX = 64;

/**
 * The {@link KeyProbes} of `source`, if it offers them.
 *
 * @param source - a table source or reader
 * @internal
 */
export function keyProbesOf(source: unknown): KeyProbes | undefined {
  const p = (source as { [KEY_PROBES]?: unknown } | null)?.[KEY_PROBES];
  return typeof p === 'object' && p !== null && typeof (p as KeyProbes).bounds === 'function' && typeof (p as KeyProbes).nextKeys === 'function' ? (p as KeyProbes) : undefined;
}
