-- Fraud scoring: the simulator, a scorer's tables, features, label delay, rules,
-- models as JSON, training, and the evaluation metrics on a hand-computed example.
-- (Kafka, kill -9 replay and the Handbook benchmark: test/integration/fraud.sh, bench/fraud.sh.)
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- the simulator: seeded, in time order, three fraud scenarios
SELECT count(*) AS transactions, count(DISTINCT customer_id) AS cards, count(DISTINCT terminal_id) AS terminals,
       sum(is_fraud::int) AS frauds, min(tx_time) AS first, max(tx_time) AS last
  FROM pipeline.simulate_transactions(100, 200, 30, 42);
SELECT fraud_scenario, count(*) FROM pipeline.simulate_transactions(100, 200, 30, 42) GROUP BY 1 ORDER BY 1;
SELECT bool_and(tx_time >= lag) AS time_ordered, bool_and(transaction_id = n - 1) AS ids_in_order
  FROM (SELECT tx_time, lag(tx_time, 1, '-infinity') OVER (ORDER BY transaction_id), transaction_id,
               row_number() OVER (ORDER BY transaction_id) n
          FROM pipeline.simulate_transactions(100, 200, 30, 42)) s;
SELECT count(*) FROM pipeline.simulate_transactions(0, 200, 30, 42);
SELECT count(*) FROM pipeline.simulate_transactions(100, 200, 0, 42);

-- a scorer watches a table and creates its outputs beside it
CREATE TABLE card_tx (transaction_id bigint, tx_time timestamptz, customer_id integer, terminal_id integer,
                      amount numeric(10, 2));
SELECT pipeline.create_fraud_scorer('cards', 'card_tx', '{"label_delay": "2 hours"}');
SELECT scorer, source, scores, alerts, labels, model_version, rules, label_delay, notify_channel
  FROM pipeline.fraud_scorer_status;
SELECT pipeline.fraud_feature_names();
SELECT pipeline.fraud_state_bytes(true) AS card_bytes, pipeline.fraud_state_bytes(false) AS terminal_bytes;

-- refusals
SELECT pipeline.create_fraud_scorer('cards', 'card_tx', '{"label_delay": "2 hours"}');
SELECT pipeline.create_fraud_scorer('', 'card_tx');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"amount": "amount"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"time_column": "amount"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"customer_column": "nope"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"amount_column": "tx_time"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"label_delay": "45 days"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"label_delay": "soon"}');
SELECT pipeline.create_fraud_scorer('other', 'card_tx', '{"label_column": "amount"}');
SELECT pipeline.create_fraud_scorer('other', 'pipeline.fraud_scorer_status');
SELECT pipeline.train_fraud_model('nope', '2026-01-01', '2026-01-02');

-- features come from the state before each transaction (the card's counts include it);
-- without a model there is no score
INSERT INTO card_tx VALUES (1, '2026-01-10 10:00', 7, 70, 20.00), (2, '2026-01-10 10:20', 7, 71, 40.00),
                           (3, '2026-01-10 11:30', 8, 70, 100.00);
SELECT transaction_id, customer_id, terminal_id, score,
       round(exp(features[4])::numeric - 1, 3) AS card_count_1d, round(exp(features[5])::numeric - 1, 2) AS card_mean_1d,
       features[19] AS new_terminal, round(features[18]::numeric, 3) AS log_seconds_since_last
  FROM cards_scores ORDER BY transaction_id;

-- labels: transaction 1 was a fraud; terminal 70's risk shows it only two hours
-- (the label delay) after that transaction's hour
INSERT INTO cards_labels (transaction_id) VALUES (1);
INSERT INTO card_tx VALUES (4, '2026-01-10 12:10', 9, 70, 30.00), (5, '2026-01-10 13:05', 9, 70, 30.00);
SELECT transaction_id, round(exp(features[10])::numeric - 1) AS terminal_count_1d, features[11] AS terminal_risk_1d
  FROM cards_scores WHERE terminal_id = 70 ORDER BY transaction_id;
SELECT transaction_id, label FROM cards_scores ORDER BY transaction_id;

-- rules: picked up from the next statement, evaluated per card over their window
SELECT pipeline.add_fraud_rule('cards', 'burst', 'customer', 'count', '1 hour', '>=', 3,
                               '{"action": "block", "weight": 2}') > 0 AS added;
SELECT pipeline.add_fraud_rule('cards', 'big_spender', 'customer', 'sum', '1 day', '>', 500) > 0 AS added;
INSERT INTO card_tx VALUES (6, '2026-01-11 09:00', 9, 72, 10.00), (7, '2026-01-11 09:10', 9, 72, 10.00),
                           (8, '2026-01-11 09:20', 9, 72, 600.00);
SELECT transaction_id, rules, round(score::numeric, 4) AS score FROM cards_scores WHERE transaction_id >= 6 ORDER BY 1;
SELECT transaction_id, action, reasons->'rules' AS rules, round(score::numeric, 4) AS score FROM cards_alerts ORDER BY 1;
SELECT pipeline.add_fraud_rule('cards', 'burst', 'customer', 'count', '1 hour', '>=', 3);
SELECT pipeline.add_fraud_rule('cards', 'x', 'merchant', 'count', '1 hour', '>=', 3);
SELECT pipeline.add_fraud_rule('cards', 'x', 'customer', 'median', '1 hour', '>=', 3);
SELECT pipeline.add_fraud_rule('cards', 'x', 'customer', 'count', '0 seconds', '>=', 3);
SELECT pipeline.add_fraud_rule('cards', 'x', 'customer', 'count', '1 hour', '=>', 3);
SELECT pipeline.add_fraud_rule('cards', 'x', 'customer', 'count', '1 hour', '>', 'NaN');
SELECT pipeline.add_fraud_rule('cards', 'x', 'customer', 'count', '1 hour', '>', 3, '{"action": "call"}');
SELECT pipeline.drop_fraud_rule('cards', 'big_spender');
SELECT pipeline.drop_fraud_rule('cards', 'big_spender');
SELECT name, group_by, aggregate, window_length, operator, threshold, weight, action FROM pipeline.fraud_rules;

-- models: imported as JSON (features in any order), exported back, activated by version
SELECT pipeline.import_fraud_model('cards', jsonb_build_object(
    'features', (SELECT jsonb_agg(f ORDER BY f) FROM unnest(pipeline.fraud_feature_names()) f),
    'means', (SELECT jsonb_agg(0) FROM unnest(pipeline.fraud_feature_names())),
    'stds', (SELECT jsonb_agg(1) FROM unnest(pipeline.fraud_feature_names())),
    'weights', (SELECT jsonb_agg(CASE WHEN f = 'log_amount' THEN 1 ELSE 0 END ORDER BY f) FROM unnest(pipeline.fraud_feature_names()) f),
    'intercept', -5)) AS version;
SELECT e->'version' AS version, e->'intercept' AS intercept, (e->'weights')->0 AS log_amount_weight,
       e->'features'->0 AS first_feature
  FROM pipeline.export_fraud_model('cards') e;
INSERT INTO card_tx VALUES (9, '2026-01-11 10:00', 10, 73, 147.41);
-- score = 1 / (1 + exp(5 - log(1 + 147.41))) = 148.41 / (148.41 + e^5)
SELECT transaction_id, round(score::numeric, 4) AS score, model_version FROM cards_scores WHERE transaction_id = 9;
SELECT pipeline.import_fraud_model('cards', '{"features": []}');
SELECT pipeline.import_fraud_model('cards', pipeline.export_fraud_model('cards') - 'intercept');
SELECT pipeline.import_fraud_model('cards', jsonb_set(pipeline.export_fraud_model('cards'), '{features,0}', '"colour"'));
SELECT pipeline.import_fraud_model('cards', jsonb_set(pipeline.export_fraud_model('cards'), '{stds,0}', '0'));
SELECT pipeline.import_fraud_model('cards', jsonb_set(pipeline.export_fraud_model('cards'), '{weights,3}', '"heavy"'));
SELECT pipeline.import_fraud_model('cards', pipeline.export_fraud_model('cards'), false) AS inactive_version;
SELECT version, active FROM pipeline.fraud_models ORDER BY version;
SELECT pipeline.activate_fraud_model('cards', 2);
SELECT version, active FROM pipeline.fraud_models ORDER BY version;
SELECT pipeline.activate_fraud_model('cards', 9);
SELECT pipeline.export_fraud_model('cards', 9);

-- training: Newton's method on the scored transactions of a period
SELECT pipeline.train_fraud_model('cards', '2026-01-10', '2026-01-12');
INSERT INTO cards_labels (transaction_id) VALUES (8);
SELECT pipeline.train_fraud_model('cards', '2026-01-10', '2026-01-12', '{"c": 0.5}') AS version;
SELECT version, active, training->'rows' AS training_rows, training->'frauds' AS frauds,
       training->'converged' AS converged FROM pipeline.fraud_models WHERE version = 4;
SELECT pipeline.train_fraud_model('cards', '2026-01-12', '2026-01-10');
SELECT pipeline.train_fraud_model('cards', '2026-01-10', '2026-01-12', '{"c": 0}');
SELECT pipeline.train_fraud_model('cards', '2026-01-10', '2026-01-12', '{"rate": 1}');
SELECT pipeline.train_fraud_model('cards', '2020-01-01', '2020-01-02');

-- evaluation, on scores set by hand: two days, nine transactions, one card (6)
-- already known to be compromised (a fraud more than the label delay before)
CREATE TABLE eval_tx (LIKE card_tx);
SELECT pipeline.create_fraud_scorer('eval', 'eval_tx', '{"notify_channel": null}');
INSERT INTO eval_scores (transaction_id, customer_id, terminal_id, tx_time, amount, score, features, label)
SELECT id, card, 1, t::timestamptz, 1, score, array_fill(0::float8, ARRAY[20]), label
  FROM (VALUES (1, 1, '2026-01-10 10:00', 0.9, true), (2, 2, '2026-01-10 10:00', 0.8, false),
               (3, 3, '2026-01-10 10:00', 0.7, true), (4, 4, '2026-01-10 10:00', 0.6, false),
               (5, 5, '2026-01-10 10:00', 0.6, true), (6, 6, '2026-01-10 10:00', 0.1, false),
               (7, 1, '2026-01-11 10:00', 0.95, true), (8, 3, '2026-01-11 10:00', 0.2, false),
               (9, 4, '2026-01-11 10:00', 0.5, true), (10, 6, '2025-12-30 10:00', 0.99, true)) v(id, card, t, score, label);
-- by hand: 8 transactions (card 6's is left out), 5 frauds;
-- AUC = 10.5 / 15 (pairs ranked right, ties half) = 0.7;
-- AP = 1/5 (1/1 + 2/2 + 3/4 + 4/6 + 5/7) = 0.8262;
-- CP@2: day 1 cards 1 and 2 (one fraud) = 0.5, day 2 without the detected card 1: cards 4 and 3 = 0.5
SELECT transactions, frauds, round(auc::numeric, 4) AS auc, round(average_precision::numeric, 4) AS ap,
       round(card_precision_at_k::numeric, 4) AS cp_at_2
  FROM pipeline.evaluate_fraud_scorer('eval', '2026-01-10', '2026-01-12', 2);
SELECT pipeline.evaluate_fraud_scorer('eval', '2026-01-10', '2026-01-12', 0);

-- only pg_pipeline's trigger on the scorer's own table may run it, and amounts must be finite
CREATE TABLE not_cards (LIKE card_tx);
CREATE TRIGGER pipeline_fraud_x AFTER INSERT ON not_cards REFERENCING NEW TABLE AS pipeline_new
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.fraud_score_trigger('1');
INSERT INTO not_cards VALUES (100, '2026-01-12 10:00', 1, 1, 1);
DROP TRIGGER pipeline_fraud_x ON not_cards;
CREATE TRIGGER pipeline_fraud_1_score AFTER INSERT ON not_cards REFERENCING NEW TABLE AS pipeline_new
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline.fraud_score_trigger('1');
INSERT INTO not_cards VALUES (100, '2026-01-12 10:00', 1, 1, 1);
DROP TABLE not_cards;
CREATE TABLE float_tx (transaction_id bigint, tx_time timestamptz, customer_id integer, terminal_id integer,
                       amount double precision);
SELECT pipeline.create_fraud_scorer('floats', 'float_tx', '{"notify_channel": null}');
INSERT INTO float_tx VALUES (1, '2026-01-12 10:00', 1, 1, 'NaN');
SELECT pipeline.drop_fraud_scorer('floats');
\set VERBOSITY terse
UPDATE pipeline.fraud_scorers SET label_delay = '45 days' WHERE name = 'cards';
\set VERBOSITY default

-- a label taken back takes its fraud out of the terminal's risk
CREATE TABLE relabel_tx (LIKE card_tx);
SELECT pipeline.create_fraud_scorer('relabel', 'relabel_tx', '{"label_delay": "1 hour", "notify_channel": null}');
INSERT INTO relabel_tx VALUES (1, '2026-01-12 10:00', 1, 5, 10);
INSERT INTO relabel_labels (transaction_id) VALUES (1);
INSERT INTO relabel_tx VALUES (2, '2026-01-12 12:10', 2, 5, 10);
INSERT INTO relabel_labels (transaction_id, is_fraud) VALUES (1, false);
INSERT INTO relabel_tx VALUES (3, '2026-01-12 12:20', 3, 5, 10);
SELECT transaction_id, features[11] AS terminal_risk_1d, label FROM relabel_scores ORDER BY 1;
SELECT pipeline.drop_fraud_scorer('relabel');

-- state is written at checkpoints (pg_pipeline.fraud_checkpoint_interval); a new
-- session rebuilds it from the last checkpoint and the scores since, and scores
-- exactly as a scorer that wrote its state after every statement
CREATE TABLE kept_tx (LIKE card_tx);
CREATE TABLE rebuilt_tx (LIKE card_tx);
SELECT pipeline.create_fraud_scorer('kept', 'kept_tx', '{"label_delay": "1 hour", "notify_channel": null}');
SELECT pipeline.create_fraud_scorer('rebuilt', 'rebuilt_tx', '{"label_delay": "1 hour", "notify_channel": null}');
SELECT pipeline.add_fraud_rule(s, 'busy', 'terminal', 'count', '1 day', '>', 3) > 0 AS added
  FROM unnest(ARRAY['kept', 'rebuilt']) s;
CREATE TABLE simulated AS
SELECT transaction_id, tx_time AT TIME ZONE 'UTC' AS tx_time, customer_id, terminal_id, amount, is_fraud
  FROM pipeline.simulate_transactions(50, 400, 8, 7, '2026-02-01');
CREATE FUNCTION stream_day(day int, kept_interval text, rebuilt_interval text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('pg_pipeline.fraud_checkpoint_interval', kept_interval, true);
    INSERT INTO kept_tx SELECT transaction_id, tx_time, customer_id, terminal_id, amount FROM simulated
     WHERE tx_time >= '2026-02-01'::timestamptz + make_interval(days => day)
       AND tx_time < '2026-02-02'::timestamptz + make_interval(days => day) ORDER BY transaction_id;
    PERFORM set_config('pg_pipeline.fraud_checkpoint_interval', rebuilt_interval, true);
    INSERT INTO rebuilt_tx SELECT transaction_id, tx_time, customer_id, terminal_id, amount FROM simulated
     WHERE tx_time >= '2026-02-01'::timestamptz + make_interval(days => day)
       AND tx_time < '2026-02-02'::timestamptz + make_interval(days => day) ORDER BY transaction_id;
END $$;
SELECT stream_day(0, '0', '1h'), stream_day(1, '0', '1h'), stream_day(2, '0', '1h');
\c -
SET timezone = 'UTC';
-- rebuilt: the checkpoint of day 0 (its first statement, with a new rule), then days 1 and 2 replayed
SELECT stream_day(3, '0', '1h');
INSERT INTO kept_labels (transaction_id) SELECT transaction_id FROM simulated WHERE is_fraud AND tx_time < '2026-02-05';
INSERT INTO rebuilt_labels (transaction_id) SELECT transaction_id FROM simulated WHERE is_fraud AND tx_time < '2026-02-05';
\c -
SET timezone = 'UTC';
SELECT stream_day(4, '0', '1h'), stream_day(5, '0', '1h');
SELECT count(*) AS transactions, count(*) FILTER (WHERE k.features = r.features AND k.rules IS NOT DISTINCT FROM r.rules
                                                  AND k.label IS NOT DISTINCT FROM r.label) AS scored_alike,
       count(*) FILTER (WHERE k.rules IS NOT NULL) AS with_rules, count(*) FILTER (WHERE k.label) AS labelled
  FROM kept_scores k JOIN rebuilt_scores r USING (transaction_id);
SELECT pipeline.checkpoint_fraud_scorer('rebuilt') > 0 AS states_written,
       pipeline.checkpoint_fraud_scorer('rebuilt') AS written_again;
SELECT pipeline.checkpoint_fraud_scorer('nope');
SELECT count(*) FROM rebuilt_scores WHERE seq IS NULL OR seq <> transaction_id + 1;
SELECT pipeline.drop_fraud_scorer('kept'), pipeline.drop_fraud_scorer('rebuilt');
DROP FUNCTION stream_day(int, text, text);

-- drop: triggers and tables go
SELECT pipeline.drop_fraud_scorer('eval');
SELECT pipeline.drop_fraud_scorer('cards');
SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pipeline_fraud_%';
SELECT to_regclass('cards_scores'), to_regclass('cards_state');
SELECT pipeline.drop_fraud_scorer('cards');
-- a scorer whose table was dropped by hand still drops cleanly
CREATE TABLE gone_tx (LIKE card_tx);
SELECT pipeline.create_fraud_scorer('gone', 'gone_tx');
DROP TABLE gone_tx, gone_scores;
SELECT pipeline.drop_fraud_scorer('gone');
SELECT count(*) FROM pipeline.fraud_scorers;
