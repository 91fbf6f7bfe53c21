/**
 * `stowage/db`: the TableSource contract shared by every database engine,
 * the bulk text row format and the range digest. The engines themselves
 * are in their own subpaths (`stowage/db/sqlite`, `stowage/db/mysql`,
 * `stowage/db/postgres`), so importing the contract loads no driver.
 *
 * @module
 */
export * from './table-source.js';
