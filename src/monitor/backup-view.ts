/**
 * What the Monitor sees of its source: the backups, newest first, with
 * their time, size and a way to verify them, whether they come from a
 * dated backup tree on a transport or from the archives a Catalog records.
 *
 * A dated tree is read the way Retention reads it (`listBackupSets`), but
 * a lock is judged differently: Retention leaves every set under a foreign
 * `LOCKED` alone, while the Monitor passes over only the set that may be
 * being written, one with a `LOCKED` in its own folder, or the newest set
 * under a lock above it (the tree's root, held by a nightly run or a
 * sync) while it is incomplete. A set holding a `.part` file or no data
 * file is not a backup either; one holding only sidecars lost its data
 * and is reported. Sets are inspected lazily, newest first, only as far
 * as the checks need.
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
import type { ArchiveRecord } from '../catalog/catalog.js';
import { SIDECAR_SUFFIX } from '../dna/dna-digest.js';
import { dnaEqual, type Dna } from '../dna/dna.js';
import { StowageError, type StowageWarning } from '../errors.js';
import { LockDir } from '../lock/lock-dir.js';
import { checkSidecars, checkTreeRoot, digestCounted, inspectSet, readSidecarVia, resolveTreeOptions, scanBackupTree, type LockOptions, type SetContents } from '../retention/backup-sets.js';
import { transportLockFs } from '../transport/lock-fs.js';
import { posixDirname, posixJoin } from '../transport/put-source.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';

/** What re-digesting one backup found. */
export interface ViewVerification {
  /** Files digested. */
  readonly files: number;
  /** Definite failures: a file that does not match, a recorded file that is missing. */
  readonly problems: readonly string[];
  /** Data files that have no DNA sidecar, so were not verified (dated trees). */
  readonly unsigned: readonly string[];
  /** Mismatches explained by a writer at work (an archive being rewritten): not failures. */
  readonly notes: readonly string[];
}

/** A complete backup, ready for the checks. */
export interface ViewBackup {
  /** Its id (set path, or the directory of its archives). */
  readonly id: string;
  /** When it was made. */
  readonly time: Date;
  /** Bytes of its data files (sidecars excluded). */
  readonly bytes: number;
  /** Re-digests it; `onBytes` gets the bytes digested as they go (`bytes` in all). */
  verify(signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<ViewVerification>;
}

/** A newer set that is not (yet) a backup. */
export interface SkippedBackup {
  /** Its id. */
  readonly id: string;
  /** Why it does not count: locked, incomplete, being written, removed meanwhile. */
  readonly reason: string;
  /**
   * Set when being passed over is itself a failure that must be reported
   * (its data files are gone), not a writer at work: what is wrong.
   */
  readonly problem?: string;
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
  // Locks above the sets (root, year, month, day) whose newest set was met:
  // only that one may be the set their writer is filling.
  const writerSeen = new Set<string>();
  let next = 0;
  return {
    locks,
    transport: t,
    async newest(n, sig) {
      const lockOptions: LockOptions = { ownLockToken: undefined, signal: sig };
      while (found.length < n && next < newestFirst.length) {
        throwIfAborted(sig);
        const set = newestFirst[next++]!;
        const passOver = (reason: string, problem?: string): void => {
          if (found.length === 0) skipped.push(problem === undefined ? { id: set.id, reason } : { id: set.id, reason, problem });
        };
        // A lock in the set's own folder: the set is being written. A lock
        // above it (the tree's root, held by a nightly run or by sync for
        // its whole length) covers every set, but only the newest of them
        // can be the one being written: the older complete sets are the
        // backups to judge. (Retention still leaves them all alone: it
        // reads the same lockedBy and does not purge under it.)
        const ancestorLock = set.lockedBy !== undefined && !set.lockedBy.startsWith(`${set.path}/`) ? set.lockedBy : undefined;
        if (set.lockedBy !== undefined && ancestorLock === undefined) {
          passOver(`locked by ${set.lockedBy}`);
          continue;
        }
        const mayBeWritten = ancestorLock !== undefined && !writerSeen.has(ancestorLock);
        if (ancestorLock !== undefined) writerSeen.add(ancestorLock);
        const contents = await inspectOrVanished(t, set.path, lockOptions);
        if (contents === undefined) {
          passOver('removed since the tree was listed');
          continue;
        }
        if (contents.locks.length > 0) {
          locks.push(...contents.locks.filter((l) => !locks.includes(l)));
          passOver(`locked by ${contents.locks[0]}`);
          continue;
        }
        if (contents.files.length === 0 && contents.partFiles.length === 0 && contents.orphanSidecars.length > 0) {
          // Sidecars are written after their file (Archiver, sync): a set of
          // sidecars alone is not one being written but one that lost its data.
          const k = contents.orphanSidecars.length;
          passOver('data files missing', `holds only ${k} DNA sidecar${k === 1 ? '' : 's'} and no data file: its data files are missing (e.g. ${contents.orphanSidecars[0]})`);
          continue;
        }
        if (!contents.complete) {
          const why = contents.partFiles.length > 0 ? `incomplete: ${contents.partFiles.length} .part file(s)` : 'incomplete: no data file';
          passOver(ancestorLock === undefined ? why : `${why}, being written under ${ancestorLock}`);
          continue;
        }
        const unsigned = contents.files.filter((f) => !contents.sidecars.has(f.rel)).map((f) => f.path);
        if (mayBeWritten && unsigned.length > 0) {
          // A file whose sidecar is not written yet, under a live writer's lock.
          passOver(`being written under ${ancestorLock}: ${unsigned.length} file(s) without their DNA sidecar yet`);
          continue;
        }
        found.push({
          id: set.id,
          time: set.time,
          bytes: contents.files.reduce((s, f) => s + f.size, 0),
          verify: (vs, onBytes) => verifySet(t, set.path, contents, unsigned, vs, onBytes),
        });
      }
      return { backups: found.slice(0, n), future: [...future], skipped: [...skipped], exhausted: found.length < n };
    },
  };
}

/**
 * Lists a set, or `undefined` when it was removed since the tree was listed
 * (Retention purging it meanwhile). A set renamed away and put back by
 * Retention (it found a lock) is listed again once.
 */
async function inspectOrVanished(t: Transport, path: string, o: LockOptions): Promise<SetContents | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await inspectSet(t, path, o);
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason;
      if (!(err instanceof StowageError) || err.code !== 'ENOT_FOUND') throw err;
      if ((await t.exists(path, o.signal ? { signal: o.signal } : {})) === undefined) return undefined;
      if (attempt > 0) throw err;
    }
  }
}

/** Re-digests a set's files against their sidecars; a set removed meanwhile is a note, not a failure. */
async function verifySet(t: Transport, path: string, contents: SetContents, unsigned: readonly string[], signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<ViewVerification> {
  const r = await checkSidecars(t, contents, signal, onBytes);
  if (r.problems.length > 0 && (await t.exists(path, signal ? { signal } : {})) === undefined) {
    return { files: 0, problems: [], unsigned: [], notes: [`${path} was removed while it was being verified`] };
  }
  return { files: r.checked, problems: r.problems, unsigned: r.checked === 0 ? [] : unsigned, notes: [] };
}

/** How many archive records a Catalog view reads at most. */
export const CATALOG_VIEW_LIMIT = 10_000;

/** The note on an archive the Catalog forgot (pruned) during the check: not a failure. */
function forgottenNote(path: string): string {
  return `${path} was forgotten by the Catalog (pruned) while it was being verified`;
}

/** The file's DNA, in `dna`'s algorithm (digested again when `actual` is in another). */
async function digestAs(spec: CatalogSourceSpec, path: string, actual: Dna, dna: Dna, signal: AbortSignal | undefined): Promise<Dna> {
  return actual.algorithm === dna.algorithm ? actual : spec.transport.digest(path, dna.algorithm, signal ? { signal } : {});
}

/** The live (not stale) `LOCKED` of a writer directly in one of `dirs`, if any. */
async function liveLockIn(t: Transport, dirs: readonly string[], staleMs: number | undefined, signal: AbortSignal | undefined): Promise<string | undefined> {
  for (const d of dirs) {
    let info;
    try {
      info = await LockDir.inspect(d, { fs: transportLockFs(t), ...(staleMs !== undefined ? { staleMs } : {}) });
    } catch {
      if (signal?.aborted) throw signal.reason;
      continue; // an unreadable lock proves no writer at work; the locks check reports it
    }
    if (info.locked && !info.stale) {
      const o = info.owner;
      return `${info.path}${o ? ` (pid ${o.pid} on ${o.host}${o.purpose ? `, ${o.purpose}` : ''})` : ''}`;
    }
  }
  return undefined;
}

/**
 * An archive that does not match the record read at the start of the run:
 * a Partitioner may have rewritten it since (its partial tail is rewritten
 * until full: the new file is renamed into place, its sidecar written, then
 * its record). Fine when the Catalog now records what the file holds; "being
 * rewritten" (a note, not a failure) when the file matches its own sidecar,
 * that sidecar is newer than the record, and a writer holds a live
 * `LOCKED` on the archive's folder or the one above (its outDir);
 * otherwise a failure.
 */
async function judgeMismatch(
  spec: CatalogSourceSpec,
  first: ArchiveRecord,
  path: string,
  actual: Dna,
  signal: AbortSignal | undefined,
  lockStaleMs: number | undefined,
): Promise<{ problem?: string; note?: string }> {
  const record = spec.catalog.archive(first.path);
  if (record === undefined) return { note: forgottenNote(path) };
  if (!dnaEqual(record.dna, first.dna) && dnaEqual(record.dna, await digestAs(spec, path, actual, record.dna, signal))) return {};
  const mismatch = `${path} does not match its recorded DNA: expected ${record.dna.dig} (${record.dna.size} bytes), got ${actual.dig} (${actual.size} bytes)`;
  const sidecarPath = path + SIDECAR_SUFFIX;
  let sidecar: Dna;
  let sidecarTime: number;
  try {
    sidecar = await readSidecarVia(spec.transport, sidecarPath, signal);
    sidecarTime = (await spec.transport.stat(sidecarPath, signal ? { signal } : {})).mtimeMs;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof StowageError && (err.code === 'ENOT_FOUND' || err.code === 'EBAD_SIDECAR' || err.code === 'ENO_SIDECAR')) return { problem: mismatch };
    throw err;
  }
  // SFTP gives whole seconds: a sidecar stamped in the record's second counts as newer.
  const created = record.created.getTime();
  const newer = sidecarTime % 1000 === 0 ? sidecarTime >= Math.floor(created / 1000) * 1000 : sidecarTime > created;
  if (!newer) return { problem: mismatch };
  if (!dnaEqual(sidecar, await digestAs(spec, path, actual, sidecar, signal))) return { problem: mismatch };
  const folder = posixDirname(path);
  const writer = await liveLockIn(spec.transport, [folder, posixDirname(folder)], lockStaleMs, signal);
  if (writer === undefined) return { problem: mismatch };
  return {
    note: `${path} is being rewritten: it matches its sidecar (${sidecar.dig}, newer than the record) and ${writer} is live; the Catalog still records ${record.dna.dig}`,
  };
}

/**
 * Groups a Catalog's archive records into backups by directory.
 *
 * @param spec - the catalog, prefix, and where the archives are
 * @param now - the time of the run, ms: backups dated after it are set apart
 * @param lockStaleMs - when a writer's `LOCKED` is stale (default LockDir's)
 */
export function catalogView(spec: CatalogSourceSpec, now: number, lockStaleMs?: number): BackupView {
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
      verify: async (signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<ViewVerification> => {
        const problems: string[] = [];
        const notes: string[] = [];
        let files = 0;
        for (const r of rs) {
          throwIfAborted(signal);
          const path = resolve(r.path);
          try {
            const actual = await digestCounted(spec.transport, path, r.dna.algorithm, r.dna.size, signal, onBytes);
            files++;
            if (dnaEqual(r.dna, actual)) continue;
            const judged = await judgeMismatch(spec, r, path, actual, signal, lockStaleMs);
            if (judged.problem !== undefined) problems.push(judged.problem);
            if (judged.note !== undefined) notes.push(judged.note);
          } catch (err) {
            if (signal?.aborted) throw signal.reason;
            if (!(err instanceof StowageError) || err.code !== 'ENOT_FOUND') throw err;
            if (spec.catalog.archive(r.path) === undefined) notes.push(forgottenNote(path));
            else problems.push(`${path} is recorded but missing on ${spec.transport.name}`);
          }
        }
        return { files, problems, unsigned: [], notes };
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
