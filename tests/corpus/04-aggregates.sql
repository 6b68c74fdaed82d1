-- aggregates: count/sum/total/avg/min/max/group_concat, GROUP BY, HAVING, DISTINCT, FILTER, NULLs and overflow
----
CREATE TABLE sales(id INTEGER PRIMARY KEY, region TEXT, product TEXT, qty INTEGER, price REAL, note TEXT);
INSERT INTO sales VALUES
  (1, 'north', 'apple', 10, 0.5, 'a'),
  (2, 'north', 'pear', 4, 0.75, NULL),
  (3, 'south', 'apple', 7, 0.55, 'b'),
  (4, 'south', 'fig', NULL, 2.0, 'c'),
  (5, 'east', 'apple', 3, 0.5, NULL),
  (6, 'east', 'pear', 3, 0.8, 'd'),
  (7, 'north', 'fig', 1, 2.25, 'e'),
  (8, NULL, 'apple', 2, NULL, NULL);
CREATE TABLE empty(v INTEGER, t TEXT)
----
SELECT count(*), count(qty), count(price), count(note), count(DISTINCT product) FROM sales
----
SELECT sum(qty), total(qty), avg(qty), min(qty), max(qty) FROM sales
----
SELECT typeof(sum(qty)), typeof(total(qty)), typeof(avg(qty)), typeof(sum(price)) FROM sales
----
SELECT sum(price), total(price), avg(price), min(price), max(price) FROM sales
----
-- aggregates over an empty set
SELECT count(*), count(v), sum(v), total(v), avg(v), min(v), max(v), group_concat(t) FROM empty
----
SELECT typeof(sum(v)), typeof(total(v)), typeof(avg(v)), typeof(group_concat(t)) FROM empty
----
-- GROUP BY on an empty table yields no rows at all
SELECT t, count(*) FROM empty GROUP BY t
----
SELECT region, count(*), sum(qty), avg(price) FROM sales GROUP BY region ORDER BY region
----
SELECT region, product, sum(qty * price) AS revenue FROM sales GROUP BY region, product ORDER BY region, product
----
SELECT product, count(*) AS n FROM sales GROUP BY product HAVING count(*) >= 2 ORDER BY n DESC, product
----
SELECT region, sum(qty) FROM sales GROUP BY region HAVING sum(qty) > 5 AND region IS NOT NULL ORDER BY 1
----
-- HAVING without GROUP BY treats the whole table as one group
SELECT count(*) FROM sales HAVING count(*) > 100
----
SELECT count(DISTINCT region), count(DISTINCT price), sum(DISTINCT qty), avg(DISTINCT qty), total(DISTINCT price) FROM sales
----
SELECT
  count(*) FILTER (WHERE product = 'apple') AS apples,
  sum(qty) FILTER (WHERE region = 'north') AS north_qty,
  avg(price) FILTER (WHERE qty > 2) AS avg_price_big,
  max(id) FILTER (WHERE note IS NULL) AS last_no_note
FROM sales
----
SELECT region, count(*) FILTER (WHERE price > 0.6) FROM sales GROUP BY region ORDER BY region NULLS LAST
----
-- the row with the maximum supplies the bare columns
SELECT region, max(price), product FROM sales WHERE region IS NOT NULL GROUP BY region ORDER BY region
----
SELECT min(product), max(product), min(note), max(note) FROM sales
----
-- min/max across mixed storage classes: NULL < numbers < text < blob
CREATE TABLE mixed(v);
INSERT INTO mixed VALUES (3), (2.5), ('10'), ('abc'), (x'00'), (NULL), (-7);
SELECT min(v), typeof(min(v)), max(v), typeof(max(v)), count(v), count(*) FROM mixed
----
SELECT sum(v), total(v) FROM mixed WHERE typeof(v) IN ('integer', 'real')
----
-- text that looks numeric is summed as a number; other text counts as 0
SELECT sum(x), total(x), avg(x) FROM (SELECT '12' AS x UNION ALL SELECT '3.5' UNION ALL SELECT 'abc')
----
SELECT group_concat(product) FROM (SELECT product FROM sales ORDER BY id)
----
SELECT region, group_concat(product, '+') FROM (SELECT region, product FROM sales ORDER BY region, id) GROUP BY region ORDER BY region NULLS FIRST
----
SELECT group_concat(DISTINCT product) FROM (SELECT product FROM sales ORDER BY product)
----
SELECT string_agg(product, ';') FROM (SELECT product FROM sales WHERE region = 'north' ORDER BY id)
----
SELECT group_concat(product, ', ' ORDER BY qty DESC, id) FROM sales WHERE qty IS NOT NULL
----
SELECT group_concat(DISTINCT region ORDER BY region DESC) FROM sales
----
-- expect error
-- DISTINCT aggregates take exactly one argument
SELECT string_agg(DISTINCT region, '|') FROM sales
----
SELECT json_group_array(qty) FROM (SELECT qty FROM sales ORDER BY id)
----
SELECT json_group_object(product, total_qty) FROM (SELECT product, sum(qty) AS total_qty FROM sales GROUP BY product ORDER BY product)
----
-- NULLs form a single group
SELECT note IS NULL AS no_note, count(*), group_concat(id) FROM (SELECT * FROM sales ORDER BY id) GROUP BY note IS NULL ORDER BY 1
----
SELECT qty, count(*) FROM sales GROUP BY qty ORDER BY qty NULLS FIRST
----
SELECT qty % 2 AS parity, count(*), sum(qty) FROM sales WHERE qty IS NOT NULL GROUP BY 1 ORDER BY 1
----
SELECT length(product) AS len, count(*) FROM sales GROUP BY len ORDER BY len
----
SELECT region, sum(qty) AS s FROM sales GROUP BY region ORDER BY s DESC NULLS LAST, region
----
SELECT DISTINCT region FROM sales ORDER BY region
----
SELECT DISTINCT product, region IS NULL FROM sales ORDER BY 1, 2
----
SELECT count(*) FROM (SELECT DISTINCT region, product FROM sales)
----
SELECT avg(column1), sum(column1), total(column1) FROM (VALUES (1), (2), (4))
----
CREATE TABLE big(v INTEGER);
INSERT INTO big VALUES (9223372036854775807), (1)
----
-- expect error
SELECT sum(v) FROM big
----
SELECT total(v), avg(v), max(v) - min(v) FROM big
----
SELECT sum(v) FROM big WHERE v > 1
----
SELECT sum(column1) FROM (VALUES (9223372036854775807), (-1), (1))
----
-- expect error
SELECT sum(column1) FROM (VALUES (-9223372036854775807), (-2))
----
-- expect error
SELECT product FROM sales WHERE sum(qty) > 1
----
-- expect error
SELECT sum(sum(qty)) FROM sales
----
-- expect error
SELECT count(qty, price) FROM sales
----
-- expect error
SELECT region, count(*) FROM sales GROUP BY 3----
SELECT product, min(price), max(price), avg(price), count(price), total(qty) FROM sales GROUP BY product ORDER BY product
----
SELECT region, product, count(*) FROM sales GROUP BY 1, 2 HAVING count(*) = 1 ORDER BY 1, 2
----
SELECT total(price * qty), sum(price * qty), max(qty) - min(qty), max(length(note)), sum(length(product)) FROM sales
----
SELECT avg(x), sum(x), sum(x) = 0.6 FROM (SELECT 0.1 AS x UNION ALL SELECT 0.2 UNION ALL SELECT 0.3)
----
SELECT count(*) AS n, sum(qty > 3), sum(price IS NULL), avg(qty IS NOT NULL) FROM sales
