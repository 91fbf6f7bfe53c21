/**
 * Process plumbing for the real-server test harness: finding server
 * binaries, running setup commands, starting long-lived servers in their own
 * process group with their output in a log file, waiting for readiness, and
 * killing whole process trees, including from a last-resort `exit` hook so
 * a crashed or interrupted vitest worker does not leave servers behind.
 *
 * Why process trees and not just process groups: sshd's per-connection
 * children and PostgreSQL's backends call `setsid()`, so they leave the
 * group we start the server in. We find them through `/proc` parent links,
 * remembering each one's start time so a recycled pid is never killed.
 *
 * @module
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, statSync, constants as fsConstants, accessSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { userInfo } from 'node:os';

// ---------------------------------------------------------------------------
// Last-resort cleanup

type Cleanup = () => void;

interface ExitRegistry {
  readonly cleanups: Set<Cleanup>;
  installed: boolean;
}

// Kept on globalThis so that a module re-imported by an isolating test
// runner shares one registry and installs the process hooks once.
const REGISTRY_KEY = Symbol.for('stowage.test.support.exitRegistry');

function registry(): ExitRegistry {
  const g = globalThis as unknown as Record<symbol, ExitRegistry | undefined>;
  let reg = g[REGISTRY_KEY];
  if (reg === undefined) {
    reg = { cleanups: new Set(), installed: false };
    g[REGISTRY_KEY] = reg;
  }
  return reg;
}

function runAllCleanups(): void {
  const reg = registry();
  // Last registered first: a server started in a temp folder is killed
  // before the folder is removed.
  const all = [...reg.cleanups].reverse();
  reg.cleanups.clear();
  for (const fn of all) {
    try {
      fn();
    } catch {
      // Best effort: the process is going away.
    }
  }
}

function installHooks(): void {
  const reg = registry();
  if (reg.installed) return;
  reg.installed = true;
  process.on('exit', runAllCleanups);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      runAllCleanups();
      process.removeListener(sig, handler);
      // Someone else handles this signal: let them decide. Otherwise keep
      // the default behaviour (terminate by that signal).
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/**
 * Registers a synchronous cleanup to run if the process exits (normally, via
 * `process.exit()`, or by SIGINT/SIGTERM/SIGHUP) before it is unregistered.
 * Returns the function that unregisters it; call it once the resource was
 * released the normal way.
 *
 * @param fn - synchronous, best effort; errors are swallowed
 */
export function registerExitCleanup(fn: Cleanup): () => void {
  installHooks();
  const reg = registry();
  reg.cleanups.add(fn);
  return () => {
    reg.cleanups.delete(fn);
  };
}

// ---------------------------------------------------------------------------
// Identity

/** True when the tests run as root (uid 0). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The login name of the user running the tests. */
export function currentUser(): string {
  return userInfo().username;
}

/** A system account: name, uid, gid and home, read from `/etc/passwd`. */
export interface SystemUser {
  /** Login name. */
  readonly name: string;
  /** Numeric user id. */
  readonly uid: number;
  /** Numeric primary group id. */
  readonly gid: number;
  /** Home folder. */
  readonly home: string;
}

/**
 * Looks a user up in `/etc/passwd`; undefined when absent.
 *
 * @param name - login name
 */
export function lookupUser(name: string): SystemUser | undefined {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 7) {
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '/' };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Options

/**
 * Throws on an option name the function does not know, so a misspelled
 * option cannot silently change what a test checks.
 *
 * @param fn - function name for the message
 * @param opts - the options object
 * @param known - accepted names
 */
export function checkOptions(fn: string, opts: object, known: readonly string[]): void {
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw new Error(`${fn}: unknown option "${key}" (known: ${known.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------
// Binaries

/** Where to look for a server binary and which Debian package provides it. */
export interface BinarySpec {
  /** Human name used in the error, e.g. "sshd". */
  readonly name: string;
  /** Absolute paths tried first, in order. */
  readonly paths?: readonly string[];
  /** Names looked up on PATH (plus /usr/sbin and /sbin) when no path matched. */
  readonly commands?: readonly string[];
  /** The Debian package that provides it. */
  readonly debianPackage: string;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The message used when a server binary is missing. Tests fail with it;
 * they never skip.
 *
 * @param what - the missing program
 * @param debianPackage - the package that provides it
 */
export function missingBinaryMessage(what: string, debianPackage: string): string {
  return (
    `${what} not found: install the Debian package "${debianPackage}" ` +
    `(run \`bash scripts/setup-system.sh\`, which installs everything the integration tests need, ` +
    `or \`apt-get install ${debianPackage}\`)`
  );
}

/**
 * Resolves a server binary to an absolute path, or throws an Error naming
 * the Debian package to install.
 *
 * @param spec - where to look and what to suggest
 */
export function requireBinary(spec: BinarySpec): string {
  for (const p of spec.paths ?? []) if (isExecutable(p)) return p;
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const cmd of spec.commands ?? []) {
    for (const dir of dirs) {
      if (dir === '') continue;
      const p = join(dir, cmd);
      if (isExecutable(p)) return p;
    }
  }
  throw new Error(missingBinaryMessage(spec.name, spec.debianPackage));
}

// ---------------------------------------------------------------------------
// One-shot commands

/** Options of {@link run}. */
export interface RunOptions {
  /** Working directory. */
  readonly cwd?: string;
  /** Full environment (default: the current one). */
  readonly env?: NodeJS.ProcessEnv;
  /** Run as this uid (root only). */
  readonly uid?: number;
  /** Run as this gid (root only). */
  readonly gid?: number;
  /** Kill after this many milliseconds (default 60 s). */
  readonly timeoutMs?: number;
  /** Data written to stdin. */
  readonly input?: string | Buffer;
}

/** Output of {@link run}. */
export interface RunResult {
  /** Standard output. */
  readonly stdout: string;
  /** Standard error. */
  readonly stderr: string;
}

function tailText(text: string, lines = 30): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/**
 * Runs a command to completion; rejects with an Error that carries the
 * command line, exit status and the tail of stderr/stdout.
 *
 * @param file - absolute path of the program
 * @param args - arguments
 * @param opts - see {@link RunOptions}
 */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        uid: opts.uid,
        gid: opts.gid,
        timeout: opts.timeoutMs ?? 60_000,
        killSignal: 'SIGKILL',
        maxBuffer: 32 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: unknown; signal?: unknown; killed?: boolean };
          const status = e.killed ? `killed (timeout ${opts.timeoutMs ?? 60_000} ms)` : `exit ${String(e.code)}${e.signal ? ` signal ${String(e.signal)}` : ''}`;
          const out = tailText(`${stderr}\n${stdout}`);
          reject(new Error(`${file} ${args.join(' ')} failed (${status})${out ? `:\n${out}` : ''}`, { cause: err }));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

// ---------------------------------------------------------------------------
// /proc helpers

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly pgrp: number;
  readonly state: string;
  readonly startTime: string;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may contain spaces or ')'.
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  // rest[0] = state (field 3), rest[1] = ppid, rest[2] = pgrp, rest[19] = starttime (field 22)
  return {
    pid,
    state: rest[0] ?? '?',
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    startTime: rest[19] ?? '',
  };
}

function allStats(): ProcStat[] {
  const out: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st !== undefined) out.push(st);
  }
  return out;
}

/** A process identity that survives pid reuse: pid plus kernel start time. */
export interface ProcRef {
  /** Process id. */
  readonly pid: number;
  /** `/proc/PID/stat` start time (clock ticks since boot). */
  readonly startTime: string;
}

/**
 * True while `pid` exists and is not a zombie (a zombie has exited; it only
 * waits to be reaped, which an init that does not reap never does). With
 * `ref`, also checks it is the same process, not a recycled pid.
 *
 * @param pid - process id
 * @param ref - optional identity to match
 */
export function isAlive(pid: number, ref?: ProcRef): boolean {
  const st = readStat(pid);
  if (st === undefined) return false;
  if (st.state === 'Z' || st.state === 'X' || st.state === 'x') return false;
  if (ref !== undefined && ref.startTime !== st.startTime) return false;
  return true;
}

/**
 * The live descendants of `pid` (children, grandchildren ...), found through
 * `/proc` parent links, so processes that called `setsid()` are included.
 *
 * @param pid - the ancestor (not included)
 */
export function descendants(pid: number): ProcRef[] {
  const stats = allStats();
  const byParent = new Map<number, ProcStat[]>();
  for (const st of stats) {
    const list = byParent.get(st.ppid);
    if (list === undefined) byParent.set(st.ppid, [st]);
    else list.push(st);
  }
  const out: ProcRef[] = [];
  const queue = [pid];
  const seen = new Set<number>([pid]);
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const child of byParent.get(p) ?? []) {
      if (seen.has(child.pid)) continue;
      seen.add(child.pid);
      if (child.state !== 'Z') out.push({ pid: child.pid, startTime: child.startTime });
      queue.push(child.pid);
    }
  }
  return out;
}

/**
 * The live direct children of `pid`.
 *
 * @param pid - the parent
 */
export function childrenOf(pid: number): ProcRef[] {
  return allStats()
    .filter((st) => st.ppid === pid && st.state !== 'Z')
    .map((st) => ({ pid: st.pid, startTime: st.startTime }));
}

/**
 * Sends `signal` to each process in `refs` that is still the same process.
 * Returns how many were signalled.
 *
 * @param refs - processes to signal
 * @param signal - e.g. SIGKILL
 */
export function signalRefs(refs: Iterable<ProcRef>, signal: NodeJS.Signals): number {
  let n = 0;
  for (const ref of refs) {
    if (!isAlive(ref.pid, ref)) continue;
    try {
      process.kill(ref.pid, signal);
      n += 1;
    } catch {
      // Gone in between.
    }
  }
  return n;
}

function refOf(pid: number): ProcRef | undefined {
  const st = readStat(pid);
  return st === undefined ? undefined : { pid, startTime: st.startTime };
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `promise` at most `ms` milliseconds (without keeping the process alive longer). */
async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Readiness

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this many milliseconds. */
  readonly timeoutMs: number;
  /** Poll interval (default 50 ms). */
  readonly intervalMs?: number;
  /** What we wait for, for the error message. */
  readonly what: string;
  /** Fail at once if this server exits while we wait; its log tail goes in the error. */
  readonly server?: ServerProcess;
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false`
 * (a thrown error counts as "not yet"). Rejects on timeout or when the
 * server exits, with the last error and the server's log tail.
 *
 * @param check - probe, e.g. "connect and run SELECT 1"
 * @param opts - see {@link WaitForOptions}
 */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, opts: WaitForOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (opts.server?.exitStatus !== undefined) {
      throw new ServerStartError(
        `${opts.server.name} exited (${opts.server.exitStatus}) while waiting for ${opts.what}`,
        opts.server,
        lastError,
      );
    }
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const last = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new ServerStartError(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${last}`, opts.server, lastError);
    }
    await sleepMs(opts.intervalMs ?? 50);
  }
}

/**
 * A server failed to start. The message ends with the server's log tail;
 * `portInUse` says whether the log shows a bind failure, in which case the
 * caller retries on another port.
 */
export class ServerStartError extends Error {
  /** True when the server log says its port was already taken. */
  readonly portInUse: boolean;

  /**
   * @param message - what went wrong
   * @param server - the server, for its log tail
   * @param cause - underlying error
   */
  constructor(message: string, server: ServerProcess | undefined, cause?: unknown) {
    const log = server?.logTail(40) ?? '';
    super(log ? `${message}\n--- ${server?.name} log (${server?.logPath}) ---\n${log}` : message, { cause });
    this.name = 'ServerStartError';
    this.portInUse = /address already in use|could not bind|bind on tcp\/ip port|cannot bind any address/i.test(log);
  }
}

// ---------------------------------------------------------------------------
// Long-lived servers

/** Options of {@link spawnServer}. */
export interface SpawnServerOptions {
  /** Short name for messages, e.g. "sshd". */
  readonly name: string;
  /** Absolute path of the program. */
  readonly command: string;
  /** Arguments. */
  readonly args: readonly string[];
  /** File receiving stdout and stderr (appended). */
  readonly logPath: string;
  /** Working directory. */
  readonly cwd?: string;
  /** Full environment (default: the current one). */
  readonly env?: NodeJS.ProcessEnv;
  /** Run as this uid (root only). */
  readonly uid?: number;
  /** Run as this gid (root only). */
  readonly gid?: number;
  /** Signal asking for a clean shutdown (default SIGTERM). */
  readonly stopSignal?: NodeJS.Signals;
}

/** A server process started by {@link spawnServer}. */
export interface ServerProcess {
  /** Short name for messages. */
  readonly name: string;
  /** Process id of the server (leader of its own process group). */
  readonly pid: number;
  /** Where its stdout/stderr go. */
  readonly logPath: string;
  /** `undefined` while running, else "code N" or "signal SIG". */
  readonly exitStatus: string | undefined;
  /** Resolves when the server process has exited. */
  readonly exited: Promise<void>;
  /** The last `lines` lines of the log. */
  logTail(lines?: number): string;
  /**
   * Stops the server and every process it started: the clean-shutdown
   * signal, then SIGKILL for whatever remains after `timeoutMs`
   * (default 10 s). Resolves when all of them are gone.
   */
  stop(timeoutMs?: number): Promise<void>;
  /** SIGKILLs the server and its whole process tree at once, synchronously. */
  killNow(): void;
}

/**
 * Reads the last `lines` lines of a log file (at most its last 64 KiB).
 *
 * @param path - log file
 * @param lines - how many lines
 */
export function readLogTail(path: string, lines = 40): string {
  try {
    const buf = readFileSync(path);
    const text = buf.subarray(Math.max(0, buf.length - 65_536)).toString('utf8');
    return tailText(text, lines);
  } catch {
    return '';
  }
}

/**
 * Starts a server detached in its own process group, stdout and stderr
 * appended to `logPath`, and registers a last-resort SIGKILL of its process
 * tree for when the test process exits without stopping it.
 *
 * @param opts - see {@link SpawnServerOptions}
 */
export function spawnServer(opts: SpawnServerOptions): ServerProcess {
  const fd = openSync(opts.logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(opts.command, [...opts.args], {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      uid: opts.uid,
      gid: opts.gid,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    // spawn reports ENOENT/EACCES asynchronously; surface it now.
    throw new Error(`could not start ${opts.command}: ${existsSync(opts.command) ? 'spawn failed' : 'not found'}`);
  }
  // Do not keep the test process alive because of the server.
  child.unref();

  let exitStatus: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitStatus = signal !== null ? `signal ${signal}` : `code ${String(code)}`;
      resolve();
    });
    child.once('error', (err) => {
      exitStatus = `spawn error ${err.message}`;
      resolve();
    });
  });

  const self: ProcRef = refOf(pid) ?? { pid, startTime: '' };
  // Every process ever seen under the server: after the server exits its
  // orphans are re-parented and can no longer be found from its pid.
  const tree = new Map<number, ProcRef>();
  const remember = (): void => {
    // Only while the pid is still our server, never a recycled one.
    if (!isAlive(pid, self)) return;
    for (const ref of descendants(pid)) tree.set(ref.pid, ref);
  };

  const killAll = (): void => {
    remember();
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Group already gone.
    }
    signalRefs(tree.values(), 'SIGKILL');
  };

  const unregister = registerExitCleanup(() => {
    if (exitStatus === undefined || [...tree.values()].some((r) => isAlive(r.pid, r))) killAll();
  });

  const waitGone = async (deadline: number): Promise<boolean> => {
    for (;;) {
      if (exitStatus === undefined) remember();
      const leaderGone = exitStatus !== undefined || !isAlive(pid, self);
      const rest = [...tree.values()].filter((r) => isAlive(r.pid, r));
      if (leaderGone && rest.length === 0) return true;
      if (Date.now() >= deadline) return false;
      await sleepMs(25);
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (timeoutMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      remember();
      if (exitStatus === undefined) {
        try {
          process.kill(pid, opts.stopSignal ?? 'SIGTERM');
        } catch {
          // Exited in between.
        }
      }
      if (!(await waitGone(Date.now() + timeoutMs))) {
        killAll();
        if (!(await waitGone(Date.now() + 5_000))) {
          const left = [...tree.values()].filter((r) => isAlive(r.pid, r)).map((r) => r.pid);
          throw new Error(`${opts.name} (pid ${pid}) did not die after SIGKILL; still alive: ${[pid, ...left].join(' ')}`);
        }
      }
      // The leader may be dead but not reaped yet by node.
      await within(exited, 2_000);
      unregister();
    })();
    return stopping;
  };

  return {
    name: opts.name,
    pid,
    logPath: opts.logPath,
    get exitStatus() {
      return exitStatus;
    },
    exited,
    logTail: (lines?: number) => readLogTail(opts.logPath, lines),
    stop,
    killNow: killAll,
  };
}

/** A child process started by {@link spawnUntil}, its output collected as it comes. */
export interface WatchedChild {
  /** The process (to signal it). */
  readonly child: ChildProcess;
  /** Its stdout so far. */
  stdout(): string;
  /** Its stderr so far. */
  stderr(): string;
  /** Its exit code (null if a signal ended it), once it has ended. */
  readonly exited: Promise<number | null>;
}

/**
 * Starts `file args` and resolves once its stdout so far matches `until`
 * (or it has ended): the moment a test signals a recipe in the middle of
 * its work. Both outputs are collected until it ends.
 *
 * @param file - the program
 * @param args - its arguments
 * @param opts - working folder, environment, and the output to wait for
 */
export async function spawnUntil(file: string, args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; until: RegExp }): Promise<WatchedChild> {
  const child = spawn(file, args, { cwd: opts.cwd, ...(opts.env ? { env: opts.env } : {}) });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (opts.until.test(out)) resolve();
    });
    void exited.then(() => resolve());
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}
