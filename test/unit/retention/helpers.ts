/**
 * Builders for dated backup trees used by the retention tests: real files,
 * real sidecars written by DnaDigest.
 */
import { randomBytes } from 'node:crypto';
import { lutimes, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { DnaDigest, type Dna, type DnaAlgorithm } from '../../../src/dna/dna-digest.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { FreeSpace, GetOptions, OpOptions, PutOptions, PutSource, Transport, TransportEntry, TransportStat } from '../../../src/transport/transport.js';

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

/**
 * Sets the modification time of `dir` and of everything under it to
 * `time` (children first, so the folders keep it): a set whose writer
 * stopped at that time.
 */
export async function setTreeMtime(dir: string, time: Date | number): Promise<void> {
  const t = new Date(time);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await setTreeMtime(p, t);
    else await lutimes(p, t, t);
  }
  await lutimes(dir, t, t);
}

/** Makes the `last` link. */
export async function link(root: string, target: string, name = 'last'): Promise<void> {
  await symlink(target, join(root, name));
}


/**
 * A real LocalTransport seen through a path prefix, so the code under test
 * only ever sees "far" paths (`/srv/...`) that do not exist on this machine:
 * anything that bypassed the transport would fail. Counts digests.
 */
export class ChrootTransport implements Transport {
  readonly name: string;
  readonly capabilities;
  digests = 0;
  readonly #inner = new LocalTransport();
  readonly #root: string;

  constructor(root: string, name = 'chroot') {
    this.#root = root;
    this.name = name;
    this.capabilities = this.#inner.capabilities;
  }

  #p(path: string): string {
    if (!path.startsWith('/')) throw new Error(`ChrootTransport: far paths are absolute, got ${path}`);
    return this.#root + path;
  }

  async stat(path: string, o?: OpOptions): Promise<TransportStat> {
    return { ...(await this.#inner.stat(this.#p(path), o)), path };
  }
  async exists(path: string, o?: OpOptions): Promise<TransportStat | undefined> {
    const s = await this.#inner.exists(this.#p(path), o);
    return s && { ...s, path };
  }
  async list(dir: string, o?: OpOptions): Promise<TransportEntry[]> {
    return (await this.#inner.list(this.#p(dir), o)).map((e) => ({ ...e, path: `${dir}/${e.name}` }));
  }
  mkdir(path: string, o?: OpOptions & { recursive?: boolean }): Promise<void> {
    return this.#inner.mkdir(this.#p(path), o);
  }
  put(source: PutSource, path: string, o?: PutOptions): Promise<Dna> {
    return this.#inner.put(source, this.#p(path), o);
  }
  get(path: string, localPath: string, o?: GetOptions): Promise<Dna> {
    return this.#inner.get(this.#p(path), localPath, o);
  }
  createReadStream(path: string, o?: OpOptions & { start?: number }): Readable {
    return this.#inner.createReadStream(this.#p(path), o);
  }
  remove(path: string, o?: OpOptions & { recursive?: boolean; force?: boolean }): Promise<void> {
    return this.#inner.remove(this.#p(path), o);
  }
  rename(from: string, to: string, o?: OpOptions): Promise<void> {
    return this.#inner.rename(this.#p(from), this.#p(to), o);
  }
  symlink(target: string, path: string, o?: OpOptions): Promise<void> {
    return this.#inner.symlink(target, this.#p(path), o);
  }
  readlink(path: string, o?: OpOptions): Promise<string> {
    return this.#inner.readlink(this.#p(path), o);
  }
  setMtime(path: string, mtimeMs: number, o?: OpOptions): Promise<void> {
    return this.#inner.setMtime(this.#p(path), mtimeMs, o);
  }
  digest(path: string, algorithm?: DnaAlgorithm, o?: OpOptions): Promise<Dna> {
    this.digests++;
    return this.#inner.digest(this.#p(path), algorithm, o);
  }
  freeSpace(path: string, o?: OpOptions): Promise<FreeSpace> {
    return this.#inner.freeSpace(this.#p(path), o);
  }
  async close(): Promise<void> {}
}
