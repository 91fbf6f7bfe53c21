import { describe, expect, it } from 'vitest';
import { anySignal, onAbort, raceAbort, sleep, throwIfAborted } from '../../../src/util/abort.js';

describe('throwIfAborted', () => {
  it('throws the signal\'s own reason, and nothing otherwise', () => {
    expect(() => throwIfAborted(undefined)).not.toThrow();
    const ac = new AbortController();
    expect(() => throwIfAborted(ac.signal)).not.toThrow();
    const reason = new Error('why');
    ac.abort(reason);
    expect(() => throwIfAborted(ac.signal)).toThrow(reason);
  });
});

describe('onAbort', () => {
  it('calls back once with the reason, and the disposer removes the listener', () => {
    const ac = new AbortController();
    const seen: unknown[] = [];
    const dispose = onAbort(ac.signal, (r) => seen.push(r));
    ac.abort('r1');
    expect(seen).toEqual(['r1']);
    dispose();

    const ac2 = new AbortController();
    const seen2: unknown[] = [];
    const dispose2 = onAbort(ac2.signal, (r) => seen2.push(r));
    dispose2();
    ac2.abort('r2');
    expect(seen2).toEqual([]);
  });

  it('calls back at once for an already aborted signal, and is a no-op without one', () => {
    const seen: unknown[] = [];
    onAbort(AbortSignal.abort('early'), (r) => seen.push(r));
    expect(seen).toEqual(['early']);
    expect(() => onAbort(undefined, () => seen.push('never'))()).not.toThrow();
    expect(seen).toEqual(['early']);
  });
});

describe('raceAbort', () => {
  it('resolves with the work when not aborted', async () => {
    const ac = new AbortController();
    expect(await raceAbort(Promise.resolve(7), ac.signal)).toBe(7);
    expect(await raceAbort(Promise.resolve(8), undefined)).toBe(8);
  });

  it('rejects with the reason as soon as the signal aborts', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    const never = new Promise<number>(() => {});
    setTimeout(() => ac.abort(reason), 10);
    await expect(raceAbort(never, ac.signal)).rejects.toBe(reason);
  });

  it('rejects at once when already aborted', async () => {
    await expect(raceAbort(Promise.resolve(1), AbortSignal.abort('gone'))).rejects.toBe('gone');
  });
});

describe('sleep', () => {
  it('waits the given time', async () => {
    const t0 = performance.now();
    await sleep(30);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('rejects with the reason when aborted before or during the wait', async () => {
    await expect(sleep(10, AbortSignal.abort('before'))).rejects.toBe('before');
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort('during'), 10);
    await expect(sleep(10_000, ac.signal)).rejects.toBe('during');
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('anySignal', () => {
  it('returns undefined, the one signal, or a signal aborting with the first reason', () => {
    expect(anySignal(undefined, undefined)).toBeUndefined();
    const a = new AbortController();
    expect(anySignal(undefined, a.signal)).toBe(a.signal);
    const b = new AbortController();
    const both = anySignal(a.signal, b.signal)!;
    expect(both.aborted).toBe(false);
    b.abort('b first');
    expect(both.aborted).toBe(true);
    expect(both.reason).toBe('b first');
  });
});
