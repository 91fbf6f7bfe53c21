import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { RANGE_DIGEST_ALGORITHM, RangeDigester, digestBulkText, encodeBulkRow } from '../../../src/db/index.js';
import { chunked, rejectsWith, throwsWith } from './helpers.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
const rows = (...r: (string | null)[][]): Buffer => Buffer.concat(r.map(encodeBulkRow));

describe('range digest', () => {
  it('is the md5 of the bulk text itself when the key is unique', async () => {
    const buf = rows(['1', 'a'], ['2', 'b\tc'], ['10', null]);
    const d = await digestBulkText(chunked(buf, 5), { keyIndex: 0 });
    expect(d).toEqual({ count: 3, bytes: buf.length, digest: md5(buf) });
    expect(RANGE_DIGEST_ALGORITHM).toBe('md5');
  });

  it('does not depend on the order of rows sharing a key, nor on chunking', async () => {
    const a = rows(['1', 'x', 'p'], ['1', 'y', 'q'], ['1', 'z', 'r'], ['2', 'a', 's']);
    const b = rows(['1', 'z', 'r'], ['1', 'x', 'p'], ['1', 'y', 'q'], ['2', 'a', 's']);
    const da = await digestBulkText(chunked(a, 1), { keyIndex: 0 });
    const db = await digestBulkText(chunked(b, 64), { keyIndex: 0 });
    expect(db).toEqual(da);
    // ...and is the md5 of the rows sorted within each key group.
    expect(da.digest).toBe(md5(a));
  });

  it('groups by the key field wherever it is, and sees any changed value', async () => {
    const base = rows(['x', '7', 'one'], ['y', '7', 'two'], ['z', '8', 'three']);
    const swapped = rows(['y', '7', 'two'], ['x', '7', 'one'], ['z', '8', 'three']);
    const changed = rows(['x', '7', 'one'], ['y', '7', 'tw0'], ['z', '8', 'three']);
    const moved = rows(['x', '7', 'one'], ['y', '8', 'two'], ['z', '8', 'three']);
    const d = (b: Buffer): Promise<string> => digestBulkText(chunked(b, 4), { keyIndex: 1 }).then((r) => r.digest);
    expect(await d(swapped)).toBe(await d(base));
    expect(await d(changed)).not.toBe(await d(base));
    expect(await d(moved)).not.toBe(await d(base));
    // Rows in other key groups are not reordered: with key 0 the swap matters.
    expect((await digestBulkText(chunked(swapped, 4), { keyIndex: 0 })).digest).not.toBe((await digestBulkText(chunked(base, 4), { keyIndex: 0 })).digest);
  });

  it('tells NULL from the empty string and from the text \\N', async () => {
    const d = async (f: string | null): Promise<string> => (await digestBulkText(chunked(rows(['1', f]), 3), { keyIndex: 0 })).digest;
    const all = new Set([await d(null), await d(''), await d('\\N')]);
    expect(all.size).toBe(3);
  });

  it('of nothing is the md5 of nothing', async () => {
    expect(await digestBulkText(chunked(Buffer.alloc(0), 1), { keyIndex: 3 })).toEqual({ count: 0, bytes: 0, digest: md5(Buffer.alloc(0)) });
  });

  it('refuses a truncated stream, a row without the key field, and a bad keyIndex', async () => {
    await rejectsWith(digestBulkText(chunked(Buffer.from('1\ta\n2\tb'), 2), { keyIndex: 0 }), 'EDB');
    await rejectsWith(digestBulkText(chunked(rows(['1', 'a'], ['2']), 2), { keyIndex: 1 }), 'EDB');
    throwsWith(() => new RangeDigester({ keyIndex: -1 }), 'EBAD_CONFIG');
    throwsWith(() => new RangeDigester({ keyIndex: 1.5 }), 'EBAD_CONFIG');
  });

  it('refuses a key group larger than maxGroupBytes (EBAD_CONFIG) instead of holding it', () => {
    const d = new RangeDigester({ keyIndex: 0, maxGroupBytes: 100 });
    d.update(rows(['1', 'x'.repeat(60)]));
    const err = throwsWith(() => d.update(rows(['1', 'y'.repeat(60)])), 'EBAD_CONFIG');
    expect(err.message).toMatch(/not selective enough/);
  });

  it('stops on abort with the signal reason', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    const p = digestBulkText(
      (async function* () {
        yield rows(['1', 'a']);
        ac.abort(reason);
        yield rows(['2', 'b']);
      })(),
      { keyIndex: 0, signal: ac.signal },
    );
    await expect(p).rejects.toBe(reason);
    await expect(digestBulkText(chunked(rows(['1']), 1), { keyIndex: 0, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('returns the same frozen digest when digest() is called again and refuses update() after it', () => {
    const d = new RangeDigester({ keyIndex: 0 });
    d.update(rows(['1']));
    const a = d.digest();
    expect(d.digest()).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    throwsWith(() => d.update(rows(['2'])), 'EIO');
  });

  it('matches the definition, written out plainly, on random tables cut into random chunks', () => {
    // The definition of range-digest.ts step by step: split lines, group by
    // the raw key field, sort each group, md5 of it all.
    const reference = (text: Buffer, keyIndex: number): { count: number; bytes: number; digest: string } => {
      const lines: Buffer[] = [];
      for (let s = 0, nl = text.indexOf(10); nl >= 0; s = nl + 1, nl = text.indexOf(10, s)) lines.push(text.subarray(s, nl + 1));
      const keyOf = (l: Buffer): string => l.subarray(0, l.length - 1).toString('latin1').split('\t')[keyIndex]!;
      const h = createHash('md5');
      for (let i = 0; i < lines.length; ) {
        let j = i + 1;
        while (j < lines.length && keyOf(lines[j]!) === keyOf(lines[i]!)) j++;
        for (const l of lines.slice(i, j).sort(Buffer.compare)) h.update(l);
        i = j;
      }
      return { count: lines.length, bytes: text.length, digest: h.digest('hex') };
    };
    let seed = 42;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let round = 0; round < 300; round++) {
      const columns = 1 + rnd(4);
      const keyIndex = rnd(columns);
      const out: (string | null)[][] = [];
      let key = rnd(5);
      for (let r = rnd(60); r > 0; r--) {
        if (rnd(3) === 0) key += 1 + rnd(12); // runs of equal keys, keys of varying length
        out.push(Array.from({ length: columns }, (_, c) => (c === keyIndex ? String(key) : rnd(7) === 0 ? null : 'v'.repeat(rnd(9)) + String.fromCharCode(97 + rnd(3)) + (rnd(5) === 0 ? '\t' : ''))));
      }
      const text = rows(...out);
      const d = new RangeDigester({ keyIndex });
      for (let i = 0; i < text.length; ) {
        const n = rnd(4) === 0 ? 1 + rnd(3) : 1 + rnd(200);
        d.update(text.subarray(i, i + n));
        i += n;
      }
      expect(d.digest(), `round ${round}`).toEqual(reference(text, keyIndex));
    }
  });
});
