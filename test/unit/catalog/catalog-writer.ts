/**
 * A child process of the catalog concurrency tests: opens (and so maybe
 * creates and migrates) the catalog given as argv[2], then records argv[4]
 * archives named after argv[3], one commit each, inside a recorded job.
 */
import { Catalog } from '../../../src/catalog/index.js';

const [file, name, count] = process.argv.slice(2) as [string, string, string];
// STOWAGE_T0: every writer opens the file at that instant (ms since the
// epoch), with the default busy timeout, as cron jobs started together do.
const t0 = Number(process.env['STOWAGE_T0'] ?? 0);
while (Date.now() < t0) {
  // spin: a timer would let the writers drift apart
}
const c = t0 > 0 ? new Catalog(file) : new Catalog(file, { busyTimeoutMs: 30_000 });
await c.withJob(name, async () => {
  for (let i = 0; i < Number(count); i++) {
    c.recordArchive({ path: `${name}/${i}.tar.gz`, dna: { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: i, algorithm: 'md5' } });
    if (i % 10 === 0) await new Promise((r) => setImmediate(r));
  }
});
c.close();
