/**
 * Regression: `DnaDigest.ofFile(f, null)` and `verify(f, null)` threw a bare
 * TypeError, and a missing path (`ofFile(undefined)`, `verify(undefined)`,
 * `scan(undefined)`) came out as EIO from Node's fs. Now a missing or
 * non-string path is EBAD_CONFIG naming the argument, and `null` options
 * mean no options, as `checkOptionKeys` has always taken them.
 */
import { describe, expect, it } from 'vitest';
import { DnaDigest } from '../../../src/dna/index.js';
import { put, rejectsWith, tempDir } from './helpers.js';

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

describe('DnaDigest: bad arguments are EBAD_CONFIG', () => {
  it('null options mean no options', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', 'hello');
    expect((await DnaDigest.ofFile(f, null as never)).size).toBe(5);
    await DnaDigest.writeSidecar(f, await DnaDigest.ofFile(f));
    expect((await DnaDigest.verify(f, null as never)).ok).toBe(true);
    expect(await drain(DnaDigest.scan(dir, null as never))).toBe(1);
  });

  it('a missing or non-string path names the argument', async () => {
    const e1 = await rejectsWith(DnaDigest.ofFile(undefined as never), 'EBAD_CONFIG');
    expect(e1.message).toContain('path');
    await rejectsWith(DnaDigest.ofFile(42 as never), 'EBAD_CONFIG');
    await rejectsWith(DnaDigest.verify(undefined as never), 'EBAD_CONFIG');
    await rejectsWith(drain(DnaDigest.scan(undefined as never)), 'EBAD_CONFIG');
    await rejectsWith(DnaDigest.readSidecar(undefined as never), 'EBAD_CONFIG');
    await rejectsWith(DnaDigest.writeSidecar(undefined as never, { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' }), 'EBAD_CONFIG');
  });
});
