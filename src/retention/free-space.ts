/**
 * Free-space mode of retention (the MIDAS lazylogger's "Maintain free
 * space"): when a disk fills up, purge the oldest backup sets, but only
 * while free space is below the target, never below a minimum count of
 * complete sets, never the newest complete set, and only sets of which a
 * verified copy exists on another node.
 *
 * A full disk is exactly when the newest set is likely to be broken (a
 * backup that died with `ENOSPC` leaves only `NAME.part` files), and a set
 * misnamed `2099/…` sorts newest whatever it holds. Neither may stand in for
 * a real backup: the set protected is the newest COMPLETE one (finished
 * files, no `.part` file, no lock) that is not dated after `now`, and only
 * such sets count toward `minKeep`. Sets newer than it (incomplete, locked
 * or future-dated) are never candidates either.
 *
 * "Verified" is checked file by file at the moment of the purge: the other
 * node holds the same set path, every file has the same size, and its
 * digest, computed on the far side, equals the local sidecar's DNA (or, for
 * a file without sidecar, the local file's digest). A node that cannot be
 * reached simply does not count as a copy.
 *
 * The tree itself is never a copy, however it is reached: a node naming
 * the same path (or, on the local disk, a path that resolves to the same
 * folder through symlinks) is refused up front; and since a bind mount, an
 * ssh alias of this host or a `cp -rs` mirror cannot be told apart by
 * name, the copy is looked for once more after the set has been renamed
 * out of the way. If it vanished with the rename, it was the tree itself:
 * the set is put back and the run stops with EBAD_CONFIG.
 *
 * @module
 */
import { realpath } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { dnaEqual, type Dna } from '../dna/dna-digest.js';
import { StowageError, type WarningCallback } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { posixJoin } from '../transport/put-source.js';
import type { FreeSpace, Transport } from '../transport/transport.js';
import { LocalTransport } from '../transport/local/local-transport.js';
import { throwIfAborted } from '../util/abort.js';
import { checkBooleanOption, checkInt, checkOptionKeys } from '../util/options.js';
import {
  checkDirArg,
  checkTransportArg,
  checkTreeRoot,
  foreignLockOnPath,
  inspectSet,
  pruneEmptyParents,
  readSidecarVia,
  removeSet,
  resolveTreeOptions,
  scanBackupTree,
  type BackupSet,
  type SetContents,
  type SkippedSet,
  type TreeOptions,
} from './backup-sets.js';

/** Another node that may hold a verified copy of each set. */
export interface ElsewhereNode {
  /** How to reach it. */
  readonly transport: Transport;
  /** The tree's root there (default: the same path as the local tree). */
  readonly dir?: string;
}

/** Options of {@link Retention.applyFreeSpace}. */
export interface FreeSpaceOptions {
  /** Purge while the file system holding the tree has less than this percentage free (0 < p < 100). */
  minFreePercent: number;
  /**
   * Never leave fewer complete sets than this (default 1, at least 1). Only
   * complete sets (finished files and no `.part` file, not locked) dated up
   * to `now` count; an empty, half-written or future-dated set does not.
   * The newest such set is never purged either way.
   */
  minKeep?: number;
  /** The other nodes; a set is purged only if one of them holds a verified copy. At least one. */
  verifiedElsewhere: readonly ElsewhereNode[];
  /** Decide only: report what would be purged (free space estimated from set sizes) and touch nothing. */
  dryRun?: boolean;
  /** IANA time zone the folder names are written in (default: the machine's local zone). */
  timeZone?: string;
  /**
   * The current time (default `Date.now()`): a set dated after it (a clock
   * or naming error, `2099/01/01/000000`) is neither protected as the
   * newest nor counted toward `minKeep`, and is left alone (listed in
   * `skipped`). As `now` of {@link Retention.apply}.
   */
  now?: Date | number;
  /** Name of the link beside the year folders, ignored by the walk (default `last`). */
  linkName?: string;
  /** Token of a lock the caller holds (`LOCKED/owner.json`), which then does not block the purge. */
  ownLockToken?: string;
  /** Odd names, locked trees. */
  onWarning?: WarningCallback;
  /** Throw on the first warning instead. */
  strict?: boolean;
  /** Cancels the run between sets. */
  signal?: AbortSignal;
  /** Progress: `scan`, then `purge` (sets and bytes). */
  onProgress?: ProgressCallback;
}

/** A set chosen by the free-space mode. */
export interface FreeSpacePurge {
  /** The set. */
  readonly set: BackupSet;
  /** Its size in bytes. */
  readonly bytes: number;
  /** Where its verified copy is: `<transport name>:<path>`. */
  readonly copyAt: string;
}

/** Result of {@link Retention.applyFreeSpace}. */
export interface FreeSpaceResult {
  /** Whether this was a dry run. */
  readonly dryRun: boolean;
  /** The target percentage. */
  readonly minFreePercent: number;
  /** Free space before. */
  readonly before: FreeSpace;
  /** Free space after (estimated from the set sizes in a dry run). */
  readonly after: FreeSpace;
  /** Whether free space reached the target. */
  readonly reachedTarget: boolean;
  /** Sets chosen for purging, oldest first (in a dry run: what would be purged). */
  readonly purge: readonly FreeSpacePurge[];
  /** Sets actually removed (empty in a dry run). */
  readonly removed: readonly FreeSpacePurge[];
  /** Sets left alone, with why (no verified copy elsewhere, locked, incomplete, dated after now). */
  readonly skipped: readonly SkippedSet[];
  /** Why the purge stopped: `target reached`, `minKeep` (as many complete sets left as it asks), `no more candidates`. */
  readonly stoppedBy: 'target reached' | 'minKeep' | 'no more candidates';
  /** Day, month and year folders removed because they became empty. */
  readonly prunedDirs: readonly string[];
}

const OPTIONS = ['minFreePercent', 'minKeep', 'verifiedElsewhere', 'dryRun', 'timeZone', 'now', 'linkName', 'ownLockToken', 'onWarning', 'strict', 'signal', 'onProgress'];

/**
 * Whether `t` is a {@link LocalTransport} (or a subclass), also when it
 * comes from another copy of this module (the built package and the
 * sources loaded side by side), where `instanceof` says no.
 */
function isLocal(t: Transport): boolean {
  if (t instanceof LocalTransport) return true;
  for (let p: unknown = Object.getPrototypeOf(t); p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    if ((p as { constructor?: { name?: unknown } }).constructor?.name === 'LocalTransport') return true;
  }
  return false;
}

/** The real path of a local folder, symlinks resolved; undefined when it cannot be resolved (missing). */
async function realDir(d: string): Promise<string | undefined> {
  try {
    return await realpath(resolve(d));
  } catch {
    return undefined;
  }
}

/**
 * With `set` renamed out of the way, whether its files are still on `node`
 * with the same sizes. Resolves `undefined` when they are; throws
 * EBAD_CONFIG when any vanished with the rename (the "copy" was the tree
 * itself, reached by another path); a reason to leave the set when the node
 * cannot be asked.
 */
async function stillElsewhere(node: ElsewhereNode, localRoot: string, set: BackupSet, contents: SetContents, copyAt: string, removedSoFar: readonly FreeSpacePurge[], signal: AbortSignal | undefined): Promise<string | undefined> {
  const where = 'Retention.applyFreeSpace';
  const t = node.transport;
  const remoteSet = posixJoin(node.dir ?? localRoot, set.id);
  const op = signal ? { signal } : {};
  const gone: string[] = [];
  for (const f of contents.files) {
    const rPath = posixJoin(remoteSet, f.rel);
    let st;
    try {
      st = await t.exists(rPath, op);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      return `its copy ${copyAt} could not be checked again once the set was moved aside (${(err as Error).message}): put back`;
    }
    if (st === undefined || st.type !== 'file' || st.size !== f.size) gone.push(`${t.name}:${rPath}`);
  }
  if (gone.length === 0) return undefined;
  throw new StowageError(
    'EBAD_CONFIG',
    `${where}: the copy "elsewhere" ${copyAt} vanished when ${set.path} was moved aside (${gone[0]}${gone.length > 1 ? ` and ${gone.length - 1} more` : ''}): it is the tree itself, reached by another path (a symlink, a bind mount, an ssh alias of this host, a cp -rs mirror). ${set.id} was put back and nothing more was purged${removedSoFar.length > 0 ? ` (removed before: ${removedSoFar.map((p) => `${p.set.id} with its copy at ${p.copyAt}`).join(', ')})` : ''}. Fix "verifiedElsewhere" so that it names only nodes holding a separate copy.`,
    { details: { where, option: 'verifiedElsewhere', set: set.id, copyAt, vanished: gone, removed: removedSoFar.map((p) => p.set.id) } },
  );
}

/** Whether `node` holds a verified copy of `set`; returns where, or why not. */
async function copyOn(local: Transport, localRoot: string, node: ElsewhereNode, set: BackupSet, contents: SetContents, o: TreeOptions): Promise<{ at: string; node: ElsewhereNode } | { why: string }> {
  const root = node.dir ?? localRoot;
  const t = node.transport;
  const remoteSet = posixJoin(root, set.id);
  const name = `${t.name}:${remoteSet}`;
  const signal = o.signal;
  const op = signal ? { signal } : {};
  try {
    const parts = set.id.split('/');
    const lock = await foreignLockOnPath(t, [root, ...parts.map((_, i) => posixJoin(root, ...parts.slice(0, i + 1)))], o);
    if (lock !== undefined) return { why: `${name} is locked by ${lock}` };
    for (const f of contents.files) {
      throwIfAborted(signal);
      const rPath = posixJoin(remoteSet, f.rel);
      const st = await t.exists(rPath, op);
      if (st === undefined || st.type !== 'file') return { why: `${t.name}:${rPath} is missing` };
      if (st.size !== f.size) return { why: `${t.name}:${rPath} has ${st.size} bytes, not ${f.size}` };
      const sidecar = contents.sidecars.get(f.rel);
      const expected: Dna = sidecar !== undefined ? await readSidecarVia(local, sidecar, signal) : await local.digest(f.path, 'md5', op);
      const actual = await t.digest(rPath, expected.algorithm, op);
      if (!dnaEqual(expected, actual)) return { why: `${t.name}:${rPath} does not match the DNA of ${f.path}` };
    }
    return { at: name, node };
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    return { why: `${name} could not be checked: ${(err as Error).message}` };
  }
}

function estimate(fs: FreeSpace, freed: number): FreeSpace {
  const availableBytes = Math.min(fs.totalBytes, fs.availableBytes + freed);
  return { totalBytes: fs.totalBytes, availableBytes, availablePercent: fs.totalBytes > 0 ? (availableBytes / fs.totalBytes) * 100 : 0 };
}

/**
 * Implementation of {@link Retention.applyFreeSpace}.
 *
 * @param transport - where the tree lives
 * @param dir - the tree's root
 * @param options - see {@link FreeSpaceOptions}
 */
export async function applyFreeSpace(transport: Transport, dir: string, options: FreeSpaceOptions): Promise<FreeSpaceResult> {
  const where = 'Retention.applyFreeSpace';
  checkTransportArg(where, transport);
  checkDirArg(where, dir);
  if (options === null || typeof options !== 'object') {
    throw new StowageError('EBAD_CONFIG', `${where}: options { minFreePercent, verifiedElsewhere } are required.`, { details: { where } });
  }
  checkOptionKeys(where, options, OPTIONS);
  const target = options.minFreePercent;
  if (typeof target !== 'number' || !Number.isFinite(target) || target <= 0 || target >= 100) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "minFreePercent" must be a number above 0 and below 100, got ${String(target)}.`, { details: { where, option: 'minFreePercent', value: target } });
  }
  const minKeep = checkInt(where, 'minKeep', options.minKeep ?? 1, 1);
  const nodes = options.verifiedElsewhere;
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.some((n: ElsewhereNode | null) => n === null || typeof n !== 'object' || typeof n.transport?.digest !== 'function')) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "verifiedElsewhere" must list at least one { transport, dir? } holding copies of the sets.`, { details: { where, option: 'verifiedElsewhere' } });
  }
  // The tree itself is no copy: compared by transport name and normalised
  // path (a second LocalTransport, a trailing slash, ./ or ..), not by object.
  // A local path is resolved against the working directory first (a relative dir names the same tree).
  const norm = (t: Transport, d: string): string => posix.normalize((isLocal(t) ? resolve(d) : d) + '/');
  const same = (t: Transport, d: string): boolean => t.name === transport.name && norm(t, d) === norm(transport, dir);
  for (const [i, n] of nodes.entries()) {
    checkOptionKeys(`${where} verifiedElsewhere`, n, ['transport', 'dir']);
    if (n.dir !== undefined) checkDirArg(where, n.dir, `verifiedElsewhere[${i}].dir`);
    if ((n.transport === transport && (n.dir ?? dir) === dir) || same(n.transport, n.dir ?? dir)) {
      throw new StowageError('EBAD_CONFIG', `${where}: "verifiedElsewhere" names the tree itself; a copy must be on another node or path.`, { details: { where, option: 'verifiedElsewhere' } });
    }
  }
  // The same folder reached through a symlink: on the local disk, compare
  // real paths. (Other aliases are caught at removal time, stillElsewhere.)
  if (isLocal(transport)) {
    const realTree = await realDir(dir);
    for (const n of realTree === undefined ? [] : nodes) {
      if (!isLocal(n.transport)) continue;
      const nodeDir = n.dir ?? dir;
      const realNode = await realDir(nodeDir);
      if (realNode === realTree) {
        throw new StowageError(
          'EBAD_CONFIG',
          `${where}: "verifiedElsewhere" names the tree itself: ${nodeDir} is ${realTree} (through a symlink), the tree being purged; a copy must be on another node or path.`,
          { details: { where, option: 'verifiedElsewhere', dir: nodeDir, realPath: realTree } },
        );
      }
    }
  }
  checkBooleanOption(where, 'dryRun', options.dryRun);
  const dryRun = options.dryRun ?? false;
  const nowMs = options.now === undefined ? Date.now() : options.now instanceof Date ? options.now.getTime() : options.now;
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "now" must be a valid Date or epoch milliseconds, got ${String(options.now)}.`, { details: { where, option: 'now', value: String(options.now) } });
  }
  const o = resolveTreeOptions(where, {
    ...(options.timeZone !== undefined ? { timeZone: options.timeZone } : {}),
    ...(options.linkName !== undefined ? { linkName: options.linkName } : {}),
    ...(options.ownLockToken !== undefined ? { ownLockToken: options.ownLockToken } : {}),
    ...(options.onWarning !== undefined ? { onWarning: options.onWarning } : {}),
    ...(options.strict !== undefined ? { strict: options.strict } : {}),
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  });
  const { signal, onProgress } = options;
  throwIfAborted(signal);
  if (!transport.capabilities.freeSpace) {
    throw new StowageError('EBAD_CONFIG', `${where}: transport ${transport.name} cannot report free space.`, { details: { where, transport: transport.name } });
  }
  await checkTreeRoot(transport, dir, where, signal);

  const scan = new ProgressTracker('scan', onProgress);
  const { sets } = await scanBackupTree(transport, dir, o);
  scan.add(0, sets.length);
  scan.report(true);
  const before = await transport.freeSpace(dir, signal ? { signal } : {});
  const open = sets.filter((s) => s.lockedBy === undefined);
  const skipped: SkippedSet[] = sets.filter((s) => s.lockedBy !== undefined).map((set) => ({ set, reason: `locked by ${set.lockedBy}` }));
  const purge: FreeSpacePurge[] = [];
  const removed: FreeSpacePurge[] = [];
  const prunedDirs: string[] = [];
  const progress = new ProgressTracker('purge', onProgress);
  // Only complete sets dated up to now count toward minKeep, and the newest
  // of them is protected: not whatever sorts newest (a 2099 misnomer, an
  // empty folder, tonight's backup that died of the full disk with only
  // .part files).
  let remaining = 0;
  let newestComplete = -1;
  // Nothing to free: no set is read (each look is a walk of its tree, over SSH too).
  const needed = before.availablePercent < target;
  for (const [i, set] of needed ? open.entries() : []) {
    if (set.time.getTime() > nowMs) {
      skipped.push({ set, reason: `dated after now (${new Date(nowMs).toISOString()}): not counted, not protected, left alone; check the clock or the folder name` });
      continue;
    }
    throwIfAborted(signal);
    const c = await inspectSet(transport, set.path, o);
    if (c.locks.length === 0 && c.complete) {
      remaining++;
      newestComplete = i;
    }
  }
  let fs = before;
  let stoppedBy: FreeSpaceResult['stoppedBy'] = needed ? 'no more candidates' : 'target reached';
  let freed = 0;
  // The newest complete set, and everything newer, is never a candidate.
  for (const set of open.slice(0, Math.max(newestComplete, 0))) {
    if (fs.availablePercent >= target) {
      stoppedBy = 'target reached';
      break;
    }
    if (remaining <= minKeep) {
      stoppedBy = 'minKeep';
      break;
    }
    throwIfAborted(signal);
    const contents = await inspectSet(transport, set.path, o);
    if (contents.locks[0] !== undefined) {
      skipped.push({ set, reason: `locked by ${contents.locks[0]}` });
      continue;
    }
    // Nothing to compare means nothing proven: a set still being written
    // (a .part file), or holding no finished file, is never "verified elsewhere".
    if (!contents.complete) {
      skipped.push({ set, reason: contents.partFiles.length > 0 ? `incomplete (${contents.partFiles[0]} is still being written): no copy can be proven` : 'it holds no finished file: no copy can be proven' });
      continue;
    }
    let copy: { at: string; node: ElsewhereNode } | undefined;
    const whyNot: string[] = [];
    for (const node of nodes) {
      const r = await copyOn(transport, dir, node, set, contents, o);
      if ('at' in r) {
        copy = r;
        break;
      }
      whyNot.push(r.why);
    }
    if (copy === undefined) {
      skipped.push({ set, reason: `no verified copy on another node: ${whyNot.join('; ')}` });
      continue;
    }
    const p: FreeSpacePurge = Object.freeze({ set, bytes: contents.bytes, copyAt: copy.at });
    purge.push(p);
    remaining--;
    if (dryRun) {
      freed += contents.bytes;
      fs = estimate(before, freed);
      continue;
    }
    const found = copy;
    let outcome: string;
    try {
      outcome = await removeSet(transport, dir, set, o, () => stillElsewhere(found.node, dir, set, contents, found.at, removed, signal));
    } catch (err) {
      // The copy vanished with the rename, and the set is back in place. If
      // the copy is back too, it was the tree itself: the run fails. If it
      // is still gone, it was removed on that node meanwhile (its own
      // retention): this set is kept, and the run goes on.
      if (!(err instanceof StowageError && err.code === 'EBAD_CONFIG' && Array.isArray(err.details['vanished']))) throw err;
      let again: string | undefined;
      try {
        again = await stillElsewhere(found.node, dir, set, contents, found.at, removed, signal);
      } catch (err2) {
        if (!(err2 instanceof StowageError && err2.code === 'EBAD_CONFIG' && Array.isArray(err2.details['vanished']))) throw err2;
        again = `its copy ${found.at} vanished while it was removed (removed on that node meanwhile?): kept`;
      }
      if (again === undefined) throw err;
      outcome = again;
    }
    if (outcome !== 'removed') {
      purge.pop();
      remaining++;
      skipped.push({ set, reason: outcome });
      continue;
    }
    removed.push(p);
    progress.add(contents.bytes, 1);
    prunedDirs.push(...(await pruneEmptyParents(transport, dir, set, signal)));
    fs = await transport.freeSpace(dir, signal ? { signal } : {});
  }
  if (fs.availablePercent >= target) stoppedBy = 'target reached';
  else if (stoppedBy !== 'minKeep' && remaining <= minKeep) stoppedBy = 'minKeep';
  progress.report(true);
  return Object.freeze({
    dryRun,
    minFreePercent: target,
    before,
    after: fs,
    reachedTarget: fs.availablePercent >= target,
    purge: Object.freeze(purge),
    removed: Object.freeze(removed),
    skipped: Object.freeze(skipped),
    stoppedBy,
    prunedDirs: Object.freeze(prunedDirs),
  });
}
