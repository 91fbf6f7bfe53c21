/**
 * Calendar math in an IANA time zone, for retention buckets and dated
 * backup folders, using only `Intl.DateTimeFormat` (no dependency).
 *
 * Why a module of its own: "keep one backup per day" means per day on the
 * wall clock of the experiment, not per UTC day, and the days around a DST
 * change are 23 or 25 hours long. An instant is turned into wall-clock
 * fields with a cached formatter; wall-clock fields are turned back into an
 * instant with the `compatible` rule of Temporal: a wall time that does not
 * exist (the spring-forward gap) is moved forward by the gap, a wall time
 * that exists twice (the fall-back overlap) is the earlier instant.
 *
 * @module
 */
import { StowageError } from '../errors.js';

/** Wall-clock fields of an instant in a time zone (month 1–12). */
export interface WallTime {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  readonly millisecond: number;
}

const DAY_MS = 86_400_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The machine's local IANA time zone. */
export function localTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/**
 * Checks an IANA time zone name; returns the canonical form Intl uses.
 * Throws EBAD_CONFIG naming `where` and the option when Intl does not know it.
 */
export function checkTimeZone(where: string, name: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" must be an IANA time zone name such as "Europe/Berlin", got ${String(value)}.`, {
      details: { where, option: name, value },
    });
  }
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: value }).resolvedOptions().timeZone;
  } catch (cause) {
    throw new StowageError('EBAD_CONFIG', `${where}: option "${name}" names an unknown time zone "${value}"; use an IANA name such as "Europe/Berlin" or "UTC".`, {
      details: { where, option: name, value },
      cause,
    });
  }
}

/** Wall-clock fields of the instant `t` (ms since the epoch) in `timeZone`. */
export function wallTime(t: number, timeZone: string): WallTime {
  const f: Record<string, string> = {};
  for (const p of formatter(timeZone).formatToParts(t)) f[p.type] = p.value;
  const year = Number(f['year']);
  const ms = ((t % 1000) + 1000) % 1000;
  return { year, month: Number(f['month']), day: Number(f['day']), hour: Number(f['hour']), minute: Number(f['minute']), second: Number(f['second']), millisecond: ms };
}

function wallAsUtc(w: WallTime): number {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second, w.millisecond);
  return d.getTime();
}

/** The zone's offset from UTC at instant `t`, in milliseconds. */
function offsetAt(t: number, timeZone: string): number {
  return wallAsUtc(wallTime(t, timeZone)) - t;
}

/**
 * The instant at which the wall clock of `timeZone` shows `w`. A wall time
 * in a spring-forward gap is moved forward by the gap; one in a fall-back
 * overlap is the earlier of its two instants (Temporal's `compatible`).
 */
export function instantOf(w: WallTime, timeZone: string): number {
  const local = wallAsUtc(w);
  const before = offsetAt(local - DAY_MS, timeZone);
  const after = offsetAt(local + DAY_MS, timeZone);
  const candidates = [local - before, local - after].filter((t) => wallAsUtc(wallTime(t, timeZone)) === local);
  if (candidates.length > 0) return Math.min(...candidates);
  // In the gap: the offset before the change carries the wall time forward.
  return local - before;
}

/** Number of days in a month (month 1–12), proleptic Gregorian. */
export function daysInMonth(year: number, month: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month, 0);
  return d.getUTCDate();
}

/** `YYYY-MM-DD` of a wall time. */
export function dayKey(w: WallTime): string {
  return `${pad(w.year, 4)}-${pad(w.month, 2)}-${pad(w.day, 2)}`;
}

/** `YYYY-Www`: the ISO-8601 week (weeks start on Monday; week 1 holds the year's first Thursday). */
export function isoWeekKey(w: WallTime): string {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  const dow = (d.getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(d.getTime() + (3 - dow) * DAY_MS);
  const isoYear = thursday.getUTCFullYear();
  const jan1 = new Date(0);
  jan1.setUTCFullYear(isoYear, 0, 1);
  const week = 1 + Math.floor((thursday.getTime() - jan1.getTime()) / (7 * DAY_MS));
  return `${pad(isoYear, 4)}-W${pad(week, 2)}`;
}

/** `YYYY-MM` of a wall time. */
export function monthKey(w: WallTime): string {
  return `${pad(w.year, 4)}-${pad(w.month, 2)}`;
}

/** `YYYY` of a wall time. */
export function yearKey(w: WallTime): string {
  return pad(w.year, 4);
}

/** Zero-pads a non-negative integer. */
export function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/**
 * A retention window: calendar years, months and days (counted on the wall
 * clock of the time zone) and exact milliseconds (hours, or a plain number).
 */
export interface Duration {
  /** As the user wrote it, for messages: `"7d"`, `"1y6m"`, `"3600000 ms"`. */
  readonly text: string;
  /** Calendar years. */
  readonly years: number;
  /** Calendar months. */
  readonly months: number;
  /** Calendar days, weeks included (1w = 7d). */
  readonly days: number;
  /** Exact milliseconds, hours included. */
  readonly ms: number;
}

const DURATION_RE = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$/;

/**
 * Parses a retention window: a string of `<n>y`, `<n>m` (months), `<n>w`,
 * `<n>d`, `<n>h` in that order (`"7d"`, `"2w"`, `"1y6m"`, `"36h"`), or a
 * positive number of milliseconds. Zero is refused.
 */
export function parseDuration(where: string, name: string, value: unknown): Duration {
  const bad = (why: string): StowageError =>
    new StowageError('EBAD_CONFIG', `${where}: option "${name}" ${why}, got ${JSON.stringify(value) ?? String(value)}. Write e.g. "7d", "12h", "2w", "1m" (a month), "1y6m", or a number of milliseconds.`, {
      details: { where, option: name, value },
    });
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || !Number.isInteger(value) || value <= 0) throw bad('must be a positive whole number of milliseconds');
    return Object.freeze({ text: `${value} ms`, years: 0, months: 0, days: 0, ms: value });
  }
  if (typeof value !== 'string') throw bad('must be a duration string or a number of milliseconds');
  const m = DURATION_RE.exec(value);
  if (m === null || value === '') throw bad('is not a duration');
  const n = (i: number): number => Number(m[i] ?? 0);
  const d: Duration = { text: value, years: n(1), months: n(2), days: n(3) * 7 + n(4), ms: n(5) * 3_600_000 };
  if (d.years + d.months + d.days + d.ms === 0) throw bad('must be longer than zero');
  return Object.freeze(d);
}

/**
 * The instant `d` before `t`, counting years, months and days on the wall
 * clock of `timeZone` (a day across a DST change is 23 or 25 hours; the 31st
 * minus a month is the last day of the shorter month), then hours exactly.
 */
export function subtractDuration(t: number, d: Duration, timeZone: string): number {
  if (d.years === 0 && d.months === 0 && d.days === 0) return t - d.ms;
  const w = wallTime(t, timeZone);
  const monthIndex = w.year * 12 + (w.month - 1) - d.years * 12 - d.months;
  const year = Math.floor(monthIndex / 12);
  const month = monthIndex - year * 12 + 1;
  const day = Math.min(w.day, daysInMonth(year, month));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day - d.days);
  const shifted: WallTime = { ...w, year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate() };
  return instantOf(shifted, timeZone) - d.ms;
}
