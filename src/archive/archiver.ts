/**
 * `Archiver`: create, verify, list, read and extract `.tar` / `.tar.gz`
 * archives, with the DNA of every archive computed in the pass that wrote it.
 *
 * Why it is built the way it is: gzip is the bottleneck (~25 MB/s on one
 * core), so `create` cuts the tar stream into chunks compressed in parallel
 * on zlib's thread pool and written in order as gzip members (see
 * {@link ParallelGzip}); incompressible data is stored rather than
 * compressed. The output goes through {@link AtomicFile} (`NAME.part`,
 * fsync, rename) and through a {@link DnaDigest} on its way to the disk, so
 * the archive is never visible half-written and its DNA costs no second
 * read. Reading (verify, list, readEntry, extract) is one pass (streamed;
 * an archive of up to 4 MiB is inflated in one call) that checks gzip
 * CRCs, tar header checksums, entry sizes and the end-of-archive marker,
 * and digests the file on the way. Extraction treats
 * the archive as untrusted input (see {@link ExtractGuard}), and, since a
 * gzip member's CRC comes only after its bytes, puts nothing in place
 * before that whole pass has succeeded.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { constants as fsConstants } from 'node:fs';
import { chmod, link, mkdir, open, realpath, rename, rm, stat, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { Header } from 'tar-stream';
import { StowageError, fromFsError, isStowageError, warnOrThrow, type WarningCallback } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { anySignal, throwIfAborted } from '../util/abort.js';
import { AtomicFile, PART_SUFFIX, fsyncDir, uniquePartPath } from '../util/atomic-file.js';
import { checkFunctionOption, checkInt, checkOneOf, checkOptionKeys, checkPathArg, checkSignalOption } from '../util/options.js';
import { DNA_ALGORITHMS, DnaDigest, SIDECAR_SUFFIX, assertDna, dnaEqual, type Dna, type DnaAlgorithm } from '../dna/index.js';
import { BENCH_NO_DNA, writeTarAtomic } from './archive-writer.js';
import { collectEntries, type SourceEntry } from './source-walk.js';
import { drained, normalizeEntryName, readArchive, type ArchiveEntry, type ArchiveEntryType } from './archive-reader.js';
import { ExtractGuard, type PendingEntry } from './tar-safety.js';
import { mkdirRecursive } from '../util/mkdirp.js';

/** What tar-stream's `pack.entry()` takes. */
type TarHeaders = Partial<Header> & Pick<Header, 'name'>;

const MiB = 1 << 20;
const GiB = 1 << 30;

/** File reads while archiving: 1 MiB, the size at which read syscalls stop costing. */
const READ_SIZE = MiB;

/** Default size cap of {@link Archiver.extract}: 64 GiB. */
export const DEFAULT_EXTRACT_MAX_BYTES = 64 * GiB;

/** Modification time written for every entry by `deterministic: true` (2000-01-01T00:00:00Z). */
export const DETERMINISTIC_MTIME = new Date(Date.UTC(2000, 0, 1));

/** Options of {@link Archiver.create}. */
export interface ArchiveCreateOptions {
  /** Relative paths under the source directory to archive, in this order (directories recursively). Default: the whole directory, sorted. */
  entries?: readonly string[];
  /** Deflate level 0-9 (default 6). */
  gzipLevel?: number;
  /** Compress with gzip. Default from the name: `.tar.gz`/`.tgz` yes, `.tar` no; any other name needs it set. */
  gzip?: boolean;
  /** Byte-identical output for identical input: fixed mtime ({@link DETERMINISTIC_MTIME}), uid/gid 0, no user names, modes normalised to 755/644. */
  deterministic?: boolean;
  /** Write the DNA sidecar `outFile.dna` beside the archive (default true). */
  sidecar?: boolean;
  /** DNA digest algorithm (default md5). */
  algorithm?: DnaAlgorithm;
  /** Uncompressed bytes per gzip member (default 1 MiB; 64 KiB to 64 MiB). */
  chunkSize?: number;
  /** Chunks compressed at once (default: the number of cores). */
  concurrency?: number;
  /** Archive a tree that holds a `LOCKED` directory anyway (the lock directory itself is left out). Default false: ELOCKED. */
  allowLocked?: boolean;
  /** Cancels the work; nothing is left under the final name nor as `.part`. */
  signal?: AbortSignal;
  /** Progress over the source bytes read (phase `"archive"`). */
  onProgress?: ProgressCallback;
  /** Per-file trouble that does not stop the archive: skipped sockets/fifos/devices (EUNSAFE_PATH), files that vanished (ENOT_FOUND). */
  onWarning?: WarningCallback;
  /** Throw on the first per-file trouble instead of warning. */
  strict?: boolean;
}

/** Result of {@link Archiver.create}. */
export interface ArchiveCreateResult {
  /** The archive's path. */
  readonly path: string;
  /** DNA of the archive file, computed while writing it. */
  readonly dna: Dna;
  /** Entries archived (files, directories, symlinks). */
  readonly entries: number;
  /** Bytes of file content read from the source. */
  readonly bytesIn: number;
  /** Size of the archive file. */
  readonly bytesOut: number;
  /** The sidecar's path, when one was written. */
  readonly sidecar: string | undefined;
}

/** Options of {@link Archiver.verify}. */
export interface ArchiveVerifyOptions {
  /** Fail with ENO_SIDECAR when the archive has no `.dna` sidecar (default false: checked when present). */
  requireSidecar?: boolean;
  /** Digest algorithm when there is no sidecar (default md5; with a sidecar, the sidecar's). */
  algorithm?: DnaAlgorithm;
  /** Cancels the read. */
  signal?: AbortSignal;
  /** Progress over the archive bytes (phase `"verify"`). */
  onProgress?: ProgressCallback;
}

/** Result of a successful {@link Archiver.verify}; failures throw. */
export interface ArchiveVerifyResult {
  /** Always true: a damaged archive throws. */
  readonly ok: true;
  /** The archive. */
  readonly path: string;
  /** DNA of the archive, computed in the verifying pass. */
  readonly dna: Dna;
  /** Number of entries. */
  readonly entries: number;
  /** Bytes of the archive file. */
  readonly bytes: number;
  /** Whether a sidecar was found and matched. */
  readonly sidecarChecked: boolean;
}

/**
 * The sidecar of `file` when it has one (ENO_SIDECAR: undefined). A sidecar
 * that exists but cannot be read or parsed is an error, as in
 * {@link Archiver.verify}.
 */
async function sidecarIfAny(file: string, check: boolean): Promise<Dna | undefined> {
  if (!check) return undefined;
  try {
    return await DnaDigest.readSidecar(file);
  } catch (err) {
    if (isStowageError(err, 'ENO_SIDECAR')) return undefined;
    if (isStowageError(err, 'EBAD_SIDECAR')) {
      throw new StowageError('EBAD_SIDECAR', `${err.message} Pass checkSidecar: false to read ${file} on its own checks (gzip CRCs, tar checksums) without it.`, { details: err.details, cause: err });
    }
    throw err;
  }
}

/** Options of {@link Archiver.list}. */
export interface ArchiveListOptions {
  /** Cancels the read. */
  signal?: AbortSignal;
  /** Progress over the archive bytes. */
  onProgress?: ProgressCallback;
}

/** Options of {@link Archiver.readEntry} and {@link Archiver.openEntry}. */
export interface ArchiveReadOptions extends ArchiveListOptions {
  /**
   * Compare the archive with its sidecar `FILE.dna` when there is one
   * (default true). False reads an archive whose sidecar is damaged on its
   * own checks alone (gzip CRCs, tar checksums).
   */
  checkSidecar?: boolean;
}

/** Options of {@link Archiver.extract}. */
export interface ArchiveExtractOptions {
  /** Extract only the entries for which this returns true. */
  filter?: (entry: ArchiveEntry) => boolean;
  /** Refuse (EUNSAFE_PATH) once the extracted file bytes would pass this (default {@link DEFAULT_EXTRACT_MAX_BYTES}). */
  maxBytes?: number;
  /** UNSAFE: allow absolute names, `..` segments, links pointing out and writing through symlinks. Only for archives you made yourself. */
  allowUnsafePaths?: boolean;
  /** Cancels the extraction; until every entry has been checked it leaves the destination as it was (see {@link Archiver.extract}). */
  signal?: AbortSignal;
  /** Progress over the archive bytes (phase `"extract"`). */
  onProgress?: ProgressCallback;
  /** Entries skipped because their type is not supported (EUNSAFE_PATH warning). */
  onWarning?: WarningCallback;
  /** Throw instead of warning. */
  strict?: boolean;
  /** Compare the archive with its sidecar when there is one (default true); see {@link ArchiveReadOptions.checkSidecar}. */
  checkSidecar?: boolean;
}

/** Result of {@link Archiver.extract}. */
export interface ArchiveExtractResult {
  /** The destination's real path. */
  readonly dest: string;
  /** Entries written (files, directories, links). */
  readonly entries: number;
  /** File bytes written. */
  readonly bytes: number;
  /** Whether the archive had a sidecar, and matched it. */
  readonly sidecarChecked: boolean;
  /**
   * Entries not extracted because their type is not supported (GNU sparse
   * files, say), also reported through `onWarning`: check it is empty
   * before trusting a restore.
   */
  readonly skipped: readonly { readonly name: string; readonly type: ArchiveEntryType }[];
}

const CREATE_KEYS = ['entries', 'gzipLevel', 'gzip', 'deterministic', 'sidecar', 'algorithm', 'chunkSize', 'concurrency', 'allowLocked', 'signal', 'onProgress', 'onWarning', 'strict'] as const;
const VERIFY_KEYS = ['requireSidecar', 'algorithm', 'signal', 'onProgress'] as const;
const LIST_KEYS = ['signal', 'onProgress'] as const;
const READ_KEYS = ['signal', 'onProgress', 'checkSidecar'] as const;
const EXTRACT_KEYS = ['filter', 'maxBytes', 'allowUnsafePaths', 'signal', 'onProgress', 'onWarning', 'strict', 'checkSidecar'] as const;

function checkBool(where: string, name: string, value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be a boolean, got ${typeof value}.`, { details: { where, option: name, value } });
}

const checkFn = checkFunctionOption;
const checkSignal = checkSignalOption;

/** Whether a file name asks for gzip, for plain tar, or says nothing. */
function gzipFromName(path: string): boolean | undefined {
  const n = basename(path).toLowerCase();
  if (n.endsWith('.tar.gz') || n.endsWith('.tgz')) return true;
  if (n.endsWith('.tar')) return false;
  return undefined;
}

interface ResolvedCreate {
  readonly entries: readonly string[] | undefined;
  readonly level: number;
  readonly gzip: boolean;
  readonly deterministic: boolean;
  readonly sidecar: boolean;
  readonly algorithm: DnaAlgorithm;
  readonly chunkSize: number;
  readonly concurrency: number;
  readonly allowLocked: boolean;
  readonly strict: boolean;
}

function resolveCreate(outFile: string, o: ArchiveCreateOptions): ResolvedCreate {
  const w = 'Archiver.create';
  checkOptionKeys(w, o, CREATE_KEYS);
  if (o.entries !== undefined && (!Array.isArray(o.entries) || o.entries.length === 0)) {
    throw new StowageError('EBAD_CONFIG', `${w}: option "entries" must be a non-empty array of relative paths.`, { details: { where: w, option: 'entries' } });
  }
  const gzip = checkBool(w, 'gzip', o.gzip) ?? gzipFromName(outFile);
  if (gzip === undefined) {
    throw new StowageError('EBAD_CONFIG', `${w}: cannot tell from the name ${outFile} whether to compress; name it .tar, .tar.gz or .tgz, or set the option "gzip".`, {
      details: { where: w, option: 'gzip', path: outFile },
    });
  }
  checkSignal(w, o.signal);
  checkFn(w, 'onProgress', o.onProgress);
  checkFn(w, 'onWarning', o.onWarning);
  return Object.freeze({
    entries: o.entries,
    level: checkInt(w, 'gzipLevel', o.gzipLevel ?? 6, 0, 9),
    gzip,
    deterministic: checkBool(w, 'deterministic', o.deterministic) ?? false,
    sidecar: checkBool(w, 'sidecar', o.sidecar) ?? true,
    algorithm: checkOneOf(w, 'algorithm', o.algorithm ?? 'md5', DNA_ALGORITHMS),
    chunkSize: checkInt(w, 'chunkSize', o.chunkSize ?? MiB, 64 * 1024, 64 * MiB),
    concurrency: checkInt(w, 'concurrency', o.concurrency ?? availableParallelism(), 1, 64),
    allowLocked: checkBool(w, 'allowLocked', o.allowLocked) ?? false,
    strict: checkBool(w, 'strict', o.strict) ?? false,
  });
}

/** The tar header of a source entry. */
function headerOf(e: SourceEntry, deterministic: boolean): TarHeaders {
  const st = e.stats;
  let mode = st.mode & 0o7777;
  if (deterministic) mode = e.type === 'directory' ? 0o755 : e.type === 'symlink' ? 0o777 : st.mode & 0o111 ? 0o755 : 0o644;
  // ustar holds 11 octal digits of seconds; tar-stream truncates to 32 bits.
  const secs = Math.min(Math.max(Math.floor(st.mtimeMs / 1000), 0), 0x7fffffff);
  const h: TarHeaders = {
    name: e.type === 'directory' ? e.name + '/' : e.name,
    type: e.type,
    mode,
    uid: deterministic ? 0 : st.uid,
    gid: deterministic ? 0 : st.gid,
    uname: '',
    gname: '',
    mtime: deterministic ? DETERMINISTIC_MTIME : new Date(secs * 1000),
    size: 0,
  };
  if (e.type === 'symlink') h.linkname = e.linkname ?? '';
  // ustar holds ids up to 0o777777 (262143); larger ones (site accounts,
  // mapped container ids) go in a PAX header, as GNU tar writes them.
  // tar-stream would otherwise cut them to 262143 without a word.
  if (h.uid! > USTAR_MAX_ID || h.gid! > USTAR_MAX_ID) {
    h.pax = { ...(h.uid! > USTAR_MAX_ID ? { uid: String(h.uid) } : {}), ...(h.gid! > USTAR_MAX_ID ? { gid: String(h.gid) } : {}) };
  }
  return h;
}

/** The largest uid or gid a ustar header holds (6 octal digits). */
const USTAR_MAX_ID = 0o777777;

/** Reads exactly `n` bytes from the current position, fewer only at end of file. */
async function readFull(h: FileHandle, n: number, path: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(n);
  let off = 0;
  while (off < n) {
    let got: number;
    try {
      ({ bytesRead: got } = await h.read(buf, off, n - off, null));
    } catch (err) {
      throw fromFsError(err, 'read', path);
    }
    if (got === 0) break;
    off += got;
  }
  return off === n ? buf : buf.subarray(0, off);
}

function sizeChanged(path: string, expected: number, how: string): StowageError {
  return new StowageError('EIO', `${path} changed size while being archived (${how}; ${expected} bytes when it was opened). Archive it again when it is no longer being written.`, {
    details: { path, expectedBytes: expected, reason: how },
  });
}

function fileish(e: ArchiveEntry): boolean {
  return e.type === 'file' || e.type === 'contiguous-file';
}

function notFound(file: string, name: string, why = 'it has no such entry'): StowageError {
  return new StowageError('ENOT_FOUND', `Entry "${name}" not found in ${file}: ${why}.`, { details: { path: file, entry: name } });
}

/** A pending regular file (or hard link) of an extraction. */
const PENDING_FILE: PendingEntry = Object.freeze({ kind: 'file' });

/**
 * Creates the destination of an extraction if missing and returns its real
 * path; a file (or a file on the way) where it should be is EBAD_CONFIG.
 */
async function destinationDir(where: string, dest: string): Promise<string> {
  try {
    await mkdirRecursive(dest);
    const real = await realpath(dest);
    if ((await stat(real)).isDirectory()) return real;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTDIR') throw fromFsError(err, 'create directory', dest);
  }
  throw new StowageError('EBAD_CONFIG', `${where}: the destination ${dest} is not a directory (a file is there, or on the way to it). Pass a directory, or a path where one can be created.`, {
    details: { where, argument: 'dest', path: dest },
  });
}

/**
 * Creates, verifies, lists, reads and extracts `.tar` / `.tar.gz` archives.
 * All methods are static; options objects come last and are validated up
 * front (an unknown key is EBAD_CONFIG).
 *
 * @example
 * ```ts
 * const { path, dna } = await Archiver.create('/data/svn/repo', '/backups/repo.tar.gz');
 * await Archiver.verify(path);                       // re-checks repo.tar.gz.dna
 * const db = await Archiver.readEntry(path, 'db/trac.db');
 * await Archiver.extract(path, '/restore/repo');
 * ```
 */
export class Archiver {
  private constructor() {}

  /**
   * Archives `srcDir` (or the listed `entries` under it) into `outFile`
   * (`.tar`, `.tar.gz` or `.tgz`), atomically, and writes the DNA sidecar
   * `outFile.dna`. Regular files, directories and symlinks (as symlinks)
   * are stored (hard-linked files as separate copies); sockets, fifos and
   * devices are skipped with a warning. The DNA is always computed (it is
   * returned); `sidecar: false` only skips writing it down.
   *
   * The archive being written, its sidecar and their `.part` files are
   * never archived, even when the source reaches their folder through a
   * symlink (they are told by the folder's identity, not its path). An
   * archive and sidecar already under `outFile` are replaced as a pair: if
   * any step fails, the old pair is left as it was.
   *
   * Throws ELOCKED if the tree holds a `LOCKED` directory (unless
   * `allowLocked`), EIO naming a file that changed size while it was read,
   * ENOSPACE on a full disk (nothing is left under the final name nor as
   * `.part`), EBAD_CONFIG for a bad option or a path that is not a string,
   * ENOT_FOUND for a missing source.
   *
   * @param srcDir - the directory to archive (a symlink to one is followed; symlinks below it are stored as symlinks); entry names are relative to it
   * @param outFile - the archive to write
   * @param options - see {@link ArchiveCreateOptions}
   */
  static async create(srcDir: string, outFile: string, options: ArchiveCreateOptions = {}): Promise<ArchiveCreateResult> {
    const w = 'Archiver.create';
    checkPathArg(w, 'srcDir', srcDir);
    checkPathArg(w, 'outFile', outFile);
    options ??= {};
    const o = resolveCreate(outFile, options);
    const { signal, onWarning } = options;
    throwIfAborted(signal);
    const out = resolve(outFile);
    // By identity, not by path: the source may reach the output's folder through a symlink.
    const outDir = await stat(dirname(out), { bigint: true }).catch(() => undefined);
    const base = basename(out);
    const exclude = {
      dir: outDir && { dev: outDir.dev, ino: outDir.ino },
      names: new Set([base, base + PART_SUFFIX, base + SIDECAR_SUFFIX, base + SIDECAR_SUFFIX + PART_SUFFIX]),
    };
    const list = await collectEntries(srcDir, { entries: o.entries, allowLocked: o.allowLocked, exclude, onWarning, strict: o.strict, signal });
    let bytesTotal = 0;
    for (const e of list) if (e.type === 'file') bytesTotal += e.stats.size;
    const progress = new ProgressTracker('archive', options.onProgress, { bytesTotal, itemsTotal: list.length });

    let entries = 0;
    let bytesIn = 0;
    const written = await writeTarAtomic(out, { level: o.gzip ? o.level : undefined, chunkSize: o.chunkSize, concurrency: o.concurrency, algorithm: o.algorithm, sidecar: o.sidecar, signal, digest: (options as { [BENCH_NO_DNA]?: boolean })[BENCH_NO_DNA] !== true }, async ({ pack, failed }) => {
      /** Adds one entry to the pack; resolves when tar-stream has taken all of it. */
      const addEntry = async (header: TarHeaders, body?: (sink: NodeJS.WritableStream & NodeJS.EventEmitter) => Promise<void>): Promise<void> => {
        // An abort or a failure elsewhere may have destroyed the pack while
        // this entry's file was being opened: tar-stream's entry() would
        // then throw. Its reason wins, with no entry begun.
        throwIfAborted(signal);
        const before = failed();
        if (before !== undefined) throw before;
        let sink!: NodeJS.WritableStream & NodeJS.EventEmitter;
        const done = new Promise<void>((res, rej) => {
          sink = pack.entry(header, (err) => (err ? rej(err) : res())) as unknown as NodeJS.WritableStream & NodeJS.EventEmitter;
        });
        // Handled before anything else can throw: a rejection left without
        // a handler would end the caller's process.
        done.catch(() => {});
        if (sink === undefined) await done; // entry() threw: its error
        // A failure elsewhere destroys the pack and its sinks; that error is already recorded (see `failed()`).
        sink.on('error', () => {});
        if (body) {
          await body(sink);
          sink.end();
        }
        await done;
      };

      const addFile = async (e: SourceEntry, header: TarHeaders): Promise<boolean> => {
        let h: FileHandle;
        try {
          h = await open(e.abs, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'ELOOP') {
            // Vanished or replaced by a symlink since the walk: a live tree.
            warnOrThrow(fromFsError(err, 'archive', e.abs), e.abs, onWarning, o.strict);
            progress.bytesTotal! -= e.stats.size;
            return false;
          }
          throw fromFsError(err, 'read', e.abs);
        }
        try {
          const st = await h.stat();
          if (!st.isFile()) {
            warnOrThrow(new StowageError('EIO', `Skipped ${e.abs}: it is no longer a regular file.`, { details: { path: e.abs } }), e.abs, onWarning, o.strict);
            progress.bytesTotal! -= e.stats.size;
            return false;
          }
          const size = st.size;
          // The total counted the size the walk saw; what is read is the size now.
          progress.bytesTotal! += size - e.stats.size;
          header.size = size;
          await addEntry(header, async (sink) => {
            let remaining = size;
            let next: Promise<Buffer> | undefined = remaining > 0 ? readFull(h, Math.min(READ_SIZE, remaining), e.abs) : undefined;
            try {
              while (next !== undefined) {
                const buf = await next;
                const want = Math.min(READ_SIZE, remaining);
                if (buf.length < want) throw sizeChanged(e.abs, size, `it shrank to ${size - remaining + buf.length} bytes`);
                remaining -= buf.length;
                throwIfAborted(signal);
                const failure = failed();
                if (failure !== undefined) throw failure;
                next = remaining > 0 ? readFull(h, Math.min(READ_SIZE, remaining), e.abs) : undefined;
                bytesIn += buf.length;
                progress.add(buf.length);
                if (!sink.write(buf)) await drained(sink);
              }
            } finally {
              next?.catch(() => {});
            }
            const extra = await readFull(h, 1, e.abs);
            if (extra.length > 0) throw sizeChanged(e.abs, size, 'it grew');
          });
          return true;
        } finally {
          await h.close().catch(() => {});
        }
      };

        for (const e of list) {
          throwIfAborted(signal);
          if (failed() !== undefined) return;
          const header = headerOf(e, o.deterministic);
          const added = e.type === 'file' ? await addFile(e, header) : (await addEntry(header), true);
          if (added) entries++;
          progress.add(0, 1);
        }
    });
    progress.report(true);
    return Object.freeze({ path: out, dna: written.dna, entries, bytesIn, bytesOut: written.bytesOut, sidecar: written.sidecar });
  }

  /**
   * Reads every byte of `file`: gzip CRCs and lengths of every member, tar
   * header checksums, entry sizes and the end-of-archive marker; the DNA is
   * computed in the same pass and compared with the sidecar `file.dna` when
   * there is one. Resolves only for a sound archive.
   *
   * Throws ECORRUPT_ARCHIVE for a damaged or truncated archive,
   * EDIGEST_MISMATCH when the archive is readable but differs from its
   * sidecar, ENO_SIDECAR with `requireSidecar` and no sidecar, ENOT_FOUND
   * when the file is missing.
   *
   * @param file - the archive
   * @param options - see {@link ArchiveVerifyOptions}
   */
  static async verify(file: string, options: ArchiveVerifyOptions = {}): Promise<ArchiveVerifyResult> {
    const w = 'Archiver.verify';
    checkPathArg(w, 'file', file);
    options ??= {};
    checkOptionKeys(w, options, VERIFY_KEYS);
    checkSignal(w, options.signal);
    checkFn(w, 'onProgress', options.onProgress);
    const requireSidecar = checkBool(w, 'requireSidecar', options.requireSidecar) ?? false;
    const algorithm = checkOneOf(w, 'algorithm', options.algorithm ?? 'md5', DNA_ALGORITHMS);
    throwIfAborted(options.signal);
    let expected: Dna | undefined;
    try {
      expected = await DnaDigest.readSidecar(file);
    } catch (err) {
      if (!isStowageError(err, 'ENO_SIDECAR') || requireSidecar) throw err;
    }
    const r = await readArchive(file, { algorithm: expected?.algorithm ?? algorithm, phase: 'verify', onProgress: options.onProgress, signal: options.signal }, async () => {});
    const dna = r.dna!;
    if (expected !== undefined) assertDna(file, expected, dna);
    return Object.freeze({ ok: true as const, path: file, dna, entries: r.entries, bytes: r.bytes, sidecarChecked: expected !== undefined });
  }

  /**
   * Lists the entries of an archive (reading it all, so a damaged archive
   * is ECORRUPT_ARCHIVE here too).
   *
   * @param file - the archive
   * @param options - signal, onProgress
   */
  static async list(file: string, options: ArchiveListOptions = {}): Promise<ArchiveEntry[]> {
    const w = 'Archiver.list';
    checkPathArg(w, 'file', file);
    options ??= {};
    checkOptionKeys(w, options, LIST_KEYS);
    checkSignal(w, options.signal);
    const out: ArchiveEntry[] = [];
    await readArchive(file, { phase: 'list', onProgress: options.onProgress, signal: options.signal }, async (e) => {
      out.push(e);
    });
    return out;
  }

  /**
   * Reads one file entry into memory (e.g. `trac.db` out of a backup
   * tarball). A leading `./` in either name is ignored. Missing is
   * ENOT_FOUND naming the entry and the archive. For large entries use
   * {@link Archiver.openEntry}.
   *
   * The whole archive is read, as {@link Archiver.verify} reads it: a gzip
   * member's CRC comes after its bytes, so the entry's bytes are known
   * good only once the members holding them (and, in practice, the rest)
   * are checked. A damaged archive is ECORRUPT_ARCHIVE, and one that
   * differs from its sidecar `file.dna` is EDIGEST_MISMATCH, even when the
   * entry itself was read before the damage.
   *
   * @param file - the archive
   * @param name - the entry's path inside the archive
   * @param options - signal, onProgress, checkSidecar
   */
  static async readEntry(file: string, name: string, options: ArchiveReadOptions = {}): Promise<Buffer> {
    const w = 'Archiver.readEntry';
    checkPathArg(w, 'file', file);
    checkPathArg(w, 'name', name);
    options ??= {};
    checkOptionKeys(w, options, READ_KEYS);
    checkSignal(w, options.signal);
    const want = normalizeEntryName(name);
    let found: Buffer | undefined;
    let wrongType: ArchiveEntry | undefined;
    const expected = await sidecarIfAny(file, checkBool(w, 'checkSidecar', options.checkSidecar) ?? true);
    const r = await readArchive(file, { phase: 'read', onProgress: options.onProgress, signal: options.signal, ...(expected ? { algorithm: expected.algorithm } : {}) }, async (e, data) => {
      if (e.name !== want) return false;
      // The last entry of that name counts, as with `tar -x` and extract:
      // `tar rf` appends a newer copy of a file after the old one.
      if (!fileish(e)) {
        [found, wrongType] = [undefined, e];
        return false;
      }
      const chunks: Buffer[] = [];
      for await (const c of data as AsyncIterable<Buffer>) chunks.push(c);
      [found, wrongType] = [Buffer.concat(chunks), undefined];
      return false;
    });
    if (expected !== undefined) assertDna(file, expected, r.dna!);
    if (found !== undefined) return found;
    throw notFound(file, name, wrongType ? `it is a ${wrongType.type}${wrongType.linkname ? ` to ${wrongType.linkname}` : ''}, not a file` : undefined);
  }

  /**
   * Opens one file entry as a stream. Resolves once the entry is found
   * (ENOT_FOUND if the archive has none). The stream ends only after the
   * rest of the archive has been read and checked as {@link Archiver.readEntry}
   * does; it errors instead (ECORRUPT_ARCHIVE, or EDIGEST_MISMATCH against
   * the sidecar) if the archive turns out damaged, even after the entry's
   * last byte: treat what was read as good only on `end`. It streams the
   * first entry of that name; one appearing again later (`tar rf` appended
   * a newer copy, which readEntry and extract would take) makes the stream
   * error with EEXIST. Destroy the stream to stop early.
   *
   * @param file - the archive
   * @param name - the entry's path inside the archive
   * @param options - signal, onProgress, checkSidecar
   */
  static async openEntry(file: string, name: string, options: ArchiveReadOptions = {}): Promise<Readable> {
    const w = 'Archiver.openEntry';
    checkPathArg(w, 'file', file);
    checkPathArg(w, 'name', name);
    options ??= {};
    checkOptionKeys(w, options, READ_KEYS);
    checkSignal(w, options.signal);
    const want = normalizeEntryName(name);
    const expected = await sidecarIfAny(file, checkBool(w, 'checkSidecar', options.checkSidecar) ?? true);
    return new Promise<Readable>((resolveOuter, rejectOuter) => {
      const out = new PassThrough({ highWaterMark: MiB });
      // The consumer letting go before the end stops the pass at once, wherever it is.
      const letGo = new AbortController();
      out.once('close', () => {
        if (!out.readableEnded) letGo.abort(new StowageError('EABORTED', `${file}: the stream of "${name}" was closed before its end.`));
      });
      let handed = false;
      let again = false;
      let wrongType: ArchiveEntry | undefined;
      const signal = anySignal(options.signal, letGo.signal);
      readArchive(file, { phase: 'read', onProgress: options.onProgress, signal, ...(expected ? { algorithm: expected.algorithm } : {}) }, async (e, data, failed) => {
        if (handed) {
          if (e.name === want) again = true;
          return out.destroyed;
        }
        if (e.name !== want) return false;
        if (!fileish(e)) {
          wrongType ??= e;
          return false;
        }
        handed = true;
        resolveOuter(out);
        const gaveUp = new Promise<void>((_, reject) => failed.addEventListener('abort', () => reject(failed.reason), { once: true }));
        gaveUp.catch(() => {});
        for await (const c of data as AsyncIterable<Buffer>) {
          if (out.destroyed) return true;
          if (!out.write(c)) await Promise.race([drained(out), gaveUp]);
        }
        return out.destroyed;
      }).then(
        (r) => {
          if (!handed) {
            rejectOuter(notFound(file, name, wrongType ? `it is a ${wrongType.type}, not a file` : undefined));
            return;
          }
          if (out.destroyed) return;
          try {
            if (expected !== undefined) assertDna(file, expected, r.dna!);
            if (again) {
              throw new StowageError('EEXIST', `${file} holds "${name}" more than once (a newer copy appended with tar rf?); this stream gave the first, while readEntry and extract take the last. Read it with readEntry, or extract it.`, {
                details: { path: file, entry: name },
              });
            }
          } catch (err) {
            out.destroy(err as Error);
            return;
          }
          out.end();
        },
        (err: unknown) => {
          if (!handed) rejectOuter(err);
          else if (!out.destroyed) out.destroy(err as Error);
        },
      );
    });
  }

  /**
   * Extracts an archive into `dest` (created if missing), treating it as
   * untrusted: absolute names, `..` segments, symlinks and hard links that
   * point out of `dest`, entries that would be written through a symlink,
   * device nodes and fifos, and archives expanding past `maxBytes` are all
   * refused with EUNSAFE_PATH before anything is written for that entry.
   *
   * All or nothing: every file is written and fsynced under a temporary name
   * beside its target (links are made there too), and nothing is renamed
   * into place until the whole archive has been read and checked: every
   * gzip member's CRC, every tar header, the end-of-archive marker, the
   * links followed together, and, when the archive has a sidecar
   * `file.dna`, its DNA computed in the same pass. Any failure (a damaged
   * archive is ECORRUPT_ARCHIVE, a sidecar mismatch EDIGEST_MISMATCH, a
   * refused entry EUNSAFE_PATH, a full disk ENOSPACE, an abort) removes the
   * temporary files and the (empty) directories the extraction created
   * below `dest`, and leaves every file that was in `dest` as it was. Only
   * once all is checked are the files and links renamed into place (a
   * rename per entry; an abort no longer stops it then, and a rename that
   * fails, on a file system gone read-only say, leaves those already
   * renamed), after which directory modes and times are set. A bad
   * argument (a path that is not a string, a `dest` that is a file) is
   * EBAD_CONFIG.
   *
   * @param file - the archive
   * @param dest - the destination directory
   * @param options - see {@link ArchiveExtractOptions}
   */
  static async extract(file: string, dest: string, options: ArchiveExtractOptions = {}): Promise<ArchiveExtractResult> {
    const w = 'Archiver.extract';
    checkPathArg(w, 'file', file);
    checkPathArg(w, 'dest', dest);
    options ??= {};
    checkOptionKeys(w, options, EXTRACT_KEYS);
    checkSignal(w, options.signal);
    checkFn(w, 'filter', options.filter);
    checkFn(w, 'onProgress', options.onProgress);
    checkFn(w, 'onWarning', options.onWarning);
    const maxBytes = checkInt(w, 'maxBytes', options.maxBytes ?? DEFAULT_EXTRACT_MAX_BYTES, 0);
    const allowUnsafe = checkBool(w, 'allowUnsafePaths', options.allowUnsafePaths) ?? false;
    const strict = checkBool(w, 'strict', options.strict) ?? false;
    const checkSidecar = checkBool(w, 'checkSidecar', options.checkSidecar) ?? true;
    const { signal, filter, onWarning } = options;
    throwIfAborted(signal);
    const destReal = await destinationDir(w, dest);
    /**
     * Files and links written so far, under their temporary names, by target
     * (the last entry of a name wins). Only paths: each file is closed once
     * fsynced, so an archive of a million small files holds no descriptors.
     */
    const pending = new Map<string, { part: string; entry: PendingEntry }>();
    const guard = new ExtractGuard(destReal, file, allowUnsafe, (abs) => pending.get(abs)?.entry);
    const stage = async (target: string, part: string, entry: PendingEntry): Promise<void> => {
      const old = pending.get(target);
      pending.delete(target);
      pending.set(target, { part, entry });
      // Replaced by a later entry of the same name: a hard link already made to it keeps its bytes.
      if (old !== undefined) await rm(old.part, { force: true }).catch(() => {});
    };
    const discardAll = async (): Promise<void> => {
      for (const p of pending.values()) await rm(p.part, { force: true }).catch(() => {});
      pending.clear();
      await guard.removeCreated();
    };
    let total = 0;
    let entries = 0;
    const dirs: { path: string; mode: number; mtime: Date }[] = [];
    const links: { name: string; target: string }[] = [];
    const skipped: { readonly name: string; readonly type: ArchiveEntryType }[] = [];

    const inTheWay = async (target: string, e: ArchiveEntry): Promise<void> => {
      if ((await guard.at(target))?.type === 'directory') {
        throw new StowageError('EEXIST', `Cannot extract ${e.type} "${e.name}" from ${file}: a directory is in the way at ${target}.`, { details: { path: file, entry: e.name } });
      }
    };

    const visit = async (e: ArchiveEntry, data: Readable): Promise<void> => {
      if (filter && !filter(e)) return;
      throwIfAborted(signal);
      // The raw name matters for the absolute-path check; the normalised one for the rest.
      const raw = (data as unknown as { header?: { name?: string } }).header?.name ?? e.name;
      switch (e.type) {
        case 'directory': {
          const target = guard.target(raw, e.name);
          if (target === destReal) return;
          await guard.prepareParent(target, e.name);
          const st = await guard.at(target);
          if (st?.type === 'symlink') throw new StowageError('EUNSAFE_PATH', `Refusing to extract "${e.name}" from ${file}: a symlink sits where the directory should be.`, { details: { path: file, entry: e.name } });
          if (st !== undefined && st.type !== 'directory') throw new StowageError('EEXIST', `Cannot extract directory "${e.name}" from ${file}: ${target} exists and is not a directory.`, { details: { path: file, entry: e.name } });
          if (st === undefined) await guard.mkdir(target);
          dirs.push({ path: target, mode: e.mode & 0o777, mtime: e.mtime });
          entries++;
          return;
        }
        case 'file':
        case 'contiguous-file': {
          if (total + e.size > maxBytes) {
            throw new StowageError('EUNSAFE_PATH', `Refusing to extract "${e.name}" from ${file}: the archive would expand past maxBytes (${maxBytes} bytes). Raise maxBytes if this archive is trusted.`, {
              details: { path: file, entry: e.name, maxBytes, wouldBe: total + e.size },
            });
          }
          total += e.size;
          const target = guard.target(raw, e.name);
          if (target === destReal) throw new StowageError('EUNSAFE_PATH', `Refusing to extract "${raw}" from ${file}: a file cannot replace the destination.`, { details: { path: file, entry: raw } });
          await guard.prepareParent(target, e.name);
          await inTheWay(target, e);
          // A unique temporary name: `NAME.part` may be an entry of the archive itself, or a file of the destination's.
          const f = await AtomicFile.open(target, { mode: e.mode & 0o777 || 0o644, signal, uniquePart: true });
          try {
            for await (const c of data as AsyncIterable<Buffer>) {
              throwIfAborted(signal);
              await f.write(c);
            }
            await f.handle.utimes(e.mtime, e.mtime).catch(() => {});
            await f.seal(e.size);
          } catch (err) {
            await f.discard();
            throw err;
          }
          await stage(target, f.partPath, PENDING_FILE);
          entries++;
          return;
        }
        case 'symlink':
        case 'link': {
          const target = guard.target(raw, e.name);
          if (target === destReal) throw new StowageError('EUNSAFE_PATH', `Refusing to extract "${raw}" from ${file}: a link cannot replace the destination.`, { details: { path: file, entry: raw } });
          let source = '';
          if (e.type === 'symlink') {
            guard.checkSymlink(e);
            await guard.checkSymlinkOnDisk(e);
          } else source = await guard.hardlinkSource(e);
          await guard.prepareParent(target, e.name);
          await inTheWay(target, e);
          const part = uniquePartPath(target);
          try {
            // A hard link to a file of this archive links to its temporary name: the same inode, renamed later.
            if (e.type === 'symlink') await symlink(e.linkname ?? '', part);
            else await link(pending.get(source)?.part ?? source, part);
          } catch (err) {
            await rm(part, { force: true }).catch(() => {});
            throw fromFsError(err, e.type === 'symlink' ? 'create symlink' : 'create hard link', target);
          }
          await stage(target, part, e.type === 'symlink' ? { kind: 'symlink', linkname: e.linkname ?? '' } : PENDING_FILE);
          if (e.type === 'symlink') {
            guard.forgetDirs();
            links.push({ name: e.name, target });
          }
          entries++;
          return;
        }
        case 'character-device':
        case 'block-device':
        case 'fifo':
          throw new StowageError('EUNSAFE_PATH', `Refusing to extract "${e.name}" from ${file}: it is a ${e.type}; stowage never creates device nodes or fifos.`, {
            details: { path: file, entry: e.name, type: e.type },
          });
        default:
          warnOrThrow(
            new StowageError('EUNSAFE_PATH', `Skipped "${e.name}" in ${file}: entry type ${e.type} is not supported.`, { details: { path: file, entry: e.name, type: e.type } }),
            e.name,
            onWarning,
            strict,
          );
          skipped.push(Object.freeze({ name: e.name, type: e.type }));
      }
    };

    let expected: Dna | undefined;
    try {
      expected = await sidecarIfAny(file, checkSidecar);
      const pass = await readArchive(file, { phase: 'extract', onProgress: options.onProgress, signal, ...(expected ? { algorithm: expected.algorithm } : {}) }, async (e, data) => {
        await visit(e, data);
      });
      if (expected !== undefined && !dnaEqual(expected, pass.dna!)) {
        throw new StowageError(
          'EDIGEST_MISMATCH',
          `${file} does not match its DNA sidecar (expected ${expected.algorithm} ${expected.dig}, ${expected.size} bytes; read ${pass.dna!.dig}, ${pass.dna!.size} bytes), though it reads as a sound archive: it is not what was backed up, so nothing was extracted into ${destReal}. Extract a good copy of the archive.`,
          { details: { path: file, dest: destReal, entries, expected, actual: pass.dna } },
        );
      }
      // A link made before the links it goes through: followed now that all are known, it must stay inside.
      await guard.checkLinksAfter(links);
      throwIfAborted(signal);
    } catch (err) {
      await discardAll();
      throw err;
    }
    // Everything checked: into place, in the order of the entries (the last of a name last).
    const renamedIn = new Set<string>();
    try {
      for (const [target, p] of pending) {
        try {
          await rename(p.part, target);
        } catch (err) {
          throw fromFsError(err, 'rename', p.part);
        }
        pending.delete(target);
        renamedIn.add(dirname(target));
      }
    } catch (err) {
      for (const p of pending.values()) await rm(p.part, { force: true }).catch(() => {});
      throw err;
    }
    for (const d of renamedIn) await fsyncDir(d);
    // Directory modes and times last, deepest first, so that read-only directories do not block their contents.
    for (const d of dirs.reverse()) {
      await chmod(d.path, d.mode || 0o755).catch(() => {});
      await utimes(d.path, d.mtime, d.mtime).catch(() => {});
    }
    return Object.freeze({ dest: destReal, entries, bytes: total, sidecarChecked: expected !== undefined, skipped: Object.freeze(skipped) });
  }
}
