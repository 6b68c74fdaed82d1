-- real: floating point formatting, arithmetic, rounding, casts, integer overflow and numeric text conversion
----
SELECT 0.1 + 0.2, 0.1 + 0.2 = 0.3, typeof(0.1 + 0.2), 0.3 - 0.1, 0.1 * 3
----
SELECT 1e308 * 10, -1e308 * 10, typeof(1e308 * 10), 1e308 * 10 > 1e308
----
-- inf - inf is NaN, which SQLite turns into NULL
SELECT 1e308 * 10 - 1e308 * 10, typeof(1e308 * 10 - 1e308 * 10), (1e308 * 10) * 0
----
SELECT -0.0, typeof(-0.0), 0.0 = -0.0, -0.0 < 0.0, CAST(-0.0 AS TEXT), printf('%g', -0.0), printf('%f', -0.0), 0.0 * -1
----
SELECT 1.0 / 3, 2.0 / 3, 10.0 / 4, 1 / 3.0, -1.0 / 3, 100.0 / 7
----
SELECT 5 / 2, -5 / 2, 5 % 3, -5 % 3, 5 % -3, 5.0 / 2, 5 / 2.0, 5.5 % 2, -5.5 % 2, 7 % 2.5
----
SELECT 1 / 0, 1.0 / 0, 1 % 0, 0 / 0, 1.5 % 0, typeof(1 / 0)
----
SELECT 4.9e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 5e-324 / 2, 1e-310, 1e-320
----
SELECT 123456789012345678901234567890.0, 1e15, 1e16, 1e17, 123456789012345.6, 1.5e-5, 1e100, 2e-300
----
SELECT 100 * 1.1, 3 * 1.1, 1.1 * 1.1, 2.5e-3 * 4e3, 0.1 * 0.1, 1e23, 9007199254740993.0
----
SELECT printf('%.17g', 0.1), printf('%.17g', 0.3), printf('%.17g', 0.1 + 0.2), printf('%.20f', 0.1), printf('%.30g', 0.1)
----
SELECT printf('%f', 3.14159), printf('%.2f', 2.675), printf('%.0f', 0.5), printf('%.0f', 1.5), printf('%.0f', 2.5), printf('%.3f', -0.0005)
----
SELECT printf('%e', 12345.678), printf('%.3e', 0.00012345), printf('%E', 1e100), printf('%.0e', 5.0), printf('%e', 0.0)
----
SELECT printf('%g', 100000.0), printf('%g', 1000000.0), printf('%g', 1e-5), printf('%g', 0.0001), printf('%#g', 1.0), printf('%g', 1.0 / 3), printf('%G', 1e-10)
----
SELECT printf('[%10.3f]', 3.14159), printf('[%-10.3f]', 3.14159), printf('[%+.2f]', 2.0), printf('[%010.2f]', -3.5), printf('[% .1f]', 7.25), printf('[%.*f]', 3, 1.0 / 7)
----
SELECT printf('%d', 3.99), printf('%d', -3.99), printf('%d', '12'), printf('%s', 1.5), printf('%s', 1e20), printf('%i', 1e300)
----
SELECT printf('%.15g', 1.0), printf('%!.15g', 1.0), printf('%!.20e', 0.1), printf('%.100f', 1.0 / 3) = printf('%.100f', 1.0 / 3), length(printf('%.100f', 1.0 / 3))
----
SELECT printf('%f', 1e308 * 10), printf('%e', -1e308 * 10), printf('%g', 1e308 * 10), printf('%.3f', 1e20), printf('%f', 1e-7)
----
SELECT round(2.5), round(-2.5), round(0.5), round(1.5), round(-0.4), round(0.49999999999999994), typeof(round(2.5))
----
SELECT round(1.005, 2), round(2.675, 2), round(3.14159, 3), round(123.456, -1), round(-1.2345, 2), round(1e20), round(9007199254740993.0)
----
SELECT round(12345.6789, 10), round(0.1 + 0.2, 15), round(0.1 + 0.2, 16), round(1.0 / 3, 30), round(NULL), round('2.5')
----
SELECT CAST(3.99 AS INTEGER), CAST(-3.99 AS INTEGER), CAST(1e19 AS INTEGER), CAST(-1e19 AS INTEGER), CAST(9.2233720368547758e18 AS INTEGER), CAST(-0.0 AS INTEGER)
----
SELECT CAST(1.0 AS TEXT), CAST(1e15 AS TEXT), CAST(1e16 AS TEXT), CAST(123456789.123456789 AS TEXT), CAST(0.1 AS TEXT), CAST(1.0 / 3 AS TEXT), CAST(1e-7 AS TEXT), CAST(-2.5e-300 AS TEXT)
----
SELECT CAST('3.7abc' AS REAL), CAST('  12  ' AS INTEGER), CAST('0x1A' AS INTEGER), CAST('-0' AS REAL), CAST('.5' AS REAL), CAST('5.' AS REAL), CAST('abc' AS REAL), CAST('' AS INTEGER)
----
-- text '1e3': integer casts take the integer prefix, numeric contexts take the whole number
SELECT CAST('1e3' AS INTEGER), CAST('1e3' AS REAL), CAST('1e3' AS NUMERIC), '1e3' + 0, typeof('1e3' + 0), '1e3' * 1, '1e3' = 1000, 1000 = CAST('1e3' AS NUMERIC)
----
SELECT CAST('1.0' AS NUMERIC), typeof(CAST('1.0' AS NUMERIC)), CAST('1.5' AS NUMERIC), CAST('9223372036854775808' AS NUMERIC), typeof(CAST('9223372036854775808' AS NUMERIC)), CAST('12abc' AS NUMERIC)
----
SELECT ' 12 ' + 1, '12abc' + 1, 'abc' + 1, '0x10' + 0, '-' + 1, '1.5e+2' + 0, '+7' * 2, x'3132' + 1
----
CREATE TABLE num(id INTEGER PRIMARY KEY, i INTEGER, n NUMERIC, r REAL, t TEXT, b BLOB);
INSERT INTO num(i, n, r, t, b) VALUES
  (1.0, 1.0, 1, 1.0, 1.0),
  (1.5, 1.5, '1.5', 1.5, 1.5),
  (1e20, 1e20, 1e20, 1e20, 1e20),
  ('2.0', '2.0', '2', '2.0', '2.0'),
  ('3.0e0', '3e2', '-0', ' 4 ', '5'),
  (9223372036854775807.0, '9223372036854775807', 9223372036854775807, 0.1 + 0.2, -0.0)
----
SELECT id, i, typeof(i), n, typeof(n), r, typeof(r), t, typeof(t), b, typeof(b) FROM num ORDER BY id
----
SELECT 1 = 1.0, 1 == '1', '1' = 1.0, 1 IS 1.0, typeof(1), typeof(1.0), 1.0 = '1.0', 2 > 1.5, 1 < '1'
----
-- integer/real comparisons are exact beyond 2^53
SELECT 9007199254740993 = 9007199254740992.0, 9007199254740993 > 9007199254740992.0, 9223372036854775807 = 9223372036854775808.0, 9223372036854775807 < 9223372036854775808.0
----
SELECT id, i FROM num WHERE i = 1 ORDER BY id
----
SELECT max(1, 1.0), typeof(max(1, 1.0)), min(2, 1.5), max(1, '1'), typeof(max(1, '1')), min(-0.0, 0), max(2.0, 2)
----
CREATE TABLE rs(v REAL);
INSERT INTO rs VALUES (0.1), (0.1), (0.1), (0.1), (0.1), (0.1), (0.1), (0.1), (0.1), (0.1);
SELECT sum(v), total(v), avg(v), sum(v) = 1.0, count(*) FROM rs
----
INSERT INTO rs VALUES (1e100), (1.0), (-1e100);
SELECT sum(v), total(v), avg(v) FROM rs
----
SELECT 9223372036854775807 + 1, typeof(9223372036854775807 + 1), 9223372036854775807 * 2, -9223372036854775808 - 1, 9223372036854775807 - -1
----
SELECT 9223372036854775808, typeof(9223372036854775808), -9223372036854775808, typeof(-9223372036854775808), -9223372036854775807 - 1
----
SELECT 4611686018427387904 * 2, typeof(4611686018427387904 * 2), 3037000500 * 3037000500, 3037000499 * 3037000499, -9223372036854775808 / -1
----
-- expect error
SELECT abs(-9223372036854775808)
----
SELECT abs(-9223372036854775807), abs(-1.5), abs(NULL), abs('x'), abs('-3'), abs(-0.0), typeof(abs('-3'))
----
SELECT 0x10, 0xff + 1, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000, typeof(0x10), 0XaBc
----
-- expect error
SELECT 0x1FFFFFFFFFFFFFFFF
----
-- expect error
SELECT 12abc
----
-- digit separators in numeric literals (SQLite 3.46+)
SELECT 1_000_000, 0xFF_FF, 1_000.250_5, typeof(1_000.5)
----
SELECT 1 + 2 * 3 - 4 / 2, (1 + 2) * 3, 2 * 3 % 4, -3 - -3, - - 5, ~0, ~5, 6 & 3, 6 | 3, 1 << 62, 1 << 63, 1 << 64, -1 >> 1, 5 >> -1
----
SELECT julianday('2000-01-01'), julianday('2024-02-29 12:00:00'), julianday('2000-01-01') - julianday('1999-12-31'), unixepoch('2024-01-01'), typeof(julianday('2000-01-01'))
----
SELECT strftime('%Y-%m-%d %H:%M:%f', '2024-01-01 00:00:00.123'), strftime('%s', '2024-03-10 12:00:00'), strftime('%J', '2024-01-01'), date(2460310.5), datetime(1700000000, 'unixepoch')
----
-- sort order across storage classes
SELECT column1, typeof(column1) FROM (VALUES (1), (1.5), (-0.5), (2), ('1.25'), (x'01'), (NULL), ('abc'), (-1e300)) ORDER BY column1
----
SELECT 1e15 + 0.3, 1e16 + 1, 12345678901234567.0, 0.000001, 0.0000001, 1e-5 * 3, 2.0 - 1.1, 1e16 - 1, 1e16 + 2
----
SELECT CAST(2.0 AS TEXT), CAST(-2.5 AS TEXT), CAST(1e21 AS TEXT), CAST(3.0e-5 AS TEXT), CAST(123456789012345678.0 AS TEXT), CAST(0.1 + 0.2 AS TEXT), CAST(1e308 * 10 AS TEXT)
----
SELECT '0.1' + '0.2', '1e308' * 10, '-1e400' + 0, '1e-400' + 0, CAST('inf' AS REAL), CAST('1e999' AS REAL), CAST('-1e999' AS REAL)
----
-- REAL values round-trip through their text form
CREATE TABLE rt(v REAL);
INSERT INTO rt VALUES (0.1), (1.0 / 3), (2.0 / 3), (1e-300), (123.456), (-9.87654321e20), (5e-324), (1.7976931348623157e308), (0.30000000000000004);
SELECT v, CAST(v AS TEXT), CAST(CAST(v AS TEXT) AS REAL) = v, printf('%.17g', v), printf('%!.17g', v) FROM rt ORDER BY v
----
SELECT quote(0.1), quote(1.0 / 3), quote(1e-300), quote(1e308 * 10), quote(-1e308 * 10), quote(100.0), quote(1e16)
----
SELECT printf('%.0f', 1e20), printf('%.1f', 0.05), printf('%.1f', 0.15), printf('%.1f', 0.25), printf('%.1f', 0.35), printf('%.2f', 1.005), printf('%.3f', 1.0005)
----
SELECT printf('%g', 123456789.0), printf('%.10g', 123456789.0), printf('%.3g', 0.0001234), printf('%g', 1e-300), printf('%g', 5e-324), printf('%.20g', 5e-324), printf('%.20g', 1e23)
----
SELECT round(0.5, 0), round(-0.5), round(1.45, 1), round(1.55, 1), round(-1.55, 1), round(2.5e-10, 10), round(123456789.987654321, 4), round(-0.0)
----
SELECT 7 / 2 * 2, 7 / 2.0 * 2, 7 % 2.0, -7 / 2, -7 % 2, 7.9 / 0.1, 0.7 / 0.1, CAST(0.7 / 0.1 AS INTEGER), CAST(0.7 / 0.1 + 1e-9 AS INTEGER)
----
-- a REAL sum overflows to Inf instead of raising an error
SELECT sum(column1), avg(column1), total(column1) FROM (VALUES (1e308), (1e308))
----
SELECT 1.0 * 9223372036854775807, CAST(9223372036854775807 AS REAL), CAST(CAST(9223372036854775807 AS REAL) AS INTEGER), 9223372036854775807 + 0.0 = 9223372036854775807, 9223372036854775807 / -1, -9223372036854775808 % -1
----
-- affinity decides how text and numbers compare
CREATE TABLE cmp(i INTEGER, t TEXT, n);
INSERT INTO cmp VALUES (10, '10', '10');
SELECT i = '10', t = 10, n = 10, i = t, i < '9', t < 9, n > 9, typeof(i), typeof(t), typeof(n) FROM cmp
----
SELECT printf('%d', 9223372036854775807), printf('%d', -9223372036854775808), printf('%x', -1), printf('%lld', 1 << 40), printf('%.3d', 7), printf('%e', 9223372036854775807)
----
SELECT sum(v), avg(v), min(v), max(v), typeof(sum(v)) FROM (SELECT column1 AS v FROM (VALUES (1), (2.5), ('3'), (NULL), (-0.0)))
----
SELECT 0.1e1, .5, 5., 1.e2, 1E+2, 00012.50, 1e0001, 0e0, -0e0, 1e-0
----
SELECT 1.0 = 1, 1.0 IN (1, 2), 1 IN (1.0), '1.0' IN (1), CAST('1.0' AS REAL) IN (1), 2.0 IN (SELECT 2), 3 BETWEEN 2.5 AND 3.0
----
SELECT 1.7976931348623157e308 * 1.0000001, 1e-308 / 1e10, -1e-320 * 1e-10, 1e300 * 1e10 / 1e10, 4.35 * 100, 1.15 * 100, 0.57 * 100
