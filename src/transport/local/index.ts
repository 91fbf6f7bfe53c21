/**
 * `stowage/transport/local`: the local file system as a Transport.
 *
 * @module
 */
export { LocalTransport } from './local-transport.js';
