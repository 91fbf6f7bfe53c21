/**
 * A fast seeded PRNG (xorshift32) for tests and benchmarks: data that
 * differs everywhere but is the same every run.
 *
 * @module
 */

/**
 * A generator of 32-bit unsigned integers from `seed` (0 is taken as 1).
 *
 * @param seed - any integer
 * @example
 * ```ts
 * const next = xorshift32(7);
 * const die = 1 + (next() % 6);
 * ```
 */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}
