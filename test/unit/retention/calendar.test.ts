import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { checkTimeZone, daysInMonth, instantOf, isoWeekKey, parseDuration, subtractDuration, wallTime } from '../../../src/retention/calendar.js';

const wall = (s: string) => {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/.exec(s)!;
  return { year: +m[1]!, month: +m[2]!, day: +m[3]!, hour: +m[4]!, minute: +m[5]!, second: +m[6]!, millisecond: 0 };
};
const iso = (t: number) => new Date(t).toISOString();

describe('wall time <-> instant', () => {
  it.each([
    // zone, wall clock, instant (compatible: gap moves forward, overlap takes the earlier)
    ['Europe/Berlin', '2026-03-29T01:30:00', '2026-03-29T00:30:00.000Z'],
    ['Europe/Berlin', '2026-03-29T02:30:00', '2026-03-29T01:30:00.000Z'], // does not exist: 03:30 CEST
    ['Europe/Berlin', '2026-03-29T03:30:00', '2026-03-29T01:30:00.000Z'],
    ['Europe/Berlin', '2026-10-25T02:30:00', '2026-10-25T00:30:00.000Z'], // twice: the CEST one
    ['Europe/Berlin', '2026-10-25T03:30:00', '2026-10-25T02:30:00.000Z'],
    ['America/Chicago', '2026-03-08T02:30:00', '2026-03-08T08:30:00.000Z'], // gap
    ['America/Chicago', '2026-11-01T01:30:00', '2026-11-01T06:30:00.000Z'], // overlap: CDT
    ['America/Chicago', '2026-11-01T02:30:00', '2026-11-01T08:30:00.000Z'],
    ['UTC', '2024-02-29T23:59:59', '2024-02-29T23:59:59.000Z'],
    ['Asia/Kolkata', '2021-01-01T00:00:00', '2020-12-31T18:30:00.000Z'],
  ])('%s %s is %s', (tz, w, expected) => {
    expect(iso(instantOf(wall(w), tz))).toBe(expected);
  });

  it.each([
    ['Europe/Berlin', '2026-10-25T00:30:00Z', '2026-10-25T02:30:00'],
    ['Europe/Berlin', '2026-10-25T01:30:00Z', '2026-10-25T02:30:00'],
    ['America/Chicago', '2026-11-01T04:30:00Z', '2026-10-31T23:30:00'],
    ['Australia/Lord_Howe', '2026-04-04T14:45:00Z', '2026-04-05T01:45:00'], // half-hour DST shift
  ])('%s: %s shows %s', (tz, t, expected) => {
    const w = wallTime(Date.parse(t), tz);
    const s = `${w.year}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}T${String(w.hour).padStart(2, '0')}:${String(w.minute).padStart(2, '0')}:${String(w.second).padStart(2, '0')}`;
    expect(s).toBe(expected);
  });
});

describe('ISO weeks', () => {
  it.each([
    ['2020-12-28T12:00:00', '2020-W53'],
    ['2020-12-31T12:00:00', '2020-W53'],
    ['2021-01-03T12:00:00', '2020-W53'],
    ['2021-01-04T00:00:00', '2021-W01'],
    ['2024-12-30T00:00:00', '2025-W01'], // Monday of week 1 of 2025
    ['2026-12-31T00:00:00', '2026-W53'],
    ['2027-01-03T00:00:00', '2026-W53'],
    ['2019-12-29T00:00:00', '2019-W52'],
    ['2026-11-01T00:00:00', '2026-W44'], // a Sunday
    ['2026-11-02T00:00:00', '2026-W45'],
  ])('%s is in %s', (w, key) => {
    expect(isoWeekKey(wall(w))).toBe(key);
  });
});

describe('days in month', () => {
  it.each([
    [2024, 2, 29],
    [2025, 2, 28],
    [2000, 2, 29],
    [2100, 2, 28],
    [2026, 4, 30],
    [2026, 12, 31],
  ])('%i-%i has %i days', (y, m, n) => {
    expect(daysInMonth(y, m)).toBe(n);
  });
});

describe('durations', () => {
  it.each([
    ['7d', { years: 0, months: 0, days: 7, ms: 0 }],
    ['12h', { years: 0, months: 0, days: 0, ms: 12 * 3_600_000 }],
    ['2w', { years: 0, months: 0, days: 14, ms: 0 }],
    ['1m', { years: 0, months: 1, days: 0, ms: 0 }],
    ['1y', { years: 1, months: 0, days: 0, ms: 0 }],
    ['1y6m2w3d4h', { years: 1, months: 6, days: 17, ms: 4 * 3_600_000 }],
    [90_000, { years: 0, months: 0, days: 0, ms: 90_000 }],
  ])('parses %s', (text, parts) => {
    expect(parseDuration('T', 'keepWithin', text)).toMatchObject(parts);
  });

  it.each([['7x'], [''], ['0d'], ['0y0m'], ['d7'], ['7D'], ['7d1y'], [' 7d'], ['1.5d'], [-5], [0], [1.5], [Infinity], [NaN], [null], [{}]])('refuses %j with EBAD_CONFIG naming the option', (v) => {
    let err: unknown;
    try {
      parseDuration('Retention', 'keepWithin', v);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('EBAD_CONFIG');
    expect((err as StowageError).message).toContain('"keepWithin"');
  });

  it.each([
    // start, duration, zone, window start
    ['2026-03-30T01:00:00Z', '7d', 'Europe/Berlin', '2026-03-23T02:00:00.000Z'], // across spring-forward: 7 calendar days = 167 h
    ['2026-10-26T02:00:00Z', '7d', 'Europe/Berlin', '2026-10-19T01:00:00.000Z'], // across fall-back: 169 h
    ['2026-10-26T02:00:00Z', '1w', 'Europe/Berlin', '2026-10-19T01:00:00.000Z'],
    ['2026-10-26T02:00:00Z', '168h', 'Europe/Berlin', '2026-10-19T02:00:00.000Z'], // hours are exact
    ['2024-03-31T10:00:00Z', '1m', 'UTC', '2024-02-29T10:00:00.000Z'], // the 31st minus a month: last day of February
    ['2025-03-31T10:00:00Z', '1m', 'UTC', '2025-02-28T10:00:00.000Z'],
    ['2100-03-31T10:00:00Z', '1m', 'UTC', '2100-02-28T10:00:00.000Z'], // 2100 is not a leap year
    ['2024-02-29T10:00:00Z', '1y', 'UTC', '2023-02-28T10:00:00.000Z'],
    ['2024-03-01T03:00:00Z', '1d', 'UTC', '2024-02-29T03:00:00.000Z'],
    ['2100-03-01T03:00:00Z', '1d', 'UTC', '2100-02-28T03:00:00.000Z'],
    ['2021-01-03T12:00:00Z', '1y1m', 'UTC', '2019-12-03T12:00:00.000Z'],
    ['2026-03-29T10:00:00Z', '1d', 'Europe/Berlin', '2026-03-28T11:00:00.000Z'], // 12:00 CEST back to 12:00 CET
    ['2026-03-30T01:30:00Z', '1d', 'Europe/Berlin', '2026-03-29T01:30:00.000Z'], // 03:30 back to a 02:30 that does not exist: 03:30 CEST
  ])('%s minus %s in %s starts at %s', (t, d, tz, expected) => {
    expect(iso(subtractDuration(Date.parse(t), parseDuration('T', 'w', d), tz))).toBe(expected);
  });
});

describe('time zones', () => {
  it('accepts IANA names and canonicalises them', () => {
    expect(checkTimeZone('T', 'timeZone', 'Europe/Berlin')).toBe('Europe/Berlin');
    expect(checkTimeZone('T', 'timeZone', 'UTC')).toBe('UTC');
  });
  it.each([['Mars/Olympus'], [''], [42], ['Europe/Berlinn']])('refuses %j', (tz) => {
    expect(() => checkTimeZone('Retention', 'timeZone', tz)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
  });
});
