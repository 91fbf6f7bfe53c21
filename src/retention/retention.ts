/**
 * Retention: which dated backups to keep, which to purge, and why.
 *
 * The decision is a pure function ({@link Retention.plan}), the action is
 * separate ({@link Retention.apply}), as in restic's `ApplyPolicy` and
 * `forget`. The rules follow restic:
 *
 * - `keepLast: n` keeps the n newest backups.
 * - `keepDaily/Weekly/Monthly/Yearly: n` keep the newest backup of each of
 *   the n most recent days / ISO weeks / months / years that contain a
 *   backup. Days, weeks, months and years are those of the wall clock in
 *   the policy's time zone, so DST changes do not shift a bucket.
 * - `keepWithin: '7d'` keeps every backup made within 7 calendar days
 *   before the NEWEST backup, not before now: when the cron job stops, the
 *   last week of backups must not quietly age out one night at a time
 *   while nobody looks. Only new backups make old ones expire.
 * - Rules are a union: a backup kept by any rule is kept, and its decision
 *   lists every rule that kept it.
 *
 * Data-safety rules on top, stronger than any policy:
 *
 * - Only backups that are verified (their DNA matches) and complete count:
 *   they alone fill a `keepLast` slot or a calendar bucket, and the newest
 *   of them anchors `keepWithin`. A damaged backup never takes the place of
 *   a good one.
 * - The newest verified backup is never purged.
 * - A backup that does not count but is NEWER than the newest counting one
 *   (it failed verification, or is still incomplete) is kept and flagged:
 *   it may be the only copy of the most recent data, and an operator
 *   should look at it. If nothing verifies, nothing is purged.
 * - Such a backup that is OLDER than the newest counting one and fails its
 *   DNA (known bad: a mutant) is purged: a verified backup supersedes it,
 *   and the plan says so explicitly.
 * - A backup that cannot be verified because there is nothing to check it
 *   against (`verifiable: false`: not one DNA sidecar, as a legacy cron
 *   script writes) is unproven, not bad. It never takes the place of a
 *   verified one, but where the policy would keep it if it counted (ranked
 *   after the counting backups, as a stand-in), it is kept, flagged
 *   `counted: false`; otherwise it expires like any other backup. Moving a
 *   legacy tree under stowage therefore purges no more than the policy
 *   says.
 * - A backup dated after `now` (a clock or naming error) is kept and does
 *   not count: a set misnamed `2099/…` must not become "the newest" and
 *   expire everything else.
 * - An incomplete backup that a writer may still be at (`inProgress`:
 *   {@link Retention.apply} says so of a set with a `.part` file, or no
 *   data yet, changed within `inProgressGrace`, 24 h by default) is kept
 *   whatever its age and does not count: a long weekly dump that started
 *   before tonight's daily finished is not purged under its writer.
 * - An incomplete backup whose writer stopped is a stand-in like an
 *   unproven one (ranked after those): kept where the policy would keep it
 *   if it counted, since its finished files may be the only copy of that
 *   day; purged (`incomplete`) only where the policy keeps nothing of it.
 *
 * @module
 */
import { StowageError, warnOrThrow, type WarningCallback } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import type { Transport } from '../transport/transport.js';
import { throwIfAborted } from '../util/abort.js';
import { checkBooleanOption, checkInt, checkOptionKeys } from '../util/options.js';
import {
  backupSetOf,
  checkSidecars,
  checkTreeRoot,
  foreignLockInTrash,
  inspectSet,
  planLeftover,
  pruneEmptyParents,
  removeSet,
  resolveTreeOptions,
  scanBackupTree,
  type BackupSet,
  type LeftoverDecision,
  type SkippedSet,
} from './backup-sets.js';
import { checkTimeZone, dayKey, isoWeekKey, localTimeZone, monthKey, parseDuration, subtractDuration, wallTime, yearKey, type Duration, type WallTime } from './calendar.js';
import { applyFreeSpace, type FreeSpaceOptions, type FreeSpaceResult } from './free-space.js';
import { updateLastLink, type LastLinkOptions, type LastLinkResult } from './last-link.js';

/**
 * A retention policy. Counts are whole numbers ≥ 0 (0 turns a rule off) or
 * `Infinity` (keep one per bucket forever). At least one rule must keep
 * something.
 */
export interface RetentionPolicy {
  /** Keep the n newest backups. */
  keepLast?: number;
  /**
   * Keep every backup made within this window before the newest backup: a
   * string of `<n>y` years, `<n>m` MONTHS, `<n>w` weeks, `<n>d` days,
   * `<n>h` hours in that order (`"7d"`, `"12h"`, `"2w"`, `"1m"`,
   * `"1y6m"`), or a positive number of milliseconds. Years, months and
   * days are calendar units in `timeZone` (a day across a DST change is 23
   * or 25 hours); hours and milliseconds are exact. A backup exactly at the
   * window's start is kept.
   */
  keepWithin?: string | number;
  /** Keep the newest backup of each of the n most recent days holding one. */
  keepDaily?: number;
  /** Keep the newest backup of each of the n most recent ISO-8601 weeks (Monday to Sunday) holding one. */
  keepWeekly?: number;
  /** Keep the newest backup of each of the n most recent months holding one. */
  keepMonthly?: number;
  /** Keep the newest backup of each of the n most recent years holding one. */
  keepYearly?: number;
  /** IANA time zone of the calendar buckets and of the folder names (default: the machine's local zone). */
  timeZone?: string;
}

/** A validated, frozen {@link RetentionPolicy}. */
export interface ResolvedRetentionPolicy {
  /** Count of the `last` rule (0: off). */
  readonly keepLast: number;
  /** The `within` window, if any. */
  readonly keepWithin: Duration | undefined;
  /** Count of the `daily` rule (0: off). */
  readonly keepDaily: number;
  /** Count of the `weekly` rule (0: off). */
  readonly keepWeekly: number;
  /** Count of the `monthly` rule (0: off). */
  readonly keepMonthly: number;
  /** Count of the `yearly` rule (0: off). */
  readonly keepYearly: number;
  /** The canonical IANA time zone. */
  readonly timeZone: string;
}

/** One backup for {@link Retention.plan}. Extra fields are carried through untouched. */
export interface RetentionItem {
  /** Unique name of the backup (for a dated set, its path `2026/11/22/031500`). */
  readonly id: string;
  /** When the backup was made. */
  readonly time: Date | number;
  /** Whether its DNA verifies (default true). An unverified backup does not count toward the policy. */
  readonly verified?: boolean;
  /**
   * Whether there was anything to verify it against (default true). With
   * `verified: false`, `verifiable: false` means "unproven": it holds data
   * but no DNA sidecar at all (a set written by a legacy script), so it is
   * not known to be bad. It still does not count, but the policy keeps it
   * where it would keep it if it did (see {@link Retention.plan}), instead
   * of purging it as a mutant. Ignored when `verified` is true.
   */
  readonly verifiable?: boolean;
  /** Whether it is complete (default true). An incomplete backup does not count toward the policy. */
  readonly complete?: boolean;
  /**
   * Whether a writer may still be at it (default false): kept whatever the
   * policy (rule `in-progress`) and never counted. {@link Retention.apply}
   * sets it for an incomplete set changed within `inProgressGrace`.
   */
  readonly inProgress?: boolean;
  /** Why it does not verify or is incomplete, one line each: quoted in the plan's reasons. */
  readonly problems?: readonly string[];
}

/** Why a backup is kept. */
export type KeepRule =
  | 'last'
  | 'within'
  | 'daily'
  | 'weekly'
  | 'monthly'
  | 'yearly'
  /** The newest verified backup: never purged. */
  | 'newest-verified'
  /** Does not verify but is newer than the newest counting backup (or none counts). */
  | 'unverified-newer'
  /** Verified but incomplete, and newer than the newest counting backup (or none counts). */
  | 'incomplete-newer'
  /** Incomplete and changed recently (`inProgress`): a writer may still be at it. */
  | 'in-progress'
  /** Dated after `now`. */
  | 'future';

/** Why a backup is purged. */
export type PurgeRule =
  /** Counted (or unproven, `verifiable: false`, and ranked as a stand-in), but kept by no rule of the policy. */
  | 'expired'
  /** Fails its DNA (known bad), and a newer verified backup exists. */
  | 'unverified'
  /**
   * Incomplete and not in progress (its writer stopped, or it holds no
   * data), not known to be bad, kept by no rule of the policy even ranked
   * as a stand-in, and a newer complete verified backup exists.
   */
  | 'incomplete';

/** A backup the plan keeps. */
export interface KeepDecision<T extends RetentionItem> {
  /** The item as given. */
  readonly item: T;
  /** Every rule that keeps it, in a fixed order. */
  readonly rules: readonly KeepRule[];
  /** One human-readable reason per rule, e.g. `daily 2026-11-20`, `last 3`, `within 7d of newest`. */
  readonly reasons: readonly string[];
  /**
   * Whether it counted toward the policy (verified, complete, not in the
   * future). False means kept but flagged: then a policy rule among `rules`
   * kept it as a stand-in (its reason says why it did not count).
   */
  readonly counted: boolean;
}

/** A backup the plan purges. */
export interface PurgeDecision<T extends RetentionItem> {
  /** The item as given. */
  readonly item: T;
  /** Why it goes. */
  readonly rule: PurgeRule;
  /** Human-readable reason. */
  readonly reason: string;
}

/** The result of {@link Retention.plan}: every item is in exactly one list, each list newest first (ties by id, descending). */
export interface RetentionPlan<T extends RetentionItem> {
  /** Backups to keep. */
  readonly keep: readonly KeepDecision<T>[];
  /** Backups to purge. */
  readonly purge: readonly PurgeDecision<T>[];
}

/**
 * How {@link Retention.apply} decides whether a set verifies: `'sidecar'`
 * (default) re-digests every file that has a `.dna` sidecar with the
 * transport's `digest` (on the far side for a remote host) and requires at
 * least one (a set with files but no sidecar at all is unproven,
 * `verifiable: false`: kept where the policy would keep it, not purged as a
 * mutant); `'none'` treats every set as verified; or a function of your
 * own (a set it rejects is known bad). A verifier that throws stops `apply`
 * before anything is removed.
 */
export type SetVerify = 'sidecar' | 'none' | ((set: BackupSet, context: { readonly transport: Transport; readonly signal?: AbortSignal }) => Promise<boolean>);

/** Options of {@link Retention.apply}. */
export interface RetentionApplyOptions {
  /** Plan only: return what would be removed and touch nothing. */
  dryRun?: boolean;
  /** The current time for the plan (default `Date.now()`); sets dated after it are kept and do not count. */
  now?: Date | number;
  /**
   * How long an incomplete set (a `.part` file, or no data file yet) stays
   * "in progress" after its last change (default `'24h'`): the newest
   * modification time of the set's folder or anything in it, measured
   * back from `now` (a change dated after `now` is recent too). Such a set
   * is kept whatever the policy (rule `in-progress`); one unchanged for
   * longer is taken as left by a writer that stopped. A duration as for
   * `keepWithin` (`'6h'`, `'2d'`) or milliseconds. Set it above the
   * longest pause a writer of this tree can make between two writes.
   */
  inProgressGrace?: string | number;
  /** How to decide that a set verifies (default `'sidecar'`). */
  verify?: SetVerify;
  /**
   * Refuse (EDELETE_GUARD, nothing removed) when the plan would purge more
   * sets than this. A set put back from an interrupted run's trash is
   * planned, and counted, like any other; what remains of a set whose purge
   * an earlier run had decided (`.stowage-purging-…`, see `leftovers`) is
   * not counted again.
   */
  maxPurge?: number;
  /**
   * Refuse (EDELETE_GUARD, nothing removed, also as a dry run) when the
   * plan would purge more than this fraction (0-1) of the sets planned
   * (default 1: no limit). A nightly job that normally purges one set in
   * eight can set 0.5, so that a tree whose older sets all fail their DNA
   * (a failing disk), or a policy edited by mistake, stops it instead of
   * wiping the history. (Sets with no sidecar at all are not purged for
   * it: the policy keeps them as stand-ins, see {@link RetentionItem.verifiable}.)
   */
  maxPurgeFraction?: number;
  /** Name of the link beside the year folders, ignored by the walk (default `last`). */
  linkName?: string;
  /** Token of a lock the caller holds on the tree (`LOCKED/owner.json`), which then does not block the purge. */
  ownLockToken?: string;
  /** Odd names in the tree, locked trees, sets that are skipped. */
  onWarning?: WarningCallback;
  /** Throw on the first warning instead. */
  strict?: boolean;
  /**
   * Cancels the run. A set being removed is put back under its name unless
   * its removal was already decided; then what is left of it is named
   * `.stowage-purging-…` and removed by the next run.
   */
  signal?: AbortSignal;
  /** Progress per phase: `scan`, `verify` (bytes digested), `purge` (sets and bytes removed). */
  onProgress?: ProgressCallback;
}

/** One set seen by {@link Retention.apply}, as planned. */
export interface BackupSetItem extends RetentionItem {
  /** The set's path relative to the tree. */
  readonly id: string;
  /** The set's time. */
  readonly time: Date;
  /** Whether the set verifies. */
  readonly verified: boolean;
  /**
   * False when the set holds files but not one `.dna` sidecar (with
   * `verify: 'sidecar'`): nothing could be checked, so it is unproven, not
   * known to be bad. True otherwise (an empty set, or one whose sidecars do
   * not match, is a definite failure).
   */
  readonly verifiable: boolean;
  /** Whether it holds data and no `.part` file. */
  readonly complete: boolean;
  /** Incomplete, and changed within `inProgressGrace` of `now`: a writer may still be at it. */
  readonly inProgress: boolean;
  /** The set. */
  readonly set: BackupSet;
  /** Bytes of its files. */
  readonly bytes: number;
  /** Why it does not verify or is incomplete (empty when fine). */
  readonly problems: readonly string[];
}

/** Result of {@link Retention.apply}. */
export interface RetentionApplyResult {
  /** Whether this was a dry run (then nothing was removed and `removed` is empty: see `plan.purge`). */
  readonly dryRun: boolean;
  /** The plan over the sets that are not locked. */
  readonly plan: RetentionPlan<BackupSetItem>;
  /** Sets kept, with the rules that keep them (same as `plan.keep`). */
  readonly kept: readonly KeepDecision<BackupSetItem>[];
  /** Sets removed, oldest first. */
  readonly removed: readonly BackupSetItem[];
  /** Sets left alone because they are locked (not planned) or changed meanwhile. */
  readonly skipped: readonly SkippedSet[];
  /**
   * Every leftover of an interrupted earlier run, with what was done with
   * it or, in a dry run, what would be: sets whose removal was never
   * decided are put back (and planned), what remains of a decided purge is
   * removed, anything holding a writer's `LOCKED` is left with a warning.
   */
  readonly leftovers: readonly LeftoverDecision[];
  /** The leftovers that were removed (empty in a dry run: see `leftovers`). */
  readonly leftoversRemoved: readonly string[];
  /** Day, month and year folders removed because they became empty. */
  readonly prunedDirs: readonly string[];
}

const POLICY_KEYS = ['keepLast', 'keepWithin', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly', 'timeZone'] as const;
const APPLY_OPTIONS = ['dryRun', 'now', 'inProgressGrace', 'verify', 'maxPurge', 'maxPurgeFraction', 'linkName', 'ownLockToken', 'onWarning', 'strict', 'signal', 'onProgress'];
const KEEP_ORDER: readonly KeepRule[] = ['newest-verified', 'last', 'within', 'daily', 'weekly', 'monthly', 'yearly', 'unverified-newer', 'incomplete-newer', 'in-progress', 'future'];
const BUCKETS: readonly { rule: 'daily' | 'weekly' | 'monthly' | 'yearly'; key: (w: WallTime) => string; option: keyof ResolvedRetentionPolicy }[] = [
  { rule: 'daily', key: dayKey, option: 'keepDaily' },
  { rule: 'weekly', key: isoWeekKey, option: 'keepWeekly' },
  { rule: 'monthly', key: monthKey, option: 'keepMonthly' },
  { rule: 'yearly', key: yearKey, option: 'keepYearly' },
];

function checkCount(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (value === Infinity) return Infinity;
  return checkInt('Retention', name, value, 0);
}

function toMs(where: string, what: string, value: unknown): number {
  const t = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : NaN;
  if (!Number.isFinite(t)) {
    throw new StowageError('EBAD_CONFIG', `${where}: ${what} must be a valid Date or epoch milliseconds, got ${String(value)}.`, { details: { where, value: String(value) } });
  }
  return t;
}

interface Slot<T> {
  readonly item: T;
  readonly id: string;
  readonly t: number;
  readonly verified: boolean;
  readonly verifiable: boolean;
  readonly complete: boolean;
  readonly future: boolean;
  readonly inProgress: boolean;
  readonly counted: boolean;
  /** Why it does not count, for the reasons ('' when it counts). */
  readonly why: string;
  readonly rules: Map<KeepRule, string>;
}

/**
 * A retention policy over dated backups.
 *
 * @example
 * ```ts
 * const retention = new Retention({ keepWithin: '7d', keepDaily: 14, keepWeekly: 8, keepMonthly: 12, timeZone: 'Europe/Berlin' });
 * const dry = await retention.apply(transport, '/backups/svn', { dryRun: true });
 * for (const p of dry.plan.purge) console.log('would purge', p.item.id, p.reason);
 * await retention.apply(transport, '/backups/svn');
 * await Retention.updateLastLink(transport, '/backups/svn');
 * ```
 */
export class Retention {
  /** The validated policy. */
  readonly config: ResolvedRetentionPolicy;

  /**
   * @param policy - the rules; unknown keys, negative or fractional counts,
   *   a bad window or time zone, and a policy that keeps nothing are EBAD_CONFIG
   */
  constructor(policy: RetentionPolicy) {
    if (policy === null || typeof policy !== 'object') {
      throw new StowageError('EBAD_CONFIG', 'Retention: the policy must be an object such as { keepDaily: 7 }.', { details: { where: 'Retention' } });
    }
    checkOptionKeys('Retention', policy, POLICY_KEYS);
    const config: ResolvedRetentionPolicy = {
      keepLast: checkCount('keepLast', policy.keepLast),
      keepWithin: policy.keepWithin === undefined ? undefined : parseDuration('Retention', 'keepWithin', policy.keepWithin),
      keepDaily: checkCount('keepDaily', policy.keepDaily),
      keepWeekly: checkCount('keepWeekly', policy.keepWeekly),
      keepMonthly: checkCount('keepMonthly', policy.keepMonthly),
      keepYearly: checkCount('keepYearly', policy.keepYearly),
      timeZone: policy.timeZone === undefined ? localTimeZone() : checkTimeZone('Retention', 'timeZone', policy.timeZone),
    };
    if (config.keepWithin === undefined && config.keepLast + config.keepDaily + config.keepWeekly + config.keepMonthly + config.keepYearly === 0) {
      throw new StowageError(
        'EBAD_CONFIG',
        'Retention: the policy keeps nothing; set at least one of keepLast, keepWithin, keepDaily, keepWeekly, keepMonthly, keepYearly (e.g. { keepDaily: 7 }).',
        { details: { where: 'Retention', policy: { ...policy } } },
      );
    }
    this.config = Object.freeze(config);
  }

  /**
   * Decides which backups to keep and which to purge, with every reason.
   * Pure: it reads only its arguments and the policy. See the module notes
   * for the rules; `now` only marks backups dated after it (kept, not
   * counted), it does not age anything.
   *
   * @param items - the backups, in any order; ids must be unique
   * @param now - the current time
   *
   * @example
   * ```ts
   * const plan = new Retention({ keepLast: 2, timeZone: 'UTC' }).plan(
   *   [{ id: 'a', time: Date.parse('2026-11-20T03:00Z') }, { id: 'b', time: Date.parse('2026-11-21T03:00Z') },
   *    { id: 'c', time: Date.parse('2026-11-22T03:00Z'), verified: false }],
   *   Date.parse('2026-11-22T12:00Z'));
   * // keep: c (unverified-newer), b (newest-verified, last 2), a (last 2); purge: none
   * ```
   */
  plan<T extends RetentionItem>(items: readonly T[], now: Date | number): RetentionPlan<T> {
    if (!Array.isArray(items)) throw new StowageError('EBAD_CONFIG', 'Retention.plan: items must be an array.', { details: { where: 'Retention.plan' } });
    const nowMs = toMs('Retention.plan', 'now', now);
    const seen = new Set<string>();
    const slots: Slot<T>[] = items.map((item, i) => {
      if (item === null || typeof item !== 'object') throw new StowageError('EBAD_CONFIG', `Retention.plan: item ${i} is not an object.`, { details: { index: i } });
      const { id } = item;
      if (typeof id !== 'string' || id === '') throw new StowageError('EBAD_CONFIG', `Retention.plan: item ${i} needs a non-empty string id.`, { details: { index: i } });
      if (seen.has(id)) throw new StowageError('EBAD_CONFIG', `Retention.plan: id "${id}" appears twice.`, { details: { index: i, id } });
      seen.add(id);
      const t = toMs('Retention.plan', `the time of item "${id}"`, item.time);
      for (const flag of ['verified', 'verifiable', 'complete', 'inProgress'] as const) {
        if (item[flag] !== undefined && typeof item[flag] !== 'boolean') {
          throw new StowageError('EBAD_CONFIG', `Retention.plan: "${flag}" of item "${id}" must be a boolean.`, { details: { index: i, id } });
        }
      }
      const problems: unknown = item.problems;
      if (problems !== undefined && (!Array.isArray(problems) || problems.some((p) => typeof p !== 'string'))) {
        throw new StowageError('EBAD_CONFIG', `Retention.plan: "problems" of item "${id}" must be an array of strings.`, { details: { index: i, id } });
      }
      const verified = item.verified ?? true;
      const verifiable = verified || (item.verifiable ?? true);
      const complete = item.complete ?? true;
      const inProgress = item.inProgress ?? false;
      const future = t > nowMs;
      const told = (problems as readonly string[] | undefined)?.join('; ') ?? '';
      const why = verified && complete ? told : told !== '' ? told : !verified ? (verifiable ? 'does not match its DNA' : 'nothing to verify it against (no DNA sidecar)') : 'incomplete';
      return { item, id, t, verified, verifiable, complete, future, inProgress, counted: verified && complete && !future && !inProgress, why, rules: new Map() };
    });
    slots.sort((a, b) => b.t - a.t || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));

    const counted = slots.filter((s) => s.counted);
    const newest = counted[0];
    const newestVerified = slots.find((s) => s.verified && !s.future);

    for (const [s, rules] of this.#rules(counted, newest)) for (const [r, why] of rules) s.rules.set(r, why);
    // Stand-ins: older than the newest counting backup, not counted, but not
    // known to be bad either: complete with no sidecar to check them
    // against, then incomplete ones whose writer stopped. Ranked after the
    // counting ones (and the incomplete after the complete), so that they
    // never take a better backup's place, they are kept wherever the
    // policy would keep them.
    const older = (s: Slot<T>): boolean => newest !== undefined && !s.counted && !s.future && !s.inProgress && s.t <= newest.t && (s.verified || !s.verifiable);
    const standIns = new Set<Slot<T>>();
    for (const tier of [slots.filter((s) => older(s) && s.complete), slots.filter((s) => older(s) && !s.complete)]) {
      if (tier.length === 0) continue;
      for (const s of tier) standIns.add(s);
      const ranked = slots.filter((s) => s.counted || standIns.has(s));
      const inTier = new Set(tier);
      for (const [s, rules] of this.#rules(ranked, newest)) {
        if (!inTier.has(s)) continue;
        for (const [r, why] of rules) s.rules.set(r, `${why}, as a stand-in (not counted: ${s.why})`);
      }
    }
    if (newestVerified !== undefined) newestVerified.rules.set('newest-verified', 'newest verified backup: never purged');
    for (const s of slots) {
      if (s.future) s.rules.set('future', `dated after now (${new Date(nowMs).toISOString()}): kept, not counted; check the clock or the name`);
      if (s.inProgress) s.rules.set('in-progress', `in progress (${s.why}): kept, not counted`);
      if (s.future || s.inProgress) continue;
      if (!s.counted && (newest === undefined || s.t > newest.t)) {
        const anchor = newest === undefined ? 'no verified complete backup exists, so nothing is purged' : `newer than the newest verified complete backup ${newest.id}`;
        if (!s.verified) s.rules.set('unverified-newer', `unverified: ${s.why}; kept for inspection, ${anchor}`);
        else s.rules.set('incomplete-newer', `incomplete; kept (may still be in progress), ${anchor}`);
      }
    }

    const keep: KeepDecision<T>[] = [];
    const purge: PurgeDecision<T>[] = [];
    for (const s of slots) {
      if (s.rules.size > 0) {
        const rules = KEEP_ORDER.filter((r) => s.rules.has(r));
        keep.push(Object.freeze({ item: s.item, rules: Object.freeze(rules), reasons: Object.freeze(rules.map((r) => s.rules.get(r)!)), counted: s.counted }));
      } else if (standIns.has(s) && s.complete) {
        purge.push(Object.freeze({ item: s.item, rule: 'expired' as const, reason: `kept by no rule of the policy (${this.#describe()}), even ranked as a stand-in (it does not count: ${s.why})` }));
      } else if (standIns.has(s)) {
        purge.push(
          Object.freeze({ item: s.item, rule: 'incomplete' as const, reason: `incomplete (${s.why}), kept by no rule of the policy (${this.#describe()}) even ranked as a stand-in, and older than the newest verified complete backup ${newest!.id}` }),
        );
      } else if (!s.verified) {
        purge.push(Object.freeze({ item: s.item, rule: 'unverified' as const, reason: `unverified (${s.why}) and older than the newest verified complete backup ${newest!.id}` }));
      } else if (!s.complete) {
        purge.push(Object.freeze({ item: s.item, rule: 'incomplete' as const, reason: `incomplete${s.why !== 'incomplete' ? ` (${s.why})` : ''} and older than the newest verified complete backup ${newest!.id}` }));
      } else {
        purge.push(Object.freeze({ item: s.item, rule: 'expired' as const, reason: `kept by no rule of the policy (${this.#describe()})` }));
      }
    }
    return Object.freeze({ keep: Object.freeze(keep), purge: Object.freeze(purge) });
  }

  /**
   * The policy's rules over `ranked` (newest first): which of them each
   * rule keeps, with its reason. `keepWithin` counts back from `newest`.
   */
  #rules<T>(ranked: readonly Slot<T>[], newest: Slot<T> | undefined): Map<Slot<T>, Map<KeepRule, string>> {
    const c = this.config;
    const out = new Map<Slot<T>, Map<KeepRule, string>>();
    const set = (s: Slot<T>, rule: KeepRule, why: string): void => {
      let m = out.get(s);
      if (m === undefined) out.set(s, (m = new Map()));
      m.set(rule, why);
    };
    if (c.keepLast > 0) {
      for (const s of ranked.slice(0, c.keepLast)) set(s, 'last', `last ${c.keepLast}`);
    }
    if (c.keepWithin !== undefined && newest !== undefined) {
      const from = subtractDuration(newest.t, c.keepWithin, c.timeZone);
      for (const s of ranked) {
        if (s.t < from) break;
        set(s, 'within', `within ${c.keepWithin.text} of newest (${newest.id})`);
      }
    }
    const walls = new Map<Slot<T>, WallTime>();
    for (const b of BUCKETS) {
      const n = c[b.option] as number;
      if (n === 0) continue;
      const buckets = new Set<string>();
      for (const s of ranked) {
        let w = walls.get(s);
        if (w === undefined) {
          w = wallTime(s.t, c.timeZone);
          walls.set(s, w);
        }
        const key = b.key(w);
        if (buckets.has(key)) continue;
        if (buckets.size >= n) break;
        buckets.add(key);
        set(s, b.rule, `${b.rule} ${key}`);
      }
    }
    return out;
  }

  #describe(): string {
    const c = this.config;
    const parts: string[] = [];
    if (c.keepLast) parts.push(`keepLast ${c.keepLast}`);
    if (c.keepWithin) parts.push(`keepWithin ${c.keepWithin.text}`);
    if (c.keepDaily) parts.push(`keepDaily ${c.keepDaily}`);
    if (c.keepWeekly) parts.push(`keepWeekly ${c.keepWeekly}`);
    if (c.keepMonthly) parts.push(`keepMonthly ${c.keepMonthly}`);
    if (c.keepYearly) parts.push(`keepYearly ${c.keepYearly}`);
    return parts.join(', ');
  }

  /**
   * Applies the policy to a dated backup tree `YYYY/MM/DD/HHMMSS/` on any
   * transport: lists the sets (their time is their path in the policy's
   * time zone), checks each one's DNA and completeness, plans, and removes
   * the purged sets oldest first. An incomplete set (a `.part` file, or no
   * data yet) changed within `inProgressGrace` (24 h) of `now` is in
   * progress: kept whatever the policy. One unchanged for longer, and a set
   * with no sidecar at all, are kept where the policy would keep them if
   * they counted (see the module notes).
   *
   * Sets under a foreign `LOCKED` directory (in the set, a parent folder, or
   * the root) are not planned and never touched; they are listed in
   * `skipped`. The lock is checked again just before each removal. A set is
   * removed atomically: renamed to a hidden `.stowage-trash-…` name in its
   * day folder, checked once more, renamed `.stowage-purging-…` once its
   * removal is decided, then removed recursively, so a half-removed set
   * never looks like a backup; any error or abort before the decision puts
   * it back. Leftovers of an interrupted run are dealt with first (see
   * {@link LeftoverDecision} and `leftovers` in the result): a set whose
   * removal was never decided is put back and planned again by the policy
   * in force now; what remains of a decided purge is removed; trash holding
   * a foreign `LOCKED` directory is left alone with an ELOCKED warning, as
   * it may be a live writer's set. Day, month and year folders left empty
   * are removed. With `dryRun` nothing is touched, and the plan and
   * `leftovers` say what would be done. A missing `dir` is ENOT_FOUND; more
   * purges than `maxPurge` is EDELETE_GUARD before anything is removed.
   *
   * @param transport - where the tree lives
   * @param dir - the tree's root
   * @param options - dryRun, now, inProgressGrace, verify, maxPurge, maxPurgeFraction, linkName, ownLockToken, onWarning, strict, signal, onProgress
   */
  async apply(transport: Transport, dir: string, options: RetentionApplyOptions = {}): Promise<RetentionApplyResult> {
    checkOptionKeys('Retention.apply', options, APPLY_OPTIONS);
    options ??= {}; // null means no options, as for checkOptionKeys
    const where = 'Retention.apply';
    const tree = resolveTreeOptions(where, {
      timeZone: this.config.timeZone,
      ...(options.linkName !== undefined ? { linkName: options.linkName } : {}),
      ...(options.ownLockToken !== undefined ? { ownLockToken: options.ownLockToken } : {}),
      ...(options.onWarning !== undefined ? { onWarning: options.onWarning } : {}),
      ...(options.strict !== undefined ? { strict: options.strict } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
    checkBooleanOption(where, 'dryRun', options.dryRun);
    const dryRun = options.dryRun ?? false;
    const now = options.now === undefined ? Date.now() : toMs(where, 'option "now"', options.now);
    const grace = parseDuration(where, 'inProgressGrace', options.inProgressGrace ?? '24h');
    const staleBefore = subtractDuration(now, grace, this.config.timeZone);
    const verify = options.verify ?? 'sidecar';
    if (verify !== 'sidecar' && verify !== 'none' && typeof verify !== 'function') {
      throw new StowageError('EBAD_CONFIG', `${where}: option "verify" must be 'sidecar', 'none' or a function, got ${String(verify)}.`, { details: { where, option: 'verify' } });
    }
    const maxPurge = options.maxPurge === undefined || options.maxPurge === Infinity ? Infinity : checkInt(where, 'maxPurge', options.maxPurge, 0);
    const maxPurgeFraction = options.maxPurgeFraction ?? 1;
    if (typeof maxPurgeFraction !== 'number' || !(maxPurgeFraction >= 0 && maxPurgeFraction <= 1)) {
      throw new StowageError('EBAD_CONFIG', `${where}: option "maxPurgeFraction" must be a number from 0 to 1, got ${String(maxPurgeFraction)}.`, { details: { where, option: 'maxPurgeFraction', value: maxPurgeFraction } });
    }
    const { signal, onProgress } = options;
    throwIfAborted(signal);
    await checkTreeRoot(transport, dir, where, signal);

    const scanProgress = new ProgressTracker('scan', onProgress);
    const found = await scanBackupTree(transport, dir, tree);
    const sets = [...found.sets];
    // Leftovers first: a set an interrupted run moved aside without ever
    // deciding its removal goes back (in a dry run: is planned where it
    // lies), so that the policy in force now decides about it, visibly.
    const leftovers: LeftoverDecision[] = [];
    // Two leftovers of one set (two runs stopped in turn): one goes back, as a real run's rename would allow.
    const claimed = new Set<string>();
    for (const l of found.leftovers) {
      throwIfAborted(signal);
      let d = await planLeftover(transport, dir, l, tree);
      if (d.action === 'put back' && claimed.has(d.to!)) {
        const reason = `${d.to} is claimed by another leftover put back in this run; compare the two, keep the right one, and remove the other by hand`;
        warnOrThrow(new StowageError('EEXIST', `Left alone leftover ${d.path}: ${reason}.`, { details: { path: d.path, set: d.to } }), d.path, tree.onWarning, tree.strict);
        d = Object.freeze({ path: d.path, action: 'leave' as const, ...(d.setId !== undefined ? { setId: d.setId } : {}), reason });
      }
      if (d.action === 'put back') claimed.add(d.to!);
      if (d.action === 'put back' && !dryRun) {
        throwIfAborted(signal);
        try {
          await transport.rename(d.path, d.to!); // no signal: a rename cut short may still happen on the far side
        } catch (err) {
          const reason = `it could not be put back to ${d.to} (${(err as Error).message}); move it back by hand`;
          warnOrThrow(new StowageError('EIO', `Left alone leftover ${d.path}: ${reason}.`, { details: { path: d.path, set: d.to }, cause: err }), d.path, tree.onWarning, tree.strict);
          d = Object.freeze({ path: d.path, action: 'leave' as const, ...(d.setId !== undefined ? { setId: d.setId } : {}), reason });
        }
      }
      if (d.action === 'put back' && d.setId !== undefined) sets.push(backupSetOf(d.setId, dryRun ? d.path : d.to!, this.config.timeZone));
      leftovers.push(d);
    }
    sets.sort((a, b) => a.time.getTime() - b.time.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    scanProgress.add(0, sets.length);
    scanProgress.report(true);

    const skipped: SkippedSet[] = [];
    const items: BackupSetItem[] = [];
    const open = sets.filter((s) => s.lockedBy === undefined);
    const verifyProgress = new ProgressTracker('verify', onProgress, { itemsTotal: open.length });
    for (const set of sets) {
      if (set.lockedBy !== undefined) {
        skipped.push({ set, reason: `locked by ${set.lockedBy}` });
        continue;
      }
      const contents = await inspectSet(transport, set.path, tree);
      const lock = contents.locks[0];
      if (lock !== undefined) {
        skipped.push({ set: { ...set, lockedBy: lock }, reason: `locked by ${lock}` });
        verifyProgress.add(0, 1);
        continue;
      }
      const problems: string[] = [];
      let verified: boolean;
      let verifiable = true;
      if (verify === 'none') verified = true;
      else if (verify === 'sidecar') {
        const check = await checkSidecars(transport, contents, signal, (n) => verifyProgress.add(n));
        verified = check.verified;
        verifiable = !check.unverifiable;
        problems.push(...check.problems);
      } else {
        const ok: unknown = await verify(set, signal ? { transport, signal } : { transport });
        throwIfAborted(signal);
        if (typeof ok !== 'boolean') throw new StowageError('EBAD_CONFIG', `${where}: the verify function returned ${String(ok)} for ${set.id}; it must resolve to a boolean.`, { details: { where, set: set.id } });
        verified = ok;
        if (!ok) problems.push('the verify function rejected it');
      }
      let inProgress = false;
      if (!contents.complete) {
        // A writer at work keeps the set's folder or something in it recent.
        const folder = await transport.exists(set.path, signal ? { signal } : {});
        const changed = Math.max(contents.newestChangeMs, folder?.mtimeMs ?? -Infinity);
        inProgress = changed > staleBefore;
        const last = Number.isFinite(changed) ? new Date(changed).toISOString() : 'unknown';
        const age = inProgress ? `last change ${last}, within inProgressGrace ${grace.text} of now` : `last change ${last}, more than inProgressGrace ${grace.text} before now: its writer stopped`;
        if (contents.partFiles.length > 0) problems.push(`${inProgress ? 'still being written' : 'unfinished'}: ${contents.partFiles.join(', ')} (${age})`);
        else problems.push(`holds no data file (${age})`);
      }
      items.push(Object.freeze({ id: set.id, time: set.time, verified, verifiable, complete: contents.complete, inProgress, set, bytes: contents.bytes, problems: Object.freeze(problems) }));
      verifyProgress.add(0, 1);
    }
    verifyProgress.report(true);

    const plan = this.plan(items, now);
    if (plan.purge.length > maxPurge) {
      throw new StowageError(
        'EDELETE_GUARD',
        `${where}: the plan would purge ${plan.purge.length} backup sets under ${dir}, more than maxPurge ${maxPurge}; nothing was removed. Check the plan with { dryRun: true } and raise maxPurge if it is right.`,
        { details: { dir, purge: plan.purge.length, maxPurge } },
      );
    }
    const planned = plan.keep.length + plan.purge.length;
    if (planned > 0 && plan.purge.length / planned > maxPurgeFraction) {
      throw new StowageError(
        'EDELETE_GUARD',
        `${where}: the plan would purge ${plan.purge.length} of the ${planned} backup sets under ${dir} (${((plan.purge.length / planned) * 100).toFixed(1)}%), more than maxPurgeFraction ${maxPurgeFraction}; nothing was removed. Check the plan with { dryRun: true, maxPurgeFraction: 1 } (sets that do not verify? a policy rule edited?) and pass a higher maxPurgeFraction if it is right.`,
        { details: { dir, purge: plan.purge.length, planned, maxPurgeFraction } },
      );
    }
    const result = { dryRun, plan, kept: plan.keep, removed: [] as BackupSetItem[], skipped, leftovers, leftoversRemoved: [] as string[], prunedDirs: [] as string[] };
    if (dryRun) return Object.freeze(result);

    const purgeProgress = new ProgressTracker('purge', onProgress, { itemsTotal: plan.purge.length, bytesTotal: plan.purge.reduce((n, p) => n + p.item.bytes, 0) });
    for (const [i, l] of leftovers.entries()) {
      if (l.action !== 'remove') continue;
      throwIfAborted(signal);
      // Looked at again now: a writer may have started meanwhile.
      const lock = await foreignLockInTrash(transport, l.path, tree);
      if (lock !== undefined) {
        const reason = `it holds ${lock}, a writer's lock that appeared since the start of this run; check it, then remove it by hand`;
        warnOrThrow(new StowageError('ELOCKED', `Left alone leftover ${l.path}: ${reason}.`, { details: { path: l.path, lock } }), l.path, tree.onWarning, tree.strict);
        leftovers[i] = Object.freeze({ ...l, action: 'leave' as const, reason });
        continue;
      }
      await transport.remove(l.path, { recursive: true, force: true, ...(signal ? { signal } : {}) });
      result.leftoversRemoved.push(l.path);
    }
    const oldestFirst = [...plan.purge].reverse();
    for (const p of oldestFirst) {
      throwIfAborted(signal);
      const outcome = await removeSet(transport, dir, p.item.set, tree);
      if (outcome !== 'removed') {
        skipped.push({ set: p.item.set, reason: outcome });
        continue;
      }
      result.removed.push(p.item);
      purgeProgress.add(p.item.bytes, 1);
      result.prunedDirs.push(...(await pruneEmptyParents(transport, dir, p.item.set, signal)));
    }
    purgeProgress.report(true);
    return Object.freeze(result);
  }

  /**
   * Free-space mode: purges dated backup sets oldest first, only while the
   * file system holding `dir` has less than `minFreePercent` free, never
   * leaving fewer than `minKeep` complete sets, never the newest complete
   * set dated up to `now` (nor anything newer), and only sets that verify on
   * at least one other node. See {@link FreeSpaceOptions}.
   *
   * @param transport - where the tree lives
   * @param dir - the tree's root
   * @param options - minFreePercent, minKeep, verifiedElsewhere, dryRun, now, ...
   */
  static async applyFreeSpace(transport: Transport, dir: string, options: FreeSpaceOptions): Promise<FreeSpaceResult> {
    return applyFreeSpace(transport, dir, options);
  }

  /**
   * Points the `last` link beside the year folders at the newest complete
   * set (`last -> 2026/11/22/031500`), replacing the link atomically, and
   * repairs a link that a copy without `-l` collapsed into a real folder.
   * A set dated after `now` is never linked (as {@link Retention.apply}
   * does not count it). See {@link LastLinkOptions}.
   *
   * @param transport - where the tree lives
   * @param dir - the tree's root
   * @param options - name, timeZone, now, ownLockToken, onWarning, strict, signal
   */
  static async updateLastLink(transport: Transport, dir: string, options: LastLinkOptions = {}): Promise<LastLinkResult> {
    return updateLastLink(transport, dir, options);
  }
}
