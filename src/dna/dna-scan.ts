/**
 * `DnaDigest.scan`: re-digest every file of a tree that has a sidecar.
 *
 * The walk runs in the main thread, lazily (one directory listing at a
 * time, so a tree of millions of files needs no list of them); the sidecar
 * reads and the hashing run on a {@link HashPool} of worker threads (both
 * cores for a large tree). Results are yielded as they complete, mutants
 * included, so one bad file does not stop the scan. Per-file trouble is a
 * warning unless `strict`. Symbolic links to files are followed; links to
 * directories are not (no loops, no file scanned twice).
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { readdir, stat } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { join } from 'node:path';
import { StowageError, fromFsError, warnOrThrow, type WarningCallback } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { checkFunctionOption, checkInt, checkOptionKeys, checkPathArg } from '../util/options.js';
import { SIDECAR_SUFFIX, dnaEqual, type DnaVerifyResult } from './dna.js';
import { HashPool } from './hash-pool.js';

/** Name of the lock directory that marks a tree as being written. */
export const LOCK_DIR_NAME = 'LOCKED';

/** Options of {@link DnaDigest.scan}. */
export interface DnaScanOptions {
  /** Files hashed at once, each on its own worker thread (default: the number of cores, at most 4). */
  concurrency?: number;
  /** Skip (with an ELOCKED warning) directories that hold a `LOCKED` directory: they are being written (default true). */
  skipLocked?: boolean;
  /**
   * Per-file trouble: an unreadable file or directory (ENOT_FOUND, EIO), a
   * missing or malformed sidecar (ENO_SIDECAR, EBAD_SIDECAR), an orphan
   * sidecar whose file is gone (ENOT_FOUND), a skipped locked tree (ELOCKED).
   */
  onWarning?: WarningCallback;
  /** Throw the first per-file trouble instead of warning (default false). Mutants are results, not trouble. */
  strict?: boolean;
  /** Byte and file progress (phase `"scan"`; totals are not known up front). */
  onProgress?: ProgressCallback;
  /** Cancels the scan; the worker threads are terminated, even in the middle of a file. */
  signal?: AbortSignal;
}

interface WalkOptions {
  root: string;
  skipLocked: boolean;
  onWarning: WarningCallback | undefined;
  strict: boolean;
  signal: AbortSignal | undefined;
}

/** Whether `e` is a regular file, following a symbolic link (links to directories are not followed). */
async function kindOf(e: Dirent, full: string): Promise<'file' | 'dir' | 'other'> {
  if (e.isFile()) return 'file';
  if (e.isDirectory()) return 'dir';
  if (!e.isSymbolicLink()) return 'other';
  try {
    return (await stat(full)).isFile() ? 'file' : 'other';
  } catch {
    return 'other'; // a dangling link: nothing to digest
  }
}

/** Yields the path of every file under `dir` that has a sidecar, warning about orphan sidecars and locked trees. */
async function* walk(dir: string, o: WalkOptions): AsyncGenerator<string> {
  throwIfAborted(o.signal);
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const e = fromFsError(err, 'list', dir);
    if (dir === o.root) throw e;
    warnOrThrow(e, dir, o.onWarning, o.strict);
    return;
  }
  throwIfAborted(o.signal);
  if (o.skipLocked && entries.some((e) => e.name === LOCK_DIR_NAME && e.isDirectory())) {
    const e = new StowageError('ELOCKED', `Skipped ${dir}: it holds a ${LOCK_DIR_NAME} directory (a transfer or backup is in progress there).`, {
      details: { path: dir },
    });
    warnOrThrow(e, dir, o.onWarning, o.strict);
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const kinds = new Map<string, 'file' | 'dir' | 'other'>();
  for (const e of entries) kinds.set(e.name, await kindOf(e, join(dir, e.name)));
  for (const e of entries) {
    const full = join(dir, e.name);
    const kind = kinds.get(e.name);
    if (kind === 'dir') {
      yield* walk(full, o);
      continue;
    }
    if (kind !== 'file') continue;
    if (e.name.endsWith(SIDECAR_SUFFIX)) {
      const target = e.name.slice(0, -SIDECAR_SUFFIX.length);
      if (kinds.get(target) !== 'file') {
        const e2 = new StowageError('ENOT_FOUND', `Orphan sidecar ${full}: ${join(dir, target)} does not exist.`, { details: { path: join(dir, target), sidecar: full } });
        warnOrThrow(e2, full, o.onWarning, o.strict);
      }
    }
    // Not `else`: `x.dna` may itself have a sidecar `x.dna.dna`.
    if (kinds.get(e.name + SIDECAR_SUFFIX) === 'file') yield full;
  }
}

function checkFlag(name: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new StowageError('EBAD_CONFIG', `DnaDigest.scan: option "${name}" must be true or false, got ${String(value)}.`, { details: { where: 'DnaDigest.scan', option: name, value } });
  }
  return value;
}

function checkFunction(name: string, value: unknown): void {
  checkFunctionOption('DnaDigest.scan', name, value);
}

type Settled = { ok: true; result: DnaVerifyResult | undefined } | { ok: false; error: unknown };

/**
 * Walks `dir`, re-digests every file that has a sidecar and yields one
 * {@link DnaVerifyResult} per file, in completion order. The mutants are the
 * results with `ok === false`.
 *
 * @param dir - the tree's root
 * @param options - concurrency, skipLocked, onWarning, strict, onProgress, signal
 */
export async function* scanTree(dir: string, options: DnaScanOptions = {}): AsyncGenerator<DnaVerifyResult> {
  checkPathArg('DnaDigest.scan', 'dir', dir);
  options ??= {};
  checkOptionKeys('DnaDigest.scan', options, ['concurrency', 'skipLocked', 'onWarning', 'strict', 'onProgress', 'signal']);
  const concurrency = checkInt('DnaDigest.scan', 'concurrency', options.concurrency ?? Math.min(availableParallelism(), 4), 1, 64);
  const skipLocked = checkFlag('skipLocked', options.skipLocked) ?? true;
  const strict = checkFlag('strict', options.strict) ?? false;
  checkFunction('onWarning', options.onWarning);
  checkFunction('onProgress', options.onProgress);
  const { signal, onWarning } = options;
  throwIfAborted(signal);

  const progress = new ProgressTracker('scan', options.onProgress);
  const pool = new HashPool({ size: concurrency });
  const dispose = onAbort(signal, (reason) => void pool.close(reason));
  // Jobs handed to the pool ahead of the consumer: enough to keep every worker fed.
  const window = concurrency * 4;
  const settled: Settled[] = [];
  let inflight = 0;
  let finished = false;
  let wake: (() => void) | undefined;
  const settle = (s: Settled): void => {
    if (finished) return;
    inflight--;
    settled.push(s);
    wake?.();
    wake = undefined;
  };
  const start = (path: string): void => {
    inflight++;
    pool.check(path, path + SIDECAR_SUFFIX, (n) => progress.add(n)).then(
      ({ expected, actual }) => {
        progress.add(0, 1);
        settle({ ok: true, result: { path, ok: dnaEqual(expected, actual), expected, actual } });
      },
      (err: unknown) => {
        if (finished) return;
        if (signal?.aborted) return settle({ ok: false, error: signal.reason });
        progress.add(0, 1);
        try {
          warnOrThrow(err instanceof StowageError ? err : fromFsError(err, 'read', path), path, onWarning, strict);
          settle({ ok: true, result: undefined });
        } catch (e) {
          settle({ ok: false, error: e });
        }
      },
    );
  };
  const next = async (): Promise<DnaVerifyResult | undefined> => {
    while (settled.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const s = settled.shift()!;
    if (!s.ok) throw s.error;
    return s.result;
  };

  try {
    for await (const path of walk(dir, { root: dir, skipLocked, onWarning, strict, signal })) {
      throwIfAborted(signal);
      start(path);
      while (settled.length > 0 || inflight >= window) {
        const r = await next();
        throwIfAborted(signal);
        if (r) yield r;
        throwIfAborted(signal);
      }
    }
    while (inflight > 0 || settled.length > 0) {
      const r = await next();
      throwIfAborted(signal);
      if (r) yield r;
      throwIfAborted(signal);
    }
    progress.report(true);
  } finally {
    finished = true;
    dispose();
    await pool.close(signal?.aborted ? signal.reason : undefined);
  }
}
