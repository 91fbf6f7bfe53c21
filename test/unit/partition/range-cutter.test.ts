import { describe, expect, it } from 'vitest';
import { RangeCutter } from '../../../src/partition/range-cutter.js';
import { throwsWith, rejectsWith } from './helpers.js';

/** Cuts `text` (given in chunks of `size` bytes) at the bounds; returns the text of each range. */
async function cut(text: string, his: bigint[], size: number, keyIndex = 0): Promise<string[]> {
  const out = his.map(() => '');
  const c = new RangeCutter(his, keyIndex, 'src', 't', async (i, piece) => {
    out[i] += piece.toString();
  });
  const buf = Buffer.from(text);
  for (let i = 0; i < buf.length; i += size) await c.push(buf.subarray(i, i + size));
  c.end();
  return out;
}

const rows = (keys: (number | bigint)[]): string => keys.map((k) => `${k}\tv${k}\\tx\n`).join('');

describe('RangeCutter', () => {
  it.each([1, 3, 7, 64, 4096])('cuts rows at range boundaries whatever the chunk size (%i)', async (size) => {
    const keys = [1, 2, 10, 11, 12, 25, 31, 40, 41];
    const got = await cut(rows(keys), [10n, 20n, 30n, 40n, 50n], size);
    expect(got).toEqual([rows([1, 2, 10]), rows([11, 12]), rows([25]), rows([31, 40]), rows([41])]);
  });

  it('skips ranges without rows, and handles negative and 64-bit keys on another field', async () => {
    const text = [-5n, 3n, 2n ** 62n].map((k) => `x\t${k}\n`).join('');
    const got = await cut(text, [0n, 9n, 2n ** 61n, 2n ** 63n], 5, 1);
    expect(got).toEqual(['x\t-5\n', 'x\t3\n', '', `x\t${2n ** 62n}\n`]);
  });

  it.each([1, 5, 4096])('with lower bounds, leaves out rows between two ranges (chunks of %i)', async (size) => {
    const keys = [1, 2, 50, 150, 151, 301, 302, 420, 421, 501];
    const out = ['', '', ''];
    const c = new RangeCutter([100n, 400n, 600n], 0, 'src', 't', async (i, piece) => void (out[i] += piece.toString()), [1n, 301n, 501n]);
    const buf = Buffer.from(rows(keys));
    for (let i = 0; i < buf.length; i += size) await c.push(buf.subarray(i, i + size));
    c.end();
    expect(out).toEqual([rows([1, 2, 50]), rows([301, 302]), rows([501])]);
    expect(c.skipped).toBe(4);
  });

  it('refuses a row above the last range and a stream cut in the middle of a row', async () => {
    await rejectsWith(cut(rows([1, 99]), [10n], 4096), 'EDB');
    const c = new RangeCutter([10n], 0, 's', 't', async () => {});
    await c.push(Buffer.from('1\tabc'));
    throwsWith(() => c.end(), 'EDB');
  });
});
