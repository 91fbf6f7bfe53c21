/**
 * Where a Monitor keeps what it last told each notifier: in the Catalog
 * (table `monitor_notify_state`), or in a small JSON state file when the
 * source is a plain backup tree without a Catalog. The file is replaced
 * atomically (`writeFileAtomic`), holds one monitor's state, and refuses
 * to serve another monitor (two monitors sharing one file would overwrite
 * each other's state).
 *
 * @module
 */
import { constants as fsConstants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';
import type { Catalog } from '../catalog/catalog.js';
import { StowageError, fromFsError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { MONITOR_CHECKS, type MonitorCheckName, type MonitorStatus } from './status.js';

/** The state a notifier was told: overall status and each check's. */
export interface NotifyState {
  /** Overall status. */
  readonly status: MonitorStatus;
  /** Status per check that ran. */
  readonly checks: Readonly<Partial<Record<MonitorCheckName, MonitorStatus>>>;
}

/** A store of {@link NotifyState} per notifier. */
export interface NotifyStateStore {
  /** A description for messages. */
  readonly where: string;
  /** The state last told to `notifier`, if any. */
  get(notifier: string): Promise<NotifyState | undefined>;
  /** Records that `notifier` was told `state`. */
  set(notifier: string, state: NotifyState, at: Date): Promise<void>;
  /**
   * Rejects when a state could not be recorded, checked before anyone is
   * told: a notification whose state is then lost would be sent again on
   * every run.
   */
  ready?(): Promise<void>;
  /**
   * Where runs of this monitor take turns at notifying: a {@link LockDir}
   * (parent folder and name), so that two overlapping runs (a slow check
   * under cron) do not both tell of one change. Undefined when no other
   * process can share the store (an in-memory Catalog).
   */
  readonly lock?: { readonly dir: string; readonly name: string };
}

/**
 * How long a run waits for an overlapping run of the same monitor to finish
 * notifying before it gives up (its notifications then count as failed and
 * go out on the next run). Internal; tests shorten it.
 */
export const notifyLock = { waitMs: 120_000 };

/** A lock name for `base` and `monitor`: the name as is where it is short, else a hash of it. */
function lockName(base: string, monitor: string): string {
  let safe: string | undefined;
  try {
    safe = encodeURIComponent(monitor);
  } catch {
    // A lone surrogate: not a name a file can carry; its hash can.
  }
  return `${base}.monitor-${safe !== undefined && safe.length <= 80 ? safe : createHash('sha256').update(monitor).digest('hex').slice(0, 16)}.lock`;
}

const STATUSES: readonly string[] = ['ok', 'warning', 'critical'];

/** Reads a stored state back; undefined if it is not one (then it counts as never told). */
export function parseNotifyState(v: unknown): NotifyState | undefined {
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as { status?: unknown; checks?: unknown };
  if (!STATUSES.includes(o.status as string) || o.checks === null || typeof o.checks !== 'object') return undefined;
  const checks: Partial<Record<MonitorCheckName, MonitorStatus>> = {};
  for (const [k, s] of Object.entries(o.checks as Record<string, unknown>)) {
    if (MONITOR_CHECKS.includes(k as MonitorCheckName) && STATUSES.includes(s as string)) checks[k as MonitorCheckName] = s as MonitorStatus;
  }
  return { status: o.status as MonitorStatus, checks };
}

/**
 * The Catalog as a state store.
 *
 * @param catalog - the catalog
 * @param monitor - the monitor's name
 */
export function catalogStateStore(catalog: Catalog, monitor: string): NotifyStateStore {
  return {
    where: `catalog ${catalog.path}`,
    ...(catalog.path === ':memory:' ? {} : { lock: { dir: dirname(catalog.path), name: lockName(basename(catalog.path), monitor) } }),
    get: async (notifier) => parseNotifyState(catalog.monitorNotifyState(monitor, notifier)?.state),
    set: async (notifier, state, at) => catalog.setMonitorNotifyState(monitor, notifier, state, at),
  };
}

interface StateFile {
  version: 1;
  monitor: string;
  notifiers: Record<string, { state: NotifyState; updated: string }>;
}

/**
 * A JSON file as a state store:
 * `{ "version": 1, "monitor": NAME, "notifiers": { NAME: { "state": {...}, "updated": ISO } } }`.
 * A missing file is an empty store; a malformed one, or one of another
 * monitor, is EBAD_CONFIG.
 *
 * @param path - the file
 * @param monitor - the monitor's name
 */
export function fileStateStore(path: string, monitor: string): NotifyStateStore {
  const load = async (): Promise<StateFile> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, monitor, notifiers: {} };
      throw fromFsError(err, 'read the monitor state file', path);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (cause) {
      throw new StowageError('EBAD_CONFIG', `Monitor state file ${path} is not valid JSON; move it away (the next run starts from "never told").`, { details: { path }, cause });
    }
    const o = v as Partial<StateFile> | null;
    if (o === null || typeof o !== 'object' || o.version !== 1 || typeof o.monitor !== 'string' || o.notifiers === null || typeof o.notifiers !== 'object') {
      throw new StowageError('EBAD_CONFIG', `Monitor state file ${path} is not a stowage monitor state file (version 1).`, { details: { path } });
    }
    if (o.monitor !== monitor) {
      throw new StowageError('EBAD_CONFIG', `Monitor state file ${path} belongs to monitor "${o.monitor}", not "${monitor}"; give each monitor its own state file.`, {
        details: { path, monitor, fileMonitor: o.monitor },
      });
    }
    return o as StateFile;
  };
  return {
    where: `state file ${path}`,
    lock: { dir: dirname(path), name: lockName(basename(path), monitor) },
    ready: async () => {
      const dir = dirname(path);
      const why = await stat(dir).then(
        (st) => (st.isDirectory() ? access(dir, fsConstants.W_OK).then(() => undefined, () => 'is not writable') : 'is not a folder'),
        () => 'does not exist',
      );
      if (why !== undefined) {
        throw new StowageError('EBAD_CONFIG', `Monitor option "stateFile": ${dir}, the folder of ${path}, ${why}, so the notification state could not be kept, and the same notification would go out on every run; nobody was told. Create the folder or choose another stateFile.`, {
          details: { option: 'stateFile', path },
        });
      }
    },
    get: async (notifier) => parseNotifyState((await load()).notifiers[notifier]?.state),
    set: async (notifier, state, at) => {
      const file = await load();
      file.notifiers[notifier] = { state, updated: at.toISOString() };
      await writeFileAtomic(path, [Buffer.from(JSON.stringify(file, null, 2) + '\n')]);
    },
  };
}
