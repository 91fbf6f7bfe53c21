import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors.js';

// Codes are API: each must be documented in the README's error table.
describe('README error table', () => {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  const rows = new Set([...readme.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]));
  it.each(Object.keys(ERROR_CODES))('documents %s', (code) => {
    expect(rows.has(code)).toBe(true);
  });
  it('documents no code that does not exist', () => {
    expect([...rows].filter((c) => !(c! in ERROR_CODES))).toEqual([]);
  });
});
