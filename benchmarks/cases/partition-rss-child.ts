/**
 * Child process of the `rss-flat` case: dumps one MariaDB table with the
 * Partitioner (10k rows per partition, concurrency 2) and prints its own
 * peak resident set size (VmHWM from /proc/self/status) as JSON.
 * Arguments come as JSON in STOWAGE_RSS_ARGS: `{ conn, table, outDir }`.
 */
import { readFile } from 'node:fs/promises';
import { MysqlSource, type MysqlConnectionConfig } from '../../src/db/mysql/index.js';
import { Partitioner } from '../../src/partition/index.js';

const { conn, table, outDir } = JSON.parse(process.env['STOWAGE_RSS_ARGS'] ?? '{}') as { conn: MysqlConnectionConfig; table: string; outDir: string };
const src = new MysqlSource(conn);
try {
  await new Partitioner(src, { table, key: 'id', rowsPerPartition: 10_000, outDir }).dump({ concurrency: 2, incremental: false });
} finally {
  await src.close();
}
const status = await readFile('/proc/self/status', 'utf8');
const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
if (m === null) throw new Error('no VmHWM in /proc/self/status');
process.stdout.write(JSON.stringify({ vmHwmKb: Number(m[1]) }) + '\n');
