/**
 * Writing and reading partition archives.
 *
 * A partition archive is an ordinary `.tar.gz` (see `manifest.ts` for its
 * entries) written by the same code as `Archiver.create`
 * (`writeTarAtomic`): a tar-stream pack compressed in parallel, digested on
 * its way to an atomic `NAME.part` (fsync, rename), then the DNA sidecar. The
 * entries come from memory and from {@link RowSpool}s rather than from a
 * folder, so no temporary tree is written. Reading goes through the
 * Archiver's own streaming pass (`readArchive`), which checks gzip CRCs,
 * tar checksums and the end-of-archive marker.
 *
 * @module
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import type { Header } from 'tar-stream';
import { StowageError, fromFsError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import type { Dna } from '../dna/index.js';
import { writeTarAtomic } from '../archive/archive-writer.js';
import { drained, readArchive } from '../archive/archive-reader.js';
import { MANIFEST_ENTRY, parseManifest, type PartitionManifest } from './manifest.js';

const MiB = 1 << 20;

/** One regular-file entry to write. */
export interface ArchiveInputEntry {
  /** Path inside the archive. */
  readonly name: string;
  /** Its exact size in bytes. */
  readonly size: number;
  /** Its bytes: a buffer, or a function giving them as chunks. */
  readonly data: Buffer | (() => AsyncIterable<Buffer>);
}

/** Options of {@link writePartitionArchive}. */
export interface WriteArchiveOptions {
  /** Deflate level 1-9. */
  gzipLevel: number;
  /** Chunks compressed at once. */
  gzipConcurrency: number;
  /** Modification time of every entry. */
  mtime: Date;
  /** Cancels the write; nothing is left under the final name nor as `.part`. */
  signal?: AbortSignal | undefined;
}

/** What {@link writePartitionArchive} wrote. */
export interface WrittenArchive {
  /** The archive's DNA (also in its sidecar). */
  readonly dna: Dna;
  /** Bytes of tar (uncompressed). */
  readonly bytesIn: number;
  /** Bytes of the archive file. */
  readonly bytesOut: number;
}

/**
 * Writes `entries` into the `.tar.gz` `out` atomically, then its sidecar
 * `out.dna`. An older archive and sidecar under the same name are replaced
 * (the old sidecar is removed first, so the new archive is never paired
 * with the old DNA). On failure or abort nothing is left under `out` nor as
 * `out.part`.
 *
 * @param out - the archive's path
 * @param entries - the files to store, in order
 * @param options - compression, mtime, signal
 */
export async function writePartitionArchive(out: string, entries: readonly ArchiveInputEntry[], options: WriteArchiveOptions): Promise<WrittenArchive> {
  const { signal } = options;
  const written = await writeTarAtomic(out, { level: options.gzipLevel, chunkSize: MiB, concurrency: options.gzipConcurrency, sidecar: true, signal }, async ({ pack, failed }) => {
    for (const e of entries) {
      throwIfAborted(signal);
      if (failed() !== undefined) return;
      const header: Partial<Header> & Pick<Header, 'name'> = { name: e.name, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: options.mtime, size: e.size };
      if (Buffer.isBuffer(e.data)) {
        const body = e.data;
        await new Promise<void>((res, rej) => pack.entry(header, body, (err) => (err ? rej(err) : res())));
        continue;
      }
      let sink!: NodeJS.WritableStream & NodeJS.EventEmitter;
      const done = new Promise<void>((res, rej) => {
        sink = pack.entry(header, (err) => (err ? rej(err) : res())) as unknown as NodeJS.WritableStream & NodeJS.EventEmitter;
      });
      sink.on('error', () => {});
      done.catch(() => {});
      let n = 0;
      for await (const buf of e.data()) {
        throwIfAborted(signal);
        if (failed() !== undefined) return;
        n += buf.length;
        if (!sink.write(buf)) await drained(sink);
      }
      if (n !== e.size) throw new StowageError('EIO', `Entry ${e.name} of ${out} gave ${n} bytes, ${e.size} announced.`, { details: { path: out, entry: e.name } });
      sink.end();
      await done;
    }
  });
  return Object.freeze({ dna: written.dna, bytesIn: written.bytesIn, bytesOut: written.bytesOut });
}

/**
 * Reads the manifest (the first entry) of a partition archive, stopping
 * right after it. ECORRUPT_ARCHIVE if the first entry is not a manifest.
 *
 * @param file - the archive
 * @param signal - cancels the read
 */
export async function readManifest(file: string, signal?: AbortSignal): Promise<PartitionManifest> {
  let manifest: PartitionManifest | undefined;
  await readArchive(file, { phase: 'read', signal }, async (e, data) => {
    if (e.name !== MANIFEST_ENTRY || e.type !== 'file') {
      throw new StowageError('ECORRUPT_ARCHIVE', `${file} is not a partition archive: its first entry is ${JSON.stringify(e.name)}, not ${MANIFEST_ENTRY}.`, { details: { path: file, entry: e.name } });
    }
    manifest = parseManifest(await collect(data, 16 * MiB, file), file);
    return true;
  });
  if (manifest === undefined) throw new StowageError('ECORRUPT_ARCHIVE', `${file} is an empty archive, not a partition archive.`, { details: { path: file } });
  return manifest;
}

/**
 * {@link readManifest} of an archive whose DNA has just been verified (what
 * `Partitioner.restore` does for every archive before loading): the first
 * {@link MANIFEST_PEEK_BYTES} of the file are read and, when they hold the
 * manifest whole ({@link manifestAtStart}), parsed; anything else goes to
 * the full streaming pass, which decides. A partition's manifest is its
 * first entry, a few hundred bytes: this inflates a few KiB instead of a
 * whole gzip member (1 MiB) through streams.
 *
 * @param file - the archive
 * @param signal - cancels the read
 * @param bytes - the archive's first bytes (or all of them), when already read
 */
export async function readVerifiedManifest(file: string, signal?: AbortSignal, bytes?: Buffer): Promise<PartitionManifest> {
  throwIfAborted(signal);
  let head = bytes;
  if (head === undefined) {
    try {
      const h = await open(file, 'r');
      try {
        const buf = Buffer.allocUnsafe(MANIFEST_PEEK_BYTES);
        const { bytesRead } = await h.read(buf, 0, buf.length, 0);
        head = buf.subarray(0, bytesRead);
      } finally {
        await h.close();
      }
    } catch (err) {
      throw fromFsError(err, 'read', file);
    }
    throwIfAborted(signal);
  }
  const manifest = manifestAtStart(head);
  return manifest !== undefined ? parseManifest(manifest, file) : readManifest(file, signal);
}

/** Compressed bytes inflated, at most, to find the manifest at the start of an archive. */
export const MANIFEST_PEEK_BYTES = 16 * 1024;

/**
 * The manifest's bytes when `bytes` (the start of a `.tar.gz`) starts
 * with a plain ustar header of {@link MANIFEST_ENTRY} whose checksum holds
 * and whose data lies within the first {@link MANIFEST_PEEK_BYTES}
 * inflated; undefined otherwise (then the full streaming pass decides).
 * A partition's manifest is its first entry, a few hundred bytes: this
 * inflates a few KiB instead of a whole gzip member (1 MiB) through
 * streams, ~10x less work when a restore checks its archives. It is only
 * used on bytes whose DNA has been verified; the load reads the archive
 * again through the full pass, gzip CRCs included.
 */
export function manifestAtStart(bytes: Buffer): Buffer | undefined {
  if (bytes.length < 18 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return undefined;
  // The first 4 KiB hold the manifest of most partitions (a few hundred
  // bytes, compressed): the manifests of 1M rows' 100 archives were found
  // in 3-5 ms of this thread instead of 11-17, while the restore waits.
  for (const peek of [MANIFEST_FIRST_PEEK_BYTES, MANIFEST_PEEK_BYTES]) {
    let head: Buffer;
    try {
      head = gunzipSync(bytes.subarray(0, peek), { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch {
      return undefined;
    }
    const found = manifestIn(head);
    if (found !== 'short' || peek >= bytes.length) return found === 'short' ? undefined : found;
  }
  return undefined;
}

/** Compressed bytes inflated first by {@link manifestAtStart}, before {@link MANIFEST_PEEK_BYTES}. */
const MANIFEST_FIRST_PEEK_BYTES = 4 * 1024;

/** The manifest's data in `head` (the start of the tar stream); 'short' when its header holds but its data goes past `head`. */
function manifestIn(head: Buffer): Buffer | 'short' | undefined {
  if (head.length < 512) return 'short';
  const h = head.subarray(0, 512);
  const field = (at: number, len: number): string => {
    const f = h.subarray(at, at + len);
    const end = f.indexOf(0);
    return f.subarray(0, end < 0 ? len : end).toString('latin1');
  };
  const type = h[156];
  if ((type !== 0x30 && type !== 0) || field(257, 5) !== 'ustar' || field(345, 155) !== '' || field(0, 100) !== MANIFEST_ENTRY) return undefined;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  const octal = (text: string): number => (/^[0-7]+$/.test(text) ? parseInt(text, 8) : NaN);
  if (octal(field(148, 8).trim()) !== sum) return undefined;
  const size = octal(field(124, 12).trim());
  if (!(size >= 0)) return undefined;
  if (512 + size > head.length) return 'short';
  return head.subarray(512, 512 + size);
}

/**
 * Reads one small entry (a schema) of a partition archive.
 *
 * @param file - the archive
 * @param name - the entry
 * @param signal - cancels the read
 */
export async function readSmallEntry(file: string, name: string, signal?: AbortSignal): Promise<Buffer> {
  let found: Buffer | undefined;
  await readArchive(file, { phase: 'read', signal }, async (e, data) => {
    if (e.name !== name) return false;
    found = await collect(data, 64 * MiB, file);
    return true;
  });
  if (found === undefined) throw new StowageError('ECORRUPT_ARCHIVE', `Partition archive ${file} lacks the entry ${name} its manifest names.`, { details: { path: file, entry: name } });
  return found;
}

async function collect(data: Readable, max: number, file: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of data as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) throw new StowageError('ECORRUPT_ARCHIVE', `An entry of ${file} that should be small is over ${max} bytes.`, { details: { path: file } });
    parts.push(c);
  }
  return Buffer.concat(parts, n);
}
