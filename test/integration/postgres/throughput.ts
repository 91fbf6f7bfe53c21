/**
 * Rough rows/s of rows() and load() for MysqlSource and PostgresSource on a
 * 200k-row, 8-column table (ints, bigint, double, decimal, varchar, text,
 * datetime, blob), against throwaway servers, with the engines' own clients
 * as a yardstick (`mariadb --quick -B` and `psql -c "COPY ... TO STDOUT"`).
 * Not a test and not the benchmark: a quick measurement.
 *
 *     npx tsx test/integration/postgres/throughput.ts [rows] [rounds]
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MysqlSource } from '../../../src/db/mysql/index.js';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import type { TableSource } from '../../../src/db/index.js';
import { run, startMariadb, startPostgres } from '../../support/index.js';

const ROWS = Number(process.argv[2] ?? 200_000);
const ROUNDS = Number(process.argv[3] ?? 3);

function rate(rows: number, ms: number): string {
  return `${Math.round(rows / (ms / 1000)).toLocaleString('en')} rows/s`;
}

/** Dumps through `src` into a file, for the clients' own bulk loads. */
async function dumpFile(src: TableSource, table: string, key: string, dir: string): Promise<string> {
  const file = join(dir, `${table}.tsv`);
  await pipeline(await src.rows(table, { key }), createWriteStream(file));
  return file;
}

async function measure(label: string, src: TableSource, dst: TableSource, table: string, key: string, truncate: () => Promise<unknown>): Promise<void> {
  await dst.createTable(table, await src.schema(table));
  for (let r = 0; r < ROUNDS; r++) {
    const chunks: Buffer[] = [];
    let t0 = performance.now();
    for await (const c of await src.rows(table, { key })) chunks.push(c as Buffer);
    const dumpMs = performance.now() - t0;
    const bytes = chunks.reduce((n, c) => n + c.length, 0);
    await truncate();
    t0 = performance.now();
    const res = await dst.load(table, Readable.from(chunks));
    const loadMs = performance.now() - t0;
    if (res.rows !== ROWS) throw new Error(`loaded ${res.rows} rows`);
    console.log(`${label} round ${r + 1}: rows() ${rate(ROWS, dumpMs)} (${(bytes / 1e6).toFixed(1)} MB), load() ${rate(ROWS, loadMs)}`);
  }
}

async function mariadb(): Promise<void> {
  const db = await startMariadb();
  try {
    const c = await db.connect();
    await c.query('CREATE TABLE big (SEQNO BIGINT NOT NULL PRIMARY KEY, i INT, d DOUBLE, m DECIMAL(18,6), vc VARCHAR(64), t TEXT, dt DATETIME(6), b BLOB)');
    await c.query(
      `INSERT INTO big SELECT seq, seq * 7, seq / 3e0, seq / 7, CONCAT('name-', seq), CONCAT('some text for row ', seq), '2024-01-01' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND, UNHEX(MD5(seq)) FROM seq_1_to_${ROWS}`,
    );
    await c.end();
    await db.createDatabase('dst');
    await using src = new MysqlSource(db.connectionConfig);
    await using dst = new MysqlSource({ ...db.connectionConfig, database: 'dst' });
    const t0 = performance.now();
    await run('/bin/sh', ['-c', `mariadb ${db.clientArgs.join(' ')} -N -B --quick ${db.database} -e 'SELECT * FROM big ORDER BY SEQNO' > /dev/null`]);
    console.log(`mariadb client --quick -B: ${rate(ROWS, performance.now() - t0)}`);
    await measure('MysqlSource', src, dst, 'big', 'SEQNO', () => db.query('TRUNCATE big', undefined, 'dst'));
    const file = await dumpFile(src, 'big', 'SEQNO', db.dir);
    await db.query('TRUNCATE big', undefined, 'dst');
    const t1 = performance.now();
    await run('/bin/sh', ['-c', `mariadb ${db.clientArgs.join(' ')} --local-infile=1 dst -e "LOAD DATA LOCAL INFILE '${file}' INTO TABLE big CHARACTER SET utf8mb4"`]);
    console.log(`mariadb client LOAD DATA LOCAL INFILE: ${rate(ROWS, performance.now() - t1)}`);
  } finally {
    await db.stop();
  }
}

async function postgres(): Promise<void> {
  const db = await startPostgres();
  try {
    await db.query('CREATE TABLE big ("SEQNO" bigint NOT NULL PRIMARY KEY, i int, d float8, m numeric(18,6), vc varchar(64), t text, dt timestamp(6), b bytea)');
    await db.query(
      `INSERT INTO big SELECT g, g * 7, g / 3.0::float8, round(g / 7.0, 6), 'name-' || g, 'some text for row ' || g, '2024-01-01'::timestamp + g * interval '1 second' + g * interval '1 microsecond', decode(md5(g::text), 'hex') FROM generate_series(1, ${ROWS}) g`,
    );
    await db.createDatabase('dst');
    await using src = new PostgresSource(db.clientConfig);
    await using dst = new PostgresSource({ ...db.clientConfig, database: 'dst' });
    const t0 = performance.now();
    await run('/bin/sh', ['-c', `${join(db.binDir, 'psql')} -q -c 'COPY (SELECT * FROM big ORDER BY "SEQNO") TO STDOUT' > /dev/null`], { env: { ...process.env, ...db.env } });
    console.log(`psql COPY TO STDOUT: ${rate(ROWS, performance.now() - t0)}`);
    await measure('PostgresSource', src, dst, 'big', 'SEQNO', () => db.query('TRUNCATE big', [], 'dst'));
    const file = await dumpFile(src, 'big', 'SEQNO', '/tmp');
    await db.query('TRUNCATE big', [], 'dst');
    const t1 = performance.now();
    await run('/bin/sh', ['-c', `${join(db.binDir, 'psql')} -q -d dst -c '\\copy big FROM ${file}'`], { env: { ...process.env, ...db.env } });
    console.log(`psql \\copy FROM: ${rate(ROWS, performance.now() - t1)}`);
  } finally {
    await db.stop();
  }
}

await mariadb();
await postgres();
