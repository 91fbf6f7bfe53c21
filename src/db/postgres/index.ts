/**
 * `stowage/db/postgres`: the TableSource of PostgreSQL databases (pg, pg-copy-streams).
 *
 * @module
 */
export { PostgresSource } from './postgres-source.js';
export type { PostgresConnectionConfig, PostgresSourceOptions } from './postgres-source.js';
export { quotePgIdent, pgError } from './postgres-reader.js';
