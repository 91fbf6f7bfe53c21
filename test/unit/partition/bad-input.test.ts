import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { makePairDb, rejectsWith, tempDir } from './helpers.js';

describe('Partitioner: bad options are EBAD_CONFIG, null options mean none', () => {
  it('plan, dump, restore and compare', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 2, 3]);
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 10, outDir: out });
    // null: no options (as checkOptionKeys takes them)
    expect((await p.plan(null as never)).partitions).toHaveLength(1);
    expect((await p.dump(null as never)).written).toHaveLength(1);
    const copy = join(d, 'copy.db');
    makePairDb(copy, []);
    await using dst = new SqliteSource(copy);
    expect((await Partitioner.restore(dst, out, null as never)).rows).toBe(3);
    expect((await Partitioner.compare(src, dst, 'CalibVld', null as never)).equal).toBe(true);
    // A signal that is not one, a progress callback that is not a function: refused up front.
    for (const err of [
      await rejectsWith(p.plan({ signal: 'x' as never }), 'EBAD_CONFIG'),
      await rejectsWith(p.dump({ signal: 'x' as never }), 'EBAD_CONFIG'),
      await rejectsWith(Partitioner.restore(dst, out, { signal: 'x' as never }), 'EBAD_CONFIG'),
      await rejectsWith(Partitioner.compare(src, dst, 'CalibVld', { signal: 'x' as never }), 'EBAD_CONFIG'),
    ]) {
      expect(err.message).toMatch(/"signal" must be an AbortSignal/);
    }
    for (const err of [await rejectsWith(Partitioner.restore(dst, out, { onProgress: 5 as never }), 'EBAD_CONFIG'), await rejectsWith(Partitioner.compare(src, dst, 'CalibVld', { onProgress: 5 as never }), 'EBAD_CONFIG')]) {
      expect(err.message).toMatch(/"onProgress" must be a function/);
    }
  });
});
