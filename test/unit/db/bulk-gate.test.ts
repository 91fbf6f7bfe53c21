// The bulk text gate that MysqlSource and PostgresSource put in front of
// their loaders (no server needed): it passes well-formed bulk text through
// untouched whatever the chunking, rewrites the escapes each loader would
// misread, and refuses malformed input with EDB.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { BulkTextGate, type BulkDialect } from '../../../src/db/bulk-gate.js';
import { encodeBulkRow } from '../../../src/db/index.js';
import { StowageError } from '../../../src/errors.js';

/** Runs `chunks` through a gate; returns the output and the row count, or the error. */
async function gate(chunks: Buffer[], columns: number, dialect: BulkDialect, maxChunkBytes?: number): Promise<{ out: Buffer; rows: number; chunks: Buffer[] } | { err: unknown }> {
  const g = new BulkTextGate(maxChunkBytes === undefined ? { columns, dialect } : { columns, dialect, maxChunkBytes });
  const outs: Buffer[] = [];
  // 'data' events, as mysql2 reads the gate (an async iterator would join chunks).
  g.on('data', (c: Buffer) => outs.push(c));
  try {
    await pipeline(Readable.from(chunks), g);
  } catch (err) {
    return { err };
  }
  return { out: Buffer.concat(outs), rows: g.rows, chunks: outs };
}

/** Every way of cutting `buf` in two, plus one byte at a time. */
function cuttings(buf: Buffer): Buffer[][] {
  const all: Buffer[][] = [[buf], Array.from(buf, (b) => Buffer.of(b))];
  for (let i = 1; i < buf.length; i++) all.push([buf.subarray(0, i), buf.subarray(i)]);
  return all;
}

const TRICKY = Buffer.concat([
  encodeBulkRow(['1', 'tab\there', null]),
  encodeBulkRow(['\\N', '', 'back\\slash\\']),
  encodeBulkRow([Buffer.from([0x00, 0x0d, 0x0a, 0x5c, 0xff]), '\\', 'N']),
  encodeBulkRow([null, null, null]),
]);

describe('BulkTextGate', () => {
  it('passes well-formed input through untouched, the same buffers, whatever the chunking', async () => {
    for (const dialect of ['mysql', 'postgres'] as const) {
      const input = dialect === 'postgres' ? Buffer.from(TRICKY.toString('latin1').replace('\\0', 'x'), 'latin1') : TRICKY;
      const whole = await gate([input], 3, dialect);
      expect('out' in whole && whole.chunks[0]).toBe(input);
      for (const chunks of cuttings(input)) {
        const r = await gate(chunks, 3, dialect);
        expect(r, `${dialect} ${chunks.length} chunks`).toEqual({ out: input, rows: 4, chunks: expect.any(Array) });
      }
    }
  });

  it('rewrites the escapes a loader would misread, also when cut in the middle', async () => {
    const mysqlIn = Buffer.from('a\\fb\\vc\\Zd\\be\\0\t\\N\n');
    const mysqlOut = Buffer.from('a\x0cb\x0bc\\Zd\\be\\0\t\\N\n', 'latin1');
    const pgIn = Buffer.from('a\\fb\\vc\\Zd\\be\t\\N\n');
    const pgOut = Buffer.from('a\\fb\\vc\x1ad\\be\t\\N\n', 'latin1');
    for (const [dialect, input, output] of [['mysql', mysqlIn, mysqlOut], ['postgres', pgIn, pgOut]] as const) {
      for (const chunks of cuttings(input)) {
        const r = await gate(chunks, 2, dialect);
        expect(r, `${dialect} ${chunks.map((c) => c.length).join('+')}`).toMatchObject({ out: output, rows: 1 });
      }
    }
  });

  it('refuses malformed input with EDB naming the row, whatever the chunking', async () => {
    const ok = encodeBulkRow(['1', 'a']);
    const cases: [string, string, RegExp, BulkDialect?][] = [
      ['too few fields', '2\n', /row 2: expected 2 fields, found 1/],
      ['too many fields', '2\tb\tc\n', /row 2: expected 2 fields, found 3 or more/],
      ['unknown escape', '2\t\\q\n', /row 2: unknown escape \\q/],
      ['end-of-copy marker', '\\.\n', /row 2: unknown escape \\\./],
      ['\\N after text', '2\tx\\N\n', /row 2: \\N inside a longer field/],
      ['text after \\N', '2\t\\Nx\n', /row 2: \\N inside a longer field/],
      ['escape after \\N', '2\t\\N\\t\n', /row 2: \\N inside a longer field/],
      ['no final LF', '2\tb', /row 2: .*truncated/],
      ['a lone backslash at the end', '2\tb\\', /row 2: .*truncated/],
      ['NUL for PostgreSQL', '2\tb\\0c\n', /Row 2 holds a NUL character/, 'postgres'],
    ];
    for (const [what, bad, re, only] of cases) {
      for (const dialect of ['mysql', 'postgres'] as const) {
        if (only !== undefined && only !== dialect) continue;
        const input = Buffer.concat([ok, Buffer.from(bad, 'latin1')]);
        for (const chunks of cuttings(input)) {
          const r = await gate(chunks, 2, dialect);
          expect('err' in r, `${what} ${dialect}`).toBe(true);
          const err = (r as { err: unknown }).err;
          expect(err, what).toBeInstanceOf(StowageError);
          expect((err as StowageError).code).toBe('EDB');
          expect((err as StowageError).message, `${what} ${dialect} ${chunks.length}`).toMatch(re);
        }
      }
    }
    // MySQL stores NUL: \0 passes there.
    expect(await gate([Buffer.concat([ok, Buffer.from('2\tb\\0c\n')])], 2, 'mysql')).toMatchObject({ rows: 2 });
  });

  it('fails a row with too many fields at once, without waiting for its end', async () => {
    const g = new BulkTextGate({ columns: 2, dialect: 'mysql' });
    const err = await new Promise<unknown>((resolve) => {
      g.once('error', resolve);
      g.write(Buffer.from('1\t2\t3'));
    });
    expect((err as StowageError).message).toMatch(/expected 2 fields, found 3 or more/);
  });

  it('finds every TAB, LF and escape at any alignment of the buffer, past control and high bytes', async () => {
    // The scan tests 4 bytes at a time where the buffer is 4-aligned: long
    // fields of bytes that look special to that test (0x01..0x08, 0x0b..0x1f,
    // 0x5b/0x5d beside the backslash, 0x80..0xff), at every offset.
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    const filler = [0x01, 0x08, 0x0b, 0x0c, 0x1f, 0x20, 0x41, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xa9, 0xff];
    const field = (): Buffer => Buffer.from(Array.from({ length: rnd(24) }, () => filler[rnd(filler.length)]!));
    const rows = Array.from({ length: 300 }, (_, i) => encodeBulkRow([String(i), field(), rnd(5) === 0 ? null : Buffer.concat([field(), Buffer.from('\\t\n'), field()])]));
    const input = Buffer.concat(rows);
    for (let offset = 0; offset < 8; offset++) {
      const host = Buffer.alloc(input.length + 16, 0x09);
      input.copy(host, offset);
      const at = host.subarray(offset, offset + input.length);
      for (const size of [input.length, 4096, 61, 4, 3]) {
        const chunks: Buffer[] = [];
        for (let o = 0; o < at.length; o += size) chunks.push(at.subarray(o, o + size));
        expect(await gate(chunks, 3, 'mysql'), `offset ${offset}, chunks of ${size}`).toMatchObject({ out: input, rows: 300 });
      }
      // A TAB, a LF or a bad escape hidden in the middle of a long field is found.
      const k = 150 + offset;
      const before = Buffer.concat(rows.slice(0, k));
      const long = Buffer.from(`${k}\t${'x'.repeat(37 + offset)}`);
      for (const [bad, re] of [['\t', /expected 3 fields, found 4/], ['\n', /expected 3 fields, found 2/], ['\\q', /unknown escape \\q/]] as const) {
        const row = Buffer.concat([long, Buffer.from(bad), Buffer.from(`${'y'.repeat(29)}\tz\n`)]);
        const whole = Buffer.concat([before, row, ...rows.slice(k)]);
        const host2 = Buffer.alloc(whole.length + 8);
        whole.copy(host2, offset);
        const r = await gate([host2.subarray(offset, offset + whole.length)], 3, 'mysql');
        expect((r as { err: StowageError }).err?.message, `offset ${offset} ${JSON.stringify(bad)}`).toMatch(new RegExp(`row ${k + 1}: .*${re.source}`));
      }
    }
  });

  it('counts the empty values of the fields asked for (not \\N, not other fields), whatever the chunking', async () => {
    // Fields 1 and 3 counted: rows 1, 3 and 4 have an empty field 1, row 2 an empty field 3, row 3 a \N in field 3.
    const text = Buffer.from('1\t\ta\t\n2\tx\t\t\n\t\t\\\\\t\\N\n4\t\t\\N\tz\n');
    for (const chunks of cuttings(text)) {
      const g = new BulkTextGate({ columns: 4, dialect: 'mysql', countEmpty: [1, 3] });
      g.resume();
      await pipeline(Readable.from(chunks), g);
      expect(g.rows).toBe(4);
      expect(g.emptyCount).toBe(5);
    }
    const none = new BulkTextGate({ columns: 4, dialect: 'mysql' });
    none.resume();
    await pipeline(Readable.from([text]), none);
    expect(none.emptyCount).toBe(0);
  });

  it('cuts large chunks to maxChunkBytes', async () => {
    const rows = Buffer.concat(Array.from({ length: 1000 }, (_, i) => encodeBulkRow([String(i), 'x'.repeat(100)])));
    const r = await gate([rows], 2, 'postgres', 4096);
    expect(r).toMatchObject({ out: rows, rows: 1000 });
    const sizes = (r as { chunks: Buffer[] }).chunks.map((c) => c.length);
    expect(Math.max(...sizes)).toBe(4096);
    expect(sizes.length).toBe(Math.ceil(rows.length / 4096));
  });
});
