/**
 * LocalTransport puts refused at the target (EEXIST under noOverwrite, a
 * missing folder with mkdirs: false) close the source they had already
 * opened: no file handle is left for the garbage collector to close.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { rejectsWith } from '../db/helpers.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('LocalTransport: a put or get refused at its target', () => {
  it('closes the source it had opened (60 refused puts leave no file handle open)', async () => {
    const d = await mkdtemp(join(tmpdir(), 'stowage-put-refused-'));
    try {
      const t = new LocalTransport();
      await writeFile(join(d, 'src.bin'), Buffer.alloc(64 * 1024, 1));
      await writeFile(join(d, 'there.bin'), 'keep');
      // Warm up whatever opens once (the digest worker, the thread pool).
      await t.put(join(d, 'src.bin'), join(d, 'warm.bin'));
      await new Promise((r) => setTimeout(r, 50));
      const before = openFds();
      for (let i = 0; i < 20; i++) {
        await rejectsWith(t.put(join(d, 'src.bin'), join(d, 'there.bin'), { noOverwrite: true }), 'EEXIST');
        await rejectsWith(t.put(join(d, 'src.bin'), join(d, 'no-such-dir', 'x.bin'), { mkdirs: false }), 'ENOT_FOUND');
        await rejectsWith(t.put({ size: 3, open: () => Readable.from([Buffer.from('abc')]) }, join(d, 'there.bin'), { noOverwrite: true }), 'EEXIST');
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(openFds()).toBe(before);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});
