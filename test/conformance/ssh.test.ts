import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SshTransport } from '../../src/transport/ssh/ssh-transport.js';
import { startSshd } from '../support/index.js';
import { transportConformance } from './transport-conformance.js';

// The same suite against a real OpenSSH sshd (test/support/sshd.ts), with
// exec allowed (md5sum/df on the far side) and without it (ForceCommand
// internal-sftp: streaming digests, statvfs@openssh.com).
for (const allowExec of [true, false]) {
  transportConformance(`SshTransport (exec ${allowExec ? 'allowed' : 'refused'})`, async () => {
    const server = await startSshd({ allowExec });
    const scratch = await mkdtemp(join(tmpdir(), 'stowage-conf-ssh-'));
    const transport = new SshTransport({
      host: server.host,
      port: server.port,
      username: server.username,
      privateKey: server.privateKey,
      knownHosts: server.knownHostsPath,
    });
    return {
      transport,
      root: server.root,
      scratch,
      cleanup: async () => {
        await transport.close();
        await server.stop();
        await rm(scratch, { recursive: true, force: true });
      },
    };
  });
}
