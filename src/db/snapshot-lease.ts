/**
 * SnapshotLease: the one connection of a pooled server source's snapshot,
 * lent to the snapshot's reader one row stream at a time (internal).
 *
 * @module
 */
import type { Readable } from 'node:stream';
import { StowageError } from '../errors.js';

/** Options of {@link SnapshotLease}. */
export interface SnapshotLeaseOptions {
  /** The source's name, for messages. */
  readonly name: string;
  /** What the engine calls a connection (`connection`, `client`), for messages. */
  readonly unit: string;
  /** Closes the connection at once (the snapshot is then over). */
  readonly destroy: () => void;
  /** The source's own stream tracking (destroys them on close). */
  readonly track: (stream: Readable) => void;
}

/**
 * Lends a snapshot's connection to its reader: queries may overlap, a row
 * stream must be alone (anything sent meanwhile would wait behind it); an
 * operation cut short closes the connection and ends the snapshot; once
 * the snapshot has ended, every call fails with EDB.
 */
export class SnapshotLease {
  readonly #options: SnapshotLeaseOptions;
  readonly #streams = new Set<Readable>();
  #open = true;
  #broken: string | undefined;
  #streaming = false;
  #queries = 0;

  /** @param options - see {@link SnapshotLeaseOptions} */
  constructor(options: SnapshotLeaseOptions) {
    this.#options = options;
  }

  /**
   * Lends the connection for one query or one row stream; EDB if the
   * snapshot has ended, is broken, or has a row stream open.
   *
   * @param stream - for a row stream (held until it ends)
   * @returns the release function (`broken` ends the snapshot)
   */
  lend(stream: boolean): (broken: boolean) => void {
    const { name, unit } = this.#options;
    if (!this.#open) throw new StowageError('EDB', `${name}: the snapshot has ended; use the reader only inside the snapshot callback.`, { details: { source: name } });
    if (this.#broken !== undefined) throw new StowageError('EDB', `${name}: the snapshot is no longer usable: ${this.#broken}.`, { details: { source: name } });
    if (this.#streaming) {
      throw new StowageError('EDB', `${name}: a snapshot reads on one ${unit}, and one of its row streams is still open: read it to the end or destroy it first.`, {
        details: { source: name },
      });
    }
    if (stream) this.#streaming = true;
    else this.#queries++;
    let released = false;
    return (isBroken: boolean) => {
      if (released) return;
      released = true;
      if (stream) this.#streaming = false;
      else this.#queries--;
      if (isBroken && this.#broken === undefined) {
        this.#broken = `a query on its ${unit} was cut short (a row stream destroyed before its end, or an abort)`;
        this.#options.destroy();
      }
    };
  }

  /**
   * Records a row stream of the snapshot (destroyed when it ends).
   *
   * @param s - the stream
   */
  track(s: Readable): void {
    this.#streams.add(s);
    this.#options.track(s);
    s.once('close', () => this.#streams.delete(s));
  }

  /**
   * Ends the snapshot: its streams are destroyed, and the transaction is
   * rolled back if the connection is idle and sound.
   *
   * @param rollback - rolls the transaction back
   * @returns whether the connection must be closed rather than reused
   */
  async end(rollback: () => Promise<unknown>): Promise<boolean> {
    this.#open = false;
    for (const s of this.#streams) s.destroy();
    const busy = this.#streaming || this.#queries > 0;
    if (this.#broken === undefined && !busy) {
      try {
        await rollback();
      } catch {
        this.#broken = 'ROLLBACK failed';
      }
    }
    return this.#broken !== undefined || busy;
  }
}
