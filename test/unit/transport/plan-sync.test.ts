import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { planSync, type SyncTree, type SyncTreeEntry } from '../../../src/transport/sync.js';

const T0 = Date.UTC(2024, 0, 1);

function tree(entries: (Partial<SyncTreeEntry> & { path: string })[]): SyncTree {
  return new Map(
    entries.map((e) => [e.path, { type: 'file' as const, size: 10, mtimeMs: T0, mode: 0o644, ...e }]),
  );
}

describe('planSync (pure)', () => {
  it('copies what is new or changed by size or mtime (whole seconds), leaves the rest', () => {
    const src = tree([
      { path: 'a', size: 10 },
      { path: 'b', size: 11 },
      { path: 'c', mtimeMs: T0 + 5000 },
      { path: 'd', mtimeMs: T0 + 999 }, // same second as the destination's
      { path: 'new' },
    ]);
    const dst = tree([{ path: 'a' }, { path: 'b' }, { path: 'c' }, { path: 'd' }]);
    const plan = planSync(src, dst);
    expect(plan.copies.map((c) => [c.path, c.reason])).toEqual([
      ['b', 'size'],
      ['c', 'mtime'],
      ['new', 'new'],
    ]);
    expect(plan.unchanged).toBe(2);
    expect(plan.bytesToCopy).toBe(11 + 10 + 10);
    expect(plan.deletes).toEqual([]);
  });

  it('with checksum compares digests, not mtimes', () => {
    const dna = (dig: string) => ({ dig, size: 10, algorithm: 'md5' as const });
    const src = tree([
      { path: 'same', mtimeMs: T0 + 60_000, dna: dna('a'.repeat(32)) },
      { path: 'diff', dna: dna('b'.repeat(32)) },
    ]);
    const dst = tree([
      { path: 'same', dna: dna('a'.repeat(32)) },
      { path: 'diff', dna: dna('c'.repeat(32)) },
    ]);
    const plan = planSync(src, dst, { checksum: true });
    expect(plan.copies.map((c) => [c.path, c.reason])).toEqual([['diff', 'checksum']]);
    expect(plan.unchanged).toBe(1);
  });

  it("plans deletions only with delete: 'after', deepest first", () => {
    const src = tree([{ path: 'keep' }]);
    const dst = tree([{ path: 'keep' }, { path: 'old', type: 'dir' }, { path: 'old/x' }, { path: 'old/y/z', type: 'file' }, { path: 'old/y', type: 'dir' }, { path: 'gone' }]);
    expect(planSync(src, dst).deletes).toEqual([]);
    const plan = planSync(src, dst, { delete: 'after' });
    expect(plan.deletes).toEqual(['old/y/z', 'old/y', 'old/x', 'old', 'gone']);
    expect(plan.destinationEntries).toBe(6);
  });

  it('creates directories parents first and sets directory mtimes deepest first', () => {
    const src = tree([
      { path: 'a', type: 'dir', mtimeMs: T0 + 1000 },
      { path: 'a/b', type: 'dir', mtimeMs: T0 + 2000 },
      { path: 'a/b/f' },
      { path: 'c', type: 'dir' },
    ]);
    const dst = tree([{ path: 'c', type: 'dir' }]);
    const plan = planSync(src, dst);
    expect(plan.mkdirs).toEqual(['a', 'a/b']);
    expect(plan.dirMtimes.map((d) => d.path)).toEqual(['a/b', 'a']);
    expect(plan.copies.map((c) => c.path)).toEqual(['a/b/f']);
  });

  it('symlinks are compared by target; skipped when symlinks:false', () => {
    const src = tree([
      { path: 'l1', type: 'symlink', target: 'x' },
      { path: 'l2', type: 'symlink', target: 'y' },
    ]);
    const dst = tree([
      { path: 'l1', type: 'symlink', target: 'x' },
      { path: 'l2', type: 'symlink', target: 'old' },
    ]);
    const plan = planSync(src, dst);
    expect(plan.copies).toEqual([{ path: 'l2', type: 'symlink', size: 0, mtimeMs: T0, mode: 0o644, target: 'y', reason: 'new' }]);
    expect(planSync(src, new Map(), { symlinks: false }).copies).toEqual([]);
  });

  it('leaves alone what the destination holds at and under a source entry it does not sync (a symlink with symlinks:false, a fifo)', () => {
    // An earlier `cp -rL` made a folder of what the source has as a link to another disk.
    const src = tree([{ path: 'data', type: 'symlink', target: '/disk2' }, { path: 'fifo', type: 'other' }, { path: 'gone' }]);
    const dst = tree([{ path: 'data', type: 'dir' }, { path: 'data/run1.mid' }, { path: 'data/sub', type: 'dir' }, { path: 'data/sub/run2.mid' }, { path: 'fifo', type: 'dir' }, { path: 'fifo/x' }, { path: 'extra' }]);
    const plan = planSync(src, dst, { delete: 'after', symlinks: false });
    expect(plan.deletes).toEqual(['extra']);
    expect(plan.replaces).toEqual([]);
    expect(plan.removals).toBe(1);
    expect(plan.copies.map((c) => c.path)).toEqual(['gone']);
  });

  it('a directory where a file goes (or the reverse) is a conflict without delete, a replace with it', () => {
    const src = tree([
      { path: 'was-dir' },
      { path: 'was-file', type: 'dir' },
      { path: 'was-file/inner' },
    ]);
    const dst = tree([{ path: 'was-dir', type: 'dir' }, { path: 'was-dir/child' }, { path: 'was-file' }]);
    const keep = planSync(src, dst);
    expect(keep.conflicts).toEqual(['was-dir', 'was-file']);
    expect(keep.copies).toEqual([]);
    expect(keep.replaces).toEqual([]);
    const del = planSync(src, dst, { delete: 'after' });
    expect(del.replaces).toEqual(['was-dir', 'was-file']);
    expect(del.copies.map((c) => [c.path, c.reason])).toEqual([
      ['was-dir', 'type'],
      ['was-file/inner', 'new'],
    ]);
    expect(del.mkdirs).toEqual(['was-file']);
    // The child of a replaced directory goes with it: not listed again, but counted.
    expect(del.deletes).toEqual([]);
    expect(keep.removals).toBe(0);
    expect(del.removals).toBe(3);
  });

  it('a file replacing a symlink (or the reverse) is a plain copy, no deletion', () => {
    const src = tree([{ path: 'x' }, { path: 'y', type: 'symlink', target: 'x' }]);
    const dst = tree([{ path: 'x', type: 'symlink', target: 'y' }, { path: 'y' }]);
    const plan = planSync(src, dst, { delete: 'after' });
    expect(plan.copies.map((c) => [c.path, c.type, c.reason])).toEqual([
      ['x', 'file', 'type'],
      ['y', 'symlink', 'type'],
    ]);
    expect(plan.replaces).toEqual([]);
  });

  it('is pure: the same input gives the same plan, and unknown options are EBAD_CONFIG', () => {
    const src = tree([{ path: 'a' }, { path: 'b', size: 3 }]);
    const dst = tree([{ path: 'a' }, { path: 'c' }]);
    expect(planSync(src, dst, { delete: 'after' })).toEqual(planSync(src, dst, { delete: 'after' }));
    expect(() => planSync(src, dst, { delet: 'after' } as never)).toThrow(StowageError);
  });
});
