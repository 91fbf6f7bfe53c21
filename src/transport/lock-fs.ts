/**
 * Plants locks on a transport's tree: the {@link LockFs} of a Transport.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import type { LockFs } from '../lock/lock-fs.js';
import type { Transport } from './transport.js';

/**
 * The lock file operations on `transport`'s tree, so that
 * `new LockDir(dir, { fs: transportLockFs(remote) })` plants `LOCKED` on the
 * far side, where readers (Archiver, DnaDigest.scan) skip trees under it.
 *
 * @param transport - a transport that implements `lockFs()` (LocalTransport, SshTransport)
 *
 * @example
 * ```ts
 * const lock = new LockDir('/backups/svn', { fs: transportLockFs(remote), purpose: 'offbox sync' });
 * // The destination's LOCKED is ours: its token tells sync so.
 * await lock.withLock(() => sync(local, '/var/backups/svn', remote, '/backups/svn', { ownLockToken: lock.owner!.token }));
 * ```
 */
export function transportLockFs(transport: Transport): LockFs {
  if (typeof transport.lockFs === 'function') return transport.lockFs();
  throw new StowageError('EBAD_CONFIG', `${transport.name}: this transport cannot hold a lock (it has no lockFs(): exclusive create and no-replace rename are needed).`, {
    details: { transport: transport.name },
  });
}
