import { describe, expect, it } from 'vitest';
import {
  BULK_NULL,
  BulkTextParser,
  decodeBulkField,
  decodeBulkTextField,
  encodeBulkRow,
  escapeBulkBytes,
  escapeBulkText,
  readBulkRows,
  type BulkField,
  type BulkRow,
} from '../../../src/db/index.js';
import { chunked, rejectsWith, throwsWith } from './helpers.js';

function parseAll(buf: Buffer, chunk = buf.length || 1, columns?: number): BulkRow[] {
  const p = new BulkTextParser(columns === undefined ? {} : { columns });
  const rows: BulkRow[] = [];
  for (let i = 0; i < buf.length; i += chunk) p.write(buf.subarray(i, i + chunk), (f) => rows.push(f));
  p.end();
  return rows;
}

const asText = (rows: BulkRow[]): (string | null)[][] => rows.map((r) => r.map((f) => (f === null ? null : f.toString('utf8'))));

describe('bulk text encoding', () => {
  it('escapes exactly backslash, TAB, LF, CR and NUL in text', () => {
    expect(escapeBulkText('plain ünïcödé 🚀')).toBe('plain ünïcödé 🚀');
    expect(escapeBulkText('a\\b\tc\nd\re\0f')).toBe('a\\\\b\\tc\\nd\\re\\0f');
    expect(escapeBulkText('\\N')).toBe('\\\\N');
  });

  it('escapes the same five bytes in binary and leaves every other byte raw', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const out = escapeBulkBytes(all);
    expect(out.length).toBe(256 + 5);
    expect(out.subarray(0, 2).toString('latin1')).toBe('\\0');
    expect(out.includes(0x09)).toBe(false);
    expect(out.includes(0x0a)).toBe(false);
    expect(out.includes(0x0d)).toBe(false);
    expect(decodeBulkField(out)).toEqual(all);
    const clean = Buffer.from('abc');
    expect(escapeBulkBytes(clean)).toBe(clean);
  });

  it('writes NULL as \\N, the empty string as an empty field, and ends every row with LF', () => {
    expect(encodeBulkRow([null, '', 'x', new Uint8Array([0x5c])]).toString('latin1')).toBe('\\N\t\tx\t\\\\\n');
    expect(encodeBulkRow([]).toString()).toBe('\n');
    expect(BULK_NULL).toBe('\\N');
  });

  it('round-trips awkward rows through the parser, whatever the chunking', () => {
    const rows: BulkField[][] = [
      [null, '', '\\N', 'N', '\\'],
      ['tab\there', 'lf\nthere', 'cr\rthere', 'nul\0there', 'back\\slash\\'],
      ['日本語 🚀', Buffer.from([0, 9, 10, 13, 92, 78, 255]), '\\t is not a tab'],
      [''],
    ];
    const buf = Buffer.concat(rows.map(encodeBulkRow));
    const want = rows.map((r) => r.map((f) => (f === null ? null : Buffer.from(f as string | Uint8Array))));
    for (const chunk of [1, 2, 3, 7, buf.length]) expect(parseAll(buf, chunk)).toEqual(want);
  });

  it('decodes to strings exactly as to bytes (writeStrings), with the same errors', () => {
    const rows: BulkField[][] = [
      [null, '', '\\N', 'N', '\\', 'tab\there', 'lf\nthere\r\0', '日本語 🚀 \\t'],
      ['\b\f\v\x1a', '\\\\'],
    ];
    const buf = Buffer.concat(rows.map(encodeBulkRow));
    for (const chunk of [1, 5, buf.length]) {
      const p = new BulkTextParser();
      const got: (string | null)[][] = [];
      for (let i = 0; i < buf.length; i += chunk) p.writeStrings(buf.subarray(i, i + chunk), (f) => got.push(f));
      p.end();
      expect(got).toEqual(rows);
      expect(got).toEqual(asText(parseAll(buf)));
    }
    expect(decodeBulkTextField('\\b\\f\\v\\Z')).toBe('\b\f\v\x1a');
    expect(throwsWith(() => decodeBulkTextField('a\\q', 7), 'EDB').message).toMatch(/row 7: unknown escape \\q/);
    expect(throwsWith(() => decodeBulkTextField('a\\', 7), 'EDB').message).toMatch(/lone backslash/);
    expect(throwsWith(() => decodeBulkTextField('x\\N', 7), 'EDB').message).toMatch(/\\N inside a longer field/);
    const p = new BulkTextParser({ columns: 2 });
    expect(throwsWith(() => p.writeStrings(Buffer.from('a\tb\tc\n'), () => {}), 'EDB').message).toMatch(/expected 2 fields, found 3/);
  });

  it('writeStrings with strictUtf8 refuses a row that is not valid UTF-8 (EDB naming row and field); without it, U+FFFD', () => {
    const text = Buffer.from('a\tcaf\u00e9 \uFFFD\n');
    const bad = Buffer.concat([text, Buffer.from([0x62, 0x09, 0x63, 0x61, 0x66, 0xe9, 0x0a])]);
    for (const chunk of [1, 2, bad.length]) {
      const p = new BulkTextParser({ strictUtf8: true });
      const got: (string | null)[][] = [];
      const err = throwsWith(() => {
        for (let i = 0; i < bad.length; i += chunk) p.writeStrings(bad.subarray(i, i + chunk), (f) => got.push(f));
      }, 'EDB');
      expect(err.message).toMatch(/row 2: field 2 is not valid UTF-8 \(bytes 636166e9\)/);
      // Valid UTF-8 (U+FFFD itself, characters split across chunks) goes through.
      expect(got).toEqual([['a', 'caf\u00e9 \uFFFD']]);
    }
    const lax: (string | null)[][] = [];
    new BulkTextParser().writeStrings(bad, (f) => lax.push(f));
    expect(lax[1]).toEqual(['b', 'caf\uFFFD']);
  });

  it('decodes the extra escapes MySQL and PostgreSQL may write', () => {
    expect(asText(parseAll(Buffer.from('\\b\\f\\v\\Z\n')))).toEqual([['\b\f\v\x1a']]);
  });

  it('refuses malformed input with EDB naming the row', () => {
    const bad: [string, RegExp][] = [
      ['ok\nnot \\q ok\n', /row 2: unknown escape \\q/],
      ['x\\N\n', /row 1: \\N inside a longer field/],
      ['trailing\\\n', /lone backslash/],
      ['a\tb\nno final newline', /row 2: .*truncated/],
    ];
    for (const [text, re] of bad) {
      const err = throwsWith(() => parseAll(Buffer.from(text)), 'EDB');
      expect(err.message).toMatch(re);
    }
  });

  it('checks the number of fields when told how many columns to expect', () => {
    expect(parseAll(Buffer.from('a\tb\n'), 4, 2)).toHaveLength(1);
    const err = throwsWith(() => parseAll(Buffer.from('a\tb\na\tb\tc\n'), 4, 2), 'EDB');
    expect(err.message).toMatch(/row 2: expected 2 fields, found 3/);
  });

  it('refuses a row longer than maxRowBytes instead of buffering it', () => {
    const p = new BulkTextParser({ maxRowBytes: 10 });
    p.write(Buffer.from('short\n'), () => {});
    const err = throwsWith(() => p.write(Buffer.from('x'.repeat(11)), () => {}), 'EDB');
    expect(err.message).toMatch(/longer than 10 bytes/);
  });

  it('readBulkRows yields rows from an async stream and stops on abort', async () => {
    const buf = Buffer.concat([encodeBulkRow(['1', 'a']), encodeBulkRow(['2', null])]);
    const rows: BulkRow[] = [];
    for await (const r of readBulkRows(chunked(buf, 3), { columns: 2 })) rows.push(r);
    expect(asText(rows)).toEqual([
      ['1', 'a'],
      ['2', null],
    ]);
    const ac = new AbortController();
    const reason = new Error('stop');
    const it = readBulkRows(
      (async function* () {
        yield encodeBulkRow(['1']);
        ac.abort(reason);
        yield encodeBulkRow(['2']);
      })(),
      { signal: ac.signal },
    );
    expect((await it.next()).value).toEqual([Buffer.from('1')]);
    await expect(it.next()).rejects.toBe(reason);
    await rejectsWith(
      (async () => {
        for await (const _ of readBulkRows(chunked(Buffer.from('a\nb'), 1))) void _;
      })(),
      'EDB',
    );
  });
});
