/**
 * `npm run bench:partition [-- --quick] [-- --json] [-- --only <substring>]`:
 * the Partitioner against mydumper/myloader, pg_dump/pg_restore and
 * `sqlite3 .dump | gzip`, and its memory against the table's size (see
 * `cases/partition-cases.ts`).
 *
 * `--quick` uses a 50,000-row table (whole run under a minute); `--json`
 * makes the last line of stdout one JSON object with every result; `--only`
 * runs the cases whose name contains the substring.
 */
import { makeContext } from './lib.js';
import { runPartitionCases } from './cases/partition-cases.js';

const { ctx, finish } = await makeContext('partition');
try {
  await runPartitionCases(ctx);
} finally {
  await finish();
}
