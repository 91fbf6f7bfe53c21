/**
 * Helpers shared by Transport implementations.
 *
 * @module
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { StowageError } from '../errors.js';
import type { PutSource, ReplayableSource } from './transport.js';

/**
 * Turns any {@link PutSource} into a replayable source: a local path or a
 * buffer can be re-read from any offset, so a broken transfer can resume.
 *
 * @param source - a local file path, a buffer, or a replayable source
 */
export function toReplayable(source: PutSource): ReplayableSource {
  if (typeof source === 'string') {
    return { open: (offset) => createReadStream(source, { start: offset, highWaterMark: 1 << 20 }) };
  }
  if (source instanceof Uint8Array) {
    return { size: source.length, open: (offset) => Readable.from(slices(source, offset), { objectMode: false }) };
  }
  return source;
}

/** Bytes of a buffer source handed on at a time (views, not copies). */
const BUFFER_SLICE_BYTES = 1 << 20;

/**
 * A buffer from `offset` on, as views of at most 1 MiB: as a file source
 * is read, so that a transfer reports progress and sees an abort between
 * slices instead of taking the whole buffer as one chunk.
 */
function* slices(source: Uint8Array, offset: number): Generator<Buffer> {
  for (let at = offset; at < source.length; at += BUFFER_SLICE_BYTES) {
    yield Buffer.from(source.buffer, source.byteOffset + at, Math.min(BUFFER_SLICE_BYTES, source.length - at));
  }
}

/**
 * Joins POSIX path segments (`/` separators), as transports use on the far side.
 *
 * @param parts - path segments
 */
export function posixJoin(...parts: string[]): string {
  const joined = parts.filter((p) => p !== '').join('/');
  return joined.replace(/\/{2,}/g, '/');
}

/**
 * The parent of a POSIX path: `/a/b` → `/a`, `/a` → `/`, `a` → `.`.
 *
 * @param path - a path with `/` separators
 */
export function posixDirname(path: string): string {
  const p = path.length > 1 ? path.replace(/\/+$/, '') : path;
  const i = p.lastIndexOf('/');
  if (i < 0) return '.';
  if (i === 0) return '/';
  return p.slice(0, i);
}

/**
 * A path without trailing `/` and `/.` parts: `/a/link/` and `/a/link/.`
 * → `/a/link`, `/` stays `/`. File systems resolve a symlink named with a
 * trailing slash (`lstat("link/")` describes its target), so an operation
 * that must not follow a link at the end of a path (remove, stat) looks
 * at the name without them.
 *
 * @param path - a path with `/` separators
 */
export function trimPathTail(path: string): string {
  const p = path.replace(/(?:\/\.?)+$/, '');
  if (p !== '') return p;
  return path.startsWith('/') ? '/' : '.';
}

/**
 * The path a removal acts on: `path` without trailing `/` and `/.` (see
 * {@link trimPathTail}), so that a symlink named `link/` is removed itself,
 * never emptied through. A path whose last part is `.` or `..` is refused
 * with EBAD_CONFIG, as `rm -r` refuses it: it names a folder above it (or,
 * through a symlink, one elsewhere).
 *
 * @param where - the operation, for the message
 * @param path - the path asked for
 */
export function removalTarget(where: string, path: string): string {
  const target = trimPathTail(path);
  const last = target.slice(target.lastIndexOf('/') + 1);
  if (last === '.' || last === '..') {
    throw new StowageError('EBAD_CONFIG', `${where}: refusing to remove ${JSON.stringify(path)}: a path ending in "." or ".." names a folder above it (or, through a symlink, one elsewhere). Name the folder itself.`, {
      details: { where, path, option: 'path' },
    });
  }
  return target;
}
