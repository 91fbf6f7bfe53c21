import { describe, expect, it } from 'vitest';
import { ERROR_CODES, StowageError, fromFsError, isStowageError, warnOrThrow, type StowageWarning } from '../../src/errors.js';

const fsErr = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: something`), { code });

describe('StowageError', () => {
  it('carries code, message, frozen details, cause and name', () => {
    const cause = new Error('driver said no');
    const e = new StowageError('EDB', 'query failed', { details: { table: 't' }, cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('StowageError');
    expect(e.code).toBe('EDB');
    expect(e.message).toBe('query failed');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ table: 't' });
    expect(Object.isFrozen(e.details)).toBe(true);
    expect(new StowageError('EIO', 'x')).not.toHaveProperty('cause');
  });

  it('is retryable by default only for ELOCKED, ECONNECT and ETIMEOUT, and the flag can be set', () => {
    const retryable = (Object.keys(ERROR_CODES) as (keyof typeof ERROR_CODES)[]).filter((c) => new StowageError(c, '').retryable);
    expect(retryable.sort()).toEqual(['ECONNECT', 'ELOCKED', 'ETIMEOUT']);
    expect(new StowageError('EIO', '', { retryable: true }).retryable).toBe(true);
    expect(new StowageError('ELOCKED', '', { retryable: false }).retryable).toBe(false);
  });

  it('documents every code with a sentence', () => {
    for (const [code, text] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^E[A-Z_]+$/);
      expect(text.length).toBeGreaterThan(10);
    }
  });
});

describe('isStowageError', () => {
  it('matches the class and, when given, the code', () => {
    const e = new StowageError('ENOSPACE', 'full');
    expect(isStowageError(e)).toBe(true);
    expect(isStowageError(e, 'ENOSPACE')).toBe(true);
    expect(isStowageError(e, 'EIO')).toBe(false);
    expect(isStowageError(new Error('x'))).toBe(false);
    expect(isStowageError({ code: 'EIO' })).toBe(false);
  });
});

describe('fromFsError', () => {
  it.each([
    ['ENOSPC', 'ENOSPACE'],
    ['EDQUOT', 'ENOSPACE'],
    ['ENOENT', 'ENOT_FOUND'],
    ['EEXIST', 'EEXIST'],
    ['EACCES', 'EIO'],
    ['EISDIR', 'EIO'],
  ])('maps %s to %s, naming the path and keeping the cause', (errno, code) => {
    const cause = fsErr(errno);
    const e = fromFsError(cause, 'write', '/data/x.tar');
    expect(e.code).toBe(code);
    expect(e.message).toContain('/data/x.tar');
    expect(e.message).toContain('write');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ path: '/data/x.tar', action: 'write', errno });
  });

  it('passes StowageErrors through unchanged and copes with non-errors', () => {
    const s = new StowageError('ELOCKED', 'held');
    expect(fromFsError(s, 'x', 'y')).toBe(s);
    const e = fromFsError('weird', 'read', '/p');
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('weird');
  });
});

describe('warnOrThrow', () => {
  it('reports a recoverable warning when not strict', () => {
    const seen: StowageWarning[] = [];
    const e = new StowageError('EBAD_SIDECAR', 'bad sidecar');
    warnOrThrow(e, '/t/f.dna', (w) => seen.push(w), false);
    expect(seen).toEqual([{ code: 'EBAD_SIDECAR', path: '/t/f.dna', message: 'bad sidecar', recoverable: true, error: e }]);
  });

  it('is silent without a callback and throws the error itself when strict', () => {
    const e = new StowageError('ELOCKED', 'locked');
    expect(() => warnOrThrow(e, '/t', undefined, undefined)).not.toThrow();
    const seen: StowageWarning[] = [];
    expect(() => warnOrThrow(e, '/t', (w) => seen.push(w), true)).toThrow(e);
    expect(seen).toEqual([]);
  });
});
