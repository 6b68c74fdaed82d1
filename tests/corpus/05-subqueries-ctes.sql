-- subqueries-ctes: scalar/IN/EXISTS/correlated subqueries, derived tables, WITH and WITH RECURSIVE
----
CREATE TABLE node(id INTEGER PRIMARY KEY, parent INTEGER, name TEXT, weight INTEGER);
INSERT INTO node VALUES
  (1, NULL, 'root', 1), (2, 1, 'a', 5), (3, 1, 'b', 3), (4, 2, 'a1', 2), (5, 2, 'a2', 8),
  (6, 3, 'b1', 4), (7, 4, 'a1x', 6), (8, NULL, 'orphan', 9);
CREATE TABLE t(x INTEGER, y TEXT);
INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three'), (NULL, 'null'), (5, 'five')
----
SELECT (SELECT max(weight) FROM node), (SELECT name FROM node WHERE id = 3), (SELECT name FROM node WHERE id = 99)
----
-- a scalar subquery returning several rows yields the first one
SELECT (SELECT name FROM node ORDER BY weight DESC)
----
-- expect error
SELECT (SELECT id, name FROM node WHERE id = 1)
----
SELECT name FROM node WHERE id IN (SELECT parent FROM node) ORDER BY id
----
SELECT name FROM node WHERE id NOT IN (SELECT parent FROM node WHERE parent IS NOT NULL) ORDER BY id
----
-- NOT IN against a set containing NULL is never true
SELECT count(*) FROM node WHERE id NOT IN (SELECT parent FROM node)
----
SELECT x, x IN (1, 2, NULL), x NOT IN (1, 2, NULL), x IN (), x NOT IN () FROM t ORDER BY x NULLS LAST
----
SELECT n.name FROM node n WHERE EXISTS (SELECT 1 FROM node c WHERE c.parent = n.id) ORDER BY n.name
----
SELECT n.name FROM node n WHERE NOT EXISTS (SELECT 1 FROM node c WHERE c.parent = n.id) ORDER BY n.name
----
-- correlated subquery in the select list
SELECT n.name, (SELECT count(*) FROM node c WHERE c.parent = n.id) AS kids,
       (SELECT sum(weight) FROM node c WHERE c.parent = n.id) AS kid_weight
FROM node n ORDER BY n.id
----
-- correlated subquery in WHERE: heavier than the average of its siblings
SELECT n.name FROM node n
WHERE n.weight > (SELECT avg(s.weight) FROM node s WHERE s.parent IS n.parent)
ORDER BY n.id
----
SELECT d.parent, d.total FROM (SELECT parent, sum(weight) AS total FROM node GROUP BY parent) AS d WHERE d.total > 4 ORDER BY d.parent NULLS FIRST
----
SELECT sub.name, sub.rank_weight FROM (
  SELECT name, (SELECT count(*) FROM node o WHERE o.weight > i.weight) + 1 AS rank_weight FROM node i
) AS sub ORDER BY sub.rank_weight, sub.name
----
-- row values
SELECT name FROM node WHERE (parent, weight) IN (SELECT 1, 5 UNION ALL SELECT 2, 8) ORDER BY id
----
SELECT (1, 2) = (1, 2), (1, 2) < (1, 3), (1, NULL) = (1, 2), (2, 'a') > (1, 'z')
----
-- expect error
SELECT (1, 2) = (1, 2, 3)
----
SELECT x, y FROM t WHERE x > (SELECT min(x) FROM t) AND x < (SELECT max(x) FROM t) ORDER BY x
----
SELECT y FROM t ORDER BY (SELECT count(*) FROM node WHERE weight > t.x), y LIMIT (SELECT count(*) FROM t WHERE x < 3)
----
WITH cnt(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM cnt WHERE n < 10)
SELECT group_concat(n, ' ') FROM cnt
----
WITH RECURSIVE cnt(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM cnt LIMIT 7)
SELECT n, n * n FROM cnt ORDER BY n
----
WITH heavy AS (SELECT * FROM node WHERE weight >= 5),
     light AS (SELECT * FROM node WHERE weight < 5)
SELECT (SELECT count(*) FROM heavy), (SELECT count(*) FROM light), (SELECT group_concat(name) FROM (SELECT name FROM heavy ORDER BY name))
----
-- tree walk with depth and path
WITH RECURSIVE tree(id, name, depth, path) AS (
  SELECT id, name, 0, name FROM node WHERE parent IS NULL
  UNION ALL
  SELECT n.id, n.name, tree.depth + 1, tree.path || '/' || n.name
  FROM node n JOIN tree ON n.parent = tree.id
)
SELECT id, depth, path FROM tree ORDER BY path
----
-- ancestors of a leaf
WITH RECURSIVE up(id, parent, name) AS (
  SELECT id, parent, name FROM node WHERE name = 'a1x'
  UNION ALL
  SELECT n.id, n.parent, n.name FROM node n JOIN up ON n.id = up.parent
)
SELECT group_concat(name, ' <- ') FROM up
----
-- subtree weight per top-level node
WITH RECURSIVE sub(top, id, weight) AS (
  SELECT id, id, weight FROM node WHERE parent = 1
  UNION ALL
  SELECT sub.top, n.id, n.weight FROM node n JOIN sub ON n.parent = sub.id
)
SELECT top, count(*), sum(weight) FROM sub GROUP BY top ORDER BY top
----
-- bounded fibonacci
WITH RECURSIVE fib(i, a, b) AS (
  SELECT 1, 0, 1
  UNION ALL
  SELECT i + 1, b, a + b FROM fib WHERE i < 40
)
SELECT i, a FROM fib WHERE i % 5 = 0 OR i > 38 ORDER BY i
----
-- factorial: 21! no longer fits in 64 bits and becomes REAL
WITH RECURSIVE f(n, v) AS (SELECT 1, 1 UNION ALL SELECT n + 1, v * (n + 1) FROM f WHERE n < 22)
SELECT n, v, typeof(v) FROM f WHERE n >= 19 ORDER BY n
----
-- collatz sequence of 27 (length and peak)
WITH RECURSIVE c(step, v) AS (
  SELECT 0, 27
  UNION ALL
  SELECT step + 1, CASE WHEN v % 2 = 0 THEN v / 2 ELSE 3 * v + 1 END FROM c WHERE v <> 1
)
SELECT max(step), max(v), sum(v) FROM c
----
-- UNION (not ALL) in a recursive CTE stops on cycles
WITH RECURSIVE r(v) AS (SELECT 1 UNION SELECT (v * 3) % 7 FROM r)
SELECT v FROM r ORDER BY v
----
-- queue order: depth-first via ORDER BY in the recursive part
WITH RECURSIVE bfs(id, name, depth) AS (
  SELECT id, name, 0 FROM node WHERE id = 1
  UNION ALL
  SELECT n.id, n.name, bfs.depth + 1 FROM node n JOIN bfs ON n.parent = bfs.id
  ORDER BY 3 DESC, 2
)
SELECT group_concat(name, ',') FROM bfs
----
WITH m AS MATERIALIZED (SELECT parent, count(*) AS c FROM node GROUP BY parent)
SELECT a.parent, a.c, b.c FROM m a JOIN m b ON a.parent = b.parent ORDER BY a.parent
----
WITH m AS NOT MATERIALIZED (SELECT id, name, weight * 2 AS w2 FROM node)
SELECT name, w2 FROM m WHERE w2 > 10 ORDER BY w2, name
----
WITH a(v) AS (SELECT 2), b(v) AS (SELECT v * 10 FROM a), c(v) AS (SELECT a.v + b.v FROM a, b)
SELECT a.v, b.v, c.v FROM a, b, c
----
-- CTE feeding DML
CREATE TABLE squares(n INTEGER PRIMARY KEY, sq INTEGER);
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 12)
INSERT INTO squares SELECT n, n * n FROM s;
WITH odd AS (SELECT n FROM squares WHERE n % 2 = 1)
DELETE FROM squares WHERE n IN (SELECT n FROM odd);
SELECT group_concat(sq) FROM (SELECT sq FROM squares ORDER BY n)
----
-- a small mandelbrot set, rendered as text
WITH RECURSIVE
  xaxis(x) AS (VALUES (-2.0) UNION ALL SELECT x + 0.1 FROM xaxis WHERE x < 1.0),
  yaxis(y) AS (VALUES (-1.0) UNION ALL SELECT y + 0.2 FROM yaxis WHERE y < 1.0),
  m(iter, cx, cy, x, y) AS (
    SELECT 0, x, y, 0.0, 0.0 FROM xaxis, yaxis
    UNION ALL
    SELECT iter + 1, cx, cy, x * x - y * y + cx, 2.0 * x * y + cy FROM m
    WHERE (x * x + y * y) < 4.0 AND iter < 20
  ),
  m2(iter, cx, cy) AS (SELECT max(iter), cx, cy FROM m GROUP BY cx, cy),
  a(cy, t) AS (
    SELECT cy, group_concat(substr(' .+*#', 1 + min(iter / 5, 4), 1), '')
    FROM (SELECT * FROM m2 ORDER BY cy, cx) GROUP BY cy
  )
SELECT group_concat(rtrim(t), x'0a') FROM (SELECT t FROM a ORDER BY cy)
----
WITH RECURSIVE pow2(k, v) AS (SELECT 0, 1.0 UNION ALL SELECT k + 1, v / 2 FROM pow2 WHERE k < 60)
SELECT k, v, printf('%.20g', v) FROM pow2 WHERE k IN (0, 1, 10, 52, 53, 60) ORDER BY k
----
-- expect error
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT count(*) FROM r WHERE n < 3) SELECT * FROM r
----
-- expect error
WITH c(a, b) AS (SELECT 1) SELECT * FROM c
----
-- expect error
WITH RECURSIVE r(n) AS (SELECT n FROM r) SELECT * FROM r
----
-- expect error
SELECT 1 UNION SELECT 1, 2
----
SELECT name FROM node WHERE weight = (SELECT max(weight) FROM node WHERE parent IS NOT NULL)
----
SELECT n.id, (SELECT p.name FROM node p WHERE p.id = n.parent) AS parent_name FROM node n ORDER BY n.id
----
WITH RECURSIVE r(n, s) AS (SELECT 987654321, 0 UNION ALL SELECT n / 10, s + n % 10 FROM r WHERE n > 0)
SELECT s FROM r WHERE n = 0
----
SELECT * FROM (SELECT id, name FROM node ORDER BY id DESC LIMIT 3) ORDER BY id
----
SELECT EXISTS (SELECT 1 FROM node WHERE weight > 100), EXISTS (SELECT 1 FROM node), NOT EXISTS (SELECT 1 FROM t WHERE x IS NULL)
----
WITH RECURSIVE s(i, str) AS (SELECT 1, 'a' UNION ALL SELECT i + 1, str || char(97 + i) FROM s WHERE i < 26)
SELECT str, length(str) FROM s WHERE i = 26
