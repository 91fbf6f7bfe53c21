/** Shared fixtures of the archive tests: temp dirs, source trees, hand-made (hostile) archives, tool runners. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, inflateRawSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';
import { afterEach, expect } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { xorshift32 } from '../../support/prng.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the test. */
export async function tempDir(label = 'archive'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `stowage-${label}-`));
  dirs.push(d);
  return d;
}

/** Log-like text of about `n` bytes (compresses ~5x, like DAQ logs). */
export function logText(n: number, seed = 1): Buffer {
  const rnd = xorshift32(seed);
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const l = `2024-05-01T10:${String(rnd() % 60).padStart(2, '0')}:00Z [INFO ] run=${rnd() % 9000} evt=${rnd()} adc=${rnd() % 4096} msg="event built"\n`;
    parts.push(l);
    len += l.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

/** What {@link makeTree} wrote: relative path to content (symlinks map to `-> target`). */
export type TreeSpec = Record<string, Buffer | string>;

/**
 * Writes a source tree: text and random files, nested directories, an
 * empty file, a symlink, a name longer than 100 bytes and a non-ASCII name.
 *
 * @param dir - where to write it (must exist)
 */
export async function makeTree(dir: string): Promise<TreeSpec> {
  const longDir = 'deep/' + 'd'.repeat(60) + '/' + 'e'.repeat(60);
  const spec: TreeSpec = {
    'a.log': logText(300_000),
    'b.bin': randomBytes(200_000),
    'empty.txt': Buffer.alloc(0),
    'sub/c.txt': 'hello from c\n',
    'sub/inner/d.bin': randomBytes(70_000),
    [`${longDir}/long-name-file.txt`]: 'long path\n',
    'ünïcødé/名前.txt': 'utf-8 name\n',
  };
  for (const [rel, content] of Object.entries(spec)) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), content);
  }
  await symlink('sub/c.txt', join(dir, 'link-to-c'));
  spec['link-to-c'] = '-> sub/c.txt';
  return spec;
}

/** Every file/symlink under `dir`, relative, sorted, with contents (or `-> target`). */
export async function readTree(dir: string): Promise<TreeSpec> {
  const out: TreeSpec = {};
  const { readFile, readlink } = await import('node:fs/promises');
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.isSymbolicLink()) out[r] = `-> ${await readlink(join(dir, r))}`;
      else out[r] = await readFile(join(dir, r));
    }
  };
  await walk('');
  return out;
}

/** Compares two tree specs (Buffers and strings alike). */
export function expectSameTree(actual: TreeSpec, expected: TreeSpec): void {
  const norm = (t: TreeSpec): Record<string, string> => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('base64') : Buffer.from(v).toString('base64')]));
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  expect(norm(actual)).toEqual(norm(expected));
}

/** One entry of a hand-made archive. */
export interface CraftEntry {
  header: Partial<Header> & Pick<Header, 'name'>;
  data?: Buffer | string;
}

/**
 * Writes a tar (gzipped when the name ends in .gz) with exactly these
 * entries, as an attacker would: any names, link targets and types.
 *
 * @param path - where to write it
 * @param entries - the entries
 */
export async function craftTar(path: string, entries: CraftEntry[]): Promise<void> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      if (e.data !== undefined) p.entry({ mtime: new Date(0), ...e.header }, typeof e.data === 'string' ? Buffer.from(e.data) : e.data, (err) => (err ? rej(err) : res()));
      else (p.entry({ mtime: new Date(0), ...e.header }, (err) => (err ? rej(err) : res())) as unknown as { end(): void }).end();
    });
  }
  p.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  await writeFile(path, path.endsWith('.gz') ? gzipSync(tar) : tar);
}

/** Runs a command, returns stdout; throws with stderr on failure. */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
}

/** Counts the gzip members of a file by decompressing member by member. */
export function gzipMembers(buf: Buffer): number {
  let off = 0;
  let n = 0;
  while (off < buf.length) {
    expect(buf[off]).toBe(0x1f);
    expect(buf[off + 1]).toBe(0x8b);
    const flg = buf[off + 3]!;
    let p = off + 10;
    if (flg & 4) p += 2 + buf.readUInt16LE(p);
    if (flg & 8) while (buf[p++] !== 0);
    if (flg & 16) while (buf[p++] !== 0);
    if (flg & 2) p += 2;
    const res = inflateRawSync(buf.subarray(p), { info: true }) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    off = p + res.engine.bytesWritten + 8;
    n++;
  }
  return n;
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

/** The names in a directory, or [] if it does not exist. */
export async function ls(dir: string): Promise<string[]> {
  return readdir(dir).then(
    (n) => n.sort(),
    () => [],
  );
}
