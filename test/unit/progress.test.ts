import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProgressTracker, type Progress } from '../../src/progress.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('ProgressTracker', () => {
  it('counts bytes and items and snapshots them with the totals', () => {
    const t = new ProgressTracker('upload', undefined, { bytesTotal: 100, itemsTotal: 2 });
    t.add(40);
    t.add(10, 1);
    expect(t.snapshot()).toMatchObject({ phase: 'upload', bytesDone: 50, itemsDone: 1, bytesTotal: 100, itemsTotal: 2 });
    expect(new ProgressTracker('x', undefined).snapshot()).not.toHaveProperty('bytesTotal');
  });

  it('throttles callbacks to one per interval, but phase changes and forced reports always go out', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const seen: Progress[] = [];
    const t = new ProgressTracker('hash', (p) => seen.push(p), { intervalMs: 100 });
    vi.advanceTimersByTime(1000);
    t.add(1); // reported: first one
    t.add(1); // throttled
    t.add(1); // throttled
    expect(seen.map((p) => p.bytesDone)).toEqual([1]);
    vi.advanceTimersByTime(100);
    t.add(1);
    expect(seen.map((p) => p.bytesDone)).toEqual([1, 4]);
    t.phase('verify');
    t.report(true);
    expect(seen.map((p) => [p.phase, p.bytesDone])).toEqual([
      ['hash', 1],
      ['hash', 4],
      ['verify', 4],
      ['verify', 4],
    ]);
  });

  it('computes the rate from the start', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const t = new ProgressTracker('x', undefined);
    vi.advanceTimersByTime(2000);
    t.add(1000);
    expect(t.snapshot().rateBps).toBeCloseTo(500, 5);
  });

  it('reports a rate of 0 before any time has passed, and calls nothing without a callback', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const t = new ProgressTracker('x', undefined);
    t.add(5);
    t.report(true);
    expect(t.snapshot().rateBps).toBe(0);
  });
});
