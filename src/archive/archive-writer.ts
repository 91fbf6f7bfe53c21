/**
 * The one way a `.tar`/`.tar.gz` is written: a tar-stream pack fed by the
 * caller, parallel gzip, the DNA tapped from the bytes written (digested on
 * the shared hasher's worker thread, so the main thread keeps packing), an
 * atomic commit (`.part`, fsync, rename), then the sidecar. Used by
 * `Archiver.create` and by the Partitioner's partition archives.
 *
 * @internal
 * @module
 */
import { link, lstat, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pack as tarPack, type Pack } from 'tar-stream';
import { fromFsError } from '../errors.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { AtomicFile, fsyncDir, isNoHardLinkError, uniquePartPath } from '../util/atomic-file.js';
import { DnaDigest, SIDECAR_SUFFIX, formatSidecar, type Dna, type DnaAlgorithm } from '../dna/index.js';
import { sharedBlockHasher } from '../dna/block-hasher.js';
import { ParallelGzip } from './parallel-gzip.js';

const MiB = 1 << 20;

/** Options of {@link writeTarAtomic}. */
export interface TarWriteOptions {
  /** Deflate level 1-9, or `undefined` for a plain `.tar`. */
  level: number | undefined;
  /** Bytes per gzip member. */
  chunkSize: number;
  /** Members compressed at once. */
  concurrency: number;
  /** Digest algorithm of the DNA (default md5). */
  algorithm?: DnaAlgorithm;
  /** Write the `.dna` sidecar after the archive. */
  sidecar: boolean;
  /** Cancels the write; nothing is left under the final name nor as `.part`. */
  signal?: AbortSignal | undefined;
  /** Digest the bytes written (default true). `false` is for {@link BENCH_NO_DNA} only: no DNA, no sidecar. */
  digest?: boolean;
}

/**
 * Benchmark-only switch, not part of the API: an `Archiver.create` options
 * object carrying this key set to `true` writes the archive without
 * digesting it (and without a sidecar), so that `archive-dna-overhead` can
 * measure what the DNA costs against a true no-DNA create. The `dna` then
 * returned is the digest of no bytes, not of the archive.
 */
export const BENCH_NO_DNA: unique symbol = Symbol('stowage.bench.noDna');

/** What the producer is given. */
export interface TarProducer {
  /** The tar pack to add entries to; finalized by {@link writeTarAtomic} once the producer resolves. */
  readonly pack: Pack;
  /** The first failure so far (the consumer's, an abort, or the producer's own), if any: stop feeding then. */
  failed(): unknown;
}

/** What {@link writeTarAtomic} wrote. */
export interface TarWritten {
  /** The archive's DNA. */
  readonly dna: Dna;
  /** Bytes of tar (uncompressed). */
  readonly bytesIn: number;
  /** Bytes of the archive file. */
  readonly bytesOut: number;
  /** The sidecar's path, when one was written. */
  readonly sidecar: string | undefined;
}

/**
 * Puts a finished archive (fsynced under its `.part` name) and its sidecar
 * (likewise, or none) in place of the pair already under `out`, so that a
 * failure at any step leaves the old pair or the new one, never a mix nor
 * half of one. The old archive is kept under a temporary hard link (no
 * copy) and the old sidecar moved aside first (so the new archive is never
 * seen with the old DNA); a failed step puts both back, and they are
 * removed only once the new pair is complete.
 *
 * @param out - the archive's path
 * @param archive - the new archive, written and synced
 * @param bytes - its expected size
 * @param sidecar - the new sidecar, written and synced, if one is wanted
 */
async function replacePair(out: string, archive: AtomicFile, bytes: number, sidecar: AtomicFile | undefined): Promise<void> {
  const side = out + SIDECAR_SUFFIX;
  let oldArchive: string | undefined;
  let oldSidecar: string | undefined;
  /** Which renames of ours were tried: only those may have put something under the final names. */
  let tried = { archive: false, sidecar: false };
  try {
    const keep = uniquePartPath(out);
    // Only a file (or link) under `out` is kept aside: anything else in the
    // way (a folder) stays where it is and fails the rename below.
    const there = await lstat(out).catch(() => undefined);
    if (there !== undefined && (there.isFile() || there.isSymbolicLink())) {
      try {
        await link(out, keep);
        oldArchive = keep;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') {
          // No hard links on this file system: move it aside instead (no archive under `out` for a moment).
          if (!isNoHardLinkError(err)) throw fromFsError(err, 'link', out);
          try {
            await rename(out, keep);
            oldArchive = keep;
          } catch (err2) {
            if ((err2 as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err2, 'rename', out);
          }
        }
      }
    }
    const keepSide = uniquePartPath(side);
    const sideThere = await lstat(side).catch(() => undefined);
    if (sideThere !== undefined && (sideThere.isFile() || sideThere.isSymbolicLink())) {
      await rename(side, keepSide).then(
        () => (oldSidecar = keepSide),
        (err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromFsError(err, 'rename', side);
        },
      );
    }
    tried = { archive: true, sidecar: false };
    await archive.commit(bytes);
    tried = { archive: true, sidecar: sidecar !== undefined };
    await sidecar?.commit();
  } catch (err) {
    await archive.discard();
    await sidecar?.discard();
    // Back as it was: the old files where they were, or none.
    const back = async (kept: string | undefined, path: string, ours: boolean): Promise<void> => {
      if (kept === undefined) {
        if (ours) await rm(path, { force: true });
        return;
      }
      await rename(kept, path);
      // Renaming a link onto another link of the same file does nothing (POSIX): the old archive never left.
      await rm(kept, { force: true });
    };
    await back(oldArchive, out, tried.archive).catch(() => {});
    await back(oldSidecar, side, tried.sidecar).catch(() => {});
    await fsyncDir(dirname(out)).catch(() => {});
    throw err;
  }
  if (oldArchive !== undefined) await rm(oldArchive, { force: true }).catch(() => {});
  if (oldSidecar !== undefined) await rm(oldSidecar, { force: true }).catch(() => {});
}

/**
 * Writes the archive `out` from what `produce` adds to the pack. An older
 * archive and sidecar under the same name are replaced as a pair (see
 * {@link replacePair}): the new archive is never paired with the old DNA,
 * and a failure leaves the old pair as it was. On failure or abort nothing
 * new is left under `out` nor as `out.part`, and the first error is thrown.
 *
 * @param out - the archive's path (absolute)
 * @param options - compression, DNA, sidecar, signal
 * @param produce - adds the entries; should return early when `failed()` is set
 */
export async function writeTarAtomic(out: string, options: TarWriteOptions, produce: (p: TarProducer) => Promise<void>): Promise<TarWritten> {
  const { signal } = options;
  throwIfAborted(signal);
  const file = await AtomicFile.open(out, { signal });
  const digestOn = options.digest !== false;
  const hasher = sharedBlockHasher();
  const job = digestOn ? hasher.begin(options.algorithm ?? 'md5') : undefined;
  const gz = new ParallelGzip({
    level: options.level,
    chunkSize: options.chunkSize,
    concurrency: options.concurrency,
    write: async (buf) => {
      if (job !== undefined) await hasher.feed(job, buf, signal);
      await file.write(buf);
    },
  });
  const pack = tarPack({ highWaterMark: 2 * MiB });
  pack.on('error', () => {}); // surfaces through `failure` and the consumer's loop
  let failure: unknown;
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    failure = err;
    gz.abort(err);
    pack.destroy(err instanceof Error ? err : new Error(String(err)));
  };
  const dispose = onAbort(signal, (reason) => fail(reason));
  let dna: Dna;
  let sidecarFile: AtomicFile | undefined;
  const producer = async (): Promise<void> => {
    await produce({ pack, failed: () => failure });
    if (failure === undefined) pack.finalize();
  };
  const consume = async (): Promise<void> => {
    for await (const buf of pack as AsyncIterable<Buffer>) await gz.push(buf);
    if (failure !== undefined) throw failure;
    await gz.end();
  };
  try {
    await Promise.all([producer().catch(fail), consume().catch(fail)]);
    if (failure !== undefined) throw failure;
    throwIfAborted(signal);
    // Every byte was fed before gz.end() resolved; the digest is known before the archive takes its name.
    dna = job !== undefined ? await job.digest() : new DnaDigest(options.algorithm !== undefined ? { algorithm: options.algorithm } : {}).digest();
    throwIfAborted(signal);
    if (options.sidecar && digestOn) {
      // The sidecar is written and synced before the archive takes its name:
      // one that cannot be written (a full disk) leaves the archive and
      // sidecar already there as they were, instead of neither.
      const path = out + SIDECAR_SUFFIX;
      sidecarFile = await AtomicFile.open(path);
      await sidecarFile.write(Buffer.from(formatSidecar(dna, path)));
      try {
        await sidecarFile.handle.sync();
      } catch (err) {
        throw fromFsError(err, 'fsync', sidecarFile.partPath);
      }
    }
  } catch (err) {
    job?.drop();
    await file.discard();
    await sidecarFile?.discard();
    if (signal?.aborted) throw signal.reason;
    throw err;
  } finally {
    dispose();
  }
  await replacePair(out, file, gz.bytesOut, sidecarFile);
  return Object.freeze({ dna, bytesIn: gz.bytesIn, bytesOut: gz.bytesOut, sidecar: sidecarFile?.path });
}
