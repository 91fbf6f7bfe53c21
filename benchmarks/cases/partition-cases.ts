/**
 * Partitioner cases of `npm run bench:partition`, each against the standard
 * tool in the same run, on one table of 1,000,000 rows (quick: 50,000) with
 * 8 mixed columns: BIGINT key, INT, DOUBLE, DECIMAL, VARCHAR, TEXT,
 * DATETIME(6) and a 16-byte BLOB (~150 bytes of bulk text per row).
 *
 * - `mariadb-dump`: a full partitioned dump to tar.gz (10k rows per
 *   partition, concurrency 2, DNA sidecars) vs `mydumper --rows 10000
 *   --threads 2 --compress`, rows/s (target ratio >= 1.0).
 * - `mariadb-restore`: `Partitioner.restore` of that dump into an empty
 *   database (concurrency 2) vs `myloader --threads 2` of mydumper's dump.
 * - `postgres-dump`: the same dump vs `pg_dump -Fc -t bench`.
 * - `postgres-restore`: `Partitioner.restore` vs `pg_restore` of that file.
 * - `sqlite-dump`: the same dump of an SQLite file vs `sqlite3 DB .dump | gzip`.
 * - `rss-flat`: peak RSS (VmHWM) of a child process dumping a table of
 *   250,000 rows divided by that of one dumping 1,000,000 rows (quick:
 *   12,500 and 50,000), unit "ratio" (target >= 0.8: memory does not grow
 *   with the table); the lowest peak of two runs of each (quick: one) is
 *   kept, and both are logged in MB.
 *
 * After each restore case a line (not a result) gives its floor: the same
 * rows, extracted to plain files beforehand, loaded by bare `LOAD DATA
 * LOCAL` / `COPY FROM STDIN` the way the restore loads them (same
 * concurrency, neighbouring partitions in the same units of one statement
 * and one transaction, PostgreSQL's primary key added last), with no
 * client-side work at all: no DNA check, no inflate, no
 * range digest, no bulk text gate. Its ratio to the tool is what the server
 * alone allows on this machine; the gap between it and the case is the
 * price of the restore's checks on a machine whose cores the server shares.
 *
 * Each side runs {@link TRIALS} times (quick: once), alternating ours and the
 * tool's, so that a burst of load from elsewhere hits both, and taking
 * turns at going first, so that neither always runs while the server still
 * writes back what the other loaded; the best time of each counts. Before
 * every timed run (ours, the tool's and the floor's), untimed, the server
 * settles: MariaDB flushes every dirty page of InnoDB's buffer pool,
 * PostgreSQL checkpoints (its autovacuum is off here), and `sync` writes
 * back the files the OS still holds dirty, so that no run pays for the
 * writes its predecessor left behind. Without it, the same restore took
 * 2.2-3.8 s depending on what ran before it (1M rows into PostgreSQL).
 * The servers are the test harness's (throwaway MariaDB and PostgreSQL on
 * loopback ports).
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { from as copyFrom } from 'pg-copy-streams';
import { MysqlSource } from '../../src/db/mysql/index.js';
import { PostgresSource } from '../../src/db/postgres/index.js';
import { SqliteSource } from '../../src/db/sqlite/index.js';
import type { TableSource } from '../../src/db/index.js';
import { Partitioner } from '../../src/partition/index.js';
import { readArchive } from '../../src/archive/archive-reader.js';
import { loadUnits } from '../../src/partition/restore.js';
import { startMariadb, startPostgres, type MariadbServer, type PostgresServer } from '../../test/support/index.js';
import { requireTool, sh, time, type BenchContext } from '../lib.js';

const TABLE = 'bench';
const ROWS_PER_PARTITION = 10_000;
const CONCURRENCY = 2;
/**
 * Timed runs of each side of a case (quick: 1). Five, not three: on this
 * 2-core machine the same dump takes 2.6-3.7 s from run to run (the load
 * of the host, not the code), and the best of three of one side now and
 * then came from such a slow spell while the other side's did not (ratios
 * of 0.93-1.23 for the same code across runs of the benchmark). Both sides
 * get the same number of runs, alternately.
 */
const TRIALS = 5;

const rate = (rows: number, seconds: number): number => rows / seconds;

/**
 * Times `fn` and logs, for each run of ours, what moves its time from run
 * to run (not a result): when each phase began (where `fn` reports them),
 * this process's CPU, and the full garbage collections V8 ran meanwhile
 * (in a process that has done other work first, as this one has,
 * ArrayBuffer churn starts them every few MB; see the CHANGELOG). Returns
 * the seconds.
 */
async function timedRun(ctx: BenchContext, label: string, fn: (onProgress: (p: { phase: string }) => void) => Promise<unknown>): Promise<number> {
  const marks: string[] = [];
  let fullGcs = 0;
  let fullGcMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      // A full collection: its final pause (MAJOR) and the incremental marking steps on this thread before it.
      const kind = (e as { detail?: { kind?: number } }).detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) fullGcs++;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR || kind === perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL) fullGcMs += e.duration;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    await fn((p) => {
      if (marks.at(-1)?.split(' ')[0] !== p.phase) marks.push(`${p.phase} ${Math.round(performance.now() - t0)}`);
    });
  } finally {
    observer.disconnect();
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  ctx.log(
    `${label} run: ${seconds.toFixed(3)} s;${marks.length > 0 ? ` phases from (ms): ${marks.join(', ')};` : ''} this process ${((cpu.user + cpu.system) / 1e6).toFixed(2)} cpu-s; ${fullGcs} mark-compacts (${Math.round(fullGcMs)} ms on this thread)`,
  );
  return seconds;
}

/** {@link timedRun} of `Partitioner.restore(target, dir)` (concurrency 2), with its phases. */
function timedRestore(ctx: BenchContext, label: string, target: TableSource, dir: string): Promise<number> {
  return timedRun(ctx, label, (onProgress) => Partitioner.restore(target, dir, { concurrency: CONCURRENCY, onProgress }));
}

/**
 * Runs ours and the tool `trials` times each, taking turns at going first
 * (ours in even trials, the tool in odd ones), so that neither always runs
 * in the wake of the other (a server still flushing the previous load);
 * returns the best seconds of each. Each function returns the seconds of
 * its own timed work, so that its set-up (a fresh database) is not counted.
 */
async function alternate(trials: number, ours: () => Promise<number>, theirs: () => Promise<number>, settle?: () => Promise<void>, logTool?: (seconds: number) => void): Promise<{ ours: number; theirs: number }> {
  let o = Infinity;
  let t = Infinity;
  const run = async (fn: () => Promise<number>): Promise<number> => {
    await settle?.();
    const seconds = await fn();
    if (fn === theirs) logTool?.(seconds);
    return seconds;
  };
  for (let i = 0; i < trials; i++) {
    if (i % 2 === 0) {
      o = Math.min(o, await run(ours));
      t = Math.min(t, await run(theirs));
    } else {
      t = Math.min(t, await run(theirs));
      o = Math.min(o, await run(ours));
    }
  }
  return { ours: o, theirs: t };
}

/** {@link alternate} of ours, timed and logged by {@link timedRun} under `label`, and the tool's, each after `settle` (not timed). */
async function duel(ctx: BenchContext, label: string, trials: number, ours: () => Promise<unknown>, theirs: () => Promise<unknown>, settle?: () => Promise<void>): Promise<{ ours: number; theirs: number }> {
  return alternate(
    trials,
    () => timedRun(ctx, label, ours),
    () => time(theirs),
    settle,
    toolLog(ctx, label),
  );
}

/** Logs each timed run of the tool (not a result): its spread tells how much of a ratio is the machine's. */
function toolLog(ctx: BenchContext, label: string): (seconds: number) => void {
  return (seconds) => ctx.log(`${label} tool run: ${seconds.toFixed(3)} s`);
}

/** Writes back every dirty page of the OS (the files a previous run wrote), so that no run pays for its predecessor's writeback. */
async function syncDisks(): Promise<void> {
  await sh('sync');
}

/**
 * Before each timed run against MariaDB (not timed): InnoDB flushes the
 * pages the previous run left dirty (the page cleaner would otherwise do
 * it during this run, on the same two cores), then the OS writes back.
 */
async function settleMariadb(server: MariadbServer): Promise<void> {
  const [before] = await server.query<{ pct: number; lwm: number }[]>('SELECT @@GLOBAL.innodb_max_dirty_pages_pct AS pct, @@GLOBAL.innodb_max_dirty_pages_pct_lwm AS lwm');
  await server.query('SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0');
  await server.query('SET GLOBAL innodb_max_dirty_pages_pct = 0');
  try {
    const deadline = performance.now() + 60_000;
    for (;;) {
      const [row] = await server.query<{ Value: string }[]>("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'");
      if (Number(row?.Value) === 0 || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await server.query(`SET GLOBAL innodb_max_dirty_pages_pct = ${Number(before?.pct)}`);
    await server.query(`SET GLOBAL innodb_max_dirty_pages_pct_lwm = ${Number(before?.lwm)}`);
  }
  await syncDisks();
}

/**
 * Before each timed run against PostgreSQL (not timed): a checkpoint
 * writes what the previous run left in shared buffers, then the OS writes
 * back. Autovacuum is off on the bench's server (see {@link postgresCases}).
 */
async function settlePostgres(server: PostgresServer): Promise<void> {
  await server.query('CHECKPOINT');
  await syncDisks();
}

const MYSQL_DDL = `CREATE TABLE ${TABLE} (id BIGINT NOT NULL PRIMARY KEY, n INT, d DOUBLE, amount DECIMAL(14,4), vc VARCHAR(64), txt TEXT, dt DATETIME(6), bl BLOB) ENGINE=InnoDB`;

function mysqlFill(table: string, from: number, to: number): string {
  return `INSERT INTO ${table} SELECT seq, CAST(seq % 100000 AS SIGNED) - 5000, seq / 3e0, CAST(seq * 0.37 AS DECIMAL(14,4)), CONCAT('run', seq % 1000, '-', HEX(seq)),
    REPEAT(CONCAT('event ', seq, ' adc '), 1 + seq % 6), TIMESTAMP'2015-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL (seq % 1000000) MICROSECOND,
    UNHEX(MD5(seq)) FROM seq_${from}_to_${to}`;
}

const PG_DDL = `CREATE TABLE ${TABLE} (id bigint PRIMARY KEY, n integer, d double precision, amount numeric(14,4), vc varchar(64), txt text, dt timestamp(6), bl bytea)`;

function pgFill(from: number, to: number): string {
  return `INSERT INTO ${TABLE} SELECT s, s % 100000 - 5000, s / 3.0::float8, (s * 0.37)::numeric(14,4), 'run' || (s % 1000) || '-' || to_hex(s),
    repeat('event ' || s || ' adc ', 1 + (s % 6)::int), TIMESTAMP '2015-01-01' + s * INTERVAL '1 second' + (s % 1000000) * INTERVAL '1 microsecond',
    decode(md5(s::text), 'hex') FROM generate_series(${from}, ${to}) s`;
}

/** Fills in batches so no single statement holds a huge transaction. */
function batches(rows: number, size = 200_000): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 1; a <= rows; a += size) out.push([a, Math.min(rows, a + size - 1)]);
  return out;
}

async function dumpOurs(source: TableSource, outDir: string): Promise<number> {
  await rm(outDir, { recursive: true, force: true });
  const r = await new Partitioner(source, { table: TABLE, key: 'id', rowsPerPartition: ROWS_PER_PARTITION, outDir }).dump({ concurrency: CONCURRENCY, incremental: false });
  return r.rows;
}

async function mariadbCases(ctx: BenchContext, rows: number): Promise<void> {
  const wantDump = ctx.wants('mariadb-dump');
  const wantRestore = ctx.wants('mariadb-restore');
  const wantRss = ctx.wants('rss-flat');
  if (!wantDump && !wantRestore && !wantRss) return;
  await requireTool('mydumper', 'mydumper');
  await requireTool('myloader', 'mydumper');
  const trials = ctx.quick ? 1 : TRIALS;
  const server: MariadbServer = await startMariadb();
  try {
    const db = await server.createDatabase('bench_src');
    const c = await server.connect({ database: db });
    try {
      await c.query(MYSQL_DDL);
      for (const [a, b] of batches(rows)) await c.query(mysqlFill(TABLE, a, b));
    } finally {
      await c.end();
    }
    const conn = { ...server.connectionConfig };
    const cli = `-h 127.0.0.1 -P ${server.port} -u ${server.user} -p '${server.password}'`;
    const ours = join(ctx.dir, 'mariadb-ours');
    const theirs = join(ctx.dir, 'mariadb-mydumper');
    if (wantDump || wantRestore) {
      await using src = new MysqlSource({ ...conn, database: db });
      let count = 0;
      const d = await duel(
        ctx,
        'mariadb-dump',
        trials,
        async () => (count = await dumpOurs(src, ours)),
        async () => {
          await rm(theirs, { recursive: true, force: true });
          // Debian's mydumper 0.10 takes bare table names in --tables-list (db.table matches nothing).
          await sh(`mydumper ${cli} -B ${db} -T ${TABLE} --rows ${ROWS_PER_PARTITION} --threads ${CONCURRENCY} --compress -o ${theirs}`);
        },
        () => settleMariadb(server),
      );
      if (count !== rows) throw new Error(`mariadb-dump: the Partitioner dumped ${count} rows of ${rows}`);
      const chunks = (await readdir(theirs)).filter((f) => /\.\d{5}\.sql\.gz$/.test(f));
      // mydumper cuts by the server's row estimates, so the count of files varies a little; myloader's restore below checks the rows.
      if (chunks.length < Math.floor(rows / ROWS_PER_PARTITION / 2)) throw new Error(`mariadb-dump: mydumper wrote ${chunks.length} data files, expected about ${rows / ROWS_PER_PARTITION}`);
      if (wantDump) {
        ctx.record({ case: 'mariadb-dump', unit: 'rows/s', value: rate(rows, d.ours), baseline: 'mydumper --rows 10000 --threads 2 --compress', baselineValue: rate(rows, d.theirs) });
      }
    }
    if (wantRestore) {
      let n = 0;
      const fresh = async (): Promise<string> => server.createDatabase(`bench_r${++n}`);
      const { ours: oursTime, theirs: theirsTime } = await alternate(
        trials,
        async () => {
          await using dst = new MysqlSource({ ...conn, database: await fresh() });
          const s = await timedRestore(ctx, 'mariadb-restore', dst, ours);
          const check = await dst.keyRange(TABLE, 'id');
          if (check.count !== rows) throw new Error(`mariadb-restore: ${check.count} rows restored of ${rows}`);
          return s;
        },
        async () => {
          // myloader 0.10 gives up on a deadlock InnoDB reports between its two threads (seen once in
          // ~20 runs): that attempt is not timed, and the trial runs again into a fresh database.
          for (let attempt = 1; ; attempt++) {
            const b = await fresh();
            let s: number;
            try {
              s = await time(() => sh(`myloader ${cli} -d ${theirs} -B ${b} --threads ${CONCURRENCY} -o`));
            } catch (err) {
              if (attempt < 3 && /Deadlock found/.test((err as Error).message)) {
                ctx.log(`mariadb-restore: myloader stopped on a deadlock (attempt ${attempt}); running that trial again`);
                await settleMariadb(server);
                continue;
              }
              throw err;
            }
            const [loaded] = await server.query<{ n: number }[]>(`SELECT COUNT(*) AS n FROM ${b}.${TABLE}`);
            if (Number(loaded?.n) !== rows) throw new Error(`mariadb-restore: myloader restored ${String(loaded?.n)} rows of ${rows}`);
            return s;
          }
        },
        () => settleMariadb(server),
        toolLog(ctx, 'mariadb-restore'),
      );
      ctx.record({ case: 'mariadb-restore', unit: 'rows/s', value: rate(rows, oursTime), baseline: 'myloader --threads 2', baselineValue: rate(rows, theirsTime) });
      const floor = await mariadbLoadFloor(ctx, server, ours, rows, trials, fresh);
      ctx.log(
        `mariadb-restore floor: the same rows as plain files through bare LOAD DATA LOCAL (no DNA, digest or gate; concurrency ${CONCURRENCY}): ${Math.round(rate(rows, floor))} rows/s, ratio ${(theirsTime / floor).toFixed(3)} vs myloader in this run (the server's share; see the CHANGELOG)`,
      );
    }
    if (wantRss) await rssCase(ctx, server, db, rows);
  } finally {
    await server.stop();
  }
}

/** The rows entry of every partition archive of TABLE under `outDir`, extracted to plain files in `dir`, in key order. */
async function extractRows(outDir: string, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: string[] = [];
  for (const name of (await readdir(join(outDir, TABLE))).filter((f) => f.endsWith('.tar.gz')).sort()) {
    const file = join(dir, name.replace(/\.tar\.gz$/, '.tsv'));
    await readArchive(join(outDir, TABLE, name), { phase: 'read' }, async (e, data) => {
      if (e.name !== `${TABLE}/rows.tsv`) return false;
      await pipeline(data, createWriteStream(file));
      return true;
    });
    files.push(file);
  }
  return files;
}

/**
 * Runs `fn` over `files` cut into units as the restore cuts neighbouring
 * archives of one table ({@link loadUnits}, by the files' sizes), on each
 * of `conns`, each taking the next unit in order.
 */
async function spread<C>(conns: readonly C[], files: readonly string[], fn: (c: C, unit: readonly string[]) => Promise<void>): Promise<void> {
  const units = loadUnits(files, () => TABLE, (f) => statSync(f).size, conns.length);
  let next = 0;
  await Promise.all(
    conns.map(async (c) => {
      for (let u = units[next++]; u !== undefined; u = units[next++]) await fn(c, u);
    }),
  );
}

/** The files of `unit`, one after the other, as one stream. */
function concatenated(unit: readonly string[]): Readable {
  return Readable.from(
    (async function* () {
      for (const f of unit) yield* createReadStream(f, { highWaterMark: 1 << 20 });
    })(),
    { objectMode: false },
  );
}

/**
 * The server's share of `postgres-restore`, as {@link mariadbLoadFloor}:
 * bare `COPY FROM STDIN` of the extracted rows into a table without its
 * primary key over CONCURRENCY connections, one COPY and one transaction
 * per unit of neighbouring files (as the restore cuts them), then the
 * primary key added, as the restore does, without any client-side work.
 */
async function postgresLoadFloor(ctx: BenchContext, server: PostgresServer, outDir: string, rows: number, trials: number, fresh: () => Promise<string>): Promise<number> {
  const files = await extractRows(outDir, join(ctx.dir, 'pg-floor'));
  return bestOverConns('postgres-restore floor', { trials, rows, fresh, connect: (database) => server.connect({ database }), settle: () => settlePostgres(server) }, {
    setup: (c) => c.query(PG_DDL.replace(' PRIMARY KEY', '')),
    timed: async (conns) => {
      await spread(conns, files, async (c, unit) => {
        await c.query('BEGIN');
        await pipeline(concatenated(unit), c.query(copyFrom(`COPY ${TABLE} FROM STDIN`)));
        await c.query('COMMIT');
      });
      await conns[0]!.query(`ALTER TABLE ${TABLE} ADD PRIMARY KEY (id)`);
    },
    count: async (c) => Number((await c.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${TABLE}`)).rows[0]?.n),
  });
}

/**
 * The server's share of `mariadb-restore`: the rows of every archive of
 * `outDir`, extracted to plain files beforehand (not timed), loaded into a
 * fresh table by bare `LOAD DATA LOCAL INFILE` over CONCURRENCY connections,
 * one statement and one transaction per unit of neighbouring files (as the
 * restore cuts them), in file order, as the restore does but without
 * any client-side work (no DNA check, no inflate, no range digest, no bulk
 * text gate). Best seconds of `trials`. It tells how close to myloader the
 * server alone lets a restore through `LOAD DATA` get on this machine.
 */
async function mariadbLoadFloor(ctx: BenchContext, server: MariadbServer, outDir: string, rows: number, trials: number, fresh: () => Promise<string>): Promise<number> {
  const files = await extractRows(outDir, join(ctx.dir, 'mariadb-floor'));
  return bestOverConns('mariadb-restore floor', { trials, rows, fresh, connect: (database) => server.connect({ database }), settle: () => settleMariadb(server) }, {
    setup: (c) => c.query(MYSQL_DDL),
    timed: (conns) =>
      spread(conns, files, async (c, unit) => {
        await c.query('START TRANSACTION');
        await c.query({
          // CHARACTER SET binary, as MysqlSource.load sends a table whose text columns are all UTF-8.
          sql: `LOAD DATA LOCAL INFILE 'rows' INTO TABLE ${TABLE} CHARACTER SET binary FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES STARTING BY '' TERMINATED BY '\\n'`,
          infileStreamFactory: () => concatenated(unit),
        });
        await c.query('COMMIT');
      }),
    count: async (c) => Number(((await c.query(`SELECT COUNT(*) AS n FROM ${TABLE}`))[0] as { n: number }[])[0]?.n),
  });
}

/**
 * Best seconds of `trials` runs of `work.timed` over CONCURRENCY new
 * connections to a fresh database each time, after `work.setup` on the
 * first; `work.count` must then find `rows` rows.
 */
async function bestOverConns<C extends { end(): Promise<unknown> }>(
  what: string,
  run: { trials: number; rows: number; fresh: () => Promise<string>; connect: (database: string) => Promise<C>; settle: () => Promise<void> },
  work: { setup: (c: C) => Promise<unknown>; timed: (conns: C[]) => Promise<void>; count: (c: C) => Promise<number> },
): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < run.trials; i++) {
    const db = await run.fresh();
    const conns = await Promise.all(Array.from({ length: CONCURRENCY }, () => run.connect(db)));
    try {
      await work.setup(conns[0]!);
      await run.settle();
      const t0 = performance.now();
      await work.timed(conns);
      best = Math.min(best, (performance.now() - t0) / 1000);
      const n = await work.count(conns[0]!);
      if (n !== run.rows) throw new Error(`${what}: ${n} rows loaded of ${run.rows}`);
    } finally {
      await Promise.all(conns.map((c) => c.end()));
    }
  }
  return best;
}

/** Peak RSS in kB of a child process dumping `table`. */
function childPeak(args: { conn: object; table: string; outDir: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const root = join(import.meta.dirname, '..', '..');
    const p = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'partition-rss-child.ts')], {
      cwd: root,
      env: { ...process.env, STOWAGE_RSS_ARGS: JSON.stringify(args) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) reject(new Error(`rss child exited ${code}: ${err.slice(-2000)}`));
      else resolve((JSON.parse(out.trim().split('\n').at(-1)!) as { vmHwmKb: number }).vmHwmKb);
    });
  });
}

async function rssCase(ctx: BenchContext, server: MariadbServer, db: string, rows: number): Promise<void> {
  const small = Math.floor(rows / 4);
  const c = await server.connect({ database: db });
  try {
    await c.query(`CREATE TABLE bench_small LIKE ${TABLE}`);
    await c.query(`INSERT INTO bench_small SELECT * FROM ${TABLE} WHERE id <= ${small}`);
  } finally {
    await c.end();
  }
  const conn = { ...server.connectionConfig, database: db };
  // A peak is a noisy statistic (a burst of buffers at the wrong moment): each size is measured `trials` times, alternately, and its lowest peak counts.
  const trials = ctx.quick ? 1 : 2;
  let peakSmall = Infinity;
  let peakLarge = Infinity;
  for (let i = 0; i < trials; i++) {
    peakSmall = Math.min(peakSmall, await childPeak({ conn, table: 'bench_small', outDir: join(ctx.dir, `rss-small-${i}`) }));
    peakLarge = Math.min(peakLarge, await childPeak({ conn, table: TABLE, outDir: join(ctx.dir, `rss-large-${i}`) }));
  }
  const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
  ctx.log(`rss-flat: peak RSS ${mb(peakSmall)} MB dumping ${small} rows, ${mb(peakLarge)} MB dumping ${rows} rows (MariaDB, concurrency ${CONCURRENCY})`);
  ctx.record({ case: 'rss-flat', unit: 'ratio', value: peakSmall / peakLarge, baseline: `peak RSS ${small} / ${rows} rows`, baselineValue: 1 });
}

async function postgresCases(ctx: BenchContext, rows: number): Promise<void> {
  const wantDump = ctx.wants('postgres-dump');
  const wantRestore = ctx.wants('postgres-restore');
  if (!wantDump && !wantRestore) return;
  const trials = ctx.quick ? 1 : TRIALS;
  // Autovacuum off: it would vacuum and analyze the 1M rows a run just
  // restored while the next run is timed, on the same two cores.
  const server: PostgresServer = await startPostgres({ settings: { autovacuum: 'off' } });
  try {
    const pgDump = join(server.binDir, 'pg_dump');
    const pgRestore = join(server.binDir, 'pg_restore');
    const db = await server.createDatabase('bench_src');
    const c = await server.connect({ database: db });
    try {
      await c.query(PG_DDL);
      for (const [a, b] of batches(rows)) await c.query(pgFill(a, b));
      await c.query(`VACUUM ANALYZE ${TABLE}`);
    } finally {
      await c.end();
    }
    const env = { ...process.env, ...server.env };
    const ours = join(ctx.dir, 'pg-ours');
    const theirs = join(ctx.dir, 'pg.dump');
    {
      await using src = new PostgresSource({ ...server.clientConfig, database: db });
      let count = 0;
      const d = await duel(
        ctx,
        'postgres-dump',
        trials,
        async () => (count = await dumpOurs(src, ours)),
        () => sh(`'${pgDump}' -Fc -t ${TABLE} -f ${theirs} ${db}`, { env }),
        () => settlePostgres(server),
      );
      if (count !== rows) throw new Error(`postgres-dump: the Partitioner dumped ${count} rows of ${rows}`);
      if (wantDump) ctx.record({ case: 'postgres-dump', unit: 'rows/s', value: rate(rows, d.ours), baseline: 'pg_dump -Fc -t bench', baselineValue: rate(rows, d.theirs) });
    }
    if (wantRestore) {
      let n = 0;
      const { ours: oursTime, theirs: theirsTime } = await alternate(
        trials,
        async () => {
          await using dst = new PostgresSource({ ...server.clientConfig, database: await server.createDatabase(`bench_r${++n}`) });
          const s = await timedRestore(ctx, 'postgres-restore', dst, ours);
          const check = await dst.keyRange(TABLE, 'id');
          if (check.count !== rows) throw new Error(`postgres-restore: ${check.count} rows restored of ${rows}`);
          return s;
        },
        async () => {
          const b = await server.createDatabase(`bench_r${++n}`);
          const s = await time(() => sh(`'${pgRestore}' -d ${b} ${theirs}`, { env }));
          const [loaded] = await server.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ${TABLE}`, [], b);
          if (Number(loaded?.n) !== rows) throw new Error(`postgres-restore: pg_restore restored ${String(loaded?.n)} rows of ${rows}`);
          return s;
        },
        () => settlePostgres(server),
        toolLog(ctx, 'postgres-restore'),
      );
      ctx.record({ case: 'postgres-restore', unit: 'rows/s', value: rate(rows, oursTime), baseline: 'pg_restore', baselineValue: rate(rows, theirsTime) });
      const floor = await postgresLoadFloor(ctx, server, ours, rows, trials, () => server.createDatabase(`bench_r${++n}`));
      ctx.log(
        `postgres-restore floor: the same rows as plain files through bare COPY FROM STDIN, then the primary key (no DNA, digest or gate; concurrency ${CONCURRENCY}): ${Math.round(rate(rows, floor))} rows/s, ratio ${(theirsTime / floor).toFixed(3)} vs pg_restore in this run (the server's share; see the CHANGELOG)`,
      );
    }
  } finally {
    await server.stop();
  }
}

async function sqliteCase(ctx: BenchContext, rows: number): Promise<void> {
  if (!ctx.wants('sqlite-dump')) return;
  await requireTool('sqlite3', 'sqlite3');
  const trials = ctx.quick ? 1 : TRIALS;
  const dir = join(ctx.dir, 'sqlite');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'bench.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE ${TABLE} (id INTEGER PRIMARY KEY, n INTEGER, d REAL, amount TEXT, vc TEXT, txt TEXT, dt TEXT, bl BLOB)`);
  for (const [a, b] of batches(rows)) {
    db.exec(`WITH RECURSIVE s(x) AS (SELECT ${a} UNION ALL SELECT x + 1 FROM s WHERE x < ${b})
      INSERT INTO ${TABLE} SELECT x, x % 100000 - 5000, x / 3.0, printf('%.4f', x * 0.37), 'run' || (x % 1000) || '-' || printf('%X', x),
        replace(printf('%.' || (1 + x % 6) || 'c', '*'), '*', 'event ' || x || ' adc '), strftime('%Y-%m-%d %H:%M:%f', 1420070400 + x, 'unixepoch'), randomblob(16) FROM s`);
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  await using src = new SqliteSource(file, { readonly: true });
  const ours = join(dir, 'ours');
  let count = 0;
  const d = await duel(
    ctx,
    'sqlite-dump',
    trials,
    async () => (count = await dumpOurs(src, ours)),
    () => sh(`sqlite3 ${file} .dump | gzip > ${join(dir, 'dump.sql.gz')}`),
    syncDisks,
  );
  if (count !== rows) throw new Error(`sqlite-dump: the Partitioner dumped ${count} rows of ${rows}`);
  ctx.record({ case: 'sqlite-dump', unit: 'rows/s', value: rate(rows, d.ours), baseline: 'sqlite3 .dump | gzip', baselineValue: rate(rows, d.theirs) });
}

/** Runs every Partitioner case that `--only` selects. */
export async function runPartitionCases(ctx: BenchContext): Promise<void> {
  const rows = ctx.quick ? 50_000 : 1_000_000;
  ctx.log(`partition: ${rows} rows of 8 mixed columns, ${ROWS_PER_PARTITION} rows per partition, concurrency ${CONCURRENCY}`);
  await sqliteCase(ctx, rows);
  await mariadbCases(ctx, rows);
  await postgresCases(ctx, rows);
}
