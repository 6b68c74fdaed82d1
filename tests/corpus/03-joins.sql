-- joins: inner/outer/cross/self/natural joins, USING, expression joins and multi-way joins
----
CREATE TABLE dept(id INTEGER PRIMARY KEY, name TEXT, region TEXT);
CREATE TABLE emp(id INTEGER PRIMARY KEY, name TEXT, dept_id INTEGER, manager_id INTEGER, salary INTEGER);
CREATE TABLE proj(id INTEGER PRIMARY KEY, title TEXT, dept_id INTEGER);
CREATE TABLE grade(g TEXT PRIMARY KEY, lo INTEGER, hi INTEGER);
INSERT INTO dept VALUES (1, 'eng', 'north'), (2, 'sales', 'south'), (3, 'ops', 'north'), (4, 'legal', NULL);
INSERT INTO emp VALUES
  (1, 'ann', 1, NULL, 200), (2, 'bob', 1, 1, 150), (3, 'cat', 2, 1, 120), (4, 'dan', 2, 3, 100),
  (5, 'eve', NULL, 1, 90), (6, 'fay', 3, 2, 110), (7, 'gus', 9, 2, 80);
INSERT INTO proj VALUES (1, 'alpha', 1), (2, 'beta', 1), (3, 'gamma', 2), (4, 'delta', NULL), (5, 'omega', 5);
INSERT INTO grade VALUES ('A', 150, 1000), ('B', 100, 149), ('C', 0, 99)
----
SELECT e.name, d.name FROM emp e JOIN dept d ON e.dept_id = d.id ORDER BY e.id
----
SELECT e.name, d.name FROM emp e, dept d WHERE e.dept_id = d.id AND d.region = 'north' ORDER BY e.name
----
SELECT e.id, e.name, d.name AS dept FROM emp e LEFT JOIN dept d ON e.dept_id = d.id ORDER BY e.id
----
-- anti-join: employees without a valid department
SELECT e.name FROM emp e LEFT JOIN dept d ON e.dept_id = d.id WHERE d.id IS NULL ORDER BY e.name
----
SELECT d.name AS dept, e.name AS emp FROM emp e RIGHT JOIN dept d ON e.dept_id = d.id ORDER BY d.id, e.id
----
SELECT e.name AS emp, d.name AS dept
FROM emp e FULL OUTER JOIN dept d ON e.dept_id = d.id
ORDER BY d.id NULLS LAST, e.id NULLS LAST
----
SELECT d.name, p.title FROM dept d CROSS JOIN proj p WHERE p.id <= 2 ORDER BY d.id, p.id
----
SELECT count(*) FROM emp CROSS JOIN dept CROSS JOIN proj
----
-- self join: employee with manager
SELECT e.name, m.name AS manager FROM emp e LEFT JOIN emp m ON e.manager_id = m.id ORDER BY e.id
----
-- manager of manager
SELECT e.name, m.name, mm.name
FROM emp e JOIN emp m ON e.manager_id = m.id LEFT JOIN emp mm ON m.manager_id = mm.id
ORDER BY e.id
----
-- pairs of employees in the same department
SELECT a.name, b.name FROM emp a JOIN emp b ON a.dept_id = b.dept_id AND a.id < b.id ORDER BY a.id, b.id
----
CREATE TABLE a(k INTEGER, x TEXT);
CREATE TABLE b(k INTEGER, y TEXT);
INSERT INTO a VALUES (1, 'a1'), (2, 'a2'), (3, 'a3'), (NULL, 'anull');
INSERT INTO b VALUES (2, 'b2'), (3, 'b3'), (3, 'b3bis'), (4, 'b4'), (NULL, 'bnull')
----
SELECT * FROM a JOIN b USING (k) ORDER BY k, y
----
SELECT * FROM a NATURAL JOIN b ORDER BY k, y
----
SELECT * FROM a NATURAL LEFT JOIN b ORDER BY x, y
----
SELECT k, x, y FROM a FULL JOIN b USING (k) ORDER BY k NULLS FIRST, x, y
----
SELECT a.k, b.k, x, y FROM a RIGHT JOIN b ON a.k = b.k ORDER BY b.k, y
----
-- NULL keys never match with =, but do with IS
SELECT x, y FROM a JOIN b ON a.k IS b.k ORDER BY x, y
----
SELECT e.name, g.g FROM emp e JOIN grade g ON e.salary BETWEEN g.lo AND g.hi ORDER BY g.g, e.salary DESC, e.id
----
SELECT e.name, p.title, d.name
FROM emp e
JOIN dept d ON d.id = e.dept_id
JOIN proj p ON p.dept_id = d.id
ORDER BY e.id, p.id
----
SELECT d.name, count(e.id) AS n, coalesce(sum(e.salary), 0) AS total
FROM dept d LEFT JOIN emp e ON e.dept_id = d.id
GROUP BY d.id ORDER BY d.id
----
SELECT d.name, s.top FROM dept d
JOIN (SELECT dept_id, max(salary) AS top FROM emp GROUP BY dept_id) s ON s.dept_id = d.id
ORDER BY d.id
----
-- the ON clause filters before the outer join pads, WHERE after
SELECT e.name, d.name FROM emp e LEFT JOIN dept d ON e.dept_id = d.id AND d.region = 'north' ORDER BY e.id
----
SELECT e.name, d.name FROM emp e LEFT JOIN dept d ON e.dept_id = d.id WHERE d.region = 'north' ORDER BY e.id
----
SELECT e.name, p.title FROM emp e JOIN proj p ON p.dept_id = e.dept_id OR p.id = e.id ORDER BY e.id, p.id
----
SELECT v.column2, emp.name FROM (VALUES (1, 'first'), (4, 'fourth'), (8, 'none')) AS v LEFT JOIN emp ON emp.id = v.column1 ORDER BY v.column1
----
SELECT e.name, d.name, p.title
FROM emp e LEFT JOIN dept d ON e.dept_id = d.id RIGHT JOIN proj p ON p.dept_id = d.id
ORDER BY p.id, e.id
----
SELECT upper(a.x), lower(b.y) FROM a JOIN b ON a.x = 'A' || substr(b.y, 2, 1) COLLATE NOCASE ORDER BY 1, 2
----
SELECT DISTINCT d.name FROM dept d JOIN emp e ON e.dept_id = d.id WHERE e.salary > 100 ORDER BY d.name
----
SELECT d.name FROM dept d WHERE EXISTS (SELECT 1 FROM emp e WHERE e.dept_id = d.id AND e.salary > 100) ORDER BY d.name
----
SELECT e.name, d.name FROM emp e JOIN dept d ON e.dept_id = d.id ORDER BY e.salary DESC LIMIT 3 OFFSET 1
----
-- expect error
SELECT id FROM emp JOIN dept ON emp.dept_id = dept.id
----
-- expect error
SELECT * FROM emp JOIN dept USING (nosuch)
----
-- expect error
SELECT * FROM emp e JOIN dept d ON e.dept_id = d.nosuch
----
-- expect error
SELECT * FROM emp e NATURAL JOIN dept d ON e.dept_id = d.id
----
SELECT count(*), count(p.id) FROM emp e LEFT JOIN proj p ON p.dept_id = e.dept_id
----
SELECT d.name, group_concat(e.name, '/' ORDER BY e.name) FROM dept d LEFT JOIN emp e ON e.dept_id = d.id GROUP BY d.id ORDER BY d.id
----
WITH rich AS (SELECT id, name, dept_id FROM emp WHERE salary >= 110)
SELECT r.name, d.name FROM rich r LEFT JOIN dept d ON d.id = r.dept_id ORDER BY r.id
----
SELECT e.name, (SELECT count(*) FROM emp r WHERE r.manager_id = e.id) AS reports FROM emp e ORDER BY reports DESC, e.id
----
SELECT d.region, count(DISTINCT d.id) AS depts, count(e.id) AS emps, sum(e.salary) AS payroll
FROM dept d LEFT JOIN emp e ON e.dept_id = d.id GROUP BY d.region ORDER BY d.region NULLS LAST
----
SELECT a.x, b.y FROM a LEFT JOIN b ON a.k = b.k AND b.y LIKE '%bis' ORDER BY a.x
