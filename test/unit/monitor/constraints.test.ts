/**
 * Monitor constraints and options: durations, two-level thresholds, and
 * every bad input refused up front with EBAD_CONFIG naming the key.
 */
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../../src/catalog/index.js';
import { CommandNotifier, HttpNotifier, Monitor, parseDurationMs, type MonitorConstraints } from '../../../src/monitor/index.js';
import { parseThreshold, resolveConstraints } from '../../../src/monitor/constraints.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { throwsWith } from '../db/helpers.js';

const local = new LocalTransport();
const tree = { transport: local, dir: '/nonexistent/backups' };

describe('parseDurationMs', () => {
  it.each([
    ['26h', 26 * 3_600_000],
    ['1d12h', 36 * 3_600_000],
    ['2w', 14 * 86_400_000],
    ['90min', 5_400_000],
    ['45s', 45_000],
    ['1w1d1h1min1s', 604_800_000 + 86_400_000 + 3_600_000 + 60_000 + 1000],
    [1500, 1500],
  ])('%s is %d ms', (input, ms) => {
    expect(parseDurationMs('T', 'opt', input)).toBe(ms);
  });

  it.each([['26'], [''], ['h'], ['1h1d'], ['-1h'], ['1.5h'], ['0h'], [0], [-5], [Number.NaN], [Infinity], [null], [{}]])('refuses %j', (input) => {
    const err = throwsWith(() => parseDurationMs('T', 'maxAge', input), 'EBAD_CONFIG');
    expect(err.message).toContain('maxAge');
  });

  it('refuses "m" as ambiguous and says to write "min"', () => {
    expect(throwsWith(() => parseDurationMs('T', 'maxAge', '30m'), 'EBAD_CONFIG').message).toMatch(/"min" for minutes/);
  });
});

describe('parseThreshold', () => {
  it('reads a single value as the warning level with critical at twice it', () => {
    expect(parseThreshold('T', 'maxAge', '26h')).toEqual({ warningMs: 93_600_000, criticalMs: 187_200_000 });
  });
  it('takes both levels, or one of them', () => {
    expect(parseThreshold('T', 'maxAge', { warning: '26h', critical: '48h' })).toEqual({ warningMs: 93_600_000, criticalMs: 172_800_000 });
    expect(parseThreshold('T', 'maxAge', { critical: '2d' })).toEqual({ warningMs: null, criticalMs: 172_800_000 });
  });
  it('refuses an empty object, unknown keys and critical below warning', () => {
    throwsWith(() => parseThreshold('T', 'maxAge', {}), 'EBAD_CONFIG');
    expect(throwsWith(() => parseThreshold('T', 'maxAge', { warn: '1h' }), 'EBAD_CONFIG').message).toMatch(/unknown option "warn".*warning/);
    throwsWith(() => parseThreshold('T', 'maxAge', { warning: '2d', critical: '1d' }), 'EBAD_CONFIG');
  });
});

describe('resolveConstraints', () => {
  it('fills the documented defaults', () => {
    const c = resolveConstraints('Monitor', { maxAge: '26h', size: true, verify: true, locks: true, freeSpace: [{ transport: local, path: '/', minFreePercent: 10 }] });
    expect(c.size).toEqual({ window: 7, minPercent: 50, criticalPercent: 10, maxPercent: null });
    expect(c.verify).toEqual({ newest: 1 });
    expect(c.locks).toEqual({ staleMs: 60_000, maxHeld: undefined, dirs: [] });
    expect(c.freeSpace).toEqual([{ name: 'local:/', transport: local, path: '/', minFreePercent: 10, criticalFreePercent: 5 }]);
    expect(c.jobs).toBeUndefined();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each<[string, unknown]>([
    ['an unknown constraint', { maxAge: '1d', maxAgeMs: 5 }],
    ['a misspelled constraint', { maxage: '1d' }],
    ['nothing to check', {}],
    ['everything off', { size: false, verify: false }],
    ['a bad size window', { size: { window: 0 } }],
    ['an unknown size key', { size: { minPct: 50 } }],
    ['criticalPercent above minPercent', { size: { minPercent: 20, criticalPercent: 30 } }],
    ['maxPercent not above 100', { size: { maxPercent: 90 } }],
    ['verify.newest 0', { verify: { newest: 0 } }],
    ['an empty freeSpace list', { freeSpace: [] }],
    ['a freeSpace node without transport', { freeSpace: [{ path: '/', minFreePercent: 5 }] }],
    ['minFreePercent 100', { freeSpace: [{ transport: local, path: '/', minFreePercent: 100 }] }],
    ['two nodes with one name', { freeSpace: [{ transport: local, path: '/', minFreePercent: 5 }, { transport: local, path: '/', minFreePercent: 6 }] }],
    ['criticalFreePercent above minFreePercent', { freeSpace: [{ transport: local, path: '/', minFreePercent: 5, criticalFreePercent: 6 }] }],
    ['an unknown locks key', { locks: { stale: 5 } }],
    ['jobs without maxRun', { jobs: { name: 'x' } }],
    ['a bad maxAge', { maxAge: 'yesterday' }],
  ])('refuses %s with EBAD_CONFIG', (_, constraints) => {
    throwsWith(() => resolveConstraints('Monitor', constraints as MonitorConstraints), 'EBAD_CONFIG');
  });

  it('names the unknown key and suggests the right one', () => {
    const err = throwsWith(() => new Monitor(tree, { maxAge: '1d', verfy: true } as MonitorConstraints), 'EBAD_CONFIG');
    expect(err.message).toContain('"verfy"');
    expect(err.message).toContain('"verify"');
  });
});

describe('Monitor options', () => {
  it('refuses a source that is neither a tree nor a Catalog', () => {
    throwsWith(() => new Monitor({ dir: '/x' } as never, { maxAge: '1d' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor({ transport: local, dir: '' }, { maxAge: '1d' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(null as never, { maxAge: '1d' }), 'EBAD_CONFIG');
  });

  it('refuses unknown options, a bad time zone and link name', () => {
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { notifier: [] } as never), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { timeZone: 'Mars/Olympus' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { linkName: 'a/b' }), 'EBAD_CONFIG');
  });

  it('needs a Catalog for the job check and for the history', () => {
    expect(throwsWith(() => new Monitor(tree, { jobs: { maxRun: '6h' } }), 'EBAD_CONFIG').message).toMatch(/Catalog/);
    expect(throwsWith(() => new Monitor(tree, { maxAge: '1d' }).history(), 'EBAD_CONFIG').message).toMatch(/Catalog/);
  });

  it('needs somewhere to keep the notification state when there are notifiers', () => {
    const mail = new CommandNotifier(['true']);
    expect(throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { notifiers: [mail] }), 'EBAD_CONFIG').message).toMatch(/catalog.*stateFile/);
    expect(new Monitor(tree, { maxAge: '1d' }, { notifiers: [mail], stateFile: '/tmp/x.json' }).name).toBe('local:/nonexistent/backups');
  });

  it('refuses two notifiers with one name, and a notifier without notify()', () => {
    const a = new HttpNotifier('http://127.0.0.1:9/hook');
    const b = new HttpNotifier('http://127.0.0.1:9/hook?token=1');
    expect(a.name).toBe(b.name);
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { notifiers: [a, b], stateFile: '/tmp/x.json' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { notifiers: [{ name: 'x' } as never], stateFile: '/tmp/x.json' }), 'EBAD_CONFIG');
  });

  it('refuses a state file beside a Catalog, and a second, different Catalog', () => {
    using catalog = new Catalog(':memory:');
    using other = new Catalog(':memory:');
    throwsWith(() => new Monitor(tree, { maxAge: '1d' }, { catalog, stateFile: '/tmp/x.json' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(catalog, { maxAge: '1d' }, { catalog: other }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor(catalog, { maxAge: '1d' }, { timeZone: 'UTC' }), 'EBAD_CONFIG');
    throwsWith(() => new Monitor({ catalog, prefx: 'a/' } as never, { maxAge: '1d' }), 'EBAD_CONFIG');
    expect(new Monitor(catalog, { maxAge: '1d' }, { catalog }).source).toBe('catalog::memory:');
  });

  it('refuses bad check options', async () => {
    const m = new Monitor(tree, { maxAge: '1d' });
    await expect(m.check({ now: 'yesterday' as never })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
    await expect(m.check({ nuw: 5 } as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
  });
});
