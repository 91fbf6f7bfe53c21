/**
 * `stowage/db/mysql`: the TableSource of MariaDB and MySQL databases (mysql2).
 *
 * @module
 */
export { MysqlSource } from './mysql-source.js';
export type { MysqlConnectionConfig, MysqlSourceOptions } from './mysql-source.js';
export { quoteMysqlIdent, mysqlError } from './mysql-reader.js';
