/**
 * Up-front validation of options objects: unknown or misspelled keys are a
 * clear EBAD_CONFIG naming the key (and the likely intended one), and the
 * resolved options are frozen.
 *
 * @module
 */
import { StowageError } from '../errors.js';

function distance(a: string, b: string): number {
  const al = a.toLowerCase();
  const bl = b.toLowerCase();
  const row = Array.from({ length: bl.length + 1 }, (_, i) => i);
  for (let i = 1; i <= al.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= bl.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (al[i - 1] === bl[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[bl.length]!;
}

/**
 * Checks that `options` has only keys in `allowed`; throws EBAD_CONFIG naming
 * the first unknown key and the closest allowed one.
 *
 * @param where - the class or function, for the message ("Archiver.create")
 * @param options - the caller's options (may be undefined)
 * @param allowed - allowed keys
 */
export function checkOptionKeys(where: string, options: object | undefined, allowed: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object') {
    throw new StowageError('EBAD_CONFIG', `${where}: options must be an object, got ${typeof options}.`, { details: { where } });
  }
  for (const key of Object.keys(options)) {
    if (allowed.includes(key)) continue;
    let best: string | undefined;
    let bestD = Infinity;
    for (const a of allowed) {
      const d = distance(key, a);
      if (d < bestD) {
        bestD = d;
        best = a;
      }
    }
    const hint = best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? ` Did you mean "${best}"?` : ` Known options: ${allowed.join(', ')}.`;
    throw new StowageError('EBAD_CONFIG', `${where}: unknown option "${key}".${hint}`, { details: { where, option: key, suggestion: best } });
  }
}

/**
 * Throws EBAD_CONFIG unless `value` is an integer in [min, max].
 *
 * @param where - the class or function, for the message
 * @param name - the option name
 * @param value - the value to check
 * @param min - smallest allowed
 * @param max - largest allowed
 */
export function checkInt(where: string, name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be an integer from ${min} to ${max}, got ${String(value)}.`, {
      details: { where, option: name, value },
    });
  }
  return value;
}

/**
 * Throws EBAD_CONFIG unless `value` is one of `choices`.
 *
 * @param where - the class or function, for the message
 * @param name - the option name
 * @param value - the value to check
 * @param choices - allowed values
 */
export function checkOneOf<T extends string>(where: string, name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be one of ${choices.join(', ')}, got ${String(value)}.`, {
      details: { where, option: name, value },
    });
  }
  return value as T;
}

/**
 * Throws EBAD_CONFIG unless `value` is a usable path: a non-empty string
 * without NUL bytes (Node's fs would otherwise throw a bare TypeError, or
 * take `undefined` for a missing file).
 *
 * @param where - the class or function, for the message ("Archiver.create")
 * @param name - the argument's name ("srcDir")
 * @param value - the value to check
 */
export function checkPathArg(where: string, name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.includes('\0')) {
    const got = typeof value === 'string' ? (value === '' ? 'an empty string' : 'a string holding a NUL byte') : value === null ? 'null' : typeof value;
    throw new StowageError('EBAD_CONFIG', `${where}: "${name}" must be a path (a non-empty string), got ${got}.`, { details: { where, argument: name } });
  }
  return value;
}

/**
 * Throws EBAD_CONFIG unless the option `name` is undefined or a function.
 *
 * @param where - the class or function, for the message
 * @param name - the option's name ("onProgress")
 * @param value - the value to check
 */
export function checkFunctionOption(where: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be a function, got ${value === null ? 'null' : typeof value}.`, { details: { where, option: name } });
  }
}

/**
 * Throws EBAD_CONFIG unless the option is undefined or a boolean.
 *
 * @param where - the class or function, for the message
 * @param name - the option's name ("createTables")
 * @param value - the value to check
 */
export function checkBooleanOption(where: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be a boolean.`, { details: { where, option: name } });
  }
}

/**
 * Throws EBAD_CONFIG unless the option `signal` is undefined or an AbortSignal.
 *
 * @param where - the class or function, for the message
 * @param value - the value to check
 */
export function checkSignalOption(where: string, value: unknown): void {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "signal" must be an AbortSignal.`, { details: { where, option: 'signal' } });
  }
}
