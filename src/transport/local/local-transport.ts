/**
 * LocalTransport: the Transport contract over the local file system.
 *
 * @module
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rename, rm, rmdir, statfs, symlink, utimes, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { assertDna, DnaDigest, type Dna, type DnaAlgorithm } from '../../dna/dna-digest.js';
import { fromFsError } from '../../errors.js';
import { ProgressTracker } from '../../progress.js';
import { throwIfAborted } from '../../util/abort.js';
import { AtomicFile } from '../../util/atomic-file.js';
import { checkOptionKeys } from '../../util/options.js';
import { toReplayable } from '../put-source.js';
import type {
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
 * Streams `input` into `target` durably through a DNA tap; checks
 * `expectedDna` before the rename. Shared by put and get.
 */
async function copyDurably(
  input: Readable,
  target: string,
  o: { algorithm?: DnaAlgorithm; mode?: number; mtimeMs?: number; noOverwrite?: boolean; expectedDna?: Dna; onProgress?: PutOptions['onProgress']; signal?: AbortSignal; size?: number },
): Promise<Dna> {
  const file = await AtomicFile.open(target, { ...(o.mode !== undefined ? { mode: o.mode } : {}), ...(o.noOverwrite ? { noOverwrite: true } : {}) });
  try {
    const tap = DnaDigest.tap(o.algorithm ? { algorithm: o.algorithm } : {});
    const progress = new ProgressTracker('transfer', o.onProgress, o.size !== undefined ? { bytesTotal: o.size } : {});
    if (o.onProgress) tap.on('data', (c: Buffer) => progress.add(c.length));
    await pipeline(input, tap, file.writable(), o.signal ? { signal: o.signal } : {});
    const dna = await tap.dna;
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
      const s = await lstat(path);
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
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      throw fromFsError(err, 'list', dir);
    }
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const out: TransportEntry[] = [];
    for (const name of names) {
      throwIfAborted(options.signal);
      const p = join(dir, name);
      try {
        const s = await lstat(p);
        out.push({ name, path: p, type: typeOf(s), size: s.size, mtimeMs: s.mtimeMs, mode: s.mode & 0o7777 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // vanished while listing
        throw fromFsError(err, 'stat', p);
      }
    }
    return out;
  }

  /** {@inheritDoc Transport.mkdir} */
  async mkdir(path: string, options: OpOptions & { recursive?: boolean } = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      await mkdir(path, { recursive: options.recursive ?? false });
    } catch (err) {
      throw fromFsError(err, 'create directory', path);
    }
  }

  /** {@inheritDoc Transport.put} */
  async put(source: PutSource, path: string, options: PutOptions = {}): Promise<Dna> {
    checkOptionKeys('LocalTransport.put', options, PUT_OPTIONS);
    throwIfAborted(options.signal);
    if (options.mkdirs ?? true) await this.mkdir(dirname(path), { recursive: true });
    const src = toReplayable(source);
    let size = src.size;
    if (typeof source === 'string') size = (await this.stat(source)).size;
    const { mkdirs: _m, ...rest } = options;
    return copyDurably(src.open(0), path, { ...rest, ...(size !== undefined ? { size } : {}) });
  }

  /** {@inheritDoc Transport.get} */
  async get(path: string, localPath: string, options: GetOptions = {}): Promise<Dna> {
    checkOptionKeys('LocalTransport.get', options, GET_OPTIONS);
    throwIfAborted(options.signal);
    const st = await this.stat(path);
    await mkdir(dirname(localPath), { recursive: true }).catch((err: unknown) => {
      throw fromFsError(err, 'create directory', dirname(localPath));
    });
    return copyDurably(createReadStream(path, { highWaterMark: 1 << 20 }), localPath, { ...options, size: st.size, mtimeMs: st.mtimeMs });
  }

  /** {@inheritDoc Transport.createReadStream} */
  createReadStream(path: string, options: OpOptions & { start?: number } = {}): Readable {
    return createReadStream(path, {
      highWaterMark: 1 << 20,
      ...(options.start !== undefined ? { start: options.start } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** {@inheritDoc Transport.remove} */
  async remove(path: string, options: OpOptions & { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    throwIfAborted(options.signal);
    try {
      if (options.recursive) {
        await rm(path, { recursive: true, force: options.force ?? false });
        return;
      }
      const s = await lstat(path);
      if (s.isDirectory()) await rmdir(path);
      else await unlink(path);
    } catch (err) {
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
  async digest(path: string, algorithm: DnaAlgorithm = 'md5', options: OpOptions = {}): Promise<Dna> {
    return DnaDigest.ofFile(path, { algorithm, ...(options.signal ? { signal: options.signal } : {}) });
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

  /** Nothing to release. */
  async close(): Promise<void> {}

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
