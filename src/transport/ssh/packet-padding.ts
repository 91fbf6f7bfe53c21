/**
 * Cheaper random padding, and reused buffers, for ssh2's AES-GCM packets.
 *
 * ssh2 fills the 4-19 padding bytes of every outgoing packet with its own
 * `crypto.randomFillSync` call. Each call costs ~10 µs of fixed overhead,
 * and a transfer sends a packet per 32 KiB: 32,768 calls per GiB. Profiled
 * on `sync()` of a 1 GiB tree (main thread ~87% busy), that was 0.38 s of
 * the main thread per GiB; on a single large `put`, 0.23 s.
 *
 * {@link usePooledPadding} gives the connection's AES-GCM cipher an
 * `allocPacket` that lays packets out exactly as ssh2 1.x does, but takes the
 * padding from a pool of CSPRNG bytes filled by one `randomFillSync` call
 * per 64 KiB. Every byte still comes from the CSPRNG and is used once; the
 * padding is encrypted and authenticated like the rest of the packet.
 *
 * The same `allocPacket` also takes the buffers of large packets (8 KiB of
 * payload and more: the 32 KiB CHANNEL_DATA packets of a transfer) from a
 * per-connection pool instead of allocating each. ssh2 encrypts a packet in
 * place and hands it to `sock.write` without keeping it; the connection's
 * socket gets a `write` that, for a pooled buffer only, passes a callback
 * giving the buffer back once the socket has written it. So no buffer is
 * reused while the kernel may still read it, and a write that never
 * completes just keeps its buffer. Before, every GiB sent allocated a GiB
 * of 32 KiB buffers, which V8 paid for in mark-compacts (0.3 cpu-s per GiB
 * on the main thread, measured on a 1 GiB put).
 *
 * It relies on ssh2 internals (`client._protocol._cipher`, the
 * `AESGCMCipherBinding` class, `client._sock`), so it checks their shape
 * and leaves the connection as it is when they differ: other ciphers, or a
 * future ssh2, just keep ssh2's own padding and buffers. A rekey installs a
 * new cipher; the protocol's `_cipher` slot is watched so that the new one
 * gets the same `allocPacket`.
 *
 * @module
 */
import { randomFillSync } from 'node:crypto';
import type { Client } from 'ssh2';

/** Bytes of CSPRNG output fetched at once. */
const POOL_BYTES = 64 * 1024;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
/** Next unused byte of `pool`; `POOL_BYTES` means empty. */
let poolAt = POOL_BYTES;

/** Copies `n` never-used CSPRNG bytes into `buf` at `at`. */
function randomInto(buf: Buffer, at: number, n: number): void {
  if (poolAt + n > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  pool.copy(buf, at, poolAt, poolAt + n);
  poolAt += n;
}

/** Packets with at least this many payload bytes come from the connection's buffer pool. */
const POOL_MIN_PAYLOAD = 8 * 1024;
/**
 * Capacity of a pooled packet buffer: the largest packet ssh2 sends to
 * OpenSSH (a 32 KiB CHANNEL_DATA: 9 bytes of header, 4 of length, 1 of
 * padding length, up to 19 of padding, 16 of tag) with room to spare.
 */
const SLOT_BYTES = 32 * 1024 + 128;
/** Free buffers a connection keeps for reuse (4 MiB: twice OpenSSH's 2 MiB window). */
const POOL_MAX_FREE = 128;

/**
 * A connection's packet buffers: taken by `allocPacket`, given back once the
 * socket has written them (the write's callback), and reused. A buffer
 * whose write never completes is simply not given back.
 */
class PacketPool {
  readonly #free: ArrayBuffer[] = [];
  /** Buffers lent out and not yet given back. */
  readonly #lent = new WeakSet<ArrayBuffer>();

  /** A buffer of exactly `n` bytes, from the pool when it fits a slot. */
  take(n: number): Buffer {
    if (n > SLOT_BYTES) return Buffer.allocUnsafe(n);
    const ab = this.#free.pop() ?? new ArrayBuffer(SLOT_BYTES);
    this.#lent.add(ab);
    return Buffer.from(ab, 0, n);
  }

  /** Whether `chunk` is a buffer of this pool that is lent out. */
  owns(chunk: unknown): chunk is Buffer {
    return Buffer.isBuffer(chunk) && chunk.byteOffset === 0 && this.#lent.has(chunk.buffer as ArrayBuffer);
  }

  /** Gives `chunk`'s buffer back (once; later calls do nothing). */
  give(chunk: Buffer): void {
    const ab = chunk.buffer as ArrayBuffer;
    if (!this.#lent.delete(ab)) return;
    if (this.#free.length < POOL_MAX_FREE) this.#free.push(ab);
  }
}

/**
 * ssh2 1.x's `AESGCMCipherBinding.prototype.allocPacket`, with the padding
 * from the pool: length, padding length, room for the payload, 4-19 bytes
 * of padding to a multiple of 16 (the length field excluded), 16 for the tag.
 * Large packets come from `packets` when given.
 */
function allocGcmPacketFrom(packets: PacketPool | undefined, payloadLen: number): Buffer {
  let pktLen = 4 + 1 + payloadLen;
  let padLen = 16 - ((pktLen - 4) & 15);
  if (padLen < 4) padLen += 16;
  pktLen += padLen;
  const packet = packets !== undefined && payloadLen >= POOL_MIN_PAYLOAD ? packets.take(pktLen + 16) : Buffer.allocUnsafe(pktLen + 16);
  packet.writeUInt32BE(pktLen - 4, 0);
  packet[4] = padLen;
  randomInto(packet, 5 + payloadLen, padLen);
  return packet;
}

/** Allocators this module installed, to recognise them on a cipher. */
const installed = new WeakSet<(n: number) => Buffer>();

/** Whether `cipher` is ssh2's native AES-GCM cipher as this module knows it. */
function isGcmBinding(cipher: unknown): cipher is { allocPacket: (n: number) => Buffer; encrypt: unknown } {
  if (cipher === null || typeof cipher !== 'object') return false;
  const c = cipher as { constructor?: { name?: unknown }; allocPacket?: unknown; encrypt?: unknown };
  return c.constructor?.name === 'AESGCMCipherBinding' && typeof c.allocPacket === 'function' && (c.allocPacket.length === 1 || installed.has(c.allocPacket as (n: number) => Buffer)) && typeof c.encrypt === 'function';
}

function patch(cipher: unknown, alloc: (n: number) => Buffer): void {
  if (isGcmBinding(cipher)) Object.defineProperty(cipher, 'allocPacket', { value: alloc, configurable: true, writable: true });
}

/**
 * Makes `sock.write` give pooled packet buffers back to `packets` once
 * written. ssh2 writes each encrypted packet with `sock.write(packet)` and
 * keeps no reference to it; the socket holds it until the write completes.
 * Returns false (and changes nothing) when `sock` has no own-able `write`.
 */
function returnWrittenPackets(sock: unknown, packets: PacketPool): boolean {
  if (sock === null || typeof sock !== 'object') return false;
  const s = sock as { write?: unknown };
  if (typeof s.write !== 'function' || Object.prototype.hasOwnProperty.call(s, 'write')) return false;
  const write = s.write as (this: unknown, ...args: unknown[]) => boolean;
  Object.defineProperty(s, 'write', {
    configurable: true,
    writable: true,
    value: function writePooled(this: unknown, ...args: unknown[]): boolean {
      const chunk = args[0];
      if (args.length === 1 && packets.owns(chunk)) return write.call(this, chunk, () => packets.give(chunk));
      return write.apply(this, args);
    },
  });
  return true;
}

/**
 * Gives a connected client's AES-GCM cipher (and the ones later rekeys
 * install) pooled padding and, when ssh2 writes to a socket this module can
 * watch, pooled packet buffers; see the module documentation. Does nothing
 * when ssh2's internals are not as expected. Returns whether it took effect
 * on the current cipher.
 *
 * @param client - a connected ssh2 client
 */
export function usePooledPadding(client: Client): boolean {
  const proto = (client as unknown as { _protocol?: unknown })._protocol;
  if (proto === null || typeof proto !== 'object') return false;
  const desc = Object.getOwnPropertyDescriptor(proto, '_cipher');
  if (desc === undefined || !('value' in desc) || desc.writable !== true) return false;
  const packets = new PacketPool();
  const pooled = returnWrittenPackets((client as unknown as { _sock?: unknown })._sock, packets);
  const alloc = (payloadLen: number): Buffer => allocGcmPacketFrom(pooled ? packets : undefined, payloadLen);
  installed.add(alloc);
  let current: unknown = desc.value;
  patch(current, alloc);
  Object.defineProperty(proto, '_cipher', {
    configurable: true,
    enumerable: desc.enumerable ?? true,
    get: () => current,
    set: (v: unknown) => {
      current = v;
      patch(v, alloc);
    },
  });
  return isGcmBinding(current) && (current as { allocPacket: unknown }).allocPacket === alloc;
}

/** For tests: whether `fn` is an `allocPacket` this module installed. */
export function isPooledAllocPacket(fn: unknown): boolean {
  return typeof fn === 'function' && installed.has(fn as (n: number) => Buffer);
}

/** For tests: this module's AES-GCM `allocPacket` without a packet pool. */
export const pooledAllocPacket: (payloadLen: number) => Buffer = (n) => allocGcmPacketFrom(undefined, n);
