import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalTransport } from '../../src/transport/local/local-transport.js';
import { transportConformance } from './transport-conformance.js';

transportConformance('LocalTransport', async () => {
  const base = await mkdtemp(join(tmpdir(), 'stowage-conf-local-'));
  const root = join(base, 'far');
  const scratch = join(base, 'scratch');
  const transport = new LocalTransport();
  await transport.mkdir(root);
  await transport.mkdir(scratch);
  return {
    transport,
    root,
    scratch,
    cleanup: async () => {
      await transport.close();
      await rm(base, { recursive: true, force: true });
    },
  };
});
