-- window: ranking, offset and value functions, ROWS/RANGE/GROUPS frames with EXCLUDE, named windows
----
CREATE TABLE s(id INTEGER PRIMARY KEY, grp TEXT, name TEXT, val INTEGER, amt REAL);
INSERT INTO s VALUES
  (1, 'a', 'ann', 10, 1.5), (2, 'a', 'bob', 20, 2.5), (3, 'a', 'cat', 20, 0.5), (4, 'a', 'dan', 30, 4.0),
  (5, 'b', 'eve', 5, 1.0), (6, 'b', 'fay', 15, 3.25), (7, 'b', 'gus', 15, NULL), (8, 'c', 'hal', 7, 7.0),
  (9, 'b', 'ivy', NULL, 2.0), (10, 'c', 'jon', 9, 0.75)
----
SELECT id, row_number() OVER (ORDER BY id) AS rn FROM s ORDER BY id
----
SELECT grp, name, val, row_number() OVER (PARTITION BY grp ORDER BY val, id) AS rn FROM s ORDER BY grp, rn
----
SELECT name, val,
  rank() OVER w AS rnk, dense_rank() OVER w AS drnk, percent_rank() OVER w AS prnk, cume_dist() OVER w AS cd
FROM s WINDOW w AS (ORDER BY val) ORDER BY val NULLS FIRST, id
----
SELECT grp, name, val, rank() OVER (PARTITION BY grp ORDER BY val DESC) AS r FROM s ORDER BY grp, r, id
----
SELECT id, ntile(3) OVER (ORDER BY id) AS t3, ntile(4) OVER (ORDER BY id) AS t4, ntile(20) OVER (ORDER BY id) AS t20 FROM s ORDER BY id
----
SELECT id, val, lag(val) OVER (ORDER BY id) AS prev, lead(val) OVER (ORDER BY id) AS next FROM s ORDER BY id
----
SELECT id, lag(name, 2, 'none') OVER (ORDER BY id) AS lag2, lead(name, 3, '-') OVER (ORDER BY id) AS lead3, lag(val, 0) OVER (ORDER BY id) AS same FROM s ORDER BY id
----
SELECT grp, id, lag(amt, 1, -1.0) OVER (PARTITION BY grp ORDER BY id) AS prev_amt FROM s ORDER BY grp, id
----
SELECT grp, id,
  first_value(name) OVER (PARTITION BY grp ORDER BY id) AS fv,
  last_value(name) OVER (PARTITION BY grp ORDER BY id) AS lv_default,
  last_value(name) OVER (PARTITION BY grp ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS lv_all,
  nth_value(name, 2) OVER (PARTITION BY grp ORDER BY id) AS second
FROM s ORDER BY grp, id
----
-- running totals
SELECT id, val, sum(val) OVER (ORDER BY id) AS running, count(val) OVER (ORDER BY id) AS cnt, avg(val) OVER (ORDER BY id) AS mean FROM s ORDER BY id
----
SELECT grp, id, amt, sum(amt) OVER (PARTITION BY grp ORDER BY id) AS running_amt, total(amt) OVER (PARTITION BY grp) AS grp_total FROM s ORDER BY grp, id
----
-- moving window over ROWS
SELECT id, val, sum(val) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) AS s3,
  min(val) OVER (ORDER BY id ROWS 2 PRECEDING) AS min3, max(val) OVER (ORDER BY id ROWS BETWEEN CURRENT ROW AND 2 FOLLOWING) AS max_fwd
FROM s ORDER BY id
----
-- RANGE frames group peers together
SELECT id, val, sum(val) OVER (ORDER BY val RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS r_sum,
  sum(val) OVER (ORDER BY val ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rows_sum
FROM s WHERE val IS NOT NULL AND id NOT IN (3, 7) ORDER BY val, id
----
SELECT id, val, count(*) OVER (ORDER BY val RANGE BETWEEN 5 PRECEDING AND 5 FOLLOWING) AS near FROM s ORDER BY val NULLS FIRST, id
----
SELECT id, amt, sum(amt) OVER (ORDER BY amt RANGE BETWEEN 1.0 PRECEDING AND 0.5 FOLLOWING) AS s FROM s ORDER BY amt NULLS FIRST, id
----
SELECT id, val, sum(id) OVER g AS id_sum, count(*) OVER g AS n, min(id) OVER g AS lo FROM s WHERE val IS NOT NULL
WINDOW g AS (ORDER BY val GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING)
ORDER BY val, id
----
SELECT id, val, count(*) OVER (ORDER BY val GROUPS CURRENT ROW) AS peers FROM s ORDER BY val NULLS FIRST, id
----
-- EXCLUDE variants
SELECT id, val,
  sum(val) OVER (ORDER BY val RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE NO OTHERS) AS no_others,
  sum(val) OVER (ORDER BY val RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE CURRENT ROW) AS ex_cur,
  sum(val) OVER (ORDER BY val RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE GROUP) AS ex_group,
  sum(val) OVER (ORDER BY val RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING EXCLUDE TIES) AS ex_ties
FROM s WHERE grp IN ('a', 'b') AND val IS NOT NULL ORDER BY val, id
----
SELECT id, group_concat(name, ',') OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING EXCLUDE CURRENT ROW) AS nb FROM s ORDER BY id
----
-- named windows, including one window built on another
SELECT id, grp,
  sum(val) OVER win AS s, count(*) OVER win AS c,
  sum(val) OVER (win ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS s_rows
FROM s WINDOW win AS (PARTITION BY grp ORDER BY id) ORDER BY grp, id
----
SELECT id, rank() OVER w1, sum(val) OVER w2 FROM s
WINDOW w1 AS (ORDER BY grp), w2 AS (w1 ROWS CURRENT ROW)
ORDER BY id
----
-- aggregate window without ORDER BY covers the whole partition
SELECT grp, id, max(val) OVER (PARTITION BY grp) AS gmax, val * 1.0 / sum(val) OVER (PARTITION BY grp) AS share FROM s ORDER BY grp, id
----
-- FILTER on window aggregates
SELECT id, count(*) FILTER (WHERE val > 10) OVER (ORDER BY id) AS big_so_far, sum(amt) FILTER (WHERE grp = 'b') OVER (ORDER BY id) AS b_amt FROM s ORDER BY id
----
-- window results in a derived table: top 2 per group
SELECT grp, name, val FROM (
  SELECT grp, name, val, row_number() OVER (PARTITION BY grp ORDER BY val DESC NULLS LAST, id) AS rn FROM s
) WHERE rn <= 2 ORDER BY grp, rn
----
-- windows over an aggregate query
SELECT grp, sum(val) AS total, rank() OVER (ORDER BY sum(val) DESC) AS r, sum(sum(val)) OVER () AS grand FROM s GROUP BY grp ORDER BY grp
----
SELECT id, val, val - lag(val, 1, val) OVER (ORDER BY id) AS delta, lead(val, 1) OVER (ORDER BY id) IS NULL AS is_last FROM s WHERE val IS NOT NULL ORDER BY id
----
SELECT id, nth_value(val, 3) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS third,
  first_value(val) OVER (ORDER BY id ROWS BETWEEN 2 FOLLOWING AND 3 FOLLOWING) AS ahead
FROM s ORDER BY id
----
SELECT id, percent_rank() OVER (ORDER BY id), cume_dist() OVER (ORDER BY id) FROM s WHERE id <= 3 ORDER BY id
----
-- window function in ORDER BY
SELECT name FROM s ORDER BY row_number() OVER (ORDER BY amt DESC NULLS LAST, id) LIMIT 4
----
-- expect error
SELECT row_number() FROM s
----
-- expect error
SELECT id, ntile(0) OVER (ORDER BY id) FROM s
----
-- expect error
SELECT id, nth_value(val, 0) OVER (ORDER BY id) FROM s
----
-- expect error
SELECT sum(val) OVER (ORDER BY val, id RANGE BETWEEN 1 PRECEDING AND CURRENT ROW) FROM s
----
-- expect error
SELECT sum(val) OVER nosuch FROM s
----
SELECT id, sum(val) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS all_sum, avg(amt) OVER (PARTITION BY grp) AS grp_avg FROM s ORDER BY id
----
SELECT id, total(amt) OVER (ORDER BY id RANGE BETWEEN 2 PRECEDING AND 2 FOLLOWING) AS near_amt, max(amt) OVER (ORDER BY id ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING) AS prev_max FROM s ORDER BY id
----
SELECT id, json_group_array(name) OVER (ORDER BY id ROWS 2 PRECEDING) AS last3 FROM s ORDER BY id
----
SELECT name, val, rank() OVER (ORDER BY val DESC NULLS LAST) AS r, dense_rank() OVER (ORDER BY val DESC NULLS FIRST) AS dr FROM s ORDER BY val DESC NULLS LAST, id
----
SELECT grp, count(*) OVER (PARTITION BY grp) AS n, row_number() OVER (ORDER BY grp DESC, id DESC) AS rn_rev, id FROM s ORDER BY id
----
SELECT id, val, coalesce(val, lag(val) OVER (ORDER BY id)) AS filled, first_value(val) OVER (PARTITION BY val IS NULL ORDER BY id) AS fv FROM s ORDER BY id
