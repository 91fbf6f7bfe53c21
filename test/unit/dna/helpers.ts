/** Shared fixtures of the DNA tests: temp dirs, deterministic data, coreutils digests, thread counts. */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect } from 'vitest';
import { StowageError } from '../../../src/errors.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the test. */
export async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stowage-dna-'));
  dirs.push(d);
  return d;
}

/** `n` random bytes. */
export function data(n: number): Buffer {
  return randomBytes(n);
}

/** The hex digest of `buf` by node:crypto. */
export function hex(algorithm: string, buf: Uint8Array): string {
  return createHash(algorithm).update(buf).digest('hex');
}

/** Writes `buf` to `dir/name` and returns the path. */
export async function put(dir: string, name: string, buf: Buffer | string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, buf);
  return p;
}

/** The digest the coreutils tool (`md5sum`, `sha256sum`...) prints for a file. */
export function coreutils(tool: string, path: string): string {
  return execFileSync(tool, [path], { encoding: 'utf8' }).split(' ')[0]!;
}

/** Threads of this process now (Linux: /proc/self/task). */
export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/** Asserts that `p` rejects with a StowageError of `code`; returns it. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a StowageError ${code}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code).toBe(code);
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
  expect(err, `expected a StowageError ${code}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code).toBe(code);
  return err as StowageError;
}
