/**
 * The Partitioner against a real server, the same checks for each engine:
 * dump, restore into a second database, compare; incremental runs; rows
 * committed during a dump; replacing restores; abort; mutants.
 */
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TableSource } from '../../../src/db/index.js';
import { Archiver } from '../../../src/archive/index.js';
import { Catalog } from '../../../src/catalog/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import type { Progress } from '../../../src/progress.js';
import { stopAtLoad } from '../../unit/partition/helpers.js';
import { PAYLOAD, PER_SEQNO, VLD, archiveEntries, fillSql, keyCounts, listFiles, pairDdl, rejectsWith, type Engine } from './helpers.js';

/** What the suite needs from an engine's harness. */
export interface EngineHarness {
  /** The engine. */
  readonly engine: Engine;
  /** A fresh empty database; its name. */
  freshDb(): Promise<string>;
  /** A TableSource on a database. */
  source(database: string): TableSource;
  /** Runs statements in a database. */
  exec(database: string, statements: string[]): Promise<void>;
  /** A connection committing one SEQNO with its payload per call. */
  writer(database: string): Promise<{ insertPair(seqno: number): Promise<void>; holdPair(seqno: number): Promise<{ commit(): Promise<void> }>; close(): Promise<void> }>;
}

const PAIR = [VLD, PAYLOAD];

/** Registers the suite. */
export function partitionSuite(h: () => EngineHarness): void {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tempDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'stowage-part-it-'));
    dirs.push(d);
    return d;
  };
  /** A database holding the pair with SEQNO 1..n. */
  const pairDb = async (n: number): Promise<string> => {
    const e = h();
    const db = await e.freshDb();
    await e.exec(db, [...pairDdl(e.engine), ...(n > 0 ? fillSql(e.engine, 1, n) : [])]);
    return db;
  };

  describe('Partitioner', () => {
    it('dumps the pair range by range, restores it into an empty database, and the copies compare equal', async () => {
      const e = h();
      const srcDb = await pairDb(12_000);
      const out = await tempDir();
      await using src = e.source(srcDb);
      const p = new Partitioner(src, { tables: PAIR, rowsPerPartition: 2500, outDir: out });
      const r = await p.dump({ concurrency: 2 });
      // The range below the tail stays partial (settleRanges: 1).
      expect(r.written.map((w) => [w.lo, w.hi, w.complete])).toEqual([
        [1n, 2500n, true],
        [2501n, 5000n, true],
        [5001n, 7500n, true],
        [7501n, 10000n, false],
        [10001n, 12500n, false],
      ]);
      expect(r.rows).toBe(12_000 * (1 + PER_SEQNO));
      for (const w of r.written) expect((await Archiver.verify(w.path, { requireSidecar: true })).ok).toBe(true);
      const m = JSON.parse((await archiveEntries(r.written[0]!.path)).get('manifest.json')!.toString()) as { engine: string; source: string };
      expect(m.engine).toBe(e.engine);
      expect(m.source).toBe(src.name);

      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      const rr = await Partitioner.restore(dst, out, { concurrency: 2 });
      expect(rr.tables).toEqual([
        { name: PAYLOAD, rows: 12_000 * PER_SEQNO, partitions: 5, created: true },
        { name: VLD, rows: 12_000, partitions: 5, created: true },
      ]);
      expect(await dst.schema(PAYLOAD)).toBe(await src.schema(PAYLOAD));
      for (const t of PAIR) {
        const c = await Partitioner.compare(src, dst, t, { rowsPerPartition: 2500 });
        expect(c.equal, t).toBe(true);
        expect(c.ranges).toHaveLength(5);
        expect(c.ranges.every((x) => x.a.digest === x.b.digest && x.a.count > 0)).toBe(true);
      }
    });

    it('runs incrementally: new complete ranges and the tail, then nothing (Catalog unchanged)', async () => {
      const e = h();
      const db = await pairDb(5200);
      const out = await tempDir();
      await using src = e.source(db);
      using catalog = new Catalog(join(out, 'stowage.catalog'));
      const p = (): Partitioner => new Partitioner(src, { tables: PAIR, rowsPerPartition: 1000, outDir: join(out, 'parts'), catalog, settleRanges: 0 });
      const r1 = await p().dump();
      expect(r1.written.map((w) => w.lo)).toEqual([1n, 1001n, 2001n, 3001n, 4001n, 5001n]);
      await e.exec(db, fillSql(e.engine, 5201, 7100));
      const r2 = await p().dump();
      expect(r2.written.map((w) => [w.lo, w.complete])).toEqual([
        [5001n, true],
        [6001n, true],
        [7001n, false],
      ]);
      const files = await listFiles(join(out, 'parts'));
      const records = { a: catalog.partitions(src.name, PAYLOAD), b: catalog.archives() };
      const r3 = await p().dump();
      expect(r3.written).toEqual([]);
      expect(r3.unchanged).toEqual([{ lo: 7001n, hi: 8000n }]);
      expect(await listFiles(join(out, 'parts'))).toEqual(files);
      expect(catalog.partitions(src.name, PAYLOAD)).toEqual(records.a);
      expect(catalog.archives()).toEqual(records.b);
    });

    it('a pair committed out of key order (SEQNO 2000 after 2001, two writers) lands in a later run', async () => {
      const e = h();
      const db = await pairDb(1500);
      const out = await tempDir();
      await using src = e.source(db);
      const slow = await e.writer(db);
      const fast = await e.writer(db);
      try {
        const held = await slow.holdPair(2000);
        await fast.insertPair(2001);
        const p = (): Partitioner => new Partitioner(src, { tables: PAIR, rowsPerPartition: 1000, outDir: out });
        const r1 = await p().dump();
        expect(r1.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([
          [1n, true, 1000],
          [1001n, false, 500],
          [2001n, false, 1],
        ]);
        await held.commit();
        await e.exec(db, fillSql(e.engine, 2002, 3500));
        const r2 = await p().dump();
        expect(r2.written.map((w) => [w.lo, w.complete, w.tables[0]!.rows])).toEqual([
          [1001n, true, 501],
          [2001n, false, 1000],
          [3001n, false, 500],
        ]);
        const dstDb = await e.freshDb();
        await using dst = e.source(dstDb);
        await Partitioner.restore(dst, out);
        for (const t of PAIR) expect((await Partitioner.compare(src, dst, t)).equal, t).toBe(true);
      } finally {
        await slow.close();
        await fast.close();
      }
    });

    it('reads each range in one snapshot: pairs committed during the dump land whole, in this run or the next', async () => {
      const e = h();
      const db = await pairDb(6000);
      const out = await tempDir();
      await using src = e.source(db);
      const w = await e.writer(db);
      let next = 6001;
      let stop = false;
      const writing = (async () => {
        // The tail keeps filling while the dump runs: each SEQNO and its payload in one transaction.
        while (!stop) await w.insertPair(next++);
      })();
      const p = new Partitioner(src, { tables: PAIR, rowsPerPartition: 500, outDir: out });
      let r;
      try {
        r = await p.dump({ concurrency: 2 });
      } finally {
        stop = true;
        await writing;
        await w.close();
      }
      expect(next).toBeGreaterThan(6001);
      for (const x of r.written) {
        const entries = await archiveEntries(x.path);
        const v = keyCounts(entries.get(`${VLD}/rows.tsv`)!);
        const pay = keyCounts(entries.get(`${PAYLOAD}/rows.tsv`)!);
        expect([...pay.keys()], x.path).toEqual([...v.keys()]);
        for (const [k, n] of pay) expect(n, `SEQNO ${k} in ${x.path}`).toBe(PER_SEQNO);
        for (const n of v.values()) expect(n).toBe(1);
      }
      // Everything committed meanwhile is in the next run, and the restored copy equals the source.
      await p.dump({ concurrency: 2 });
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      await Partitioner.restore(dst, out);
      for (const t of PAIR) expect((await Partitioner.compare(src, dst, t, { rowsPerPartition: 500 })).equal, t).toBe(true);
      expect((await dst.keyRange(VLD, 'SEQNO')).hi).toBe(BigInt(next - 1));
    });

    it('dumps a single table in runs of ranges (one query each) while rows keep arriving, and restores it equal', async () => {
      const e = h();
      const db = await pairDb(9000);
      const out = await tempDir();
      await using src = e.source(db);
      const w = await e.writer(db);
      let next = 9001;
      let stop = false;
      const writing = (async () => {
        while (!stop) await w.insertPair(next++);
      })();
      const p = new Partitioner(src, { table: PAYLOAD, rowsPerPartition: 1000, outDir: out, spoolMemoryBytes: 64 * 1024 });
      let r;
      try {
        r = await p.dump({ concurrency: 2 });
      } finally {
        stop = true;
        await writing;
        await w.close();
      }
      expect(r.written.length).toBeGreaterThanOrEqual(9);
      for (const x of r.written) {
        const rows = (await archiveEntries(x.path)).get(`${PAYLOAD}/rows.tsv`)!;
        const keys = keyCounts(rows);
        for (const [k, n] of keys) {
          expect(n, `SEQNO ${k} in ${x.path}`).toBe(PER_SEQNO);
          expect(BigInt(k) >= x.lo && BigInt(k) <= x.hi, `SEQNO ${k} in ${x.path}`).toBe(true);
        }
        expect(x.tables[0]!.rows).toBe(rows.toString().split('\n').length - 1);
      }
      expect(r.written.slice(0, 9).map((x) => x.tables[0]!.rows)).toEqual(Array(9).fill(1000 * PER_SEQNO));
      await p.dump();
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      await Partitioner.restore(dst, out, { concurrency: 2 });
      expect((await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 1000 })).equal).toBe(true);
    });

    it('a dump writes its first range before the rows are counted, and its plan then has the count; a failed dump stops the count and returns after it', async () => {
      const e = h();
      const db = await pairDb(3000);
      await using src = e.source(db);
      const out = await tempDir();
      let tableDir = join(out, PAYLOAD);
      const archived = async (): Promise<boolean> => (await readdir(tableDir).catch(() => [] as string[])).some((f) => f.endsWith('.tar.gz'));
      /** The count (keyRange) waits until an archive is there (10 s at most), or its signal aborts. */
      const log: { archivedFirst: boolean[]; aborted: boolean[]; settled: number } = { archivedFirst: [], aborted: [], settled: 0 };
      let failSnapshots = false;
      const held = new Proxy(src, {
        get(target, prop) {
          const v = Reflect.get(target, prop, target) as unknown;
          if (typeof v !== 'function') return v;
          const f = (v as (...args: unknown[]) => Promise<unknown>).bind(target);
          if (prop === 'snapshot') return (...args: unknown[]) => (failSnapshots ? Promise.reject(new Error('snapshot refused by the test')) : f(...args));
          if (prop !== 'keyRange') return f;
          return async (table: string, key: string, o?: { signal?: AbortSignal }) => {
            try {
              const t0 = Date.now();
              while (!(await archived()) && !o?.signal?.aborted && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
              log.archivedFirst.push(await archived());
              log.aborted.push(o?.signal?.aborted === true);
              return await f(table, key, o);
            } finally {
              log.settled++;
            }
          };
        },
      });
      const r = await new Partitioner(held, { table: PAYLOAD, rowsPerPartition: 500, outDir: out }).dump({ concurrency: 2 });
      expect(log.archivedFirst).toEqual([true]);
      expect(r.written).toHaveLength(6);
      expect(r.plan.keyRange).toEqual({ lo: 1n, hi: 3000n, rows: 3000 * PER_SEQNO });
      expect(r.rows).toBe(3000 * PER_SEQNO);

      // A dump that fails once planned: the count is stopped, and the dump reports its failure only once the count is over.
      failSnapshots = true;
      const out2 = await tempDir();
      tableDir = join(out2, PAYLOAD);
      const failed = new Partitioner(held, { table: PAYLOAD, rowsPerPartition: 500, outDir: out2 }).dump({ concurrency: 2, incremental: false });
      const settledWhenFailed = await failed.then(
        () => -1,
        (err: unknown) => {
          expect(String(err)).toMatch(/snapshot refused by the test/);
          return log.settled;
        },
      );
      expect(settledWhenFailed).toBe(2);
      expect(log.aborted).toEqual([false, true]);
    });

    it('restores over existing rows, range by range in parallel, replacing them', async () => {
      const e = h();
      const db = await pairDb(4000);
      const out = await tempDir();
      await using src = e.source(db);
      await new Partitioner(src, { tables: PAIR, rowsPerPartition: 500, outDir: out }).dump();
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      await Partitioner.restore(dst, out, { concurrency: 2 });
      const q = e.engine === 'mysql' ? '`' : '"';
      await e.exec(dstDb, [`UPDATE ${q}Calib${q} SET ${q}GAIN${q} = -1 WHERE ${q}SEQNO${q} IN (17, 3999)`, `DELETE FROM ${q}CalibVld${q} WHERE ${q}SEQNO${q} = 2222`]);
      const broken = await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 500 });
      expect(broken.differences.map((d) => [d.key, d.kind])).toEqual([
        [17n, 'different'],
        [3999n, 'different'],
      ]);
      const r = await Partitioner.restore(dst, out, { concurrency: 2 });
      expect(r.tables.every((t) => !t.created)).toBe(true);
      for (const t of PAIR) expect((await Partitioner.compare(src, dst, t, { rowsPerPartition: 500 })).equal, t).toBe(true);
    });

    it('aborted midway, a restore leaves each range loaded whole or not at all', async () => {
      const e = h();
      const db = await pairDb(6000);
      const out = await tempDir();
      await using src = e.source(db);
      await new Partitioner(src, { table: PAYLOAD, rowsPerPartition: 500, outDir: out }).dump();
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      const ac = new AbortController();
      const reason = new Error('operator stop');
      await expect(Partitioner.restore(dst, out, { concurrency: 2, signal: ac.signal, onProgress: (p) => p.phase === 'load' && p.itemsDone >= 2 && ac.abort(reason) })).rejects.toBe(reason);
      const c = await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 500, maxDifferences: 0 });
      const loaded = c.ranges.filter((r) => r.equal);
      const missing = c.ranges.filter((r) => !r.equal);
      expect(loaded.length).toBeGreaterThanOrEqual(2);
      expect(missing.length).toBeGreaterThan(0);
      for (const r of missing) expect(r.b.count, `range ${r.lo}`).toBe(0);
      // Restoring again completes the copy.
      await Partitioner.restore(dst, out);
      expect((await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 500 })).equal).toBe(true);
    });

    it('stopped in the middle of a group archive, a restore leaves no range of the created validity table without its payload', async () => {
      const e = h();
      const db = await pairDb(3000);
      const out = await tempDir();
      await using src = e.source(db);
      await new Partitioner(src, { tables: PAIR, rowsPerPartition: 500, outDir: out }).dump();
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      const ac = new AbortController();
      const reason = new Error('operator stop');
      // Stopped as the second archive's payload starts loading: its validity rows are committed by then.
      const stopping = stopAtLoad(dst, PAYLOAD, 2, () => ac.abort(reason));
      await expect(Partitioner.restore(stopping.target, out, { concurrency: 1, signal: ac.signal })).rejects.toBe(reason);
      const vld = await Partitioner.compare(src, dst, VLD, { rowsPerPartition: 500, maxDifferences: 0 });
      const pay = await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 500, maxDifferences: 0 });
      expect(vld.ranges.map((r) => r.b.count > 0)).toEqual(pay.ranges.map((r) => r.b.count > 0));
      expect(vld.ranges.filter((r) => r.equal)).toHaveLength(1); // the first archive, whole
      await Partitioner.restore(dst, out);
      expect((await Partitioner.compare(src, dst, VLD, { rowsPerPartition: 500 })).equal).toBe(true);
      expect((await Partitioner.compare(src, dst, PAYLOAD, { rowsPerPartition: 500 })).equal).toBe(true);
    });

    it('refuses a mutant before loading anything', async () => {
      const e = h();
      const db = await pairDb(1500);
      const out = await tempDir();
      await using src = e.source(db);
      const r = await new Partitioner(src, { tables: PAIR, rowsPerPartition: 1000, outDir: out }).dump();
      const victim = r.written[1]!.path;
      const buf = await readFile(victim);
      buf[Math.floor(buf.length / 2)]! ^= 0x20;
      await writeFile(victim, buf);
      const dstDb = await e.freshDb();
      await using dst = e.source(dstDb);
      const err = await rejectsWith(Partitioner.restore(dst, out), 'EDIGEST_MISMATCH');
      expect(err.message).toContain(victim);
      expect(await dst.tables()).toEqual([]);
    });

    it('aborted midway, leaves no partial archive; reports progress', async () => {
      const e = h();
      const db = await pairDb(8000);
      const out = await tempDir();
      await using src = e.source(db);
      const ac = new AbortController();
      const reason = new Error('operator stop');
      const p = new Partitioner(src, { tables: PAIR, rowsPerPartition: 500, outDir: out });
      await expect(p.dump({ concurrency: 2, signal: ac.signal, onProgress: (x) => x.itemsDone >= 3 && ac.abort(reason) })).rejects.toBe(reason);
      const files = await listFiles(out);
      expect(files.filter((f) => !/\.tar\.gz(\.dna)?$/.test(f))).toEqual([]);
      const archives = files.filter((f) => f.endsWith('.tar.gz'));
      expect(archives.length).toBeGreaterThanOrEqual(3);
      expect(archives.length).toBeLessThan(16);
      for (const a of archives) expect((await Archiver.verify(join(out, a), { requireSidecar: true })).ok).toBe(true);
      const seen: Progress[] = [];
      const r = await p.dump({ onProgress: (x) => seen.push(x) });
      expect(r.written.length + archives.length).toBe(16);
      expect(seen.at(-1)).toMatchObject({ phase: 'dump', itemsDone: r.written.length, itemsTotal: r.written.length, bytesDone: r.bytes });
    });
  });
}
