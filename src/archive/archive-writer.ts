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
import { rm } from 'node:fs/promises';
import { pack as tarPack, type Pack } from 'tar-stream';
import { fromFsError } from '../errors.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { AtomicFile } from '../util/atomic-file.js';
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
 * Writes the archive `out` from what `produce` adds to the pack. An older
 * archive and sidecar under the same name are replaced (the old sidecar is
 * removed first, so the new archive is never paired with the old DNA). On
 * failure or abort nothing is left under `out` nor as `out.part`, and the
 * first error is thrown.
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
    await rm(out + SIDECAR_SUFFIX, { force: true }).catch((err: unknown) => {
      throw fromFsError(err, 'remove', out + SIDECAR_SUFFIX);
    });
    await file.commit(gz.bytesOut);
  } catch (err) {
    job?.drop();
    await file.discard();
    await sidecarFile?.discard();
    if (signal?.aborted) throw signal.reason;
    throw err;
  } finally {
    dispose();
  }
  let sidecar: string | undefined;
  if (sidecarFile !== undefined) {
    try {
      await sidecarFile.commit();
      sidecar = sidecarFile.path;
    } catch (err) {
      // An archive without the sidecar it was promised would pass for an unverified one: remove it.
      await rm(out, { force: true }).catch(() => {});
      throw err;
    }
  }
  return Object.freeze({ dna, bytesIn: gz.bytesIn, bytesOut: gz.bytesOut, sidecar });
}
