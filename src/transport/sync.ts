/**
 * `sync()`: an rsync-like tree sync between any two transports, and its pure
 * planner `planSync()`.
 *
 * Why it is careful about deletion: the scripts it replaces lost data the
 * classic way: a source disk that failed to mount looked empty, and
 * `rsync --delete` dutifully emptied the backup. So:
 * - a source that is empty or missing while the destination is not is
 *   refused (EDELETE_GUARD) unless `allowEmptySource`;
 * - `delete: 'after'` removes only after every copy succeeded (and the
 *   sidecar check found no mutant), never when anything failed;
 * - `maxDelete` / `maxDeleteFraction` refuse a plan that deletes too much,
 *   before anything is touched;
 * - `dryRun` computes the same plan (and the same refusals) and touches
 *   nothing;
 * - deletion goes entry by entry, deepest first, never recursively: a
 *   folder is removed only once empty, so what the sync must not touch (a
 *   LOCKED subtree, what the filter leaves out on either side, what
 *   vanished while listing, what appeared since) stays, with its folders;
 * - a file with a sidecar on the source is checked against it while it is
 *   sent: a source that no longer matches its DNA never replaces the copy on
 *   the destination (it is a mutant, and nothing is deleted).
 *
 * With `lock: true` a `LOCKED` directory is planted on the destination
 * for the duration (readers there skip the tree), and a source holding a
 * `LOCKED` at its root (being written) is not synced (ELOCKED). Subtrees
 * holding `LOCKED` are skipped on either side, and protected from deletion.
 *
 * Files are compared by type, size and mtime (whole seconds: SFTP's
 * resolution), or by digest with `checksum: true`. Copied files keep their
 * mtime and mode; symlinks are copied as symlinks. Several files are in
 * flight at once.
 *
 * @module
 */
import { channel } from 'node:diagnostics_channel';
import { realpath } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { DNA_ALGORITHMS, dnaEqual, parseSidecar, SIDECAR_SUFFIX, type Dna, type DnaAlgorithm } from '../dna/dna-digest.js';
import { LOCK_DIR_NAME } from '../dna/dna-scan.js';
import { StowageError, isStowageError, warnOrThrow, type StowageErrorCode, type WarningCallback } from '../errors.js';
import { LockDir } from '../lock/lock-dir.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { anySignal, fanOutSignal, throwIfAborted } from '../util/abort.js';
import { checkInt, checkOneOf, checkOptionKeys } from '../util/options.js';
import { LocalTransport } from './local/local-transport.js';
import { transportLockFs } from './lock-fs.js';
import { posixDirname, posixJoin } from './put-source.js';
import type { PutSource, Transport, TransportEntry, TransportFileType } from './transport.js';

/** One entry of a listed tree, keyed by its path relative to the tree's root. */
export interface SyncTreeEntry {
  /** Path relative to the root, `/`-separated, no leading `/`. */
  readonly path: string;
  /** File, directory or symlink (other types are not synced). */
  readonly type: TransportFileType;
  /** Size in bytes. */
  readonly size: number;
  /** Modification time, ms since the epoch. */
  readonly mtimeMs: number;
  /** Permission bits. */
  readonly mode: number;
  /** Symlink target, for symlinks. */
  readonly target?: string;
  /** Digest, when listed with `checksum: true`. */
  readonly dna?: Dna;
}

/** A listed tree: relative path → entry. */
export type SyncTree = ReadonlyMap<string, SyncTreeEntry>;

/** Why a file is copied. */
export type SyncCopyReason = 'new' | 'size' | 'mtime' | 'checksum' | 'type';

/** A file or symlink the plan copies. */
export interface SyncCopy {
  /** Relative path. */
  readonly path: string;
  /** `file` or `symlink`. */
  readonly type: 'file' | 'symlink';
  /** Bytes to copy (0 for symlinks). */
  readonly size: number;
  /** Source mtime, preserved. */
  readonly mtimeMs: number;
  /** Source mode, preserved. */
  readonly mode: number;
  /** Symlink target. */
  readonly target?: string;
  /** Why it is copied. */
  readonly reason: SyncCopyReason;
}

/** What {@link planSync} decides; pure data. */
export interface SyncPlan {
  /** Directories to create on the destination, parents first. */
  readonly mkdirs: readonly string[];
  /** Files and symlinks to copy. */
  readonly copies: readonly SyncCopy[];
  /**
   * Destination entries in the way of a copy (a directory where a file
   * goes, or the reverse). They are removed, with everything listed under
   * them (entry by entry, never recursively: what appeared since the
   * listing stays, and the copy then fails with EEXIST), only after every
   * other copy succeeded, just before the copies that take their place;
   * they count as deletions (see {@link SyncPlan.removals}).
   */
  readonly replaces: readonly string[];
  /** Destination entries the source no longer has, removed after every copy succeeded (`delete: 'after'`); deepest first. */
  readonly deletes: readonly string[];
  /**
   * How many destination entries the plan removes: each of `deletes`, and
   * each of `replaces` with every entry under it. `maxDelete` and
   * `maxDeleteFraction` are checked against this number.
   */
  readonly removals: number;
  /** Type conflicts left alone: deletion is off, or the destination entry holds entries the sync must not touch. */
  readonly conflicts: readonly string[];
  /**
   * Destination folders the source no longer has, kept (not deleted)
   * because they hold entries the sync must not touch: excluded by the
   * filter, under LOCKED, or vanished while listing. Always empty from
   * {@link planSync}, which sees only the trees; {@link sync} fills it.
   */
  readonly kept: readonly string[];
  /** Directories whose mtime is set after the copies, deepest first. */
  readonly dirMtimes: readonly { readonly path: string; readonly mtimeMs: number }[];
  /** Source entries already identical on the destination. */
  readonly unchanged: number;
  /** Bytes the copies move. */
  readonly bytesToCopy: number;
  /** Entries on the destination (the base of `maxDeleteFraction`). */
  readonly destinationEntries: number;
  /** Entries on the source. */
  readonly sourceEntries: number;
}

/** Options of {@link planSync}. */
export interface PlanSyncOptions {
  /** `'after'`: plan the deletion of what the source no longer has. Default: no deletion. */
  delete?: false | 'after';
  /** Compare digests (`dna` in the trees) instead of mtimes. */
  checksum?: boolean;
  /** Copy symlinks as symlinks (default true); false skips them. */
  symlinks?: boolean;
}

/** A copy that failed: listed in `details.failed` of the error a failed sync throws. */
export interface SyncFailure {
  /** Relative path. */
  readonly path: string;
  /** The error code. */
  readonly code: string;
  /** The error message. */
  readonly message: string;
}

/** A sidecar check of a transferred file. */
export interface SyncVerification {
  /** Relative path of the data file. */
  readonly path: string;
  /** Whether the destination's digest matches the sidecar. */
  readonly ok: boolean;
  /** The DNA recorded in the source's sidecar. */
  readonly expected: Dna;
  /** The DNA computed on the destination. */
  readonly actual: Dna;
  /** The DNA of the bytes sent, when the file was copied in this run. */
  readonly sent?: Dna;
}

/** What {@link sync} did. */
export interface SyncResult {
  /** The plan that was carried out (or, with `dryRun`, would be). */
  readonly plan: SyncPlan;
  /** Whether this was a dry run (nothing touched). */
  readonly dryRun: boolean;
  /** Files copied, with the DNA of the bytes sent. */
  readonly copied: readonly { readonly path: string; readonly dna: Dna }[];
  /** Symlinks created or updated. */
  readonly linked: readonly string[];
  /** Entries deleted on the destination (replaced entries included). */
  readonly deleted: readonly string[];
  /**
   * Sidecar checks of the files sent (each file that has `FILE.dna` on the
   * source): of the bytes stored on the destination, or, for a source that
   * did not match its sidecar while it was sent, of those bytes (then not
   * copied: the destination keeps what it had). In path order.
   */
  readonly verified: readonly SyncVerification[];
  /** The failed sidecar checks: the mutants (nothing is deleted when there is one), in path order. */
  readonly mutants: readonly SyncVerification[];
  /**
   * Why the deletion step did not run, when `delete: 'after'` was asked
   * (also set when entries in the way of a copy were left for that reason).
   */
  readonly deleteSkipped?: 'mutants';
  /** Bytes sent. */
  readonly bytesCopied: number;
}

/** Options of {@link sync}. */
export interface SyncOptions extends PlanSyncOptions {
  /** Most entries a run may delete (default: no count limit). */
  maxDelete?: number;
  /** Most deletions as a fraction (0–1) of the destination's entries (default 0.5). */
  maxDeleteFraction?: number;
  /** Sync even when the source is empty or missing while the destination is not (default false). */
  allowEmptySource?: boolean;
  /** Compute the plan and the refusals, touch nothing. */
  dryRun?: boolean;
  /** Plant a LOCKED directory on the destination for the duration (default false). */
  lock?: boolean;
  /**
   * Name of the sync's own lock directory (default `LOCKED`). A custom name
   * does not stop the standard `LOCKED` of other writers (LockDir,
   * Retention) from being honoured: a folder holding either is left out,
   * and a root holding either is refused.
   */
  lockName?: string;
  /** A destination lock older than this is stale and taken over (default 60 000 ms; at least 3). */
  lockStaleMs?: number;
  /**
   * The token of a lock the caller itself holds at the source root (e.g.
   * `lock.owner.token` of the global LockDir of a nightly backup): a source
   * LOCKED by that very token is synced, since its writer is the caller and
   * what it wrote is complete. Likewise at the destination root, for a
   * caller that planted the destination's LOCKED itself (without `lock:
   * true`; see transportLockFs). A LOCKED held by anyone else still refuses.
   */
  ownLockToken?: string;
  /**
   * Files in flight at once (default 32). Over SSH each file costs a few
   * round trips (open, close, rename) and a file creation on the far side;
   * many files in flight keep the link busy meanwhile.
   */
  concurrency?: number;
  /** Check transferred files that have a sidecar against it on the destination (default true). */
  verify?: boolean;
  /** Digest algorithm for the DNA of sent bytes and for `checksum` (default md5). */
  algorithm?: DnaAlgorithm;
  /**
   * Return false to leave an entry out. It is judged on each side, and an
   * entry left out on either side is neither copied nor deleted: a source
   * file excluded (say, still being written) keeps its copy on the
   * destination, and a folder holding excluded entries is not deleted.
   */
  filter?: (path: string, entry: TransportEntry) => boolean;
  /** Byte and file progress. */
  onProgress?: ProgressCallback;
  /** Per-entry trouble (a LOCKED subtree skipped, a symlink on a transport without them, a mutant). */
  onWarning?: WarningCallback;
  /** Turn warnings into errors. */
  strict?: boolean;
  /** Cancels the sync; files in flight are abandoned (their `.part` removed) and the lock released. */
  signal?: AbortSignal;
}

const SYNC_OPTIONS = [
  'delete',
  'checksum',
  'symlinks',
  'maxDelete',
  'maxDeleteFraction',
  'allowEmptySource',
  'dryRun',
  'lock',
  'lockName',
  'lockStaleMs',
  'ownLockToken',
  'concurrency',
  'verify',
  'algorithm',
  'filter',
  'onProgress',
  'onWarning',
  'strict',
  'signal',
];
const PLAN_OPTIONS = ['delete', 'checksum', 'symlinks'];

const syncChannel = channel('stowage:transport:sync');

const seconds = (ms: number): number => Math.floor(ms / 1000);

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}

/**
 * Runs `fn` over `paths` one depth level at a time (`shallowest` first:
 * parents before children; `deepest` first: children before parents), at
 * most `n` at once within a level.
 */
async function eachByDepth(paths: Iterable<string>, order: 'shallowest' | 'deepest', n: number, fn: (path: string) => Promise<void>): Promise<void> {
  const levels = new Map<number, string[]>();
  for (const p of paths) {
    const list = levels.get(depth(p));
    if (list === undefined) levels.set(depth(p), [p]);
    else list.push(p);
  }
  for (const k of [...levels.keys()].sort((a, b) => (order === 'shallowest' ? a - b : b - a))) await eachLimit(levels.get(k)!, n, fn);
}

function underAny(path: string, prefixes: ReadonlySet<string>): boolean {
  if (prefixes.size === 0) return false;
  for (let p = path; ; ) {
    if (prefixes.has(p)) return true;
    const i = p.lastIndexOf('/');
    if (i < 0) return false;
    p = p.slice(0, i);
  }
}

/**
 * Decides what a sync does: pure, touches nothing.
 *
 * @param source - the source tree (from a listing)
 * @param destination - the destination tree (empty when it does not exist)
 * @param options - delete, checksum, symlinks
 *
 * @example
 * ```ts
 * const plan = planSync(srcTree, dstTree, { delete: 'after' });
 * console.log(`${plan.copies.length} to copy, ${plan.deletes.length} to delete`);
 * ```
 */
export function planSync(source: SyncTree, destination: SyncTree, options: PlanSyncOptions = {}): SyncPlan {
  checkOptionKeys('planSync', options, PLAN_OPTIONS);
  const del = options.delete === 'after';
  const withLinks = options.symlinks ?? true;
  const mkdirs: string[] = [];
  const copies: SyncCopy[] = [];
  const replaces: string[] = [];
  const conflicts: string[] = [];
  const dirMtimes: { path: string; mtimeMs: number }[] = [];
  let unchanged = 0;
  let bytesToCopy = 0;
  const removedDirs = new Set<string>();
  // Source entries not synced (a symlink with symlinks: false, a device or
  // fifo): what the destination holds at or under their path is left alone,
  // as rsync --no-links --delete leaves it: a folder that an earlier copy
  // made of a linked folder is not emptied because the link is skipped.
  const skipped = new Set<string>();

  const paths = [...source.keys()].sort();
  for (const path of paths) {
    const s = source.get(path)!;
    if (s.type === 'other' || (s.type === 'symlink' && !withLinks)) {
      skipped.add(path);
      continue;
    }
    if (underAny(posixDirname(path) === '.' ? '' : posixDirname(path), removedDirs)) continue;
    const d = destination.get(path);
    const dirClash = d !== undefined && d.type !== s.type && (d.type === 'dir' || s.type === 'dir');
    if (dirClash) {
      if (!del) {
        conflicts.push(path);
        if (s.type === 'dir') removedDirs.add(path);
        continue;
      }
      replaces.push(path);
    }
    const fresh = d === undefined || dirClash;
    if (s.type === 'dir') {
      if (fresh) mkdirs.push(path);
      if (fresh || seconds(d.mtimeMs) !== seconds(s.mtimeMs)) dirMtimes.push({ path, mtimeMs: s.mtimeMs });
      else unchanged++;
      continue;
    }
    let reason: SyncCopyReason | undefined;
    if (fresh) reason = d === undefined ? 'new' : 'type';
    else if (d.type !== s.type) reason = 'type';
    else if (s.type === 'symlink') reason = d.target === s.target ? undefined : 'new';
    else if (d.size !== s.size) reason = 'size';
    else if (options.checksum) {
      reason = s.dna !== undefined && d.dna !== undefined && dnaEqual(s.dna, d.dna) ? undefined : 'checksum';
    } else if (seconds(d.mtimeMs) !== seconds(s.mtimeMs)) reason = 'mtime';
    if (reason === undefined) {
      unchanged++;
      continue;
    }
    const c: { -readonly [K in keyof SyncCopy]: SyncCopy[K] } = { path, type: s.type === 'symlink' ? 'symlink' : 'file', size: s.type === 'file' ? s.size : 0, mtimeMs: s.mtimeMs, mode: s.mode, reason };
    if (s.target !== undefined) c.target = s.target;
    copies.push(c);
    bytesToCopy += c.size;
  }

  const deletes: string[] = [];
  if (del) {
    // Top-most extraneous entries first in discovery, then sorted deepest first.
    const replaced = new Set(replaces);
    for (const path of [...destination.keys()].sort()) {
      if (source.has(path) || underAny(posixDirname(path), replaced) || underAny(path, skipped)) continue;
      deletes.push(path);
    }
    deletes.sort((a, b) => depth(b) - depth(a) || (a < b ? 1 : a > b ? -1 : 0));
  }
  const removals = countRemovals(deletes, replaces, destination);
  dirMtimes.sort((a, b) => depth(b.path) - depth(a.path));
  return Object.freeze({
    mkdirs,
    copies,
    replaces,
    deletes,
    removals,
    conflicts,
    kept: [],
    dirMtimes,
    unchanged,
    bytesToCopy,
    destinationEntries: destination.size,
    sourceEntries: source.size,
  });
}

/** Entries a plan removes: each deleted one, and each replaced one with everything under it. */
function countRemovals(deletes: readonly string[], replaces: readonly string[], destination: SyncTree): number {
  let removals = deletes.length + replaces.length;
  if (replaces.length > 0) {
    const replaced = new Set(replaces);
    for (const path of destination.keys()) if (!replaced.has(path) && underAny(posixDirname(path), replaced)) removals++;
  }
  return removals;
}

/**
 * `plan` without touching the destination folders in `holders` (those that
 * hold entries the sync must not touch): such a folder is not deleted (it
 * goes to `kept`), and not replaced (it becomes a conflict, and what would
 * have taken its place is not copied).
 */
function keepHolders(plan: SyncPlan, destination: SyncTree, holders: ReadonlySet<string>): SyncPlan {
  if (holders.size === 0) return plan;
  const blocked = new Set(plan.replaces.filter((p) => holders.has(p)));
  const kept = plan.deletes.filter((p) => holders.has(p));
  if (blocked.size === 0 && kept.length === 0) return plan;
  const deletes = plan.deletes.filter((p) => !holders.has(p));
  const replaces = plan.replaces.filter((p) => !blocked.has(p));
  const copies = plan.copies.filter((c) => !underAny(c.path, blocked));
  return Object.freeze({
    ...plan,
    mkdirs: plan.mkdirs.filter((p) => !underAny(p, blocked)),
    copies,
    replaces,
    deletes,
    removals: countRemovals(deletes, replaces, destination),
    conflicts: [...plan.conflicts, ...blocked].sort(),
    kept,
    dirMtimes: plan.dirMtimes.filter((d) => !underAny(d.path, blocked)),
    bytesToCopy: copies.reduce((n, c) => n + c.size, 0),
  });
}

/**
 * The lock folder names a sync honours: its own `lockName`, and the
 * standard `LOCKED` that LockDir, Retention and the recipes plant, which a
 * custom name must not turn into an ordinary folder to copy or delete.
 */
function lockNamesOf(lockName: string): ReadonlySet<string> {
  return new Set([lockName, LOCK_DIR_NAME]);
}

interface ListOptions {
  filter: SyncOptions['filter'];
  /** Lock folder names: a folder holding one is left out (see {@link lockNamesOf}); at the root they are not entries. */
  lockNames: ReadonlySet<string>;
  /** Leave out `NAME.part` files (taken for files still being written) and report them; they are not deleted on the other side either. */
  skipPartFiles: boolean;
  onPartFile: (rel: string) => void;
  /** An entry whose name is not valid UTF-8 (it holds U+FFFD): left out, and not deleted on the other side. */
  onUndecodable: (rel: string) => void;
  checksum: boolean;
  algorithm: DnaAlgorithm;
  concurrency: number;
  onLocked: (relDir: string) => void;
  /** An entry that vanished while the tree was listed: it is left out, and not deleted on the other side. */
  onVanished: (rel: string) => void;
  signal: AbortSignal | undefined;
}

/** A listed tree, with the paths the listing left out although they exist (or existed while it ran). */
interface Listing {
  readonly tree: Map<string, SyncTreeEntry>;
  /** Entries the filter excluded, and entries that vanished while listing: a sync neither copies nor deletes them. */
  readonly hidden: Set<string>;
  /** Those of `hidden` that the filter excluded. */
  readonly filtered: Set<string>;
}

/** Runs `fn` over `items` with at most `n` at once; stops starting new ones after the first failure. */
async function eachLimit<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (errors.length > 0) throw errors[0];
}

/**
 * Lists a tree on a transport: relative path → entry. Subtrees holding a
 * lock directory are left out (reported through `onLocked`), as are
 * `.part` files and symlinks of the source (writes in progress). Entries
 * the filter excludes, and entries that vanish while the tree is listed
 * (a folder removed meanwhile), are left out and put in `hidden`. Only a
 * missing root is ENOT_FOUND.
 */
async function listTree(t: Transport, root: string, o: ListOptions): Promise<Listing> {
  const out = new Map<string, SyncTreeEntry>();
  const hidden = new Set<string>();
  const filtered = new Set<string>();
  const vanished = (rel: string, err: unknown): boolean => {
    if (!isStowageError(err, 'ENOT_FOUND')) return false;
    hidden.add(rel);
    o.onVanished(rel);
    return true;
  };
  const dirs: string[] = [''];
  const links: SyncTreeEntry[] = [];
  const files: SyncTreeEntry[] = [];
  while (dirs.length > 0) {
    const batch = dirs.splice(0, dirs.length);
    await eachLimit(batch, o.concurrency, async (rel) => {
      throwIfAborted(o.signal);
      let entries: TransportEntry[];
      try {
        entries = await t.list(rel === '' ? root : posixJoin(root, rel), o.signal ? { signal: o.signal } : {});
      } catch (err) {
        if (rel !== '' && vanished(rel, err)) {
          out.delete(rel);
          return;
        }
        throw err;
      }
      if (rel !== '' && entries.some((e) => o.lockNames.has(e.name) && e.type === 'dir')) {
        o.onLocked(rel);
        return;
      }
      for (const e of entries) {
        if (rel === '' && o.lockNames.has(e.name)) continue;
        const path = rel === '' ? e.name : `${rel}/${e.name}`;
        // A name that is not valid UTF-8 comes as type "other" with U+FFFD
        // in it (LocalTransport): it cannot be named to copy or delete it.
        // Neither is done, and said so.
        if (e.type === 'other' && e.name.includes('\uFFFD')) {
          hidden.add(path);
          o.onUndecodable(path);
          continue;
        }
        if (o.skipPartFiles && (e.type === 'file' || e.type === 'symlink') && e.name.endsWith('.part')) {
          hidden.add(path);
          o.onPartFile(path);
          continue;
        }
        if (o.filter !== undefined && !o.filter(path, e)) {
          hidden.add(path);
          filtered.add(path);
          continue;
        }
        const entry: SyncTreeEntry = { path, type: e.type, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode };
        out.set(path, entry);
        if (e.type === 'dir') dirs.push(path);
        else if (e.type === 'symlink') links.push(entry);
        else if (e.type === 'file') files.push(entry);
      }
    });
  }
  await eachLimit(links, o.concurrency, async (e) => {
    if (!out.has(e.path)) return;
    try {
      out.set(e.path, { ...e, target: await t.readlink(posixJoin(root, e.path), o.signal ? { signal: o.signal } : {}) });
    } catch (err) {
      if (!vanished(e.path, err)) throw err;
      out.delete(e.path);
    }
  });
  if (o.checksum) {
    await eachLimit(files, o.concurrency, async (e) => {
      if (!out.has(e.path)) return;
      try {
        out.set(e.path, { ...e, dna: await t.digest(posixJoin(root, e.path), o.algorithm, o.signal ? { signal: o.signal } : {}) });
      } catch (err) {
        if (!vanished(e.path, err)) throw err;
        out.delete(e.path);
      }
    });
  }
  return { tree: out, hidden, filtered };
}

/**
 * EBAD_CONFIG when source and destination are the same tree, or one lies
 * inside the other, on one transport (the same object, or two local ones:
 * real paths compared). `sync(local, '/data/backup/incoming', local,
 * '/data/backup', { delete: 'after' })` would otherwise plan to delete the
 * source's own files as "gone from the source" on the destination side.
 */
async function checkOverlap(src: Transport, srcDir: string, dst: Transport, dstDir: string): Promise<void> {
  const local = src instanceof LocalTransport && dst instanceof LocalTransport;
  if (src !== dst && !local) return;
  const norm = async (d: string): Promise<string> => {
    const abs = local ? resolve(d) : posix.normalize(d);
    const real = local ? await realpath(abs).catch(() => abs) : abs;
    return real.endsWith('/') ? real : real + '/';
  };
  const [a, b] = await Promise.all([norm(srcDir), norm(dstDir)]);
  if (a.startsWith(b) || b.startsWith(a)) {
    const how = a === b ? 'are the same folder' : a.startsWith(b) ? 'overlap: the source lies inside the destination' : 'overlap: the destination lies inside the source';
    throw new StowageError('EBAD_CONFIG', `Refusing to sync ${src.name}:${srcDir} to ${dst.name}:${dstDir}: they ${how}. Nothing was changed. Sync between separate folders.`, {
      details: { source: srcDir, destination: dstDir, option: 'dstDir' },
    });
  }
}

async function readSmallFile(t: Transport, path: string, signal: AbortSignal | undefined): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of t.createReadStream(path, signal ? { signal } : {})) {
    const b = c as Buffer;
    n += b.length;
    if (n > 1 << 16) throw new StowageError('EBAD_SIDECAR', `Sidecar ${path} is larger than 64 KiB.`, { details: { sidecar: path } });
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function checkFraction(where: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be a number from 0 to 1, got ${String(v)}.`, { details: { where, option: name, value: v } });
  }
  return v;
}

/**
 * Syncs the tree `srcDir` on `src` into `dstDir` on `dst`, like
 * `rsync -a [--delete-after]`, with guards against mass deletion, an
 * optional LOCKED protocol, and a sidecar (DNA) check of what was sent.
 *
 * Copy failures stop the run (files in flight finish), nothing is deleted,
 * and the first failure is thrown with all of them in `details.failed`.
 *
 * @param src - where the tree is
 * @param srcDir - its root on `src`
 * @param dst - where it goes
 * @param dstDir - the root on `dst` (created when missing)
 * @param options - see {@link SyncOptions}
 *
 * @example
 * ```ts
 * const result = await sync(new LocalTransport(), '/var/backups/svn', remote, '/backups/svn', {
 *   delete: 'after',
 *   maxDelete: 50,
 *   lock: true,
 * });
 * if (result.mutants.length > 0) alert(result.mutants);
 * ```
 */
export async function sync(src: Transport, srcDir: string, dst: Transport, dstDir: string, options: SyncOptions = {}): Promise<SyncResult> {
  const W = 'sync';
  checkOptionKeys(W, options, SYNC_OPTIONS);
  const o = Object.freeze({
    delete: options.delete === undefined || options.delete === false ? (false as const) : checkOneOf(W, 'delete', options.delete, ['after'] as const),
    checksum: options.checksum ?? false,
    symlinks: options.symlinks ?? true,
    maxDelete: options.maxDelete === undefined || options.maxDelete === Infinity ? Infinity : checkInt(W, 'maxDelete', options.maxDelete, 0),
    maxDeleteFraction: checkFraction(W, 'maxDeleteFraction', options.maxDeleteFraction ?? 0.5),
    allowEmptySource: options.allowEmptySource ?? false,
    dryRun: options.dryRun ?? false,
    lock: options.lock ?? false,
    lockName: options.lockName ?? LOCK_DIR_NAME,
    lockStaleMs: checkInt(W, 'lockStaleMs', options.lockStaleMs ?? 60_000, 3),
    concurrency: checkInt(W, 'concurrency', options.concurrency ?? 32, 1, 256),
    verify: options.verify ?? true,
    algorithm: checkOneOf(W, 'algorithm', options.algorithm ?? 'md5', DNA_ALGORITHMS),
    filter: options.filter,
    onProgress: options.onProgress,
    onWarning: options.onWarning,
    strict: options.strict ?? false,
  });
  if (o.filter !== undefined && typeof o.filter !== 'function') {
    throw new StowageError('EBAD_CONFIG', `${W}: option "filter" must be a function.`, { details: { where: W, option: 'filter' } });
  }
  if (options.ownLockToken !== undefined && (typeof options.ownLockToken !== 'string' || options.ownLockToken === '')) {
    throw new StowageError('EBAD_CONFIG', `${W}: option "ownLockToken" must be a non-empty string (the token of a lock you hold).`, { details: { where: W, option: 'ownLockToken' } });
  }
  if (typeof o.lockName !== 'string' || o.lockName === '' || o.lockName.includes('/')) {
    throw new StowageError('EBAD_CONFIG', `${W}: option "lockName" must be a plain directory name.`, { details: { where: W, option: 'lockName' } });
  }
  const userSignal = options.signal;
  throwIfAborted(userSignal);
  const progress = new ProgressTracker('list', o.onProgress);
  progress.report(true);

  // A source under LOCKED is being written: not synced. Checked before it
  // is listed, again once it is listed (a writer that locked it meanwhile
  // may have been halfway through: the listing cannot be trusted), and
  // before anything is deleted (nothing is deleted to match a tree that a
  // writer has taken since).
  const lockNames = lockNamesOf(o.lockName);
  const checkSourceLock = async (when: 'before' | 'listed' | 'deleting'): Promise<void> => {
    for (const name of lockNames) {
      const srcLock = await src.exists(posixJoin(srcDir, name), userSignal ? { signal: userSignal } : {});
      if (srcLock === undefined || srcLock.type !== 'dir') continue;
      const info = await LockDir.inspect(srcDir, { name, fs: transportLockFs(src) }).catch(() => undefined);
      // The caller's own lock, by its token: how fresh its heartbeat is does not matter (its staleMs may not be ours).
      const ours = options.ownLockToken !== undefined && info?.owner?.token === options.ownLockToken;
      if (ours) continue;
      const what = when === 'before' ? 'it holds' : when === 'listed' ? 'it was locked while it was listed:' : 'it was locked while the files were copied (they were; nothing was deleted):';
      throw new StowageError('ELOCKED', `Not syncing ${src.name}:${srcDir}: ${what} ${name} (being written${info?.owner ? ` by ${info.owner.host} pid ${info.owner.pid}, ${info.owner.purpose}` : ''}). Retry when it is released.`, {
        details: { path: srcDir, lock: posixJoin(srcDir, name), owner: info?.owner, stale: info?.stale, when },
      });
    }
  };
  await checkOverlap(src, srcDir, dst, dstDir);
  await checkSourceLock('before');

  // With lock: true the destination is locked before it is listed: a plan
  // made from a listing that another writer was still changing could skip a
  // file it removed after we saw it (same size and mtime: "nothing to do").
  let lock: LockDir | undefined;
  const takeLock = async (): Promise<void> => {
    await dst.mkdir(dstDir, { recursive: true, ...(userSignal ? { signal: userSignal } : {}) });
    const l = new LockDir(dstDir, { name: o.lockName, fs: transportLockFs(dst), staleMs: o.lockStaleMs, purpose: `stowage sync from ${src.name}:${srcDir}` });
    await l.acquire(userSignal ? { signal: userSignal } : {});
    lock = l;
  };

  const lockedSubtrees = { src: new Set<string>(), dst: new Set<string>() };
  const listing = (side: 'src' | 'dst'): ListOptions => {
    /** Reports an entry of this side that is left out of the sync, neither copied nor deleted. */
    const leftOut = (code: StowageErrorCode, rel: string, why: (where: string) => string): void => {
      const where = side === 'src' ? `${src.name}:${posixJoin(srcDir, rel)}` : `${dst.name}:${posixJoin(dstDir, rel)}`;
      warnOrThrow(new StowageError(code, why(where), { details: { path: rel, side } }), rel, o.onWarning, o.strict);
    };
    return {
      filter: o.filter,
      lockNames,
      skipPartFiles: side === 'src',
      onPartFile: (rel) => leftOut('ELOCKED', rel, (where) => `Skipped ${where}: a .part name is taken for a file still being written; it is neither copied nor deleted (rename it if it is a finished file).`),
      onUndecodable: (rel) =>
        leftOut('EUNSAFE_PATH', rel, (where) => `Skipped ${where}: its name is not valid UTF-8 (shown with U+FFFD), so it can be neither copied nor deleted. Rename it to UTF-8 (convmv -f latin1 -t utf8) to have it synced.`),
      checksum: o.checksum,
      algorithm: o.algorithm,
      concurrency: Math.max(16, o.concurrency),
      onLocked: (rel) => {
        lockedSubtrees[side].add(rel);
        leftOut('ELOCKED', rel, (where) => `Skipped ${where}: it holds ${o.lockName} (being written); it is neither copied nor deleted.`);
      },
      onVanished: (rel) => leftOut('ENOT_FOUND', rel, (where) => `${where} vanished while the tree was listed; it is neither copied nor deleted in this run.`),
      signal: fanOutSignal(side === 'src' ? userSignal : anySignal(userSignal, lock?.signal), Math.max(16, o.concurrency)),
    };
  };

  // Only a missing root is "missing": listTree reports what vanishes below it as hidden.
  let srcTree: Map<string, SyncTreeEntry>;
  let srcHidden = new Set<string>();
  let srcMissing = false;
  try {
    ({ tree: srcTree, hidden: srcHidden } = await listTree(src, srcDir, listing('src')));
  } catch (err) {
    if (!isStowageError(err, 'ENOT_FOUND')) throw err;
    srcMissing = true;
    srcTree = new Map();
  }
  if (!srcMissing) await checkSourceLock('listed');
  // A missing source is refused unless allowEmptySource says otherwise, and
  // which error depends on the destination: then it is listed first (no
  // folder created, no lock planted for a run that only refuses). Allowed,
  // it empties an existing destination: locked first, as any other run.
  if (o.lock && !o.dryRun && (!srcMissing || (o.allowEmptySource && (await dst.exists(dstDir, userSignal ? { signal: userSignal } : {})) !== undefined))) await takeLock();
  try {
    return await syncLocked();
  } catch (err) {
    // The first error matters; a failed release after it is secondary.
    await (lock as LockDir | undefined)?.release().catch(() => {});
    throw err;
  }

  async function syncLocked(): Promise<SyncResult> {
    let dstTree: Map<string, SyncTreeEntry>;
    let dstHidden = new Set<string>();
    let dstFiltered = new Set<string>();
    let dstMissing = false;
    try {
      ({ tree: dstTree, hidden: dstHidden, filtered: dstFiltered } = await listTree(dst, dstDir, listing('dst')));
    } catch (err) {
      if (!isStowageError(err, 'ENOT_FOUND')) throw err;
      dstMissing = true;
      dstTree = new Map();
    }
    // The destination's own lock at its root (someone else's sync) is not ours
    // to ignore. With lock: true a run waits for it or takes a stale one over;
    // a dry run of it refuses, as that run would, while a live writer holds it.
    // A lock of the standard name beside a custom lockName is another
    // writer's (a LockDir, Retention, a nightly run): refused unless stale.
    for (const name of dstMissing ? [] : lockNames) {
      const own = name === o.lockName;
      if (own && o.lock && !o.dryRun) continue;
      const dl = await dst.exists(posixJoin(dstDir, name), userSignal ? { signal: userSignal } : {});
      const info = dl?.type === 'dir' ? await LockDir.inspect(dstDir, { name, fs: transportLockFs(dst), staleMs: o.lockStaleMs }).catch(() => undefined) : undefined;
      // The caller's own lock (by its token) is no other writer.
      const ours = options.ownLockToken !== undefined && info?.owner?.token === options.ownLockToken;
      const live = dl?.type === 'dir' && !ours && ((own && !o.lock) || info?.stale !== true);
      if (live) {
        throw new StowageError('ELOCKED', `Not syncing into ${dst.name}:${dstDir}: it holds ${name} (another writer). Retry later${own ? ', or use lock: true to wait for a stale lock to be taken over' : ''}.`, {
          details: { path: dstDir, lock: posixJoin(dstDir, name) },
        });
      }
    }
    if (srcMissing && dstTree.size === 0) {
      throw new StowageError('ENOT_FOUND', `Cannot sync ${src.name}:${srcDir}: it does not exist.`, { details: { path: srcDir } });
    }
    if (srcTree.size === 0 && dstTree.size > 0 && !o.allowEmptySource) {
      throw new StowageError(
        'EDELETE_GUARD',
        `Refusing to sync: the source ${src.name}:${srcDir} is ${srcMissing ? 'missing' : 'empty'} while the destination ${dst.name}:${dstDir} holds ${dstTree.size} entries (an unmounted disk?). Nothing was changed. Pass allowEmptySource: true if this is intended.`,
        { details: { source: srcDir, destination: dstDir, destinationEntries: dstTree.size, sourceMissing: srcMissing } },
      );
    }
    // A source entry the filter kept whose destination entry it left out (a
    // filter that looks at sizes or types, which differ on the two sides):
    // not copied, and said so.
    for (const path of dstFiltered) {
      if (!srcTree.has(path)) continue;
      warnOrThrow(
        new StowageError('EEXIST', `Not synced: ${src.name}:${posixJoin(srcDir, path)}: the filter left out ${dst.name}:${posixJoin(dstDir, path)}, so it is neither replaced nor deleted.`, { details: { path, side: 'dst' } }),
        path,
        o.onWarning,
        o.strict,
      );
    }
    // What the sync must not touch on the destination: locked subtrees (of
    // either side), what the filter excluded or what vanished while listing
    // (on either side: the destination's copy of a source entry left out is
    // not "gone from the source"). Such paths are taken out of both trees, and
    // a destination folder holding one is neither deleted nor replaced.
    const untouchable = new Set<string>([...lockedSubtrees.src, ...lockedSubtrees.dst, ...srcHidden, ...dstHidden]);
    if (untouchable.size > 0) {
      for (const tree of [srcTree, dstTree]) for (const p of [...tree.keys()]) if (underAny(p, untouchable)) tree.delete(p);
    }
    const holdsUntouchable = new Set<string>();
    for (const rel of untouchable) for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) holdsUntouchable.add(rel.slice(0, i));
    const canLink = src.capabilities.symlinks && dst.capabilities.symlinks && o.symlinks;
    if (!canLink && o.symlinks) {
      for (const e of srcTree.values()) {
        if (e.type !== 'symlink') continue;
        warnOrThrow(new StowageError('EIO', `Skipped symlink ${e.path}: ${dst.name} cannot create symlinks.`, { details: { path: e.path } }), e.path, o.onWarning, o.strict);
      }
    }
    const plan = keepHolders(planSync(srcTree, dstTree, { delete: o.delete, checksum: o.checksum, symlinks: canLink }), dstTree, holdsUntouchable);
    for (const path of plan.conflicts) {
      warnOrThrow(
        new StowageError(
          'EEXIST',
          `Not synced: ${src.name}:${posixJoin(srcDir, path)} is a ${srcTree.get(path)?.type ?? 'entry'}, and ${dst.name}:${posixJoin(dstDir, path)} a ${dstTree.get(path)?.type ?? 'entry'}${holdsUntouchable.has(path) ? ' holding entries this sync must not touch (excluded, LOCKED or vanished)' : ''}; ${o.delete ? 'it was left as it is' : "sync with delete: 'after' to replace it"}.`,
          { details: { path } },
        ),
        path,
        o.onWarning,
        o.strict,
      );
    }
    for (const path of plan.kept) {
      warnOrThrow(
        new StowageError('ELOCKED', `Kept ${dst.name}:${posixJoin(dstDir, path)}, which the source no longer has: it holds entries this sync must not touch (excluded by the filter, LOCKED, or vanished while listing).`, { details: { path } }),
        path,
        o.onWarning,
        o.strict,
      );
    }
    const deleteCount = plan.removals;
    if (deleteCount > 0) {
      const fraction = plan.destinationEntries > 0 ? deleteCount / plan.destinationEntries : 0;
      if (deleteCount > o.maxDelete || fraction > o.maxDeleteFraction) {
        throw new StowageError(
          'EDELETE_GUARD',
          `Refusing to sync: it would delete ${deleteCount} of ${plan.destinationEntries} entries in ${dst.name}:${dstDir} (${(fraction * 100).toFixed(1)}%), more than ${o.maxDelete === Infinity ? '' : `maxDelete ${o.maxDelete} or `}maxDeleteFraction ${o.maxDeleteFraction}. Nothing was changed. Check the source, or raise the limit.`,
          { details: { deletes: deleteCount, destinationEntries: plan.destinationEntries, fraction, maxDelete: o.maxDelete, maxDeleteFraction: o.maxDeleteFraction, sample: [...plan.replaces, ...plan.deletes].slice(0, 20) } },
        );
      }
    }
    syncChannel.publish({ source: `${src.name}:${srcDir}`, destination: `${dst.name}:${dstDir}`, copies: plan.copies.length, deletes: deleteCount, dryRun: o.dryRun });
    if (o.dryRun) {
      progress.phase('done');
      return Object.freeze({ plan, dryRun: true, copied: [], linked: [], deleted: [], verified: [], mutants: [], bytesCopied: 0 });
    }

    // Act. (A missing source allowed to empty the destination: locked only now.)
    if (o.lock && lock === undefined) await takeLock();
    const result = await act(src, srcDir, dst, dstDir, plan, srcTree, dstTree, o, progress, fanOutSignal(anySignal(userSignal, lock?.signal), o.concurrency), () => (srcMissing ? Promise.resolve() : checkSourceLock('deleting')));
    await lock?.release();
    return result;
  }
}

async function act(
  src: Transport,
  srcDir: string,
  dst: Transport,
  dstDir: string,
  plan: SyncPlan,
  srcTree: ReadonlyMap<string, SyncTreeEntry>,
  dstTree: ReadonlyMap<string, SyncTreeEntry>,
  o: {
    readonly concurrency: number;
    readonly algorithm: DnaAlgorithm;
    readonly verify: boolean;
    readonly onWarning: WarningCallback | undefined;
    readonly strict: boolean;
  },
  progress: ProgressTracker,
  signal: AbortSignal | undefined,
  beforeDeletes: () => Promise<void>,
): Promise<SyncResult> {
  const sig = signal ? { signal } : {};
  const copied: { path: string; dna: Dna }[] = [];
  const linked: string[] = [];
  const deleted: string[] = [];
  const failed: SyncFailure[] = [];
  const srcPath = (rel: string): string => posixJoin(srcDir, rel);
  const dstPath = (rel: string): string => posixJoin(dstDir, rel);
  const dstDirs = new Set([...dstTree.values()].filter((e) => e.type === 'dir').map((e) => e.path));

  progress.bytesTotal = plan.bytesToCopy;
  progress.itemsTotal = plan.copies.length;
  progress.phase('copy'); // reported at once: with its totals
  await dst.mkdir(dstDir, { recursive: true, ...sig });

  const makeDirs = async (dirs: readonly string[]): Promise<void> => {
    // Parents before children: one depth level at a time, in parallel within it.
    await eachByDepth(dirs, 'shallowest', 8, async (rel) => {
      try {
        await dst.mkdir(dstPath(rel), sig);
      } catch (err) {
        if (!isStowageError(err, 'EEXIST')) throw err;
      }
    });
  };
  const fromLocal = src instanceof LocalTransport;
  // A file whose source has a sidecar in the same algorithm is checked
  // against it as it is sent, before it takes its name on the destination:
  // a source that no longer matches its DNA (a bit flip, a truncation)
  // never replaces the copy there. It is a mutant, and nothing is deleted.
  // Such a file is sent digested in its sidecar's algorithm, whatever the
  // sync's. The sidecars read are kept for the check after the copies.
  const sourceMutants: SyncVerification[] = [];
  const sidecars = new Map<string, Dna>();
  const expectedOf = async (rel: string): Promise<Dna | undefined> => {
    if (!o.verify || rel.endsWith(SIDECAR_SUFFIX) || srcTree.get(rel + SIDECAR_SUFFIX)?.type !== 'file') return undefined;
    try {
      const d = parseSidecar(await readSmallFile(src, srcPath(rel + SIDECAR_SUFFIX), signal), srcPath(rel + SIDECAR_SUFFIX));
      sidecars.set(rel, d);
      return d;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      return undefined; // reported by the check after the copies
    }
  };
  /** Files gone from the source since it was listed (see copyOne). */
  const vanishedSince = new Set<string>();
  /** The "changed while copied" checks of the copies made (see copyOne), awaited once the files are done. */
  const changedChecks: Promise<void>[] = [];
  /**
   * Whether a source file whose copy failed with `err` is gone from the
   * source since it was listed; if so it is recorded and said (ENOT_FOUND
   * warning): not copied, its destination entry left as it is.
   */
  const goneFromSource = async (rel: string, err: unknown): Promise<boolean> => {
    if ((await src.exists(srcPath(rel), sig).catch(() => null)) !== undefined) return false;
    vanishedSince.add(rel);
    warnOrThrow(new StowageError('ENOT_FOUND', `${src.name}:${srcPath(rel)} vanished after it was listed; it was not copied, and ${dst.name}:${dstPath(rel)} was left as it was.`, { details: { path: rel, side: 'src' }, cause: err }), rel, o.onWarning, o.strict);
    return true;
  };
  const copyOne = async (c: SyncCopy): Promise<void> => {
    throwIfAborted(signal);
    const from = srcPath(c.path);
    const source: PutSource = fromLocal ? from : { size: c.size, open: (offset) => src.createReadStream(from, { start: offset, ...sig }) };
    let reported = 0;
    let expected: Dna | undefined;
    try {
      expected = await expectedOf(c.path);
      const dna = await dst.put(source, dstPath(c.path), {
        ...(expected === undefined ? {} : { expectedDna: expected }),
        algorithm: expected?.algorithm ?? o.algorithm,
        mode: c.mode,
        mtimeMs: c.mtimeMs,
        mkdirs: false,
        ...sig,
        onProgress: (p) => {
          progress.add(p.bytesDone - reported);
          reported = p.bytesDone;
        },
      });
      progress.add(dna.size - reported, 1);
      copied.push({ path: c.path, dna });
      // Rewritten while it was read (in place, within the same second, so
      // that the next run would see the size and mtime it listed and skip
      // it for good): the copy is kept as read, with an mtime a second off,
      // so the next run copies it again. Said so. Checked beside the next
      // copies, not before them (see copyAll).
      const check = (async (): Promise<void> => {
        const now = await src.exists(from, sig).catch(() => undefined);
        if (now === undefined || now.type !== 'file' || (now.size === c.size && now.mtimeMs === c.mtimeMs)) return;
        await dst.setMtime(dstPath(c.path), c.mtimeMs - 1000, sig);
        warnOrThrow(
          new StowageError('EIO', `${src.name}:${from} changed while it was copied (now ${now.size} bytes, modified ${new Date(now.mtimeMs).toISOString()}); ${dst.name}:${dstPath(c.path)} holds it as it was read, and the next run copies it again.`, {
            details: { path: c.path, side: 'src', listed: { size: c.size, mtimeMs: c.mtimeMs }, now: { size: now.size, mtimeMs: now.mtimeMs } },
          }),
          c.path,
          o.onWarning,
          o.strict,
        );
      })();
      check.catch(() => {}); // awaited in copyAll
      changedChecks.push(check);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      // Only the check against this sidecar makes it a source mutant (a far-side mismatch after a resumed put is a failed copy).
      if (expected !== undefined && isStowageError(err, 'EDIGEST_MISMATCH') && err.details['actual'] !== undefined && err.details['reason'] !== 'far-after-resume') {
        progress.add(-reported, 1);
        sourceMutants.push({ path: c.path, ok: false, expected, actual: err.details['actual'] as Dna, sent: err.details['actual'] as Dna });
        return;
      }
      // Gone from the source since it was listed (a purge, a lazylogger
      // moving it away): not copied, said so, and its copy on the
      // destination (if any) left as it is. The other files go on.
      if (await goneFromSource(c.path, err)) {
        progress.add(-reported, 1);
        return;
      }
      const e = err as { code?: string; message?: string };
      failed.push({ path: c.path, code: e.code ?? 'EIO', message: e.message ?? String(err) });
      throw err;
    }
  };
  const copyAll = async (copies: readonly SyncCopy[]): Promise<void> => {
    const files = copies.filter((c) => c.type === 'file');
    const links = copies.filter((c) => c.type === 'symlink');
    // A sidecar goes after its file, and only if the file went: the sidecar
    // of a source mutant (or of a file that vanished) would otherwise pair
    // the good copy on the destination with a DNA it does not match.
    const inBatch = new Set(files.map((c) => c.path));
    const baseOf = (c: SyncCopy): string | undefined => {
      const base = c.path.endsWith(SIDECAR_SUFFIX) ? c.path.slice(0, -SIDECAR_SUFFIX.length) : undefined;
      return base !== undefined && inBatch.has(base) ? base : undefined;
    };
    await eachLimit(
      files.filter((c) => baseOf(c) === undefined),
      o.concurrency,
      copyOne,
    );
    const notSent = new Set([...sourceMutants.map((m) => m.path), ...vanishedSince]);
    await eachLimit(
      files.filter((c) => baseOf(c) !== undefined),
      o.concurrency,
      async (c) => {
        if (!notSent.has(baseOf(c)!)) return copyOne(c);
        progress.add(0, 1); // left as it is on the destination, with the file it describes
      },
    );
    await Promise.all(changedChecks.splice(0));
    for (const c of links) {
      throwIfAborted(signal);
      const to = dstPath(c.path);
      const tmp = `${to}.part`;
      try {
        await dst.remove(tmp, { force: true, ...sig });
        await dst.symlink(c.target!, tmp, sig);
        await dst.rename(tmp, to, sig);
        linked.push(c.path);
        progress.add(0, 1);
      } catch (err) {
        // The temporary link goes first, also when aborted.
        await dst.remove(tmp, { force: true }).catch(() => {});
        if (signal?.aborted) throw signal.reason;
        const e = err as { code?: string; message?: string };
        failed.push({ path: c.path, code: e.code ?? 'EIO', message: e.message ?? String(err) });
        throw err;
      }
    }
  };

  /**
   * Removes a destination entry in the way of a copy: a folder entry by
   * entry, deepest first, as listed, never recursively. Anything in it that
   * the listing did not see (written since) makes its removal fail with
   * EEXIST: the folder stays, and so does that. Another failure keeps its
   * own code (a timeout stays ETIMEOUT, and retryable). The listed entries
   * removed before a failure are in `deleted`.
   */
  const removeListed = async (rel: string): Promise<void> => {
    // Deepest first, one depth at a time, `concurrency` removals in flight (a big folder over SFTP).
    const inside = dstDirs.has(rel) ? [...dstTree.keys()].filter((p) => p.startsWith(rel + '/')) : [];
    await eachByDepth([...inside, rel], 'deepest', o.concurrency, removeOne);
    async function removeOne(p: string): Promise<void> {
      throwIfAborted(signal);
      try {
        await dst.remove(dstPath(p), { force: true, ...sig });
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const what = `Cannot put ${src.name}:${srcPath(rel)} in place of ${dst.name}:${dstPath(rel)}`;
        const unlisted = await dst.list(dstPath(p), sig).then(
          (es) => es.map((e) => e.name),
          () => [],
        );
        if (unlisted.length > 0) {
          throw new StowageError(
            'EEXIST',
            `${what}: ${dst.name}:${dstPath(p)} holds ${unlisted.length} entr${unlisted.length === 1 ? 'y' : 'ies'} the listing did not see (${unlisted.slice(0, 3).join(', ')}${unlisted.length > 3 ? ', …' : ''}: written since?). It stays, with them; look at it, then sync again.`,
            { details: { path: rel, entry: p, unlisted: unlisted.slice(0, 20) }, cause: err },
          );
        }
        const e = err instanceof StowageError ? err : new StowageError('EIO', String(err), { cause: err });
        throw new StowageError(e.code, `${what}: removing ${dst.name}:${dstPath(p)} failed (${e.message}).`, { details: { ...e.details, path: rel, entry: p }, cause: err, retryable: e.retryable });
      }
      if (p !== rel) deleted.push(p); // gone: said so if a later step fails (on success the replaced entry stands for them)
    }
  };

  /**
   * The source file that is to take the place of `rel` (a folder there),
   * checked against its sidecar before that folder is removed: its
   * mismatch, if it is a mutant; undefined otherwise (not a file, no
   * sidecar, or it matches). The put checks it again as it is sent.
   */
  const replacingMutant = async (rel: string): Promise<SyncVerification | undefined> => {
    if (srcTree.get(rel)?.type !== 'file') return undefined;
    const expected = await expectedOf(rel);
    if (expected === undefined) return undefined;
    const actual = await src.digest(srcPath(rel), expected.algorithm, sig);
    return dnaEqual(expected, actual) ? undefined : { path: rel, ok: false, expected, actual, sent: actual };
  };

  // What takes the place of a replaced entry goes last: the entries in the
  // way are removed only once every other copy has succeeded. Then each in
  // turn: removed, and at once the copies that take its place. One that
  // cannot be removed fails its own copies only.
  // A file's sidecar goes with the replace that puts the file in place: the
  // sidecar of a file that does not take its place must not land either.
  const replaced = new Set(plan.replaces);
  const inReplaced = (rel: string): boolean => underAny(rel, replaced) || (rel.endsWith(SIDECAR_SUFFIX) && replaced.has(rel.slice(0, -SIDECAR_SUFFIX.length)));
  let replacesSkipped = false;
  try {
    await makeDirs(plan.mkdirs.filter((d) => !inReplaced(d)));
    await copyAll(plan.copies.filter((c) => !inReplaced(c.path)));
    let notReplaced: unknown;
    for (const rel of plan.replaces) {
      throwIfAborted(signal);
      const one = new Set([rel]);
      // Its sidecar goes with it, unless that is itself in the way of something (then with its own replace, after).
      const theirs = plan.copies.filter((c) => underAny(c.path, one) || (c.path === rel + SIDECAR_SUFFIX && !replaced.has(c.path)));
      // A source mutant stops every deletion, those in the way of a copy
      // too: the entry stays, and nothing takes its place.
      let mutant: SyncVerification | undefined;
      if (sourceMutants.length === 0) {
        try {
          mutant = await replacingMutant(rel);
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          // Gone from the source since it was listed: not copied, the entry in the way left, the sync goes on (as copyOne does).
          if (await goneFromSource(rel, err)) {
            progress.add(0, theirs.length);
            continue;
          }
          const e = err as { code?: string; message?: string };
          failed.push({ path: rel, code: e.code ?? 'EIO', message: e.message ?? String(err) });
          notReplaced ??= err;
          continue;
        }
      }
      if (sourceMutants.length > 0 || mutant !== undefined) {
        if (mutant !== undefined) sourceMutants.push(mutant);
        replacesSkipped = true;
        progress.add(0, theirs.length);
        warnOrThrow(
          new StowageError('EEXIST', `Not synced: ${src.name}:${srcPath(rel)} is a ${srcTree.get(rel)?.type ?? 'entry'}, and ${dst.name}:${dstPath(rel)} a ${dstTree.get(rel)?.type ?? 'entry'}; it was left as it is, because the source holds a file that does not match its DNA (nothing is deleted while it does).`, {
            details: { path: rel, reason: 'mutants' },
          }),
          rel,
          o.onWarning,
          o.strict,
        );
        continue;
      }
      const before = deleted.length;
      try {
        await removeListed(rel);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const e = err as { code?: string; message?: string };
        failed.push({ path: rel, code: e.code ?? 'EIO', message: e.message ?? String(err) });
        notReplaced ??= err;
        continue;
      }
      deleted.splice(before, deleted.length - before, rel);
      await makeDirs(plan.mkdirs.filter((d) => underAny(d, one)));
      await copyAll(theirs);
    }
    if (notReplaced !== undefined) throw notReplaced;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    const first = err instanceof StowageError ? err : new StowageError('EIO', String(err), { cause: err });
    const what =
      deleted.length === 0
        ? 'nothing was deleted'
        : `only the ${deleted.length} entr${deleted.length === 1 ? 'y' : 'ies'} in the way of a copy ${deleted.length === 1 ? 'was' : 'were'} removed (${deleted.slice(0, 5).join(', ')}${deleted.length > 5 ? ', …' : ''})`;
    throw new StowageError(first.code, `Sync ${src.name}:${srcDir} → ${dst.name}:${dstDir}: ${failed.length} cop${failed.length === 1 ? 'y' : 'ies'} failed (${first.message}); ${what}.`, {
      details: { ...first.details, failed, copied: copied.length, deleted: [...deleted] },
      cause: first,
      retryable: first.retryable,
    });
  }
  progress.report(true); // the copy phase's last word, at its totals
  for (const d of plan.dirMtimes) {
    throwIfAborted(signal);
    await dst.setMtime(dstPath(d.path), d.mtimeMs, sig).catch((err: unknown) => {
      if (signal?.aborted) throw signal.reason;
      warnOrThrow(err instanceof StowageError ? err : new StowageError('EIO', String(err), { cause: err }), d.path, o.onWarning, o.strict);
    });
  }

  // The mutant check: each transferred file with a sidecar on the source, digested on the destination.
  const verified: SyncVerification[] = [];
  if (o.verify) {
    progress.phase('verify');
    const sent = new Map(copied.map((c) => [c.path, c.dna]));
    const candidates = [...sent.keys()].filter((p) => !p.endsWith(SIDECAR_SUFFIX) && srcTree.get(p + SIDECAR_SUFFIX)?.type === 'file');
    await eachLimit(candidates, o.concurrency, async (rel) => {
      let expected: Dna;
      try {
        expected = sidecars.get(rel) ?? parseSidecar(await readSmallFile(src, srcPath(rel + SIDECAR_SUFFIX), signal), srcPath(rel + SIDECAR_SUFFIX));
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        warnOrThrow(err instanceof StowageError ? err : new StowageError('EBAD_SIDECAR', String(err), { cause: err }), rel, o.onWarning, o.strict);
        return;
      }
      const actual = await dst.digest(dstPath(rel), expected.algorithm, sig);
      const v: SyncVerification = { path: rel, ok: dnaEqual(expected, actual), expected, actual, ...(sent.get(rel)?.algorithm === expected.algorithm ? { sent: sent.get(rel)! } : {}) };
      verified.push(v);
    });
  }
  verified.push(...sourceMutants);
  // In path order, whichever check finished first: reports and tests compare them.
  verified.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const mutants = verified.filter((v) => !v.ok);
  const fromSource = new Set(sourceMutants);
  for (const m of mutants) {
    const message = fromSource.has(m)
      ? `Mutant: ${src.name}:${srcPath(m.path)} has ${m.actual.algorithm} ${m.actual.dig} (${m.actual.size} bytes), its sidecar says ${m.expected.dig} (${m.expected.size} bytes); it was not copied, and ${dst.name}:${dstPath(m.path)} was left as it was.`
      : `Mutant: ${dst.name}:${dstPath(m.path)} has ${m.actual.algorithm} ${m.actual.dig} (${m.actual.size} bytes), its sidecar says ${m.expected.dig} (${m.expected.size} bytes).`;
    warnOrThrow(new StowageError('EDIGEST_MISMATCH', message, { details: { path: m.path, expected: m.expected, actual: m.actual, sent: m.sent, side: fromSource.has(m) ? 'src' : 'dst' } }), m.path, o.onWarning, o.strict);
  }

  let deleteSkipped: 'mutants' | undefined = replacesSkipped ? 'mutants' : undefined;
  if (plan.deletes.length > 0) {
    if (mutants.length > 0) {
      deleteSkipped = 'mutants';
    } else {
      await beforeDeletes();
      progress.phase('delete');
      // Entry by entry, deepest first and one depth at a time, never
      // recursively: a folder is removed only once it is empty, so what the
      // listing did not see (a file written since, or left out) stays, and
      // the folder with it.
      await eachByDepth(plan.deletes, 'deepest', o.concurrency, async (rel) => {
        throwIfAborted(signal);
        try {
          await dst.remove(dstPath(rel), { force: true, ...sig });
          deleted.push(rel);
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          if (!dstDirs.has(rel)) throw err;
          warnOrThrow(
            new StowageError('EIO', `Kept folder ${dst.name}:${dstPath(rel)}, which the source no longer has: it could not be removed (${(err as Error).message}); something the listing did not see may be in it.`, { details: { path: rel }, cause: err }),
            rel,
            o.onWarning,
            o.strict,
          );
        }
      });
    }
  }
  progress.phase('done');
  const bytesCopied = copied.reduce((n, c) => n + c.dna.size, 0);
  return Object.freeze({ plan, dryRun: false, copied, linked, deleted, verified, mutants, ...(deleteSkipped ? { deleteSkipped } : {}), bytesCopied });
}
