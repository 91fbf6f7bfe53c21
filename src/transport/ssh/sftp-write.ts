/**
 * SFTP WRITE requests sent without ssh2's copy of the data.
 *
 * ssh2's `SFTPWrapper.write` copies every request (header and data) into a
 * fresh buffer, then `Protocol.channelData` copies it again into each
 * 32 KiB channel packet. On a large put that is a second copy of every byte
 * and 1 GiB of short-lived buffers per GiB sent, which V8 pays for in
 * mark-compacts (external memory).
 *
 * {@link writeNoCopy} sends the same bytes on the wire: the request header
 * (length, type, id, handle, offset, data length) as one channel packet,
 * then the caller's data in channel packets cut straight from the caller's
 * buffer, so the only copy left is the one into the packet that is
 * encrypted. The request is registered in ssh2's own table, so the server's
 * STATUS reply reaches `cb` exactly as for `SFTPWrapper.write`.
 *
 * It relies on ssh2 1.x internals (`_protocol.channelData`, `_requests`,
 * `_writeReqid`, `outgoing`, `_buffer`), so it checks their shape and takes
 * ssh2's own `write` whenever anything is unexpected, and also when the
 * request does not fit the channel window now or earlier data is still
 * queued behind the window: the stream order and ssh2's window accounting
 * then stay ssh2's own.
 *
 * @module
 */
import type { SFTPWrapper } from 'ssh2';

/** SSH_FXP_WRITE. */
const FXP_WRITE = 6;
/** ssh2's request ids wrap at 2^32 - 1. */
const MAX_REQID = 2 ** 32 - 1;

interface Ssh2SftpInternals {
  server: boolean;
  _writeReqid: number;
  _requests: Record<number, { cb: (err?: Error) => void }>;
  _buffer: unknown[];
  _maxWriteLen: number;
  _debug?: unknown;
  _protocol: { channelData: (chan: number, data: Buffer) => void };
  outgoing: { id: number; state: string; window: number; packetSize: number };
}

/** Whether `sftp` has the ssh2 1.x internals this module relies on. */
function internalsOf(sftp: SFTPWrapper): Ssh2SftpInternals | undefined {
  const s = sftp as unknown as Partial<Ssh2SftpInternals>;
  const out = s.outgoing;
  if (
    s.server !== false ||
    typeof s._writeReqid !== 'number' ||
    s._requests === null ||
    typeof s._requests !== 'object' ||
    !Array.isArray(s._buffer) ||
    typeof s._maxWriteLen !== 'number' ||
    s._protocol === null ||
    typeof s._protocol !== 'object' ||
    typeof s._protocol.channelData !== 'function' ||
    out === null ||
    typeof out !== 'object' ||
    typeof out.id !== 'number' ||
    typeof out.window !== 'number' ||
    typeof out.packetSize !== 'number' ||
    out.packetSize <= 0
  ) {
    return undefined;
  }
  return s as Ssh2SftpInternals;
}

/**
 * Sends an SFTP WRITE of `buf[off, off + len)` at `position` of the open
 * file `handle`, like `sftp.write(handle, buf, off, len, position, cb)`,
 * but without copying the data into an intermediate request buffer (see
 * the module documentation). As with `sftp.write`, the data has been
 * copied (into encrypted packets, or into ssh2's queue) when this returns,
 * so `buf` may be reused at once. `cb` gets an error as ssh2 reports it, or
 * none once the server confirmed the write.
 *
 * Falls back to `sftp.write` (which copies the request at once) when
 * ssh2's internals are not as expected, or the channel window cannot take
 * the request whole right now, or ssh2 still queues earlier data. A write
 * longer than the server takes in one request is cut into several here,
 * each sent as above, and `cb` is called once, after the last reply (with
 * the first error, if any).
 *
 * @param sftp - an open ssh2 SFTP session (client side)
 * @param handle - the file handle from `open`
 * @param buf - the data
 * @param off - first byte of `buf` to send
 * @param len - bytes to send
 * @param position - offset in the far file
 * @param cb - called with the outcome
 */
export function writeNoCopy(sftp: SFTPWrapper, handle: Buffer, buf: Buffer, off: number, len: number, position: number, cb: (err?: Error) => void): void {
  const s = internalsOf(sftp);
  // ssh2 reports success as null; cb gets undefined.
  const done = (err?: Error | null): void => cb(err ?? undefined);
  const inBounds = len > 0 && off >= 0 && off + len <= buf.length;
  if (s === undefined || s._debug || !inBounds || !Number.isSafeInteger(position) || position < 0) {
    // ssh2 reads the part of a long write beyond its request size only when
    // the first reply comes: a copy keeps the promise that `buf` is free.
    if (inBounds) sftp.write(handle, Buffer.from(buf.subarray(off, off + len)), 0, len, position, done);
    else sftp.write(handle, buf, off, len, position, done);
    return;
  }
  const max = s._maxWriteLen;
  if (len > max) {
    let left = Math.ceil(len / max);
    let first: Error | undefined;
    const one = (err?: Error): void => {
      first ??= err;
      if (--left === 0) cb(first);
    };
    for (let at = 0; at < len; at += max) writeNoCopy(sftp, handle, buf, off + at, Math.min(max, len - at), position + at, one);
    return;
  }
  const headerLen = 4 + 1 + 4 + 4 + handle.length + 8 + 4;
  if (s.outgoing.state !== 'open' || s._buffer.length > 0 || s.outgoing.window < headerLen + len || s.outgoing.packetSize < headerLen) {
    sftp.write(handle, buf, off, len, position, done);
    return;
  }
  const reqid = (s._writeReqid = (s._writeReqid + 1) & MAX_REQID);
  const header = Buffer.allocUnsafe(headerLen);
  header.writeUInt32BE(headerLen - 4 + len, 0);
  header[4] = FXP_WRITE;
  header.writeUInt32BE(reqid, 5);
  header.writeUInt32BE(handle.length, 9);
  handle.copy(header, 13);
  let p = 13 + handle.length;
  header.writeUInt32BE(Math.floor(position / 0x1_0000_0000), p);
  header.writeUInt32BE(position % 0x1_0000_0000, p + 4);
  header.writeUInt32BE(len, p + 8);
  s._requests[reqid] = { cb: done };
  const out = s.outgoing;
  const proto = s._protocol;
  out.window -= headerLen;
  proto.channelData(out.id, header);
  const packet = out.packetSize;
  for (p = off; p < off + len; p += packet) {
    const n = Math.min(packet, off + len - p);
    out.window -= n;
    proto.channelData(out.id, buf.subarray(p, p + n));
  }
}
