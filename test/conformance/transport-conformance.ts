/**
 * The conformance suite every Transport runs (restic's backend test suite,
 * in spirit): one set of behaviours, checked only through the Transport
 * API, so LocalTransport and SshTransport are held to the same contract.
 *
 * Usage, from a `*.test.ts`:
 *
 *   transportConformance('LocalTransport', async () => ({ transport, root, scratch, cleanup }));
 *
 * `root` is an empty folder on the far side, `scratch` an empty local
 * folder (sources for put, destinations for get).
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, openSync, truncateSync, writeSync } from 'node:fs';
import { readFile, stat as lstatLocal, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LockDir } from '../../src/lock/lock-dir.js';
import { StowageError } from '../../src/errors.js';
import type { Progress } from '../../src/progress.js';
import { transportLockFs } from '../../src/transport/lock-fs.js';
import type { ReplayableSource, Transport } from '../../src/transport/transport.js';

/** What a factory gives the suite. */
export interface ConformanceFixture {
  /** The transport under test. */
  readonly transport: Transport;
  /** An empty folder on the far side. */
  readonly root: string;
  /** An empty local folder. */
  readonly scratch: string;
  /** Closes the transport and removes what the fixture made. */
  cleanup(): Promise<void>;
}

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function readAll(t: Transport, path: string, start?: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of t.createReadStream(path, start !== undefined ? { start } : {})) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a StowageError ${code}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code).toBe(code);
  return err as StowageError;
}

/** A replayable source that yields `data` in `chunk`-byte pieces, pausing `delayMs` between them. */
function slowSource(data: Buffer, chunk: number, delayMs: number, failAt?: number): ReplayableSource {
  return {
    size: data.length,
    open: (offset) =>
      Readable.from(
        (async function* () {
          for (let off = offset; off < data.length; off += chunk) {
            if (failAt !== undefined && off >= failAt) throw new Error('source broke');
            if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
            yield data.subarray(off, Math.min(data.length, off + chunk));
          }
        })(),
      ),
  };
}

/**
 * Registers the conformance tests for one transport.
 *
 * @param name - label of the describe block
 * @param factory - makes a fresh fixture (called once for the block)
 */
export function transportConformance(name: string, factory: () => Promise<ConformanceFixture>): void {
  describe(`Transport conformance: ${name}`, () => {
    let fx: ConformanceFixture;
    let t: Transport;
    let n = 0;
    /** A fresh empty folder on the far side for one test. */
    const far = async (): Promise<string> => {
      const d = `${fx.root}/t${++n}`;
      await t.mkdir(d);
      return d;
    };
    const localFile = async (data: Uint8Array, fileName = `src-${++n}.bin`): Promise<string> => {
      const p = join(fx.scratch, fileName);
      await writeFile(p, data);
      return p;
    };

    beforeAll(async () => {
      fx = await factory();
      t = fx.transport;
      await t.connect?.();
    });
    afterAll(async () => {
      await fx?.cleanup();
    });

    describe('metadata', () => {
      it('stat reports files, directories and symlinks without following links; missing is ENOT_FOUND', async () => {
        const d = await far();
        await t.put(Buffer.from('hello'), `${d}/f.txt`, { mtimeMs: Date.UTC(2020, 0, 2, 3, 4, 5), mode: 0o640 });
        const f = await t.stat(`${d}/f.txt`);
        expect(f).toMatchObject({ path: `${d}/f.txt`, type: 'file', size: 5, mtimeMs: Date.UTC(2020, 0, 2, 3, 4, 5), mode: 0o640 });
        expect((await t.stat(d)).type).toBe('dir');
        if (t.capabilities.symlinks) {
          await t.symlink('f.txt', `${d}/l`);
          expect((await t.stat(`${d}/l`)).type).toBe('symlink');
          await t.symlink('nowhere', `${d}/dangling`);
          expect((await t.stat(`${d}/dangling`)).type).toBe('symlink');
        }
        const e = await rejectsWith(t.stat(`${d}/missing`), 'ENOT_FOUND');
        expect(e.message).toContain('missing');
        expect(await t.exists(`${d}/missing`)).toBeUndefined();
        expect((await t.exists(`${d}/f.txt`))?.size).toBe(5);
      });

      it('list returns the entries sorted by name, without . and ..; a missing folder is ENOT_FOUND, a file is refused', async () => {
        const d = await far();
        for (const name of ['b', 'a', 'C', 'z z']) await t.put(Buffer.from(name), `${d}/${name}`);
        await t.mkdir(`${d}/sub`);
        const entries = await t.list(d);
        expect(entries.map((e) => e.name)).toEqual(['C', 'a', 'b', 'sub', 'z z']);
        expect(entries.find((e) => e.name === 'sub')?.type).toBe('dir');
        expect(entries.find((e) => e.name === 'z z')).toMatchObject({ type: 'file', size: 3, path: `${d}/z z` });
        await rejectsWith(t.list(`${d}/nope`), 'ENOT_FOUND');
        await expect(t.list(`${d}/a`)).rejects.toBeInstanceOf(StowageError);
        expect(await t.list(`${d}/sub`)).toEqual([]);
      });

      it('mkdir is exclusive without recursive (EEXIST, ENOT_FOUND for a missing parent) and idempotent with it', async () => {
        const d = await far();
        await t.mkdir(`${d}/x`);
        await rejectsWith(t.mkdir(`${d}/x`), 'EEXIST');
        await rejectsWith(t.mkdir(`${d}/p/q`), 'ENOT_FOUND');
        expect(await t.exists(`${d}/p`)).toBeUndefined();
        await t.mkdir(`${d}/p/q/r`, { recursive: true });
        await t.mkdir(`${d}/p/q/r`, { recursive: true });
        expect((await t.stat(`${d}/p/q/r`)).type).toBe('dir');
        await t.put(Buffer.from('f'), `${d}/file`);
        await rejectsWith(t.mkdir(`${d}/file`, { recursive: true }), 'EEXIST');
      });

      it('setMtime sets the modification time (whole seconds at least)', async () => {
        const d = await far();
        await t.put(Buffer.from('m'), `${d}/m`);
        const when = Date.UTC(2019, 5, 6, 7, 8, 9);
        await t.setMtime(`${d}/m`, when + 400);
        const got = (await t.stat(`${d}/m`)).mtimeMs;
        expect(Math.floor(got / 1000)).toBe(when / 1000);
        await t.setMtime(d, when);
        expect(Math.floor((await t.stat(d)).mtimeMs / 1000)).toBe(when / 1000);
        await rejectsWith(t.setMtime(`${d}/none`, when), 'ENOT_FOUND');
      });

      it('freeSpace reports sane totals when supported', async () => {
        expect(t.capabilities.freeSpace).toBe(true);
        const fs = await t.freeSpace(fx.root);
        expect(fs.totalBytes).toBeGreaterThan(0);
        expect(fs.availableBytes).toBeGreaterThan(0);
        expect(fs.availableBytes).toBeLessThanOrEqual(fs.totalBytes);
        expect(fs.availablePercent).toBeGreaterThan(0);
        expect(fs.availablePercent).toBeLessThanOrEqual(100);
      });
    });

    describe('put', () => {
      it('sends a local file, a buffer and a replayable source; returns the DNA of the bytes sent; leaves no .part', async () => {
        const d = await far();
        const data = randomBytes(3 * 1024 * 1024 + 12345);
        const path = await localFile(data);
        const a = await t.put(path, `${d}/a.bin`);
        expect(a).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
        const b = await t.put(data, `${d}/b.bin`, { algorithm: 'sha256' });
        expect(b).toEqual({ dig: sha256(data), size: data.length, algorithm: 'sha256' });
        const c = await t.put(slowSource(data, 100_000, 0), `${d}/c.bin`);
        expect(c.dig).toBe(md5(data));
        for (const f of ['a.bin', 'b.bin', 'c.bin']) expect(md5(await readAll(t, `${d}/${f}`))).toBe(md5(data));
        expect((await t.list(d)).map((e) => e.name)).toEqual(['a.bin', 'b.bin', 'c.bin']);
      });

      it('sends empty and tiny files', async () => {
        const d = await far();
        expect(await t.put(Buffer.alloc(0), `${d}/empty`)).toEqual({ dig: md5(Buffer.alloc(0)), size: 0, algorithm: 'md5' });
        expect((await t.stat(`${d}/empty`)).size).toBe(0);
        expect((await t.put(await localFile(Buffer.alloc(0)), `${d}/empty2`)).size).toBe(0);
        expect((await readAll(t, `${d}/empty2`)).length).toBe(0);
        expect((await t.put(Buffer.from('x'), `${d}/one`)).dig).toBe(md5(Buffer.from('x')));
      });

      it('creates missing parents by default; with mkdirs:false a missing parent is ENOT_FOUND and nothing is created', async () => {
        const d = await far();
        await t.put(Buffer.from('deep'), `${d}/a/b/c/deep.txt`);
        expect((await readAll(t, `${d}/a/b/c/deep.txt`)).toString()).toBe('deep');
        await rejectsWith(t.put(Buffer.from('x'), `${d}/no/such/f`, { mkdirs: false }), 'ENOT_FOUND');
        expect(await t.exists(`${d}/no`)).toBeUndefined();
      });

      it('replaces an existing file atomically, sets mode and mtime', async () => {
        const d = await far();
        await t.put(Buffer.from('old content'), `${d}/f`);
        const mtimeMs = Date.UTC(2021, 1, 3, 4, 5, 6);
        await t.put(Buffer.from('new'), `${d}/f`, { mode: 0o600, mtimeMs });
        expect((await readAll(t, `${d}/f`)).toString()).toBe('new');
        const st = await t.stat(`${d}/f`);
        expect(st.mode).toBe(0o600);
        expect(st.mtimeMs).toBe(mtimeMs);
        expect((await t.list(d)).map((e) => e.name)).toEqual(['f']);
      });

      it('a stale PATH.part is replaced, and a symlink named PATH.part is never written through', async () => {
        const d = await far();
        await t.put(Buffer.from('leftover of a crash'), `${d}/stale.part`, { noOverwrite: true });
        await t.put(Buffer.from('whole'), `${d}/stale`);
        expect((await readAll(t, `${d}/stale`)).toString()).toBe('whole');
        if (t.capabilities.symlinks) {
          await t.put(Buffer.from('precious'), `${d}/victim`);
          await t.symlink(`${d}/victim`, `${d}/f.part`);
          await t.put(Buffer.from('new bytes'), `${d}/f`);
          expect((await readAll(t, `${d}/victim`)).toString()).toBe('precious');
          expect((await t.stat(`${d}/f`)).type).toBe('file');
          expect((await readAll(t, `${d}/f`)).toString()).toBe('new bytes');
        }
        expect((await t.list(d)).map((e) => e.name)).toEqual(t.capabilities.symlinks ? ['f', 'stale', 'victim'] : ['stale']);
      });

      it('two puts of one path at once: the one whose .part was taken fails, nothing is renamed under its DNA, the other lands whole', async () => {
        const d = await far();
        const a = randomBytes(3 * 1024 * 1024);
        const b = randomBytes(2 * 1024 * 1024);
        // A sends its first MiB and waits; B comes, takes PATH.part for its own and sends all of it.
        let releaseA!: () => void;
        const gateA = new Promise<void>((r) => (releaseA = r));
        let aSent = 0;
        const sourceA: ReplayableSource = {
          size: a.length,
          open: (offset) =>
            Readable.from(
              (async function* () {
                yield a.subarray(offset, offset + 1024 * 1024);
                await gateA;
                yield a.subarray(offset + 1024 * 1024);
              })(),
            ),
        };
        const putA = t.put(sourceA, `${d}/run.dat`, { onProgress: (p) => void (aSent = p.bytesDone) });
        putA.catch(() => {});
        for (let i = 0; i < 500 && aSent < 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 10));
        expect(aSent).toBe(1024 * 1024);
        const dnaB = await t.put(b, `${d}/run.dat`);
        expect(dnaB.dig).toBe(md5(b));
        releaseA();
        const err = await putA.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StowageError);
        // Local reports it as the file system's trouble (EIO), SSH as the far side's (ETRANSPORT).
        expect(['EIO', 'ETRANSPORT']).toContain((err as StowageError).code);
        expect((err as StowageError).message).toMatch(/replaced by another writer of the same path/);
        expect(md5(await readAll(t, `${d}/run.dat`))).toBe(md5(b));
        expect((await t.list(d)).map((e) => e.name)).toEqual(['run.dat']);
      });

      it('noOverwrite refuses an existing target with EEXIST and leaves it intact', async () => {
        const d = await far();
        await t.put(Buffer.from('keep me'), `${d}/f`);
        await rejectsWith(t.put(Buffer.from('other'), `${d}/f`, { noOverwrite: true }), 'EEXIST');
        expect((await readAll(t, `${d}/f`)).toString()).toBe('keep me');
        expect((await t.list(d)).map((e) => e.name)).toEqual(['f']);
        await t.put(Buffer.from('fresh'), `${d}/g`, { noOverwrite: true });
        expect((await readAll(t, `${d}/g`)).toString()).toBe('fresh');
      });

      it('expectedDna that does not match is EDIGEST_MISMATCH: nothing under the final name, the old file intact', async () => {
        const d = await far();
        await t.put(Buffer.from('previous'), `${d}/f`);
        const wrong = { dig: md5(Buffer.from('something else')), size: 8, algorithm: 'md5' as const };
        await rejectsWith(t.put(Buffer.from('replaced'), `${d}/f`, { expectedDna: wrong }), 'EDIGEST_MISMATCH');
        await rejectsWith(t.put(Buffer.from('replaced'), `${d}/g`, { expectedDna: wrong }), 'EDIGEST_MISMATCH');
        expect((await readAll(t, `${d}/f`)).toString()).toBe('previous');
        expect((await t.list(d)).map((e) => e.name)).toEqual(['f']);
        const right = { dig: md5(Buffer.from('replaced')), size: 8, algorithm: 'md5' as const };
        expect(await t.put(Buffer.from('replaced'), `${d}/f`, { expectedDna: right })).toEqual(right);
      });

      it('a missing local source is ENOT_FOUND; a source that breaks midway leaves nothing behind', async () => {
        const d = await far();
        await rejectsWith(t.put(join(fx.scratch, 'does-not-exist'), `${d}/f`), 'ENOT_FOUND');
        const data = randomBytes(2 * 1024 * 1024);
        await expect(t.put(slowSource(data, 64 * 1024, 0, 1024 * 1024), `${d}/broken`)).rejects.toThrow('source broke');
        expect(await t.list(d)).toEqual([]);
      });

      it('a replayable source shorter than its announced size is refused, nothing left', async () => {
        const d = await far();
        const data = randomBytes(100_000);
        const lying: ReplayableSource = { size: 200_000, open: (off) => Readable.from([data.subarray(off)]) };
        await expect(t.put(lying, `${d}/short`)).rejects.toBeInstanceOf(StowageError);
        expect(await t.list(d)).toEqual([]);
      });

      it('a local file cut, appended to or rewritten in place while it is sent is a retryable EIO naming it: nothing under the final name, no .part', async () => {
        const d = await far();
        const changes: Record<string, (src: string) => void> = {
          cut: (src) => truncateSync(src, 1024 * 1024),
          appended: (src) => appendFileSync(src, Buffer.alloc(8 * 1024 * 1024, 7)),
          rewritten: (src) => {
            const fd = openSync(src, 'r+');
            try {
              writeSync(fd, Buffer.from('X'), 0, 1, 0);
            } finally {
              closeSync(fd);
            }
          },
        };
        for (const [how, change] of Object.entries(changes)) {
          const src = await localFile(randomBytes(24 * 1024 * 1024), `daq-${how}-${++n}.dat`);
          // An mtime in the past, so a write in the same clock tick as the file's creation still moves it.
          await touch(src, Date.UTC(2020, 0, 1));
          let changed = false;
          const err = await rejectsWith(
            t.put(src, `${d}/${how}.dat`, {
              onProgress: () => {
                if (changed) return;
                changed = true;
                change(src);
              },
            }),
            'EIO',
          );
          expect(changed).toBe(true);
          expect(err.retryable, how).toBe(true);
          expect(err.message).toContain(src);
          expect(err.message).toMatch(/changed while it was being sent/);
          expect(await t.list(d), how).toEqual([]);
        }
      });

      it('reports byte progress up to the size and one item', async () => {
        const d = await far();
        const data = randomBytes(2 * 1024 * 1024);
        const seen: Progress[] = [];
        await t.put(await localFile(data), `${d}/p`, { onProgress: (p) => seen.push(p) });
        expect(seen.length).toBeGreaterThan(0);
        const last = seen[seen.length - 1]!;
        expect(last.bytesDone).toBe(data.length);
        expect(last.itemsDone).toBe(1);
        for (let i = 1; i < seen.length; i++) expect(seen[i]!.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
      });

      it('aborted before start: rejects with the reason, creates nothing', async () => {
        const d = await far();
        const ac = new AbortController();
        const reason = new Error('stop now');
        ac.abort(reason);
        await expect(t.put(Buffer.from('x'), `${d}/sub/f`, { signal: ac.signal })).rejects.toBe(reason);
        expect(await t.list(d)).toEqual([]);
      });

      it('aborted midway: rejects with the reason, removes the .part, nothing under the final name', async () => {
        const d = await far();
        const ac = new AbortController();
        const reason = new Error('abort midway');
        const data = randomBytes(4 * 1024 * 1024);
        let sent = 0;
        const src = slowSource(data, 64 * 1024, 5);
        const p = t.put(src, `${d}/f`, {
          signal: ac.signal,
          onProgress: (pr) => {
            sent = pr.bytesDone;
          },
        });
        setTimeout(() => ac.abort(reason), 150);
        await expect(p).rejects.toBe(reason);
        expect(sent).toBeLessThan(data.length);
        expect(await t.list(d)).toEqual([]);
      });

      it('a large buffer is sent in slices: progress comes before the end, and an abort at the first report rejects with the reason, leaving nothing', async () => {
        const d = await far();
        const data = randomBytes(64 * 1024 * 1024);
        const ac = new AbortController();
        const reason = new Error('enough');
        let first = -1;
        const p = t.put(data, `${d}/big`, {
          signal: ac.signal,
          onProgress: (pr) => {
            if (first >= 0) return;
            first = pr.bytesDone;
            ac.abort(reason);
          },
        });
        await expect(p).rejects.toBe(reason);
        expect(first).toBeLessThan(data.length);
        expect(await t.list(d)).toEqual([]);
      });

      it('unknown options are EBAD_CONFIG', async () => {
        const d = await far();
        await rejectsWith(t.put(Buffer.from('x'), `${d}/f`, { mdoe: 0o600 } as never), 'EBAD_CONFIG');
        expect(await t.list(d)).toEqual([]);
      });
    });

    describe('get and read streams', () => {
      it('get copies to a local file atomically with its DNA and mtime', async () => {
        const d = await far();
        const data = randomBytes(2 * 1024 * 1024 + 7);
        const mtimeMs = Date.UTC(2018, 3, 4, 5, 6, 7);
        await t.put(data, `${d}/f`, { mtimeMs });
        const local = join(fx.scratch, `got-${++n}`, 'f');
        const dna = await t.get(`${d}/f`, local);
        expect(dna).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
        expect(md5(await readFile(local))).toBe(md5(data));
        expect(Math.floor((await lstatLocal(local)).mtimeMs / 1000)).toBe(mtimeMs / 1000);
      });

      it('get of a file cut short while it is read is EIO, and nothing is left under the local name', async () => {
        const d = await far();
        const data = randomBytes(48 * 1024 * 1024);
        await t.put(data, `${d}/growing.dat`);
        const local = join(fx.scratch, `got-${++n}`, 'growing.dat');
        // Far and local sides are the same machine in this suite: the far file is cut at the first progress report.
        let cut = false;
        const err = await rejectsWith(
          t.get(`${d}/growing.dat`, local, {
            onProgress: () => {
              if (cut) return;
              cut = true;
              truncateSync(`${d}/growing.dat`, 1024 * 1024);
            },
          }),
          'EIO',
        );
        expect(cut).toBe(true);
        expect(err.retryable).toBe(true);
        expect(err.message).toMatch(/50331648/);
        await expect(lstatLocal(local)).rejects.toThrow();
        await expect(lstatLocal(local + '.part')).rejects.toThrow();
      });

      it('get of a file that grows while it is read is EIO, and nothing is left under the local name', async () => {
        const d = await far();
        const data = randomBytes(48 * 1024 * 1024);
        await t.put(data, `${d}/appended.dat`);
        const local = join(fx.scratch, `got-${++n}`, 'appended.dat');
        // Far and local sides are the same machine in this suite: 8 MiB are appended at the first progress report.
        let grown = false;
        const err = await rejectsWith(
          t.get(`${d}/appended.dat`, local, {
            onProgress: () => {
              if (grown) return;
              grown = true;
              appendFileSync(`${d}/appended.dat`, Buffer.alloc(8 * 1024 * 1024, 7));
            },
          }),
          'EIO',
        );
        expect(grown).toBe(true);
        expect(err.retryable).toBe(true);
        expect(err.message).toMatch(/50331648/);
        await expect(lstatLocal(local)).rejects.toThrow();
        await expect(lstatLocal(local + '.part')).rejects.toThrow();
      });

      it('get of a file rewritten in place while it is read (same size) is a retryable EIO, and nothing is left under the local name', async () => {
        const d = await far();
        await t.put(randomBytes(48 * 1024 * 1024), `${d}/rewritten.dat`, { mtimeMs: Date.UTC(2020, 0, 1) });
        const local = join(fx.scratch, `got-${++n}`, 'rewritten.dat');
        // Far and local sides are the same machine in this suite: the far file's last byte is rewritten at the first progress report.
        let rewritten = false;
        const err = await rejectsWith(
          t.get(`${d}/rewritten.dat`, local, {
            onProgress: () => {
              if (rewritten) return;
              rewritten = true;
              const fd = openSync(`${d}/rewritten.dat`, 'r+');
              try {
                writeSync(fd, Buffer.from('X'), 0, 1, 48 * 1024 * 1024 - 1);
              } finally {
                closeSync(fd);
              }
            },
          }),
          'EIO',
        );
        expect(rewritten).toBe(true);
        expect(err.retryable).toBe(true);
        expect(err.message).toMatch(/^Cannot get .*rewritten\.dat: it changed while it was read .*Nothing was written under .*; get it again/);
        await expect(lstatLocal(local)).rejects.toThrow();
        await expect(lstatLocal(local + '.part')).rejects.toThrow();
      });

      it('get of a missing file is ENOT_FOUND; a wrong expectedDna is EDIGEST_MISMATCH; neither leaves a local file', async () => {
        const d = await far();
        const local = join(fx.scratch, `got-${++n}`);
        await rejectsWith(t.get(`${d}/missing`, local), 'ENOT_FOUND');
        await t.put(Buffer.from('abc'), `${d}/f`);
        await rejectsWith(t.get(`${d}/f`, local, { expectedDna: { dig: md5(Buffer.from('abd')), size: 3, algorithm: 'md5' } }), 'EDIGEST_MISMATCH');
        await expect(lstatLocal(local)).rejects.toThrow();
        await expect(lstatLocal(local + '.part')).rejects.toThrow();
      });

      it('get aborted before start rejects with the reason', async () => {
        const d = await far();
        await t.put(Buffer.from('abc'), `${d}/f`);
        const ac = new AbortController();
        ac.abort(new Error('no'));
        await expect(t.get(`${d}/f`, join(fx.scratch, `got-${++n}`), { signal: ac.signal })).rejects.toThrow('no');
      });

      it('get aborted midway rejects with the reason and leaves no local file nor .part', async () => {
        const d = await far();
        await t.put(randomBytes(24 * 1024 * 1024), `${d}/big`);
        const local = join(fx.scratch, `got-${++n}`);
        const ac = new AbortController();
        const reason = new Error('enough of that');
        const p = t.get(`${d}/big`, local, {
          signal: ac.signal,
          onProgress: (pr) => {
            if (pr.bytesDone > 0 && pr.bytesDone < 24 * 1024 * 1024) ac.abort(reason);
          },
        });
        await expect(p).rejects.toBe(reason);
        await expect(lstatLocal(local)).rejects.toThrow();
        await expect(lstatLocal(local + '.part')).rejects.toThrow();
      });

      it('digest and freeSpace aborted before start reject with the reason', async () => {
        const d = await far();
        await t.put(Buffer.from('x'), `${d}/f`);
        const ac = new AbortController();
        const reason = new Error('not now');
        ac.abort(reason);
        await expect(t.digest(`${d}/f`, 'md5', { signal: ac.signal })).rejects.toBe(reason);
        await expect(t.freeSpace(d, { signal: ac.signal })).rejects.toBe(reason);
        await expect(t.list(d, { signal: ac.signal })).rejects.toBe(reason);
      });

      it('a read stream destroyed by its signal errors with the reason', async () => {
        const d = await far();
        await t.put(randomBytes(8 * 1024 * 1024), `${d}/big`);
        const ac = new AbortController();
        const reason = new Error('stop reading');
        let got = 0;
        const err = await (async () => {
          for await (const c of t.createReadStream(`${d}/big`, { signal: ac.signal })) {
            got += (c as Buffer).length;
            ac.abort(reason);
          }
        })().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBe(reason);
        expect(got).toBeGreaterThan(0);
        expect(got).toBeLessThan(8 * 1024 * 1024);
      });

      it('createReadStream reads the whole file, or from an offset; a missing file errors with ENOT_FOUND', async () => {
        const d = await far();
        const data = randomBytes(1024 * 1024 + 3);
        await t.put(data, `${d}/f`);
        expect((await readAll(t, `${d}/f`)).equals(data)).toBe(true);
        expect((await readAll(t, `${d}/f`, 1000)).equals(data.subarray(1000))).toBe(true);
        expect((await readAll(t, `${d}/f`, data.length)).length).toBe(0);
        const err = await readAll(t, `${d}/missing`).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StowageError);
        expect((err as StowageError).code).toBe('ENOT_FOUND');
      });
    });

    describe('remove and rename', () => {
      it('removes files, empty folders, trees with recursive; refuses a non-empty folder without it', async () => {
        const d = await far();
        await t.put(Buffer.from('1'), `${d}/tree/a/1`);
        await t.put(Buffer.from('2'), `${d}/tree/b/2`);
        await t.mkdir(`${d}/empty`);
        await t.put(Buffer.from('f'), `${d}/f`);
        await t.remove(`${d}/f`);
        await t.remove(`${d}/empty`);
        await expect(t.remove(`${d}/tree`)).rejects.toBeInstanceOf(StowageError);
        expect((await t.stat(`${d}/tree/a/1`)).size).toBe(1);
        await t.remove(`${d}/tree`, { recursive: true });
        expect(await t.list(d)).toEqual([]);
        await rejectsWith(t.remove(`${d}/missing`), 'ENOT_FOUND');
        await t.remove(`${d}/missing`, { force: true });
        await t.remove(`${d}/missing`, { recursive: true, force: true });
      });

      it('a recursive remove aborted once started rejects with the reason and stops: the tree is still there, and a remove without the signal finishes it', async () => {
        const d = await far();
        for (let i = 0; i < 8; i++) {
          await Promise.all(Array.from({ length: 40 }, (_, k) => t.put(Buffer.from(`${i}/${k}`), `${d}/tree/sub${i}/f${k}`)));
        }
        const ac = new AbortController();
        const reason = new Error('stop removing');
        const removing = t.remove(`${d}/tree`, { recursive: true, signal: ac.signal });
        // Started: past the check made before it starts.
        ac.abort(reason);
        await expect(removing).rejects.toBe(reason);
        expect((await t.stat(`${d}/tree`)).type).toBe('dir');
        await t.remove(`${d}/tree`, { recursive: true });
        expect(await t.list(d)).toEqual([]);
      });

      it('removing a symlink does not touch its target', async () => {
        if (!t.capabilities.symlinks) return;
        const d = await far();
        await t.put(Buffer.from('target'), `${d}/dir/file`);
        await t.symlink('dir', `${d}/link`);
        await t.remove(`${d}/link`, { recursive: true });
        expect((await readAll(t, `${d}/dir/file`)).toString()).toBe('target');
        expect((await t.list(d)).map((e) => e.name)).toEqual(['dir']);
      });

      it('a symlink to a folder named with a trailing / or /. is removed itself: the folder it points to (outside the tree) keeps its contents', async () => {
        if (!t.capabilities.symlinks) return;
        const d = await far();
        await t.put(Buffer.from('precious'), `${d}/outside/keep.dat`);
        await t.put(Buffer.from('nested'), `${d}/outside/sub/n.dat`);
        await t.mkdir(`${d}/tree`);
        for (const [suffix, recursive] of [
          ['/', true],
          ['/.', true],
          ['//', true],
          ['/./', true],
          ['/', false],
        ] as const) {
          await t.symlink(`${d}/outside`, `${d}/tree/link`);
          // stat does not follow the link either.
          expect((await t.stat(`${d}/tree/link${suffix}`)).type).toBe('symlink');
          await t.remove(`${d}/tree/link${suffix}`, { recursive });
          expect(await t.exists(`${d}/tree/link`), `link${suffix} removed`).toBeUndefined();
          expect((await readAll(t, `${d}/outside/keep.dat`)).toString(), `after removing link${suffix}`).toBe('precious');
          expect((await readAll(t, `${d}/outside/sub/n.dat`)).toString()).toBe('nested');
        }
        // A real folder named with a trailing slash is removed as before.
        await t.put(Buffer.from('x'), `${d}/tree/real/x`);
        await t.remove(`${d}/tree/real/`, { recursive: true });
        expect(await t.list(`${d}/tree`)).toEqual([]);
        // A last part "." or ".." names a folder above (or elsewhere): refused, nothing removed.
        await t.symlink(`${d}/outside/sub`, `${d}/tree/up`);
        await rejectsWith(t.remove(`${d}/tree/up/..`, { recursive: true }), 'EBAD_CONFIG');
        await rejectsWith(t.remove(`${d}/tree/..`, { recursive: true, force: true }), 'EBAD_CONFIG');
        expect((await t.list(`${d}/outside`)).map((e) => e.name)).toEqual(['keep.dat', 'sub']);
        expect((await t.list(d)).map((e) => e.name)).toEqual(['outside', 'tree']);
      });

      it('renames files and folders; replaces an existing file when atomicRename; a missing source is ENOT_FOUND', async () => {
        const d = await far();
        await t.put(Buffer.from('a'), `${d}/a`);
        await t.rename(`${d}/a`, `${d}/b`);
        expect((await t.list(d)).map((e) => e.name)).toEqual(['b']);
        await t.mkdir(`${d}/dir`);
        await t.rename(`${d}/dir`, `${d}/dir2`);
        expect((await t.stat(`${d}/dir2`)).type).toBe('dir');
        await t.put(Buffer.from('c'), `${d}/c`);
        expect(t.capabilities.atomicRename).toBe(true);
        await t.rename(`${d}/c`, `${d}/b`);
        expect((await readAll(t, `${d}/b`)).toString()).toBe('c');
        await rejectsWith(t.rename(`${d}/none`, `${d}/x`), 'ENOT_FOUND');
      });
    });

    describe('symlinks', () => {
      it('creates and reads symlinks (relative and absolute targets); an existing path is EEXIST', async () => {
        expect(t.capabilities.symlinks).toBe(true);
        const d = await far();
        await t.put(Buffer.from('x'), `${d}/target`);
        await t.symlink('target', `${d}/rel`);
        await t.symlink(`${d}/target`, `${d}/abs`);
        expect(await t.readlink(`${d}/rel`)).toBe('target');
        expect(await t.readlink(`${d}/abs`)).toBe(`${d}/target`);
        expect((await readAll(t, `${d}/rel`)).toString()).toBe('x');
        await rejectsWith(t.symlink('other', `${d}/rel`), 'EEXIST');
        await rejectsWith(t.readlink(`${d}/none`), 'ENOT_FOUND');
      });
    });

    describe('digest', () => {
      it('computes the DNA on the far side (md5 and sha256) equal to the local one; missing is ENOT_FOUND; a folder is refused', async () => {
        const d = await far();
        const data = randomBytes(1024 * 1024 + 99);
        await t.put(data, `${d}/f`);
        expect(await t.digest(`${d}/f`)).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
        expect(await t.digest(`${d}/f`, 'sha256')).toEqual({ dig: sha256(data), size: data.length, algorithm: 'sha256' });
        await rejectsWith(t.digest(`${d}/missing`), 'ENOT_FOUND');
        await expect(t.digest(d)).rejects.toBeInstanceOf(StowageError);
      });

      it('reports progress in phase hash: bytes out of the size, ending at the size with its one item done', async () => {
        const d = await far();
        const data = randomBytes(3 * 1024 * 1024 + 7);
        await t.put(data, `${d}/f`);
        const seen: Progress[] = [];
        expect(await t.digest(`${d}/f`, 'md5', { onProgress: (p) => seen.push(p) })).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
        expect(seen.length).toBeGreaterThan(0);
        for (const [i, p] of seen.entries()) {
          expect(p.phase).toBe('hash');
          expect(p.bytesTotal).toBe(data.length);
          expect(p.bytesDone).toBeLessThanOrEqual(data.length);
          if (i > 0) expect(p.bytesDone).toBeGreaterThanOrEqual(seen[i - 1]!.bytesDone);
        }
        expect(seen.at(-1)).toMatchObject({ bytesDone: data.length, itemsDone: 1, itemsTotal: 1 });
      });
    });

    describe('awkward names', () => {
      it("handles names with spaces, quotes, $(...), backticks, newlines and a leading dash", async () => {
        const d = await far();
        const names = ["with space", "it's", 'dq"uote', '$(touch PWNED)', '`touch PWNED2`', 'new\nline', '-rf', 'ünïcødé ✓'];
        for (const name of names) {
          const data = Buffer.from(`content of ${name}`);
          const dna = await t.put(data, `${d}/${name}`);
          expect(dna.dig).toBe(md5(data));
          expect((await t.digest(`${d}/${name}`)).dig).toBe(md5(data));
          expect((await readAll(t, `${d}/${name}`)).equals(data)).toBe(true);
        }
        expect((await t.list(d)).map((e) => e.name).sort()).toEqual([...names].sort());
        const fs = await t.freeSpace(`${d}/with space`);
        expect(fs.totalBytes).toBeGreaterThan(0);
        for (const name of names) await t.remove(`${d}/${name}`);
        expect(await t.list(d)).toEqual([]);
        expect(await t.exists(`${fx.root}/PWNED`)).toBeUndefined();
      });
    });

    describe('locks on the far tree', () => {
      it('LockDir plants LOCKED/owner.json through transportLockFs, refuses a second holder, releases', async () => {
        const d = await far();
        const fs = transportLockFs(t);
        const a = new LockDir(d, { fs, purpose: 'conformance' });
        await a.acquire();
        expect((await t.stat(`${d}/LOCKED`)).type).toBe('dir');
        const owner = JSON.parse((await readAll(t, `${d}/LOCKED/owner.json`)).toString()) as { purpose: string };
        expect(owner.purpose).toBe('conformance');
        const b = new LockDir(d, { fs });
        await rejectsWith(b.acquire(), 'ELOCKED');
        await a.release();
        expect(await t.exists(`${d}/LOCKED`)).toBeUndefined();
        await b.acquire();
        await b.release();
        // LockDir's own `transport` option takes the transport itself.
        const c = new LockDir(d, { transport: t, purpose: 'via transport option' });
        await c.acquire();
        expect((JSON.parse((await readAll(t, `${d}/LOCKED/owner.json`)).toString()) as { purpose: string }).purpose).toBe('via transport option');
        await c.release();
        expect(await t.exists(`${d}/LOCKED`)).toBeUndefined();
      });

      it('createFile is exclusive and rename never replaces', async () => {
        const d = await far();
        const fs = transportLockFs(t);
        await fs.createFile(`${d}/o`, Buffer.from('one'));
        await rejectsWith(fs.createFile(`${d}/o`, Buffer.from('two')), 'EEXIST');
        expect(Buffer.from(await fs.readFile(`${d}/o`)).toString()).toBe('one');
        const results = await Promise.allSettled([1, 2, 3, 4].map((i) => fs.createFile(`${d}/race`, Buffer.from(String(i)))));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        await fs.createFile(`${d}/p`, Buffer.from('p'));
        await rejectsWith(fs.rename(`${d}/p`, `${d}/o`), 'EEXIST');
        await fs.rename(`${d}/p`, `${d}/q`);
        expect((await t.list(d)).map((e) => e.name)).toEqual(['o', 'q', 'race']);
        await rejectsWith(fs.readFile(`${d}/none`), 'ENOT_FOUND');
        await fs.remove(`${d}/none`);
        await fs.setMtime(`${d}/q`, Date.UTC(2020, 0, 1));
        expect((await fs.stat(`${d}/q`)).mtimeMs).toBe(Date.UTC(2020, 0, 1));
      });
    });

    it('close is idempotent', async () => {
      // Last: the fixture's cleanup closes again.
      await t.close();
      await t.close();
    });
  });
}

/** Sets a local file's mtime (helper for fixtures). */
export async function touch(path: string, mtimeMs: number): Promise<void> {
  await utimes(path, new Date(mtimeMs), new Date(mtimeMs));
}
