/**
 * Helpers of the Partitioner integration tests: a Daya Bay-style pair of
 * tables (a validity table keyed by SEQNO, a payload table with three rows
 * per SEQNO) with mixed types, filled server-side, on MariaDB and PostgreSQL.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { readArchive } from '../../../src/archive/archive-reader.js';

/** The engines under test. */
export type Engine = 'mysql' | 'postgres';

/** The pair's table names. */
export const VLD = 'CalibVld';
/** The payload table. */
export const PAYLOAD = 'Calib';
/** Payload rows per SEQNO. */
export const PER_SEQNO = 3;

/** DDL of the pair. */
export function pairDdl(engine: Engine): string[] {
  if (engine === 'mysql') {
    return [
      'CREATE TABLE `CalibVld` (`SEQNO` INT NOT NULL PRIMARY KEY, `TIMESTART` DATETIME(6) NOT NULL, `TIMEEND` DATETIME NOT NULL, `SITEMASK` TINYINT, `VERSIONDATE` DATETIME, `INSERTDATE` TIMESTAMP(3) NULL) ENGINE=InnoDB',
      'CREATE TABLE `Calib` (`SEQNO` INT NOT NULL, `ROW_COUNTER` INT NOT NULL, `PMTID` BIGINT UNSIGNED, `GAIN` DOUBLE, `OFFSET` DECIMAL(14,5), `NOTE` TEXT, `RAW` BLOB, PRIMARY KEY (`SEQNO`, `ROW_COUNTER`)) ENGINE=InnoDB',
    ];
  }
  return [
    'CREATE TABLE "CalibVld" ("SEQNO" integer PRIMARY KEY, "TIMESTART" timestamp(6) NOT NULL, "TIMEEND" timestamp NOT NULL, "SITEMASK" smallint, "VERSIONDATE" timestamp, "INSERTDATE" timestamptz)',
    'CREATE TABLE "Calib" ("SEQNO" integer NOT NULL, "ROW_COUNTER" integer NOT NULL, "PMTID" bigint, "GAIN" double precision, "OFFSET" numeric(14,5), "NOTE" text, "RAW" bytea, PRIMARY KEY ("SEQNO", "ROW_COUNTER"))',
  ];
}

/**
 * SQL filling SEQNO `from`..`to` of the pair server-side (MariaDB's SEQUENCE
 * engine, PostgreSQL's generate_series): NULLs, tabs, newlines, backslashes,
 * unicode, bytes, doubles and big integers included.
 */
export function fillSql(engine: Engine, from: number, to: number): string[] {
  if (engine === 'mysql') {
    return [
      `INSERT INTO CalibVld SELECT seq, TIMESTAMP'2011-08-15 00:00:00.000001' + INTERVAL seq SECOND, '2038-01-19 03:14:07', seq % 128, IF(seq % 5 = 0, NULL, TIMESTAMP'2012-01-01 00:00:00' + INTERVAL seq MINUTE), TIMESTAMP'2020-01-01 00:00:00.123' + INTERVAL seq SECOND FROM seq_${from}_to_${to}`,
      `INSERT INTO Calib SELECT s.seq, r.seq, 9007199254740993 + s.seq * 10 + r.seq, s.seq / 7e0 + r.seq, CAST(s.seq * 1.25 - 1000 AS DECIMAL(14,5)),
        CASE r.seq WHEN 1 THEN CONCAT('pmt ', s.seq, '\\ttab\\nnewline \\\\ back ünïcode 大亚湾') WHEN 2 THEN NULL ELSE '' END,
        IF(r.seq = 2, NULL, UNHEX(CONCAT(LPAD(HEX(s.seq % 256), 2, '0'), '00090A5C0D', LPAD(HEX(r.seq), 2, '0'))))
        FROM seq_${from}_to_${to} s, seq_1_to_${PER_SEQNO} r`,
    ];
  }
  return [
    `INSERT INTO "CalibVld" SELECT s, TIMESTAMP '2011-08-15 00:00:00.000001' + s * INTERVAL '1 second', '2038-01-19 03:14:07', s % 128, CASE WHEN s % 5 = 0 THEN NULL ELSE TIMESTAMP '2012-01-01' + s * INTERVAL '1 minute' END, TIMESTAMPTZ '2020-01-01 00:00:00.123+00' + s * INTERVAL '1 second' FROM generate_series(${from}, ${to}) s`,
    `INSERT INTO "Calib" SELECT s, r, 9007199254740993 + s * 10 + r, s / 7.0::float8 + r, (s * 1.25 - 1000)::numeric(14,5),
      CASE r WHEN 1 THEN 'pmt ' || s || E'\\ttab\\nnewline \\\\ back ünïcode 大亚湾' WHEN 2 THEN NULL ELSE '' END,
      CASE WHEN r = 2 THEN NULL ELSE decode(lpad(to_hex(s % 256), 2, '0') || '00090a5c0d' || lpad(to_hex(r), 2, '0'), 'hex') END
      FROM generate_series(${from}, ${to}) s, generate_series(1, ${PER_SEQNO}) r`,
  ];
}

/** Every file under `dir`, relative, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(join(d, e.name), rel + e.name + '/');
      else out.push(rel + e.name);
    }
  };
  await walk(dir, '');
  return out.sort();
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

/** SEQNO → number of rows, from bulk text whose first field is the key. */
export function keyCounts(rows: Buffer): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of rows.toString('latin1').split('\n')) {
    if (line === '') continue;
    const k = line.slice(0, line.indexOf('\t'));
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** Asserts that `p` rejects with a StowageError of `code`. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a StowageError ${code}, got ${String(err)}`).toBeInstanceOf(StowageError);
  expect((err as StowageError).code, (err as Error).message).toBe(code);
  return err as StowageError;
}
