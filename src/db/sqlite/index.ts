/**
 * `stowage/db/sqlite`: the TableSource of SQLite databases (better-sqlite3).
 *
 * @module
 */
export { SqliteSource } from './sqlite-source.js';
export type { SqliteSourceOptions } from './sqlite-source.js';
export { quoteSqliteIdent } from './sqlite-reader.js';
