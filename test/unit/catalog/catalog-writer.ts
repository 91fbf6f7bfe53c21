/**
 * A child process of the catalog concurrency test: opens (and so maybe
 * creates and migrates) the catalog given as argv[2], then records argv[4]
 * archives named after argv[3], one commit each, inside a recorded job.
 */
import { Catalog } from '../../../src/catalog/index.js';

const [file, name, count] = process.argv.slice(2) as [string, string, string];
const c = new Catalog(file, { busyTimeoutMs: 30_000 });
await c.withJob(name, async () => {
  for (let i = 0; i < Number(count); i++) {
    c.recordArchive({ path: `${name}/${i}.tar.gz`, dna: { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: i, algorithm: 'md5' } });
    if (i % 10 === 0) await new Promise((r) => setImmediate(r));
  }
});
c.close();
