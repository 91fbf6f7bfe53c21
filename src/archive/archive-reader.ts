/**
 * One streaming pass over an archive, shared by verify, list, readEntry,
 * openEntry and extract.
 *
 * The file is read with 1 MiB reads (the next read in flight while the
 * current buffer is digested), gunzipped when it starts with the gzip magic
 * (Node's gunzip reads multi-member files and checks every member's CRC and
 * length), and parsed by tar-stream (which checks every header's checksum
 * and that each entry's data is complete). A gzipped archive of up to 4 MiB
 * (a partition of 10k rows is ~0.5 MiB) is read whole and inflated in one
 * call on the thread pool, into at most 32 MiB, and its tar parsed from that
 * one buffer: the 100 archives of 1M rows were read with ~0.05 cpu-s less
 * than through the chain of streams, which a larger archive (or one that
 * inflates to more) still takes, so that memory stays bounded. So does a
 * damaged one (the one call fails): it is streamed from the bytes read, and
 * its entries before the damage are visited, as always. A caller that reads
 * archive after archive (a restore) passes an {@link ArchiveBufferPool}:
 * the file is then read, and inflated (on this thread, see
 * `gunzip-into.ts`), into buffers used again by the next pass. The DNA of the
 * archive file is computed in the same pass. Whatever goes wrong inside the data is
 * ECORRUPT_ARCHIVE naming the file; file-system trouble keeps its own code.
 *
 * Besides what tar-stream checks, the pass requires the end-of-archive
 * marker: at least two zero blocks after the end of the last entry's data
 * (where tar-stream found it, extension headers and PAX sizes applied),
 * and the last 1024 bytes zero, so an archive truncated exactly between two
 * entries is not taken for a complete one, even when the last entry it
 * keeps ends in zeros (database pages, disk images).
 *
 * @module
 */
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, gunzip as gunzipCb } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { StowageError, fromFsError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { DnaDigest, type Dna, type DnaAlgorithm } from '../dna/index.js';
import { gunzipInto } from './gunzip-into.js';

const READ_SIZE = 1 << 20;
/** The smallest read (it comes from Node's shared buffer pool). */
const MIN_READ_SIZE = 4095;

const gunzipAsync = promisify(gunzipCb);

/**
 * Internal (tests set it to take either path): gzipped archives of up to
 * `wholeMaxBytes` are read whole and inflated in one call, into at most
 * `wholeMaxOut` bytes (more, and the archive is read as a stream after
 * all); see the module documentation.
 *
 * @internal
 */
export const archiveReadTuning = { wholeMaxBytes: 4 << 20, wholeMaxOut: 32 << 20 };

/** Entry types an archive may hold. */
export type ArchiveEntryType = 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo' | 'contiguous-file' | 'unknown';

/** One entry of an archive, as {@link Archiver.list} reports it. */
export interface ArchiveEntry {
  /**
   * Path inside the archive, normalised: no empty or `.` components (so no
   * leading `./`, no `//`, no trailing `/`); `..` and a leading `/` are kept
   * as stored (extraction refuses them).
   */
  readonly name: string;
  /** Entry type (`link` is a hard link). */
  readonly type: ArchiveEntryType;
  /** Data bytes (0 for anything but files). */
  readonly size: number;
  /** Permission bits. */
  readonly mode: number;
  /** Modification time. */
  readonly mtime: Date;
  /** Target of a symlink or hard link, else `undefined`. */
  readonly linkname: string | undefined;
  /** Owner id. */
  readonly uid: number;
  /** Group id. */
  readonly gid: number;
}

/** What one pass saw. */
export interface ArchivePassResult {
  /** Entries seen (all of them unless the visitor stopped early). */
  entries: number;
  /** Bytes of the archive file read. */
  bytes: number;
  /** DNA of the whole file, when a digest was asked for and the pass read it all. */
  dna: Dna | undefined;
  /** Whether the visitor stopped the pass early. */
  stopped: boolean;
}

/** Options of {@link readArchive}. */
export interface ArchivePassOptions {
  /** Digest the file in the same pass with this algorithm. */
  algorithm?: DnaAlgorithm | undefined;
  /** Progress phase name. */
  phase: string;
  /** Byte progress over the archive file. */
  onProgress?: ProgressCallback | undefined;
  /** Cancels the pass. */
  signal?: AbortSignal | undefined;
  /**
   * Scratch memory for a gzipped archive read whole (see the module
   * documentation), so that a caller reading archive after archive
   * allocates nothing per archive: the pass takes a pair of buffers from
   * the pool, reads the file into one and inflates it into the other when
   * each fits (whatever does not fit takes the usual path), and gives them
   * back once it has settled, after the visitor. The entry data the
   * visitor gets are then views of those buffers: a visitor must be done
   * with them when it resolves.
   */
  buffers?: ArchiveBufferSource | undefined;
}

const MiB = 1 << 20;

/** `n` rounded up to whole MiB, the size scratch buffers are allocated in. @internal */
export function roundUpMiB(n: number): number {
  return Math.ceil(n / MiB) * MiB;
}

/** A pair of scratch buffers of an {@link ArchiveBufferSource}. @internal */
export interface ArchiveBuffers {
  /** Holds the archive file (longer than the file). */
  readonly input: Buffer;
  /** Holds its inflated tar (longer than the tar). */
  readonly output: Buffer;
}

/**
 * Where a pass takes its scratch buffers from (see
 * {@link ArchivePassOptions.buffers}): `take` gives a pair for an archive
 * of `size` bytes, or undefined (the pass then reads as without one), and
 * `give` takes it back once the pass has settled.
 *
 * @internal
 */
export interface ArchiveBufferSource {
  /** A pair for an archive of `size` bytes, or undefined. */
  take(size: number): ArchiveBuffers | undefined;
  /** Takes back a pair once the pass that took it has settled. */
  give(b: ArchiveBuffers): void;
}

/**
 * Scratch buffers for {@link readArchive} passes, each pair used again by
 * the next pass once the one that took it has settled (see
 * {@link ArchivePassOptions.buffers}). One pool serves a run of passes,
 * several at a time; it keeps at most 4 free pairs, and its memory goes
 * with it.
 *
 * Why: every Buffer is external memory to V8, and new ones start full
 * collections (see `gunzip-into.ts`); restoring 1M rows read and inflated
 * ~200 MB in 100 archives.
 *
 * @internal
 */
export class ArchiveBufferPool implements ArchiveBufferSource {
  readonly #free: ArchiveBuffers[] = [];

  /**
   * A pair for an archive of `size` bytes: room for the file and for 8
   * times its size inflated (text inflates to ~3.5 times; 4 MiB at least,
   * `wholeMaxOut` at most), or undefined when the archive is not read
   * whole anyway.
   */
  take(size: number): ArchiveBuffers | undefined {
    if (size > archiveReadTuning.wholeMaxBytes) return undefined;
    const output = Math.min(archiveReadTuning.wholeMaxOut, Math.max(4 * MiB, 8 * size));
    const i = this.#free.findIndex((b) => b.input.length > size && b.output.length >= output);
    if (i >= 0) return this.#free.splice(i, 1)[0];
    return { input: Buffer.allocUnsafe(roundUpMiB(size + 1)), output: Buffer.allocUnsafe(roundUpMiB(output)) };
  }

  /** Gives back a pair taken (the smallest free pair is dropped beyond 4). */
  give(b: ArchiveBuffers): void {
    this.#free.push(b);
    if (this.#free.length > 4) {
      this.#free.sort((x, y) => y.input.length + y.output.length - (x.input.length + x.output.length));
      this.#free.pop();
    }
  }
}

/**
 * Called for each entry with its data stream. Consume the stream (or leave
 * it: it is drained for you) and resolve `true` to stop the pass. `failed`
 * aborts when the pass fails, so a visitor waiting on something else (a
 * slow consumer) can give up; the pass settles only after the visitor has.
 */
export type EntryVisitor = (entry: ArchiveEntry, data: Readable, failed: AbortSignal) => Promise<boolean | void>;

const STOP = Symbol('stop');


/**
 * Normalises an archive member name: empty and `.` components dropped
 * anywhere (`./a//b/./c/` is `a/b/c`; `..` is kept, for the safety checks to
 * see), a leading `/` kept (an absolute name stays absolute, and refused).
 * Every reader of names (extraction and its link checks, list, readEntry)
 * sees this one spelling: a link check that counted `a/./s` as two levels
 * deep while the file system takes it as one was fooled by it.
 *
 * @param name - the raw name
 */
export function normalizeEntryName(name: string): string {
  const n = name
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
  return name.startsWith('/') ? `/${n}` : n;
}

function toEntry(h: Header): ArchiveEntry {
  const type = (h.type ?? 'unknown') as ArchiveEntryType;
  return Object.freeze({
    name: normalizeEntryName(h.name),
    type,
    size: type === 'file' || type === 'contiguous-file' ? h.size ?? 0 : 0,
    mode: (h.mode ?? 0) & 0o7777,
    mtime: h.mtime ?? new Date(0),
    linkname: h.linkname ?? undefined,
    uid: paxId(h, 'uid') ?? h.uid ?? 0,
    gid: paxId(h, 'gid') ?? h.gid ?? 0,
  });
}

/** A uid or gid from the entry's PAX header (ids past ustar's 262143), if it holds a valid one. */
function paxId(h: Header, key: 'uid' | 'gid'): number | undefined {
  const v = (h as Header & { pax?: Record<string, string> | null }).pax?.[key];
  return v !== undefined && /^\d{1,10}$/.test(v) ? Number(v) : undefined;
}

const SECONDARY = Symbol('secondary');

/** A "stream closed" error that only echoes a failure reported elsewhere. */
function secondary(message: string): Error {
  return Object.assign(new Error(message), { [SECONDARY]: true });
}

/** Whether `err` merely says that a stream was torn down (by someone else's failure). */
function isSecondary(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; [SECONDARY]?: boolean };
  return e[SECONDARY] === true || e.code === 'STREAM_DESTROYED' || e.code === 'ERR_STREAM_PREMATURE_CLOSE' || e.code === 'ERR_STREAM_DESTROYED';
}

/** Maps an error met inside the data to ECORRUPT_ARCHIVE; file-system and stowage errors keep theirs. */
function corrupt(err: unknown, file: string): StowageError {
  if (err instanceof StowageError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code) && e?.syscall !== undefined) return fromFsError(err, 'read', file);
  const why = e?.message ?? String(err);
  return new StowageError('ECORRUPT_ARCHIVE', `Archive ${file} is damaged: ${why}. Restore it from another copy.`, { details: { path: file, reason: why, zlibCode: code }, cause: err });
}

/**
 * Waits for a streamx or Node writable to drain, failing if it errors or
 * closes first.
 *
 * @param w - the writable that returned false from `write()`
 */
export function drained(w: NodeJS.EventEmitter): Promise<void> {
  // A destroyed stream never drains, and its 'close' may be past already:
  // write() on it just returns false, so waiting would hang.
  if ((w as { destroyed?: unknown }).destroyed === true) return Promise.reject(secondary('stream destroyed'));
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      w.off('drain', ok);
      w.off('error', bad);
      w.off('close', closed);
      if (err === undefined) resolve();
      else reject(err);
    };
    const ok = (): void => done();
    const bad = (err: unknown): void => done(err ?? secondary('stream failed'));
    const closed = (): void => done(secondary('stream closed'));
    w.on('drain', ok);
    w.on('error', bad);
    w.on('close', closed);
  });
}

/**
 * Reads the whole file in buffers of at most 1 MiB, digesting and counting
 * as it goes. Each buffer is fitted to what is left of the file as `size`
 * (from fstat) says, plus a byte so that a short read shows the end: a
 * 300 KiB archive costs one 300 KiB buffer and one of 4 KiB, not two of
 * 1 MiB. Archives are read by the hundred in a restore, and allocating
 * what a read does not fill only makes garbage for V8 to collect.
 */
async function* fileChunks(handle: FileHandle, file: string, size: number, digest: DnaDigest | undefined, progress: ProgressTracker, counter: { bytes: number }, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  let asked = 0;
  const read = (): Promise<Buffer> => {
    const want = Math.min(READ_SIZE, Math.max(size - asked + 1, MIN_READ_SIZE));
    asked += want;
    const buf = Buffer.allocUnsafe(want);
    return handle.read(buf, 0, want, null).then(
      (r) => (r.bytesRead === want ? buf : buf.subarray(0, r.bytesRead)),
      (err: unknown) => {
        throw fromFsError(err, 'read', file);
      },
    );
  };
  let pending = read();
  try {
    for (;;) {
      const buf = await pending;
      if (buf.length === 0) return;
      throwIfAborted(signal);
      pending = read();
      digest?.update(buf);
      counter.bytes += buf.length;
      progress.add(buf.length);
      yield buf;
    }
  } finally {
    pending.catch(() => {});
  }
}

/**
 * Reads the whole file into `into` (from its start), or gives `undefined`
 * when it does not fit (then nothing is counted as read).
 */
async function readWholeInto(handle: FileHandle, file: string, into: Buffer, signal: AbortSignal | undefined): Promise<Buffer | undefined> {
  let off = 0;
  for (;;) {
    throwIfAborted(signal);
    let n: number;
    try {
      n = (await handle.read(into, off, into.length - off, off)).bytesRead;
    } catch (err) {
      throw fromFsError(err, 'read', file);
    }
    if (n === 0) return into.subarray(0, off);
    off += n;
    if (off === into.length) return undefined;
  }
}

/**
 * Reads `file` once, calling `visit` for every entry.
 *
 * @param file - the archive (`.tar` or gzip-compressed tar, told apart by content)
 * @param options - digest algorithm, progress, signal
 * @param visit - the per-entry callback
 */
export async function readArchive(file: string, options: ArchivePassOptions, visit: EntryVisitor): Promise<ArchivePassResult> {
  const { signal } = options;
  throwIfAborted(signal);
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw fromFsError(err, 'read', file);
  }
  const result: ArchivePassResult = { entries: 0, bytes: 0, dna: undefined, stopped: false };
  const digest = options.algorithm !== undefined ? new DnaDigest({ algorithm: options.algorithm }) : undefined;
  const extract = tarExtract();
  let gunzip: ReturnType<typeof createGunzip> | undefined;
  let source: Readable | undefined;
  let failure: unknown;
  const passFailed = new AbortController();
  let visiting: Promise<unknown> | undefined;
  let scratch: ArchiveBuffers | undefined;
  const teardown = (reason: unknown): void => {
    if (!passFailed.signal.aborted) passFailed.abort(reason);
    source?.destroy();
    gunzip?.destroy();
    if (!extract.destroyed) extract.destroy();
  };
  // The first failure wins, except that a mere "stream closed" echo gives way
  // to the real reason (or a deliberate stop) reported after it.
  const fail = (err: unknown): void => {
    if (failure !== undefined && !(isSecondary(failure) && !isSecondary(err))) return;
    failure = err;
    teardown(err);
  };
  const dispose = onAbort(signal, (reason) => fail(reason));
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new StowageError('EBAD_CONFIG', `${file} is not a regular file.`, { details: { path: file } });
    const size = st.size;
    const progress = new ProgressTracker(options.phase, options.onProgress, { bytesTotal: size });
    const magic = Buffer.alloc(2);
    await handle.read(magic, 0, 2, 0);
    const gzipped = magic[0] === 0x1f && magic[1] === 0x8b;
    const counter = { bytes: 0 };
    const chunks = fileChunks(handle, file, size, digest, progress, counter, signal);
    let tarStream: AsyncIterable<Buffer> | Iterable<Buffer> | undefined;
    if (gzipped && size <= archiveReadTuning.wholeMaxBytes) {
      scratch = options.buffers?.take(size);
      let whole = scratch !== undefined ? await readWholeInto(handle, file, scratch.input, signal) : undefined;
      if (whole !== undefined) {
        digest?.update(whole);
        counter.bytes += whole.length;
        progress.add(whole.length);
      } else {
        const parts: Buffer[] = [];
        for await (const c of chunks) parts.push(c);
        whole = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      }
      const maxOutputLength = archiveReadTuning.wholeMaxOut;
      const inflated = scratch !== undefined ? gunzipInto(whole, scratch.output) : undefined;
      try {
        // Text inflates to ~3.5 times its size: one output buffer, fitted, most of the time.
        tarStream = [inflated ?? (await gunzipAsync(whole, { chunkSize: Math.min(Math.max(whole.length * 4, 64 * 1024), maxOutputLength), maxOutputLength }))];
      } catch {
        // Inflates to more than allowed, or damaged: streamed after all, so
        // that a damaged archive reads as it always has (the entries before
        // the damage are visited, then the error, as the stream meets it).
        source = Readable.from([whole], { objectMode: false });
      }
    } else {
      source = Readable.from(chunks, { objectMode: false, highWaterMark: READ_SIZE });
    }
    if (tarStream === undefined) {
      tarStream = source!;
      if (gzipped) {
        gunzip = createGunzip({ chunkSize: 256 * 1024 });
        const gz = gunzip;
        source!.on('error', (err) => gz.destroy(err));
        source!.pipe(gz);
        tarStream = gz;
      }
    }

    let tail: Buffer = Buffer.alloc(0);
    let tarBytes = 0;
    /** Where the last entry's (padded) data ends in the tar stream. */
    let lastEnd = 0;
    let finished = false;
    extract.on('finish', () => (finished = true));
    // tar-stream destroys the whole extract, with 'close' and no 'error', when
    // a visitor destroys its entry stream (leaving a for-await loop early, say
    // on ENOSPC). Nothing more can be written then: note it at once, so that
    // the loop below stops instead of waiting for a 'drain' or 'finish' that
    // cannot come; the visitor's own error replaces this one when it arrives.
    extract.on('close', () => {
      if (!finished) fail(secondary('tar stream closed'));
    });
    extract.on('entry', (header: Header, source, next) => {
      // tar-stream's entry streams are streamx Readables: same events, async iteration and resume().
      const stream = source as unknown as Readable;
      result.entries++;
      // tar-stream's byteOffset: where this entry's data starts, its headers (extension ones included) read.
      const at = (header as Header & { byteOffset?: number }).byteOffset;
      if (typeof at === 'number') lastEnd = at + (header.type === 'directory' ? 0 : Math.ceil((header.size ?? 0) / 512) * 512);
      const entry = toEntry(header);
      let ended = false;
      stream.on('end', () => (ended = true));
      // Drain whatever the visitor leaves unread so that the pass goes on.
      visiting = visit(entry, stream, passFailed.signal)
        .then(async (stop) => {
          if (stop === true) {
            result.stopped = true;
            fail(STOP);
            return;
          }
          if (!ended && stream.destroyed) {
            // The visitor destroyed the entry (and so the whole extract) and still wants more.
            throw new StowageError('EIO', `Reading ${file} stopped: entry "${entry.name}" was closed before its end.`, { details: { path: file, entry: entry.name } });
          }
          if (!ended) {
            await new Promise<void>((res, rej) => {
              stream.on('end', res);
              stream.on('close', res);
              stream.on('error', rej);
              stream.resume();
            });
          }
          next(null);
        })
        .catch((err: unknown) => fail(err));
    });
    extract.on('error', (err: unknown) => fail(err));

    for await (const chunk of tarStream) {
      if (failure !== undefined) break;
      tarBytes += chunk.length;
      tail = chunk.length >= 1024 ? chunk.subarray(chunk.length - 1024) : Buffer.concat([tail, chunk]).subarray(-1024);
      if (!extract.write(chunk)) await drained(extract);
    }
    if (failure === undefined) {
      await new Promise<void>((resolve, reject) => {
        extract.on('finish', resolve);
        extract.on('close', () => (failure === undefined ? resolve() : reject(failure)));
        extract.on('error', reject);
        (extract as unknown as { end(): void }).end();
      });
    }
    if (failure === STOP) return result;
    if (failure !== undefined) throw failure;
    if (tarBytes - lastEnd < 1024 || tail.some((b) => b !== 0)) {
      throw new StowageError('ECORRUPT_ARCHIVE', `Archive ${file} is damaged: it lacks the end-of-archive marker (truncated?). Restore it from another copy.`, {
        details: { path: file, reason: 'no end-of-archive marker', tarBytes },
      });
    }
    result.bytes = counter.bytes;
    result.dna = digest?.digest();
    progress.report(true);
    return result;
  } catch (err) {
    // Stop everything, then let a visitor that is still running record its own error (ENOSPACE while
    // extracting tears the pass down from inside, and the loop sees only "stream closed").
    teardown(err);
    await visiting?.catch(() => {});
    if (failure === STOP) return result;
    if (signal?.aborted) throw signal.reason;
    const candidates = [failure, err].filter((x) => x !== undefined);
    throw corrupt(candidates.find((x) => !isSecondary(x)) ?? candidates[0], file);
  } finally {
    dispose();
    source?.destroy();
    gunzip?.destroy();
    if (!extract.destroyed) extract.destroy();
    // A visitor may still be cleaning up (discarding a .part file): the pass ends after it.
    await visiting?.catch(() => {});
    await handle.close().catch(() => {});
    // Nothing reads the scratch buffers any more: the visitor has settled, and the streams are gone.
    if (scratch !== undefined) options.buffers!.give(scratch);
  }
}
