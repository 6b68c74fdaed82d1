-- text-blob-null: string functions, blobs, NULL semantics, typeof, collations, JSON and fixed-date functions
----
CREATE TABLE words(id INTEGER PRIMARY KEY, w TEXT, ci TEXT COLLATE NOCASE, rt TEXT COLLATE RTRIM);
INSERT INTO words VALUES
  (1, 'apple', 'apple', 'x'), (2, 'Apple', 'Apple', 'x  '), (3, 'banana', 'BANANA', 'y'),
  (4, 'cherry', 'cherry', 'y '), (5, NULL, NULL, NULL), (6, '', '', ''), (7, 'a_b%c', 'A_B%C', 'z')
----
SELECT substr('hello', 2, 3), substr('hello', -3), substr('hello', 0, 2), substr('hello', 2, -1), substr('hello', 10), substring('hello', 2), substr('hello', -10, 12)
----
SELECT substr(x'0102030405', 2, 2), typeof(substr(x'0102030405', 2, 2)), substr('héllo', 2, 2), substr(12345, 2, 3), typeof(substr(12345, 2, 3))
----
SELECT instr('hello', 'l'), instr('hello', 'z'), instr('hello', ''), instr(x'01020302', x'0302'), instr(NULL, 'a'), instr('héllo', 'l')
----
SELECT replace('aaa', 'a', 'bb'), replace('abc', '', 'x'), replace('abcabc', 'bc', ''), replace(NULL, 'a', 'b'), replace(123123, 2, 9)
----
SELECT '[' || trim('  x  ') || ']', '[' || ltrim('  x  ') || ']', '[' || rtrim('  x  ') || ']', trim('xxhixx', 'x'), ltrim('abcba', 'ab'), rtrim('abcba', 'ab'), trim('  ', ' ')
----
SELECT upper('Hello World 123'), lower('Hello World 123'), upper(NULL), lower(42), typeof(upper(42))
----
-- length counts characters for text and bytes for blobs
SELECT length('héllo'), length(CAST('héllo' AS BLOB)), length(x'00ff00'), length(''), length(NULL), length(12345), length(-1.5), length(zeroblob(10))
----
SELECT octet_length('héllo'), octet_length(x'0001'), octet_length(123)
----
SELECT hex('abc'), hex(x'00ff'), hex(12), hex(1.5), hex(NULL), hex(''), hex('é')
----
SELECT unhex('616263'), typeof(unhex('616263')), unhex('zz'), unhex('61 62-63', ' -'), unhex('6'), unhex('')
----
SELECT quote('it''s'), quote(x'0102'), quote(NULL), quote(1.5), quote(10), quote(''), quote(-0.0), quote(1e300)
----
SELECT char(72, 105), char(233), char(), unicode('A'), unicode('é'), unicode(''), unicode(NULL), char(0x1F600) = '😀'
----
SELECT printf('%q', 'it''s'), printf('%Q', 'it''s'), printf('%Q', NULL), printf('%w', 'a"b'), format('%s-%d-%5.1f', 'x', 42, 3.14159), format('%%')
----
SELECT printf('%5s|%-5s|%.2s', 'ab', 'ab', 'abcdef'), printf('%x|%X|%o', 255, 255, 8), printf('%c', 'hello'), printf('%,d', 1234567), printf('%05d', -42), printf('%+d', 5)
----
SELECT printf('%s %s %s', 'only one'), printf(NULL), printf('%d%%', 50), printf('%.3s', 'héllo')
----
SELECT 'abc' LIKE 'ABC', 'abc' LIKE 'a%', 'abc' LIKE 'a_c', 'abc' LIKE 'b%', 'a_b' LIKE 'a\_b' ESCAPE '\', 'axb' LIKE 'a\_b' ESCAPE '\', '100%' LIKE '100!%' ESCAPE '!'
----
SELECT 'abc' GLOB 'a*', 'abc' GLOB 'A*', 'abc' GLOB '[a-c]??', 'a1' GLOB 'a[0-9]', 'ax' GLOB 'a[^0-9]', 'a?c' GLOB 'a[?]c', like('a%', 'ABC'), glob('*c', 'abc')
----
SELECT id, w FROM words WHERE w LIKE '%a%' ORDER BY id
----
SELECT id, w FROM words WHERE w LIKE 'a\_b\%c' ESCAPE '\' OR w GLOB '[A]*' ORDER BY id
----
-- expect error
SELECT 'abc' LIKE 'a%' ESCAPE 'xy'
----
SELECT 'a' || 'b', 'a' || NULL, 1 || 2, typeof(1 || 2), 1.5 || 'x', x'41' || 'B', NULL || NULL, 'x' || 0.1
----
SELECT concat('a', NULL, 1, 2.5), concat(NULL), concat_ws(',', 'a', NULL, 'b', 3), concat_ws(NULL, 'a', 'b'), concat_ws('-', x'41', 'b')
----
-- expect error
SELECT concat()
----
SELECT x'', typeof(x''), length(x''), x'' = '', x'41' = 'A', CAST(x'41' AS TEXT) = 'A', CAST('A' AS BLOB), x'0A0b'
----
SELECT zeroblob(4), length(zeroblob(10)), typeof(zeroblob(0)), hex(zeroblob(3)), zeroblob(-1), zeroblob(2) = x'0000'
----
SELECT CAST(x'3132' AS INTEGER), CAST(x'312e35' AS REAL), CAST(12 AS BLOB), typeof(CAST(12 AS BLOB)), CAST(NULL AS TEXT), typeof(CAST(NULL AS INTEGER))
----
SELECT NULL = NULL, NULL <> NULL, NULL IS NULL, 1 IS NOT NULL, NULL IS NOT NULL, 1 = NULL, NULL AND 0, NULL AND 1, NULL OR 1, NULL OR 0, NOT NULL
----
SELECT NULL IS DISTINCT FROM NULL, 1 IS DISTINCT FROM NULL, 1 IS NOT DISTINCT FROM 1, NULL IS NOT DISTINCT FROM NULL, 1 IS DISTINCT FROM 1.0, 'a' IS 'a'
----
SELECT coalesce(NULL, NULL, 3), coalesce(NULL, 'x', 1), ifnull(NULL, 'd'), ifnull(0, 'd'), nullif(1, 1), nullif(1, 2), nullif('a', 'A'), iif(NULL, 'yes', 'no'), iif(1, 'yes', 'no')
----
SELECT NULL IN (1, 2), 1 IN (NULL, 1), 2 NOT IN (1, NULL), 3 IN (SELECT NULL), NULL BETWEEN 1 AND 2, 1 BETWEEN NULL AND 0, CASE NULL WHEN NULL THEN 'match' ELSE 'nomatch' END
----
-- expect error
SELECT coalesce(1)
----
SELECT id, w FROM words ORDER BY w, id
----
SELECT id, w FROM words ORDER BY w DESC, id
----
SELECT id, w FROM words ORDER BY w NULLS LAST, id
----
SELECT id, w FROM words ORDER BY w DESC NULLS FIRST, id
----
SELECT typeof(NULL), typeof(1), typeof(1.0), typeof('1'), typeof(x'01'), typeof(1 + 1.0), typeof('1' + 1), typeof(CAST('1' AS NUMERIC)), typeof(true), true, false
----
SELECT 'abc' = 'ABC', 'abc' = 'ABC' COLLATE NOCASE, 'abc  ' = 'abc' COLLATE RTRIM, 'abc  ' = 'abc', 'a' < 'B', 'a' < 'B' COLLATE NOCASE, 'abc' = 'ABC' COLLATE BINARY
----
-- column collations apply to comparisons against the column
SELECT id, ci FROM words WHERE ci = 'apple' ORDER BY id
----
SELECT id, rt FROM words WHERE rt = 'x' ORDER BY id
----
SELECT upper(ci) AS u, count(*) FROM words WHERE ci IS NOT NULL GROUP BY ci ORDER BY u
----
SELECT id, w FROM words WHERE w IS NOT NULL ORDER BY w COLLATE NOCASE, w COLLATE BINARY, id
----
SELECT count(DISTINCT ci), count(DISTINCT w), count(DISTINCT rt), count(DISTINCT rt COLLATE BINARY) FROM words
----
SELECT min(ci), max(ci), min(w), max(w) FROM words WHERE id IN (1, 3, 4, 7)
----
-- expect error
SELECT 'a' = 'A' COLLATE NOSUCHCOLL
----
-- expect error
SELECT substr('abc')
----
-- expect error
SELECT nosuchfn(1)
----
SELECT json('{"a": 1, "b": [1, 2, {"c": null}]}'), json_valid('{"a":1}'), json_valid('{bad'), json_type('[1,2]'), json_type('{"a":1.5}', '$.a'), json_array_length('[1,2,3]')
----
SELECT json_extract('{"a": {"b": [10, 20, 30]}}', '$.a.b[1]'), '{"a": {"b": [10, 20, 30]}}' -> '$.a.b', '{"a": {"b": [10, 20, 30]}}' ->> '$.a.b[#-1]', '{"x": "str"}' -> 'x', '{"x": "str"}' ->> 'x', typeof('{"n": 1.5}' ->> 'n')
----
SELECT json_array(1, 'two', 3.5, NULL, json('[4]')), json_object('k', 1, 'n', NULL, 't', 'x'), json_set('{"a":1}', '$.b', 2), json_insert('{"a":1}', '$.a', 9), json_replace('{"a":1}', '$.a', 9), json_remove('[1,2,3]', '$[1]'), json_patch('{"a":1,"b":2}', '{"b":null,"c":3}')
----
SELECT key, value, type, atom, fullkey FROM json_each('{"b": [1, 2], "a": "x", "c": 3.5, "d": null, "e": true}') ORDER BY key
----
SELECT fullkey, type, atom FROM json_tree('{"a": [1, {"b": 2}]}') ORDER BY id
----
SELECT json_quote('a"b'), json_quote(1.5), json_quote(NULL), json('"\u00e9"'), json(' [1 , 2] '), json_array_length('{}')
----
-- expect error
SELECT json('{bad')
----
-- expect error
SELECT json_extract('[1,2]', 'not a path')
----
SELECT date('2024-02-29', '+1 year'), date('2024-01-31', '+1 month'), date('2024-03-31', '-1 month'), date('2000-02-28', '+1 day'), date('1900-02-28', '+1 day'), date('2024-02-29', 'start of year', '+59 days')
----
SELECT time('12:34:56', '+90 minutes'), datetime('2024-12-31 23:59:59', '+1 second'), strftime('%j %W %w %u', '2024-12-31'), strftime('%Y/%m/%d', '2023-06-15', 'weekday 0'), date('2024-13-01'), date('garbage')
----
SELECT timediff('2024-03-01', '2024-02-01'), date('2024-02-29', '+1 year', 'floor'), date('2023-01-31', '+1 month', 'ceiling'), strftime('%F %T', '2021-07-04 08:09:10')
----
SELECT printf('%-8s|', 'ab'), printf('%8.3s|', 'abcdef'), printf('%s', NULL), printf('%d', NULL), printf('%q', NULL), printf('%.2f', NULL)
----
SELECT 'a' || 1.0, 'x' || 1e20, 'y' || -0.0, 'z' || (1.0 / 3), 'w' || 9223372036854775807, 'v' || x'41'
----
SELECT replace('mississippi', 'ss', 'SS'), instr('mississippi', 'ssi'), substr('mississippi', instr('mississippi', 'pp')), length(replace('mississippi', 's', ''))
----
SELECT CASE WHEN '' THEN 'true' ELSE 'false' END, CASE WHEN 'abc' THEN 1 ELSE 0 END, CASE WHEN '1abc' THEN 1 ELSE 0 END, CASE WHEN 0.0 THEN 1 ELSE 0 END, CASE WHEN ' 2 ' THEN 1 ELSE 0 END
----
SELECT trim(' ' || char(9) || 'x' || char(10) || ' '), length(char(0)), hex(char(0, 65)), length('a' || char(0) || 'b'), quote(char(0))
----
SELECT 'abc' < 'abd', 'abc' < 'ab', 'Z' < 'a', x'00' > 'zzz', 1 < 'a', NULL < 1, '' < 'a', x'' < x'00'
----
SELECT group_concat(column1, '') FROM (VALUES ('a'), (NULL), ('b'), (''), ('c'))
----
SELECT substr('héllo wörld', 7), length('日本語'), substr('日本語', 2, 1), instr('日本語', '語'), hex('日'), unicode(substr('日本語', 3))
----
SELECT '[' || printf('%5.1f', 3.14159) || ']', '[' || printf('%-6d', 42) || ']', '[' || printf('%06.2f', -1.5) || ']', '[' || printf('%+.1e', 12345.0) || ']'
