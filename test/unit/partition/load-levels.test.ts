// The order in which Partitioner.restore loads tables that refer to each
// other: parents first, a cycle cut where it closes.
import { describe, expect, it } from 'vitest';
import { loadLevels } from '../../../src/partition/restore.js';

const levels = (names: string[], parents: Record<string, string[]>): Record<string, number> => Object.fromEntries(loadLevels(new Set(names), new Map(Object.entries(parents))));

describe('loadLevels', () => {
  it('puts every table at 0 when none refers to another', () => {
    expect(levels(['a', 'b', 'c'], {})).toEqual({ a: 0, b: 0, c: 0 });
  });

  it('puts a table one above the highest of its parents (chain and diamond)', () => {
    expect(levels(['grandchild', 'child', 'run'], { grandchild: ['child'], child: ['run'] })).toEqual({ run: 0, child: 1, grandchild: 2 });
    expect(levels(['top', 'l', 'r', 'bottom'], { l: ['top'], r: ['top'], bottom: ['l', 'r', 'top'] })).toEqual({ top: 0, l: 1, r: 1, bottom: 2 });
  });

  it('cuts a cycle where it closes, and still orders what hangs off it', () => {
    const l = levels(['a', 'b', 'c'], { a: ['b'], b: ['a'], c: ['b'] });
    expect(Math.abs(l['a']! - l['b']!)).toBe(1);
    expect(l['c']).toBe(l['b']! + 1);
    expect(levels(['x'], { x: ['x'] })).toEqual({ x: 0 }); // a table onto itself needs no other table first
  });
});
