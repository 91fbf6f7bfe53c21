/**
 * Reading a {@link PutSource} block by block from any offset, so a transfer
 * can fill pool blocks without copying more than once and resume where the
 * far side confirmed.
 *
 * @module
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { fromFsError, StowageError } from '../errors.js';
import type { PutSource } from './transport.js';

/**
 * What a local file was when a transfer first opened it: a resumed
 * transfer reopens it by name and must find the same file, unchanged.
 */
export interface SourceIdentity {
  /** Device of the file system holding it. */
  readonly dev: number;
  /** Inode number (another file renamed over the name has another). */
  readonly ino: number;
  /** Size in bytes. */
  readonly size: number;
  /** Modification time in milliseconds (with the file system's sub-millisecond part). */
  readonly mtimeMs: number;
}

function describeIdentity(id: SourceIdentity): string {
  return `${id.size} bytes, modified ${new Date(id.mtimeMs).toISOString()}`;
}

/**
 * The error of a source file that changed while it was sent (or, with
 * `get`, while a get read it): a retryable EIO naming the file, with what
 * it was when first opened and what it is now. Sending (getting) it again
 * once nothing writes to it succeeds.
 *
 * @param path - the file read
 * @param before - the file when the transfer first opened it
 * @param after - the file now
 * @param get - the file was the far file of a get, copied to this local path
 */
export function sourceChangedError(path: string, before: SourceIdentity, after: SourceIdentity, get?: { localPath: string }): StowageError {
  const replaced = before.dev !== after.dev || before.ino !== after.ino;
  const what = replaced ? 'it was replaced by another file' : 'it changed';
  return new StowageError(
    'EIO',
    get === undefined
      ? `Cannot send ${path}: ${what} while it was being sent (${describeIdentity(before)} when first opened; ${describeIdentity(after)} now). Nothing was left under the final name; send it again once nothing writes to it.`
      : `Cannot get ${path}: ${what} while it was read (${describeIdentity(before)} when first opened; ${describeIdentity(after)} now). Nothing was written under ${get.localPath}; get it again once nothing writes to it.`,
    { details: { path, reason: replaced ? 'source replaced' : 'source changed', before, after }, retryable: true },
  );
}

function sameIdentity(a: SourceIdentity, b: SourceIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** Fills buffers with the bytes of a source, in order. */
export interface BlockSource {
  /** Size in bytes, when known up front. */
  readonly size: number | undefined;
  /** For a local file: the file as this source opened it. */
  readonly identity?: SourceIdentity;
  /**
   * For a local file, once it is read: rejects with a retryable EIO
   * ({@link sourceChangedError}) when its size or mtime is no longer what
   * they were at open, i.e. it was written to (still being written, cut or
   * appended to) while it was read.
   */
  checkUnchanged?(): Promise<void>;
  /**
   * Fills `buf[0..len)`; returns the number of bytes read, less than `len`
   * only at the end of the source (0 = end).
   */
  read(buf: Buffer, len: number): Promise<number>;
  /**
   * For sources that can be read at any position (files, buffers): fills
   * `buf[0..len)` from `position` without moving the sequential cursor, so
   * several reads can be in flight at once.
   */
  readAt?(buf: Buffer, len: number, position: number): Promise<number>;
  /** Releases the file handle or stream. */
  close(): Promise<void>;
}

class FileBlockSource implements BlockSource {
  readonly size: number | undefined;
  readonly identity: SourceIdentity;
  readonly #fh: FileHandle;
  readonly #path: string;
  #pos: number;

  constructor(fh: FileHandle, path: string, offset: number, identity: SourceIdentity) {
    this.#fh = fh;
    this.#path = path;
    this.#pos = offset;
    this.size = identity.size;
    this.identity = identity;
  }

  async read(buf: Buffer, len: number): Promise<number> {
    const got = await this.readAt(buf, len, this.#pos);
    this.#pos += got;
    return got;
  }

  async readAt(buf: Buffer, len: number, position: number): Promise<number> {
    let got = 0;
    while (got < len) {
      let n: number;
      try {
        ({ bytesRead: n } = await this.#fh.read(buf, got, len - got, position + got));
      } catch (err) {
        throw fromFsError(err, 'read', this.#path);
      }
      if (n === 0) break;
      got += n;
    }
    return got;
  }

  async checkUnchanged(): Promise<void> {
    let st: { dev: number; ino: number; size: number; mtimeMs: number };
    try {
      st = await this.#fh.stat();
    } catch (err) {
      throw fromFsError(err, 'read', this.#path);
    }
    const now: SourceIdentity = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    if (!sameIdentity(this.identity, now)) throw sourceChangedError(this.#path, this.identity, now);
  }

  async close(): Promise<void> {
    await this.#fh.close().catch(() => {});
  }
}

class BufferBlockSource implements BlockSource {
  readonly size: number;
  readonly #data: Uint8Array;
  #pos: number;

  constructor(data: Uint8Array, offset: number) {
    this.#data = data;
    this.#pos = offset;
    this.size = data.length;
  }

  async read(buf: Buffer, len: number): Promise<number> {
    const n = await this.readAt(buf, len, this.#pos);
    this.#pos += n;
    return n;
  }

  async readAt(buf: Buffer, len: number, position: number): Promise<number> {
    const n = Math.min(len, this.#data.length - position);
    if (n <= 0) return 0;
    buf.set(this.#data.subarray(position, position + n), 0);
    return n;
  }

  async close(): Promise<void> {}
}

class StreamBlockSource implements BlockSource {
  readonly size: number | undefined;
  readonly #stream: Readable;
  readonly #it: AsyncIterator<unknown>;
  #left: Buffer | undefined;
  #done = false;

  constructor(stream: Readable, size: number | undefined) {
    this.#stream = stream;
    this.#it = stream[Symbol.asyncIterator]();
    this.size = size;
  }

  async read(buf: Buffer, len: number): Promise<number> {
    let got = 0;
    while (got < len) {
      if (this.#left === undefined || this.#left.length === 0) {
        if (this.#done) break;
        const r = await this.#it.next();
        if (r.done) {
          this.#done = true;
          break;
        }
        const v = r.value;
        this.#left = Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v) : Buffer.from(v as Uint8Array);
        continue;
      }
      const n = Math.min(len - got, this.#left.length);
      this.#left.copy(buf, got, 0, n);
      this.#left = this.#left.subarray(n);
      got += n;
    }
    return got;
  }

  async close(): Promise<void> {
    // Destroyed first, and the iterator's return not waited for: a source
    // stalled in the middle of a read (a gate, a network stream) would hold
    // the close, and with it an aborted put, for as long as it stalls.
    this.#stream.destroy();
    if (!this.#done) void this.#it.return?.().catch(() => {});
  }
}

/**
 * Opens a source at `offset`.
 *
 * A local file reopened to resume a transfer must be the file first opened,
 * unchanged: pass that open's {@link BlockSource.identity} as `expect`. A
 * file replaced (another device or inode under the name) or written to
 * (another size or mtime) since is a retryable EIO: resuming would splice
 * the bytes of two files.
 *
 * @param source - a local path, a buffer or a replayable source
 * @param offset - first byte to read
 * @param expect - for a local path: the file as the transfer first opened it
 */
export async function openBlockSource(source: PutSource, offset: number, expect?: SourceIdentity): Promise<BlockSource> {
  if (typeof source === 'string') {
    let fh: FileHandle;
    try {
      // Non-blocking, and its type checked on the open handle before any
      // read: a FIFO (or a device) opened for reading would otherwise wait
      // for a writer, holding a libuv thread and the put with it. A regular
      // file reads the same with the flag.
      fh = await open(source, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
    } catch (err) {
      throw fromFsError(err, 'read', source);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new StowageError('EIO', `Cannot send ${source}: it is not a regular file.`, { details: { path: source } });
      const identity: SourceIdentity = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
      if (expect !== undefined && !sameIdentity(expect, identity)) throw sourceChangedError(source, expect, identity);
      return new FileBlockSource(fh, source, offset, identity);
    } catch (err) {
      await fh.close().catch(() => {});
      throw fromFsError(err, 'read', source);
    }
  }
  if (source instanceof Uint8Array) return new BufferBlockSource(source, offset);
  if (typeof source !== 'object' || source === null || typeof (source as { open?: unknown }).open !== 'function') {
    throw new StowageError('EBAD_CONFIG', 'put: source must be a local path, a Uint8Array or a ReplayableSource ({ open(offset) }).', { details: { source: typeof source } });
  }
  return new StreamBlockSource(source.open(offset), source.size);
}
