import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { Retention, type RetentionPolicy } from '../../../src/retention/index.js';

interface Case {
  name: string;
  policy: RetentionPolicy;
  items: { id: string; time: string; verified?: boolean; verifiable?: boolean; complete?: boolean; inProgress?: boolean }[];
  now: string;
  keep: Record<string, string[]>; // id -> rules, in the plan's fixed order
  purge: Record<string, string>; // id -> rule
}

const i = (id: string, time: string, more: { verified?: boolean; verifiable?: boolean; complete?: boolean; inProgress?: boolean } = {}) => ({ id, time, ...more });

function run(policy: RetentionPolicy, items: Case['items'], now: string) {
  const plan = new Retention(policy).plan(
    items.map((x) => ({ ...x, time: Date.parse(x.time) })),
    Date.parse(now),
  );
  return {
    plan,
    keep: Object.fromEntries(plan.keep.map((k) => [k.item.id, [...k.rules]])),
    purge: Object.fromEntries(plan.purge.map((p) => [p.item.id, p.rule])),
  };
}

const cases: Case[] = [
  { name: 'empty input', policy: { keepDaily: 7, timeZone: 'UTC' }, items: [], now: '2026-11-22T12:00:00Z', keep: {}, purge: {} },
  {
    name: 'keepLast keeps the n newest',
    policy: { keepLast: 3, timeZone: 'UTC' },
    items: [i('a', '2026-11-18T03:00:00Z'), i('b', '2026-11-19T03:00:00Z'), i('c', '2026-11-20T03:00:00Z'), i('d', '2026-11-21T03:00:00Z'), i('e', '2026-11-22T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { e: ['newest-verified', 'last'], d: ['last'], c: ['last'] },
    purge: { b: 'expired', a: 'expired' },
  },
  {
    name: 'keepDaily counts only days that hold a backup (restic)',
    policy: { keepDaily: 3, timeZone: 'UTC' },
    items: [i('d1', '2026-11-01T03:00:00Z'), i('d5', '2026-11-05T03:00:00Z'), i('d9', '2026-11-09T03:00:00Z'), i('d10a', '2026-11-10T03:00:00Z'), i('d10b', '2026-11-10T15:00:00Z')],
    now: '2026-11-30T00:00:00Z',
    keep: { d10b: ['newest-verified', 'daily'], d9: ['daily'], d5: ['daily'] },
    purge: { d10a: 'expired', d1: 'expired' },
  },
  {
    name: 'Europe/Berlin spring-forward: days are local days (the 02:30 backup runs at 03:30 CEST)',
    policy: { keepDaily: 2, timeZone: 'Europe/Berlin' },
    items: [
      i('27', '2026-03-27T02:30:00+01:00'),
      i('28', '2026-03-28T02:30:00+01:00'),
      i('29', '2026-03-29T03:30:00+02:00'), // the cron's 02:30 on the day 02:30 does not exist
      i('29late', '2026-03-29T23:30:00+02:00'), // 21:30Z
      i('30early', '2026-03-30T00:30:00+02:00'), // 22:30Z on the 29th in UTC
    ],
    now: '2026-03-30T12:00:00Z',
    keep: { '30early': ['newest-verified', 'daily'], '29late': ['daily'] },
    purge: { '29': 'expired', '28': 'expired', '27': 'expired' },
  },
  {
    name: 'the same backups bucketed in UTC keep different ones',
    policy: { keepDaily: 2, timeZone: 'UTC' },
    items: [
      i('27', '2026-03-27T02:30:00+01:00'),
      i('28', '2026-03-28T02:30:00+01:00'),
      i('29', '2026-03-29T03:30:00+02:00'),
      i('29late', '2026-03-29T23:30:00+02:00'),
      i('30early', '2026-03-30T00:30:00+02:00'),
    ],
    now: '2026-03-30T12:00:00Z',
    keep: { '30early': ['newest-verified', 'daily'], '28': ['daily'] },
    purge: { '29late': 'expired', '29': 'expired', '27': 'expired' },
  },
  {
    name: 'Europe/Berlin fall-back: two 02:30 backups on the 25th fill one day',
    policy: { keepDaily: 2, timeZone: 'Europe/Berlin' },
    items: [
      i('24', '2026-10-24T02:30:00+02:00'),
      i('25cest', '2026-10-25T02:30:00+02:00'),
      i('25cet', '2026-10-25T02:30:00+01:00'),
      i('26', '2026-10-26T02:30:00+01:00'),
    ],
    now: '2026-10-26T12:00:00Z',
    keep: { '26': ['newest-verified', 'daily'], '25cet': ['daily'] },
    purge: { '25cest': 'expired', '24': 'expired' },
  },
  {
    name: 'America/Chicago fall-back: 01:30 twice, and a late-evening backup that is the next day in UTC',
    policy: { keepDaily: 2, timeZone: 'America/Chicago' },
    items: [
      i('31', '2026-10-31T02:30:00-05:00'),
      i('31late', '2026-10-31T23:30:00-05:00'), // 04:30Z on Nov 1
      i('1cdt', '2026-11-01T01:30:00-05:00'),
      i('1cst', '2026-11-01T01:30:00-06:00'),
    ],
    now: '2026-11-01T12:00:00Z',
    keep: { '1cst': ['newest-verified', 'daily'], '31late': ['daily'] },
    purge: { '1cdt': 'expired', '31': 'expired' },
  },
  {
    name: 'America/Chicago spring-forward: the 02:30 cron backup counts for March 8',
    policy: { keepDaily: 3, timeZone: 'America/Chicago' },
    items: [
      i('7', '2026-03-07T02:30:00-06:00'),
      i('8', '2026-03-08T03:30:00-05:00'), // 02:30 CST does not exist
      i('8late', '2026-03-08T22:30:00-05:00'), // 03:30Z on the 9th
      i('9', '2026-03-09T02:30:00-05:00'),
    ],
    now: '2026-03-09T12:00:00Z',
    keep: { '9': ['newest-verified', 'daily'], '8late': ['daily'], '7': ['daily'] },
    purge: { '8': 'expired' },
  },
  {
    name: 'America/Chicago weekly: Sunday night is still the old ISO week locally',
    policy: { keepWeekly: 2, timeZone: 'America/Chicago' },
    items: [
      i('wed', '2026-10-28T02:00:00-05:00'), // W44
      i('sun', '2026-11-01T23:30:00-06:00'), // Sunday W44 locally, Monday 05:30Z
      i('mon', '2026-11-02T00:30:00-06:00'), // W45
    ],
    now: '2026-11-03T00:00:00Z',
    keep: { mon: ['newest-verified', 'weekly'], sun: ['weekly'] },
    purge: { wed: 'expired' },
  },
  {
    name: 'the same weekly backups in UTC: Sunday night is already week 45',
    policy: { keepWeekly: 2, timeZone: 'UTC' },
    items: [i('wed', '2026-10-28T02:00:00-05:00'), i('sun', '2026-11-01T23:30:00-06:00'), i('mon', '2026-11-02T00:30:00-06:00')],
    now: '2026-11-03T00:00:00Z',
    keep: { mon: ['newest-verified', 'weekly'], wed: ['weekly'] },
    purge: { sun: 'expired' },
  },
  {
    name: 'month ends in Europe/Berlin: 00:30 on the 1st is the new month locally',
    policy: { keepMonthly: 2, timeZone: 'Europe/Berlin' },
    items: [
      i('jan31', '2024-01-31T23:30:00+01:00'),
      i('feb1', '2024-02-01T00:30:00+01:00'), // January 31 in UTC
      i('feb29', '2024-02-29T12:00:00+01:00'),
      i('mar1', '2024-03-01T00:15:00+01:00'), // February 29 in UTC
    ],
    now: '2024-03-02T00:00:00Z',
    keep: { mar1: ['newest-verified', 'monthly'], feb29: ['monthly'] },
    purge: { feb1: 'expired', jan31: 'expired' },
  },
  {
    name: 'the same month ends in UTC',
    policy: { keepMonthly: 2, timeZone: 'UTC' },
    items: [i('jan31', '2024-01-31T23:30:00+01:00'), i('feb1', '2024-02-01T00:30:00+01:00'), i('feb29', '2024-02-29T12:00:00+01:00'), i('mar1', '2024-03-01T00:15:00+01:00')],
    now: '2024-03-02T00:00:00Z',
    keep: { mar1: ['newest-verified', 'monthly'], feb1: ['monthly'] },
    purge: { feb29: 'expired', jan31: 'expired' },
  },
  {
    name: 'leap day 2024-02-29 is a day of its own',
    policy: { keepDaily: 3, timeZone: 'UTC' },
    items: [i('27', '2024-02-27T03:00:00Z'), i('28', '2024-02-28T03:00:00Z'), i('29', '2024-02-29T03:00:00Z'), i('m1', '2024-03-01T03:00:00Z')],
    now: '2024-03-01T12:00:00Z',
    keep: { m1: ['newest-verified', 'daily'], '29': ['daily'], '28': ['daily'] },
    purge: { '27': 'expired' },
  },
  {
    name: '2100 is not a leap year: one day back from March 1st is February 28th',
    policy: { keepWithin: '1d', timeZone: 'UTC' },
    items: [i('27', '2100-02-27T03:00:00Z'), i('28', '2100-02-28T03:00:00Z'), i('m1', '2100-03-01T03:00:00Z')],
    now: '2100-03-01T12:00:00Z',
    keep: { m1: ['newest-verified', 'within'], '28': ['within'] },
    purge: { '27': 'expired' },
  },
  {
    name: 'within 1d of March 1st 2024 reaches back to the leap day only',
    policy: { keepWithin: '1d', timeZone: 'UTC' },
    items: [i('28', '2024-02-28T03:00:00Z'), i('29', '2024-02-29T03:00:00Z'), i('m1', '2024-03-01T03:00:00Z')],
    now: '2024-03-01T12:00:00Z',
    keep: { m1: ['newest-verified', 'within'], '29': ['within'] },
    purge: { '28': 'expired' },
  },
  {
    name: 'within 1m of March 31st 2100 reaches back to February 28th',
    policy: { keepWithin: '1m', timeZone: 'UTC' },
    items: [i('f27', '2100-02-27T23:59:59Z'), i('f28', '2100-02-28T10:00:00Z'), i('m31', '2100-03-31T10:00:00Z')],
    now: '2100-04-01T00:00:00Z',
    keep: { m31: ['newest-verified', 'within'], f28: ['within'] },
    purge: { f27: 'expired' },
  },
  {
    name: 'ISO week 53 at the 2020/2021 boundary, with yearly in the union',
    policy: { keepWeekly: 2, keepYearly: 2, timeZone: 'UTC' },
    items: [i('dec28', '2020-12-28T03:00:00Z'), i('dec31', '2020-12-31T03:00:00Z'), i('jan3', '2021-01-03T03:00:00Z'), i('jan4', '2021-01-04T03:00:00Z')],
    now: '2021-01-05T00:00:00Z',
    keep: { jan4: ['newest-verified', 'weekly', 'yearly'], jan3: ['weekly'], dec31: ['yearly'] },
    purge: { dec28: 'expired' },
  },
  {
    name: 'keepWithin counts from the newest backup: a month after the backups stopped, the last week is still kept',
    policy: { keepWithin: '7d', timeZone: 'UTC' },
    items: Array.from({ length: 10 }, (_, k) => i(`n${k + 1}`, `2026-11-${String(k + 1).padStart(2, '0')}T03:00:00Z`)),
    now: '2026-12-10T03:00:00Z',
    keep: { n10: ['newest-verified', 'within'], n9: ['within'], n8: ['within'], n7: ['within'], n6: ['within'], n5: ['within'], n4: ['within'], n3: ['within'] },
    purge: { n2: 'expired', n1: 'expired' },
  },
  {
    name: 'keepWithin 7d across fall-back is 7 calendar days (169 hours): the 03:00 backup a week back stays',
    policy: { keepWithin: '7d', timeZone: 'Europe/Berlin' },
    items: [i('18', '2026-10-18T03:00:00+02:00'), i('19', '2026-10-19T03:00:00+02:00'), i('22', '2026-10-22T03:00:00+02:00'), i('26', '2026-10-26T03:00:00+01:00')],
    now: '2026-10-26T12:00:00Z',
    keep: { '26': ['newest-verified', 'within'], '22': ['within'], '19': ['within'] },
    purge: { '18': 'expired' },
  },
  {
    name: 'keepWithin as exact milliseconds (168 h) across the same fall-back drops it',
    policy: { keepWithin: 168 * 3_600_000, timeZone: 'Europe/Berlin' },
    items: [i('18', '2026-10-18T03:00:00+02:00'), i('19', '2026-10-19T03:00:00+02:00'), i('22', '2026-10-22T03:00:00+02:00'), i('26', '2026-10-26T03:00:00+01:00')],
    now: '2026-10-26T12:00:00Z',
    keep: { '26': ['newest-verified', 'within'], '22': ['within'] },
    purge: { '19': 'expired', '18': 'expired' },
  },
  {
    name: 'union of rules: each kept item lists every rule',
    policy: { keepLast: 2, keepDaily: 3, keepMonthly: 2, timeZone: 'UTC' },
    items: [i('oct', '2026-10-15T03:00:00Z'), i('nov1', '2026-11-01T03:00:00Z'), i('nov20', '2026-11-20T03:00:00Z'), i('nov21a', '2026-11-21T03:00:00Z'), i('nov21b', '2026-11-21T15:00:00Z'), i('nov22', '2026-11-22T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { nov22: ['newest-verified', 'last', 'daily', 'monthly'], nov21b: ['last', 'daily'], nov20: ['daily'], oct: ['monthly'] },
    purge: { nov21a: 'expired', nov1: 'expired' },
  },
  {
    name: 'unverified backups fill no slot; an older one is purged',
    policy: { keepLast: 2, timeZone: 'UTC' },
    items: [i('a', '2026-11-19T03:00:00Z'), i('b', '2026-11-20T03:00:00Z'), i('c', '2026-11-21T03:00:00Z', { verified: false }), i('d', '2026-11-22T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { d: ['newest-verified', 'last'], b: ['last'] },
    purge: { c: 'unverified', a: 'expired' },
  },
  {
    name: 'unverified backups fill no bucket',
    policy: { keepDaily: 2, timeZone: 'UTC' },
    items: [i('20', '2026-11-20T03:00:00Z'), i('21', '2026-11-21T03:00:00Z', { verified: false }), i('22', '2026-11-22T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { '22': ['newest-verified', 'daily'], '20': ['daily'] },
    purge: { '21': 'unverified' },
  },
  {
    name: 'an unverified backup newer than the newest verified one is kept and flagged',
    policy: { keepLast: 1, timeZone: 'UTC' },
    items: [i('a', '2026-11-20T03:00:00Z'), i('b', '2026-11-21T03:00:00Z'), i('c', '2026-11-22T03:00:00Z', { verified: false })],
    now: '2026-11-22T12:00:00Z',
    keep: { c: ['unverified-newer'], b: ['newest-verified', 'last'] },
    purge: { a: 'expired' },
  },
  {
    name: 'an unproven backup (nothing to verify it against) is kept where the policy would keep it, never in place of a verified one',
    policy: { keepDaily: 2, timeZone: 'UTC' },
    items: [
      i('20', '2026-11-20T03:00:00Z', { verified: false, verifiable: false }),
      i('21a', '2026-11-21T03:00:00Z'),
      i('21b', '2026-11-21T15:00:00Z', { verified: false, verifiable: false }),
      i('22', '2026-11-22T03:00:00Z'),
    ],
    now: '2026-11-22T12:00:00Z',
    keep: { '22': ['newest-verified', 'daily'], '21b': ['daily'], '21a': ['daily'] },
    purge: { '20': 'expired' },
  },
  {
    name: 'verifiable is ignored for a verified backup; a known-bad one older than the newest verified is purged',
    policy: { keepDaily: 5, timeZone: 'UTC' },
    items: [i('20', '2026-11-20T03:00:00Z', { verified: false }), i('21', '2026-11-21T03:00:00Z', { verifiable: false }), i('22', '2026-11-22T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { '22': ['newest-verified', 'daily'], '21': ['daily'] },
    purge: { '20': 'unverified' },
  },
  {
    name: 'when nothing verifies, nothing is purged',
    policy: { keepLast: 1, timeZone: 'UTC' },
    items: [i('a', '2026-11-20T03:00:00Z', { verified: false }), i('b', '2026-11-21T03:00:00Z', { verified: false, complete: false })],
    now: '2026-11-22T12:00:00Z',
    keep: { b: ['unverified-newer'], a: ['unverified-newer'] },
    purge: {},
  },
  {
    name: 'an incomplete backup: kept when newest (maybe in progress); when older, kept as a stand-in where the policy would keep it',
    policy: { keepLast: 5, timeZone: 'UTC' },
    items: [i('a', '2026-11-20T03:00:00Z', { complete: false }), i('b', '2026-11-21T03:00:00Z'), i('c', '2026-11-22T03:00:00Z', { complete: false })],
    now: '2026-11-22T12:00:00Z',
    keep: { c: ['newest-verified', 'incomplete-newer'], b: ['last'], a: ['last'] },
    purge: {},
  },
  {
    name: 'an older incomplete backup that the policy would not keep is purged',
    policy: { keepLast: 1, timeZone: 'UTC' },
    items: [i('a', '2026-11-20T03:00:00Z', { complete: false }), i('b', '2026-11-21T03:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { b: ['newest-verified', 'last'] },
    purge: { a: 'incomplete' },
  },
  {
    name: 'an incomplete backup in progress is kept whatever its age and the policy, and counts for nothing',
    policy: { keepLast: 1, timeZone: 'UTC' },
    items: [i('a', '2026-11-20T03:00:00Z', { complete: false, inProgress: true }), i('b', '2026-11-21T03:00:00Z'), i('c', '2026-11-22T03:00:00Z', { inProgress: true, verified: false })],
    now: '2026-11-22T12:00:00Z',
    keep: { c: ['in-progress'], b: ['newest-verified', 'last'], a: ['in-progress'] },
    purge: {},
  },
  {
    name: 'stand-ins rank after counted backups, incomplete ones after unproven ones',
    policy: { keepDaily: 3, timeZone: 'UTC' },
    items: [
      i('19', '2026-11-19T03:00:00Z', { complete: false }),
      i('20a', '2026-11-20T03:00:00Z', { verified: false, verifiable: false }),
      i('20b', '2026-11-20T15:00:00Z', { complete: false }),
      i('21', '2026-11-21T03:00:00Z', { complete: false }),
      i('22', '2026-11-22T03:00:00Z'),
    ],
    now: '2026-11-22T12:00:00Z',
    // pass of the unproven: 22, 20a; pass of the incomplete: 22, 21, 20b (three days: 19 is out)
    keep: { '22': ['newest-verified', 'daily'], '21': ['daily'], '20b': ['daily'], '20a': ['daily'] },
    purge: { '19': 'incomplete' },
  },
  {
    name: 'a backup dated after now is kept, does not count, and does not anchor keepWithin',
    policy: { keepWithin: '2d', keepLast: 1, timeZone: 'UTC' },
    items: [i('a', '2026-11-18T03:00:00Z'), i('b', '2026-11-20T03:00:00Z'), i('c', '2026-11-22T03:00:00Z'), i('bogus', '2099-01-01T00:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { bogus: ['future'], c: ['newest-verified', 'last', 'within'], b: ['within'] },
    purge: { a: 'expired' },
  },
  {
    name: 'Infinity keeps one per bucket forever',
    policy: { keepMonthly: Infinity, timeZone: 'UTC' },
    items: [i('y20', '2020-05-01T00:00:00Z'), i('y20b', '2020-05-09T00:00:00Z'), i('y26', '2026-11-22T00:00:00Z')],
    now: '2026-11-22T12:00:00Z',
    keep: { y26: ['newest-verified', 'monthly'], y20b: ['monthly'] },
    purge: { y20: 'expired' },
  },
];

describe('Retention.plan', () => {
  it.each(cases)('$name', (c) => {
    const { keep, purge, plan } = run(c.policy, c.items, c.now);
    expect(keep).toEqual(c.keep);
    expect(purge).toEqual(c.purge);
    // Every item lands in exactly one list, newest first.
    expect(plan.keep.length + plan.purge.length).toBe(c.items.length);
    const times = (xs: readonly { item: { time: Date | number } }[]) => xs.map((x) => Number(x.item.time));
    for (const list of [times(plan.keep), times(plan.purge)]) expect(list).toEqual([...list].sort((a, b) => b - a));
  });

  it('writes readable reasons', () => {
    const r = new Retention({ keepLast: 3, keepWithin: '7d', keepDaily: 7, keepWeekly: 4, keepMonthly: 2, keepYearly: 1, timeZone: 'UTC' });
    const plan = r.plan([{ id: '2026/11/20/031500', time: Date.parse('2026-11-20T03:15:00Z') }, { id: 'old', time: Date.parse('2025-01-01T00:00:00Z') }], Date.parse('2026-11-22T00:00:00Z'));
    expect(plan.keep[0]!.reasons).toEqual([
      'newest verified backup: never purged',
      'last 3',
      'within 7d of newest (2026/11/20/031500)',
      'daily 2026-11-20',
      'weekly 2026-W47',
      'monthly 2026-11',
      'yearly 2026',
    ]);
    expect(plan.keep[0]!.counted).toBe(true);
    expect(plan.keep.map((k) => k.item.id)).toEqual(['2026/11/20/031500', 'old']); // last 3 keeps "old" too
    const unv = r.plan(
      [
        { id: 'a', time: 1, verified: false },
        { id: 'b', time: 2 },
        { id: 'c', time: 3, verified: false },
      ],
      10,
    );
    expect(unv.purge).toEqual([{ item: { id: 'a', time: 1, verified: false }, rule: 'unverified', reason: 'unverified (does not match its DNA) and older than the newest verified complete backup b' }]);
    expect(unv.keep[0]!.reasons[0]).toMatch(/^unverified: does not match its DNA; kept for inspection, newer than the newest verified complete backup b$/);
    expect(unv.keep[0]!.counted).toBe(false);
    const exp = new Retention({ keepLast: 1, keepDaily: 2, timeZone: 'UTC' }).plan(
      [
        { id: 'x', time: 0 },
        { id: 'y', time: 86_400_000 },
        { id: 'z', time: 2 * 86_400_000 },
      ],
      3 * 86_400_000,
    );
    expect(exp.purge.map((p) => p.reason)).toEqual(['kept by no rule of the policy (keepLast 1, keepDaily 2)']);
  });

  it('tells the true reason: the problems given, or that there was nothing to verify against', () => {
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    const plan = r.plan(
      [
        { id: 'legacy', time: 1, verified: false, verifiable: false },
        { id: 'mutant', time: 2, verified: false, problems: ['/b/x.tar.gz does not match its DNA', 'orphan sidecar /b/y.tar.gz.dna'] },
        { id: 'good', time: 3 },
        { id: 'new-legacy', time: 4, verified: false, verifiable: false, problems: ['no file of the set has a DNA sidecar'] },
      ],
      10,
    );
    expect(plan.keep.map((k) => [k.item.id, k.reasons])).toEqual([
      ['new-legacy', ['unverified: no file of the set has a DNA sidecar; kept for inspection, newer than the newest verified complete backup good']],
      ['good', ['newest verified backup: never purged', 'last 1']],
    ]);
    expect(plan.purge.map((p) => [p.item.id, p.rule, p.reason])).toEqual([
      ['mutant', 'unverified', 'unverified (/b/x.tar.gz does not match its DNA; orphan sidecar /b/y.tar.gz.dna) and older than the newest verified complete backup good'],
      ['legacy', 'expired', 'kept by no rule of the policy (keepLast 1), even ranked as a stand-in (it does not count: nothing to verify it against (no DNA sidecar))'],
    ]);
    expect(() => r.plan([{ id: 'a', time: 1, verifiable: 'no' as never }], 10)).toThrow(/"verifiable" of item "a" must be a boolean/);
    expect(() => r.plan([{ id: 'a', time: 1, problems: 'bad' as never }], 10)).toThrow(/"problems" of item "a" must be an array of strings/);
  });

  it('carries extra fields through and accepts Date times', () => {
    const item = { id: 'a', time: new Date('2026-11-22T03:00:00Z'), path: '/backups/a' };
    const plan = new Retention({ keepLast: 1, timeZone: 'UTC' }).plan([item], new Date('2026-11-22T04:00:00Z'));
    expect(plan.keep[0]!.item).toBe(item);
  });

  it('is deterministic: input order does not matter, equal times are ordered by id', () => {
    const r = new Retention({ keepLast: 2, timeZone: 'UTC' });
    const items = [
      { id: 'b', time: 1000 },
      { id: 'a', time: 1000 },
      { id: 'c', time: 1000 },
      { id: 'd', time: 500 },
    ];
    const ids = (p: ReturnType<typeof r.plan>) => [p.keep.map((k) => k.item.id), p.purge.map((k) => k.item.id)];
    const first = ids(r.plan(items, 2000));
    expect(first).toEqual([
      ['c', 'b'],
      ['a', 'd'],
    ]);
    expect(ids(r.plan([...items].reverse(), 2000))).toEqual(first);
    expect(ids(r.plan([items[2]!, items[0]!, items[3]!, items[1]!], 2000))).toEqual(first);
  });

  it('is pure: the same input gives the same plan, and the items are not changed', () => {
    const r = new Retention({ keepDaily: 2, timeZone: 'Europe/Berlin' });
    const items = Object.freeze([Object.freeze({ id: 'a', time: 1_700_000_000_000 }), Object.freeze({ id: 'b', time: 1_700_100_000_000 })]);
    expect(r.plan(items, 1_800_000_000_000)).toEqual(r.plan(items, 1_800_000_000_000));
  });
});

describe('Retention policy validation', () => {
  const bad = (policy: unknown, pattern: RegExp) => {
    let err: unknown;
    try {
      new Retention(policy as RetentionPolicy);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('EBAD_CONFIG');
    expect((err as StowageError).message).toMatch(pattern);
  };
  it('refuses an unknown key, naming it and the likely one', () => bad({ keepDayly: 7 }, /unknown option "keepDayly".*keepDaily/));
  it('refuses an empty policy', () => bad({}, /keeps nothing/));
  it('refuses a policy of zeros', () => bad({ keepLast: 0, keepDaily: 0, timeZone: 'UTC' }, /keeps nothing/));
  it('refuses a negative count', () => bad({ keepDaily: -1 }, /"keepDaily"/));
  it('refuses a fractional count', () => bad({ keepWeekly: 1.5 }, /"keepWeekly"/));
  it('refuses NaN', () => bad({ keepLast: NaN }, /"keepLast"/));
  it('refuses a count given as a string', () => bad({ keepMonthly: '3' }, /"keepMonthly"/));
  it('refuses -Infinity', () => bad({ keepYearly: -Infinity }, /"keepYearly"/));
  it('refuses a bad window', () => bad({ keepWithin: '7 days' }, /"keepWithin"/));
  it('refuses a zero window', () => bad({ keepWithin: '0d' }, /"keepWithin"/));
  it('refuses an unknown time zone', () => bad({ keepDaily: 7, timeZone: 'Europe/Atlantis' }, /"timeZone".*Europe\/Atlantis/));
  it('refuses a missing policy', () => bad(undefined, /policy must be an object/));
  it('freezes the resolved config and defaults the zone to the local one', () => {
    const r = new Retention({ keepWithin: '2w', keepDaily: 7 });
    expect(Object.isFrozen(r.config)).toBe(true);
    expect(r.config).toMatchObject({ keepLast: 0, keepDaily: 7, keepWeekly: 0, timeZone: new Intl.DateTimeFormat().resolvedOptions().timeZone });
    expect(r.config.keepWithin).toMatchObject({ text: '2w', days: 14 });
  });

  it.each([
    [[{ id: 'a', time: 1 }, { id: 'a', time: 2 }], /id "a" appears twice/],
    [[{ id: '', time: 1 }], /item 0 needs a non-empty string id/],
    [[{ id: 'a', time: 'yesterday' }], /time of item "a"/],
    [[{ id: 'a', time: new Date('nope') }], /time of item "a"/],
    [[{ id: 'a', time: 1, verified: 'yes' }], /"verified" of item "a"/],
    [[null], /item 0 is not an object/],
    ['not an array', /items must be an array/],
  ])('plan refuses bad items %#', (items, pattern) => {
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    expect(() => r.plan(items as never, 10)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringMatching(pattern) }));
  });

  it('plan refuses a bad now', () => {
    const r = new Retention({ keepLast: 1, timeZone: 'UTC' });
    expect(() => r.plan([], NaN)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringMatching(/now/) }));
    expect(() => r.plan([], undefined as never)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
  });
});
