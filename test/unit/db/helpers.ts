/** Shared helpers of the TableSource and Catalog tests: temp dirs, error assertions, stream collection. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, expect } from 'vitest';
import type { TableSource } from '../../../src/db/index.js';
import { digestBulkText } from '../../../src/db/range-digest.js';
import { StowageError } from '../../../src/errors.js';
import type { Progress } from '../../../src/progress.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the test. */
export async function tempDir(label = 'db'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `stowage-${label}-`));
  dirs.push(d);
  return d;
}

/** Asserts that `p` rejects with a StowageError of `code`; returns it. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a StowageError ${code}, got ${String(err)}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code, (err as Error).message).toBe(code);
  return err as StowageError;
}

/** Asserts that `fn` throws a StowageError of `code`; returns it. */
export function throwsWith(fn: () => unknown, code: string): StowageError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected a StowageError ${code}, got ${String(err)}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code, (err as Error).message).toBe(code);
  return err as StowageError;
}

/** Asserts that `p` rejects with exactly `reason` (an abort reason); returns it. */
export async function rejectsWithReason(p: Promise<unknown>, reason: unknown): Promise<void> {
  const err = await p.then(
    () => 'resolved',
    (e: unknown) => e,
  );
  expect(err).toBe(reason);
}

/** Reads a byte stream to the end. */
export async function collect(stream: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(typeof c === 'string' ? Buffer.from(c) : Buffer.from(c));
  return Buffer.concat(parts);
}

/** Yields `buf` in chunks of `size` bytes. */
export async function* chunked(buf: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

/**
 * Asserts how `load(table, input, { columns })` refuses bad columns of a
 * table with a column `k` and no column `nope`: a name the table lacks is
 * ENO_TABLE naming it; an empty list, a name twice (also by case), not an
 * array, a bad name or not a string is EBAD_CONFIG; the input is destroyed
 * each time.
 *
 * @param src - the source
 * @param table - the table
 */
export async function expectBadLoadColumns(src: TableSource, table: string): Promise<void> {
  const err = await rejectsWith(src.load(table, Readable.from([Buffer.from('4\tx\n')]), { columns: ['k', 'nope'] }), 'ENO_TABLE');
  expect(err.message).toMatch(/no column "nope"/);
  for (const bad of [[], ['k', 'k'], ['k', 'K'], 'k', ['k\0'], [1]]) {
    const input = Readable.from([Buffer.from('4\tx\n')]);
    await rejectsWith(src.load(table, input, { columns: bad as never }), 'EBAD_CONFIG');
    expect(input.destroyed, JSON.stringify(bad)).toBe(true);
  }
}

/**
 * `rows({ columns })` and `digestRange(..., { columns })` of a table `t`
 * (columns k, v, n; k the key) read the columns named, in that order, by
 * name (case-insensitively when unambiguous); bad lists are EBAD_CONFIG, a
 * name the table lacks ENO_TABLE, a digest without the key EBAD_CONFIG.
 *
 * @param src - a source holding `t` with the rows (1, 'one', 1), (2, 'same', 9), (3, 'same', 1) and maybe more:
 *   digested with v first, rows 2 and 3 would be one group (and sorted) if the digest took v for the key
 */
export async function expectNamedColumnReads(src: TableSource): Promise<void> {
  const read = async (columns?: string[]): Promise<string> => (await collect(await src.rows('t', columns === undefined ? { key: 'k' } : { key: 'k', columns }))).toString();
  const rows = (await read())
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
  expect(rows.length).toBeGreaterThan(1);
  const text = (pick: (r: string[]) => string[]): string => rows.map((r) => `${pick(r).join('\t')}\n`).join('');
  expect(await read(['n', 'k', 'v'])).toBe(text(([k, v, n]) => [n!, k!, v!]));
  expect(await read(['V', 'K'])).toBe(text(([k, v]) => [v!, k!]));
  const lo = BigInt(rows[1]![0]!);
  const tail = rows.filter((r) => BigInt(r[0]!) >= lo).map((r) => `${r[1]!}\n`);
  expect((await collect(await src.rows('t', { key: 'k', lo, columns: ['v'] }))).toString()).toBe(tail.join(''));
  const d = await src.digestRange('t', 'k', undefined, undefined, { columns: ['v', 'k'] });
  expect(d).toEqual(await digestBulkText(Readable.from([Buffer.from(text(([k, v]) => [v!, k!]))]), { keyIndex: 1 }));
  // The key's position among the columns named is the one the digest groups on.
  const vnk = Buffer.from(text(([k, v, n]) => [v!, n!, k!]));
  const byKey = await digestBulkText(Readable.from([vnk]), { keyIndex: 2 });
  expect(byKey).not.toEqual(await digestBulkText(Readable.from([vnk]), { keyIndex: 0 }));
  expect(await src.digestRange('t', 'k', undefined, undefined, { columns: ['v', 'n', 'k'] })).toEqual(byKey);
  expect(d.digest).not.toBe((await src.digestRange('t', 'k', undefined, undefined)).digest);
  expect(await src.digestRange('t', 'k', undefined, undefined, { columns: ['k', 'v', 'n'] })).toEqual(await src.digestRange('t', 'k', undefined, undefined));
  const err = await rejectsWith(src.rows('t', { key: 'k', columns: ['k', 'nope'] }), 'ENO_TABLE');
  expect(err.message).toMatch(/no column "nope"/);
  for (const bad of [[], ['k', 'k'], ['k', 'K'], 'k', ['k\0'], [1]]) {
    await rejectsWith(src.rows('t', { key: 'k', columns: bad as never }), 'EBAD_CONFIG');
    await rejectsWith(src.digestRange('t', 'k', undefined, undefined, { columns: bad as never }), 'EBAD_CONFIG');
  }
  expect((await rejectsWith(src.digestRange('t', 'k', 1, 5, { columns: ['v', 'n'] }), 'EBAD_CONFIG')).message).toMatch(/must include the key column "k"/);
  await rejectsWith(src.digestRange('t', 'k', 1, 5, { columns: ['k', 'nope'] }), 'ENO_TABLE');
}

/**
 * `digestRange(..., { onProgress })` of a table `t` keyed by `k`: reports
 * in phase `digest`, bytes and rows never going back and ending at the
 * digest's own `bytes` and `count`, for the whole table and for a range;
 * the digest is the one computed without progress.
 *
 * @param src - a source holding `t` with rows of keys 1 to 4 at least
 */
export async function expectDigestProgress(src: TableSource): Promise<void> {
  for (const [lo, hi] of [[undefined, undefined], [2n, 3n]] as const) {
    const seen: Progress[] = [];
    const d = await src.digestRange('t', 'k', lo, hi, { onProgress: (p) => seen.push(p) });
    expect(d).toEqual(await src.digestRange('t', 'k', lo, hi));
    expect(d.count).toBeGreaterThan(1);
    expect(seen.length).toBeGreaterThan(0);
    for (const [i, p] of seen.entries()) {
      expect(p.phase).toBe('digest');
      if (i > 0) expect(p.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
      if (i > 0) expect(p.itemsDone).toBeGreaterThanOrEqual(seen[i - 1]!.itemsDone);
    }
    expect(seen.at(-1)).toMatchObject({ bytesDone: d.bytes, itemsDone: d.count });
  }
  await rejectsWith(src.digestRange('t', 'k', 1, 5, { nope: 1 } as never), 'EBAD_CONFIG');
}
