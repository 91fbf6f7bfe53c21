/**
 * Helpers the engines' sources and readers share (internal: not exported
 * from `stowage/db`): argument checks every source makes the same way, the
 * abort race around a callback, and the pieces of the pooled server
 * sources (MysqlSource, PostgresSource) that do not depend on the driver.
 *
 * @module
 */
import { Readable } from 'node:stream';
import { StowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { onAbort, throwIfAborted } from '../util/abort.js';
import { checkBooleanOption, checkInt, checkOptionKeys } from '../util/options.js';
import type { BulkTextGate } from './bulk-gate.js';
import { KEY_PROBES_MAX } from './key-probes.js';
import { checkIdentifier, toKeyBounds, type CreateTableOptions, type DbOptions, type KeyBound, type LoadOptions, type TableReader } from './table-source.js';

/** Whether `x` can be read with `for await`. */
export function isAsyncIterable(x: unknown): x is AsyncIterable<Uint8Array> {
  return typeof x === 'object' && x !== null && typeof (x as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === 'function';
}

/**
 * The input of a load as a byte stream; EBAD_CONFIG if it is neither a
 * Readable nor an async iterable.
 *
 * The load owns the stream from here on and reports its failures through
 * its own promise, so the stream gets a listener for 'error' at once: a
 * load aborted before it pipes the input anywhere (while it looks the table
 * up, or its `replaceRange` DELETE waits on a lock) destroys the input with
 * the abort reason, and an 'error' event nobody listens to would be thrown
 * as an uncaught exception.
 *
 * @param who - e.g. `MysqlSource.load`, for the message
 * @param input - what the caller passed
 */
export function toLoadStream(who: string, input: unknown): Readable {
  let stream: Readable;
  if (input instanceof Readable) stream = input;
  else if (isAsyncIterable(input)) stream = Readable.from(input, { objectMode: false });
  else throw new StowageError('EBAD_CONFIG', `${who}: input must be a Readable or an async iterable of byte chunks.`, { details: { option: 'input' } });
  stream.on('error', () => {});
  return stream;
}

/** A checked `replaceRange` of {@link LoadOptions}. */
export interface ReplaceBounds {
  /** The key column. */
  readonly key: string;
  /** Smallest key deleted. */
  readonly lo: bigint;
  /** Largest key deleted. */
  readonly hi: bigint;
}

/**
 * Checks the arguments of a source's `nextKey` (see `KeySeeker.nextKey` in
 * `partition/key-seek.ts`), EBAD_CONFIG naming the one at fault; returns
 * the bound.
 *
 * @param where - e.g. `MysqlSource.nextKey`, for messages
 * @param table - the table
 * @param key - the key column
 * @param from - the bound
 * @param options - signal
 */
export function checkNextKeyArgs(where: string, table: string, key: string, from: KeyBound, options: DbOptions): bigint {
  checkKeyArgs(where, table, key, options);
  const { lo } = toKeyBounds(where, from, undefined);
  if (lo === undefined) throw new StowageError('EBAD_CONFIG', `${where}: "from" is required.`, { details: { option: 'from' } });
  return lo;
}

/**
 * Checks the arguments every key question takes (keyRange, nextKey and the
 * probes): EBAD_CONFIG for a bad table or key name, or an option other
 * than `signal`.
 *
 * @param where - e.g. `MysqlSource.keyRange`, for messages
 * @param table - the table
 * @param key - the key column
 * @param options - signal only
 */
export function checkKeyArgs(where: string, table: string, key: string, options: DbOptions): void {
  checkOptionKeys(where, options, ['signal']);
  checkIdentifier(where, 'table', table);
  checkIdentifier(where, 'key', key);
}

/**
 * Checks the arguments of a `nextKeys` probe (see `key-probes.ts`) and
 * returns the bounds: EBAD_CONFIG for a bad name, option or bound, or more
 * than {@link KEY_PROBES_MAX} bounds.
 *
 * @param where - e.g. `MysqlSource.nextKeys`, for messages
 * @param table - the table
 * @param key - the key column
 * @param froms - the bounds
 * @param options - signal only
 */
export function checkNextKeysArgs(where: string, table: string, key: string, froms: readonly bigint[], options: DbOptions): bigint[] {
  if (!Array.isArray(froms) || froms.length > KEY_PROBES_MAX) {
    throw new StowageError('EBAD_CONFIG', `${where}: "froms" must be an array of at most ${KEY_PROBES_MAX} bounds.`, { details: { option: 'froms' } });
  }
  return froms.map((from) => checkNextKeyArgs(where, table, key, from, options));
}

/**
 * Checks the `replaceRange` of a load (EBAD_CONFIG unless it has a key and both bounds).
 *
 * @param who - e.g. `MysqlSource.load`, for messages
 * @param replaceRange - the option, or undefined
 */
export function checkReplaceRange(who: string, replaceRange: LoadOptions['replaceRange']): ReplaceBounds | undefined {
  if (replaceRange === undefined) return undefined;
  checkOptionKeys(`${who}: replaceRange`, replaceRange, ['key', 'lo', 'hi']);
  checkIdentifier(who, 'replaceRange.key', replaceRange.key);
  const { lo, hi } = toKeyBounds(`${who}: replaceRange`, replaceRange.lo, replaceRange.hi);
  if (lo === undefined || hi === undefined) {
    throw new StowageError('EBAD_CONFIG', `${who}: replaceRange needs both lo and hi.`, { details: { option: 'replaceRange' } });
  }
  return { key: replaceRange.key, lo, hi };
}

/**
 * Checks the arguments of `snapshot()`.
 *
 * @param who - e.g. `MysqlSource.snapshot`
 * @param fn - the callback
 * @param options - the options
 */
export function checkSnapshotArgs(who: string, fn: unknown, options: DbOptions): void {
  checkOptionKeys(who, options, ['signal']);
  if (typeof fn !== 'function') throw new StowageError('EBAD_CONFIG', `${who}: fn must be a function.`, { details: { option: 'fn' } });
}

/**
 * Checks the arguments of `createTable()`.
 *
 * @param who - e.g. `MysqlSource.createTable`
 * @param table - the table name
 * @param ddl - the DDL text
 * @param options - the options
 */
export function checkCreateTableArgs(who: string, table: string, ddl: unknown, options: CreateTableOptions): void {
  checkOptionKeys(who, options, ['signal', 'deferIndexes']);
  checkBooleanOption(who, 'deferIndexes', options.deferIndexes);
  checkIdentifier(who, 'table', table);
  if (typeof ddl !== 'string' || ddl.trim().length === 0) {
    throw new StowageError('EBAD_CONFIG', `${who}: ddl must be a non-empty string of SQL.`, { details: { option: 'ddl' } });
  }
}

/**
 * EEXIST: `createTable` was asked for a table that is already there.
 *
 * @param source - the source's name
 * @param table - the table
 */
export function tableExistsError(source: string, table: string): StowageError {
  return new StowageError('EEXIST', `Table ${JSON.stringify(table)} already exists in ${source}.`, { details: { source, table } });
}

/**
 * EDB: the source was closed.
 *
 * @param source - the source's name
 */
export function closedError(source: string): StowageError {
  return new StowageError('EDB', `${source} is closed.`, { details: { source } });
}

/** A promise that rejects with the signal's reason when it aborts, and the disposer of its listener. */
export interface AbortRace {
  /** Rejects with the abort reason (never resolves; an unobserved rejection is not reported). */
  readonly aborted: Promise<never>;
  /** Removes the listener. */
  dispose(): void;
}

/**
 * Sets up a race against `signal`: `Promise.race([work, race.aborted])`.
 *
 * @param signal - the signal, or undefined (then `aborted` never settles)
 * @param before - called first when the signal aborts
 */
export function abortRace(signal: AbortSignal | undefined, before?: (reason: unknown) => void): AbortRace {
  let rejectAbort: (reason: unknown) => void = () => {};
  const aborted = new Promise<never>((_, reject) => (rejectAbort = reject));
  aborted.catch(() => {});
  const dispose = onAbort(signal, (reason) => {
    before?.(reason);
    rejectAbort(reason);
  });
  return { aborted, dispose };
}

/** A connection (or client) lent for one operation. */
export interface Lent {
  /** Gives it back; `broken` closes it instead. */
  release(broken: boolean): void;
}

/**
 * Runs `use` on a lent connection, raced against `signal`: an abort, or an
 * error `isFatal` says left the connection unusable, closes the connection.
 *
 * @param acquire - lends the connection
 * @param signal - the caller's signal
 * @param use - the work
 * @param toError - translates a failure into what is thrown
 * @param isFatal - whether a failure broke the connection (default: never)
 */
export async function withLent<L extends Lent, T>(
  acquire: () => Promise<L>,
  signal: AbortSignal | undefined,
  use: (lent: L) => Promise<T>,
  toError: (err: unknown) => unknown,
  isFatal: (err: unknown) => boolean = () => false,
): Promise<T> {
  throwIfAborted(signal);
  const lent = await acquire();
  let broken = false;
  const race = abortRace(signal, () => (broken = true));
  try {
    return await Promise.race([use(lent), race.aborted]);
  } catch (err) {
    if (isFatal(err)) broken = true;
    throw toError(err);
  } finally {
    race.dispose();
    lent.release(broken);
  }
}

/**
 * Runs `fn` with the reader of a snapshot, raced against `signal`; `end`
 * runs however it ends.
 *
 * @param signal - the caller's signal
 * @param begin - starts the snapshot
 * @param fn - the caller's callback
 * @param reader - makes the reader, once the snapshot started
 * @param end - closes the snapshot
 */
export async function runSnapshot<T>(
  signal: AbortSignal | undefined,
  begin: () => Promise<void>,
  fn: (reader: TableReader) => Promise<T>,
  reader: () => TableReader,
  end: () => Promise<void>,
): Promise<T> {
  const race = abortRace(signal);
  try {
    await begin();
    return await Promise.race([fn(reader()), race.aborted]);
  } finally {
    race.dispose();
    await end();
  }
}

/**
 * A release function that acts on its first call only.
 *
 * @param release - what the first call does
 */
export function releaseOnce(release: (broken: boolean) => void): (broken: boolean) => void {
  let released = false;
  return (broken) => {
    if (released) return;
    released = true;
    release(broken);
  };
}

/**
 * Waits for a pooled connection unless `signal` aborts first; one that
 * arrives after the abort is given back at once.
 *
 * @param pending - the pool's promise of a connection
 * @param signal - the caller's signal
 * @param giveBack - returns a connection to the pool
 */
export function awaitPooled<C>(pending: Promise<C>, signal: AbortSignal | undefined, giveBack: (conn: C) => void): Promise<C> {
  return new Promise<C>((resolve, reject) => {
    const dispose = onAbort(signal, reject);
    pending.then(
      (c) => {
        dispose();
        if (signal?.aborted) {
          giveBack(c);
          reject(signal.reason);
        } else {
          resolve(c);
        }
      },
      (err: unknown) => {
        dispose();
        reject(err);
      },
    );
  });
}

/**
 * Reports the progress of a load as the gate passes rows on.
 *
 * @param gate - the load's bulk text gate
 * @param onProgress - the caller's callback
 * @returns a function that reports the rest and the final event
 */
export function trackLoad(gate: BulkTextGate, onProgress: ProgressCallback | undefined): () => void {
  const tracker = new ProgressTracker('load', onProgress);
  let counted = 0;
  gate.on('data', () => {
    tracker.add(gate.bytes - tracker.bytesDone, gate.rows - counted);
    counted = gate.rows;
  });
  return () => {
    tracker.add(gate.bytes - tracker.bytesDone, gate.rows - counted);
    tracker.report(true);
  };
}

/**
 * Arms the abort of a load on a server: the input is destroyed at once
 * (the server then ends the bulk statement); if the server has not
 * answered `graceMs` later, `giveUp` runs (it closes the connection).
 *
 * @param signal - the caller's signal
 * @param input - the load's input
 * @param graceMs - how long to wait for the server
 * @param giveUp - closes the connection
 * @returns the disposer (removes the listener, clears the timer)
 */
export function armLoadAbort(signal: AbortSignal | undefined, input: Readable, graceMs: number, giveUp: () => void): () => void {
  let graceTimer: NodeJS.Timeout | undefined;
  const disposeAbort = onAbort(signal, (reason) => {
    input.destroy(reason as Error);
    graceTimer = setTimeout(giveUp, graceMs);
    graceTimer.unref();
  });
  return () => {
    disposeAbort();
    clearTimeout(graceTimer);
  };
}

/** The connection fields the URI of a server source carries. */
export interface ServerUriConfig {
  /** The database. */
  database: string;
  /** Host. */
  host?: string;
  /** Port. */
  port?: number;
  /** User. */
  user?: string;
  /** Password. */
  password?: string;
}

/**
 * Parses `scheme://user:password@host:port/database` (no query parameters).
 *
 * @param who - the class, for messages
 * @param uri - the URI
 * @param schemes - the accepted schemes without `:`, the first one named in messages
 * @param decodeHost - percent-decode the host name
 */
export function parseServerUri(who: string, uri: string, schemes: readonly [string, string], decodeHost: boolean): ServerUriConfig {
  let url: URL;
  try {
    url = new URL(uri);
  } catch (err) {
    throw new StowageError('EBAD_CONFIG', `${who}: ${JSON.stringify(uri)} is not a ${schemes[0]}:// URI.`, { details: { option: 'connection' }, cause: err });
  }
  if (url.protocol !== `${schemes[0]}:` && url.protocol !== `${schemes[1]}:`) {
    throw badConfig(who, `the URI must start with ${schemes[0]}:// or ${schemes[1]}://, got ${url.protocol}//.`, 'connection');
  }
  if (url.search !== '') throw badConfig(who, 'URI query parameters are not supported; pass a config object for TLS and timeouts.', 'connection');
  const config: ServerUriConfig = { database: decodeURIComponent(url.pathname.replace(/^\//, '')) };
  if (url.hostname !== '') {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    config.host = decodeHost ? decodeURIComponent(host) : host;
  }
  if (url.port !== '') config.port = Number(url.port);
  if (url.username !== '') config.user = decodeURIComponent(url.username);
  if (url.password !== '') config.password = decodeURIComponent(url.password);
  return config;
}

/**
 * EBAD_CONFIG from the constructor of a source.
 *
 * @param who - the class
 * @param message - what is wrong
 * @param option - the option at fault
 */
export function badConfig(who: string, message: string, option: string): StowageError {
  return new StowageError('EBAD_CONFIG', `${who}: ${message}`, { details: { option } });
}

/** What {@link checkServerConnection} found. */
export interface CheckedServerConnection<C> {
  /** The connection config (parsed from the URI, or as given). */
  readonly config: C;
  /** The pool size. */
  readonly poolSize: number;
  /** The connect timeout, in ms. */
  readonly connectTimeout: number;
}

/**
 * Checks the constructor arguments of a pooled server source.
 *
 * @param who - the class
 * @param connection - a URI or a config object
 * @param options - the source's options
 * @param keys - the accepted connection and option keys
 * @param parseUri - parses a URI
 * @param scheme - the URI scheme named in messages (`mysql`)
 */
export function checkServerConnection<C extends { database: string; port?: number; connectTimeoutMs?: number }>(
  who: string,
  connection: unknown,
  options: { poolSize?: number },
  keys: { config: readonly string[]; options: readonly string[] },
  parseUri: (uri: string) => C,
  scheme: string,
): CheckedServerConnection<C> {
  checkOptionKeys(who, options, keys.options);
  let config: C;
  if (typeof connection === 'string') config = parseUri(connection);
  else if (typeof connection === 'object' && connection !== null) config = connection as C;
  else throw badConfig(who, `the connection must be a ${scheme}:// URI or a config object.`, 'connection');
  checkOptionKeys(`${who}: connection`, config, keys.config);
  if (typeof config.database !== 'string' || config.database.length === 0) throw badConfig(who, 'the connection needs a "database".', 'database');
  if (config.port !== undefined) checkInt(who, 'port', config.port, 1, 65535);
  const poolSize = checkInt(who, 'poolSize', options.poolSize ?? 8, 1, 10_000);
  const connectTimeout = checkInt(who, 'connectTimeoutMs', config.connectTimeoutMs ?? 10_000, 1, 2 ** 31 - 1);
  return { config, poolSize, connectTimeout };
}
