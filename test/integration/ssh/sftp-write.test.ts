/**
 * SFTP WRITE requests without ssh2's intermediate copy (sftp-write.ts),
 * against a real OpenSSH sshd: the bytes land where they should whatever
 * the request size, offset or order, requests beyond the channel window
 * fall back to ssh2's own queue without reordering the stream, offsets
 * above 4 GiB keep their high bits, a refused write reports its error and
 * leaves the session usable, and unexpected internals fall back.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { Client, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeNoCopy } from '../../../src/transport/ssh/sftp-write.js';
import { startSshd, type SshdServer } from '../../support/index.js';

let server: SshdServer;

beforeAll(async () => {
  server = await startSshd();
});
afterAll(async () => {
  await server?.stop();
});

async function withSftp(fn: (sftp: SFTPWrapper) => Promise<void>): Promise<void> {
  const c = await new Promise<Client>((resolve, reject) => {
    const client = new Client();
    client.once('ready', () => resolve(client));
    client.once('error', reject);
    client.connect({ ...server.connectConfig, algorithms: { cipher: ['aes128-gcm@openssh.com'] } });
  });
  try {
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
    await fn(sftp);
    sftp.end();
  } finally {
    c.end();
  }
}

const call = <T = void>(fn: (cb: (err?: Error | null, v?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v as T))));

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** Counts the calls `sftp.write` gets (the fall-back path) while `fn` runs. */
async function countingFallbacks(sftp: SFTPWrapper, fn: () => Promise<void>): Promise<number> {
  let n = 0;
  const own = sftp.write;
  Object.defineProperty(sftp, 'write', {
    configurable: true,
    writable: true,
    value: function (this: SFTPWrapper, ...args: Parameters<SFTPWrapper['write']>) {
      n += 1;
      return own.apply(this, args);
    },
  });
  try {
    await fn();
  } finally {
    delete (sftp as unknown as { write?: unknown }).write;
  }
  return n;
}

describe('writeNoCopy', () => {
  it('writes every request size at its offset, many at once past the channel window, in order', async () => {
    await withSftp(async (sftp) => {
      const path = `${server.root}/nocopy-sizes.bin`;
      const max = (sftp as unknown as { _maxWriteLen: number })._maxWriteLen;
      // Sizes around the 32 KiB channel packet and up to the largest request,
      // 8 MiB in all: four times OpenSSH's 2 MiB channel window, all issued
      // before the first reply, so later requests meet a full window.
      const sizes = [1, 100, 32_767, 32_768, 32_769, 65_543, 131_072, max];
      const plan: { off: number; len: number }[] = [];
      let total = 0;
      while (total < 8 << 20) {
        const len = Math.min(sizes[plan.length % sizes.length]!, max);
        plan.push({ off: total, len });
        total += len;
      }
      const data = randomBytes(total);
      const handle = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
      const fallbacks = await countingFallbacks(sftp, async () => {
        await Promise.all(plan.map(({ off, len }) => new Promise<void>((resolve, reject) => writeNoCopy(sftp, handle, data, off, len, off, (err) => (err ? reject(err) : resolve())))));
      });
      await call((cb) => sftp.close(handle, cb));
      expect(md5(await readFile(path))).toBe(md5(data));
      // Both paths ran: some requests went straight out, some queued in ssh2.
      expect(fallbacks).toBeGreaterThan(0);
      expect(fallbacks).toBeLessThan(plan.length);
      await rm(path);
    });
  });

  it('takes its bytes from buf[off, off + len) and the buffer may be reused once it returns', async () => {
    await withSftp(async (sftp) => {
      const path = `${server.root}/nocopy-reuse.bin`;
      // Pieces of 70,001 bytes, then one longer than a request (cut in two).
      const max = (sftp as unknown as { _maxWriteLen: number })._maxWriteLen;
      const lengths = [70_001, 70_001, 70_001, 70_001, max + 4096];
      const expected = randomBytes(lengths.reduce((a, b) => a + b));
      const scratch = Buffer.alloc(max + 10_000);
      const handle = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
      const pending: Promise<void>[] = [];
      let at = 0;
      for (const len of lengths) {
        expected.copy(scratch, 500, at, at + len);
        pending.push(new Promise<void>((resolve, reject) => writeNoCopy(sftp, handle, scratch, 500, len, at, (err) => (err ? reject(err) : resolve()))));
        scratch.fill(0xee); // overwritten before any reply: must not matter
        at += len;
      }
      await Promise.all(pending);
      await call((cb) => sftp.close(handle, cb));
      expect((await readFile(path)).equals(expected)).toBe(true);
      await rm(path);
    });
  });

  it('keeps the high bits of an offset above 4 GiB', async () => {
    await withSftp(async (sftp) => {
      const path = `${server.root}/nocopy-far.bin`;
      const at = 5 * 2 ** 30 + 12_345;
      const data = Buffer.from('far away, past 4 GiB');
      const handle = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
      await new Promise<void>((resolve, reject) => writeNoCopy(sftp, handle, data, 0, data.length, at, (err) => (err ? reject(err) : resolve())));
      await call((cb) => sftp.close(handle, cb));
      expect((await stat(path)).size).toBe(at + data.length);
      const h = await open(path, 'r');
      const back = Buffer.alloc(data.length);
      await h.read(back, 0, back.length, at);
      await h.close();
      expect(back.equals(data)).toBe(true);
      await rm(path);
    });
  });

  it('reports a refused write and leaves the session usable', async () => {
    await withSftp(async (sftp) => {
      const path = `${server.root}/nocopy-ro.bin`;
      const original = randomBytes(1000);
      await call((cb) => sftp.writeFile(path, original, (err) => cb(err, undefined)));
      const handle = await call<Buffer>((cb) => sftp.open(path, 'r', cb));
      const err = await new Promise<Error | undefined>((resolve) => writeNoCopy(sftp, handle, randomBytes(50_000), 0, 50_000, 0, resolve));
      expect(err).toBeInstanceOf(Error);
      await call((cb) => sftp.close(handle, cb));
      expect((await readFile(path)).equals(original)).toBe(true);
      // The stream is still in step: a next write and a stat get their replies.
      const w = await call<Buffer>((cb) => sftp.open(path, 'r+', cb));
      const more = randomBytes(40_000);
      await new Promise<void>((resolve, reject) => writeNoCopy(sftp, w, more, 0, more.length, 1000, (e) => (e ? reject(e) : resolve())));
      await call((cb) => sftp.close(w, cb));
      expect((await call<{ size: number }>((cb) => sftp.stat(path, cb))).size).toBe(41_000);
      await rm(path);
    });
  });
});

describe('writeNoCopy falls back to sftp.write', () => {
  const fake = (extra: Record<string, unknown>): { calls: unknown[][]; sftp: SFTPWrapper } => {
    const calls: unknown[][] = [];
    const sftp = {
      ...extra,
      write: (...args: unknown[]) => {
        calls.push(args);
        (args[5] as (err?: Error) => void)();
      },
    } as unknown as SFTPWrapper;
    return { calls, sftp };
  };
  const complete = {
    server: false,
    _writeReqid: 0,
    _requests: {},
    _buffer: [],
    _maxWriteLen: 1 << 20,
    _protocol: { channelData: () => expect.unreachable('channelData called') },
    outgoing: { id: 0, state: 'open', window: 1 << 30, packetSize: 32_768 },
  };

  it.each([
    ['no ssh2 internals at all', {}],
    ['no protocol object', { ...complete, _protocol: undefined }],
    ['a debug hook (ssh2 would log each request)', { ...complete, _debug: () => {} }],
    ['a closed channel', { ...complete, outgoing: { ...complete.outgoing, state: 'closed' } }],
    ['a window too small for the request', { ...complete, outgoing: { ...complete.outgoing, window: 50 } }],
    ['data already queued behind the window', { ...complete, _buffer: [Buffer.alloc(1)] }],
    ['a channel packet smaller than the request header', { ...complete, outgoing: { ...complete.outgoing, packetSize: 20 } }],
  ])('with %s', (_name, internals) => {
    const { calls, sftp } = fake(internals);
    const handle = Buffer.from([1, 2, 3, 4]);
    const buf = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
    let done = 0;
    writeNoCopy(sftp, handle, buf, 8, 40, 1234, (err) => {
      expect(err).toBeUndefined();
      done += 1;
    });
    expect(calls).toHaveLength(1);
    const [h, given, off, len, position] = calls[0]! as [Buffer, Buffer, number, number, number];
    expect([h, len, position]).toEqual([handle, 40, 1234]);
    expect(given.subarray(off, off + len).equals(buf.subarray(8, 48))).toBe(true);
    expect(done).toBe(1);
  });

  it('hands ssh2 a copy when it cannot tell the request size, so the buffer is free on return', () => {
    const { calls, sftp } = fake({});
    const buf = Buffer.from('0123456789abcdef');
    writeNoCopy(sftp, Buffer.from([1]), buf, 4, 6, 0, () => {});
    const [, given, off, len] = calls[0]! as [Buffer, Buffer, number, number];
    expect(given).not.toBe(buf);
    expect(given.subarray(off, off + len).toString()).toBe('456789');
    buf.fill(0);
    expect(given.subarray(off, off + len).toString()).toBe('456789');
  });

  it('cuts a write longer than the server takes into requests of its size, and calls back once', () => {
    // A window too small for any of them: each piece goes to sftp.write whole.
    const { calls, sftp } = fake({ ...complete, _maxWriteLen: 16, outgoing: { ...complete.outgoing, window: 10 } });
    const buf = Buffer.alloc(100);
    const outcomes: (Error | undefined)[] = [];
    writeNoCopy(sftp, Buffer.from([1, 2, 3, 4]), buf, 10, 40, 5000, (err) => outcomes.push(err));
    expect(calls.map((c) => c.slice(2, 5))).toEqual([
      [10, 16, 5000],
      [26, 16, 5016],
      [42, 8, 5032],
    ]);
    expect(outcomes).toEqual([undefined]);
  });
});
