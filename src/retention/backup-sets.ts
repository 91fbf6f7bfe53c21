/**
 * Dated backup sets on any Transport: a tree `YYYY/MM/DD/HHMMSS/` whose
 * leaf folders each hold one backup (tarballs and their `.dna` sidecars),
 * with a `last` link beside the year folders.
 *
 * A set's time is its path read as wall-clock time in a time zone (the
 * machine's local zone by default), so a tree written by a cron job on a
 * host in Europe/Berlin is read back the same way anywhere. Names that do
 * not fit the layout are ignored with a warning, never touched. A set that
 * sits in a tree holding a `LOCKED` directory (at the root, in a year,
 * month or day folder, or in the set itself) is being written by someone:
 * it is reported with `lockedBy` and left alone by every destructive step.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { LOCK_DIR_NAME } from '../dna/dna-scan.js';
import { SIDECAR_SUFFIX, dnaEqual, parseSidecar, type Dna, type DnaAlgorithm } from '../dna/dna-digest.js';
import { StowageError, warnOrThrow, type StowageErrorCode, type WarningCallback } from '../errors.js';
import { posixJoin } from '../transport/put-source.js';
import type { Transport, TransportEntry } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';
import { PART_SUFFIX } from '../util/atomic-file.js';
import { checkFunctionOption, checkOptionKeys, checkPathArg } from '../util/options.js';
import { checkTimeZone, daysInMonth, instantOf, localTimeZone, pad, wallTime } from './calendar.js';

/**
 * Prefix of a set (or collapsed `last` folder) renamed out of the way while
 * its removal is checked: `DAY/.stowage-aside-HHMMSS-<random>` for the set
 * `DAY/HHMMSS`, `.stowage-aside-last-<random>` for the link folder. Its
 * removal has not been decided yet: a run stopped at this point leaves it,
 * and the next `Retention.apply` puts it back where it came from.
 */
export const ASIDE_PREFIX = '.stowage-aside-';
/**
 * Prefix that earlier stowage versions gave a set being removed, both
 * before and during the removal: a leftover of that name may be a set half
 * deleted, so it is never put back (it would count as a whole backup) nor
 * removed (it may be whole): it is left, with a warning.
 */
export const TRASH_PREFIX = '.stowage-trash-';
/**
 * Prefix a trash folder is renamed to once its removal has been decided
 * (every check passed), just before the recursive removal:
 * `DAY/.stowage-purging-HHMMSS-<random>`. A leftover with this name is what
 * remains of a set an earlier run purged; the next `Retention.apply`
 * removes it.
 */
export const PURGING_PREFIX = '.stowage-purging-';
/** Prefix of a temporary symlink made before it is renamed over `last`. */
export const TEMP_LINK_PREFIX = '.stowage-tmp-';

/**
 * Code of the warning for a name that does not fit the `YYYY/MM/DD/HHMMSS`
 * layout: most often the directory given is not a backup tree at all.
 */
const LAYOUT_WARNING: StowageErrorCode = 'EBAD_CONFIG';

/** One dated backup set found on a transport. */
export interface BackupSet {
  /** The set's path relative to the tree: `2026/11/22/031500`. Unique within a tree. */
  readonly id: string;
  /** The set's full path on the transport. */
  readonly path: string;
  /** When the set was made: its path read in the tree's time zone. */
  readonly time: Date;
  /**
   * The `LOCKED` directory that covers the set (in the set, one of its
   * parents, or the tree's root), when there is one that is not the
   * caller's own: the set is being written and nothing may touch it.
   */
  readonly lockedBy?: string;
}

/** A set that a purge left alone whatever the plan said. */
export interface SkippedSet {
  /** The set. */
  readonly set: BackupSet;
  /** Why: locked (with the lock's path), vanished meanwhile, no verified copy elsewhere. */
  readonly reason: string;
}

/** Options of {@link listBackupSets}. */
export interface ListBackupSetsOptions {
  /** IANA time zone the folder names are written in (default: the machine's local zone). */
  timeZone?: string;
  /** Name of the link beside the year folders, ignored silently (default `last`). */
  linkName?: string;
  /**
   * The `token` of a lock the caller holds itself (`LOCKED/owner.json`):
   * a `LOCKED` directory with this token does not count as a foreign lock,
   * so a script that locks the whole tree can still prune it.
   */
  ownLockToken?: string;
  /** Names that do not fit the layout, and locked trees, are reported here. */
  onWarning?: WarningCallback;
  /** Throw on the first warning instead. */
  strict?: boolean;
  /** Cancels the listing. */
  signal?: AbortSignal;
}

/** Resolved discovery options shared by apply, free-space mode and the last link. */
export interface TreeOptions {
  readonly timeZone: string;
  readonly linkName: string;
  readonly ownLockToken: string | undefined;
  readonly onWarning: WarningCallback | undefined;
  readonly strict: boolean;
  readonly signal: AbortSignal | undefined;
}

/** What lock checks need: the caller's own lock token and the signal. */
export type LockOptions = Pick<TreeOptions, 'ownLockToken' | 'signal'>;

/** A leftover of an interrupted run, as a walk of the tree found it. */
export interface FoundLeftover {
  /** Its full path. */
  readonly path: string;
  /** The id prefix of the folder holding it: `''` (the root), `YYYY`, `YYYY/MM` or `YYYY/MM/DD`. */
  readonly parentId: string;
  /** The foreign lock covering the folder holding it, if any. */
  readonly lockedBy?: string;
}

/** What a walk of a backup tree found. */
export interface BackupTree {
  /** Every set, oldest first (ties by id). */
  readonly sets: BackupSet[];
  /** Leftover trash folders and temporary links from an interrupted run, with their lock if any. */
  readonly leftovers: FoundLeftover[];
}

/**
 * What `Retention.apply` does (or, in a dry run, would do) with one
 * leftover of an interrupted earlier run.
 *
 * - `'put back'`: a set (or collapsed `last` folder) moved aside as
 *   `.stowage-aside-…` whose removal was never decided (the run stopped
 *   between the rename and the decision): renamed back to `to`, then planned
 *   like any set, so that the policy in force now decides, visibly.
 * - `'remove'`: what remains of a set whose purge an earlier run had
 *   decided (`.stowage-purging-…`: every check had passed), or a temporary
 *   link of an interrupted `last` update.
 * - `'leave'`: left alone (and warned about, unless a lock above it was
 *   already reported): it holds or sits under a writer's `LOCKED`, its
 *   place is taken again, its name is not one stowage gives, or it is a
 *   `.stowage-trash-…` of an earlier version (maybe half deleted).
 */
export interface LeftoverDecision {
  /** The leftover's path. */
  readonly path: string;
  /** What is done with it. */
  readonly action: 'put back' | 'remove' | 'leave';
  /** For `'put back'`: the path it goes back to. */
  readonly to?: string;
  /** The id of the set it is (or was), when it is one: `2026/11/18/030000`. */
  readonly setId?: string;
  /** Why, in words. */
  readonly reason: string;
}

/**
 * Checks a link or file name used inside the tree: one path segment.
 *
 * @param where - the function, for the message
 * @param option - the option name
 * @param value - the value
 */
export function checkSegment(where: string, option: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value === '.' || value === '..' || value.includes('/') || value.includes('\0')) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${option}" must be a single file name (no "/"), got ${JSON.stringify(value) ?? String(value)}.`, {
      details: { where, option, value },
    });
  }
  return value;
}

/**
 * Validates the discovery options shared by the tree operations.
 *
 * @param where - the function, for messages
 * @param o - the caller's options
 */
export function resolveTreeOptions(where: string, o: ListBackupSetsOptions): TreeOptions {
  if (o.ownLockToken !== undefined && (typeof o.ownLockToken !== 'string' || o.ownLockToken === '')) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "ownLockToken" must be a non-empty string.`, { details: { where, option: 'ownLockToken' } });
  }
  checkFunctionOption(where, 'onWarning', o.onWarning);
  return Object.freeze({
    timeZone: o.timeZone === undefined ? localTimeZone() : checkTimeZone(where, 'timeZone', o.timeZone),
    linkName: checkSegment(where, 'linkName', o.linkName ?? 'last'),
    ownLockToken: o.ownLockToken,
    onWarning: o.onWarning,
    strict: o.strict ?? false,
    signal: o.signal,
  });
}

/**
 * The folder path `YYYY/MM/DD/HHMMSS` of a backup made at `time`, on the
 * wall clock of `timeZone` (default: the machine's local zone). Use it to
 * name new sets so that {@link listBackupSets} reads them back.
 *
 * @param time - when the backup was made
 * @param options - `timeZone`
 *
 * @example
 * ```ts
 * backupSetPath(new Date('2026-11-22T02:15:00Z'), { timeZone: 'Europe/Berlin' }); // '2026/11/22/031500'
 * ```
 */
export function backupSetPath(time: Date | number, options: { timeZone?: string } = {}): string {
  checkOptionKeys('backupSetPath', options, ['timeZone']);
  options ??= {}; // null means no options, as for checkOptionKeys
  const t = typeof time === 'number' ? time : time instanceof Date ? time.getTime() : NaN;
  if (!Number.isFinite(t)) throw new StowageError('EBAD_CONFIG', `backupSetPath: time must be a valid Date or epoch milliseconds, got ${String(time)}.`, { details: { value: time } });
  const tz = options.timeZone === undefined ? localTimeZone() : checkTimeZone('backupSetPath', 'timeZone', options.timeZone);
  const w = wallTime(t, tz);
  if (w.year < 1000 || w.year > 9999) throw new StowageError('EBAD_CONFIG', `backupSetPath: year ${w.year} does not fit the YYYY layout.`, { details: { value: time } });
  return `${pad(w.year, 4)}/${pad(w.month, 2)}/${pad(w.day, 2)}/${pad(w.hour, 2)}${pad(w.minute, 2)}${pad(w.second, 2)}`;
}

/**
 * Reads a small far file whole (sidecars, lock owner files); refuses files
 * larger than `max` bytes.
 *
 * @param t - the transport
 * @param path - the far file
 * @param max - the largest size accepted
 * @param signal - cancels the read
 * @param tooLarge - the error code for a file larger than `max`
 */
export async function readSmall(t: Transport, path: string, max: number, signal: AbortSignal | undefined, tooLarge: StowageErrorCode = 'EIO'): Promise<string> {
  throwIfAborted(signal);
  const stream = t.createReadStream(path, signal ? { signal } : {});
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new StowageError(tooLarge, `${path} is larger than ${max} bytes; not a sidecar or lock file.`, { details: { path, max } });
      chunks.push(chunk);
    }
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (err instanceof StowageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new StowageError('ENOT_FOUND', `Cannot read ${path}: it does not exist.`, { details: { path }, cause: err });
    throw new StowageError('EIO', `Cannot read ${path}: ${(err as Error).message}`, { details: { path }, cause: err });
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Whether the `LOCKED` directory at `lockPath` belongs to someone else: it
 * does unless `ownLockToken` is given and its `owner.json` carries that
 * token. An unreadable owner file counts as foreign (the safe side).
 */
async function isForeignLock(t: Transport, lockPath: string, o: LockOptions): Promise<boolean> {
  if (o.ownLockToken === undefined) return true;
  try {
    const owner = JSON.parse(await readSmall(t, posixJoin(lockPath, 'owner.json'), 64 * 1024, o.signal)) as { token?: unknown };
    return owner.token !== o.ownLockToken;
  } catch {
    if (o.signal?.aborted) throw o.signal.reason;
    return true;
  }
}

/**
 * The foreign lock among a directory's entries, if any.
 *
 * @param t - the transport
 * @param dir - the directory listed
 * @param entries - its entries
 * @param o - resolved options
 */
export async function foreignLockIn(t: Transport, dir: string, entries: readonly TransportEntry[], o: LockOptions): Promise<string | undefined> {
  if (!entries.some((e) => e.name === LOCK_DIR_NAME)) return undefined;
  const lockPath = posixJoin(dir, LOCK_DIR_NAME);
  return (await isForeignLock(t, lockPath, o)) ? lockPath : undefined;
}

/**
 * The first foreign `LOCKED` directory directly inside any of `dirs`, checked
 * now (just before a removal, to narrow the window in which a writer may
 * have started since the tree was listed).
 *
 * @param t - the transport
 * @param dirs - directories to check, outermost first
 * @param o - own lock token and signal
 */
export async function foreignLockOnPath(t: Transport, dirs: readonly string[], o: LockOptions): Promise<string | undefined> {
  for (const d of dirs) {
    const lockPath = posixJoin(d, LOCK_DIR_NAME);
    if ((await t.exists(lockPath, o.signal ? { signal: o.signal } : {})) && (await isForeignLock(t, lockPath, o))) return lockPath;
  }
  return undefined;
}

function warnLayout(path: string, what: string, o: TreeOptions): void {
  warnOrThrow(
    new StowageError(LAYOUT_WARNING, `Ignored ${path}: ${what} (a dated backup tree holds YYYY/MM/DD/HHMMSS folders).`, { details: { path } }),
    path,
    o.onWarning,
    o.strict,
  );
}

function isLeftover(e: TransportEntry): boolean {
  return e.name.startsWith(ASIDE_PREFIX) || e.name.startsWith(TRASH_PREFIX) || e.name.startsWith(PURGING_PREFIX) || (e.name.startsWith(TEMP_LINK_PREFIX) && e.type === 'symlink');
}

/**
 * Throws EBAD_CONFIG unless `dir` is a non-empty path string (the shared
 * {@link checkPathArg}, as an assertion).
 *
 * @param where - the function, for the message
 * @param dir - the caller's directory argument
 * @param name - how to name it in the message
 */
export function checkDirArg(where: string, dir: unknown, name = 'dir'): asserts dir is string {
  checkPathArg(where, name, dir);
}

/**
 * Throws EBAD_CONFIG unless `t` looks like a {@link Transport} (it has
 * `list`, `exists` and a `name`).
 *
 * @param where - the function, for the message
 * @param t - the caller's transport argument
 */
export function checkTransportArg(where: string, t: unknown): asserts t is Transport {
  const x = t as Partial<Transport> | null | undefined;
  if (x === null || typeof x !== 'object' || typeof x.list !== 'function' || typeof x.exists !== 'function' || typeof x.name !== 'string') {
    throw new StowageError('EBAD_CONFIG', `${where}: the first argument must be a Transport (LocalTransport, SshTransport, ...), got ${x === null ? 'null' : typeof x}.`, { details: { where } });
  }
}

/**
 * Checks that `dir` exists and is a directory (or a link to one): a missing
 * tree is ENOT_FOUND.
 *
 * @param t - the transport
 * @param dir - the tree's root
 * @param where - the function, for the message
 * @param signal - cancels the check
 */
export async function checkTreeRoot(t: Transport, dir: string, where: string, signal: AbortSignal | undefined): Promise<void> {
  checkDirArg(where, dir);
  checkTransportArg(where, t);
  const st = await t.exists(dir, signal ? { signal } : {});
  if (st === undefined) {
    throw new StowageError('ENOT_FOUND', `${where}: backup directory ${dir} does not exist on ${t.name}.`, { details: { path: dir, transport: t.name } });
  }
  if (st.type !== 'dir' && st.type !== 'symlink') {
    throw new StowageError('ENOT_FOUND', `${where}: ${dir} on ${t.name} is not a directory.`, { details: { path: dir, transport: t.name, type: st.type } });
  }
}

/**
 * Walks a dated backup tree: every set with its time and lock, plus
 * leftovers of interrupted removals. Sets are sorted oldest first.
 *
 * @param t - the transport
 * @param dir - the tree's root
 * @param o - resolved options
 */
export async function scanBackupTree(t: Transport, dir: string, o: TreeOptions): Promise<BackupTree> {
  const sets: BackupSet[] = [];
  const leftovers: FoundLeftover[] = [];
  const list = async (path: string): Promise<TransportEntry[]> => {
    throwIfAborted(o.signal);
    return t.list(path, o.signal ? { signal: o.signal } : {});
  };
  const lockWarning = (lock: string): void => {
    warnOrThrow(
      new StowageError('ELOCKED', `Left alone everything under ${lock.slice(0, -LOCK_DIR_NAME.length - 1) || '/'}: it holds a ${LOCK_DIR_NAME} directory (a backup or transfer is in progress).`, {
        details: { path: lock },
      }),
      lock,
      o.onWarning,
      o.strict,
    );
  };
  const addLeftover = (path: string, parentId: string, lockedBy: string | undefined): void => {
    leftovers.push(lockedBy === undefined ? { path, parentId } : { path, parentId, lockedBy });
  };

  const rootEntries = await list(dir);
  const rootLock = await foreignLockIn(t, dir, rootEntries, o);
  if (rootLock) lockWarning(rootLock);
  for (const ye of rootEntries) {
    const yPath = posixJoin(dir, ye.name);
    if (ye.name === LOCK_DIR_NAME || ye.name === o.linkName) continue;
    if (isLeftover(ye)) {
      addLeftover(yPath, '', rootLock);
      continue;
    }
    if (!/^\d{4}$/.test(ye.name) || ye.type !== 'dir') {
      warnLayout(yPath, 'not a year folder', o);
      continue;
    }
    const year = Number(ye.name);
    const yEntries = await list(yPath);
    const yLock = rootLock ?? (await foreignLockIn(t, yPath, yEntries, o));
    if (yLock && !rootLock) lockWarning(yLock);
    for (const me of yEntries) {
      const mPath = posixJoin(yPath, me.name);
      if (me.name === LOCK_DIR_NAME) continue;
      if (isLeftover(me)) {
        addLeftover(mPath, ye.name, yLock);
        continue;
      }
      const month = /^\d{2}$/.test(me.name) ? Number(me.name) : 0;
      if (month < 1 || month > 12 || me.type !== 'dir') {
        warnLayout(mPath, 'not a month folder 01–12', o);
        continue;
      }
      const mEntries = await list(mPath);
      const mLock = yLock ?? (await foreignLockIn(t, mPath, mEntries, o));
      if (mLock && !yLock) lockWarning(mLock);
      for (const de of mEntries) {
        const dPath = posixJoin(mPath, de.name);
        if (de.name === LOCK_DIR_NAME) continue;
        if (isLeftover(de)) {
          addLeftover(dPath, `${ye.name}/${me.name}`, mLock);
          continue;
        }
        const day = /^\d{2}$/.test(de.name) ? Number(de.name) : 0;
        if (day < 1 || day > daysInMonth(year, month) || de.type !== 'dir') {
          warnLayout(dPath, `not a day folder of ${ye.name}-${me.name}`, o);
          continue;
        }
        const dEntries = await list(dPath);
        const dLock = mLock ?? (await foreignLockIn(t, dPath, dEntries, o));
        if (dLock && !mLock) lockWarning(dLock);
        for (const se of dEntries) {
          const sPath = posixJoin(dPath, se.name);
          if (se.name === LOCK_DIR_NAME) continue;
          if (isLeftover(se)) {
            addLeftover(sPath, `${ye.name}/${me.name}/${de.name}`, dLock);
            continue;
          }
          const hms = /^(\d{2})(\d{2})(\d{2})$/.exec(se.name);
          const [hour, minute, second] = hms ? [Number(hms[1]), Number(hms[2]), Number(hms[3])] : [99, 99, 99];
          if (hour > 23 || minute > 59 || second > 59 || se.type !== 'dir') {
            warnLayout(sPath, 'not a backup set folder HHMMSS', o);
            continue;
          }
          let lockedBy = dLock;
          if (lockedBy === undefined) {
            lockedBy = await foreignLockIn(t, sPath, await list(sPath), o);
            if (lockedBy) lockWarning(lockedBy);
          }
          const time = new Date(instantOf({ year, month, day, hour, minute, second, millisecond: 0 }, o.timeZone));
          const id = `${ye.name}/${me.name}/${de.name}/${se.name}`;
          sets.push(Object.freeze(lockedBy === undefined ? { id, path: sPath, time } : { id, path: sPath, time, lockedBy }));
        }
      }
    }
  }
  sets.sort((a, b) => a.time.getTime() - b.time.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { sets, leftovers };
}

/**
 * Lists the dated backup sets `YYYY/MM/DD/HHMMSS/` under `dir`, oldest
 * first. Names that do not fit the layout are ignored with a warning; sets
 * in a tree holding a foreign `LOCKED` directory carry `lockedBy`.
 * A missing `dir` is ENOT_FOUND.
 *
 * @param transport - where the tree lives
 * @param dir - the tree's root (beside the `last` link)
 * @param options - timeZone, linkName, ownLockToken, onWarning, strict, signal
 *
 * @example
 * ```ts
 * const sets = await listBackupSets(new LocalTransport(), '/backups/svn', { timeZone: 'Europe/Berlin' });
 * const newest = sets.at(-1); // { id: '2026/11/22/031500', path, time }
 * ```
 */
export async function listBackupSets(transport: Transport, dir: string, options: ListBackupSetsOptions = {}): Promise<BackupSet[]> {
  checkOptionKeys('listBackupSets', options, ['timeZone', 'linkName', 'ownLockToken', 'onWarning', 'strict', 'signal']);
  options ??= {}; // null means no options, as for checkOptionKeys
  const o = resolveTreeOptions('listBackupSets', options);
  throwIfAborted(o.signal);
  await checkTreeRoot(transport, dir, 'listBackupSets', o.signal);
  return (await scanBackupTree(transport, dir, o)).sets;
}

/** One regular file of a set. */
export interface SetFile {
  /** Path relative to the set, `/`-separated. */
  readonly rel: string;
  /** Full path on the transport. */
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
}

/** The contents of one set, from a recursive listing. */
export interface SetContents {
  /** Regular files that are neither sidecars nor `.part` files. */
  readonly files: SetFile[];
  /** Sidecar path by the `rel` of the file it describes. */
  readonly sidecars: Map<string, string>;
  /** Sidecars whose file is missing. */
  readonly orphanSidecars: string[];
  /** Files still being written (`NAME.part`): the set is incomplete. */
  readonly partFiles: string[];
  /** Foreign `LOCKED` directories found inside the set. */
  readonly locks: string[];
  /** Bytes of all regular files, sidecars and `.part` files included. */
  readonly bytes: number;
  /** Whether the set holds at least one data file and no `.part` file. */
  readonly complete: boolean;
  /**
   * The newest modification time (epoch ms) of anything listed inside the
   * set, files and folders; `-Infinity` for an empty set. A writer still
   * at work keeps it recent.
   */
  readonly newestChangeMs: number;
}

/**
 * Lists a set recursively: its files, sidecars, `.part` files and locks.
 * Symlinks and other special files are listed nowhere and never followed.
 *
 * @param t - the transport
 * @param setPath - the set's folder
 * @param o - resolved options
 */
export async function inspectSet(t: Transport, setPath: string, o: LockOptions): Promise<SetContents> {
  const files: SetFile[] = [];
  const sidecars = new Map<string, string>();
  const orphanSidecars: string[] = [];
  const partFiles: string[] = [];
  const locks: string[] = [];
  let bytes = 0;
  let newestChangeMs = -Infinity;
  const walk = async (dir: string, prefix: string): Promise<void> => {
    throwIfAborted(o.signal);
    const entries = await t.list(dir, o.signal ? { signal: o.signal } : {});
    const names = new Set(entries.filter((e) => e.type === 'file').map((e) => e.name));
    const lock = await foreignLockIn(t, dir, entries, o);
    if (lock) locks.push(lock);
    for (const e of entries) {
      const rel = prefix + e.name;
      if (e.mtimeMs > newestChangeMs) newestChangeMs = e.mtimeMs;
      if (e.type === 'dir') {
        if (e.name !== LOCK_DIR_NAME) await walk(e.path, rel + '/');
        continue;
      }
      if (e.type !== 'file') continue;
      bytes += e.size;
      if (e.name.endsWith(PART_SUFFIX)) partFiles.push(e.path);
      else if (e.name.endsWith(SIDECAR_SUFFIX)) {
        const target = e.name.slice(0, -SIDECAR_SUFFIX.length);
        if (names.has(target) && !target.endsWith(PART_SUFFIX)) sidecars.set(prefix + target, e.path);
        else orphanSidecars.push(e.path);
      } else files.push({ rel, path: e.path, size: e.size });
    }
  };
  await walk(setPath, '');
  return { files, sidecars, orphanSidecars, partFiles, locks, bytes, complete: files.length > 0 && partFiles.length === 0, newestChangeMs };
}

/**
 * The first foreign `LOCKED` directory anywhere in a leftover trash folder
 * (looked through as {@link inspectSet} looks through a set); `undefined`
 * when there is none, or when the leftover is not a folder (a temporary
 * link) or is gone.
 *
 * @param t - the transport
 * @param path - the leftover
 * @param o - own lock token and signal
 */
export async function foreignLockInTrash(t: Transport, path: string, o: LockOptions): Promise<string | undefined> {
  const st = await t.exists(path, o.signal ? { signal: o.signal } : {});
  if (st === undefined || st.type !== 'dir') return undefined;
  try {
    return (await inspectSet(t, path, o)).locks[0];
  } catch (err) {
    if (err instanceof StowageError && err.code === 'ENOT_FOUND') return undefined; // removed meanwhile
    throw err;
  }
}

/**
 * Reads a sidecar through a transport.
 *
 * @param t - the transport
 * @param sidecar - the sidecar's path
 * @param signal - cancels the read
 */
export async function readSidecarVia(t: Transport, sidecar: string, signal: AbortSignal | undefined): Promise<Dna> {
  return parseSidecar(await readSmall(t, sidecar, 64 * 1024, signal, 'EBAD_SIDECAR'), sidecar);
}

const DEFINITE: ReadonlySet<StowageErrorCode> = new Set<StowageErrorCode>(['EBAD_SIDECAR', 'ENO_SIDECAR', 'ENOT_FOUND', 'EDIGEST_MISMATCH']);

/** Outcome of checking one set's files against their sidecars. */
export interface SidecarCheck {
  /** At least one file has a sidecar, and every sidecar matches its file. */
  readonly verified: boolean;
  /** Files digested. */
  readonly checked: number;
  /** Bytes digested (on the far side for a remote transport). */
  readonly bytes: number;
  /** Why the set does not verify, one line per problem. */
  readonly problems: string[];
  /**
   * The set holds files (or `.part` files) but not one sidecar, and nothing
   * else is wrong: there was nothing to check it against (a set written by
   * a script that writes no `.dna`). Not verified, but not known to be bad
   * either. False for an empty set, and for any set with a definite problem.
   */
  readonly unverifiable: boolean;
}

/**
 * Re-digests every file of a set that has a sidecar, with the transport's
 * `digest` (computed on the far side for a remote host), and compares. A set
 * without any sidecar cannot be verified; an orphan or malformed sidecar is
 * a problem. Errors other than a definite answer (connection lost, read
 * error) are thrown. A set that holds files but no sidecar at all is
 * `unverifiable`: unproven, not known to be bad.
 *
 * @param t - the transport
 * @param contents - the set's listing
 * @param signal - cancels the check
 * @param onBytes - called with the bytes digested as they go (each file's listed size in all)
 */
export async function checkSidecars(t: Transport, contents: SetContents, signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<SidecarCheck> {
  const problems: string[] = [];
  let checked = 0;
  let bytes = 0;
  for (const o of contents.orphanSidecars) problems.push(`orphan sidecar ${o}: its file is missing`);
  for (const f of contents.files) {
    const sidecar = contents.sidecars.get(f.rel);
    if (sidecar === undefined) continue;
    throwIfAborted(signal);
    try {
      const expected = await readSidecarVia(t, sidecar, signal);
      const actual = await digestCounted(t, f.path, expected.algorithm, f.size, signal, onBytes);
      checked++;
      bytes += f.size;
      if (!dnaEqual(expected, actual)) problems.push(`${f.path} does not match its DNA: expected ${expected.dig} (${expected.size} bytes), got ${actual.dig} (${actual.size} bytes)`);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      // A definite answer makes the set unverified; anything else (a lost
      // connection, a read error) stops the caller: nothing is purged on a
      // guess.
      if (!(err instanceof StowageError) || !DEFINITE.has(err.code)) throw err;
      problems.push(`${f.path}: ${err.message}`);
    }
  }
  const nothingToCheck = checked === 0 && problems.length === 0;
  if (nothingToCheck) problems.push('no file of the set has a DNA sidecar, so nothing can be verified');
  return { verified: checked > 0 && problems.length === 0, checked, bytes, problems, unverifiable: nothingToCheck && (contents.files.length > 0 || contents.partFiles.length > 0) };
}

/**
 * `t.digest` of one file whose byte progress is passed on to `onBytes` as
 * increments as it goes (a large file moves a bar while the far side
 * reads it), adding up to `size` once the digest resolves: at most `size`
 * while it runs, even over a retry that reads the file again.
 *
 * @param t - the transport
 * @param path - the file
 * @param algorithm - its sidecar's algorithm
 * @param size - its listed size
 * @param signal - cancels the digest
 * @param onBytes - the increments
 */
export async function digestCounted(t: Transport, path: string, algorithm: DnaAlgorithm, size: number, signal: AbortSignal | undefined, onBytes?: (n: number) => void): Promise<Dna> {
  if (onBytes === undefined) return t.digest(path, algorithm, signal ? { signal } : {});
  let told = 0;
  const tell = (upTo: number): void => {
    const n = Math.min(upTo, size) - told;
    if (n <= 0) return;
    told += n;
    onBytes(n);
  };
  const dna = await t.digest(path, algorithm, { ...(signal ? { signal } : {}), onProgress: (p) => tell(p.bytesDone) });
  tell(size);
  return dna;
}

/**
 * A last check run by {@link removeSet} once the set has been renamed to
 * its trash name, before anything is deleted: resolves `undefined` to go
 * on, or a reason to put the set back and leave it; a throw also puts the
 * set back, then propagates.
 */
export type RemoveSetConfirm = (trash: string) => Promise<string | undefined>;

/**
 * Removes one set atomically: re-checks the locks, renames it to a hidden
 * trash name in its day folder (`.stowage-trash-HHMMSS-<random>`, so that
 * its id can be read back), checks that no lock appeared anywhere in it
 * (and runs `confirm`, if given), then marks the removal decided by a
 * second rename (`.stowage-purging-…`) and removes it recursively. Returns
 * `'removed'` or why it was left alone.
 *
 * Until the removal is decided, every outcome but "go on" puts the set
 * back under its name: a lock, a reason from `confirm`, and any error,
 * an abort included (the rename back ignores the signal). What a run
 * killed outright leaves is told apart by its name: see
 * {@link LeftoverDecision}.
 *
 * @param t - the transport
 * @param root - the tree's root
 * @param set - the set
 * @param o - resolved options (own lock token, signal)
 * @param confirm - a last check with the set out of the way (free-space mode: is the copy elsewhere still there?)
 */
export async function removeSet(t: Transport, root: string, set: BackupSet, o: TreeOptions, confirm?: RemoveSetConfirm): Promise<string> {
  const signal = o.signal;
  const parts = set.id.split('/');
  const chain = [root, ...parts.map((_, i) => posixJoin(root, ...parts.slice(0, i + 1)))];
  const lock = await foreignLockOnPath(t, chain, o);
  if (lock !== undefined) return `locked by ${lock} (appeared after the plan)`;
  const dayDir = chain[chain.length - 2]!;
  const tag = `${parts[3]}-${randomBytes(4).toString('hex')}`;
  const trash = posixJoin(dayDir, `${ASIDE_PREFIX}${tag}`);
  throwIfAborted(signal);
  try {
    // No signal: a rename cut short by an abort may still happen on the far
    // side, and the set would be trash with nobody to put it back.
    await t.rename(set.path, trash);
  } catch (err) {
    if (err instanceof StowageError && err.code === 'ENOT_FOUND') return 'vanished before it could be removed';
    throw err;
  }
  let leaveBecause: string | undefined;
  try {
    // A writer that locked the set (or a folder in it: svn/LOCKED) between
    // the check and the rename now sees it gone; put it back rather than
    // remove what it is writing. The whole set is looked through.
    const late = (await inspectSet(t, trash, o)).locks[0];
    if (late !== undefined) leaveBecause = `locked by ${set.path}/${late.slice(trash.length + 1)} (appeared during the removal)`;
    else if (confirm !== undefined) leaveBecause = await confirm(trash);
    if (leaveBecause === undefined) throwIfAborted(signal); // stopped: nothing is decided
  } catch (err) {
    await putBack(t, trash, set, err);
    throw err;
  }
  if (leaveBecause !== undefined) {
    await putBack(t, trash, set, undefined);
    return leaveBecause;
  }
  const purging = posixJoin(dayDir, `${PURGING_PREFIX}${tag}`);
  try {
    await t.rename(trash, purging);
  } catch (err) {
    await putBack(t, trash, set, err);
    throw err;
  }
  await t.remove(purging, { recursive: true, ...(signal ? { signal } : {}) });
  return 'removed';
}

/**
 * Renames a set back from its trash name (whatever the signal says). When
 * that fails, the error says where the set is, so that nobody loses it.
 */
async function putBack(t: Transport, trash: string, set: BackupSet, reason: unknown): Promise<void> {
  try {
    await t.rename(trash, set.path);
  } catch (err) {
    const why = reason instanceof Error ? `${reason.message} ` : '';
    throw new StowageError(
      'EIO',
      `${why}The set could not be renamed back from ${trash} to ${set.path} (${(err as Error).message}): move it back by hand (the next retention run tries to put it back as well).`,
      { details: { path: trash, set: set.path }, cause: reason ?? err },
    );
  }
}

/**
 * The {@link BackupSet} of a set id at `path` (where it lies now: its home,
 * or its trash name in a dry run).
 *
 * @param id - `YYYY/MM/DD/HHMMSS`, already checked
 * @param path - the folder holding the set
 * @param timeZone - the tree's zone
 */
export function backupSetOf(id: string, path: string, timeZone: string): BackupSet {
  const [year, month, day, hms] = id.split('/') as [string, string, string, string];
  const time = new Date(
    instantOf({ year: Number(year), month: Number(month), day: Number(day), hour: Number(hms.slice(0, 2)), minute: Number(hms.slice(2, 4)), second: Number(hms.slice(4, 6)), millisecond: 0 }, timeZone),
  );
  return Object.freeze({ id, path, time });
}

/**
 * Decides what to do with one leftover of an interrupted run (see
 * {@link LeftoverDecision}); touches nothing. Warns (`onWarning`, or
 * throws with `strict`) about a leftover it leaves, unless the lock above
 * it was reported already.
 *
 * @param t - the transport
 * @param root - the tree's root
 * @param l - the leftover, as the walk found it
 * @param o - resolved options
 */
export async function planLeftover(t: Transport, root: string, l: FoundLeftover, o: TreeOptions): Promise<LeftoverDecision> {
  const name = l.path.slice(l.path.lastIndexOf('/') + 1);
  const leave = (reason: string, code?: StowageErrorCode, details: Record<string, unknown> = {}): LeftoverDecision => {
    if (code !== undefined) warnOrThrow(new StowageError(code, `Left alone leftover ${l.path}: ${reason}`, { details: { path: l.path, ...details } }), l.path, o.onWarning, o.strict);
    return Object.freeze({ path: l.path, action: 'leave' as const, reason });
  };
  if (l.lockedBy !== undefined) return leave(`it is under ${l.lockedBy}: a writer is at work there`);
  if (name.startsWith(TEMP_LINK_PREFIX)) return Object.freeze({ path: l.path, action: 'remove' as const, reason: `temporary link of an interrupted update of the ${o.linkName} link` });
  const purging = name.startsWith(PURGING_PREFIX);
  const legacy = name.startsWith(TRASH_PREFIX);
  const tail = name.slice((purging ? PURGING_PREFIX : legacy ? TRASH_PREFIX : ASIDE_PREFIX).length);
  const depth = l.parentId === '' ? 0 : l.parentId.split('/').length;
  const m = /^(.+)-[0-9a-f]+$/.exec(tail);
  let home: string | undefined;
  let setId: string | undefined;
  if (m !== null && depth === 3 && /^\d{6}$/.test(m[1]!)) {
    setId = `${l.parentId}/${m[1]}`;
    home = `${l.path.slice(0, l.path.length - name.length)}${m[1]}`;
  } else if (m !== null && depth === 0 && m[1] === o.linkName) {
    home = `${l.path.slice(0, l.path.length - name.length)}${m[1]}`;
  }
  const what = setId !== undefined ? `set ${setId}` : home !== undefined ? `the ${o.linkName} folder` : 'something';
  // Trash may hold a live writer's set: one whose rename back failed, or
  // left by a run that died between the rename and the rollback. Its LOCKED
  // says so; then it is not ours to move or remove.
  const lock = await foreignLockInTrash(t, l.path, o);
  if (lock !== undefined) {
    return leave(
      `it holds ${lock}, a writer's lock (a set whose removal was rolled back halfway?; live or left by a writer that died, it is not ours to judge here). Once that writer is done, check it${home !== undefined ? ` and move it back to ${home}` : ''}, or remove it by hand.`,
      'ELOCKED',
      { lock, ...(home !== undefined ? { set: home } : {}) },
    );
  }
  const base = { path: l.path, ...(setId !== undefined ? { setId } : {}) };
  if (legacy) {
    return leave(
      `an earlier stowage version moved ${what} aside under this name both before and while removing it, so it may be half deleted: it is neither put back (it would count as a whole backup) nor removed (it may be whole). Look inside: if every file is there and matches its sidecar, move it back${home !== undefined ? ` to ${home}` : ''}; otherwise remove it by hand.`,
      'EBAD_CONFIG',
      home !== undefined ? { set: home } : {},
    );
  }
  if (purging) return Object.freeze({ ...base, action: 'remove' as const, reason: `what remains of ${what}, whose purge an earlier run decided and was stopped while removing it` });
  if (home === undefined) {
    return leave(`its name is not one stowage gives to a set it moves aside, so it cannot be put back; look inside, then move it back or remove it by hand.`, 'EBAD_CONFIG');
  }
  const there = await t.exists(home, o.signal ? { signal: o.signal } : {});
  // The link folder is moved aside only once proven a copy of a set, and the
  // new link renamed in its place: with the link there, the copy goes.
  if (setId === undefined && there?.type === 'symlink') {
    return Object.freeze({ ...base, action: 'remove' as const, reason: `a copy of a set that stood in for the ${o.linkName} link, moved aside by a repair stopped once the link was in place` });
  }
  if (there !== undefined) {
    return leave(`${what} was moved aside by an interrupted run that never decided its removal, but ${home} exists again; compare the two, keep the right one, and remove the other by hand.`, 'EEXIST', { set: home });
  }
  return Object.freeze({ ...base, action: 'put back' as const, to: home, reason: `${what} was moved aside by an interrupted run that never decided its removal: put back, and planned again` });
}

/**
 * Removes the day, month and year folders of `set` that are now empty
 * (never the root); returns them.
 *
 * @param t - the transport
 * @param root - the tree's root
 * @param set - the set just removed
 * @param signal - cancels the pruning
 */
export async function pruneEmptyParents(t: Transport, root: string, set: BackupSet, signal: AbortSignal | undefined): Promise<string[]> {
  const parts = set.id.split('/');
  const pruned: string[] = [];
  for (let depth = 3; depth >= 1; depth--) {
    const d = posixJoin(root, ...parts.slice(0, depth));
    const entries = await t.list(d, signal ? { signal } : {});
    if (entries.length > 0) break;
    try {
      await t.remove(d, signal ? { signal } : {}); // not recursive: fails if a writer just made something here
    } catch {
      break;
    }
    pruned.push(d);
  }
  return pruned;
}
