-- Table sources: import from any relation into a table, in batches, exactly once.
-- (Foreign tables, crashes and the scheduler are tested in test/integration/table_sources.sh.)
\set SHOW_CONTEXT never
SET timezone = 'UTC';
CREATE TABLE pos_tx (id integer, store integer, amount numeric, sold_at timestamptz);
CREATE TABLE imported_tx (id integer PRIMARY KEY, store integer NOT NULL, amount numeric CHECK (amount >= 0),
                    sold_at timestamptz);
INSERT INTO pos_tx VALUES
    (1, 1, 10, '2026-11-01 10:00'), (2, 1, 20, '2026-11-01 11:00'), (3, 2, 30, '2026-11-01 11:00'),
    (4, 2, -5, '2026-11-01 12:00'),  -- breaks the CHECK: a dead letter
    (5, NULL, 50, '2026-11-01 12:00'),  -- rejected by the filter
    (6, 3, 60, '2026-11-01 12:00'), (7, 3, 70, '2026-11-02 09:00');

-- append by an increasing column; batches of 2 never split rows that share a watermark value
SELECT pipeline.create_table_source('pos_import', 'pos_tx', 'imported_tx', 'append',
    '{"watermark_column": "sold_at", "batch_size": 2, "filter": "src.store IS NOT NULL"}') > 0 AS created;
SELECT name, source, target, mode, watermark_column, watermark_type, columns, expressions, filter, batch_size, watermark
  FROM pipeline.table_sources;
CALL pipeline.run_table_source('pos_import');
SELECT * FROM imported_tx ORDER BY id;
SELECT source_name, "row"->>'id' AS id, error, sqlstate FROM pipeline.table_dead_letters ORDER BY id;
SELECT source, mode, watermark, last_state, batches, rows_imported, rows_rejected, last_error
  FROM pipeline.table_source_status;
-- a second run imports only what is new
INSERT INTO pos_tx VALUES (8, 1, 80, '2026-11-02 10:00');
CALL pipeline.run_table_source('pos_import');
SELECT count(*), sum(amount) FROM imported_tx;
SELECT watermark_from, watermark_to, batches, rows_imported, state FROM pipeline.table_source_runs ORDER BY id;

-- an aggregate over the target follows the imported rows
SELECT pipeline.create_aggregate('tx_per_store', $$
    SELECT store, count(*) AS n, sum(amount) AS total FROM imported_tx GROUP BY store$$) IS NOT NULL AS created;
INSERT INTO pos_tx VALUES (9, 1, 90, '2026-11-03 10:00');
CALL pipeline.run_table_source('pos_import');
SELECT * FROM tx_per_store ORDER BY store;

-- upsert by a last-modified column and a key: changed rows replace theirs
CREATE TABLE products (sku text, name text, price numeric, updated_at timestamptz);
CREATE TABLE product_dim (sku text PRIMARY KEY, name text, price numeric, updated_at timestamptz);
INSERT INTO products VALUES ('a', 'apple', 1, '2026-11-01'), ('b', 'bread', 2, '2026-11-01');
SELECT pipeline.create_table_source('products', 'products', 'product_dim', 'upsert',
    '{"watermark_column": "updated_at", "key": ["sku"], "lookback": "1 day",
      "columns": {"sku": "src.sku", "name": "initcap(src.name)", "price": "src.price", "updated_at": "src.updated_at"}}') > 0 AS created;
CALL pipeline.run_table_source('products');
UPDATE products SET price = 3, updated_at = '2026-11-02' WHERE sku = 'b';
INSERT INTO products VALUES ('c', 'cheese', 5, '2026-11-02');
CALL pipeline.run_table_source('products');
SELECT * FROM product_dim ORDER BY sku;
-- a change committed late, dated before the watermark, is found by the lookback
-- even when the lookback window holds more rows than a batch
CREATE TABLE product_copy (LIKE product_dim INCLUDING ALL);
SELECT pipeline.create_table_source('products_small', 'products', 'product_copy', 'upsert',
    '{"watermark_column": "updated_at", "key": ["sku"], "lookback": "3 days", "batch_size": 1}') > 0 AS created;
CALL pipeline.run_table_source('products_small');
INSERT INTO products VALUES ('z', 'zucchini', 9, '2026-11-01 12:00');
CALL pipeline.run_table_source('products_small');
SELECT sku, price FROM product_copy ORDER BY sku;
SELECT watermark FROM pipeline.table_sources WHERE name = 'products_small';

-- full: the target's rows are replaced in one transaction
CREATE TABLE store_list (store integer);
CREATE TABLE store_copy (store integer);
INSERT INTO store_list VALUES (1), (2);
SELECT pipeline.create_table_source('stores', 'store_list', 'store_copy', 'full') > 0 AS created;
CALL pipeline.run_table_source('stores');
DELETE FROM store_list WHERE store = 1;
INSERT INTO store_list VALUES (3);
CALL pipeline.run_table_source('stores');
SELECT * FROM store_copy ORDER BY store;

-- reset: import everything again from a watermark
SELECT pipeline.reset_table_source('pos_import', '2026-11-02 09:30+00');
SELECT watermark FROM pipeline.table_sources WHERE name = 'pos_import';
SELECT pipeline.reset_table_source('pos_import', 'yesterday-ish');
SELECT pipeline.reset_table_source('stores', '2026-11-01');

-- bad arguments
SELECT pipeline.create_table_source('', 'pos_tx', 'imported_tx');
SELECT pipeline.create_table_source('pos_import', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'merge');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "nope"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "key": ["id"]}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'full', '{"watermark_column": "id"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'upsert', '{"watermark_column": "sold_at"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'upsert', '{"watermark_column": "sold_at", "key": ["store"]}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'upsert', '{"watermark_column": "sold_at", "key": ["id"], "lookback": "a bit"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "columns": {"nope": "src.id"}}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "columns": {"id": "src.nope"}}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "filter": 1}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "filter": "true; DROP TABLE pos_tx"}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "batchsize": 1}');
SELECT pipeline.create_table_source('x', 'pos_tx', 'pos_tx', 'append', '{"watermark_column": "id"}');
CREATE VIEW pos_view AS SELECT * FROM pos_tx;
SELECT pipeline.create_table_source('x', 'pos_tx', 'pos_view', 'full');
CREATE TABLE unrelated (z integer);
SELECT pipeline.create_table_source('x', 'pos_tx', 'unrelated', 'full');
CALL pipeline.run_table_source('nope');
BEGIN;
CALL pipeline.run_table_source('stores');
ROLLBACK;

-- a postgres_fdw source reads 10000 rows per round trip (postgres_fdw's default
-- is 100) unless its table or server sets fetch_size, through a temporary copy
-- of the foreign table's definition that keeps the remote names; the option
-- fetch_size sets it (kept in the catalog; NULL: decided at each batch), and
-- is refused for other relations
CREATE EXTENSION postgres_fdw;
CREATE SERVER ts_remote FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'nowhere');
CREATE SCHEMA ts_local;
CREATE FOREIGN TABLE ts_local.remote_tx (id integer OPTIONS (column_name 'tx_id'), store integer, amount numeric,
                                         sold_at timestamptz) SERVER ts_remote OPTIONS (use_remote_estimate 'false');
CREATE FOREIGN TABLE ts_local.remote_tx_tuned (id integer) SERVER ts_remote OPTIONS (fetch_size '500');
SELECT pipeline.create_table_source('remote_default', 'ts_local.remote_tx', 'imported_tx', 'append', '{"watermark_column": "id"}') > 0 AS created;
SELECT pipeline.create_table_source('remote_tuned', 'ts_local.remote_tx_tuned', 'imported_tx', 'append', '{"watermark_column": "id"}') > 0 AS created;
SELECT pipeline.create_table_source('remote_set', 'ts_local.remote_tx_tuned', 'imported_tx', 'append',
    '{"watermark_column": "id", "fetch_size": 2000}') > 0 AS created;
SELECT name, fetch_size FROM pipeline.table_sources WHERE name LIKE 'remote%' ORDER BY name;
BEGIN;
SELECT pipeline.table_source_reader('ts_local.remote_tx', 10000);
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'pg_temp.pipeline_table_source_fetch'::regclass;
SELECT attname, format_type(atttypid, atttypmod), attfdwoptions FROM pg_attribute
 WHERE attrelid = 'pg_temp.pipeline_table_source_fetch'::regclass AND attnum > 0 ORDER BY attnum;
ROLLBACK;
-- without the option, each batch decides: 10000 unless the table or its server sets fetch_size
BEGIN;
SELECT pipeline.table_source_reader('ts_local.remote_tx', NULL);
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'pg_temp.pipeline_table_source_fetch'::regclass;
ROLLBACK;
SELECT pipeline.table_source_reader('ts_local.remote_tx_tuned', NULL) IS NULL AS tuned_table_read_as_is;
ALTER SERVER ts_remote OPTIONS (ADD fetch_size '50');
SELECT pipeline.table_source_reader('ts_local.remote_tx', NULL) IS NULL AS tuned_server_read_as_is;
ALTER SERVER ts_remote OPTIONS (DROP fetch_size);
SELECT pipeline.table_source_reader('pos_tx', NULL) IS NULL AS local_table_read_as_is;
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id", "fetch_size": 1000}');
SELECT pipeline.create_table_source('x', 'ts_local.remote_tx', 'imported_tx', 'append', '{"watermark_column": "id", "fetch_size": 0}');
SELECT pipeline.create_table_source('x', 'ts_local.remote_tx', 'imported_tx', 'append', '{"watermark_column": "id", "fetch_size": "many"}');
SELECT pipeline.drop_table_source(name) FROM pipeline.table_sources WHERE name LIKE 'remote%' ORDER BY name;
DROP SCHEMA ts_local CASCADE;
DROP SERVER ts_remote;
DROP EXTENSION postgres_fdw;

-- privileges: a role without SELECT on the source or INSERT on the target cannot create one
CREATE ROLE ts_user;
GRANT SELECT ON pos_tx TO ts_user;
SET ROLE ts_user;
SELECT pipeline.create_table_source('x', 'pos_tx', 'imported_tx', 'append', '{"watermark_column": "id"}');
SELECT pipeline.create_table_source('x', 'store_list', 'pos_tx', 'full');
SELECT count(*) AS visible_sources FROM pipeline.table_sources;
CALL pipeline.run_table_source('pos_import');
RESET ROLE;

SELECT pipeline.drop_aggregate('tx_per_store');
SELECT pipeline.drop_table_source('pos_import');
SELECT pipeline.drop_table_source('products');
SELECT pipeline.drop_table_source('products_small');
SELECT pipeline.drop_table_source('stores');
SELECT count(*) AS sources, (SELECT count(*) FROM pipeline.table_source_runs) AS runs FROM pipeline.table_sources;
REVOKE SELECT ON pos_tx FROM ts_user;
DROP ROLE ts_user;
