/**
 * The Transport contract (layer 1): one interface over a local disk and a
 * remote host, so every workflow (sync, retention, locks, mirrors) works on
 * either. Paths are POSIX strings with `/` separators, absolute on the far
 * side. A `put` is atomic on the far side (`NAME.part`, then rename) and
 * returns the DNA of what was sent, computed in the same pass.
 *
 * Every implementation passes the conformance suite in `test/conformance/`.
 *
 * @module
 */
import type { Readable } from 'node:stream';
import type { Dna, DnaAlgorithm } from '../dna/dna-digest.js';
import type { LockFs } from '../lock/lock-fs.js';
import type { ProgressCallback } from '../progress.js';

/** What kind of thing a path names. */
export type TransportFileType = 'file' | 'dir' | 'symlink' | 'other';

/** Metadata of one path (symlinks are not followed). */
export interface TransportStat {
  /** The path as asked. */
  readonly path: string;
  /** File, directory, symlink or other. */
  readonly type: TransportFileType;
  /** Size in bytes (0 for directories on some hosts). */
  readonly size: number;
  /** Modification time in milliseconds since the epoch (whole seconds on SFTP). */
  readonly mtimeMs: number;
  /** Permission bits (`mode & 0o7777`). */
  readonly mode: number;
}

/** One entry of a directory listing. */
export interface TransportEntry extends TransportStat {
  /** The entry's name within its directory. */
  readonly name: string;
}

/** What a transport can do; workflows adapt to it. */
export interface TransportCapabilities {
  /** `digest()` runs on the far side (no data pulled back). */
  readonly remoteDigest: boolean;
  /** `symlink()`/`readlink()` are supported. */
  readonly symlinks: boolean;
  /** `rename()` is atomic and may replace an existing file. */
  readonly atomicRename: boolean;
  /** `freeSpace()` is supported. */
  readonly freeSpace: boolean;
}

/**
 * A source for `put` that can be replayed from an offset, so a transfer
 * broken by a dropped connection can resume where the far side confirmed.
 */
export interface ReplayableSource {
  /** Total size in bytes, when known. */
  readonly size?: number;
  /** Opens a fresh stream of the bytes from `offset` on. */
  open(offset: number): Readable;
}

/** What `put` sends: a local file path, a buffer, or a replayable source. */
export type PutSource = string | Uint8Array | ReplayableSource;

/** Options of {@link Transport.put}. */
export interface PutOptions {
  /** Digest algorithm of the returned DNA (default md5). */
  algorithm?: DnaAlgorithm;
  /** File mode of the new file. */
  mode?: number;
  /** Set the far file's modification time (sync preserves mtimes). */
  mtimeMs?: number;
  /** Create missing parent directories (default true). */
  mkdirs?: boolean;
  /** Refuse with EEXIST when the target exists (default false: replace). */
  noOverwrite?: boolean;
  /** If given, the sent bytes must have this DNA, else EDIGEST_MISMATCH and nothing under the final name. */
  expectedDna?: Dna;
  /** Byte progress. */
  onProgress?: ProgressCallback;
  /** Cancels the transfer; the far `.part` file is removed. */
  signal?: AbortSignal;
}

/** Options of {@link Transport.get}. */
export interface GetOptions {
  /** Digest algorithm of the returned DNA (default md5). */
  algorithm?: DnaAlgorithm;
  /** If given, the received bytes must have this DNA. */
  expectedDna?: Dna;
  /** Byte progress. */
  onProgress?: ProgressCallback;
  /** Cancels the transfer; the local `.part` file is removed. */
  signal?: AbortSignal;
}

/** Free space of the file system holding a path. */
export interface FreeSpace {
  /** Size of the file system in bytes. */
  readonly totalBytes: number;
  /** Bytes available to an unprivileged writer. */
  readonly availableBytes: number;
  /** Percentage available (0–100). */
  readonly availablePercent: number;
}

/** Options accepted by simple operations. */
export interface OpOptions {
  /** Cancels the operation. */
  signal?: AbortSignal;
}

/** Options of {@link Transport.digest}. */
export interface DigestOptions extends OpOptions {
  /**
   * Byte progress, phase `hash`, with `bytesTotal` the file's size. A file
   * digested on the far side by its own tool (`md5sum`) reports at the
   * start and at the end only: the far tool tells nothing in between.
   */
  onProgress?: ProgressCallback;
}

/**
 * A place to put data: the local disk or a remote host.
 *
 * Missing paths are `ENOT_FOUND`, a full disk is `ENOSPACE`, other far-side
 * failures `ETRANSPORT` (connection trouble: `ECONNECT`/`ETIMEOUT`).
 */
export interface Transport {
  /** A short name for messages: `local`, `ssh://user@host:port`. */
  readonly name: string;
  /** What this transport can do. */
  readonly capabilities: TransportCapabilities;
  /** Metadata of a path (symlinks not followed); ENOT_FOUND if missing. */
  stat(path: string, options?: OpOptions): Promise<TransportStat>;
  /** Like `stat` but resolves `undefined` when the path does not exist. */
  exists(path: string, options?: OpOptions): Promise<TransportStat | undefined>;
  /** The entries of a directory, sorted by name. */
  list(dir: string, options?: OpOptions): Promise<TransportEntry[]>;
  /** Creates a directory; without `recursive` it fails with EEXIST if it exists (a lock primitive). */
  mkdir(path: string, options?: OpOptions & { recursive?: boolean }): Promise<void>;
  /** Atomically writes `path` from `source`; returns the DNA of what was sent. */
  put(source: PutSource, path: string, options?: PutOptions): Promise<Dna>;
  /** Atomically copies the far `path` to the local `localPath`; returns its DNA. */
  get(path: string, localPath: string, options?: GetOptions): Promise<Dna>;
  /** A readable stream of the far file from `start`. */
  createReadStream(path: string, options?: OpOptions & { start?: number }): Readable;
  /** Removes a file, symlink or (with `recursive`) a directory tree; missing is fine with `force`. */
  remove(path: string, options?: OpOptions & { recursive?: boolean; force?: boolean }): Promise<void>;
  /** Renames `from` to `to` (replacing `to` when `capabilities.atomicRename`). */
  rename(from: string, to: string, options?: OpOptions): Promise<void>;
  /** Creates a symlink at `path` pointing to `target`. */
  symlink(target: string, path: string, options?: OpOptions): Promise<void>;
  /** The target of a symlink. */
  readlink(path: string, options?: OpOptions): Promise<string>;
  /** Sets a path's modification (and access) time. */
  setMtime(path: string, mtimeMs: number, options?: OpOptions): Promise<void>;
  /**
   * The DNA of a far file, computed on the far side when
   * `capabilities.remoteDigest`. Its digest and size describe the same
   * bytes: a file that keeps changing while it is digested is EIO
   * (retryable).
   */
  digest(path: string, algorithm?: DnaAlgorithm, options?: DigestOptions): Promise<Dna>;
  /** Free space of the file system holding `path`. */
  freeSpace(path: string, options?: OpOptions): Promise<FreeSpace>;
  /**
   * Connects ahead of time (optional; operations connect on demand). After
   * it resolves, {@link Transport.capabilities} reflect what the far side
   * really offers.
   */
  connect?(options?: OpOptions): Promise<void>;
  /**
   * The file operations of a lock on this transport's tree (exclusive
   * create, no-replace rename), so a `LockDir` can be planted on the far
   * side; see `transportLockFs`.
   */
  lockFs?(): LockFs;
  /** Releases connections and handles. */
  close(): Promise<void>;
}
