/**
 * SftpReadStream (ssh-transport.ts) against a server that answers at most
 * 64 KiB per READ, as OpenSSH's sftp-server did before 8.6 (`u_char
 * buf[64*1024]` in process_read, and no limits@openssh.com), which the
 * harness's OpenSSH 9 cannot be made to do: the file arrives whole and in
 * order, and after the first short answer the requests shrink to what the
 * server answers, with more of them in flight.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { SftpReadStream, type ReadOps } from '../../../src/transport/ssh/ssh-transport.js';

/** ReadOps over `data` answering at most `cap` bytes per read (or `capAt(position)`), recording each request and the most in flight. */
function cappedOps(data: Buffer, cap: number, maxRead: number, capAt: (position: number) => number = () => cap): { ops: ReadOps; lens: number[]; peak: () => number } {
  const lens: number[] = [];
  let inFlight = 0;
  let peak = 0;
  const session = { maxRead } as never;
  const ops: ReadOps = {
    open: async () => ({ s: session, handle: Buffer.from([1]), size: data.length }),
    read: (_s, _h, buf, len, position, cb) => {
      lens.push(len);
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      setImmediate(() => {
        inFlight -= 1;
        const n = Math.max(0, Math.min(len, capAt(position), data.length - position));
        data.copy(buf, 0, position, position + n);
        cb(undefined, n);
      });
    },
    close: () => {},
    mapError: (err) => err,
    requests: undefined,
    retries: 0,
    retryDelayMs: 10,
  };
  return { ops, lens, peak: () => peak };
}

async function readAll(stream: SftpReadStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('SftpReadStream', () => {
  it('asks a server that answers 64 KiB per read for 64 KiB, with more requests in flight', async () => {
    const data = randomBytes((8 << 20) + 12_345);
    const { ops, lens, peak } = cappedOps(data, 64 * 1024, 261_120);
    const got = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined));
    expect(got.equals(data)).toBe(true);
    // The first round asks for 255 KiB each; once answers come back short, 64 KiB.
    expect(lens[0]).toBe(261_120);
    const later = lens.slice(lens.length / 2);
    expect(Math.max(...later)).toBeLessThanOrEqual(64 * 1024);
    // 2 MiB in flight again: 32 requests of 64 KiB, not 8.
    expect(peak()).toBeGreaterThanOrEqual(24);
  });

  it('keeps its request size for a server that answers it whole; a short last read changes nothing', async () => {
    const data = randomBytes(3 * 261_120 + 5000);
    const { ops, lens } = cappedOps(data, 1 << 30, 261_120);
    const got = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined));
    expect(got.equals(data)).toBe(true);
    expect(lens).toEqual([261_120, 261_120, 261_120, 5000]);
  });

  it('does not shrink its requests for one short answer alone', async () => {
    const data = randomBytes(16 * 261_120);
    // Only the read at offset 3 * 261120 comes back short, with 16 KiB.
    const { ops, lens } = cappedOps(data, 1 << 30, 261_120, (position) => (position === 3 * 261_120 ? 16 * 1024 : 1 << 30));
    const got = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined));
    expect(got.equals(data)).toBe(true);
    // The rest of that request, then full requests again.
    expect(lens).toContain(261_120 - 16 * 1024);
    expect(lens.filter((n) => n === 261_120)).toHaveLength(16);
  });
});

/**
 * ReadOps whose connection drops once at `dropAt` (CONNECTION_LOST), after
 * which the file opened again is `after` (with `afterMtime`): the first open
 * gives `before`, modified at second 1000.
 */
function droppingOps(before: Buffer, after: Buffer, afterMtime: number, dropAt: number): { ops: ReadOps; opens: () => number } {
  let opens = 0;
  const session = { maxRead: 64 * 1024 } as never;
  const ops: ReadOps = {
    open: async () => {
      opens += 1;
      const file = opens === 1 ? before : after;
      return { s: session, handle: Buffer.from([opens]), size: file.length, mtime: opens === 1 ? 1000 : afterMtime };
    },
    read: (_s, handle, buf, len, position, cb) => {
      setImmediate(() => {
        if (handle[0] === 1 && position >= dropAt) {
          cb(Object.assign(new Error('connection lost'), { code: 7 }), 0);
          return;
        }
        const file = handle[0] === 1 ? before : after;
        const n = Math.max(0, Math.min(len, file.length - position));
        file.copy(buf, 0, position, position + n);
        cb(undefined, n);
      });
    },
    close: () => {},
    mapError: (err) => err,
    requests: 4,
    retries: 2,
    retryDelayMs: 1,
  };
  return { ops, opens: () => opens };
}

describe('SftpReadStream resuming after a dropped connection', () => {
  const size = 4 * 1024 * 1024;
  const dropAt = 1024 * 1024;

  it('goes on from the next undelivered byte when the reopened file is the same', async () => {
    const data = randomBytes(size);
    const { ops, opens } = droppingOps(data, data, 1000, dropAt);
    const got = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined));
    expect(opens()).toBe(2);
    expect(got.equals(data)).toBe(true);
  });

  it('errors with a retryable EIO, not a mix of two files, when the file was replaced by one of the same size and mtime', async () => {
    const v1 = randomBytes(size);
    const v2 = randomBytes(size);
    const { ops, opens } = droppingOps(v1, v2, 1000, dropAt);
    const err = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(opens()).toBe(2);
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('EIO');
    expect((err as StowageError).retryable).toBe(true);
    expect((err as StowageError).message).toMatch(/\/far\/file: it was replaced or changed while it was read/);
  });

  it('errors with a retryable EIO when the reopened file has another size or mtime', async () => {
    const v1 = randomBytes(size);
    for (const [after, mtime] of [
      [Buffer.concat([v1, randomBytes(10)]), 1000],
      [v1, 1001],
    ] as const) {
      const { ops } = droppingOps(v1, after, mtime, dropAt);
      const err = await readAll(new SftpReadStream(ops, '/far/file', 0, undefined)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StowageError);
      expect((err as StowageError).code).toBe('EIO');
      expect((err as StowageError).details['reason']).toBe('far file changed');
    }
  });
});
