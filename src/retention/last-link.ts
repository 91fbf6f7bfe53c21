/**
 * The `last` link beside the year folders of a dated backup tree, pointing
 * at the newest complete set with a relative target (`2026/11/22/031500`),
 * so that a copy of the whole tree keeps a working link. A set dated after
 * now is not "the newest": it is a clock or naming error, and is reported.
 *
 * A copy made without preserving links (`rsync -r` without `-l`, `cp -r`,
 * some SFTP clients) turns `last` into a real folder holding a copy of a
 * set. Repairing it means deleting that folder, which is only safe when
 * every file in it is byte-for-byte present in a backup set: the folder is
 * compared, file by file and digest by digest, with the newest complete set
 * and then with every other set. If it holds anything found in no set, it
 * is left alone (EEXIST) for a human to look at.
 *
 * The link is replaced atomically: a new link is made under a temporary
 * hidden name and renamed over `last`, so a reader sees the old link or the
 * new one, never none.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { dnaEqual, type Dna } from '../dna/dna-digest.js';
import { StowageError, warnOrThrow, type WarningCallback } from '../errors.js';
import { posixJoin } from '../transport/put-source.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';
import { checkOptionKeys } from '../util/options.js';
import { ASIDE_PREFIX, PURGING_PREFIX, TEMP_LINK_PREFIX, checkSegment, checkTransportArg, checkTreeRoot, inspectSet, resolveTreeOptions, scanBackupTree, type BackupSet, type TreeOptions } from './backup-sets.js';

/** Options of {@link Retention.updateLastLink}. */
export interface LastLinkOptions {
  /** Name of the link beside the year folders (default `last`). */
  name?: string;
  /** IANA time zone the folder names are written in (default: the machine's local zone). */
  timeZone?: string;
  /** Token of a lock the caller holds (`LOCKED/owner.json`): sets under it may be linked. */
  ownLockToken?: string;
  /** Odd names, locked trees. */
  onWarning?: WarningCallback;
  /** Throw on the first warning instead. */
  strict?: boolean;
  /** Cancels the update. */
  signal?: AbortSignal;
  /**
   * The current time (default `Date.now()`). A set dated after it (a clock
   * or naming error, such as a set misnamed `2099/…`) is never linked, as
   * Retention keeps such a set without counting it: it is reported through
   * `onWarning` and `last` points at the newest complete set that is not.
   */
  now?: Date | number;
}

/** Result of {@link Retention.updateLastLink}. */
export interface LastLinkResult {
  /**
   * What was done: `created` (there was no link), `updated` (it pointed
   * elsewhere), `unchanged`, `repaired` (a collapsed folder was replaced by
   * the link), `none` (the tree holds no complete set; nothing touched).
   */
  readonly action: 'created' | 'updated' | 'unchanged' | 'repaired' | 'none';
  /** The link's path. */
  readonly link: string;
  /** The link's relative target, the newest complete set's id (absent for `none`). */
  readonly target?: string;
  /** The previous target, for `updated`. */
  readonly previousTarget?: string;
  /** For `repaired`: the set the collapsed folder was a copy of. */
  readonly copyOf?: string;
}

interface Entry {
  readonly rel: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  readonly size: number;
  readonly link?: string;
}

async function listTree(t: Transport, root: string, signal: AbortSignal | undefined): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    throwIfAborted(signal);
    for (const e of await t.list(dir, signal ? { signal } : {})) {
      const rel = prefix + e.name;
      if (e.type === 'dir') await walk(e.path, rel + '/');
      else if (e.type === 'symlink') out.push({ rel, type: 'symlink', size: 0, link: await t.readlink(e.path, signal ? { signal } : {}) });
      else out.push({ rel, type: e.type, size: e.size });
    }
  };
  await walk(root, '');
  return out;
}

/**
 * Whether every file and link under `folder` is identical to the one at the
 * same relative path in `setPath`. Names, types and sizes first, then
 * digests of both sides (computed where the data lives).
 */
async function isCopyOf(t: Transport, folder: string, entries: readonly Entry[], setPath: string, digests: Map<string, Dna>, signal: AbortSignal | undefined): Promise<boolean> {
  const op = signal ? { signal } : {};
  for (const e of entries) {
    const st = await t.exists(posixJoin(setPath, e.rel), op);
    if (st === undefined || st.type !== e.type || e.type === 'other') return false;
    if (e.type === 'file' && st.size !== e.size) return false;
    if (e.type === 'symlink' && (await t.readlink(posixJoin(setPath, e.rel), op)) !== e.link) return false;
  }
  for (const e of entries) {
    if (e.type !== 'file') continue;
    let mine = digests.get(e.rel);
    if (mine === undefined) {
      mine = await t.digest(posixJoin(folder, e.rel), 'md5', op);
      digests.set(e.rel, mine);
    }
    if (!dnaEqual(mine, await t.digest(posixJoin(setPath, e.rel), 'md5', op))) return false;
  }
  return true;
}

async function placeLink(t: Transport, dir: string, name: string, target: string, signal: AbortSignal | undefined): Promise<string> {
  const op = signal ? { signal } : {};
  const tmp = posixJoin(dir, `${TEMP_LINK_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
  await t.symlink(target, tmp, op);
  return tmp;
}

/**
 * Implementation of {@link Retention.updateLastLink}.
 *
 * @param t - where the tree lives
 * @param dir - the tree's root
 * @param options - see {@link LastLinkOptions}
 */
export async function updateLastLink(t: Transport, dir: string, options: LastLinkOptions = {}): Promise<LastLinkResult> {
  const where = 'Retention.updateLastLink';
  checkTransportArg(where, t);
  checkOptionKeys(where, options, ['name', 'timeZone', 'ownLockToken', 'onWarning', 'strict', 'signal', 'now']);
  options ??= {}; // null means no options, as for checkOptionKeys
  const name = checkSegment(where, 'name', options.name ?? 'last');
  const o: TreeOptions = resolveTreeOptions(where, {
    linkName: name,
    ...(options.timeZone !== undefined ? { timeZone: options.timeZone } : {}),
    ...(options.ownLockToken !== undefined ? { ownLockToken: options.ownLockToken } : {}),
    ...(options.onWarning !== undefined ? { onWarning: options.onWarning } : {}),
    ...(options.strict !== undefined ? { strict: options.strict } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  const nowMs = options.now === undefined ? Date.now() : options.now instanceof Date ? options.now.getTime() : options.now;
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "now" must be a valid Date or epoch milliseconds, got ${String(options.now)}.`, { details: { where, option: 'now', value: String(options.now) } });
  }
  const signal = o.signal;
  const op = signal ? { signal } : {};
  throwIfAborted(signal);
  if (!t.capabilities.symlinks) {
    throw new StowageError('EBAD_CONFIG', `${where}: transport ${t.name} cannot make symlinks.`, { details: { where, transport: t.name } });
  }
  await checkTreeRoot(t, dir, where, signal);
  const link = posixJoin(dir, name);

  const { sets } = await scanBackupTree(t, dir, o);
  const open = sets.filter((s) => s.lockedBy === undefined).reverse(); // newest first
  let newest: BackupSet | undefined;
  for (const s of open) {
    if (s.time.getTime() > nowMs) {
      warnOrThrow(
        new StowageError('EBAD_CONFIG', `${where}: ${s.path} is dated after now (${new Date(nowMs).toISOString()}): not linked as the newest; check the clock or the folder name.`, {
          details: { path: s.path, set: s.id, time: s.time.toISOString() },
        }),
        s.path,
        o.onWarning,
        o.strict,
      );
      continue;
    }
    const c = await inspectSet(t, s.path, o);
    if (c.locks.length === 0 && c.complete) {
      newest = s;
      break;
    }
  }
  if (newest === undefined) return Object.freeze({ action: 'none' as const, link });
  const target = newest.id;

  const st = await t.exists(link, op);
  if (st === undefined) {
    const tmp = await placeLink(t, dir, name, target, signal);
    await t.rename(tmp, link, op).catch(async (err: unknown) => {
      await t.remove(tmp, { force: true }).catch(() => {});
      throw err;
    });
    return Object.freeze({ action: 'created' as const, link, target });
  }
  if (st.type === 'symlink') {
    const previousTarget = await t.readlink(link, op);
    if (previousTarget === target) return Object.freeze({ action: 'unchanged' as const, link, target });
    const tmp = await placeLink(t, dir, name, target, signal);
    try {
      if (!t.capabilities.atomicRename) await t.remove(link, { force: true });
      await t.rename(tmp, link);
    } catch (err) {
      await t.remove(tmp, { force: true }).catch(() => {});
      throw err;
    }
    return Object.freeze({ action: 'updated' as const, link, target, previousTarget });
  }
  if (st.type !== 'dir') {
    throw new StowageError('EEXIST', `${where}: ${link} is a ${st.type}, not a link; move it away and run again.`, { details: { path: link, type: st.type } });
  }

  // A link collapsed into a folder by a copy that did not keep links.
  const lock = (await inspectSet(t, link, o)).locks[0];
  if (lock !== undefined) {
    throw new StowageError('ELOCKED', `${where}: ${link} is a folder holding ${lock}: something is writing into it; left alone.`, { details: { path: link, lock } });
  }
  const entries = await listTree(t, link, signal);
  const digests = new Map<string, Dna>();
  let copyOf: BackupSet | undefined;
  for (const s of [newest, ...open.filter((s) => s !== newest)]) {
    if (await isCopyOf(t, link, entries, s.path, digests, signal)) {
      copyOf = s;
      break;
    }
  }
  if (copyOf === undefined) {
    throw new StowageError(
      'EEXIST',
      `${where}: ${link} is a real folder (a copy that did not keep links?) but it is not a copy of any backup set under ${dir}: it may hold the only copy of something. Left alone; inspect it, move it away, and run again.`,
      { details: { path: link } },
    );
  }
  throwIfAborted(signal);
  const tmp = await placeLink(t, dir, name, target, signal);
  const trash = posixJoin(dir, `${ASIDE_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
  try {
    await t.rename(link, trash);
  } catch (err) {
    await t.remove(tmp, { force: true }).catch(() => {});
    throw err;
  }
  try {
    await t.rename(tmp, link);
  } catch (err) {
    await t.rename(trash, link).catch(() => {});
    await t.remove(tmp, { force: true }).catch(() => {});
    throw err;
  }
  // Decided: the copy goes. Renamed first, so that what a stopped removal
  // leaves is known for a purge (see LeftoverDecision), not put back.
  const purging = posixJoin(dir, `${PURGING_PREFIX}${trash.slice(trash.lastIndexOf('/') + 1 + ASIDE_PREFIX.length)}`);
  await t.rename(trash, purging);
  await t.remove(purging, { recursive: true, force: true });
  return Object.freeze({ action: 'repaired' as const, link, target, copyOf: copyOf.id });
}
