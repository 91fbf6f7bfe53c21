/**
 * SshTransport: the Transport contract over SSH (ssh2): SFTP for data,
 * `exec` for `md5sum`/`sha*sum` and `df -P -k`, so digests and free space are
 * computed on the far host without pulling data back.
 *
 * Why it is built the way it is:
 * - Speed. ssh2 runs AES-GCM on the main thread, so the put pipeline keeps
 *   the main thread for reading blocks and framing SFTP writes (many in
 *   flight), and digests on a worker thread ({@link BlockHasher}). The TCP
 *   socket is ours, with `setNoDelay(true)`: with Nagle on, a transfer with
 *   one write in flight crawls under 10 MB/s against delayed ACKs.
 * - Resume. A block is digested only once the server has acknowledged every
 *   write in it, in order, so the digest state always sits exactly at the
 *   confirmed offset. When the connection drops, the put reconnects, opens
 *   its `NAME.part` again without truncating, and re-sends from that offset
 *   (read again from the replayable source; a local file must be the one
 *   first opened, unchanged); the final DNA covers each byte once, as
 *   confirmed by the server. A resumed put is re-digested on the
 *   far side when `exec` is available.
 * - Safety. Host keys are checked against known_hosts before any data is
 *   sent; a refused login is EAUTH; nothing appears under a final name
 *   before it is complete, fsynced (fsync@openssh.com) and renamed
 *   (posix-rename@openssh.com, an atomic replace).
 *
 * @module
 */
import { channel } from 'node:diagnostics_channel';
import { open as openLocal, readFile } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { dirname as localDirname, join as localJoin } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import ssh2 from 'ssh2';
import type { Client as SshClient, ClientChannel, ConnectConfig, SFTPWrapper, Stats } from 'ssh2';
import { assertDna, DnaDigest, DNA_ALGORITHMS, dnaEqual, type Dna, type DnaAlgorithm } from '../../dna/dna-digest.js';
import { StowageError, fromFsError } from '../../errors.js';
import { ProgressTracker } from '../../progress.js';
import { onAbort, raceAbort, sleep, throwIfAborted } from '../../util/abort.js';
import type { LockFs } from '../../lock/lock-fs.js';
import { AtomicFile } from '../../util/atomic-file.js';
import { mkdirRecursive } from '../../util/mkdirp.js';
import { checkInt, checkOneOf, checkOptionKeys } from '../../util/options.js';
import { BlockHasher, type HashJob } from '../../dna/block-hasher.js';
import { openBlockSource, type BlockSource, type SourceIdentity } from '../block-source.js';
import { posixDirname, removalTarget, trimPathTail } from '../put-source.js';
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
import { checkHostKey, formatKnownHostsLine, parseKnownHosts, preferredHostKeyAlgorithms, type KnownHostEntry } from './known-hosts.js';
import { dfCommand, digestCommand, parseDfOutput, parseDigestOutput } from './shell.js';
import { usePooledPadding } from './packet-padding.js';
import { writeNoCopy } from './sftp-write.js';

const { Client, utils: sshUtils } = ssh2;

/** Options of {@link SshTransport}. */
export interface SshTransportOptions {
  /** Host name or address. */
  host: string;
  /** TCP port (default 22). */
  port?: number;
  /** Login name. */
  username: string;
  /** Private key (OpenSSH or PEM text, or its bytes). */
  privateKey?: string | Buffer;
  /** Path of a private key file (read when connecting). */
  privateKeyPath?: string;
  /** Passphrase of an encrypted private key. */
  passphrase?: string;
  /** Path of an ssh-agent socket, e.g. `process.env.SSH_AUTH_SOCK`. */
  agent?: string;
  /** known_hosts file checked for the host key (default `~/.ssh/known_hosts`). */
  knownHosts?: string;
  /**
   * `strict` (default): an unknown or changed host key is EHOSTKEY.
   * `accept-new`: a host with no entry at all is recorded in `knownHosts`;
   * a changed key is still EHOSTKEY.
   */
  hostKeyPolicy?: 'strict' | 'accept-new';
  /**
   * Give up connecting (TCP, handshake and login) after this long (default
   * 20 000 ms): ETIMEOUT. Opening the SFTP session after login gets as long
   * again (a server whose SFTP subsystem never answers is ETIMEOUT too).
   */
  connectTimeoutMs?: number;
  /** Send an SSH keepalive after this much silence (default 10 000 ms; 0 disables). */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives before the connection is declared dead (default 3). */
  keepaliveCountMax?: number;
  /**
   * A request unanswered for this long means the connection is dead (default
   * 60 000 ms). An extra SFTP channel (see `channels`) whose open is
   * unanswered this long is given up: the transfers share the open ones.
   */
  idleTimeoutMs?: number;
  /** Reconnect attempts after a lost connection, per operation (default 3). */
  retries?: number;
  /** First wait before reconnecting; doubles each attempt, at most 10 s (default 250 ms). */
  retryDelayMs?: number;
  /** Run `md5sum`/`df` on the far side when the server allows exec (default true). */
  useExec?: boolean;
  /**
   * SFTP requests in flight per transfer. Default: as many as fill 2 MiB,
   * OpenSSH's channel window (8 of OpenSSH's 255 KiB requests, 64 of the
   * 32 KiB ones other servers take); more only queues in ssh2.
   */
  requests?: number;
  /**
   * SFTP channels per connection (default 8). Concurrent puts (a sync with
   * several files in flight) spread over them; each channel is its own
   * server process, so one file's fsync does not stall the others. A
   * server's MaxSessions limit is respected: refused channels are shared,
   * and an idle one is closed when `exec` needs a session. When none is
   * idle, a put's check of the far file reads it back over SFTP and
   * `freeSpace` asks statvfs@openssh.com instead.
   */
  channels?: number;
  /**
   * Bytes per SFTP read/write request, capped by the server's limits
   * (default 261120, the most OpenSSH takes). Large requests cost the far
   * side far less per byte: measured on a 1 GiB put to OpenSSH 9.2 over
   * loopback, sshd used ~1.9 cpu-s with 255 KiB requests against ~2.9 with
   * 128 KiB ones, and the put ran ~25% faster.
   */
  chunkSize?: number;
  /** Cipher preference (default: AES-GCM first, then ssh2's defaults). */
  ciphers?: string[];
  /** fsync each put on the far side before the rename, when the server supports it (default true). */
  fsync?: boolean;
}

const OPTION_KEYS = [
  'host',
  'port',
  'username',
  'privateKey',
  'privateKeyPath',
  'passphrase',
  'agent',
  'knownHosts',
  'hostKeyPolicy',
  'connectTimeoutMs',
  'keepaliveIntervalMs',
  'keepaliveCountMax',
  'idleTimeoutMs',
  'retries',
  'retryDelayMs',
  'useExec',
  'requests',
  'channels',
  'chunkSize',
  'ciphers',
  'fsync',
];
const PUT_OPTIONS = ['algorithm', 'mode', 'mtimeMs', 'mkdirs', 'noOverwrite', 'expectedDna', 'onProgress', 'signal'];
const GET_OPTIONS = ['algorithm', 'expectedDna', 'onProgress', 'signal'];

const DEFAULT_CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr', 'chacha20-poly1305@openssh.com'];

/** Size of the blocks read from a source and handed to the digest worker. */
const BLOCK_SIZE = 1 << 20;
/** A large put fsyncs its `.part` from another channel every this many bytes. */
const FLUSH_EVERY = 64 << 20;
/** Blocks read ahead of the writes. */
const READ_AHEAD = 4;
/** Bytes of SFTP requests kept in flight by default: OpenSSH's channel window (2 MiB); more only queues in ssh2. */
const IN_FLIGHT_BYTES = 2 << 20;

/** SFTP requests in flight for requests of `size` bytes: `requests` when set, else as many as fill {@link IN_FLIGHT_BYTES} (2-64). */
function requestsFor(requests: number | undefined, size: number): number {
  return requests ?? Math.max(2, Math.min(64, Math.floor(IN_FLIGHT_BYTES / size)));
}

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
const SFTP_STATUS: Record<number, string> = {
  1: 'EOF',
  2: 'NO_SUCH_FILE',
  3: 'PERMISSION_DENIED',
  4: 'FAILURE',
  5: 'BAD_MESSAGE',
  6: 'NO_CONNECTION',
  7: 'CONNECTION_LOST',
  8: 'OP_UNSUPPORTED',
};

const S_IFMT = 0o170000;

function typeOfMode(mode: number): TransportFileType {
  switch (mode & S_IFMT) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    default:
      return 'other';
  }
}

/**
 * Refuses a path SFTP cannot carry: OpenSSH's sftp-server exits on a string
 * holding a NUL byte (it cannot be a file name anyway), which would cut
 * every transfer sharing its channel.
 */
function checkFarPath(where: string, path: unknown, option = 'path'): void {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) {
    throw new StowageError('EBAD_CONFIG', `${where}: ${option} must be a non-empty path without NUL bytes, got ${JSON.stringify(path)}.`, { details: { where, option } });
  }
}

/** How long an aborted put waits for its far cleanup (close, removing the `.part`) before it rejects anyway. */
const ABORT_CLEANUP_MS = 1000;

/**
 * Awaits a cleanup step; once `signal` has aborted, at most
 * {@link ABORT_CLEANUP_MS}: on a stalled connection the step would hold
 * the abort up to idleTimeoutMs. It goes on in the background.
 */
async function cleanupWithin(step: Promise<unknown>, signal: AbortSignal | undefined): Promise<void> {
  const quiet = step.then(
    () => {},
    () => {},
  );
  if (!signal?.aborted) return quiet;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([quiet, new Promise<void>((r) => (timer = setTimeout(r, ABORT_CLEANUP_MS)))]);
  clearTimeout(timer);
}

/**
 * Awaits a far step, or rejects with the signal's reason as soon as it
 * aborts (a stalled link never answers). The step goes on; what it yields
 * after the abort is handed to `late`, so that a far handle or a channel
 * it acquires is given back.
 */
async function lateSafe<T>(step: Promise<T>, signal: AbortSignal | undefined, late?: (value: T) => void): Promise<T> {
  if (signal === undefined) return step;
  try {
    return await raceAbort(step, signal);
  } catch (err) {
    if (signal.aborted) step.then(late, () => {});
    throw err;
  }
}

/** What an abort resolves to when raced against a read. */
const ABORTED: unique symbol = Symbol('aborted');

/** Exit codes of a shell that could not find (127) or run (126) the command: the far host lacks that tool. */
function toolMissing(code: number | null): boolean {
  return code === 126 || code === 127;
}

/** Diagnostics channel on which a resumed put reports `{ transport, path, offset, attempt }`. */
export const RESUME_CHANNEL = 'stowage:transport:resume';
const resumeChannel = channel(RESUME_CHANNEL);

/** Private parts of ssh2's SFTPWrapper that tell the server's extensions and limits. */
interface SftpInternals {
  _extensions?: Record<string, string>;
  _maxWriteLen?: number;
  _maxReadLen?: number;
  outgoing?: { state?: string };
}

interface Channel {
  readonly sftp: SFTPWrapper;
  users: number;
  /** Being closed on purpose (to free a session for exec). */
  closing: boolean;
}

interface Session {
  readonly client: SshClient;
  readonly sftp: SFTPWrapper;
  readonly channels: Channel[];
  /** SFTP channel opens in flight (each resolves to whether it opened). */
  readonly opening: Set<Promise<boolean>>;
  /** An open went unanswered for idleTimeoutMs: no more are tried on this connection. */
  openStalled: boolean;
  readonly sock: Socket;
  readonly ext: { fsync: boolean; posixRename: boolean; statvfs: boolean };
  readonly maxWrite: number;
  readonly maxRead: number;
  dead: boolean;
  deadReason: StowageError | undefined;
  outstanding: number;
  lastReply: number;
  kill(reason: StowageError): void;
}

/**
 * Counts one more SFTP request in flight for the idle watchdog. The first
 * after a quiet spell restarts the clock: `lastReply` then dates from the
 * last reply before the spell, and the watchdog would take a request a
 * little slow to come back after a minute of idle for a dead connection.
 */
function requestSent(s: Session): void {
  if (s.outstanding === 0) s.lastReply = Date.now();
  s.outstanding += 1;
}

/** Times a plain mkdir is sent when the server refuses it (FAILURE) yet nothing is at the path (see SshTransport.mkdir). */
const MKDIR_FAILURE_TRIES = 5;

/**
 * ssh2 1.x's table of a connection's channels by local id
 * (`_chanMgr._channels`): an open on its way is a callback there, an open
 * channel its object. Undefined if the shape is not that.
 */
function channelTable(client: SshClient): Record<string, unknown> | undefined {
  const t = (client as unknown as { _chanMgr?: { _channels?: unknown } })._chanMgr?._channels;
  return typeof t === 'object' && t !== null ? (t as Record<string, unknown>) : undefined;
}

/** An error meaning the connection was lost: the operation may be retried on a new one. */
function isConnectionLoss(err: unknown): boolean {
  if (err instanceof StowageError) return err.code === 'ECONNECT' || (err.code === 'ETIMEOUT' && err.details['lost'] === true);
  const e = err as { code?: unknown; message?: unknown; level?: unknown } | undefined;
  if (e?.code === 6 || e?.code === 7) return true;
  if (typeof e?.code === 'string' && ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED'].includes(e.code)) return true;
  const msg = typeof e?.message === 'string' ? e.message : '';
  return /No response from server|Not connected|Channel (?:not open|closed)|Unable to exec|socket|closed|ended/i.test(msg);
}

/** The server refused to open one more channel (its MaxSessions), not the command. */
function isChannelRefusal(err: unknown): boolean {
  return /open failure|channel open/i.test((err as { message?: unknown } | undefined)?.message === undefined ? '' : String((err as { message: unknown }).message));
}

/**
 * Appends one line (ending in LF) to a known_hosts file, created with mode
 * 0600 if missing. A file whose last line lacks its LF (written by
 * `echo -n`, an editor, a template) gets one first: glued to that line, the
 * new entry would make both unreadable, and the host already pinned there
 * would turn "unknown".
 */
async function appendKnownHostsLine(file: string, line: string): Promise<void> {
  const handle = await openLocal(file, 'a+', 0o600);
  try {
    const { size } = await handle.stat();
    let lead = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) lead = '\n';
    }
    await handle.appendFile(lead + line);
  } finally {
    await handle.close();
  }
}

/**
 * Sends files to, and reads them from, a host over SSH.
 *
 * Connects lazily on the first operation (or explicitly with
 * {@link SshTransport.connect}), reconnects when the connection drops, and
 * resumes a broken put from the offset the server confirmed.
 *
 * @example
 * ```ts
 * await using remote = new SshTransport({
 *   host: 'backup2.example.org',
 *   username: 'dayabay',
 *   privateKeyPath: '/home/dayabay/.ssh/id_ed25519',
 * });
 * const dna = await remote.put('/data/run-1234.tar.gz', '/backups/run-1234.tar.gz');
 * const far = await remote.digest('/backups/run-1234.tar.gz'); // md5sum on the far side
 * ```
 */
export class SshTransport implements Transport {
  /** `ssh://user@host:port`. */
  readonly name: string;
  readonly #o: Readonly<{
    host: string;
    port: number;
    username: string;
    privateKey: string | Buffer | undefined;
    privateKeyPath: string | undefined;
    passphrase: string | undefined;
    agent: string | undefined;
    knownHosts: string;
    hostKeyPolicy: 'strict' | 'accept-new';
    connectTimeoutMs: number;
    keepaliveIntervalMs: number;
    keepaliveCountMax: number;
    idleTimeoutMs: number;
    retries: number;
    retryDelayMs: number;
    useExec: boolean;
    requests: number | undefined;
    channels: number;
    chunkSize: number;
    ciphers: readonly string[];
    fsync: boolean;
  }>;
  #session: Promise<Session> | undefined;
  #live: Session | undefined;
  #exec: boolean | undefined;
  #caps: { remoteDigest: boolean; symlinks: boolean; atomicRename: boolean; freeSpace: boolean };
  #hasher: BlockHasher | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #connecting = new Set<{ client: SshClient; sock: Socket }>();
  #execSlots = 4;
  /** Far-side tools found missing (exit 126/127): digest algorithms, and `df`. */
  readonly #missingTools = new Set<string>();
  readonly #execWaiters: (() => void)[] = [];

  /** @param options - host, login, host-key checking, timeouts, retries and tuning; see {@link SshTransportOptions} */
  constructor(options: SshTransportOptions) {
    const W = 'SshTransport';
    checkOptionKeys(W, options, OPTION_KEYS);
    if (options === undefined || typeof options.host !== 'string' || options.host === '') {
      throw new StowageError('EBAD_CONFIG', `${W}: option "host" is required.`, { details: { where: W, option: 'host' } });
    }
    if (typeof options.username !== 'string' || options.username === '') {
      throw new StowageError('EBAD_CONFIG', `${W}: option "username" is required.`, { details: { where: W, option: 'username' } });
    }
    if (options.privateKey === undefined && options.privateKeyPath === undefined && options.agent === undefined) {
      throw new StowageError('EBAD_CONFIG', `${W}: give "privateKey", "privateKeyPath" or "agent" (e.g. process.env.SSH_AUTH_SOCK).`, {
        details: { where: W, option: 'privateKey' },
      });
    }
    if (options.privateKey !== undefined && options.privateKeyPath !== undefined) {
      throw new StowageError('EBAD_CONFIG', `${W}: give "privateKey" or "privateKeyPath", not both.`, { details: { where: W, option: 'privateKeyPath' } });
    }
    if (options.ciphers !== undefined && (!Array.isArray(options.ciphers) || options.ciphers.length === 0 || options.ciphers.some((c) => typeof c !== 'string'))) {
      throw new StowageError('EBAD_CONFIG', `${W}: option "ciphers" must be a non-empty array of cipher names.`, { details: { where: W, option: 'ciphers' } });
    }
    for (const k of ['agent', 'knownHosts', 'privateKeyPath', 'passphrase'] as const) {
      if (options[k] !== undefined && typeof options[k] !== 'string') {
        throw new StowageError('EBAD_CONFIG', `${W}: option "${k}" must be a string.`, { details: { where: W, option: k } });
      }
    }
    this.#o = Object.freeze({
      host: options.host,
      port: checkInt(W, 'port', options.port ?? 22, 1, 65535),
      username: options.username,
      privateKey: options.privateKey,
      privateKeyPath: options.privateKeyPath,
      passphrase: options.passphrase,
      agent: options.agent,
      knownHosts: options.knownHosts ?? localJoin(homedir(), '.ssh', 'known_hosts'),
      hostKeyPolicy: checkOneOf(W, 'hostKeyPolicy', options.hostKeyPolicy ?? 'strict', ['strict', 'accept-new'] as const),
      connectTimeoutMs: checkInt(W, 'connectTimeoutMs', options.connectTimeoutMs ?? 20_000, 1),
      keepaliveIntervalMs: checkInt(W, 'keepaliveIntervalMs', options.keepaliveIntervalMs ?? 10_000, 0),
      keepaliveCountMax: checkInt(W, 'keepaliveCountMax', options.keepaliveCountMax ?? 3, 1),
      idleTimeoutMs: checkInt(W, 'idleTimeoutMs', options.idleTimeoutMs ?? 60_000, 100),
      retries: checkInt(W, 'retries', options.retries ?? 3, 0, 100),
      retryDelayMs: checkInt(W, 'retryDelayMs', options.retryDelayMs ?? 250, 0),
      useExec: options.useExec ?? true,
      requests: options.requests == null ? undefined : checkInt(W, 'requests', options.requests, 1, 1024),
      channels: checkInt(W, 'channels', options.channels ?? 8, 1, 64),
      chunkSize: checkInt(W, 'chunkSize', options.chunkSize ?? 261_120, 1024, 1 << 20),
      ciphers: Object.freeze([...(options.ciphers ?? DEFAULT_CIPHERS)]),
      fsync: options.fsync ?? true,
    });
    if (typeof this.#o.useExec !== 'boolean' || typeof this.#o.fsync !== 'boolean') {
      throw new StowageError('EBAD_CONFIG', `${W}: options "useExec" and "fsync" must be booleans.`, { details: { where: W } });
    }
    this.name = `ssh://${this.#o.username}@${this.#o.host}:${this.#o.port}`;
    this.#caps = { remoteDigest: this.#o.useExec, symlinks: true, atomicRename: true, freeSpace: true };
  }

  /**
   * What this transport can do. Before the first connection these are the
   * expected values; after {@link connect} they reflect what the server
   * offers (exec allowed, posix-rename, statvfs).
   */
  get capabilities(): TransportCapabilities {
    return Object.freeze({ ...this.#caps });
  }

  /**
   * Connects now (otherwise the first operation does) and probes whether the
   * server allows exec, so {@link capabilities} are exact.
   *
   * @param options - signal
   */
  async connect(options: OpOptions = {}): Promise<void> {
    checkOptionKeys('SshTransport.connect', options, ['signal']);
    await this.#retrying('connect to', this.#o.host, options.signal, async (s) => {
      await this.#probeExec(s, options.signal);
    });
  }

  // -------------------------------------------------------------------------
  // Connection

  #session$(signal?: AbortSignal): Promise<Session> {
    if (this.#closed) return Promise.reject(new StowageError('ECONNECT', `${this.name}: the transport is closed.`, { details: { transport: this.name }, retryable: false }));
    const live = this.#live;
    if (live !== undefined && !live.dead) return Promise.resolve(live);
    if (this.#session === undefined) {
      const p = this.#open();
      this.#session = p;
      p.then(
        (s) => {
          this.#live = s;
        },
        () => {
          if (this.#session === p) this.#session = undefined;
        },
      );
    }
    return raceAbort(this.#session, signal);
  }

  async #readKnownHosts(): Promise<KnownHostEntry[]> {
    try {
      return parseKnownHosts(await readFile(this.#o.knownHosts, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromFsError(err, 'read known_hosts', this.#o.knownHosts);
    }
  }

  async #privateKey(): Promise<string | Buffer | undefined> {
    let key = this.#o.privateKey;
    if (key === undefined && this.#o.privateKeyPath !== undefined) {
      try {
        key = await readFile(this.#o.privateKeyPath);
      } catch (err) {
        throw fromFsError(err, 'read private key', this.#o.privateKeyPath);
      }
    }
    if (key !== undefined) {
      const parsed = sshUtils.parseKey(key, this.#o.passphrase);
      if (parsed instanceof Error) {
        throw new StowageError('EBAD_CONFIG', `SshTransport: cannot use the private key${this.#o.privateKeyPath ? ` ${this.#o.privateKeyPath}` : ''}: ${parsed.message}`, {
          details: { option: this.#o.privateKeyPath ? 'privateKeyPath' : 'privateKey' },
          cause: parsed,
        });
      }
    }
    return key;
  }

  async #open(): Promise<Session> {
    const o = this.#o;
    const [entries, privateKey] = await Promise.all([this.#readKnownHosts(), this.#privateKey()]);
    if (this.#closed) throw new StowageError('ECONNECT', `${this.name}: the transport is closed.`, { details: { transport: this.name }, retryable: false });
    const client = new Client();
    const sock = netConnect({ host: o.host, port: o.port });
    sock.setNoDelay(true);
    // What ssh2 sends in response to one incoming chunk (queued writes
    // released by a window adjust, the next requests after acks) leaves in
    // one writev, not a syscall per 32 KiB packet.
    let corked = false;
    const uncork = (): void => {
      corked = false;
      sock.uncork();
    };
    sock.prependListener('data', () => {
      if (corked) return;
      corked = true;
      sock.cork();
      setImmediate(uncork);
    });
    const connecting = { client, sock };
    this.#connecting.add(connecting);
    // The digest worker starts while the handshake runs.
    this.#hasherFor().warm();
    let hostKeyError: StowageError | undefined;
    const hostVerifier = (key: Buffer, verify: (ok: boolean) => void): void => {
      const check = checkHostKey(entries, o.host, o.port, key);
      const details = { host: o.host, port: o.port, knownHosts: o.knownHosts, keyType: check.keyType, fingerprint: check.fingerprint, status: check.status };
      if (check.status === 'ok') {
        verify(true);
        return;
      }
      if (check.status === 'unknown' && o.hostKeyPolicy === 'accept-new' && check.hostLines.length === 0) {
        mkdirRecursive(localDirname(o.knownHosts), 0o700)
          .then(() => appendKnownHostsLine(o.knownHosts, formatKnownHostsLine(o.host, o.port, key)))
          .then(
            () => verify(true),
            (err: unknown) => {
              hostKeyError = new StowageError('EHOSTKEY', `Cannot record the host key of ${o.host}:${o.port} in ${o.knownHosts}: ${(err as Error).message}`, { details, cause: err });
              verify(false);
            },
          );
        return;
      }
      const why =
        check.status === 'revoked'
          ? `is revoked in ${o.knownHosts}`
          : check.status === 'changed'
            ? `differs from the one recorded in ${o.knownHosts} (line ${check.hostLines.join(', ')}): the host was reinstalled, or someone is in the middle. Check it out of band, then fix that line`
            : check.hostLines.length > 0
              ? `is not in ${o.knownHosts}, which lists the host only with keys of other types (line ${check.hostLines.join(', ')}): the host no longer offers the type recorded there, or someone in the middle offers another. hostKeyPolicy 'accept-new' does not add keys to a known host. Check this fingerprint out of band, then add the key (ssh-keyscan -t ${check.keyType} -p ${o.port} ${o.host} >> ${o.knownHosts}) or fix that line`
              : `is not in ${o.knownHosts}: add it after checking its fingerprint out of band (ssh-keyscan -p ${o.port} ${o.host} >> ${o.knownHosts})${o.hostKeyPolicy === 'accept-new' ? '' : ", or use hostKeyPolicy 'accept-new'"}`;
      hostKeyError = new StowageError('EHOSTKEY', `Host key of ${o.host}:${o.port} (${check.keyType} ${check.fingerprint}) ${why}. Nothing was sent.`, { details });
      verify(false);
    };
    const config: ConnectConfig = {
      sock,
      host: o.host,
      port: o.port,
      username: o.username,
      readyTimeout: o.connectTimeoutMs,
      keepaliveInterval: o.keepaliveIntervalMs,
      keepaliveCountMax: o.keepaliveCountMax,
      hostVerifier,
      algorithms: {
        cipher: [...o.ciphers] as NonNullable<ConnectConfig['algorithms']>['cipher'],
        serverHostKey: preferredHostKeyAlgorithms(entries, o.host, o.port) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'],
        compress: ['none'],
      },
    };
    if (privateKey !== undefined) config.privateKey = privateKey;
    if (o.passphrase !== undefined) config.passphrase = o.passphrase;
    if (o.agent !== undefined) config.agent = o.agent;
    let connectTimer: NodeJS.Timeout | undefined;
    /** Ends a connection given up while it is being set up (a late error from it is ignored). */
    const abandon = (): void => {
      this.#connecting.delete(connecting);
      client.removeAllListeners('error');
      client.on('error', () => {});
      client.end();
      sock.destroy();
    };
    try {
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const fail = (err: unknown): void => {
          if (settled) return;
          settled = true;
          reject(err);
        };
        client.once('ready', () => {
          if (settled) return;
          settled = true;
          resolve();
        });
        client.on('error', fail);
        client.once('close', () => fail(new Error('connection closed before login completed')));
        // ssh2's readyTimeout starts with the handshake; this one also covers TCP connect.
        connectTimer = setTimeout(() => {
          const e = new Error('Timed out while connecting') as Error & { level?: string };
          e.level = 'client-timeout';
          fail(e);
        }, o.connectTimeoutMs);
        try {
          client.connect(config);
        } catch (err) {
          fail(err);
        }
      });
    } catch (err) {
      clearTimeout(connectTimer);
      abandon();
      throw this.#connectError(err, hostKeyError);
    }
    clearTimeout(connectTimer);
    // Padding of outgoing AES-GCM packets from a CSPRNG pool, not a
    // randomFillSync call per 32 KiB packet (see packet-padding.ts).
    usePooledPadding(client);
    const closedWhileConnecting = (): StowageError => new StowageError('ECONNECT', `${this.name}: the transport was closed while connecting.`, { details: { transport: this.name }, retryable: false });
    if (this.#closed) {
      this.#connecting.delete(connecting);
      client.end();
      throw closedWhileConnecting();
    }
    let sftp: SFTPWrapper;
    let openTimer: NodeJS.Timeout | undefined;
    let lostWhileOpening: (() => void) | undefined;
    try {
      sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
        // An SFTP server that never answers (a home folder on a hung network
        // file system, a Subsystem line that runs the wrong program) would
        // otherwise hold this connect, and every caller, for good.
        openTimer = setTimeout(() => {
          reject(
            new StowageError(
              'ETIMEOUT',
              `${this.name}: logged in, but the server opened no SFTP session within ${o.connectTimeoutMs} ms. Check the 'Subsystem sftp' line of the far sshd_config, and that the account's home folder and shell start up (a hung network file system stalls them).`,
              { details: { transport: this.name, host: o.host, port: o.port, phase: 'sftp' } },
            ),
          );
        }, o.connectTimeoutMs);
        // The connection lost (or cut by close()) while the open is on its way.
        lostWhileOpening = () => reject(new StowageError('ECONNECT', `${this.name}: connection lost while opening the SFTP session.`, { details: { transport: this.name }, retryable: true }));
        client.once('close', lostWhileOpening);
        try {
          client.sftp((err, s) => (err ? reject(err) : resolve(s)));
        } catch (err) {
          reject(err);
        }
      });
    } catch (err) {
      clearTimeout(openTimer);
      abandon();
      if (this.#closed) throw closedWhileConnecting();
      if (err instanceof StowageError) throw err;
      if (isConnectionLoss(err)) throw new StowageError('ECONNECT', `${this.name}: connection lost while opening the SFTP session: ${(err as Error).message}`, { details: { transport: this.name }, cause: err, retryable: true });
      throw new StowageError('ETRANSPORT', `${this.name}: the server refused the SFTP subsystem: ${(err as Error).message}`, { details: { transport: this.name }, cause: err });
    }
    clearTimeout(openTimer);
    if (lostWhileOpening !== undefined) client.removeListener('close', lostWhileOpening);
    this.#connecting.delete(connecting);
    if (this.#closed) {
      client.end();
      throw closedWhileConnecting();
    }
    const internals = sftp as unknown as SftpInternals;
    const ext = internals._extensions ?? {};
    // Requests as large as both the server and `chunkSize` allow, in whole KiB.
    const pow2 = (n: number | undefined, fallback: number): number => {
      const v = n !== undefined && n > 0 ? n : fallback;
      return Math.max(1024, Math.floor(Math.min(v, o.chunkSize) / 1024) * 1024);
    };
    const session: Session = {
      client,
      sftp,
      channels: [{ sftp, users: 0, closing: false }],
      opening: new Set(),
      openStalled: false,
      sock,
      ext: { fsync: ext['fsync@openssh.com'] !== undefined, posixRename: ext['posix-rename@openssh.com'] !== undefined, statvfs: ext['statvfs@openssh.com'] !== undefined },
      maxWrite: pow2(internals._maxWriteLen, 32_768),
      maxRead: pow2(internals._maxReadLen, 32_768),
      dead: false,
      deadReason: undefined,
      outstanding: 0,
      lastReply: Date.now(),
      kill: (reason) => {
        if (session.dead) return;
        session.dead = true;
        session.deadReason = reason;
        client.destroy();
        sock.destroy();
      },
    };
    const lost = (err?: unknown): void => {
      if (session.dead) return;
      session.dead = true;
      session.deadReason = new StowageError('ECONNECT', `${this.name}: connection lost${err instanceof Error ? `: ${err.message}` : ''}.`, {
        details: { transport: this.name },
        cause: err,
      });
      if (this.#live === session) this.#live = undefined;
      // The SFTP channel may die while the connection lives on (the far
      // session process killed): the next operation connects anew, so this
      // one is ended here, or its socket and keepalives would outlive even
      // close() and keep the process from exiting.
      client.destroy();
      sock.destroy();
    };
    client.removeAllListeners('error');
    client.removeAllListeners('close');
    client.on('error', lost);
    client.on('close', () => lost());
    client.on('end', () => lost());
    sftp.on('error', lost);
    sftp.on('close', () => lost());
    this.#caps.atomicRename = session.ext.posixRename;
    this.#caps.freeSpace = session.ext.statvfs || this.#exec !== false;
    this.#session = undefined;
    this.#live = session;
    this.#startWatchdog();
    return session;
  }

  #connectError(err: unknown, hostKeyError: StowageError | undefined): StowageError {
    if (hostKeyError !== undefined) return hostKeyError;
    if (err instanceof StowageError) return err;
    const e = err as { level?: string; code?: string; message?: string };
    const details = { transport: this.name, host: this.#o.host, port: this.#o.port, level: e?.level, errno: e?.code };
    // sshd cuts a client that offered more keys than its MaxAuthTries (an
    // agent holding many): a refused login, not a network fault to retry.
    if (e?.level === 'client-authentication' || /too many authentication failures/i.test(e?.message ?? '')) {
      return new StowageError('EAUTH', `${this.name}: login refused (${e.message ?? 'authentication failed'}). Check the user name, and that the key is in the remote ~/.ssh/authorized_keys.`, {
        details,
        cause: err,
      });
    }
    if (e?.level === 'agent') {
      return new StowageError('EAUTH', `${this.name}: the ssh-agent at ${this.#o.agent} failed: ${e.message ?? ''}`, { details, cause: err });
    }
    if (e?.level === 'client-timeout') {
      return new StowageError('ETIMEOUT', `${this.name}: no answer within ${this.#o.connectTimeoutMs} ms while connecting.`, { details, cause: err });
    }
    return new StowageError('ECONNECT', `${this.name}: cannot connect: ${e?.message ?? String(err)}`, { details, cause: err });
  }

  #startWatchdog(): void {
    if (this.#watchdog !== undefined) return;
    const every = Math.max(50, Math.min(1000, Math.floor(this.#o.idleTimeoutMs / 4)));
    this.#watchdog = setInterval(() => {
      const s = this.#live;
      if (s === undefined || s.dead) return;
      if (s.outstanding > 0 && Date.now() - s.lastReply > this.#o.idleTimeoutMs) {
        s.kill(
          new StowageError('ETIMEOUT', `${this.name}: no reply for ${this.#o.idleTimeoutMs} ms; dropping the connection.`, {
            details: { transport: this.name, lost: true },
            retryable: true,
          }),
        );
        if (this.#live === s) this.#live = undefined;
      }
    }, every);
    this.#watchdog.unref();
  }

  /** Runs `fn` on a live session, reconnecting after a lost connection (bounded, with backoff). */
  async #retrying<T>(action: string, path: string, signal: AbortSignal | undefined, fn: (s: Session) => Promise<T>): Promise<T> {
    checkFarPath(`SshTransport: cannot ${action}`, path);
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal);
      let s: Session | undefined;
      try {
        s = await this.#session$(signal);
        // Aborted while connecting: the work is not started. Once started,
        // an abort leaves it to end on its own (its failure then is nobody's).
        throwIfAborted(signal);
        const work = fn(s);
        work.catch(() => {});
        return await raceAbort(work, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const e = s === undefined ? err : this.#mapError(err, action, path, s);
        const retry = (e instanceof StowageError ? e.retryable && (e.code === 'ECONNECT' || e.code === 'ETIMEOUT') : isConnectionLoss(e)) && !this.#closed;
        if (!retry || attempt >= this.#o.retries) throw e;
        await sleep(Math.min(10_000, this.#o.retryDelayMs * 2 ** attempt), signal);
      }
    }
  }

  /** Maps an ssh2/SFTP error to a StowageError. */
  #mapError(err: unknown, action: string, path: string, s: Session): StowageError {
    if (err instanceof StowageError) return err;
    if (s.dead || isConnectionLoss(err)) {
      const reason = s.deadReason;
      if (reason?.code === 'ETIMEOUT') return new StowageError('ETIMEOUT', `${reason.message} (while trying to ${action} ${path})`, { details: { ...reason.details, path, action }, cause: err, retryable: true });
      return new StowageError('ECONNECT', `${this.name}: connection lost while trying to ${action} ${path}.`, { details: { transport: this.name, path, action }, cause: err, retryable: true });
    }
    const code = (err as { code?: unknown }).code;
    const status = typeof code === 'number' ? (SFTP_STATUS[code] ?? String(code)) : undefined;
    const details = { transport: this.name, path, action, sftpStatus: status };
    const msg = (err as Error).message;
    if (code === 2) return new StowageError('ENOT_FOUND', `Cannot ${action} ${this.name}${path}: it does not exist.`, { details, cause: err });
    if (code === 3) return new StowageError('ETRANSPORT', `Cannot ${action} ${this.name}${path}: permission denied on the far side.`, { details, cause: err });
    return new StowageError('ETRANSPORT', `Cannot ${action} ${this.name}${path}: ${msg}${status ? ` (SFTP ${status})` : ''}.`, { details, cause: err });
  }

  /** One SFTP call as a promise; counts it for the idle watchdog. */
  #call<T>(s: Session, fn: (cb: (err: Error | undefined | null, res?: T) => void) => void, sftp: SFTPWrapper = s.sftp): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (s.dead || (sftp as unknown as SftpInternals).outgoing?.state !== 'open') {
        reject(s.deadReason ?? new Error('Not connected'));
        return;
      }
      requestSent(s);
      try {
        fn((err, res) => {
          s.outstanding -= 1;
          s.lastReply = Date.now();
          if (err) reject(err);
          else resolve(res as T);
        });
      } catch (err) {
        s.outstanding -= 1;
        reject(err);
      }
    });
  }

  /**
   * Takes the least busy SFTP channel, opening another (up to `channels`)
   * when all are in use. Callers that arrive together open theirs at the
   * same time, and look again once an open ends, so concurrent puts spread
   * over channels of their own instead of crowding onto the first two; a
   * refused channel (MaxSessions), or one unanswered for idleTimeoutMs,
   * ends the search and the open ones are shared.
   */
  async #channel(s: Session): Promise<{ sftp: SFTPWrapper; release: () => void }> {
    const least = (): Channel => s.channels.reduce((a, b) => (b.users < a.users ? b : a));
    while (least().users > 0 && !s.dead) {
      if (s.channels.length + s.opening.size < this.#o.channels && !s.openStalled) {
        // Callers that arrive together open their channels at the same time:
        // over a long link each open is a few round trips.
        const opening = this.#openChannel(s);
        s.opening.add(opening);
        void opening.then(() => s.opening.delete(opening));
        if (!(await opening)) break;
      } else if (s.opening.size > 0) {
        // As many are on their way as may be: look again when one is there;
        // one refused (MaxSessions) ends the search here too.
        if (!(await Promise.race(s.opening))) break;
      } else {
        break;
      }
    }
    const ch = least();
    ch.users += 1;
    let released = false;
    return {
      sftp: ch.sftp,
      release: () => {
        if (!released) ch.users -= 1;
        released = true;
      },
    };
  }

  /** Opens one more SFTP channel on `s`; resolves to whether it opened (a refusal, MaxSessions, is false). */
  #openChannel(s: Session): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      // A server that never answers the open (a stuck sftp-server) counts as
      // a refusal after idleTimeoutMs: the callers share the open channels.
      // The channel given up is closed, so that its far session (and
      // program) ends: ssh2 passes it on only once the SFTP server has
      // answered, so it is taken from ssh2's channel table. One the server
      // has not even confirmed by then is closed if it opens after all.
      let late = false;
      let localId: string | undefined;
      const timer = setTimeout(() => {
        late = true;
        s.openStalled = true;
        resolve(false);
        const ch = localId === undefined ? undefined : channelTable(s.client)?.[localId];
        if (typeof ch === 'object' && ch !== null && typeof (ch as { destroy?: unknown }).destroy === 'function') (ch as { destroy(): void }).destroy();
      }, this.#o.idleTimeoutMs);
      try {
        const table = channelTable(s.client);
        const before = table === undefined ? undefined : new Set(Object.keys(table));
        s.client.sftp((err, extra) => {
          clearTimeout(timer);
          if (late) {
            // Given up on and opened late: not used, and closed, so that it holds no session on the server.
            if (!err) extra.end();
            return;
          }
          if (!err && !s.dead) {
            const channel: Channel = { sftp: extra, users: 0, closing: false };
            const lost = (): void => {
              if (!channel.closing) s.kill(new StowageError('ECONNECT', `${this.name}: an SFTP channel closed.`, { details: { transport: this.name }, retryable: true }));
            };
            extra.on('error', lost);
            extra.on('close', lost);
            s.channels.push(channel);
            resolve(true);
            return;
          }
          resolve(false);
        });
        // client.sftp() reserved the channel's id in the table synchronously.
        const added = table === undefined || before === undefined ? [] : Object.keys(table).filter((k) => !before.has(k));
        if (added.length === 1) localId = added[0];
      } catch {
        clearTimeout(timer);
        resolve(false);
      }
    });
  }

  // -------------------------------------------------------------------------
  // exec

  /**
   * Takes one of the exec slots, waiting for one when all are in use; an
   * abort while waiting gives up the place in line (rejects with the reason).
   */
  async #acquireExec(signal: AbortSignal | undefined): Promise<() => void> {
    throwIfAborted(signal);
    if (this.#execSlots > 0) {
      this.#execSlots -= 1;
    } else {
      await new Promise<void>((resolve, reject) => {
        let dispose = (): void => {};
        const waiter = (): void => {
          dispose();
          resolve();
        };
        this.#execWaiters.push(waiter);
        dispose = onAbort(signal, (reason) => {
          const i = this.#execWaiters.indexOf(waiter);
          if (i >= 0) this.#execWaiters.splice(i, 1);
          reject(reason);
        });
      });
    }
    return () => {
      const next = this.#execWaiters.shift();
      if (next !== undefined) next();
      else this.#execSlots += 1;
    };
  }

  /** Runs a command on the far side; resolves with its exit code and output. */
  async #run(s: Session, command: string, signal: AbortSignal | undefined): Promise<{ code: number | null; stdout: string; stderr: string }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#run1(s, command, signal);
      } catch (err) {
        // The server's MaxSessions is reached: give back an idle extra SFTP
        // channel, or wait a moment for a session that is closing, and try again.
        if (!isChannelRefusal(err) || s.dead || attempt >= 3) throw err;
        if (!(await this.#closeIdleChannel(s))) await sleep(50 * (attempt + 1), signal);
      }
    }
  }

  /** Closes one extra SFTP channel nobody is using (resolves once the server has closed it); false when there is none. */
  async #closeIdleChannel(s: Session): Promise<boolean> {
    const i = s.channels.findIndex((c, k) => k > 0 && c.users === 0);
    if (i < 0) return false;
    const [c] = s.channels.splice(i, 1);
    c!.closing = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      c!.sftp.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      c!.sftp.end();
    });
    return true;
  }

  async #run1(s: Session, command: string, signal: AbortSignal | undefined): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const release = await this.#acquireExec(signal);
    try {
      return await new Promise((resolve, reject) => {
        // Aborted while waiting for the slot's hand-over: the command is never sent.
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        let stream: ClientChannel | undefined;
        let dispose = (): void => {};
        // Not counted for the idle watchdog: md5sum of a big file says
        // nothing until it is done (minutes for tens of GB). SSH keepalives
        // tell a dead connection meanwhile.
        const done = (): void => {
          s.lastReply = Date.now();
          dispose();
        };
        // The far command is killed (a signal request; OpenSSH honours it for
        // exec sessions), not only left to find its output gone when done.
        const stop = (ch: ClientChannel): void => {
          try {
            ch.signal('KILL');
          } catch {
            // The channel is already closing.
          }
          ch.close();
        };
        dispose = onAbort(signal, (reason) => {
          if (stream !== undefined) stop(stream);
          reject(reason);
        });
        try {
          s.client.exec(command, (err, ch) => {
            if (err) {
              done();
              reject(err);
              return;
            }
            if (signal?.aborted) {
              // Aborted while the channel was opening: closed at once.
              done();
              stop(ch);
              return;
            }
            stream = ch;
            let stdout = '';
            let stderr = '';
            ch.on('data', (d: Buffer) => {
              s.lastReply = Date.now();
              if (stdout.length < 1 << 20) stdout += d.toString('utf8');
            });
            ch.stderr.on('data', (d: Buffer) => {
              if (stderr.length < 1 << 16) stderr += d.toString('utf8');
            });
            // The exit status comes before the close; a close without one is a lost connection, not an answer.
            let exit: { code: number | null } | undefined;
            ch.on('exit', (code: number | null) => {
              exit = { code: typeof code === 'number' ? code : null };
            });
            ch.on('close', () => {
              done();
              if (exit === undefined) {
                reject(
                  s.deadReason ??
                    new StowageError('ECONNECT', `${this.name}: the connection was lost while running a command on the far side.`, { details: { transport: this.name, lost: true }, retryable: true }),
                );
                return;
              }
              resolve({ code: exit.code, stdout, stderr });
            });
            ch.end();
          });
        } catch (err) {
          done();
          reject(err);
        }
      });
    } finally {
      release();
    }
  }

  /** Whether exec works (a probe once per transport: with ForceCommand internal-sftp, exec runs the sftp server instead). */
  async #probeExec(s: Session, signal: AbortSignal | undefined): Promise<boolean> {
    if (!this.#o.useExec) {
      this.#exec = false;
    } else if (this.#exec === undefined) {
      let ok = false;
      try {
        const r = await this.#run(s, 'echo stowage-exec-ok', signal);
        ok = r.code === 0 && r.stdout.trim() === 'stowage-exec-ok';
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (s.dead) throw err;
        // No channel to be had right now (the server's MaxSessions): say no
        // this time, ask again next time.
        if (isChannelRefusal(err)) return false;
        ok = false;
      }
      this.#exec = ok;
    }
    this.#caps.remoteDigest = this.#exec;
    this.#caps.freeSpace = this.#exec || s.ext.statvfs;
    return this.#exec;
  }

  // -------------------------------------------------------------------------
  // Metadata

  #toStat(path: string, a: Stats | { mode: number; size: number; mtime: number }): TransportStat {
    return { path, type: typeOfMode(a.mode), size: a.size, mtimeMs: a.mtime * 1000, mode: a.mode & 0o7777 };
  }

  /** {@inheritDoc Transport.stat} */
  async stat(path: string, options: OpOptions = {}): Promise<TransportStat> {
    // `link/` would be looked up through the link: the name itself is asked.
    const name = typeof path === 'string' && path !== '' ? trimPathTail(path) : path;
    return this.#retrying('stat', path, options.signal, async (s) => this.#toStat(path, await this.#call<Stats>(s, (cb) => s.sftp.lstat(name, cb))));
  }

  /** {@inheritDoc Transport.exists} */
  async exists(path: string, options: OpOptions = {}): Promise<TransportStat | undefined> {
    try {
      return await this.stat(path, options);
    } catch (err) {
      if (err instanceof StowageError && err.code === 'ENOT_FOUND') return undefined;
      throw err;
    }
  }

  /** {@inheritDoc Transport.list} */
  async list(dir: string, options: OpOptions = {}): Promise<TransportEntry[]> {
    return this.#retrying('list', dir, options.signal, async (s) => {
      // OpenSSH's sftp-server lstat()s every entry it reads and silently
      // leaves out those it cannot (a folder the far account may read but
      // not search lists as empty): a listing taken for complete would have
      // Retention purge, or sync delete, what it never saw. Whether the
      // folder can be searched is asked beside the read (`dir/.` needs it).
      const searchable = this.#call<Stats>(s, (cb) => s.sftp.stat(`${dir.endsWith('/') ? dir : dir + '/'}.`, cb)).then(
        () => true,
        (err: unknown) => (err as { code?: unknown }).code !== 3, // PERMISSION_DENIED; anything else is the read's to tell
      );
      let entries: { filename: string; attrs: Stats }[];
      try {
        entries = await this.#call(s, (cb) => s.sftp.readdir(dir, cb));
      } catch (err) {
        const e = this.#mapError(err, 'list', dir, s);
        if (e.code === 'ENOT_FOUND') {
          // OpenSSH answers NO_SUCH_FILE for "not a directory" too.
          const st = await this.#call<Stats>(s, (cb) => s.sftp.lstat(dir, cb)).catch(() => undefined);
          if (st !== undefined) throw new StowageError('ETRANSPORT', `Cannot list ${this.name}${dir}: it is not a directory.`, { details: { transport: this.name, path: dir }, cause: err });
        }
        throw e;
      }
      if (!(await searchable)) {
        throw new StowageError('EIO', `Cannot list ${this.name}${dir}: the far account may read its names but not search it (no x permission), and the SFTP server leaves out every entry it cannot look at, so the listing would be incomplete. Give the account search permission on it (chmod u+x or g+x), or leave it out.`, {
          details: { transport: this.name, path: dir, reason: 'not searchable' },
        });
      }
      const base = dir.endsWith('/') ? dir : dir + '/';
      return entries
        .filter((e) => e.filename !== '.' && e.filename !== '..')
        .sort((a, b) => (a.filename < b.filename ? -1 : a.filename > b.filename ? 1 : 0))
        .map((e) => {
          const entry = { name: e.filename, ...this.#toStat(base + e.filename, e.attrs) };
          // ssh2 decodes names as UTF-8: one that is not (Latin-1 from an old
          // system) comes with U+FFFD and names nothing on the far side. It
          // is listed as "other", as LocalTransport lists it, so that sync
          // reports it instead of failing on it (or deleting nothing).
          return e.filename.includes('\uFFFD') ? { ...entry, type: 'other' as const } : entry;
        });
    });
  }

  /** {@inheritDoc Transport.mkdir} */
  async mkdir(path: string, options: OpOptions & { recursive?: boolean } = {}): Promise<void> {
    const { signal } = options;
    checkFarPath('SshTransport.mkdir', path);
    throwIfAborted(signal);
    if (!options.recursive) {
      // Not retried: a mkdir that ran before the connection dropped would
      // come back as EEXIST, and mkdir is the lock primitive.
      // OpenSSH answers a mkdir of an existing path with a bare FAILURE,
      // told from other failures by an lstat. A contender that removed the
      // path in between (a lock released) leaves nothing to find: the
      // server did refuse the mkdir, so it is sent again (a few times).
      const s = await this.#session$(signal);
      for (let attempt = 1; ; attempt++) {
        try {
          await raceAbort(
            this.#call(s, (cb) => s.sftp.mkdir(path, cb)),
            signal,
          );
          return;
        } catch (err) {
          if (signal?.aborted) throw signal.reason;
          const e = this.#mapError(err, 'create directory', path, s);
          if (e.details['sftpStatus'] !== 'FAILURE' || s.dead) throw e;
          const st = await raceAbort(
            this.#call<Stats>(s, (cb) => s.sftp.lstat(path, cb)).catch(() => undefined),
            signal,
          );
          if (st !== undefined) throw new StowageError('EEXIST', `Cannot create directory ${this.name}${path}: it already exists.`, { details: { transport: this.name, path }, cause: err });
          if (attempt >= MKDIR_FAILURE_TRIES) throw await raceAbort(this.#spaceError(err, s, path, 'create directory'), signal);
        }
      }
    }
    await this.#retrying('create directory', path, signal, (s) => this.#mkdirp(s, path));
  }

  async #mkdirp(s: Session, path: string): Promise<void> {
    const st = await this.#call<Stats>(s, (cb) => s.sftp.stat(path, cb)).catch((err: unknown) => {
      const e = this.#mapError(err, 'create directory', path, s);
      if (e.code === 'ENOT_FOUND') return undefined;
      throw e;
    });
    if (st !== undefined) {
      if (typeOfMode(st.mode) === 'dir') return;
      throw new StowageError('EEXIST', `Cannot create directory ${this.name}${path}: a file of that name exists.`, { details: { transport: this.name, path } });
    }
    const parent = posixDirname(path);
    if (parent !== path) await this.#mkdirp(s, parent);
    try {
      await this.#call(s, (cb) => s.sftp.mkdir(path, cb));
    } catch (err) {
      // Created by someone else in between is fine.
      const again = await this.#call<Stats>(s, (cb) => s.sftp.stat(path, cb)).catch(() => undefined);
      if (again !== undefined && typeOfMode(again.mode) === 'dir') return;
      throw await this.#spaceError(err, s, path, 'create directory');
    }
  }

  /** {@inheritDoc Transport.remove} */
  async remove(path: string, options: OpOptions & { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    const { signal } = options;
    checkFarPath('SshTransport: cannot remove', path);
    // `link/` and `link/.` name the link's target to the server (its lstat
    // follows the link): the link itself is what is removed, never what it
    // points to.
    const target = removalTarget('SshTransport.remove', path);
    await this.#retrying('remove', target, signal, async (s) => {
      let st: Stats;
      try {
        st = await this.#call<Stats>(s, (cb) => s.sftp.lstat(target, cb));
      } catch (err) {
        const e = this.#mapError(err, 'remove', path, s);
        if (e.code === 'ENOT_FOUND' && options.force) return;
        throw e;
      }
      if (typeOfMode(st.mode) !== 'dir') {
        await this.#unlink(s, target, options.force ?? false);
        return;
      }
      if (options.recursive) await this.#removeTree(s, target, signal);
      else await this.#rmdir(s, target, options.force ?? false);
    });
  }

  /**
   * Creates a put's `.part` file anew (SFTP's exclusive create, so a
   * symlink named like it is never written through): a stale one in the way
   * (a leftover, or a symlink planted or synced there) is removed first.
   */
  async #createPart(s: Session, sftp: SFTPWrapper, part: string, mode: number): Promise<Buffer> {
    try {
      return await this.#call<Buffer>(s, (cb) => sftp.open(part, 'wx', { mode }, cb), sftp);
    } catch (err) {
      const there = await this.#call<Stats>(s, (cb) => sftp.lstat(part, cb), sftp).catch(() => undefined);
      if (there === undefined || typeOfMode(there.mode) === 'dir') throw err;
      await this.#unlink(s, part, true);
      return this.#call<Buffer>(s, (cb) => sftp.open(part, 'wx', { mode }, cb), sftp);
    }
  }

  /**
   * Reopens a put's `.part` to resume it. One that is no longer writable by
   * its owner (the cut came after the final fsetstat applied a read-only
   * `mode`) is made so first: the final fsetstat applies the mode again.
   */
  async #reopenPart(s: Session, sftp: SFTPWrapper, part: string, there: Stats): Promise<Buffer> {
    if (typeOfMode(there.mode) === 'file' && (there.mode & 0o200) === 0) {
      await this.#call(s, (cb) => sftp.setstat(part, { mode: (there.mode & 0o7777) | 0o600 }, cb), sftp);
    }
    return this.#call<Buffer>(s, (cb) => sftp.open(part, 'r+', cb), sftp);
  }

  async #unlink(s: Session, path: string, force: boolean): Promise<void> {
    try {
      await this.#call(s, (cb) => s.sftp.unlink(path, cb));
    } catch (err) {
      const e = this.#mapError(err, 'remove', path, s);
      if (force && e.code === 'ENOT_FOUND') return;
      throw e;
    }
  }

  async #rmdir(s: Session, path: string, force: boolean): Promise<void> {
    try {
      await this.#call(s, (cb) => s.sftp.rmdir(path, cb));
    } catch (err) {
      const e = this.#mapError(err, 'remove directory', path, s);
      if (force && e.code === 'ENOT_FOUND') return;
      if (e.details['sftpStatus'] === 'FAILURE') {
        throw new StowageError('ETRANSPORT', `Cannot remove directory ${this.name}${path}: it is not empty (use recursive).`, { details: e.details, cause: err });
      }
      throw e;
    }
  }

  /**
   * Removes a folder and everything under it: the whole tree is listed
   * first, then its files and links are removed (never followed: listing
   * attributes are lstat's), then its folders, deepest first. A name that
   * is not UTF-8 (Latin-1 from an old system) comes through SFTP decoded
   * with U+FFFD and cannot be named back: such a tree is refused before
   * anything is removed (EIO naming the entry), not emptied of everything
   * else and then found "not empty".
   */
  async #removeTree(s: Session, dir: string, signal: AbortSignal | undefined): Promise<void> {
    /** Runs `fn` over `items`, a few requests in flight (one round trip each adds up on big trees), checking the signal per item. */
    const pool = async <T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < items.length) {
          throwIfAborted(signal);
          await fn(items[next++]!);
        }
      };
      await Promise.all(Array.from({ length: Math.min(16, items.length) }, worker));
    };
    throwIfAborted(signal);
    const levels: string[][] = [];
    const files: string[] = [];
    for (let level = [dir]; level.length > 0; ) {
      levels.push(level);
      const below: string[] = [];
      await pool(level, async (d) => {
        let entries: { filename: string; attrs: Stats }[];
        try {
          entries = await this.#call(s, (cb) => s.sftp.readdir(d, cb));
        } catch (err) {
          const e = this.#mapError(err, 'list', d, s);
          if (e.code === 'ENOT_FOUND') return; // removed by someone else meanwhile
          throw e;
        }
        const base = d.endsWith('/') ? d : d + '/';
        for (const e of entries) {
          if (e.filename === '.' || e.filename === '..') continue;
          const p = base + e.filename;
          if (e.filename.includes('\uFFFD')) {
            // A real name may hold U+FFFD itself: only one that names nothing is undecodable.
            const named = await this.#call<Stats>(s, (cb) => s.sftp.lstat(p, cb)).then(
              () => true,
              () => false,
            );
            if (!named) {
              throw new StowageError(
                'EIO',
                `Cannot remove ${this.name}${dir}: it holds ${JSON.stringify(p)}, whose name is not valid UTF-8 (shown with U+FFFD), which SFTP cannot name back to the server. Nothing was removed. Rename it on the far host (e.g. convmv -f latin1 -t utf8), or remove it there, then remove the tree again.`,
                { details: { transport: this.name, path: dir, entry: p, reason: 'name not UTF-8' } },
              );
            }
          }
          if (typeOfMode(e.attrs.mode) === 'dir') below.push(p);
          else files.push(p);
        }
      });
      level = below;
    }
    await pool(files, (p) => this.#unlink(s, p, true));
    for (const level of levels.reverse()) await pool(level, (d) => this.#rmdir(s, d, true));
  }

  /** {@inheritDoc Transport.rename} */
  async rename(from: string, to: string, options: OpOptions = {}): Promise<void> {
    checkFarPath('SshTransport.rename', from, 'from');
    checkFarPath('SshTransport.rename', to, 'to');
    throwIfAborted(options.signal);
    // Not retried: a rename that ran before the connection dropped would fail the second time.
    const s = await this.#session$(options.signal);
    try {
      await raceAbort(this.#renameOn(s, from, to, true), options.signal);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw this.#mapError(err, 'rename', from, s);
    }
  }

  /** posix-rename (atomic replace) when offered, else SFTP rename (which never replaces). */
  async #renameOn(s: Session, from: string, to: string, replace: boolean): Promise<void> {
    if (replace && s.ext.posixRename) {
      await this.#call(s, (cb) => s.sftp.ext_openssh_rename(from, to, cb));
      return;
    }
    try {
      await this.#call(s, (cb) => s.sftp.rename(from, to, cb));
    } catch (err) {
      const e = this.#mapError(err, 'rename', from, s);
      if (e.details['sftpStatus'] === 'FAILURE' && !s.dead) {
        const there = await this.#call<Stats>(s, (cb) => s.sftp.lstat(to, cb)).catch(() => undefined);
        if (there !== undefined) {
          if (!replace) throw new StowageError('EEXIST', `Cannot rename ${this.name}${from} to ${to}: the target exists.`, { details: { transport: this.name, path: to }, cause: err });
          // No atomic replace on this server: remove, then rename.
          await this.#call(s, (cb) => s.sftp.unlink(to, cb));
          await this.#call(s, (cb) => s.sftp.rename(from, to, cb));
          return;
        }
      }
      throw e;
    }
  }

  /** {@inheritDoc Transport.symlink} */
  async symlink(target: string, path: string, options: OpOptions = {}): Promise<void> {
    checkFarPath('SshTransport.symlink', target, 'target');
    checkFarPath('SshTransport.symlink', path);
    throwIfAborted(options.signal);
    const s = await this.#session$(options.signal);
    try {
      await raceAbort(
        this.#call(s, (cb) => s.sftp.symlink(target, path, cb)),
        options.signal,
      );
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      const e = this.#mapError(err, 'create symlink', path, s);
      if (e.details['sftpStatus'] === 'FAILURE' && !s.dead) {
        const there = await this.#call<Stats>(s, (cb) => s.sftp.lstat(path, cb)).catch(() => undefined);
        if (there !== undefined) throw new StowageError('EEXIST', `Cannot create symlink ${this.name}${path}: it already exists.`, { details: { transport: this.name, path }, cause: err });
      }
      throw e;
    }
  }

  /** {@inheritDoc Transport.readlink} */
  async readlink(path: string, options: OpOptions = {}): Promise<string> {
    return this.#retrying('read link', path, options.signal, (s) => this.#call<string>(s, (cb) => s.sftp.readlink(path, cb)));
  }

  /** {@inheritDoc Transport.setMtime} */
  async setMtime(path: string, mtimeMs: number, options: OpOptions = {}): Promise<void> {
    const t = Math.floor(mtimeMs / 1000);
    await this.#retrying('set mtime of', path, options.signal, (s) => this.#call(s, (cb) => s.sftp.utimes(path, t, t, cb)));
  }

  /** {@inheritDoc Transport.digest} */
  async digest(path: string, algorithm: DnaAlgorithm = 'md5', options: DigestOptions = {}): Promise<Dna> {
    checkOneOf('SshTransport.digest', 'algorithm', algorithm, DNA_ALGORITHMS);
    const { signal, onProgress } = options;
    const progress = new ProgressTracker('hash', onProgress, { itemsTotal: 1 });
    const dna = await this.#retrying('digest', path, signal, async (s) => {
      for (let attempt = 0; ; attempt++) {
        const st = this.#toStat(path, await this.#call<Stats>(s, (cb) => s.sftp.stat(path, cb)));
        if (st.type !== 'file') throw new StowageError('ETRANSPORT', `Cannot digest ${this.name}${path}: it is not a regular file.`, { details: { transport: this.name, path } });
        // A retry, or the second attempt on a changed file, starts the count again.
        progress.bytesDone = 0;
        progress.bytesTotal = st.size;
        progress.report(true);
        let far: Dna | undefined;
        try {
          far = await this.#remoteDigest(s, path, algorithm, st.size, signal);
        } catch (err) {
          // All sessions of the connection in use (MaxSessions): stream it instead.
          if (!isChannelRefusal(err) || s.dead) throw err;
        }
        // Streamed (no exec, no tool, or no session for one), the size is
        // that of the bytes digested.
        const streamed = far === undefined;
        far ??= await this.#streamDigest(path, algorithm, signal, onProgress ? progress : undefined);
        // The far tool (or the stream) read the file after the stat: the
        // DNA is only the file's if it is unchanged since (same size and
        // mtime, and as many bytes digested). A file being written is
        // digested once more, then refused.
        const after = this.#toStat(path, await this.#call<Stats>(s, (cb) => s.sftp.stat(path, cb)));
        if (after.type === 'file' && after.size === st.size && after.mtimeMs === st.mtimeMs && far.size === st.size) {
          if (!streamed) progress.add(st.size);
          return far;
        }
        if (attempt >= 1) {
          throw new StowageError('EIO', `Cannot digest ${this.name}${path}: it changed while it was digested (${st.size} bytes before, ${after.size} after). Digest it again once nothing writes to it.`, {
            details: { transport: this.name, path, sizeBefore: st.size, sizeAfter: after.size, mtimeMsBefore: st.mtimeMs, mtimeMsAfter: after.mtimeMs },
            retryable: true,
          });
        }
      }
    });
    progress.add(0, 1);
    progress.report(true);
    return dna;
  }

  /**
   * The digest of a far file by the far host's own tool (`md5sum`...);
   * undefined when exec is not allowed or that tool is missing there (exit
   * 126/127, remembered for this transport): the caller streams the file
   * instead, or does without.
   */
  async #remoteDigest(s: Session, path: string, algorithm: DnaAlgorithm, size: number, signal: AbortSignal | undefined): Promise<Dna | undefined> {
    if (this.#missingTools.has(algorithm) || !(await this.#probeExec(s, signal))) return undefined;
    const r = await this.#run(s, digestCommand(path, algorithm), signal);
    if (toolMissing(r.code)) {
      this.#missingTools.add(algorithm);
      return undefined;
    }
    const dig = r.code === 0 ? parseDigestOutput(r.stdout, algorithm) : undefined;
    if (dig === undefined) {
      throw new StowageError('ETRANSPORT', `Cannot digest ${this.name}${path}: ${digestCommand(path, algorithm)} exited ${String(r.code)}: ${r.stderr.trim() || r.stdout.trim()}`, {
        details: { transport: this.name, path, exitCode: r.code, stderr: r.stderr.slice(0, 500) },
      });
    }
    return Object.freeze({ dig, size, algorithm });
  }

  /**
   * A put's check of the far file: {@link #remoteDigest}, but when every
   * session of the connection is taken (the server's MaxSessions, reached
   * by puts holding their SFTP channels) the file is read back over SFTP
   * instead of failing a put whose bytes all arrived. Undefined when the far
   * host cannot digest at all (no exec, no tool), as before.
   */
  async #farDigest(s: Session, path: string, algorithm: DnaAlgorithm, size: number, signal: AbortSignal | undefined): Promise<Dna | undefined> {
    try {
      return await this.#remoteDigest(s, path, algorithm, size, signal);
    } catch (err) {
      if (!isChannelRefusal(err) || s.dead) throw err;
      return this.#streamDigest(path, algorithm, signal);
    }
  }

  /** The digest of a far file read back over SFTP; `progress` counts its bytes. */
  async #streamDigest(path: string, algorithm: DnaAlgorithm, signal: AbortSignal | undefined, progress?: ProgressTracker): Promise<Dna> {
    const d = new DnaDigest({ algorithm });
    const sink = new Writable({
      highWaterMark: 1 << 20,
      write(chunk: Buffer, _enc, cb) {
        d.update(chunk);
        progress?.add(chunk.length);
        cb();
      },
    });
    await pipeline(this.createReadStream(path, signal ? { signal } : {}), sink, signal ? { signal } : {});
    return d.digest();
  }

  /** {@inheritDoc Transport.freeSpace} */
  async freeSpace(path: string, options: OpOptions = {}): Promise<FreeSpace> {
    const { signal } = options;
    return this.#retrying('get free space of', path, signal, (s) => this.#freeSpaceOn(s, path, signal));
  }

  /** Free space on one session: `df` on the far side where it runs, else statvfs@openssh.com. */
  async #freeSpaceOn(s: Session, path: string, signal: AbortSignal | undefined): Promise<FreeSpace> {
    if (!this.#missingTools.has('df') && (await this.#probeExec(s, signal))) {
      let r: { code: number | null; stdout: string; stderr: string };
      try {
        r = await this.#run(s, dfCommand(path), signal);
      } catch (err) {
        // Every session taken (MaxSessions): statvfs@openssh.com needs none.
        if (!isChannelRefusal(err) || s.dead || !s.ext.statvfs) throw err;
        return this.#statvfs(s, path);
      }
      const fs = r.code === 0 ? parseDfOutput(r.stdout) : undefined;
      if (fs !== undefined) return fs;
      if (toolMissing(r.code)) {
        this.#missingTools.add('df');
      } else {
        // "No such file" may be the login shell's own noise: the path decides.
        const gone = await this.#call<Stats>(s, (cb) => s.sftp.stat(path, cb)).then(
          () => false,
          (err: unknown) => (err as { code?: unknown }).code === 2,
        );
        if (gone) throw new StowageError('ENOT_FOUND', `Cannot get free space of ${this.name}${path}: it does not exist.`, { details: { transport: this.name, path } });
        throw new StowageError('ETRANSPORT', `Cannot get free space of ${this.name}${path}: df exited ${String(r.code)}: ${r.stderr.trim()}`, {
          details: { transport: this.name, path, exitCode: r.code },
        });
      }
    }
    return this.#statvfs(s, path);
  }

  async #statvfs(s: Session, path: string): Promise<FreeSpace> {
    if (!s.ext.statvfs) {
      throw new StowageError('ETRANSPORT', `Cannot get free space on ${this.name}: df cannot be run there (exec not allowed, or df missing) and the server lacks statvfs@openssh.com.`, { details: { transport: this.name, path } });
    }
    const v = await this.#call<{ f_frsize: number; f_bsize: number; f_blocks: number; f_bavail: number }>(s, (cb) => s.sftp.ext_openssh_statvfs(path, cb));
    const unit = v.f_frsize || v.f_bsize;
    const totalBytes = v.f_blocks * unit;
    const availableBytes = v.f_bavail * unit;
    return { totalBytes, availableBytes, availablePercent: totalBytes > 0 ? (availableBytes / totalBytes) * 100 : 0 };
  }

  // -------------------------------------------------------------------------
  // put

  #hasherFor(): BlockHasher {
    // Room for the writes in flight, the read-ahead, and a backlog for the
    // digest worker; at least 48 MiB in all, so a sync with dozens of
    // files in flight is not held back by the pool (blocks are allocated
    // as needed, and small files take blocks fitted to them).
    const inFlight = this.#o.requests === undefined ? IN_FLIGHT_BYTES : this.#o.requests * this.#o.chunkSize;
    this.#hasher ??= new BlockHasher(BLOCK_SIZE, Math.max(48, Math.ceil(inFlight / BLOCK_SIZE) + READ_AHEAD + 12));
    return this.#hasher;
  }

  /**
   * Atomically writes `path` on the far side from `source`; returns the DNA
   * of what was sent, computed in the same pass.
   *
   * Writes `path.part` with many SFTP writes in flight while a worker thread
   * digests the acknowledged bytes, fsyncs it (fsync@openssh.com), sets mode
   * and mtime, and renames it onto `path` (posix-rename@openssh.com). A
   * dropped connection is retried up to `retries` times, resuming from the
   * offset the server confirmed. A full far disk is ENOSPACE, with the
   * `.part` removed.
   *
   * A local file source is reopened by name to resume: it must still be
   * the file first opened (same device, inode, size and mtime). One
   * replaced or written to meanwhile is a retryable EIO naming it, with the
   * `.part` removed, rather than a far file that splices the bytes of two
   * versions: put it again once nothing writes to it. So is a local file
   * whose size or mtime changed while it was read (still being written):
   * nothing lands cut or mixed under `path`.
   */
  async put(source: PutSource, path: string, options: PutOptions = {}): Promise<Dna> {
    checkOptionKeys('SshTransport.put', options, PUT_OPTIONS);
    const { signal } = options;
    const algorithm = checkOneOf('SshTransport.put', 'algorithm', options.algorithm ?? 'md5', DNA_ALGORITHMS);
    if (options.mode !== undefined) checkInt('SshTransport.put', 'mode', options.mode, 0, 0o7777);
    if (options.mtimeMs !== undefined && (typeof options.mtimeMs !== 'number' || !Number.isFinite(options.mtimeMs))) {
      throw new StowageError('EBAD_CONFIG', 'SshTransport.put: option "mtimeMs" must be a finite number.', { details: { option: 'mtimeMs' } });
    }
    checkFarPath('SshTransport.put', path);
    throwIfAborted(signal);
    const part = path + '.part';
    // The .part stays readable and writable by its owner while it is being
    // written, so that a cut transfer can reopen it to resume (and the far
    // host read it back to check it); the requested mode, read-only or not,
    // is applied by the final fsetstat, just before the rename.
    const partMode = options.mode === undefined ? 0o644 : (options.mode & 0o777) | 0o600;
    const hasher = this.#hasherFor();
    const st: PutState = { job: hasher.begin(algorithm), confirmed: 0, created: false, renamed: false, resumed: false };
    let size: number | undefined = typeof source === 'string' ? undefined : source instanceof Uint8Array ? source.length : source?.size;
    const progress = new ProgressTracker('upload', options.onProgress, size !== undefined ? { bytesTotal: size } : {});
    let lastSession: Session | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        throwIfAborted(signal);
        let s: Session | undefined;
        let reader: BlockSource | undefined;
        let handle: Buffer | undefined;
        let ch: { sftp: SFTPWrapper; release: () => void } | undefined;
        let flusher: Flusher | undefined;
        let readerP: Promise<BlockSource> | undefined;
        try {
          s = await this.#session$(signal);
          lastSession = s;
          const live = s;
          // The far steps before the data (and after it) are raced against
          // the signal, so that an abort on a stalled link rejects at once;
          // what such a step yields after that (a far handle, a channel) is
          // given back when it comes.
          ch = await lateSafe(this.#channel(s), signal, (c) => c.release());
          const sftp = ch.sftp;
          const closeLate = (h: Buffer): void => void this.#call(live, (cb) => sftp.close(h, cb), sftp).catch(() => {});
          if (!st.created) {
            // The local source opens while the far side does.
            readerP = openBlockSource(source, 0).catch((err: unknown) => {
              throw new SourceFailure(err);
            });
            readerP.catch(() => {});
            if (options.mkdirs ?? true) await lateSafe(this.#mkdirp(s, posixDirname(path)), signal);
            if (options.noOverwrite) {
              const there = await lateSafe(this.#call<Stats>(s, (cb) => sftp.lstat(path, cb), sftp).catch(() => undefined), signal);
              if (there !== undefined) throw new StowageError('EEXIST', `Refusing to overwrite ${this.name}${path}: it already exists.`, { details: { transport: this.name, path } });
            }
            handle = await lateSafe(this.#createPart(s, sftp, part, partMode), signal, (h) => {
              // Created after the abort: closed, and removed while it is still
              // the empty file made here (not the .part of a later put).
              void this.#call(live, (cb) => sftp.close(h, cb), sftp)
                .then(() => this.#call<Stats>(live, (cb) => sftp.lstat(part, cb), sftp))
                .then((there) => (there.size === 0 && typeOfMode(there.mode) === 'file' ? this.#call(live, (cb) => sftp.unlink(part, cb), sftp) : undefined))
                .catch(() => {});
            });
            st.created = true;
          } else if (st.renamed) {
            // The rename was sent before the connection dropped: did it land?
            const partThere = await lateSafe(this.#call<Stats>(s, (cb) => sftp.lstat(part, cb), sftp).catch(() => undefined), signal);
            if (partThere === undefined) return await lateSafe(this.#finishAfterLostRename(s, path, st, signal), signal);
            handle = await lateSafe(this.#reopenPart(s, sftp, part, partThere), signal, closeLate);
          } else {
            const partThere = await lateSafe(this.#call<Stats>(s, (cb) => sftp.lstat(part, cb), sftp).catch(() => undefined), signal);
            if (partThere === undefined || partThere.size < st.confirmed) {
              // The far prefix is gone or shorter than confirmed: start over.
              st.job.drop();
              st.job = hasher.begin(algorithm);
              st.confirmed = 0;
              progress.bytesDone = 0;
              handle = await lateSafe(this.#createPart(s, sftp, part, partMode), signal, closeLate);
            } else {
              handle = await lateSafe(this.#reopenPart(s, sftp, part, partThere), signal, closeLate);
            }
            st.resumed = true;
            resumeChannel.publish({ transport: this.name, path, offset: st.confirmed, attempt });
          }
          const opening = readerP;
          readerP = undefined;
          // Raced against the signal like the far steps: a local source slow
          // to open (a stalled network file system) must not hold an abort.
          // A local file reopened to resume must be the one first opened,
          // unchanged: else the far file would splice two files' bytes.
          reader = await lateSafe(
            opening ??
              openBlockSource(source, st.confirmed, st.source).catch((err: unknown) => {
                throw new SourceFailure(err);
              }),
            signal,
            (r) => void r.close(),
          );
          st.source ??= reader.identity;
          size ??= reader.size;
          if (size !== undefined) progress.bytesTotal = size;
          flusher = await lateSafe(this.#startFlusher(s, sftp, part, size === undefined ? undefined : size - st.confirmed), signal, (f) => void f?.close());
          await this.#sendBlocks(s, sftp, handle, reader, st, progress, signal, flusher?.confirmed);
          await flusher?.close();
          flusher = undefined;
          // A local file written to while it was read (a DAQ file still
          // growing, cut, rewritten) is refused, not landed cut at the size
          // seen at open and reported as sent.
          await reader.checkUnchanged?.().catch((err: unknown) => {
            throw new SourceFailure(err);
          });
          await reader.close();
          reader = undefined;
          if (size !== undefined && st.confirmed !== size) {
            throw new StowageError('EIO', `Cannot put ${this.name}${path}: the source gave ${st.confirmed} bytes, ${size} were announced.`, {
              details: { transport: this.name, path, expected: size, sent: st.confirmed },
            });
          }
          // fsetstat, fsync and close go out together (the server runs them in
          // order); the digest finishes on the worker meanwhile.
          const h = handle;
          const finishing: Promise<unknown>[] = [];
          if (options.mode !== undefined || options.mtimeMs !== undefined) {
            const attrs: { mode?: number; atime?: number; mtime?: number } = {};
            if (options.mode !== undefined) attrs.mode = options.mode;
            if (options.mtimeMs !== undefined) attrs.atime = attrs.mtime = Math.floor(options.mtimeMs / 1000);
            finishing.push(this.#call(s, (cb) => sftp.fsetstat(h, attrs, cb), sftp));
          }
          if (this.#o.fsync && s.ext.fsync) finishing.push(this.#call(s, (cb) => sftp.ext_openssh_fsync(h, cb), sftp));
          handle = undefined;
          finishing.push(this.#call(s, (cb) => sftp.close(h, cb), sftp));
          const settled = await lateSafe(Promise.allSettled(finishing), signal);
          const failedStep = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failedStep !== undefined) throw failedStep.reason;
          st.dna ??= await st.job.digest();
          // Bytes before the break were confirmed by another connection: check
          // the whole far file, where the far host can digest it.
          const far = st.resumed ? await this.#farDigest(s, part, algorithm, st.dna.size, signal) : undefined;
          if (far !== undefined) {
            if (!dnaEqual(far, st.dna)) {
              throw new StowageError('EDIGEST_MISMATCH', `${this.name}${path}: after resuming, the far file's ${algorithm} ${far.dig} differs from the bytes sent (${st.dna.dig}).`, {
                details: { transport: this.name, path, expected: st.dna, actual: far, reason: 'far-after-resume' },
              });
            }
          }
          if (options.expectedDna) assertDna(`${this.name}${path}`, options.expectedDna, st.dna);
          // The name must still hold our bytes: another put of the same path
          // removes a `.part` it finds and writes its own (SFTP shows no
          // inode; the size tells them apart unless both are the same size).
          const named = await lateSafe(this.#call<Stats>(s, (cb) => sftp.lstat(part, cb), sftp).catch(() => undefined), signal);
          if (named === undefined || typeOfMode(named.mode) !== 'file' || named.size !== st.dna.size) {
            st.created = false; // what is there is not ours to remove
            throw new StowageError('ETRANSPORT', `${this.name}${path}: while it was written, ${part} was replaced by another writer of the same path (two puts at once). Nothing was renamed; put it again once the other is done.`, {
              details: { transport: this.name, path, part },
              retryable: false,
            });
          }
          st.renamed = true;
          // An abort while the rename is on its way may still let it land:
          // the file is then whole (fsynced and checked), never partial.
          await lateSafe(this.#renameOn(s, part, path, !options.noOverwrite), signal);
          progress.add(0, 1);
          progress.report(true);
          return st.dna;
        } catch (err) {
          if (handle !== undefined && s !== undefined && ch !== undefined && !s.dead) {
            const h = handle;
            const c = ch.sftp;
            await cleanupWithin(this.#call(s, (cb) => c.close(h, cb), c), signal);
          }
          ch?.release();
          ch = undefined;
          await reader?.close();
          await readerP?.then(
            (r) => r.close(),
            () => {},
          );
          if (signal?.aborted) throw signal.reason;
          // The source's own trouble is the caller's: passed through as it is.
          if (err instanceof SourceFailure) throw err.error;
          if (s === undefined) throw err;
          const lost = s.dead || (isConnectionLoss(err) && !(err instanceof StowageError && !err.retryable));
          if (lost && attempt < this.#o.retries && !this.#closed) {
            await sleep(Math.min(10_000, this.#o.retryDelayMs * 2 ** attempt), signal);
            continue;
          }
          throw await this.#putError(err, s, path);
        } finally {
          if (flusher !== undefined) await cleanupWithin(flusher.close(), signal);
          ch?.release();
        }
      }
    } catch (err) {
      st.job.drop();
      if (st.created) await cleanupWithin(this.#discardPart(part, lastSession), signal);
      throw err;
    }
  }

  async #finishAfterLostRename(s: Session, path: string, st: PutState, signal: AbortSignal | undefined): Promise<Dna> {
    const dna = st.dna!;
    const final = await this.#call<Stats>(s, (cb) => s.sftp.lstat(path, cb)).catch(() => undefined);
    let ok = final !== undefined && final.size === dna.size;
    if (ok) {
      const far = await this.#farDigest(s, path, dna.algorithm, dna.size, signal);
      if (far !== undefined) ok = dnaEqual(far, dna);
    }
    if (!ok) {
      st.renamed = false;
      throw new StowageError('ETRANSPORT', `${this.name}${path}: the connection dropped during the final rename and neither ${path}.part nor a matching ${path} is there.`, {
        details: { transport: this.name, path },
      });
    }
    return dna;
  }

  /** Removes a `.part` left by a failed put, on the live session or a fresh one; never throws. */
  async #discardPart(part: string, s: Session | undefined): Promise<void> {
    try {
      const live = s !== undefined && !s.dead ? s : this.#closed ? undefined : await this.#session$();
      if (live === undefined) return;
      await this.#call(live, (cb) => live.sftp.unlink(part, cb)).catch(() => {});
    } catch {
      // The connection is gone for good; the .part stays and is never a final name.
    }
  }

  /** Maps a failed put to its error: a write FAILURE on a disk with no room left is ENOSPACE. */
  async #putError(err: unknown, s: Session, path: string): Promise<StowageError> {
    return this.#spaceError(err, s, path, 'write');
  }

  /**
   * Maps a failed write, create or mkdir to its error. SFTP (version 3)
   * says FAILURE for a full disk, with no reason: the file system holding
   * the path is looked at, and one with no room left (under 2 MiB free)
   * or no inode left (statvfs@openssh.com's f_favail; a disk of many small
   * files runs out of those first) makes it ENOSPACE. Anything else stays
   * ETRANSPORT, whose message names the usual causes, the account's disk
   * quota among them (SFTP cannot tell it apart).
   */
  async #spaceError(err: unknown, s: Session, path: string, action: string): Promise<StowageError> {
    const e = this.#mapError(err, action, path, s);
    if (e.details['sftpStatus'] !== 'FAILURE' || s.dead) return e;
    const dir = posixDirname(path);
    const fs = await this.#freeSpaceOn(s, dir, undefined).catch(() => undefined);
    if (fs !== undefined && fs.availableBytes < BLOCK_SIZE * 2) {
      return new StowageError('ENOSPACE', `No space left on ${this.name} to ${action} ${path} (${fs.availableBytes} bytes free): free some space there and retry. Nothing was left under ${path}.`, {
        details: { transport: this.name, path, action, availableBytes: fs.availableBytes },
        cause: err,
      });
    }
    const inodes = await this.#freeInodes(s, dir).catch(() => undefined);
    if (inodes === 0) {
      return new StowageError('ENOSPACE', `No space left on ${this.name} to ${action} ${path}: the file system has no free inodes (file entries) left, though ${fs === undefined ? 'it may have' : `it has ${fs.availableBytes} bytes`} free. Remove files there (many small ones use them up) and retry. Nothing was left under ${path}.`, {
        details: { transport: this.name, path, action, availableInodes: 0, ...(fs === undefined ? {} : { availableBytes: fs.availableBytes }) },
        cause: err,
      });
    }
    const room = fs !== undefined && inodes !== undefined ? ` (the disk has ${fs.availableBytes} bytes and ${inodes} inodes free, so not a full disk)` : '';
    return new StowageError('ETRANSPORT', `${e.message} The server gave no reason; a full disk, no free inodes, or the far account's disk quota used up are the usual ones${room}.`, {
      details: e.details,
      cause: err,
    });
  }

  /** Inodes available to the far account on the file system holding `path` (statvfs@openssh.com); undefined when unknown. */
  async #freeInodes(s: Session, path: string): Promise<number | undefined> {
    if (!s.ext.statvfs) return undefined;
    const v = await this.#call<{ f_files: number; f_favail: number }>(s, (cb) => s.sftp.ext_openssh_statvfs(path, cb));
    // A file system that does not count inodes reports none at all.
    return v.f_files > 0 ? Number(v.f_favail) : undefined;
  }

  /**
   * The write pipeline: reads pool blocks from `reader`, sends each as SFTP
   * writes with up to `requests` in flight, and hands each block to the
   * digest once every write in it and before it is acknowledged.
   */
  async #sendBlocks(
    s: Session,
    sftp: SFTPWrapper,
    handle: Buffer,
    reader: BlockSource,
    st: PutState,
    progress: ProgressTracker,
    signal: AbortSignal | undefined,
    onConfirmed: ((bytes: number) => void) | undefined,
  ): Promise<void> {
    const hasher = this.#hasherFor();
    const reqSize = s.maxWrite;
    const maxInflight = requestsFor(this.#o.requests, reqSize);
    const lowWater = Math.max(0, maxInflight - Math.max(1, Math.floor(maxInflight / 4)));
    const queue: Block[] = [];
    let inflight = 0;
    let failed: unknown;
    let wake: (() => void) | undefined;
    let pos = st.confirmed;
    const poke = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const drain = (): void => {
      while (queue.length > 0 && queue[0]!.pending === 0 && queue[0]!.sent) {
        const b = queue.shift()!;
        st.job.update(b.buf, b.len);
        st.confirmed += b.len;
        progress.add(b.len);
      }
      onConfirmed?.(st.confirmed);
    };
    let corked = false;
    const uncork = (): void => {
      corked = false;
      s.sock.uncork();
    };
    const disposeAbort = onAbort(signal, (reason) => {
      failed ??= reason;
      poke();
    });
    // Reads run ahead of the writes (READ_AHEAD blocks), so the write
    // window never drains while a read is pending.
    const ahead: Promise<{ buf: Buffer | undefined; n: number }>[] = [];
    let readDone = false;
    let chain: Promise<unknown> = Promise.resolve();
    let readPos = st.confirmed;
    const readAt = reader.readAt?.bind(reader);
    const readNext = (): void => {
      if (readAt !== undefined) {
        // Positional source: the reads run concurrently, not one after the other.
        const at = readPos;
        readPos += BLOCK_SIZE;
        // Nothing to read past the size seen at open: no block taken, no read.
        if (reader.size !== undefined && at >= reader.size) {
          ahead.push(Promise.resolve({ buf: undefined, n: 0 }));
          return;
        }
        const p = hasher.acquire(signal, reader.size !== undefined ? reader.size - at : BLOCK_SIZE).then(async (buf) => {
          try {
            return { buf, n: readDone ? 0 : await readAt(buf, buf.length, at) };
          } catch (err) {
            hasher.release(buf);
            throw new SourceFailure(err);
          }
        });
        p.catch(() => {});
        ahead.push(p);
        return;
      }
      const p = chain.then(async () => {
        const buf = await hasher.acquire(signal);
        try {
          return { buf, n: readDone ? 0 : await reader.read(buf, buf.length) };
        } catch (err) {
          hasher.release(buf);
          throw new SourceFailure(err);
        }
      });
      p.then(
        (r) => {
          if (r.n < r.buf.length) readDone = true;
        },
        () => {},
      );
      chain = p.catch(() => {});
      ahead.push(p);
    };
    // A source that stalls (a network stream, a database's rows) must not
    // make the put deaf to its signal: the next read is raced against it,
    // and left to settle (and give its block back) on its own.
    let stopListening = (): void => {};
    const aborted =
      signal === undefined
        ? undefined
        : new Promise<typeof ABORTED>((resolve) => {
            stopListening = onAbort(signal, () => resolve(ABORTED));
          });
    try {
      for (let i = 0; i < READ_AHEAD; i++) readNext();
      for (;;) {
        if (failed !== undefined) break;
        const next = ahead.shift()!;
        const got = aborted === undefined ? await next : await Promise.race([next, aborted]);
        if (got === ABORTED) {
          failed ??= signal!.reason;
          next.then(
            (r) => {
              if (r.buf !== undefined) hasher.release(r.buf);
            },
            () => {},
          );
          break;
        }
        const { buf, n } = got;
        readNext();
        if (buf === undefined || n === 0) {
          if (buf !== undefined) hasher.release(buf);
          break;
        }
        const b: Block = { buf, len: n, pending: 0, sent: false };
        queue.push(b);
        for (let off = 0; off < n && failed === undefined; off += reqSize) {
          if (inflight >= maxInflight) {
            // Refill in batches: resume only when a few slots are free, so the
            // next requests leave together.
            while (inflight > lowWater && failed === undefined) await new Promise<void>((r) => (wake = r));
          }
          if (failed !== undefined) break;
          // Writes issued in one go leave in one writev instead of a syscall per 32 KiB packet.
          if (!corked) {
            corked = true;
            s.sock.cork();
            process.nextTick(uncork);
          }
          if (s.dead) {
            failed = s.deadReason ?? new Error('Not connected');
            break;
          }
          const len = Math.min(reqSize, n - off);
          b.pending += 1;
          inflight += 1;
          requestSent(s);
          try {
            // Straight from the block into the channel packets (sftp-write.ts).
            writeNoCopy(sftp, handle, buf, off, len, pos + off, (err) => {
              inflight -= 1;
              s.outstanding -= 1;
              s.lastReply = Date.now();
              b.pending -= 1;
              if (err) failed ??= err;
              else if (failed === undefined) drain();
              poke();
            });
          } catch (err) {
            b.pending -= 1;
            inflight -= 1;
            s.outstanding -= 1;
            failed ??= err;
          }
        }
        b.sent = true;
        if (failed === undefined) drain();
        pos += n;
        if (n < buf.length) break;
      }
      // Aborted: the writes in flight are not waited for (on a stalled link
      // they would hold the abort up to idleTimeoutMs); ssh2 has copied them.
      while (inflight > 0 && !signal?.aborted) await new Promise<void>((r) => (wake = r));
      if (failed === undefined) drain();
    } finally {
      disposeAbort();
      stopListening();
      for (const b of queue) hasher.release(b.buf);
      queue.length = 0;
      // Blocks read ahead and not sent go back to the pool.
      readDone = true;
      for (const p of ahead) {
        const settled = p.then(
          (r) => {
            if (r.buf !== undefined) hasher.release(r.buf);
          },
          () => {},
        );
        // Aborted: a stalled read is not waited for.
        if (!signal?.aborted) await settled;
      }
    }
    if (failed !== undefined) {
      if (signal?.aborted) throw signal.reason;
      throw failed;
    }
  }

  /**
   * For a large put: a second handle on the `.part`, on another SFTP
   * channel, fsynced every {@link FLUSH_EVERY} confirmed bytes, so the far
   * disk writes back while the transfer goes on and the final fsync (before
   * the rename) has little left to do. Without it, the final fsync of a
   * 1 GiB file takes ~1 s here, a fifth of the transfer.
   */
  async #startFlusher(s: Session, own: SFTPWrapper, part: string, size: number | undefined): Promise<Flusher | undefined> {
    if (!this.#o.fsync || !s.ext.fsync || size === undefined || size < 2 * FLUSH_EVERY) return undefined;
    const ch = await this.#channel(s);
    if (ch.sftp === own) {
      ch.release();
      return undefined;
    }
    let handle: Buffer;
    try {
      handle = await this.#call<Buffer>(s, (cb) => ch.sftp.open(part, 'r', cb), ch.sftp);
    } catch {
      ch.release();
      return undefined;
    }
    let inFlight: Promise<unknown> | undefined;
    let next = FLUSH_EVERY;
    return {
      confirmed: (bytes) => {
        if (bytes < next || inFlight !== undefined || s.dead) return;
        next = bytes + FLUSH_EVERY;
        inFlight = this.#call(s, (cb) => ch.sftp.ext_openssh_fsync(handle, cb), ch.sftp)
          .catch(() => {})
          .finally(() => {
            inFlight = undefined;
          });
      },
      close: async () => {
        await inFlight;
        if (!s.dead) await this.#call(s, (cb) => ch.sftp.close(handle, cb), ch.sftp).catch(() => {});
        ch.release();
      },
    };
  }

  // -------------------------------------------------------------------------
  // get and read streams

  /** {@inheritDoc Transport.get} */
  async get(path: string, localPath: string, options: GetOptions = {}): Promise<Dna> {
    checkOptionKeys('SshTransport.get', options, GET_OPTIONS);
    const { signal } = options;
    const algorithm = checkOneOf('SshTransport.get', 'algorithm', options.algorithm ?? 'md5', DNA_ALGORITHMS);
    throwIfAborted(signal);
    const st = await this.stat(path, signal ? { signal } : {});
    if (st.type !== 'file') throw new StowageError('ETRANSPORT', `Cannot get ${this.name}${path}: it is not a regular file.`, { details: { transport: this.name, path } });
    try {
      await mkdirRecursive(localDirname(localPath));
    } catch (err) {
      throw fromFsError(err, 'create directory', localDirname(localPath));
    }
    const file = await AtomicFile.open(localPath);
    try {
      const tap = DnaDigest.tap({ algorithm });
      const progress = new ProgressTracker('download', options.onProgress, { bytesTotal: st.size });
      const input = this.createReadStream(path, signal ? { signal } : {});
      const count = new Transform({
        highWaterMark: 1 << 20,
        transform(chunk: Buffer, _enc, cb) {
          progress.add(chunk.length);
          cb(null, chunk);
        },
      });
      await pipeline(input, count, tap, file.writable(), signal ? { signal } : {});
      const dna = await tap.dna;
      // The read stops at the size seen when the file was opened: a file
      // that grew meanwhile (still being written) would otherwise be kept
      // cut. It is looked at again once read; another size or mtime fails.
      const after = dna.size === st.size ? await this.stat(path, signal ? { signal } : {}) : undefined;
      if (dna.size !== st.size || after === undefined || after.size !== st.size || after.mtimeMs !== st.mtimeMs) {
        const now = after === undefined ? `${dna.size} read` : `${after.size} bytes, modified ${new Date(after.mtimeMs).toISOString()}, once read`;
        throw new StowageError('EIO', `Cannot get ${this.name}${path}: it changed while it was read (${st.size} bytes when it was opened, ${now}). Nothing was written under ${localPath}; get it again once it is complete.`, {
          details: { transport: this.name, path, expected: st.size, read: dna.size, ...(after === undefined ? {} : { now: { size: after.size, mtimeMs: after.mtimeMs } }) },
          // Still being written: a later try gets it whole.
          retryable: true,
        });
      }
      if (options.expectedDna) assertDna(`${this.name}${path}`, options.expectedDna, dna);
      await file.handle.utimes(new Date(st.mtimeMs), new Date(st.mtimeMs));
      await file.commit(dna.size);
      progress.add(0, 1);
      progress.report(true);
      return dna;
    } catch (err) {
      await file.discard();
      if (signal?.aborted) throw signal.reason;
      throw fromFsError(err, 'write', localPath);
    }
  }

  /**
   * A readable stream of the far file from `start`.
   *
   * Keeps `requests` SFTP reads in flight and delivers them in order. A
   * dropped connection is resumed from the next undelivered byte, once the
   * file reopened is found to be the one first opened (same size and mtime,
   * same last 64 KiB delivered); a file replaced or changed meanwhile
   * errors the stream with a retryable EIO. SFTP tells no inode and only
   * whole-second mtimes: a replacement of the same size, mtime second and
   * bytes around the resume offset cannot be told apart.
   */
  createReadStream(path: string, options: OpOptions & { start?: number } = {}): Readable {
    checkFarPath('SshTransport.createReadStream', path);
    const start = options.start ?? 0;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new StowageError('EBAD_CONFIG', 'SshTransport.createReadStream: option "start" must be a non-negative integer.', { details: { option: 'start' } });
    }
    return new SftpReadStream(this.#readOps(), path, start, options.signal);
  }

  /** The operations the read stream needs, bound to this transport. */
  #readOps(): ReadOps {
    return {
      open: (path, signal) =>
        this.#retrying('read', path, signal, async (s) => {
          const handle = await this.#call<Buffer>(s, (cb) => s.sftp.open(path, 'r', cb));
          try {
            const a = await this.#call<Stats>(s, (cb) => s.sftp.fstat(handle, cb));
            if (typeOfMode(a.mode) === 'dir') throw new StowageError('ETRANSPORT', `Cannot read ${this.name}${path}: it is a directory.`, { details: { transport: this.name, path } });
            // Aborted while the open was on its way (the caller has gone on
            // without it): the handle is closed here, or nobody would.
            throwIfAborted(signal);
            return { s, handle, size: a.size, mtime: a.mtime };
          } catch (err) {
            await this.#call(s, (cb) => s.sftp.close(handle, cb)).catch(() => {});
            throw err;
          }
        }),
      read: (s, handle, buf, len, position, cb) => {
        if (s.dead || (s.sftp as unknown as SftpInternals).outgoing?.state !== 'open') {
          process.nextTick(cb, s.deadReason ?? new Error('Not connected'), 0);
          return;
        }
        requestSent(s);
        try {
          s.sftp.read(handle, buf, 0, len, position, (err, n) => {
            s.outstanding -= 1;
            s.lastReply = Date.now();
            cb(err, n ?? 0);
          });
        } catch (err) {
          s.outstanding -= 1;
          process.nextTick(cb, err, 0);
        }
      },
      close: (s, handle) => {
        if (!s.dead) this.#call(s, (cb) => s.sftp.close(handle, cb)).catch(() => {});
      },
      mapError: (err, path, s) => (s === undefined ? err : this.#mapError(err, 'read', path, s)),
      name: this.name,
      requests: this.#o.requests,
      retries: this.#o.retries,
      retryDelayMs: this.#o.retryDelayMs,
    };
  }

  // -------------------------------------------------------------------------
  // Locks on the far tree

  /**
   * The file operations of a lock on the far tree, so a `LockDir` can be
   * planted there (see `Transport.lockFs`).
   *
   * Over SFTP: `createFile` opens with `SSH_FXF_CREAT | SSH_FXF_EXCL`,
   * writes, fsyncs (fsync@openssh.com) and closes; `rename` checks the
   * target is absent, then uses posix-rename@openssh.com (one rename(2)).
   * Mtimes have whole-second resolution. Operations that are not idempotent
   * (mkdir, createFile, rename) are never retried after a lost connection.
   *
   * @example
   * ```ts
   * const lock = new LockDir('/backups/svn', { fs: remote.lockFs() });
   * await lock.withLock(async () => { ... });
   * ```
   */
  lockFs(): LockFs {
    return Object.freeze({
      mkdir: (path: string) => this.mkdir(path),
      createFile: (path: string, data: Uint8Array) => this.#createExclusive(path, data),
      readFile: (path: string) => this.#readSmall(path),
      rename: (from: string, to: string) => this.#renameNoReplace(from, to),
      remove: (path: string) => this.remove(path, { recursive: true, force: true }),
      stat: async (path: string) => ({ mtimeMs: (await this.stat(path)).mtimeMs }),
      setMtime: (path: string, mtimeMs: number) => this.setMtime(path, mtimeMs),
    });
  }

  async #createExclusive(path: string, data: Uint8Array): Promise<void> {
    checkFarPath('SshTransport.lockFs().createFile', path);
    const s = await this.#session$();
    let handle: Buffer;
    try {
      handle = await this.#call<Buffer>(s, (cb) => s.sftp.open(path, 'wx', { mode: 0o644 }, cb));
    } catch (err) {
      const e = this.#mapError(err, 'create', path, s);
      if (e.details['sftpStatus'] === 'FAILURE' && !s.dead) {
        const there = await this.#call<Stats>(s, (cb) => s.sftp.lstat(path, cb)).catch(() => undefined);
        if (there !== undefined) throw new StowageError('EEXIST', `Cannot create ${this.name}${path}: it already exists.`, { details: { transport: this.name, path }, cause: err });
        throw await this.#spaceError(err, s, path, 'create');
      }
      throw e;
    }
    try {
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      for (let off = 0; off < buf.length; off += s.maxWrite) {
        const len = Math.min(s.maxWrite, buf.length - off);
        await this.#call(s, (cb) => s.sftp.write(handle, buf, off, len, off, cb));
      }
      if (s.ext.fsync) await this.#call(s, (cb) => s.sftp.ext_openssh_fsync(handle, cb));
      await this.#call(s, (cb) => s.sftp.close(handle, cb));
    } catch (err) {
      const e = await this.#putError(err, s, path);
      if (!s.dead) {
        await this.#call(s, (cb) => s.sftp.close(handle, cb)).catch(() => {});
        await this.#call(s, (cb) => s.sftp.unlink(path, cb)).catch(() => {});
      }
      throw e;
    }
  }

  async #readSmall(path: string): Promise<Uint8Array> {
    return this.#retrying('read', path, undefined, async (s) => {
      const handle = await this.#call<Buffer>(s, (cb) => s.sftp.open(path, 'r', cb));
      try {
        const parts: Buffer[] = [];
        let pos = 0;
        for (;;) {
          const buf = Buffer.allocUnsafe(s.maxRead);
          const n = await this.#call<number>(s, (cb) => s.sftp.read(handle, buf, 0, buf.length, pos, (err, nb) => cb(err, nb)));
          if (!n) break;
          parts.push(buf.subarray(0, n));
          pos += n;
          if (pos > 16 << 20) throw new StowageError('ETRANSPORT', `Cannot read ${this.name}${path}: larger than 16 MiB, not a lock file.`, { details: { transport: this.name, path } });
        }
        return Buffer.concat(parts);
      } finally {
        await this.#call(s, (cb) => s.sftp.close(handle, cb)).catch(() => {});
      }
    });
  }

  async #renameNoReplace(from: string, to: string): Promise<void> {
    checkFarPath('SshTransport.lockFs().rename', from, 'from');
    checkFarPath('SshTransport.lockFs().rename', to, 'to');
    const s = await this.#session$();
    try {
      const there = await this.#call<Stats>(s, (cb) => s.sftp.lstat(to, cb)).catch((err: unknown) => {
        const e = this.#mapError(err, 'stat', to, s);
        if (e.code === 'ENOT_FOUND') return undefined;
        throw e;
      });
      if (there !== undefined) throw new StowageError('EEXIST', `Cannot rename ${this.name}${from} to ${to}: the target already exists.`, { details: { transport: this.name, path: to, action: 'rename' } });
      if (s.ext.posixRename) await this.#call(s, (cb) => s.sftp.ext_openssh_rename(from, to, cb));
      else await this.#call(s, (cb) => s.sftp.rename(from, to, cb));
    } catch (err) {
      throw this.#mapError(err, 'rename', from, s);
    }
  }

  // -------------------------------------------------------------------------

  /** Closes the connection and stops the digest worker. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    // A connection still being set up is cut: nothing waits for its timeout.
    for (const c of this.#connecting) {
      c.client.destroy();
      c.sock.destroy();
    }
    const pending = this.#session;
    this.#session = undefined;
    const live = this.#live ?? (await pending?.catch(() => undefined));
    this.#live = undefined;
    if (live !== undefined && !live.dead) {
      live.dead = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          live.client.destroy();
          resolve();
        }, 2000);
        t.unref();
        live.client.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        live.client.end();
      });
    }
    await this.#hasher?.close();
    this.#hasher = undefined;
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

}

/** Wraps an error of the put's source, so it is not taken for a far-side one. */
class SourceFailure {
  constructor(readonly error: unknown) {}
}

interface Flusher {
  confirmed(bytes: number): void;
  close(): Promise<void>;
}

interface Block {
  buf: Buffer;
  len: number;
  pending: number;
  sent: boolean;
}

interface PutState {
  job: HashJob;
  /** Bytes acknowledged by the server and digested, from offset 0. */
  confirmed: number;
  created: boolean;
  renamed: boolean;
  resumed: boolean;
  dna?: Dna;
  /** A local file source as first opened: a resume must find it unchanged. */
  source?: SourceIdentity;
}

/**
 * What {@link SftpReadStream} needs of its transport.
 *
 * @internal
 */
export interface ReadOps {
  /** Opens the file; `mtime` (whole seconds, as SFTP gives it) from the open handle's fstat. */
  open(path: string, signal: AbortSignal | undefined): Promise<{ s: Session; handle: Buffer; size: number; mtime?: number }>;
  read(s: Session, handle: Buffer, buf: Buffer, len: number, position: number, cb: (err: unknown, n: number) => void): void;
  close(s: Session, handle: Buffer): void;
  mapError(err: unknown, path: string, s: Session | undefined): unknown;
  /** The transport's name, for messages (`ssh://user@host:port`). */
  readonly name?: string;
  readonly requests: number | undefined;
  readonly retries: number;
  readonly retryDelayMs: number;
}

interface ReadReq {
  pos: number;
  len: number;
  buf: Buffer;
  done: boolean;
  n: number;
  err: unknown;
  gen: number;
}

/** Bytes delivered last that a stream keeps to compare when it reopens its file after a drop. */
const RESUME_CHECK_BYTES = 64 * 1024;

/**
 * A Readable over a remote file with many SFTP reads in flight, delivered in
 * order; resumes on a new connection after a drop.
 *
 * A resume reopens the file by name, so it checks the file is still the one
 * first opened: the same size and mtime, and the same bytes in the last
 * 64 KiB delivered before the drop (read again). Otherwise the stream
 * errors with a retryable EIO rather than go on with another file's bytes.
 * SFTP (version 3) tells neither inode nor sub-second mtime: a replacement
 * with the same size, the same mtime second and the same bytes around the
 * resume offset cannot be told apart.
 *
 * Requests are as large as the server's limits allow; a server that answers
 * less than asked before the end of the file (OpenSSH before 8.6 sends at
 * most 64 KiB per READ and no limits) gets requests of what it answered from
 * then on, and correspondingly more of them in flight, so that the bytes in
 * flight stay what they would be.
 *
 * @internal
 */
export class SftpReadStream extends Readable {
  readonly #t: ReadOps;
  readonly #path: string;
  readonly #signal: AbortSignal | undefined;
  #s: Session | undefined;
  #handle: Buffer | undefined;
  #size = 0;
  /** Bytes per request the server is seen to answer, when less than its limits say. */
  #answered: number | undefined;
  /** The last short answer before the end: a size seen twice becomes {@link #answered}. */
  #shortAnswer: number | undefined;
  #next: number;
  #delivered: number;
  readonly #q: ReadReq[] = [];
  #gen = 0;
  #eof = false;
  #reopening = false;
  #attempts = 0;
  #disposeAbort: () => void = () => {};
  /** The file at the first open: a reopen after a drop must find the same. */
  #first: { size: number; mtime: number | undefined } | undefined;
  /** The last chunks delivered, at least {@link RESUME_CHECK_BYTES} of them when there are. */
  readonly #tail: Buffer[] = [];
  #tailBytes = 0;

  constructor(t: ReadOps, path: string, start: number, signal: AbortSignal | undefined) {
    super({ highWaterMark: 4 << 20 });
    this.#t = t;
    this.#path = path;
    this.#next = start;
    this.#delivered = start;
    this.#signal = signal;
    if (signal !== undefined) {
      this.#disposeAbort = onAbort(signal, (reason) => this.destroy(reason as Error));
    }
  }

  override _construct(callback: (error?: Error | null) => void): void {
    this.#open()
      .then(() => callback())
      .catch((err: unknown) => callback(err as Error));
  }

  async #open(): Promise<void> {
    const { s, handle, size, mtime } = await this.#t.open(this.#path, this.#signal);
    if (this.#first === undefined) {
      this.#first = { size, mtime };
    } else {
      try {
        await this.#checkSameFile(s, handle, size, mtime);
      } catch (err) {
        this.#t.close(s, handle);
        throw err;
      }
    }
    this.#s = s;
    this.#handle = handle;
    this.#size = size;
    this.#next = this.#delivered;
    this.#gen += 1;
  }

  /**
   * A reopened file must be the one first opened: same size and mtime, and
   * the same last bytes delivered (read again); else a retryable EIO.
   */
  async #checkSameFile(s: Session, handle: Buffer, size: number, mtime: number | undefined): Promise<void> {
    const first = this.#first!;
    const where = `${this.#t.name ?? ''}${this.#path}`;
    const changed = (now: string): StowageError =>
      new StowageError(
        'EIO',
        `Cannot read ${where}: it was replaced or changed while it was read (${first.size} bytes${first.mtime === undefined ? '' : `, modified ${new Date(first.mtime * 1000).toISOString()}`} when first opened; ${now} when reopened after the connection dropped at byte ${this.#delivered}). Nothing more is read from it; read it again once nothing writes to it.`,
        { details: { path: this.#path, reason: 'far file changed', offset: this.#delivered, before: first, after: { size, mtime } }, retryable: true },
      );
    if (size !== first.size || (first.mtime !== undefined && mtime !== undefined && mtime !== first.mtime)) {
      throw changed(`${size} bytes${mtime === undefined ? '' : `, modified ${new Date(mtime * 1000).toISOString()}`}`);
    }
    const window = Math.min(RESUME_CHECK_BYTES, this.#tailBytes);
    if (window === 0) return;
    const expected = Buffer.concat(this.#tail).subarray(this.#tailBytes - window);
    const at = this.#delivered - window;
    const got = Buffer.allocUnsafe(window);
    let n = 0;
    while (n < window) {
      const k = await new Promise<number>((resolve, reject) => {
        this.#t.read(s, handle, got.subarray(n), window - n, at + n, (err, r) => {
          if (err !== undefined && err !== null) {
            if ((err as { code?: unknown }).code === 1) resolve(0); // EOF
            else reject(this.#t.mapError(err, this.#path, s) as Error);
          } else resolve(r);
        });
      });
      if (k === 0) break;
      n += k;
    }
    if (n !== window || !got.equals(expected)) throw changed(`other bytes before byte ${this.#delivered}`);
  }

  override _read(): void {
    this.#fill();
  }

  #fill(): void {
    const s = this.#s;
    const handle = this.#handle;
    if (s === undefined || handle === undefined || this.#reopening || this.destroyed) return;
    const chunk = Math.min(this.#answered ?? s.maxRead, s.maxRead);
    const requests = requestsFor(this.#t.requests, chunk);
    while (this.#q.length < requests && this.#next < this.#size) {
      const len = Math.min(chunk, this.#size - this.#next);
      const req: ReadReq = { pos: this.#next, len, buf: Buffer.allocUnsafe(len), done: false, n: 0, err: undefined, gen: this.#gen };
      this.#next += len;
      this.#q.push(req);
      this.#issue(s, handle, req);
    }
    if (this.#q.length === 0 && this.#next >= this.#size && !this.#eof) {
      this.#eof = true;
      this.push(null);
    }
  }

  #issue(s: Session, handle: Buffer, req: ReadReq): void {
    this.#t.read(s, handle, req.buf, req.len, req.pos, (err, n) => {
      if (req.gen !== this.#gen) return;
      req.done = true;
      req.err = err;
      req.n = n;
      this.#deliver();
    });
  }

  #deliver(): void {
    let more = true;
    while (this.#q.length > 0 && this.#q[0]!.done && !this.destroyed) {
      const head = this.#q[0]!;
      if (head.err !== undefined && head.err !== null) {
        const code = (head.err as { code?: unknown }).code;
        if (code === 1) {
          // EOF before the size seen at open: the file shrank; stop here.
          this.#q.length = 0;
          this.#size = head.pos;
          break;
        }
        this.#recover(head.err);
        return;
      }
      this.#q.shift();
      if (head.n === 0) {
        this.#q.length = 0;
        this.#size = head.pos;
        break;
      }
      if (head.n < head.len) {
        // A server that answers whole KiB short of the request, before the
        // end, caps its reads (64 KiB for OpenSSH before 8.6): ask for that much.
        // A lone short answer (a FUSE file system...) changes nothing.
        if (head.pos + head.n < this.#size && head.n >= 16 * 1024 && head.n % 1024 === 0 && head.n < (this.#answered ?? Infinity)) {
          if (this.#shortAnswer === head.n) this.#answered = head.n;
          this.#shortAnswer = head.n;
        }
        // Short read: ask for the rest before anything after it.
        const rest: ReadReq = { pos: head.pos + head.n, len: head.len - head.n, buf: Buffer.allocUnsafe(head.len - head.n), done: false, n: 0, err: undefined, gen: this.#gen };
        this.#q.unshift(rest);
        this.#issue(this.#s!, this.#handle!, rest);
      }
      this.#delivered = head.pos + head.n;
      this.#attempts = 0;
      const chunk = head.n === head.buf.length ? head.buf : head.buf.subarray(0, head.n);
      // Kept (not copied) to compare with the file if it has to be reopened.
      this.#tail.push(chunk);
      this.#tailBytes += chunk.length;
      while (this.#tail.length > 1 && this.#tailBytes - this.#tail[0]!.length >= RESUME_CHECK_BYTES) this.#tailBytes -= this.#tail.shift()!.length;
      more = this.push(chunk);
    }
    if (more) this.#fill();
  }

  #recover(err: unknown): void {
    const s = this.#s;
    const mapped = this.#t.mapError(err, this.#path, s);
    const { retries, retryDelayMs } = this.#t;
    const lost = s?.dead === true || isConnectionLoss(mapped);
    if (!lost || this.#attempts >= retries) {
      this.destroy(mapped as Error);
      return;
    }
    this.#attempts += 1;
    this.#reopening = true;
    this.#gen += 1;
    this.#q.length = 0;
    sleep(Math.min(10_000, retryDelayMs * 2 ** (this.#attempts - 1)), this.#signal)
      .then(() => this.#open())
      .then(
        () => {
          this.#reopening = false;
          this.#fill();
        },
        (e: unknown) => this.destroy(e as Error),
      );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#disposeAbort();
    this.#gen += 1;
    this.#q.length = 0;
    if (this.#s !== undefined && this.#handle !== undefined) this.#t.close(this.#s, this.#handle);
    this.#handle = undefined;
    callback(error);
  }
}
