/**
 * `LockDir`: a lock that is a directory, safe between processes and hosts.
 *
 * Why it works this way
 * ---------------------
 * The lock is `PARENT/LOCKED/owner.json`. Readers of a tree (DnaDigest.scan,
 * a remote mirror) skip a tree that holds `LOCKED`, so the lock also marks
 * "being written". Only two operations are relied on to be atomic, on a
 * local disk and over SFTP alike: `mkdir` of one directory and the
 * exclusive creation (O_EXCL) of `owner.json`; plus `rename`.
 *
 * - **Who holds the lock** is whoever exclusively created the `owner.json`
 *   that is in `LOCKED/` now, identified by its random `token`. An
 *   `owner.json` is created only where none exists, so there is at most one.
 *   It is never rewritten: the heartbeat only sets its mtime.
 * - **Acquire**: `mkdir LOCKED`, then create `owner.json`. If the creation
 *   fails with EEXIST, someone else got in first (we were paused long enough
 *   for them to take over our fresh directory): we lost, and try again.
 * - **The window between mkdir and owner.json**: a contender that finds
 *   `LOCKED/` without `owner.json` (or with one it cannot parse yet) treats
 *   it as held. Only when that directory (or file) is older than `staleMs`
 *   is it stale. `owner.json` is read *before* the directory is stat'ed:
 *   every rename in `LOCKED/` updates the directory's mtime, so an absence
 *   caused by a takeover or release in progress always looks fresh.
 * - **Stale**: the owner's pid is gone (`kill(pid, 0)` fails with ESRCH)
 *   where its pids are ours, or the heartbeat (mtime of `owner.json`) is
 *   older than `staleMs`, whatever the host. Where pids are ours: the owner
 *   file records `machine` (on Linux the kernel's boot id and the pid
 *   namespace), and the pid is tested only when that equals ours, whatever
 *   the host names say. Containers often share one (`localhost`, or the
 *   host's own with host networking) while their pids are private: a live
 *   owner in another container must not look dead. An owner file without
 *   `machine` (older writers) is tested when its host name (`os.hostname()`)
 *   is ours. Otherwise (another host, a remote tree) only the heartbeat
 *   counts, so the clocks of the machines taking the lock must agree to
 *   well within `staleMs` (the heartbeat is always set from the holder's
 *   clock, from the moment the lock is taken; the clock of the host that
 *   holds the folder does not matter).
 * - **Takeover** (rename-then-check): the stale `owner.json` is renamed to a
 *   unique name `owner.json.stale-<our token>`. Rename is atomic, so of
 *   several contenders that judged the same owner stale, one moves it. The
 *   mover then re-reads what it moved: only if it is byte-for-byte the file
 *   it judged, and still stale by its own mtime, is it discarded and a new
 *   `owner.json` created (exclusively: a contender that lost the race gets
 *   EEXIST). If it is someone else's (the stale owner was already replaced
 *   by a winner, or refreshed its heartbeat), it is renamed straight back.
 *   While it is away, `owner.json` is missing from a directory whose mtime
 *   the rename just refreshed, so nobody else creates one: the restore
 *   cannot collide, and the owner's own checks retry over a short grace
 *   period (about 370 ms) before they call the lock lost.
 * - **Release** is the same dance on our own file: rename `owner.json` to
 *   `owner.json.released-<token>`, check it is ours (if not, we had been
 *   taken over: put it back, ELOCK_LOST), then rename `LOCKED` aside and
 *   remove it. Releasing never deletes a path it has not just checked.
 * - **Lost**: while held, a heartbeat timer (unref'd) re-reads `owner.json`
 *   and refreshes its mtime. If the token changed, the file stays missing,
 *   or the refresh keeps failing (or hangs: a watchdog does not wait for
 *   it) for `staleMs / 2` (monotonic clock), the lock's `signal`
 *   aborts with an ELOCK_LOST StowageError. A holder that was paused for
 *   longer than `staleMs` has lost its lease; the signal is how it learns.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { posix } from 'node:path';
import { LOCK_DIR_NAME } from '../dna/dna-scan.js';
import { StowageError, isStowageError } from '../errors.js';
import { anySignal, sleep, throwIfAborted } from '../util/abort.js';
import { checkInt, checkOptionKeys } from '../util/options.js';
import { LOCK_FS_METHODS, localLockFs, type LockFs } from './lock-fs.js';

/** Name of the owner file inside the lock directory. */
export const LOCK_OWNER_FILE = 'owner.json';

/**
 * Pauses before each re-read when our owner file is missing: a contender
 * may have moved it for a moment to check it (a takeover that found a fresh
 * owner puts it straight back). The lock is lost only if it stays missing.
 */
const CONFIRM_DELAYS_MS = [0, 20, 50, 100, 200] as const;

/** Immediate re-tries (no sleep) when the lock changed under an attempt. */
const QUICK_RETRIES = 3;

const takeoverChannel = channel('stowage:lock:takeover');
const lostChannel = channel('stowage:lock:lost');

/** The content of `LOCKED/owner.json`. */
export interface LockOwner {
  /** Host name of the owner (`os.hostname()`). */
  readonly host: string;
  /** Process id of the owner on its host. */
  readonly pid: number;
  /** What the lock is held for, free text. */
  readonly purpose: string;
  /** When the lock was acquired, ISO 8601. */
  readonly since: string;
  /** Random token identifying this holding of the lock. */
  readonly token: string;
  /**
   * Where `pid` means something: on Linux the kernel's boot id and the pid
   * namespace of the owner (`<boot id>/pid:[<inode>]`). The pid test is
   * made only when it equals ours; absent from owner files written by
   * older versions and on systems that do not expose them.
   */
  readonly machine?: string;
  /**
   * The owner's `staleMs`: its heartbeat is judged stale only past the
   * longer of this and the judge's own, so that a contender configured
   * with a shorter one never takes over a lock whose owner beats at its
   * own, slower pace (up to a day). Absent from owner files written by
   * older versions.
   */
  readonly staleMs?: number;
}

/** Options of the {@link LockDir} constructor. */
export interface LockDirOptions {
  /** Name of the lock directory inside the parent (default `LOCKED`). */
  name?: string;
  /** A lock whose heartbeat is older than this is stale, in ms (default 60 000; at least 3). */
  staleMs?: number;
  /** How often the heartbeat refreshes the owner file while held, in ms (default `staleMs / 4`; at most `staleMs / 3`). */
  heartbeatMs?: number;
  /** Free text stored in the owner file, for whoever finds the lock (default empty). */
  purpose?: string;
  /** File operations, to plant the lock on a remote tree (default {@link localLockFs}). */
  fs?: LockFs;
  /**
   * A transport whose tree holds the lock (e.g. an SshTransport, so readers
   * on the far side skip trees under `LOCKED`). Same as
   * `fs: transport.lockFs()`; give `fs` or `transport`, not both.
   */
  transport?: LockTransport;
}

/**
 * What LockDir needs of a Transport: its lock operations. Every Transport of
 * stowage (LocalTransport, SshTransport) provides `lockFs()`.
 */
export interface LockTransport {
  /** A name for messages. */
  readonly name: string;
  /** The lock file operations on this transport's tree. */
  lockFs?(): LockFs;
}

/** Options of {@link LockDir.acquire} and {@link LockDir.withLock}. */
export interface LockAcquireOptions {
  /** How long to wait for a live owner to release, in ms; `Infinity` waits for ever (default 0: try once). */
  waitMs?: number;
  /** Pause between attempts while waiting, in ms, jittered by ±50 % (default 100). */
  pollMs?: number;
  /** Cancels the wait; the promise rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** Options of {@link LockDir.inspect}. */
export interface LockInspectOptions {
  /** Name of the lock directory (default `LOCKED`). */
  name?: string;
  /** Staleness threshold in ms (default 60 000). */
  staleMs?: number;
  /** File operations (default {@link localLockFs}). */
  fs?: LockFs;
  /** A transport whose tree holds the lock; see {@link LockDirOptions.transport}. */
  transport?: LockTransport;
}

/** Why a lock is stale. */
export type LockStaleReason =
  /** The owner ran on this machine, in our pid namespace, and its process is gone. */
  | 'owner-dead'
  /** The owner file was not refreshed within `staleMs`. */
  | 'heartbeat-expired'
  /** The lock directory has had no owner file for longer than `staleMs`. */
  | 'owner-file-missing'
  /** The owner file has been unreadable for longer than `staleMs`. */
  | 'owner-file-unreadable';

/** What {@link LockDir.inspect} finds. */
export interface LockInspection {
  /** The lock directory's path. */
  readonly path: string;
  /** Whether the lock directory exists. */
  readonly locked: boolean;
  /** The owner, when the owner file exists and is readable. */
  readonly owner?: LockOwner;
  /** Whether the lock may be taken over. */
  readonly stale: boolean;
  /** Why it is stale. */
  readonly reason?: LockStaleReason;
  /** Milliseconds since the last sign of life (the heartbeat, else the directory's mtime); 0 when not locked. */
  readonly ageMs: number;
}

type Observation =
  | { readonly kind: 'free' }
  | { readonly kind: 'owner'; readonly raw: Uint8Array; readonly owner: LockOwner; readonly mtimeMs: number }
  | { readonly kind: 'unreadable'; readonly raw: Uint8Array; readonly mtimeMs: number }
  | { readonly kind: 'no-owner'; readonly mtimeMs: number };

interface Judged {
  readonly locked: boolean;
  readonly stale: boolean;
  readonly reason?: LockStaleReason;
  readonly ageMs: number;
  readonly owner?: LockOwner;
}

type Attempt = { readonly held: true } | { readonly held: false; readonly judged: Judged; readonly retryNow: boolean };

const CTOR_OPTIONS = ['name', 'staleMs', 'heartbeatMs', 'purpose', 'fs', 'transport'] as const;
const ACQUIRE_OPTIONS = ['waitMs', 'pollMs', 'signal'] as const;
const INSPECT_OPTIONS = ['name', 'staleMs', 'fs', 'transport'] as const;
const DEFAULT_STALE_MS = 60_000;
const DEFAULT_POLL_MS = 100;

function badConfig(where: string, option: string, message: string, value: unknown): StowageError {
  return new StowageError('EBAD_CONFIG', `${where}: ${message}`, { details: { where, option, value } });
}

function checkName(where: string, name: unknown): string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
    throw badConfig(where, 'name', `option "name" must be a single directory name (no "/"), got ${JSON.stringify(name)}.`, name);
  }
  return name;
}

function resolveFs(where: string, options: { fs?: LockFs; transport?: LockTransport }): LockFs {
  if (options.fs !== undefined && options.transport !== undefined) {
    throw badConfig(where, 'transport', 'give option "fs" or option "transport", not both.', options.transport.name);
  }
  if (options.transport !== undefined) {
    const t = options.transport;
    if (typeof t !== 'object' || t === null || typeof t.lockFs !== 'function') {
      throw badConfig(where, 'transport', `option "transport" (${String((t as { name?: unknown } | null)?.name)}) cannot hold a lock: it has no lockFs().`, (t as { name?: unknown } | null)?.name);
    }
    return checkFs(where, t.lockFs());
  }
  return options.fs === undefined ? localLockFs : checkFs(where, options.fs);
}

function checkFs(where: string, fs: unknown): LockFs {
  if (typeof fs !== 'object' || fs === null) throw badConfig(where, 'fs', 'option "fs" must be a LockFs object.', fs);
  const missing = LOCK_FS_METHODS.filter((m) => typeof (fs as Record<string, unknown>)[m] !== 'function');
  if (missing.length > 0) throw badConfig(where, 'fs', `option "fs" lacks the LockFs method(s) ${missing.join(', ')}.`, missing);
  return fs as LockFs;
}

function checkParent(where: string, parentDir: unknown): string {
  if (typeof parentDir !== 'string' || parentDir === '') throw badConfig(where, 'parentDir', 'the parent directory must be a non-empty path.', parentDir);
  return parentDir;
}

function newToken(): string {
  return randomBytes(16).toString('hex');
}

/** Parses an owner file; undefined unless it is complete and well-formed. */
function parseOwner(raw: Uint8Array): LockOwner | undefined {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const { host, pid, purpose, since, token } = o;
  if (typeof host !== 'string' || host === '') return undefined;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return undefined;
  if (typeof purpose !== 'string' || typeof since !== 'string') return undefined;
  if (typeof token !== 'string' || token === '') return undefined;
  const { machine, staleMs } = o;
  if (machine !== undefined && (typeof machine !== 'string' || machine === '')) return undefined;
  // A staleMs that is not a positive number is left out (judged by ours alone), not a reason to call the file unreadable.
  const ownStale = typeof staleMs === 'number' && Number.isFinite(staleMs) && staleMs > 0 ? staleMs : undefined;
  return { host, pid, purpose, since, token, ...(machine === undefined ? {} : { machine }), ...(ownStale === undefined ? {} : { staleMs: ownStale }) };
}

let thisMachine: string | null | undefined;

/**
 * This process's {@link LockOwner.machine}: the boot id and pid namespace,
 * or undefined where the system does not expose them (not Linux).
 */
function machineId(): string | undefined {
  if (thisMachine === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const ns = readlinkSync('/proc/self/ns/pid');
      thisMachine = boot !== '' && ns !== '' ? `${boot}/${ns}` : null;
    } catch {
      thisMachine = null;
    }
  }
  return thisMachine ?? undefined;
}

/**
 * Whether the owner's pid can be tested here: the same kernel and pid
 * namespace when the owner file says which (whatever the host is called
 * now), else (older owner files) the same host name.
 */
function pidsComparable(owner: LockOwner, host: string, machine: string | undefined): boolean {
  return owner.machine !== undefined ? owner.machine === machine : owner.host === host;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Whether a process exists on this host (EPERM: it exists, owned by someone else). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Reads the lock's state: the owner file first, then (only when it is
 * missing) the directory, so a rename in progress always looks fresh.
 */
async function observe(fs: LockFs, lockPath: string, ownerPath: string): Promise<Observation> {
  for (let i = 0; i < 3; i++) {
    let raw: Uint8Array;
    try {
      raw = await fs.readFile(ownerPath);
    } catch (err) {
      if (!isStowageError(err, 'ENOT_FOUND')) throw err;
      break;
    }
    let mtimeMs: number;
    try {
      ({ mtimeMs } = await fs.stat(ownerPath));
    } catch (err) {
      if (!isStowageError(err, 'ENOT_FOUND')) throw err;
      continue; // moved between the read and the stat: look again
    }
    const owner = parseOwner(raw);
    return owner ? { kind: 'owner', raw, owner, mtimeMs } : { kind: 'unreadable', raw, mtimeMs };
  }
  try {
    const { mtimeMs } = await fs.stat(lockPath);
    return { kind: 'no-owner', mtimeMs };
  } catch (err) {
    if (isStowageError(err, 'ENOT_FOUND')) return { kind: 'free' };
    throw err;
  }
}

/** The longest owner's `staleMs` honoured (a day): a crashed owner's lock is never held for longer. */
const OWNER_STALE_CAP_MS = 24 * 3600 * 1000;

/** The pure decision: is what we observed held, and may it be taken over? */
function judge(obs: Observation, now: number, staleMs: number, host: string, alive: (pid: number) => boolean): Judged {
  if (obs.kind === 'free') return { locked: false, stale: false, ageMs: 0 };
  const ageMs = Math.max(0, now - obs.mtimeMs);
  switch (obs.kind) {
    case 'owner':
      if (pidsComparable(obs.owner, host, machineId()) && !alive(obs.owner.pid)) return { locked: true, stale: true, reason: 'owner-dead', ageMs, owner: obs.owner };
      if (ageMs > Math.max(staleMs, Math.min(obs.owner.staleMs ?? 0, OWNER_STALE_CAP_MS))) return { locked: true, stale: true, reason: 'heartbeat-expired', ageMs, owner: obs.owner };
      return { locked: true, stale: false, ageMs, owner: obs.owner };
    case 'unreadable':
      return ageMs > staleMs ? { locked: true, stale: true, reason: 'owner-file-unreadable', ageMs } : { locked: true, stale: false, ageMs };
    case 'no-owner':
      return ageMs > staleMs ? { locked: true, stale: true, reason: 'owner-file-missing', ageMs } : { locked: true, stale: false, ageMs };
  }
}

function describe(path: string, j: Judged): string {
  if (!j.locked) return `${path} kept changing hands while we tried`;
  if (j.owner) {
    const what = j.owner.purpose ? ` for "${j.owner.purpose}"` : '';
    return `${path} is held by pid ${j.owner.pid} on ${j.owner.host}${what} since ${j.owner.since} (heartbeat ${Math.round(j.ageMs)} ms ago)`;
  }
  return `${path} is being created or written by someone (no readable ${LOCK_OWNER_FILE} yet, ${Math.round(j.ageMs)} ms old)`;
}

/**
 * A lock on a directory tree, shared between processes and hosts: a
 * `LOCKED` directory holding `owner.json` `{ host, pid, purpose, since, token, machine, staleMs }`.
 *
 * A held lock keeps itself alive with a heartbeat; a lock whose owner died
 * (on this machine, in our pid namespace) or whose heartbeat is older than `staleMs` is taken over
 * atomically. {@link LockDir.signal} aborts if the lock is lost while held.
 *
 * @example
 * ```ts
 * const lock = new LockDir('/data/run-1234', { purpose: 'nightly backup' });
 * await lock.withLock(async (signal) => {
 *   await writeFileAtomic('/data/run-1234/summary.json', [buf], { signal });
 * }, { waitMs: 30_000 });
 * ```
 */
export class LockDir {
  /** The directory that is locked (the lock lives inside it). */
  readonly parentDir: string;
  /** The lock directory's path: `parentDir/name`. */
  readonly path: string;
  /** Staleness threshold in ms. */
  readonly staleMs: number;
  /** Heartbeat period in ms. */
  readonly heartbeatMs: number;
  /** Free text stored in the owner file. */
  readonly purpose: string;

  readonly #fs: LockFs;
  readonly #ownerPath: string;
  readonly #host = hostname();
  #state: 'idle' | 'acquiring' | 'held' | 'releasing' | 'lost' = 'idle';
  #owner: LockOwner | undefined;
  #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #beating = false;
  #lastBeat = 0;

  /**
   * @param parentDir - the directory to lock; must exist when acquiring
   * @param options - name, staleMs, heartbeatMs, purpose, fs
   */
  constructor(parentDir: string, options: LockDirOptions = {}) {
    const where = 'LockDir';
    checkOptionKeys(where, options, CTOR_OPTIONS);
    this.parentDir = checkParent(where, parentDir);
    const name = checkName(where, options.name ?? LOCK_DIR_NAME);
    this.staleMs = checkInt(where, 'staleMs', options.staleMs ?? DEFAULT_STALE_MS, 3);
    this.heartbeatMs = checkInt(where, 'heartbeatMs', options.heartbeatMs ?? Math.max(1, Math.floor(this.staleMs / 4)), 1);
    if (this.heartbeatMs * 3 > this.staleMs) {
      // A heartbeat just inside staleMs lets a late timer (a busy event loop,
      // a slow remote write) make a live lock look stale: a second writer.
      // And the holder gives the lock up once its heartbeat is staleMs / 2
      // overdue: a third leaves room for one failed beat.
      throw badConfig(
        where,
        'heartbeatMs',
        `option "heartbeatMs" (${this.heartbeatMs}) must be at most a third of "staleMs" (${this.staleMs}), so that a late heartbeat never makes a live lock look stale and one failed heartbeat does not lose it; leave it out for staleMs / 4.`,
        this.heartbeatMs,
      );
    }
    const purpose = options.purpose ?? '';
    if (typeof purpose !== 'string') throw badConfig(where, 'purpose', 'option "purpose" must be a string.', purpose);
    this.purpose = purpose;
    this.#fs = resolveFs(where, options);
    this.path = posix.join(this.parentDir, name);
    this.#ownerPath = posix.join(this.path, LOCK_OWNER_FILE);
  }

  /** Whether this object holds the lock now. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** Our owner record while held (what `owner.json` says), else undefined. */
  get owner(): LockOwner | undefined {
    return this.#state === 'held' ? this.#owner : undefined;
  }

  /**
   * Aborts with an ELOCK_LOST {@link StowageError} when the lock is lost while
   * held: another owner took it over, the owner file vanished, or the
   * heartbeat could not be refreshed. Each acquisition gets a new signal;
   * pass it to the work the lock protects. A normal release does not abort it.
   */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Takes the lock: creates the lock directory and owner file, taking over a
   * stale lock atomically. Resolves when held; rejects with ELOCKED (the
   * owner in `details.owner`) when a live owner still holds it after
   * `waitMs`, ENOT_FOUND when the parent directory does not exist.
   *
   * @param options - waitMs, pollMs, signal
   */
  async acquire(options: LockAcquireOptions = {}): Promise<void> {
    const where = 'LockDir.acquire';
    checkOptionKeys(where, options, ACQUIRE_OPTIONS);
    const waitMs = options.waitMs === Infinity ? Infinity : checkInt(where, 'waitMs', options.waitMs ?? 0, 0);
    const pollMs = checkInt(where, 'pollMs', options.pollMs ?? DEFAULT_POLL_MS, 1);
    const { signal } = options;
    throwIfAborted(signal);
    if (this.#state === 'lost') this.#state = 'idle'; // the loss was reported through the old signal
    if (this.#state !== 'idle') {
      throw new StowageError('ELOCKED', `${this.path} is already ${this.#state === 'held' ? 'held' : this.#state} by this LockDir; it is not re-entrant.`, {
        details: { path: this.path, owner: this.#owner, state: this.#state },
        retryable: false,
      });
    }
    this.#state = 'acquiring';
    const started = Date.now();
    const deadline = started + waitMs;
    let quick = 0;
    try {
      for (;;) {
        const a = await this.#attempt();
        if (a.held) {
          if (signal?.aborted) {
            await this.release().catch(() => {});
            throw signal.reason;
          }
          return;
        }
        throwIfAborted(signal);
        if (a.retryNow && quick < QUICK_RETRIES) {
          quick += 1;
          continue;
        }
        quick = 0;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new StowageError('ELOCKED', `${describe(this.path, a.judged)}; gave up after ${Date.now() - started} ms.`, {
            details: { path: this.path, owner: a.judged.owner, ageMs: a.judged.ageMs, stale: a.judged.stale, waitedMs: Date.now() - started },
          });
        }
        await sleep(Math.min(left, Math.max(1, Math.round(pollMs * (0.5 + Math.random())))), signal);
      }
    } finally {
      if (this.#state === 'acquiring') this.#state = 'idle';
    }
  }

  /**
   * Releases the lock: removes it only after checking that our token still
   * owns it. Rejects with ELOCK_LOST when someone else took it over (their
   * lock is left alone). Does nothing when the lock is not held.
   */
  async release(): Promise<void> {
    if (this.#state === 'lost') {
      this.#state = 'idle';
      throw this.#controller.signal.reason;
    }
    if (this.#state !== 'held' || this.#owner === undefined) return;
    const owner = this.#owner;
    this.#stopHeartbeat();
    this.#state = 'releasing';
    const fs = this.#fs;
    const aside = `${this.#ownerPath}.released-${owner.token}`;

    // 1. Move our owner file aside: from here on nobody holds the lock.
    let moved = false;
    try {
      for (const delay of CONFIRM_DELAYS_MS) {
        if (delay > 0) await sleep(delay);
        try {
          await fs.rename(this.#ownerPath, aside);
          moved = true;
          break;
        } catch (err) {
          if (!isStowageError(err, 'ENOT_FOUND')) throw err;
        }
      }
    } catch (err) {
      // Still ours and in place: keep holding, the caller may retry.
      this.#state = 'held';
      this.#startHeartbeat();
      throw err;
    }
    if (!moved) throw this.#lose('its owner file disappeared', undefined);

    // 2. Check it was ours; if not, we had been taken over: put it back.
    // A file we cannot read may be the new owner's too: it goes back as well.
    let mine: LockOwner | undefined;
    try {
      mine = parseOwner(await fs.readFile(aside));
    } catch (err) {
      this.#state = 'idle';
      const back = await this.#putBack(aside);
      throw back === 'left' ? this.#leftAside(aside, err) : err;
    }
    if (mine?.token !== owner.token) {
      const back = await this.#putBack(aside);
      throw this.#lose(back === 'left' ? `another owner took it over, and its owner file, moved aside while releasing, could not be put back: it is at ${aside}; rename it to ${LOCK_OWNER_FILE} at once, or its owner loses the lock` : 'another owner took it over', mine);
    }

    // 3. Remove the lock directory: move it aside atomically, then delete.
    this.#state = 'idle';
    const graveyard = `${this.path}.released-${owner.token}`;
    try {
      await fs.rename(this.path, graveyard);
    } catch (err) {
      if (isStowageError(err, 'ENOT_FOUND')) return;
      throw err;
    }
    const intruder = await fs.readFile(posix.join(graveyard, LOCK_OWNER_FILE)).then(
      () => true,
      () => false,
    );
    if (intruder) {
      // A contender paused since its own mkdir created an owner file in the
      // instant before the move: give the directory back to it.
      await fs.rename(graveyard, this.path).catch(() => {});
      return;
    }
    await fs.remove(graveyard);
  }

  /**
   * Puts an owner file moved aside by {@link release} back in place, a few
   * times over a transient failure (a dropped SFTP reply). It is removed
   * only when another owner file took its place meanwhile (EEXIST: it is
   * outdated), never on any other failure: it may be a live owner's.
   * `'left'` when it is still aside after the tries.
   */
  async #putBack(aside: string): Promise<'back' | 'superseded' | 'gone' | 'left'> {
    const fs = this.#fs;
    for (const delay of CONFIRM_DELAYS_MS) {
      if (delay > 0) await sleep(delay);
      try {
        await fs.rename(aside, this.#ownerPath);
        return 'back';
      } catch (err) {
        if (isStowageError(err, 'EEXIST')) {
          await fs.remove(aside).catch(() => {});
          return 'superseded';
        }
        if (isStowageError(err, 'ENOT_FOUND') && !(await fs.readFile(aside).then(() => true, () => false))) return 'gone';
      }
    }
    return 'left';
  }

  #leftAside(aside: string, cause: unknown): StowageError {
    return new StowageError('ELOCK_LOST', `${this.path}: releasing it, its owner file could not be read nor put back: it is at ${aside}, and the lock may still be planted. If another process holds this lock, rename that file back to ${LOCK_OWNER_FILE} at once; otherwise remove ${this.path}.`, {
      details: { path: this.path, aside },
      cause,
    });
  }

  /**
   * Runs `fn` under the lock: acquire, `fn(signal)`, release in `finally`.
   * `signal` aborts when the lock is lost or `options.signal` aborts.
   * Resolves with what `fn` returns; an error of `fn` wins over one of release.
   *
   * @param fn - the protected work
   * @param options - waitMs, pollMs, signal (as for {@link LockDir.acquire})
   */
  async withLock<T>(fn: (signal: AbortSignal) => T | Promise<T>, options: LockAcquireOptions = {}): Promise<T> {
    await this.acquire(options);
    let result: T;
    try {
      result = await fn(anySignal(this.signal, options.signal) ?? this.signal);
    } catch (err) {
      await this.release().catch(() => {});
      throw err;
    }
    await this.release();
    return result;
  }

  /** Releases the lock if held (see {@link LockDir.release}). */
  async close(): Promise<void> {
    await this.release();
  }

  /** Same as {@link LockDir.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * Reports the state of a lock without changing anything.
   *
   * @param parentDir - the directory the lock lives in
   * @param options - name, staleMs, fs
   */
  static async inspect(parentDir: string, options: LockInspectOptions = {}): Promise<LockInspection> {
    const where = 'LockDir.inspect';
    checkOptionKeys(where, options, INSPECT_OPTIONS);
    const parent = checkParent(where, parentDir);
    const name = checkName(where, options.name ?? LOCK_DIR_NAME);
    const staleMs = checkInt(where, 'staleMs', options.staleMs ?? DEFAULT_STALE_MS, 1);
    const fs = resolveFs(where, options);
    const path = posix.join(parent, name);
    const j = judge(await observe(fs, path, posix.join(path, LOCK_OWNER_FILE)), Date.now(), staleMs, hostname(), pidAlive);
    return {
      path,
      locked: j.locked,
      ...(j.owner ? { owner: j.owner } : {}),
      stale: j.stale,
      ...(j.reason ? { reason: j.reason } : {}),
      ageMs: j.ageMs,
    };
  }

  /** One try: mkdir and claim, or judge what is there and take it over if stale. */
  async #attempt(): Promise<Attempt> {
    const fs = this.#fs;
    const machine = machineId();
    const owner: LockOwner = { host: this.#host, pid: process.pid, purpose: this.purpose, since: new Date().toISOString(), token: newToken(), ...(machine === undefined ? {} : { machine }), staleMs: this.staleMs };
    let created = false;
    try {
      await fs.mkdir(this.path);
      created = true;
    } catch (err) {
      if (!isStowageError(err, 'EEXIST')) throw err;
    }
    if (created && (await this.#claim(owner, true))) return { held: true };

    const obs = await observe(fs, this.path, this.#ownerPath);
    const judged = judge(obs, Date.now(), this.staleMs, this.#host, pidAlive);
    if (obs.kind === 'free') return { held: false, judged, retryNow: true };
    if (!judged.stale) return { held: false, judged, retryNow: false };
    if (!(await this.#clearStale(obs, owner.token))) return { held: false, judged, retryNow: true };
    if (await this.#claim(owner, false)) {
      if (takeoverChannel.hasSubscribers) takeoverChannel.publish({ path: this.path, previous: judged.owner, reason: judged.reason, owner });
      return { held: true };
    }
    return { held: false, judged, retryNow: true };
  }

  /** Creates our owner file; false when someone else's got there first. */
  async #claim(owner: LockOwner, createdDir: boolean): Promise<boolean> {
    try {
      await this.#fs.createFile(this.#ownerPath, Buffer.from(JSON.stringify(owner, null, 2) + '\n'));
    } catch (err) {
      if (isStowageError(err, 'EEXIST') || isStowageError(err, 'ENOT_FOUND')) return false;
      // Our own fresh directory without an owner file would block everyone
      // for staleMs: remove it.
      if (createdDir) await this.#fs.remove(this.path).catch(() => {});
      throw err;
    }
    await this.#stampClaim();
    this.#owner = owner;
    this.#controller = new AbortController();
    this.#state = 'held';
    this.#startHeartbeat();
    return true;
  }

  /**
   * Removes a stale owner file by rename-then-check. True when the lock
   * directory is now without owner file and we may claim it.
   */
  async #clearStale(obs: Observation, token: string): Promise<boolean> {
    if (obs.kind === 'no-owner') return true; // claimed by exclusive create; one contender wins
    if (obs.kind !== 'owner' && obs.kind !== 'unreadable') return false;
    const fs = this.#fs;
    const aside = `${this.#ownerPath}.stale-${token}`;
    try {
      await fs.rename(this.#ownerPath, aside);
    } catch (err) {
      if (isStowageError(err, 'ENOT_FOUND') || isStowageError(err, 'EEXIST')) return false; // another contender moved it
      throw this.#staleError(obs, err);
    }
    let same = false;
    try {
      const raw = await fs.readFile(aside);
      const { mtimeMs } = await fs.stat(aside);
      const owner = parseOwner(raw);
      const again: Observation = owner ? { kind: 'owner', raw, owner, mtimeMs } : { kind: 'unreadable', raw, mtimeMs };
      same = sameBytes(raw, obs.raw) && judge(again, Date.now(), this.staleMs, this.#host, pidAlive).stale;
    } catch (err) {
      await fs.rename(aside, this.#ownerPath).catch(() => {});
      throw this.#staleError(obs, err);
    }
    if (!same) {
      // We moved a live owner's file (it replaced the stale one, or
      // refreshed its heartbeat, after we looked): put it straight back.
      try {
        await fs.rename(aside, this.#ownerPath);
      } catch (err) {
        if (!isStowageError(err, 'EEXIST')) throw this.#staleError(obs, err);
        await fs.remove(aside).catch(() => {});
      }
      return false;
    }
    await fs.remove(aside).catch(() => {});
    return true;
  }

  #staleError(obs: Observation, cause: unknown): StowageError {
    return new StowageError('ESTALE_LOCK', `${this.path} is stale but could not be taken over: ${(cause as Error | undefined)?.message ?? String(cause)}`, {
      details: { path: this.path, ...(obs.kind === 'owner' ? { owner: obs.owner } : {}) },
      cause,
    });
  }

  #startHeartbeat(): void {
    this.#lastBeat = performance.now();
    this.#timer = setInterval(() => this.#tick(), this.heartbeatMs);
    this.#timer.unref();
  }

  /**
   * The timer's tick: the next heartbeat, or, while the last one has not
   * come back (a file system or connection that stopped answering), the
   * watchdog: once the heartbeat is `staleMs / 2` overdue, the lock is lost,
   * before anyone else may judge it stale and take it over.
   */
  #tick(): void {
    if (!this.#beating) {
      void this.#beat();
      return;
    }
    const stuck = performance.now() - this.#lastBeat;
    if (this.#state === 'held' && stuck > this.staleMs / 2) {
      this.#lose(`its heartbeat has been stuck for ${Math.round(stuck)} ms (the file system or connection holding it does not answer)`, undefined);
    }
  }

  #stopHeartbeat(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One heartbeat: check the owner file is still ours, refresh its mtime. */
  async #beat(): Promise<void> {
    if (this.#beating || this.#state !== 'held' || this.#owner === undefined) return;
    const owner = this.#owner;
    const stillHeld = (): boolean => this.#state === 'held' && this.#owner === owner;
    this.#beating = true;
    try {
      const seen = await this.#confirm(owner.token);
      if (!stillHeld()) return;
      if (seen !== 'ours') {
        this.#lose(seen === 'missing' ? 'its owner file disappeared' : 'another owner took it over', seen === 'missing' ? undefined : seen);
        return;
      }
      await this.#fs.setMtime(this.#ownerPath, Date.now());
      if (stillHeld()) this.#lastBeat = performance.now();
    } catch (err) {
      const since = performance.now() - this.#lastBeat;
      if (stillHeld() && since > this.staleMs / 2) {
        this.#lose(`its heartbeat could not be refreshed for ${Math.round(since)} ms`, undefined, err);
      }
    } finally {
      this.#beating = false;
    }
  }

  /**
   * Sets our fresh owner file's mtime (the heartbeat) from our clock. Made
   * by the host holding the folder (another machine, over a transport), it
   * is in that host's time until the first heartbeat, which contenders read
   * with their own clocks: a far clock running minutes behind made a fresh
   * lock look stale at once (two holders). A contender's rename-then-check
   * may hold the file aside for a moment: tried again as {@link #confirm}
   * reads it, then left to the first heartbeat. Never throws: the lock is
   * ours either way.
   */
  async #stampClaim(): Promise<void> {
    for (const delay of CONFIRM_DELAYS_MS) {
      if (delay > 0) await sleep(delay);
      try {
        await this.#fs.setMtime(this.#ownerPath, Date.now());
        return;
      } catch (err) {
        if (!isStowageError(err, 'ENOT_FOUND')) return;
      }
    }
  }

  /** Reads the owner file, allowing a short grace period for a checker that moved it. */
  async #confirm(token: string): Promise<'ours' | 'missing' | LockOwner | undefined> {
    for (const delay of CONFIRM_DELAYS_MS) {
      if (delay > 0) await sleep(delay);
      let raw: Uint8Array;
      try {
        raw = await this.#fs.readFile(this.#ownerPath);
      } catch (err) {
        if (isStowageError(err, 'ENOT_FOUND')) continue;
        throw err;
      }
      const owner = parseOwner(raw);
      return owner?.token === token ? 'ours' : owner;
    }
    return 'missing';
  }

  /** Marks the lock lost, aborts {@link LockDir.signal}, returns the error. */
  #lose(why: string, other: LockOwner | undefined, cause?: unknown): StowageError {
    this.#stopHeartbeat();
    const error = new StowageError('ELOCK_LOST', `Lost the lock ${this.path}: ${why}.`, {
      details: { path: this.path, token: this.#owner?.token, ...(other ? { owner: other } : {}) },
      ...(cause === undefined ? {} : { cause }),
    });
    this.#state = this.#state === 'held' ? 'lost' : 'idle';
    this.#controller.abort(error);
    if (lostChannel.hasSubscribers) lostChannel.publish({ path: this.path, error });
    return error;
  }
}
