/**
 * LocalTransport: the Transport contract over the local file system.
 *
 * @module
 */
import type { Dirent } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, rename, rmdir, statfs, symlink, utimes, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertDna, DnaDigest, type Dna, type DnaAlgorithm } from '../../dna/dna-digest.js';
import { StowageError, fromFsError } from '../../errors.js';
import { localLockFs, type LockFs } from '../../lock/lock-fs.js';
import { ProgressTracker } from '../../progress.js';
import { onAbort, throwIfAborted } from '../../util/abort.js';
import { AtomicFile } from '../../util/atomic-file.js';
import { mkdirRecursive } from '../../util/mkdirp.js';
import { checkOptionKeys } from '../../util/options.js';
import { sourceChangedError, type SourceIdentity } from '../block-source.js';
import { removalTarget, toReplayable, trimPathTail } from '../put-source.js';
import type {
  DigestOptions,
  FreeSpace,
  GetOptions,
  OpOptions,
  PutOptions,
  PutSource,
  Transport,
  TransportCapabilities,
  TransportEntry,
  TransportFileType,
  TransportStat,
} from '../transport.js';

function typeOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): TransportFileType {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'dir';
  if (s.isSymbolicLink()) return 'symlink';
  return 'other';
}

const PUT_OPTIONS = ['algorithm', 'mode', 'mtimeMs', 'mkdirs', 'noOverwrite', 'expectedDna', 'onProgress', 'signal'];
const GET_OPTIONS = ['algorithm', 'expectedDna', 'onProgress', 'signal'];

/**
 * A readable stream of a local file from `start`, with 1 MiB reads; errors
 * are StowageErrors (a missing file is ENOT_FOUND), an abort destroys it
 * with the signal's reason.
 *
 * With `unchanged`, the open file is looked at (fstat) at open and at the
 * end: a file whose size or mtime changed meanwhile, or that gave another
 * number of bytes than its size, errors with a retryable EIO
 * ({@link sourceChangedError}) instead of ending: it was written to while
 * it was read, and what was read is no version of it.
 */
function readFileStream(path: string, start: number, signal: AbortSignal | undefined, unchanged: false | { action: 'send' } | { action: 'get'; localPath: string } = false): Readable {
  let fh: FileHandle | undefined;
  let pos = start;
  let opened: SourceIdentity | undefined;
  const identityOf = async (h: FileHandle): Promise<SourceIdentity> => {
    const st = await h.stat();
    return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
  };
  const stream = new Readable({
    highWaterMark: 1 << 20,
    construct(cb) {
      open(path, 'r').then(
        async (h) => {
          fh = h;
          if (unchanged) opened = await identityOf(h);
          cb();
        },
        (err: unknown) => cb(fromFsError(err, 'read', path)),
      ).catch((err: unknown) => cb(fromFsError(err, 'read', path)));
    },
    read(n) {
      const buf = Buffer.allocUnsafe(Math.max(n, 1 << 20));
      fh!
        .read(buf, 0, buf.length, pos)
        .then(async ({ bytesRead }) => {
          if (bytesRead === 0) {
            if (opened !== undefined) {
              const now = await identityOf(fh!);
              if (pos !== opened.size || now.size !== opened.size || now.mtimeMs !== opened.mtimeMs) throw sourceChangedError(path, opened, now, unchanged !== false && unchanged.action === 'get' ? { localPath: unchanged.localPath } : undefined);
            }
            this.push(null);
            return;
          }
          pos += bytesRead;
          this.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
        })
        .catch((err: unknown) => this.destroy(fromFsError(err, 'read', path)));
    },
    destroy(err, cb) {
      dispose();
      const h = fh;
      fh = undefined;
      if (h === undefined) cb(err);
      else h.close().then(() => cb(err), () => cb(err));
    },
  });
  const dispose = onAbort(signal, (reason) => stream.destroy(reason as Error));
  return stream;
}

/** Entries of one folder removed at a time by {@link removeTree}. */
const REMOVE_BATCH = 16;

/**
 * Removes a folder and everything under it, checking `signal` before each
 * batch of entries: an abort stops the walk and rejects with its reason.
 * Symlinks are unlinked, never followed (entry types come from the folder
 * listing, which does not follow them); names are handled as bytes, so a
 * name that is not UTF-8 is removed like any other. Entries that vanish
 * meanwhile (removed by someone else) are fine.
 */
async function removeTree(dir: Buffer, signal: AbortSignal | undefined): Promise<void> {
  throwIfAborted(signal);
  let entries: Dirent<Buffer>[];
  try {
    entries = await readdir(dir, { encoding: 'buffer', withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const slash = Buffer.from('/');
  for (let i = 0; i < entries.length; i += REMOVE_BATCH) {
    throwIfAborted(signal);
    await Promise.all(
      entries.slice(i, i + REMOVE_BATCH).map(async (e) => {
        const p = Buffer.concat([dir, slash, e.name]);
        try {
          if (e.isDirectory()) await removeTree(p, signal);
          else await unlink(p);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }),
    );
  }
  throwIfAborted(signal);
  try {
    await rmdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Streams `input` into `target` durably through a DNA tap; checks
 * `expectedDna` before the rename. Shared by put and get.
 */
async function copyDurably(
  input: Readable,
  target: string,
  o: {
    algorithm?: DnaAlgorithm;
    mode?: number;
    mtimeMs?: number;
    noOverwrite?: boolean;
    expectedDna?: Dna;
    onProgress?: PutOptions['onProgress'];
    signal?: AbortSignal;
    size?: number;
    exactSize?: number;
  },
): Promise<Dna> {
  let file: AtomicFile;
  try {
    file = await AtomicFile.open(target, { ...(o.mode !== undefined ? { mode: o.mode } : {}), ...(o.noOverwrite ? { noOverwrite: true } : {}) });
  } catch (err) {
    // The source was opened already: closed here, or its file stays open (EEXIST under noOverwrite, a missing folder).
    input.destroy();
    throw err;
  }
  try {
    const tap = DnaDigest.tap(o.algorithm ? { algorithm: o.algorithm } : {});
    const progress = new ProgressTracker('transfer', o.onProgress, o.size !== undefined ? { bytesTotal: o.size } : {});
    // Counted in the pipeline, not with a second 'data' listener (which would fight pipe()'s flow control).
    const stages: NodeJS.ReadWriteStream[] = [tap];
    if (o.onProgress) {
      stages.push(
        new Transform({
          highWaterMark: 1 << 20,
          transform(chunk: Buffer, _enc, cb) {
            progress.add(chunk.length);
            cb(null, chunk);
          },
        }),
      );
    }
    await pipeline([input, ...stages, file.writable()], o.signal ? { signal: o.signal } : {});
    const dna = await tap.dna;
    if (o.exactSize !== undefined && dna.size !== o.exactSize) {
      throw new StowageError('EIO', `Cannot write ${target}: the source gave ${dna.size} bytes, ${o.exactSize} were announced.`, {
        details: { path: target, expected: o.exactSize, written: dna.size },
      });
    }
    if (o.expectedDna) assertDna(target, o.expectedDna, dna);
    if (o.mode !== undefined) await file.handle.chmod(o.mode);
    if (o.mtimeMs !== undefined) await file.handle.utimes(new Date(o.mtimeMs), new Date(o.mtimeMs));
    await file.commit(dna.size);
    progress.add(0, 1);
    progress.report(true);
    return dna;
  } catch (err) {
    await file.discard();
    if (o.signal?.aborted) throw o.signal.reason;
    throw fromFsError(err, 'write', target);
  }
}

/**
 * The local file system as a {@link Transport}. Paths are local paths.
 *
 * @example
 * ```ts
 * const local = new LocalTransport();
 * const dna = await local.put('/data/run-1234.mid', '/archive/run-1234.mid');
 * ```
 */
export class LocalTransport implements Transport {
  /** Always `local`. */
  readonly name = 'local';
  /** Everything is supported; digests are computed in-process. */
  readonly capabilities: TransportCapabilities = Object.freeze({ remoteDigest: true, symlinks: true, atomicRename: true, freeSpace: true });

  /** @param options - none yet (reserved; unknown keys are refused) */
  constructor(options: Record<string, never> = {}) {
    checkOptionKeys('LocalTransport', options, []);
  }

  /** {@inheritDoc Transport.stat} */
  async stat(path: string, options: OpOptions = {}): Promise<TransportStat> {
    throwIfAborted(options.signal);
    try {
      // `link/` would be looked up through the link: the name itself is asked.
      const s = await lstat(trimPathTail(path));
      return { path, type: typeOf(s), size: s.size, mtimeMs: s.mtimeMs, mode: s.mode & 0o7777 };
    } catch (err) {
      throw fromFsError(err, 'stat', path);
    }
  }

  /** {@inheritDoc Transport.exists} */
  async exists(path: string, options: OpOptions = {}): Promise<TransportStat | undefined> {
    try {
      return await this.stat(path, options);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOT_FOUND') return undefined;
      throw err;
    }
  }

  /** {@inheritDoc Transport.list} */
  async list(dir: string, options: OpOptions = {}): Promise<TransportEntry[]> {
    throwIfAborted(options.signal);
    let raw: Buffer[];
    try {
      raw = await readdir(dir, { encoding: 'buffer' });
    } catch (err) {
      throw fromFsError(err, 'list', dir);
    }
    // A name that is not valid UTF-8 (Latin-1 from an old system) cannot be
    // named by a string path: it is listed as type "other" under its name
    // decoded with U+FFFD, never looked up (a lookup of that string would
    // find nothing, and the entry would vanish from the listing unseen).
    const undecodable = new Set<string>();
    const names = raw.map((b) => {
      const name = b.toString('utf8');
      if (name.includes('\uFFFD') && !Buffer.from(name, 'utf8').equals(b)) undecodable.add(name);
      return name;
    });
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    // lstat in batches: one at a time, a big folder costs a thread-pool round trip per entry.
    const out: (TransportEntry | undefined)[] = new Array<TransportEntry | undefined>(names.length);
    for (let i = 0; i < names.length; i += 64) {
      throwIfAborted(options.signal);
      await Promise.all(
        names.slice(i, i + 64).map(async (name, k) => {
          const p = join(dir, name);
          if (undecodable.has(name)) {
            out[i + k] = { name, path: p, type: 'other', size: 0, mtimeMs: 0, mode: 0 };
            return;
          }
          try {
            const s = await lstat(p);
            out[i + k] = { name, path: p, type: typeOf(s), size: s.size, mtimeMs: s.mtimeMs, mode: s.mode & 0o7777 };
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // vanished while listing
            throw fromFsError(err, 'stat', p);
          }
        }),
      );
    }
    return out.filter((e): e is TransportEntry => e !== undefined);
  }

  /** {@inheritDoc Transport.mkdir} */
  async mkdir(path: string, options: OpOptions & { recursive?: boolean } = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      if (options.recursive) await mkdirRecursive(path);
      else await mkdir(path);
    } catch (err) {
      throw fromFsError(err, 'create directory', path);
    }
  }

  /** {@inheritDoc Transport.put} */
  async put(source: PutSource, path: string, options: PutOptions = {}): Promise<Dna> {
    checkOptionKeys('LocalTransport.put', options, PUT_OPTIONS);
    throwIfAborted(options.signal);
    if (options.mkdirs ?? true) await this.mkdir(dirname(path), { recursive: true });
    if (typeof source !== 'string' && !(source instanceof Uint8Array) && (typeof source !== 'object' || source === null || typeof source.open !== 'function')) {
      throw new StowageError('EBAD_CONFIG', 'LocalTransport.put: source must be a local path, a Uint8Array or a ReplayableSource ({ open(offset) }).', { details: { path } });
    }
    let size: number | undefined;
    let input: Readable;
    if (typeof source === 'string') {
      const st = await this.stat(source);
      if (st.type !== 'file') throw new StowageError('EIO', `Cannot send ${source}: it is not a regular file.`, { details: { path: source } });
      size = st.size;
      // Written to while it is read (a DAQ file still growing): refused, not landed cut.
      input = readFileStream(source, 0, options.signal, { action: 'send' });
    } else {
      const src = toReplayable(source);
      size = src.size;
      input = src.open(0);
    }
    const { mkdirs: _m, ...rest } = options;
    const exact = typeof source === 'string' ? undefined : size;
    return copyDurably(input, path, { ...rest, ...(size !== undefined ? { size } : {}), ...(exact !== undefined ? { exactSize: exact } : {}) });
  }

  /** {@inheritDoc Transport.get} */
  async get(path: string, localPath: string, options: GetOptions = {}): Promise<Dna> {
    checkOptionKeys('LocalTransport.get', options, GET_OPTIONS);
    throwIfAborted(options.signal);
    const st = await this.stat(path);
    await mkdirRecursive(dirname(localPath)).catch((err: unknown) => {
      throw fromFsError(err, 'create directory', dirname(localPath));
    });
    if (st.type !== 'file') throw new StowageError('EIO', `Cannot get ${path}: it is not a regular file.`, { details: { path } });
    // A file that shrinks, grows or is rewritten in place while it is read
    // (still being written) is refused, not kept cut or spliced.
    return copyDurably(readFileStream(path, 0, options.signal, { action: 'get', localPath }), localPath, { ...options, size: st.size, exactSize: st.size, mtimeMs: st.mtimeMs });
  }

  /** {@inheritDoc Transport.createReadStream} */
  createReadStream(path: string, options: OpOptions & { start?: number } = {}): Readable {
    const start = options.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new StowageError('EBAD_CONFIG', 'LocalTransport.createReadStream: option "start" must be a non-negative integer.', { details: { option: 'start' } });
    }
    return readFileStream(path, start, options.signal);
  }

  /** {@inheritDoc Transport.remove} */
  async remove(path: string, options: OpOptions & { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    throwIfAborted(options.signal);
    // `link/` and `link/.` name the link's target (lstat follows the link
    // there): the link itself is what is removed, never what it points to.
    const target = removalTarget('LocalTransport.remove', path);
    try {
      const s = await lstat(target);
      if (!s.isDirectory()) await unlink(target);
      else if (options.recursive) await removeTree(Buffer.from(target), options.signal);
      else await rmdir(target);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (options.force && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromFsError(err, 'remove', path);
    }
  }

  /** {@inheritDoc Transport.rename} */
  async rename(from: string, to: string, options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      await rename(from, to);
    } catch (err) {
      throw fromFsError(err, 'rename', from);
    }
  }

  /** {@inheritDoc Transport.symlink} */
  async symlink(target: string, path: string, options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      await symlink(target, path);
    } catch (err) {
      throw fromFsError(err, 'create symlink', path);
    }
  }

  /** {@inheritDoc Transport.readlink} */
  async readlink(path: string, options: OpOptions = {}): Promise<string> {
    throwIfAborted(options.signal);
    try {
      return await readlink(path);
    } catch (err) {
      throw fromFsError(err, 'read link', path);
    }
  }

  /** {@inheritDoc Transport.setMtime} */
  async setMtime(path: string, mtimeMs: number, options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      await utimes(path, new Date(mtimeMs), new Date(mtimeMs));
    } catch (err) {
      throw fromFsError(err, 'set mtime of', path);
    }
  }

  /** {@inheritDoc Transport.digest} */
  async digest(path: string, algorithm: DnaAlgorithm = 'md5', options: DigestOptions = {}): Promise<Dna> {
    return DnaDigest.ofFile(path, { algorithm, ...(options.signal ? { signal: options.signal } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
  }

  /** {@inheritDoc Transport.freeSpace} */
  async freeSpace(path: string, options: OpOptions = {}): Promise<FreeSpace> {
    throwIfAborted(options.signal);
    try {
      const s = await statfs(path);
      const totalBytes = s.blocks * s.bsize;
      const availableBytes = s.bavail * s.bsize;
      return { totalBytes, availableBytes, availablePercent: totalBytes > 0 ? (availableBytes / totalBytes) * 100 : 0 };
    } catch (err) {
      throw fromFsError(err, 'get free space of', path);
    }
  }

  /** The lock file operations on the local tree: `localLockFs` (see `Transport.lockFs`). */
  lockFs(): LockFs {
    return localLockFs;
  }

  /** Nothing to connect: resolves at once. */
  async connect(options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
  }

  /** Nothing to release. */
  async close(): Promise<void> {}

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
