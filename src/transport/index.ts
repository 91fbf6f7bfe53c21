/**
 * `stowage/transport`: the Transport contract and its local implementation.
 * SshTransport lives in `stowage/transport/ssh` so that scripts which only
 * copy locally never load ssh2.
 *
 * @module
 */
export type {
  Transport,
  TransportStat,
  TransportEntry,
  TransportFileType,
  TransportCapabilities,
  ReplayableSource,
  PutSource,
  PutOptions,
  GetOptions,
  FreeSpace,
  OpOptions,
} from './transport.js';
export { toReplayable, posixJoin } from './put-source.js';
export { LocalTransport } from './local/local-transport.js';
