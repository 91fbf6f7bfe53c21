/**
 * `DnaDigest.scan`: re-digest every file of a tree that has a sidecar.
 *
 * The walk runs in the main thread; the hashing runs on a pool of worker
 * threads (both cores for a large tree). Results are yielded as they come,
 * mutants included, so one bad file does not stop the scan.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StowageError, fromFsError, warnOrThrow, type WarningCallback } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { checkInt, checkOptionKeys } from '../util/options.js';
import { DnaDigest, SIDECAR_SUFFIX, dnaEqual, type DnaVerifyResult } from './dna-digest.js';
import { HashPool } from './hash-pool.js';

/** Name of the lock directory that marks a tree as being written. */
export const LOCK_DIR_NAME = 'LOCKED';

/** Options of {@link DnaDigest.scan}. */
export interface DnaScanOptions {
  /** Files hashed at once, each on its own worker thread (default: the number of cores, at most 4). */
  concurrency?: number;
  /** Skip trees that hold a `LOCKED` directory: they are being written (default true). */
  skipLocked?: boolean;
  /** Per-file trouble (unreadable file, bad sidecar, orphan sidecar, locked tree). */
  onWarning?: WarningCallback;
  /** Throw on the first per-file trouble instead of warning. Mutants are results, not trouble. */
  strict?: boolean;
  /** Byte and file progress. */
  onProgress?: ProgressCallback;
  /** Cancels the scan; the workers are terminated. */
  signal?: AbortSignal;
}

interface Job {
  path: string;
}

async function* walk(dir: string, o: { root: string; skipLocked: boolean; onWarning: WarningCallback | undefined; strict: boolean | undefined; signal: AbortSignal | undefined }): AsyncGenerator<Job> {
  throwIfAborted(o.signal);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const e = fromFsError(err, 'list', dir);
    if (dir === o.root) throw e;
    warnOrThrow(e, dir, o.onWarning, o.strict);
    return;
  }
  if (o.skipLocked && entries.some((e) => e.name === LOCK_DIR_NAME && e.isDirectory())) {
    warnOrThrow(new StowageError('ELOCKED', `Skipped ${dir}: it holds a ${LOCK_DIR_NAME} directory (a transfer or backup is in progress).`, { details: { path: dir } }), dir, o.onWarning, o.strict);
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
  for (const e of entries) {
    const full = join(dir, e.name);
    if (e.isDirectory()) {
      yield* walk(full, o);
    } else if (e.isFile() && e.name.endsWith(SIDECAR_SUFFIX)) {
      const target = e.name.slice(0, -SIDECAR_SUFFIX.length);
      if (!files.has(target)) {
        warnOrThrow(new StowageError('ENOT_FOUND', `Orphan sidecar ${full}: ${join(dir, target)} does not exist.`, { details: { path: join(dir, target), sidecar: full } }), full, o.onWarning, o.strict);
      }
    } else if (e.isFile() && files.has(e.name + SIDECAR_SUFFIX)) {
      yield { path: full };
    }
  }
}

/**
 * Walks `dir`, re-digests every file that has a sidecar and yields one
 * {@link DnaVerifyResult} per file, in completion order. The mutants are the
 * results with `ok === false`.
 *
 * @param dir - the tree's root
 * @param options - concurrency, skipLocked, onWarning, strict, onProgress, signal
 */
export async function* scanTree(dir: string, options: DnaScanOptions = {}): AsyncGenerator<DnaVerifyResult> {
  checkOptionKeys('DnaDigest.scan', options, ['concurrency', 'skipLocked', 'onWarning', 'strict', 'onProgress', 'signal']);
  const concurrency = checkInt('DnaDigest.scan', 'concurrency', options.concurrency ?? Math.min(availableParallelism(), 4), 1, 64);
  const { signal, onWarning, strict } = options;
  throwIfAborted(signal);
  const progress = new ProgressTracker('scan', options.onProgress);
  const pool = new HashPool(concurrency);
  const dispose = onAbort(signal, (reason) => void pool.close(reason));
  type Done = { key: number; result?: DnaVerifyResult };
  const inflight = new Map<number, Promise<Done>>();
  let key = 0;
  const start = (job: Job): void => {
    const k = key++;
    const p = (async (): Promise<Done> => {
      try {
        const expected = await DnaDigest.readSidecar(job.path);
        const actual = await pool.hash(job.path, expected.algorithm, (n) => progress.add(n));
        progress.add(0, 1);
        return { key: k, result: { path: job.path, ok: dnaEqual(expected, actual), expected, actual } };
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const e = err instanceof StowageError ? err : fromFsError(err, 'read', job.path);
        warnOrThrow(e, job.path, onWarning, strict);
        return { key: k };
      }
    })();
    inflight.set(k, p);
  };
  const takeOne = async (): Promise<DnaVerifyResult | undefined> => {
    const done = await Promise.race(inflight.values());
    inflight.delete(done.key);
    return done.result;
  };
  try {
    for await (const job of walk(dir, { root: dir, skipLocked: options.skipLocked ?? true, onWarning, strict, signal })) {
      start(job);
      while (inflight.size >= concurrency * 2) {
        const r = await takeOne();
        if (r) yield r;
      }
    }
    while (inflight.size > 0) {
      const r = await takeOne();
      if (r) yield r;
    }
    progress.report(true);
  } finally {
    dispose();
    for (const p of inflight.values()) p.catch(() => {});
    await pool.close(signal?.aborted ? signal.reason : undefined);
  }
}
