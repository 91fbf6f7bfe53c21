/**
 * Cheaper random padding for ssh2's AES-GCM packets.
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
 * It relies on ssh2 internals (`client._protocol._cipher`, the
 * `AESGCMCipherBinding` class), so it checks their shape and leaves the
 * connection as it is when they differ: other ciphers, or a future ssh2,
 * just keep ssh2's own padding. A rekey installs a new cipher; the
 * protocol's `_cipher` slot is watched so that the new one gets the same
 * `allocPacket`.
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

/**
 * ssh2 1.x's `AESGCMCipherBinding.prototype.allocPacket`, with the padding
 * from the pool: length, padding length, room for the payload, 4-19 bytes
 * of padding to a multiple of 16 (the length field excluded), 16 for the tag.
 */
function allocGcmPacket(payloadLen: number): Buffer {
  let pktLen = 4 + 1 + payloadLen;
  let padLen = 16 - ((pktLen - 4) & 15);
  if (padLen < 4) padLen += 16;
  pktLen += padLen;
  const packet = Buffer.allocUnsafe(pktLen + 16);
  packet.writeUInt32BE(pktLen - 4, 0);
  packet[4] = padLen;
  randomInto(packet, 5 + payloadLen, padLen);
  return packet;
}

/** Whether `cipher` is ssh2's native AES-GCM cipher as this module knows it. */
function isGcmBinding(cipher: unknown): cipher is { allocPacket: (n: number) => Buffer; encrypt: unknown } {
  if (cipher === null || typeof cipher !== 'object') return false;
  const c = cipher as { constructor?: { name?: unknown }; allocPacket?: unknown; encrypt?: unknown };
  return c.constructor?.name === 'AESGCMCipherBinding' && typeof c.allocPacket === 'function' && c.allocPacket.length === 1 && typeof c.encrypt === 'function';
}

function patch(cipher: unknown): void {
  if (isGcmBinding(cipher)) Object.defineProperty(cipher, 'allocPacket', { value: allocGcmPacket, configurable: true, writable: true });
}

/**
 * Gives a connected client's AES-GCM cipher (and the ones later rekeys
 * install) pooled padding; see the module documentation. Does nothing when
 * ssh2's internals are not as expected. Returns whether it took effect on
 * the current cipher.
 *
 * @param client - a connected ssh2 client
 */
export function usePooledPadding(client: Client): boolean {
  const proto = (client as unknown as { _protocol?: unknown })._protocol;
  if (proto === null || typeof proto !== 'object') return false;
  const desc = Object.getOwnPropertyDescriptor(proto, '_cipher');
  if (desc === undefined || !('value' in desc) || desc.writable !== true) return false;
  let current: unknown = desc.value;
  patch(current);
  Object.defineProperty(proto, '_cipher', {
    configurable: true,
    enumerable: desc.enumerable ?? true,
    get: () => current,
    set: (v: unknown) => {
      current = v;
      patch(v);
    },
  });
  return isGcmBinding(current) && (current as { allocPacket: unknown }).allocPacket === allocGcmPacket;
}

/** For tests: the allocPacket this module installs. */
export const pooledAllocPacket: (payloadLen: number) => Buffer = allocGcmPacket;
