/**
 * Notifiers: how a Monitor tells people that the state of the backups
 * changed. A notifier is anything with a `name` and a `notify(event)`; two
 * come built in: {@link CommandNotifier} runs a command (the classic
 * `mail -s SUBJECT ADDR` with the report on stdin) and
 * {@link HttpNotifier} POSTs the event as JSON to a URL (a chat webhook, an
 * alerting gateway).
 *
 * The Monitor calls a notifier only when the state changed since that
 * notifier was last told (not on every cron run), and records the new
 * state only once `notify` resolved: a notifier that fails is retried on
 * the next run, so a state change is never lost to a mail server that was
 * down for a minute.
 *
 * Commands are run with `spawn` and an argument array, never through a
 * shell: a subject holding `;` or `$(...)` is just text.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { StowageError } from '../errors.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { checkInt, checkOneOf, checkOptionKeys } from '../util/options.js';
import type { MonitorReport, MonitorReportJSON } from './monitor-report.js';
import type { MonitorCheckName, MonitorStatus } from './status.js';

/** One check whose status changed since the notifier was last told. */
export interface MonitorChange {
  /** The check. */
  readonly check: MonitorCheckName;
  /** Its status then (`ok` for a check never reported), or null if it did not run then. */
  readonly from: MonitorStatus | null;
  /** Its status now, or null if it did not run now. */
  readonly to: MonitorStatus | null;
}

/** What a notifier is told. */
export interface MonitorEvent {
  /** The monitor's name. */
  readonly monitor: string;
  /** Overall status now. */
  readonly status: MonitorStatus;
  /** Overall status this notifier was last told, or null if it was never told anything. */
  readonly previousStatus: MonitorStatus | null;
  /** The checks whose status changed. */
  readonly changes: readonly MonitorChange[];
  /** A one-line subject: `STOWAGE CRITICAL - svn-nightly: newest backup 3d old`. */
  readonly subject: string;
  /** The report as text, one line per check (what a mail body holds). */
  readonly text: string;
  /** The full report. */
  readonly report: MonitorReport;
}

/** The JSON an {@link HttpNotifier} posts; keys in this order. */
export interface MonitorEventJSON {
  /** The monitor's name. */
  readonly monitor: string;
  /** Overall status now. */
  readonly status: MonitorStatus;
  /** Overall status last told, or null. */
  readonly previousStatus: MonitorStatus | null;
  /** One-line subject. */
  readonly subject: string;
  /** The checks whose status changed. */
  readonly changes: readonly MonitorChange[];
  /** The report (`MonitorReport.toJSON()`). */
  readonly report: MonitorReportJSON;
}

/**
 * The JSON form of an event.
 *
 * @param event - the event
 */
export function monitorEventJSON(event: MonitorEvent): MonitorEventJSON {
  return {
    monitor: event.monitor,
    status: event.status,
    previousStatus: event.previousStatus,
    subject: event.subject,
    changes: event.changes.map((c) => ({ check: c.check, from: c.from, to: c.to })),
    report: event.report.toJSON(),
  };
}

/** Options passed to {@link Notifier.notify}. */
export interface NotifyOptions {
  /** Cancels the notification; reject with `signal.reason`. */
  signal?: AbortSignal;
}

/**
 * Something that tells people about a state change. `name` must be unique
 * among a monitor's notifiers and stable across runs: the state last told
 * is stored under it. `notify` resolves once the message is handed over;
 * a rejection means "not told" (the Monitor retries next run).
 */
export interface Notifier {
  /** A stable, unique name, e.g. `mail:daq-oncall`. */
  readonly name: string;
  /**
   * Tells about `event`.
   *
   * @param event - what changed
   * @param options - signal
   */
  notify(event: MonitorEvent, options?: NotifyOptions): Promise<void>;
}

/** Options of {@link CommandNotifier}. */
export interface CommandNotifierOptions {
  /** The notifier's name (default `command:<program name>`). */
  name?: string;
  /** What goes to the command's stdin: `text` (default, {@link MonitorEvent.text}), `json` ({@link MonitorEventJSON}) or `none`. */
  input?: 'text' | 'json' | 'none';
  /** Kill the command (ETIMEOUT) after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** Extra environment variables (added to this process's environment). */
  env?: Record<string, string>;
  /** Working directory of the command. */
  cwd?: string;
}

const PLACEHOLDERS = /\{(subject|status|monitor)\}/g;
const STDERR_KEEP = 4096;
/** How long a notifier command's stderr is read after the command itself has exited. */
const STDERR_GRACE_MS = 200;

function substitute(arg: string, event: MonitorEvent): string {
  return arg.replace(PLACEHOLDERS, (_, key: 'subject' | 'status' | 'monitor') => (key === 'subject' ? event.subject : key === 'status' ? event.status : event.monitor));
}

/**
 * Runs a command for each notification: `argv[0]` with the other elements
 * as its arguments, with no shell. In each argument, `{subject}`,
 * `{status}` and `{monitor}` are replaced by the event's values. The report
 * goes to stdin (as text by default). A non-zero exit is EIO (with the end
 * of the command's stderr), a missing program ENOT_FOUND, a command that
 * runs past `timeoutMs` is killed (ETIMEOUT).
 *
 * @example
 * ```ts
 * const mail = new CommandNotifier(['mail', '-s', '{subject}', 'daq-oncall@example.org'], { name: 'mail:oncall' });
 * const monitor = new Monitor({ transport, dir: '/backups/svn' }, { maxAge: '26h' }, { catalog, notifiers: [mail] });
 * ```
 */
export class CommandNotifier implements Notifier {
  /** The notifier's name. */
  readonly name: string;
  /** The program and its arguments (with placeholders). */
  readonly argv: readonly string[];
  readonly #input: 'text' | 'json' | 'none';
  readonly #timeoutMs: number;
  readonly #env: Record<string, string> | undefined;
  readonly #cwd: string | undefined;

  /**
   * @param argv - the program and its arguments, e.g. `['mail', '-s', '{subject}', 'oncall@example.org']`
   * @param options - name, input, timeoutMs, env, cwd
   */
  constructor(argv: readonly string[], options: CommandNotifierOptions = {}) {
    const where = 'CommandNotifier';
    checkOptionKeys(where, options, ['name', 'input', 'timeoutMs', 'env', 'cwd']);
    options ??= {}; // null means no options, as for checkOptionKeys
    if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== 'string') || argv[0] === '') {
      throw new StowageError('EBAD_CONFIG', `${where}: argv must be a non-empty array of strings, the program first (e.g. ['mail', '-s', '{subject}', 'oncall@example.org']); no shell is used.`, {
        details: { where, option: 'argv' },
      });
    }
    if (options.env !== undefined && (options.env === null || typeof options.env !== 'object' || Object.values(options.env).some((v) => typeof v !== 'string'))) {
      throw new StowageError('EBAD_CONFIG', `${where}: option "env" must map names to strings.`, { details: { where, option: 'env' } });
    }
    if (options.cwd !== undefined && (typeof options.cwd !== 'string' || options.cwd === '')) {
      throw new StowageError('EBAD_CONFIG', `${where}: option "cwd" must be a non-empty path.`, { details: { where, option: 'cwd' } });
    }
    this.argv = Object.freeze([...argv]);
    this.name = checkName(where, options.name ?? `command:${basename(argv[0]!)}`);
    this.#input = checkOneOf(where, 'input', options.input ?? 'text', ['text', 'json', 'none'] as const);
    this.#timeoutMs = checkInt(where, 'timeoutMs', options.timeoutMs ?? 60_000, 1);
    this.#env = options.env === undefined ? undefined : { ...options.env };
    this.#cwd = options.cwd;
  }

  /**
   * Runs the command once for `event`; resolves when it exited with 0.
   *
   * @param event - what changed
   * @param options - signal (kills the command)
   */
  async notify(event: MonitorEvent, options: NotifyOptions = {}): Promise<void> {
    const signal = options?.signal;
    throwIfAborted(signal);
    const [program, ...args] = this.argv.map((a) => substitute(a, event)) as [string, ...string[]];
    const input = this.#input === 'text' ? event.text : this.#input === 'json' ? JSON.stringify(monitorEventJSON(event)) + '\n' : '';
    const child = spawn(program, args, {
      stdio: [this.#input === 'none' ? 'ignore' : 'pipe', 'ignore', 'pipe'],
      ...(this.#env ? { env: { ...process.env, ...this.#env } } : {}),
      ...(this.#cwd ? { cwd: this.#cwd } : {}),
      windowsHide: true,
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    // A command that does not read its stdin closes the pipe: not our failure.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);

    let killTimer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 2000);
      killTimer.unref();
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, this.#timeoutMs);
    let aborted = false;
    const dispose = onAbort(signal, () => {
      aborted = true;
      kill();
    });
    try {
      const outcome = await new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code, sig) => {
          // Its stderr may stay open in a helper it left running (a mailer
          // handing the message off): the rest of it is waited for briefly,
          // the helper not at all.
          const grace = setTimeout(() => {
            child.stderr?.destroy();
            resolve({ code, sig });
          }, STDERR_GRACE_MS);
          child.once('close', () => {
            clearTimeout(grace);
            resolve({ code, sig });
          });
        });
      }).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        throw new StowageError(code === 'ENOENT' ? 'ENOT_FOUND' : 'EIO', `${this.name}: cannot run ${program}: ${(err as Error).message}`, {
          details: { notifier: this.name, program, errno: code },
          cause: err,
        });
      });
      if (aborted && signal) throw signal.reason;
      if (timedOut) {
        throw new StowageError('ETIMEOUT', `${this.name}: ${program} did not finish within ${this.#timeoutMs} ms and was killed.`, { details: { notifier: this.name, program, timeoutMs: this.#timeoutMs } });
      }
      if (outcome.code !== 0) {
        const how = outcome.code === null ? `was killed by ${outcome.sig}` : `exited with status ${outcome.code}`;
        const tail = stderr.trim();
        throw new StowageError('EIO', `${this.name}: ${program} ${how}${tail ? `: ${tail.split('\n').slice(-3).join(' / ')}` : ''}`, {
          details: { notifier: this.name, program, exitCode: outcome.code, signal: outcome.sig, stderr: tail },
        });
      }
    } finally {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      dispose();
    }
  }
}

/** Options of {@link HttpNotifier}. */
export interface HttpNotifierOptions {
  /** The notifier's name (default `http:<origin><path>`, without query or credentials). */
  name?: string;
  /** Extra request headers (e.g. an `authorization` token). */
  headers?: Record<string, string>;
  /** Give up (ETIMEOUT) after this long (default 10 000 ms). */
  timeoutMs?: number;
}

/**
 * POSTs each notification as JSON ({@link MonitorEventJSON},
 * `content-type: application/json`) with Node's `fetch`. Anything but a
 * 2xx answer is EIO (with the status and the start of the body); a refused
 * connection ECONNECT; no answer within `timeoutMs` ETIMEOUT. Redirects are
 * not followed.
 *
 * @example
 * ```ts
 * const hook = new HttpNotifier('https://alerts.example.org/hooks/backups', { headers: { authorization: `Bearer ${token}` } });
 * ```
 */
export class HttpNotifier implements Notifier {
  /** The notifier's name. */
  readonly name: string;
  /** Where the events go. */
  readonly url: URL;
  readonly #headers: Record<string, string>;
  readonly #timeoutMs: number;

  /**
   * @param url - an `http:` or `https:` URL
   * @param options - name, headers, timeoutMs
   */
  constructor(url: string | URL, options: HttpNotifierOptions = {}) {
    const where = 'HttpNotifier';
    checkOptionKeys(where, options, ['name', 'headers', 'timeoutMs']);
    options ??= {}; // null means no options, as for checkOptionKeys
    let u: URL;
    try {
      u = new URL(String(url));
    } catch (cause) {
      throw new StowageError('EBAD_CONFIG', `${where}: ${JSON.stringify(String(url))} is not a URL.`, { details: { where, option: 'url' }, cause });
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new StowageError('EBAD_CONFIG', `${where}: the URL must be http: or https:, got ${u.protocol}.`, { details: { where, option: 'url', protocol: u.protocol } });
    }
    if (options.headers !== undefined && (options.headers === null || typeof options.headers !== 'object' || Object.values(options.headers).some((v) => typeof v !== 'string'))) {
      throw new StowageError('EBAD_CONFIG', `${where}: option "headers" must map names to strings.`, { details: { where, option: 'headers' } });
    }
    this.url = u;
    this.name = checkName(where, options.name ?? `http:${u.origin}${u.pathname}`);
    this.#headers = { ...(options.headers ?? {}) };
    this.#timeoutMs = checkInt(where, 'timeoutMs', options.timeoutMs ?? 10_000, 1);
  }

  /**
   * POSTs `event`; resolves on a 2xx answer, as soon as its status line is
   * in: the change was delivered, so a body that comes slowly or not at
   * all (a proxy holding the connection) is not waited for; waiting would
   * fail a delivered notification, and the next run would tell the change
   * again.
   *
   * @param event - what changed
   * @param options - signal
   */
  async notify(event: MonitorEvent, options: NotifyOptions = {}): Promise<void> {
    const signal = options?.signal;
    throwIfAborted(signal);
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const target = `${this.url.origin}${this.url.pathname}`;
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.#headers },
        body: JSON.stringify(monitorEventJSON(event)),
        redirect: 'manual',
        signal: both,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) {
        throw new StowageError('ETIMEOUT', `${this.name}: no answer from ${target} within ${this.#timeoutMs} ms.`, { details: { notifier: this.name, url: target, timeoutMs: this.#timeoutMs }, cause: err });
      }
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new StowageError('ECONNECT', `${this.name}: cannot POST to ${target}: ${cause?.message ?? (err as Error).message}`, {
        details: { notifier: this.name, url: target, errno: cause?.code },
        cause: err,
      });
    }
    if (res.status >= 200 && res.status <= 299) {
      await res.body?.cancel().catch(() => {});
      return;
    }
    // Not delivered: the body, if it comes within the time left, says why.
    const body = await res.text().catch(() => '');
    if (signal?.aborted) throw signal.reason;
    throw new StowageError('EIO', `${this.name}: ${target} answered ${res.status} ${res.statusText}${body ? `: ${body.slice(0, 200)}` : ''}`, {
      details: { notifier: this.name, url: target, status: res.status },
    });
  }
}

function checkName(where: string, name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') throw new StowageError('EBAD_CONFIG', `${where}: option "name" must be a non-empty string.`, { details: { where, option: 'name' } });
  return name;
}
