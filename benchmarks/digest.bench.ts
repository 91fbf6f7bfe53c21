/**
 * `npm run bench:digest [-- --quick] [-- --json] [-- --only <substring>]`:
 * DnaDigest against md5sum/sha256sum (file and tree), then the Archiver
 * cases, each against the standard tool in the same run.
 *
 * `--quick` uses small data (whole run under a minute); `--json` makes the
 * last line of stdout one JSON object with every result; `--only` runs
 * the cases whose name contains the substring.
 */
import { makeContext } from './lib.js';
import { runDigestCases } from './cases/digest-cases.js';
import { runArchiveCases } from './cases/archive-cases.js';

const { ctx, finish } = await makeContext('digest');
try {
  await runDigestCases(ctx);
  await runArchiveCases(ctx);
} finally {
  await finish();
}
