/**
 * RangeCutter: cuts one bulk text stream, in ascending key order, into the
 * pieces that belong to consecutive key ranges, so that one query can feed
 * many partitions.
 *
 * Cheap on purpose: for each chunk it reads only the key of the last
 * complete row; when that key is still inside the current range (the
 * common case: a range holds many chunks), the whole chunk goes there
 * without looking at any other row. Only the chunk that crosses a boundary
 * is read row by row.
 *
 * With the lower bounds of the ranges too, a row whose key falls between
 * two ranges (in a range the plan found empty: a row committed since the
 * plan) goes to none of them: it is left for a later run, instead of
 * landing in the next range's archive, outside its bounds.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import { fieldOf, parseKeyField } from './key-seek.js';

const LF = 0x0a;

/** Where the pieces go: `index` is the position of the range in the list given. */
export type PieceSink = (index: number, piece: Buffer) => Promise<void>;

/** Cuts a key-ordered stream at range boundaries; see the module documentation. */
export class RangeCutter {
  readonly #his: readonly bigint[];
  readonly #keyIndex: number;
  readonly #source: string;
  readonly #table: string;
  readonly #sink: PieceSink;
  readonly #los: readonly bigint[] | undefined;
  #carry: Buffer | undefined;
  #current = 0;
  /** Rows left out because their key lay between two ranges. */
  skipped = 0;

  /**
   * @param his - the upper bound of each range, ascending (the first range starts wherever the stream does)
   * @param keyIndex - 0-based field of the key
   * @param source - for messages
   * @param table - for messages
   * @param sink - receives each piece with its range's position
   * @param los - the lower bound of each range, if rows between ranges are to be left out
   */
  constructor(his: readonly bigint[], keyIndex: number, source: string, table: string, sink: PieceSink, los?: readonly bigint[]) {
    this.#his = his;
    this.#los = los;
    this.#keyIndex = keyIndex;
    this.#source = source;
    this.#table = table;
    this.#sink = sink;
  }

  /** The position of the range the next row goes to (ranges before it are done). */
  get current(): number {
    return this.#current;
  }

  /**
   * Takes the next chunk of the stream.
   *
   * @param chunk - bytes (rows may straddle chunks)
   */
  async push(chunk: Buffer): Promise<void> {
    let buf = chunk;
    if (this.#carry !== undefined) {
      buf = Buffer.concat([this.#carry, chunk]);
      this.#carry = undefined;
    }
    const last = buf.lastIndexOf(LF);
    if (last < 0) {
      this.#carry = buf;
      return;
    }
    if (last < buf.length - 1) this.#carry = Buffer.from(buf.subarray(last + 1));
    const complete = buf.subarray(0, last + 1);
    const lastStart = complete.lastIndexOf(LF, last - 1) + 1;
    const lo = this.#los?.[this.#current];
    if (this.#keyOf(complete.subarray(lastStart)) <= this.#his[this.#current]! && (lo === undefined || this.#keyOf(complete.subarray(0, complete.indexOf(LF) + 1)) >= lo)) {
      await this.#sink(this.#current, complete);
      return;
    }
    // A boundary inside: row by row.
    let segStart = 0;
    let lineStart = 0;
    while (lineStart < complete.length) {
      const nl = complete.indexOf(LF, lineStart);
      const k = this.#keyOf(complete.subarray(lineStart, nl + 1));
      if (k > this.#his[this.#current]!) {
        if (lineStart > segStart) await this.#sink(this.#current, complete.subarray(segStart, lineStart));
        while (this.#current < this.#his.length && k > this.#his[this.#current]!) this.#current++;
        if (this.#current >= this.#his.length) {
          throw new StowageError('EDB', `${this.#source}: table ${JSON.stringify(this.#table)} gave a row with key ${k}, above the range asked for.`, { details: { source: this.#source, table: this.#table } });
        }
        segStart = lineStart;
      }
      const lo = this.#los?.[this.#current];
      if (lo !== undefined && k < lo) {
        // Between two ranges: in none of them.
        if (lineStart > segStart) await this.#sink(this.#current, complete.subarray(segStart, lineStart));
        segStart = nl + 1;
        this.skipped++;
      }
      lineStart = nl + 1;
    }
    if (complete.length > segStart) await this.#sink(this.#current, complete.subarray(segStart));
  }

  /** Ends the stream; EDB if it stopped in the middle of a row. */
  end(): void {
    if (this.#carry !== undefined && this.#carry.length > 0) {
      throw new StowageError('EDB', `${this.#source}: the rows of ${JSON.stringify(this.#table)} end in the middle of a row (no final LF).`, { details: { source: this.#source, table: this.#table } });
    }
  }

  #keyOf(line: Buffer): bigint {
    return parseKeyField(fieldOf(line, this.#keyIndex), this.#source, this.#table);
  }
}
