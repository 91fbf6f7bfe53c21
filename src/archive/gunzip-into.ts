/**
 * Whole-file gunzip into a buffer the caller owns, so that reading many
 * small archives one after the other allocates no memory per archive.
 *
 * Why: every Buffer Node allocates is external memory to V8, and V8 (as
 * Node 20 ships it) counts the external memory allocated since its last
 * full collection against the old generation's allocation limit. In a
 * process whose young generation has grown to its full size (any process
 * that has streamed a few hundred MB through JavaScript, such as one that
 * has just dumped a table), dead buffers are freed only rarely, and every
 * few MB of new ones start another mark-compact: restoring 1M rows (100
 * archives) allocated ~200 MB for the archives' bytes and their inflated
 * tar, and ran 25-38 mark-compacts (1.75-2.0 cpu-s of the process) where
 * the same restore in a fresh process ran 3 (1.1-1.2 cpu-s).
 *
 * Node has no public call that inflates into a given buffer: this uses the
 * `writeSync` of a Gunzip stream's native handle, the call `zlib.gunzipSync`
 * itself makes, with the same flush (`Z_FINISH`), so that the bytes, the
 * multi-member handling and the CRC and length checks are Node's own.
 * Whenever that call is missing (another Node), the data is damaged or
 * followed by anything, or the output does not fit, the result is
 * `undefined` and the caller takes its public path (`zlib.gunzip`), which
 * then reports what it always has: this is a fast path, never a second
 * decoder.
 *
 * @module
 */
import { constants, createGunzip, type Gunzip } from 'node:zlib';

/** The parts of a Gunzip stream that `zlib.gunzipSync` itself uses. */
interface GunzipInternals {
  _handle?: { writeSync?: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void } | null;
  _writeState?: unknown;
  /** Public (`zlib.Gunzip#reset`), though not in every @types/node. */
  reset(): void;
}

/** One inflater kept between calls (calls are synchronous, so one is enough); dropped after an error. */
let spare: (Gunzip & GunzipInternals) | undefined;

function inflater(): (Gunzip & GunzipInternals) | undefined {
  if (spare !== undefined) return spare;
  const g = createGunzip() as Gunzip & GunzipInternals;
  // A damaged input destroys the stream, which then emits 'error': that is
  // an answer (undefined), not a crash.
  g.on('error', () => {});
  if (typeof g._handle?.writeSync !== 'function' || !(g._writeState instanceof Uint32Array)) {
    g.close();
    return undefined;
  }
  spare = g;
  return g;
}

/**
 * Inflates the whole gzip file `input` (one member or several) into `out`.
 * Returns the view of `out` that holds the result, or `undefined` when it
 * cannot be done here: the data is damaged, truncated or followed by other
 * bytes, it inflates to `out.length` bytes or more, or this Node lacks the
 * call (then use `zlib.gunzip`, which reports what is wrong, if anything).
 *
 * @param input - a complete gzip file
 * @param out - where to inflate it; its bytes before the call are lost
 * @internal
 */
export function gunzipInto(input: Uint8Array, out: Buffer): Buffer | undefined {
  const g = inflater();
  if (g === undefined || input.length === 0 || out.length === 0) return undefined;
  g._handle!.writeSync!(constants.Z_FINISH, input, 0, input.length, out, 0, out.length);
  if (g.destroyed || g._handle == null) {
    spare = undefined;
    return undefined;
  }
  const state = g._writeState as Uint32Array;
  const availOut = state[0]!;
  const availIn = state[1]!;
  g.reset();
  // Output left no room: maybe more to come. Input left over: not one whole gzip file.
  if (availOut === 0 || availIn !== 0) return undefined;
  return out.subarray(0, out.length - availOut);
}
