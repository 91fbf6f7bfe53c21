/**
 * What the Monitor sees of its source: the backups, newest first, with
 * their time, size and a way to verify them, whether they come from a
 * dated backup tree on a transport or from the archives a Catalog records.
 *
 * A dated tree is read the way Retention reads it (`listBackupSets`): a
 * set under a foreign `LOCKED` is being written and is not a backup yet,
 * nor is a set holding a `.part` file or no data file. Sets are inspected
 * lazily, newest first, only as far as the checks need.
 *
 * A backup dated after the time of the run (a clock or naming error: a
 * set misnamed `2099/…`) is not "the newest" either, as Retention does
 * not count it: otherwise one such set would hide, for ever, that backups
 * stopped arriving. Such sets are listed apart, for a warning of their own.
 *
 * In a Catalog, a backup is the group of archives recorded in one
 * directory (a dated set `2026/11/22/031500/`, a table's partition
 * folder): its time is the newest `created`, its size the sum of the DNA
 * sizes, and verifying it re-digests each archive through a transport and
 * compares with the recorded DNA.
 *
 * @module
 */
import type { Catalog } from '../catalog/catalog.js';
import { dnaEqual } from '../dna/dna.js';
import { StowageError, type StowageWarning } from '../errors.js';
import { checkSidecars, checkTreeRoot, inspectSet, resolveTreeOptions, scanBackupTree } from '../retention/backup-sets.js';
import { posixDirname, posixJoin } from '../transport/put-source.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';

/** A complete backup, ready for the checks. */
export interface ViewBackup {
  /** Its id (set path, or the directory of its archives). */
  readonly id: string;
  /** When it was made. */
  readonly time: Date;
  /** Bytes of its data files (sidecars excluded). */
  readonly bytes: number;
  /** Re-digests it. */
  verify(signal: AbortSignal | undefined): Promise<{ readonly files: number; readonly problems: readonly string[] }>;
}

/** A newer set that is not (yet) a backup. */
export interface SkippedBackup {
  /** Its id. */
  readonly id: string;
  /** Why it does not count: locked, incomplete. */
  readonly reason: string;
}

/** A backup dated after the time of the run. */
export interface FutureBackup {
  /** Its id. */
  readonly id: string;
  /** The date it carries. */
  readonly time: Date;
}

/** The newest complete backups. */
export interface NewestBackups {
  /** Newest first; none dated after the time of the run. */
  readonly backups: readonly ViewBackup[];
  /** Backups dated after the time of the run, newest first: left out of `backups`. */
  readonly future: readonly FutureBackup[];
  /** Sets newer than the newest complete backup that were passed over. */
  readonly skipped: readonly SkippedBackup[];
  /** Whether fewer than asked exist. */
  readonly exhausted: boolean;
}

/** A source's backups. */
export interface BackupView {
  /** `LOCKED` directories found while listing (dated trees only). */
  readonly locks: readonly string[];
  /** The transport the tree (and its locks) lives on, if any. */
  readonly transport: Transport | undefined;
  /** The `n` newest complete backups not dated after the run (fewer if there are not so many). */
  newest(n: number, signal: AbortSignal | undefined): Promise<NewestBackups>;
}

/** A dated tree on a transport. */
export interface TreeSourceSpec {
  readonly transport: Transport;
  readonly dir: string;
  readonly timeZone: string | undefined;
  readonly linkName: string | undefined;
}

/** Archives recorded in a Catalog. */
export interface CatalogSourceSpec {
  readonly catalog: Catalog;
  readonly prefix: string;
  readonly transport: Transport;
  readonly root: string | undefined;
}

/**
 * Lists a dated tree once; inspects sets lazily.
 *
 * @param spec - the tree
 * @param signal - cancels the listing
 * @param now - the time of the run, ms: sets dated after it are set apart
 */
export async function treeView(spec: TreeSourceSpec, signal: AbortSignal | undefined, now: number): Promise<BackupView> {
  const { transport: t, dir } = spec;
  const locks: string[] = [];
  const onWarning = (w: StowageWarning): void => {
    if (w.code === 'ELOCKED') locks.push(w.path);
  };
  const o = resolveTreeOptions('Monitor', {
    ...(spec.timeZone !== undefined ? { timeZone: spec.timeZone } : {}),
    ...(spec.linkName !== undefined ? { linkName: spec.linkName } : {}),
    onWarning,
    ...(signal ? { signal } : {}),
  });
  throwIfAborted(signal);
  await checkTreeRoot(t, dir, 'Monitor', signal);
  const { sets } = await scanBackupTree(t, dir, o);
  const newestFirst = sets.filter((s) => s.time.getTime() <= now).reverse();
  const future: FutureBackup[] = sets
    .filter((s) => s.time.getTime() > now)
    .reverse()
    .map((s) => ({ id: s.id, time: s.time }));
  const found: ViewBackup[] = [];
  const skipped: SkippedBackup[] = [];
  let next = 0;
  return {
    locks,
    transport: t,
    async newest(n, sig) {
      const lockOptions = sig ? { ownLockToken: undefined, signal: sig } : { ownLockToken: undefined, signal: undefined };
      while (found.length < n && next < newestFirst.length) {
        throwIfAborted(sig);
        const set = newestFirst[next++]!;
        const passOver = (reason: string): void => {
          if (found.length === 0) skipped.push({ id: set.id, reason });
        };
        if (set.lockedBy !== undefined) {
          passOver(`locked by ${set.lockedBy}`);
          continue;
        }
        const contents = await inspectSet(t, set.path, lockOptions);
        if (contents.locks.length > 0) {
          locks.push(...contents.locks.filter((l) => !locks.includes(l)));
          passOver(`locked by ${contents.locks[0]}`);
          continue;
        }
        if (!contents.complete) {
          passOver(contents.partFiles.length > 0 ? `incomplete: ${contents.partFiles.length} .part file(s)` : 'incomplete: no data file');
          continue;
        }
        found.push({
          id: set.id,
          time: set.time,
          bytes: contents.files.reduce((s, f) => s + f.size, 0),
          verify: async (vs) => {
            const r = await checkSidecars(t, contents, vs);
            return { files: r.checked, problems: r.problems };
          },
        });
      }
      return { backups: found.slice(0, n), future: [...future], skipped: [...skipped], exhausted: found.length < n };
    },
  };
}

/** How many archive records a Catalog view reads at most. */
export const CATALOG_VIEW_LIMIT = 10_000;

/**
 * Groups a Catalog's archive records into backups by directory.
 *
 * @param spec - the catalog, prefix, and where the archives are
 * @param now - the time of the run, ms: backups dated after it are set apart
 */
export function catalogView(spec: CatalogSourceSpec, now: number): BackupView {
  const records = spec.catalog.archives({ prefix: spec.prefix, limit: CATALOG_VIEW_LIMIT });
  const groups = new Map<string, typeof records>();
  for (const r of records) {
    const d = posixDirname(r.path);
    const g = groups.get(d);
    if (g) g.push(r);
    else groups.set(d, [r]);
  }
  const resolve = (p: string): string => (spec.root === undefined || p.startsWith('/') ? p : posixJoin(spec.root, p));
  const backups: ViewBackup[] = [...groups.entries()]
    .map(([id, rs]) => ({
      id,
      time: new Date(Math.max(...rs.map((r) => r.created.getTime()))),
      bytes: rs.reduce((s, r) => s + r.dna.size, 0),
      verify: async (signal: AbortSignal | undefined) => {
        const problems: string[] = [];
        let files = 0;
        for (const r of rs) {
          throwIfAborted(signal);
          const path = resolve(r.path);
          try {
            const actual = await spec.transport.digest(path, r.dna.algorithm, signal ? { signal } : {});
            files++;
            if (!dnaEqual(r.dna, actual)) problems.push(`${path} does not match its recorded DNA: expected ${r.dna.dig} (${r.dna.size} bytes), got ${actual.dig} (${actual.size} bytes)`);
          } catch (err) {
            if (signal?.aborted) throw signal.reason;
            if (err instanceof StowageError && err.code === 'ENOT_FOUND') problems.push(`${path} is recorded but missing on ${spec.transport.name}`);
            else throw err;
          }
        }
        return { files, problems };
      },
    }))
    .sort((a, b) => b.time.getTime() - a.time.getTime() || (a.id < b.id ? 1 : -1));
  const past = backups.filter((b) => b.time.getTime() <= now);
  const future: FutureBackup[] = backups.filter((b) => b.time.getTime() > now).map((b) => ({ id: b.id, time: b.time }));
  return {
    locks: [],
    transport: undefined,
    async newest(n) {
      return { backups: past.slice(0, n), future: [...future], skipped: [], exhausted: past.length < n };
    },
  };
}
