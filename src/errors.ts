/**
 * Errors of stowage.
 *
 * Every failure the library reports is a {@link StowageError} with a stable
 * string `code`. Codes are part of the public API: scripts branch on them,
 * and the README lists each with what to do about it. The original error of
 * a driver (ssh2, pg, mysql2, better-sqlite3, fs) is kept in `cause`.
 *
 * Cancellation is the one exception: an operation whose `signal` aborts
 * rejects with `signal.reason` itself, not wrapped (as `fetch` and
 * `AbortSignal.throwIfAborted` do; unlike Node's stream and fs APIs, which
 * wrap it in an `AbortError` whose `cause` is the reason). That reason is a
 * DOMException `AbortError` unless the caller passed one of its own.
 * To get a StowageError there, abort with one:
 * `controller.abort(new StowageError('EABORTED', 'operator stop'))`.
 *
 * @module
 */

/**
 * The error codes of stowage, each with a one-line explanation.
 *
 * This object is the single source of truth: {@link StowageErrorCode} is
 * derived from its keys and the README's error table mirrors it.
 */
export const ERROR_CODES = {
  EABORTED: 'The operation was cancelled through its AbortSignal (the code for an abort reason of your own: a cancelled call rejects with signal.reason unchanged).',
  EBAD_CONFIG: 'An option or configuration value is missing, misspelled, unknown or out of range.',
  EBAD_SIDECAR: 'A DNA sidecar file (FILE.dna) is malformed or names an unknown algorithm.',
  ENO_SIDECAR: 'A DNA sidecar was required but does not exist.',
  EDIGEST_MISMATCH: 'Data does not match its recorded DNA (digest or size differ): a mutant.',
  ECORRUPT_ARCHIVE: 'An archive is damaged: bad gzip CRC or stream, bad tar header checksum, or truncated.',
  EUNSAFE_PATH: 'An archive entry or path would escape its destination, is a device node, or exceeds a size cap.',
  ENOT_FOUND: 'A file, directory, entry or table that was asked for does not exist.',
  EEXIST: 'The target already exists and overwriting was not allowed.',
  ENOSPACE: 'The destination disk is full (ENOSPC/EDQUOT); nothing was left under the final name.',
  EIO: 'An input/output operation failed for a reason not covered by a more specific code.',
  ELOCKED: 'A lock directory is held by a live owner.',
  ESTALE_LOCK: 'A stale lock was found and could not be taken over safely.',
  ELOCK_LOST: 'A held lock was lost: its heartbeat could not be refreshed or another owner took it.',
  EHOSTKEY: 'The remote host key is unknown or differs from known_hosts; nothing was sent.',
  EAUTH: 'The remote host or database server refused the login.',
  ECONNECT: 'A connection could not be established or was lost and could not be resumed.',
  ETIMEOUT: 'A connection (remote host or database server) or an operation timed out.',
  ETRANSPORT: 'A transport operation failed on the far side (SFTP status, remote command failure).',
  EDELETE_GUARD: 'A sync or mirror would delete more than its guard allows, or its source looks empty; nothing was deleted.',
  EDB: 'A database operation failed; the driver error is in cause.',
  ENO_TABLE: 'A table, or a column that was named (key, columns of a read or load), does not exist.',
  EMIRROR_ROLE: 'Source and mirror role markers are missing or swapped.',
  EREPLICATION: 'A replication check or action failed.',
} as const;

/** A stable error code of stowage; see {@link ERROR_CODES}. */
export type StowageErrorCode = keyof typeof ERROR_CODES;

/** Options for constructing a {@link StowageError}. */
export interface StowageErrorOptions {
  /** Structured facts about the failure: the file, key, option, sizes... */
  details?: Record<string, unknown>;
  /** The underlying error (driver, fs, network). */
  cause?: unknown;
  /** Whether retrying the same operation may succeed (network blips, busy locks). */
  retryable?: boolean;
}

const RETRYABLE_BY_DEFAULT: ReadonlySet<StowageErrorCode> = new Set<StowageErrorCode>([
  'ELOCKED',
  'ECONNECT',
  'ETIMEOUT',
]);

/**
 * The one error class of stowage.
 *
 * @example
 * ```ts
 * try {
 *   await Archiver.verify('run-1234.tar.gz');
 * } catch (err) {
 *   if (err instanceof StowageError && err.code === 'EDIGEST_MISMATCH') {
 *     // restore from the other node
 *   }
 *   throw err;
 * }
 * ```
 */
export class StowageError extends Error {
  /** The stable error code. */
  readonly code: StowageErrorCode;
  /** Structured facts about the failure. */
  readonly details: Readonly<Record<string, unknown>>;
  /** Whether retrying the same operation may succeed. */
  readonly retryable: boolean;

  /**
   * @param code - one of {@link ERROR_CODES}
   * @param message - what went wrong and, where possible, what to do about it
   * @param options - details, cause and retryable flag
   */
  constructor(code: StowageErrorCode, message: string, options: StowageErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StowageError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
  }
}

/**
 * Whether `err` is a {@link StowageError}, optionally with the given code.
 *
 * @param err - anything caught
 * @param code - the code to match, if any
 */
export function isStowageError(err: unknown, code?: StowageErrorCode): err is StowageError {
  return err instanceof StowageError && (code === undefined || err.code === code);
}

/**
 * Maps a Node.js file-system error to a {@link StowageError}, keeping it as
 * `cause`. Errors that already are StowageErrors pass through unchanged.
 *
 * @param err - the caught error
 * @param action - what was being done, for the message ("write", "rename"...)
 * @param path - the path involved
 */
export function fromFsError(err: unknown, action: string, path: string): StowageError {
  if (err instanceof StowageError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const details = { path, action, errno: code };
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new StowageError('ENOSPACE', `No space left to ${action} ${path}: free some space on that disk and retry.`, { details, cause: err });
    case 'ENOENT':
      return new StowageError('ENOT_FOUND', `Cannot ${action} ${path}: it does not exist.`, { details, cause: err });
    case 'EEXIST':
      return new StowageError('EEXIST', `Cannot ${action} ${path}: it already exists.`, { details, cause: err });
    default:
      return new StowageError('EIO', `Cannot ${action} ${path}: ${(err as Error | undefined)?.message ?? String(err)}`, { details, cause: err });
  }
}

/**
 * Per-item trouble met during a walk (a file that vanished, an unreadable
 * sidecar, a tree skipped because it is LOCKED). Not fatal by default: it is
 * passed to the operation's `onWarning` callback; with `strict: true` the
 * operation throws the `error` instead.
 */
export interface StowageWarning {
  /** The error code describing the trouble. */
  readonly code: StowageErrorCode;
  /** The file or directory concerned. */
  readonly path: string;
  /** Human-readable explanation. */
  readonly message: string;
  /** Whether the walk went on past it. */
  readonly recoverable: boolean;
  /** The full error. */
  readonly error: StowageError;
}

/** Callback receiving {@link StowageWarning}s. */
export type WarningCallback = (w: StowageWarning) => void;

/**
 * Reports `error` as a warning, or throws it when `strict` is set.
 *
 * @param error - the trouble
 * @param path - the file or directory concerned
 * @param onWarning - the caller's callback, if any
 * @param strict - throw instead of warning
 */
export function warnOrThrow(error: StowageError, path: string, onWarning: WarningCallback | undefined, strict: boolean | undefined): void {
  if (strict) throw error;
  onWarning?.({ code: error.code, path, message: error.message, recoverable: true, error });
}
