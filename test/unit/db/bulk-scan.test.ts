// The bulk text gate's WebAssembly fast path (bulk-scan.wat): the shipped
// bytes are those of the .wat, this runtime takes the fast path, and the
// gate gives the same output, row counts and errors with and without it on
// random and damaged input, chunked anyhow, and across the 1 MiB windows
// the fast path copies the text in by.
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { BULK_ESCAPES, BulkTextGate, type BulkDialect } from '../../../src/db/bulk-gate.js';
import { bulkScanner } from '../../../src/db/bulk-scan.js';
import { BULK_SCAN_WASM } from '../../../src/db/bulk-scan-wasm.js';
import { encodeBulkRow } from '../../../src/db/index.js';
import { StowageError } from '../../../src/errors.js';
import { run } from '../../support/index.js';

/** What a gate makes of `chunks`: output, rows, or the error's code and message. */
async function through(chunks: Buffer[], columns: number, dialect: BulkDialect, fastPath: boolean): Promise<{ out: string; rows: number } | { code: string; message: string }> {
  const g = new BulkTextGate({ columns, dialect, fastPath });
  const outs: Buffer[] = [];
  g.on('data', (c: Buffer) => outs.push(c));
  try {
    await pipeline(Readable.from(chunks), g);
  } catch (err) {
    expect(err).toBeInstanceOf(StowageError);
    return { code: (err as StowageError).code, message: (err as StowageError).message };
  }
  return { out: Buffer.concat(outs).toString('hex'), rows: g.rows };
}

/** A deterministic pseudo-random source. */
function random(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

/** A field of bulk text as a loader may receive it: plain, high and control bytes, every escape either engine writes or reads, `\N`, empty. */
function field(rnd: (n: number) => number): Buffer {
  switch (rnd(8)) {
    case 0:
      return Buffer.from('\\N');
    case 1:
      return Buffer.alloc(0);
    case 2: {
      const escapes = ['\\\\', '\\t', '\\n', '\\r', '\\0', '\\b', '\\f', '\\v', '\\Z', '\\N'];
      return Buffer.from(Array.from({ length: 1 + rnd(6) }, () => (rnd(2) === 0 ? escapes[rnd(escapes.length)]! : 'ab')).join(''), 'latin1');
    }
    default:
      // encodeBulkRow's own escaping of arbitrary bytes (TAB, LF, backslash, NUL among them).
      return encodeBulkRow([Buffer.from(Array.from({ length: rnd(40) }, () => (rnd(3) === 0 ? rnd(256) : 0x61 + rnd(26))))]).subarray(0, -1);
  }
}

function rows(rnd: (n: number) => number, count: number, columns: number): Buffer {
  const out: Buffer[] = [];
  for (let r = 0; r < count; r++) {
    for (let c = 0; c < columns; c++) {
      out.push(field(rnd));
      out.push(Buffer.from(c === columns - 1 ? '\n' : '\t'));
    }
  }
  return Buffer.concat(out);
}

/** `buf` cut at random places (pieces of 1 byte to a few KiB). */
function chop(rnd: (n: number) => number, buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < buf.length; ) {
    const size = rnd(4) === 0 ? 1 + rnd(8) : 1 + rnd(5000);
    out.push(buf.subarray(o, o + size));
    o += size;
  }
  return out;
}

/** `buf` with a few bytes changed, inserted or removed (TAB, LF, backslash, N, letters), or cut short. */
function damage(rnd: (n: number) => number, buf: Buffer): Buffer {
  const bytes = [...buf];
  const specials = [0x09, 0x0a, 0x5c, 0x4e, 0x71, 0x30, 0x5a, 0x66];
  for (let k = 1 + rnd(3); k > 0; k--) {
    const at = rnd(bytes.length + 1);
    const what = rnd(4);
    if (what === 0) bytes.splice(at, 1);
    else if (what === 1) bytes.splice(at, 0, specials[rnd(specials.length)]!);
    else if (what === 2) bytes[Math.min(at, bytes.length - 1)] = specials[rnd(specials.length)]!;
    else bytes.length = at;
  }
  return Buffer.from(bytes);
}

describe('bulk-scan (the gate\'s WebAssembly fast path)', () => {
  it('ships the bytes of bulk-scan.wat (run node scripts/build-wasm.mjs after editing it)', async () => {
    // @ts-expect-error: a plain ES module of the build scripts, without types.
    const { compiled } = (await import('../../../scripts/build-wasm.mjs')) as { compiled: () => Promise<string> };
    const text = await compiled();
    const b64 = [...text.matchAll(/'([A-Za-z0-9+/=]+)'/g)].map((m) => m[1]).join('');
    expect(b64).toBe(BULK_SCAN_WASM);
  });

  it('is what runs here (Node has WebAssembly SIMD); a runtime without WebAssembly (--jitless) keeps the byte loop, same results', async () => {
    expect(bulkScanner(BULK_ESCAPES)).toBeDefined();
    const child = join(import.meta.dirname, '..', '..', 'fixtures', 'db', 'gate-child.ts');
    const results = [];
    for (const flags of [[], ['--jitless']]) {
      const { stdout } = await run(process.execPath, [...flags, '--import', 'tsx', child], { timeoutMs: 60_000 });
      results.push(JSON.parse(stdout.trim().split('\n').at(-1)!) as { fast: boolean; rows: number; out: string; err: string });
    }
    expect(results.map((r) => r.fast)).toEqual([true, false]);
    const expected = { rows: 3, out: `1\ta\fb\n2\t\\N\n3\t${'x'.repeat(40)}\n`, err: expect.stringMatching(/row 2: \\N inside a longer field/) };
    for (const r of results) expect(r).toMatchObject(expected);
  });

  it('gives the same output, rows and errors as the byte loop on random and damaged text, chunked anyhow', async () => {
    const rnd = random(20261207);
    for (let trial = 0; trial < 300; trial++) {
      const columns = 1 + rnd(9);
      const dialect: BulkDialect = rnd(2) === 0 ? 'mysql' : 'postgres';
      let text = rows(rnd, 1 + rnd(60), columns);
      if (trial % 2 === 1) text = damage(rnd, text);
      const chunks = trial % 3 === 0 ? [text] : chop(rnd, text);
      const fast = await through(chunks, columns, dialect, true);
      const loop = await through(chunks, columns, dialect, false);
      expect(fast, `trial ${trial} (${dialect}, ${columns} columns)`).toEqual(loop);
    }
  });

  it('agrees across the 1 MiB windows the text is copied in by, with an escape or a row end astride every boundary', async () => {
    const MiB = 1 << 20;
    const filler = Buffer.from('12345\tabcdefghij\\\\klm\t\\N\n');
    const reps = Math.floor((MiB - 64) / filler.length);
    const prefix = Buffer.concat(Array.from({ length: reps }, () => filler));
    // The row after the prefix has its second field start exactly at MiB + shift.
    for (const second of ['\\tyz', '\\N', '\\fyz', '\\Zyz', '\\0yz', '\\qyz', 'ab\\N', '\\\\yz', '\tyz', '\nyz', '\\']) {
      for (let shift = -4; shift <= 4; shift++) {
        const k = MiB + shift - prefix.length - 2;
        const row = Buffer.from(`7${'w'.repeat(k)}\t${second}\t1\n`, 'latin1');
        const text = Buffer.concat([prefix, row, filler, filler]);
        expect(text.indexOf(Buffer.from(`\t${second}`, 'latin1'), prefix.length)).toBe(MiB + shift - 1);
        for (const dialect of ['mysql', 'postgres'] as const) {
          const fast = await through([text], 3, dialect, true);
          const loop = await through([text], 3, dialect, false);
          expect(fast, `${JSON.stringify(second)} at ${shift} (${dialect})`).toEqual(loop);
        }
      }
    }
  });
});
