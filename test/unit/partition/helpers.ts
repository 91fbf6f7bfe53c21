/** Shared helpers of the Partitioner unit tests: SQLite conditions-style databases, temp dirs, error assertions. */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { readArchive } from '../../../src/archive/archive-reader.js';
import type { TableSource } from '../../../src/db/index.js';
import { tempDir as dbTempDir } from '../db/helpers.js';

// Temp dirs and error assertions are the db tests' helpers (one copy).
export { rejectsWith, throwsWith } from '../db/helpers.js';

/** A fresh temp dir, removed after the test. */
export function tempDir(label = 'part'): Promise<string> {
  return dbTempDir(label);
}

/** DDL of a Daya Bay-style pair: a validity table keyed by SEQNO and a payload table with several rows per SEQNO. */
export const PAIR_DDL = `
  CREATE TABLE "CalibVld" ("SEQNO" INTEGER PRIMARY KEY, "TIMESTART" TEXT NOT NULL, "TIMEEND" TEXT NOT NULL, "SITEMASK" INTEGER, "VERSIONDATE" TEXT);
  CREATE TABLE "Calib" ("SEQNO" INTEGER NOT NULL, "ROW_COUNTER" INTEGER NOT NULL, "PMTID" INTEGER, "GAIN" REAL, "NOTE" TEXT, "RAW" BLOB, PRIMARY KEY ("SEQNO", "ROW_COUNTER"));
`;

/** Creates an SQLite file (WAL) holding the pair, optionally with rows for `seqnos` (payload: `perSeqno` rows each). */
export function makePairDb(file: string, seqnos: Iterable<number | bigint> = [], perSeqno = 2): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(PAIR_DDL);
  db.close();
  insertPair(file, seqnos, perSeqno);
}

/** Inserts validity and payload rows for `seqnos`, each SEQNO in one transaction with its payload. */
export function insertPair(file: string, seqnos: Iterable<number | bigint>, perSeqno = 2): void {
  const db = new Database(file);
  db.defaultSafeIntegers(true);
  const vld = db.prepare('INSERT INTO "CalibVld" VALUES (?, ?, ?, ?, ?)');
  const pay = db.prepare('INSERT INTO "Calib" VALUES (?, ?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (const s of seqnos) {
      const n = BigInt(s);
      vld.run(n, `2011-08-15 00:00:${String(n % 60n).padStart(2, '0')}`, '2038-01-19 03:14:07', 127n, 'tab\there, new\nline \\ back');
      for (let r = 1n; r <= BigInt(perSeqno); r++) {
        pay.run(n, r, (n % 1000000n) * 100n + r, Number(n) / 7 + Number(r), r % 2n === 0n ? null : `pmt ${n}/${r} ünïcode`, Buffer.from([Number(n % 256n), 0, 9, 10, 92, Number(r % 256n)]));
      }
    }
  })();
  db.close();
}

/** Runs SQL on a database file. */
export function exec(file: string, sql: string, ...params: unknown[]): void {
  const db = new Database(file);
  try {
    if (params.length === 0) db.exec(sql);
    else db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

/** Counts rows. */
export function count(file: string, table: string): number {
  const db = new Database(file, { readonly: true });
  try {
    return Number((db.prepare(`SELECT count(*) AS n FROM "${table}"`).get() as { n: number }).n);
  } finally {
    db.close();
  }
}

/** Every file under `dir`, relative, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(d, e.name), rel + e.name + '/');
      else out.push(rel + e.name);
    }
  };
  await walk(dir, '');
  return out.sort();
}

/** mtimes (ms) of every file under `dir`. */
export async function mtimes(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const f of await listFiles(dir)) out[f] = (await stat(join(dir, f))).mtimeMs;
  return out;
}

/** The entries of an archive with their content. */
export async function archiveEntries(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  await readArchive(file, { phase: 'test' }, async (e, data) => {
    const parts: Buffer[] = [];
    for await (const c of data as AsyncIterable<Buffer>) parts.push(c);
    out.set(e.name, Buffer.concat(parts));
  });
  return out;
}

/**
 * `target` whose `nth` load of `table` first calls `stop` (a restore aborted
 * as that load starts: the loads before it, of that archive too, are
 * committed by then): a fault injector over a real source. `loads()` says
 * how many loads of `table` were started.
 *
 * @param target - the real target
 * @param table - the table whose load triggers the stop
 * @param nth - which load of it (1-based)
 * @param stop - what to do (abort the restore's signal)
 */
export function stopAtLoad(target: TableSource, table: string, nth: number, stop: () => void): { target: TableSource; loads(): number } {
  let n = 0;
  const wrapped = new Proxy(target, {
    get: (t, p) => {
      if (p === 'load') {
        return (name: string, input: never, options: never) => {
          if (name === table && ++n === nth) stop();
          return t.load(name, input, options);
        };
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  return { target: wrapped, loads: () => n };
}
