// The order in which Partitioner.restore loads tables that refer to each
// other: parents first, a cycle cut where it closes.
import { describe, expect, it } from 'vitest';
import { loadLevels, loadStages } from '../../../src/partition/restore.js';

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

describe('loadStages', () => {
  const a = (table: string, lo: number, more: string[] = []) => ({ lo: BigInt(lo), tables: [table, ...more].map((name) => ({ name })), id: `${table}@${lo}` });
  const ids = (stages: { id: string }[][]) => stages.map((st) => st.map((s) => s.id));

  it('puts parents first, a group archive at its highest table, and a self-referring table one archive at a time in key order', () => {
    const level = new Map([['run', 0], ['calib', 1], ['chan', 1], ['vld', 0], ['payload', 1]]);
    const archives = [a('calib', 1), a('chan', 101), a('run', 1), a('chan', 1), a('vld', 1, ['payload']), a('run', 101)];
    expect(ids(loadStages(archives, level, new Set(['chan'])))).toEqual([['run@1', 'run@101'], ['calib@1', 'vld@1'], ['chan@1'], ['chan@101']]);
    expect(ids(loadStages(archives, new Map(), new Set()))).toEqual([archives.map((x) => x.id)]);
  });

  it('handles as many archives as a large restore has', () => {
    const many = Array.from({ length: 200_000 }, (_, i) => a(i % 2 ? 'child' : 'self', i));
    // No argument spread over the archives (RangeError from ~125,000 on), no quadratic search.
    const stages = loadStages(many, new Map([['child', 1]]), new Set(['self']));
    expect(stages).toHaveLength(100_001);
    expect(stages[0]![0]!.id).toBe('self@0');
    expect(stages.at(-1)).toHaveLength(100_000);
  });
});
