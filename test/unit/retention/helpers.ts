/**
 * Builders for dated backup trees used by the retention tests: real files,
 * real sidecars written by DnaDigest.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { DnaDigest } from '../../../src/dna/dna-digest.js';

/** Options of {@link makeSet}. */
export interface SetSpec {
  /** File name -> content (default one 1 KiB random tarball). */
  files?: Record<string, string | Buffer>;
  /** Write sidecars (default true). */
  sidecars?: boolean;
}

/** Creates `root/id` with its files and sidecars; returns the set's path. */
export async function makeSet(root: string, id: string, spec: SetSpec = {}): Promise<string> {
  const dir = join(root, ...id.split('/'));
  await mkdir(dir, { recursive: true });
  const files = spec.files ?? { 'repo.tar.gz': randomBytes(1024) };
  for (const [name, content] of Object.entries(files)) {
    const p = join(dir, name);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, content);
    if (spec.sidecars ?? true) await DnaDigest.writeSidecar(p, await DnaDigest.ofFile(p));
  }
  return dir;
}

/** Every path under `root` (files, dirs, links), relative and sorted. */
export async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(root, p) + (e.isDirectory() ? '/' : e.isSymbolicLink() ? '@' : ''));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out.sort();
}

/** Ids `YYYY/MM/DD/030000` of `n` consecutive days ending with `last` (YYYY-MM-DD). */
export function dailyIds(last: string, n: number, hhmmss = '030000'): string[] {
  const end = Date.parse(`${last}T00:00:00Z`);
  return Array.from({ length: n }, (_, k) => {
    const d = new Date(end - (n - 1 - k) * 86_400_000).toISOString();
    return `${d.slice(0, 4)}/${d.slice(5, 7)}/${d.slice(8, 10)}/${hhmmss}`;
  });
}

/** Plants a bare `LOCKED` directory (a foreign lock) in `dir`, with an owner file carrying `token`. */
export async function plantLock(dir: string, token = 'someone-else'): Promise<string> {
  const lock = join(dir, 'LOCKED');
  await mkdir(lock, { recursive: true });
  await writeFile(join(lock, 'owner.json'), JSON.stringify({ host: 'elsewhere', pid: 1, purpose: 'test', since: new Date().toISOString(), token }));
  return lock;
}

/** Makes the `last` link. */
export async function link(root: string, target: string, name = 'last'): Promise<void> {
  await symlink(target, join(root, name));
}
