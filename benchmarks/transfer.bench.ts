/**
 * `npm run bench:transfer [-- --quick] [-- --json] [-- --only <substring>]`:
 * SshTransport.put and sync() over loopback to a real sshd, against scp and
 * rsync in the same run. Cases: `ssh-put-file`, `ssh-put-file-vs-rsync`,
 * `sync-tree`, `resync-nochange`; see benchmarks/cases/transfer-cases.ts.
 */
import { makeContext } from './lib.js';
import { runTransferCases } from './cases/transfer-cases.js';

const { ctx, finish } = await makeContext('transfer');
try {
  await runTransferCases(ctx);
} finally {
  await finish();
}
