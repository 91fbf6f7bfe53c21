import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { checkInt, checkOneOf, checkOptionKeys } from '../../../src/util/options.js';

function code(fn: () => unknown): StowageError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StowageError);
    return e as StowageError;
  }
  throw new Error('did not throw');
}

describe('checkOptionKeys', () => {
  it('accepts known keys, undefined and null', () => {
    expect(() => checkOptionKeys('X', { a: 1, bb: 2 }, ['a', 'bb'])).not.toThrow();
    expect(() => checkOptionKeys('X', undefined, ['a'])).not.toThrow();
    expect(() => checkOptionKeys('X', null as unknown as object, ['a'])).not.toThrow();
  });

  it('is EBAD_CONFIG naming a misspelled key and suggesting the close one', () => {
    const e = code(() => checkOptionKeys('Archiver.create', { gzipLevl: 6 }, ['gzipLevel', 'entries']));
    expect(e.code).toBe('EBAD_CONFIG');
    expect(e.message).toBe('Archiver.create: unknown option "gzipLevl". Did you mean "gzipLevel"?');
    expect(e.details).toMatchObject({ where: 'Archiver.create', option: 'gzipLevl', suggestion: 'gzipLevel' });
  });

  it('lists the known options when nothing is close', () => {
    const e = code(() => checkOptionKeys('X', { zzzzzzzz: 1 }, ['alpha', 'beta']));
    expect(e.message).toContain('Known options: alpha, beta.');
  });

  it('is EBAD_CONFIG for options that are not an object', () => {
    expect(code(() => checkOptionKeys('X', 5 as unknown as object, ['a'])).code).toBe('EBAD_CONFIG');
  });
});

describe('checkInt', () => {
  it('returns integers in range', () => {
    expect(checkInt('X', 'n', 3, 1, 5)).toBe(3);
    expect(checkInt('X', 'n', 1, 1, 5)).toBe(1);
    expect(checkInt('X', 'n', 5, 1, 5)).toBe(5);
  });

  it.each([0, 6, 2.5, '3', NaN, Infinity, undefined])('is EBAD_CONFIG for %s, naming the option', (v) => {
    const e = code(() => checkInt('X', 'level', v, 1, 5));
    expect(e.code).toBe('EBAD_CONFIG');
    expect(e.message).toContain('"level"');
    expect(e.details).toMatchObject({ option: 'level' });
  });
});

describe('checkOneOf', () => {
  it('returns an allowed value and is EBAD_CONFIG listing the choices otherwise', () => {
    expect(checkOneOf('X', 'mode', 'a', ['a', 'b'])).toBe('a');
    const e = code(() => checkOneOf('X', 'mode', 'c', ['a', 'b']));
    expect(e.code).toBe('EBAD_CONFIG');
    expect(e.message).toContain('one of a, b');
    expect(code(() => checkOneOf('X', 'mode', 1, ['a'])).code).toBe('EBAD_CONFIG');
  });
});
