/**
 * `stowage/transport/ssh`: {@link SshTransport}, the Transport over SSH
 * (ssh2: SFTP for data, exec for remote digests and free space), and the
 * known_hosts helpers it checks host keys with.
 *
 * @module
 */
export { SshTransport, RESUME_CHANNEL } from './ssh-transport.js';
export type { SshTransportOptions } from './ssh-transport.js';
export {
  parseKnownHosts,
  checkHostKey,
  knownHostsName,
  hostFieldMatches,
  fingerprintOf,
  keyTypeOfBlob,
  formatKnownHostsLine,
  preferredHostKeyAlgorithms,
  DEFAULT_HOST_KEY_ALGORITHMS,
} from './known-hosts.js';
export type { KnownHostEntry, HostKeyCheck, HostKeyStatus } from './known-hosts.js';
export { shellQuote } from './shell.js';
