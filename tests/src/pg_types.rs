//! The every-type table of the PostgreSQL tests: one column of each built-in
//! type (and an enum, a domain and a composite), with values at the edges of
//! each type. Capture's type test checks every value against the server; the
//! apply test copies the table to another database and compares.

use ferry_core::meta::DataType;

/// How many rows of values [`COLUMNS`] gives (besides the all-NULL row).
pub const ROWS: usize = 7;

/// One column of the test table.
#[derive(Debug)]
pub struct Column {
    pub name: &'static str,
    /// The type as written in CREATE TABLE.
    pub ddl: &'static str,
    /// PostgreSQL's name for the type (`format_type`), which `ferry.source_type` must carry.
    pub source_type: &'static str,
    /// Ferry's data type, as `ferry.type` writes it.
    pub ferry_type: &'static str,
    /// SQL for the column's value in each value row.
    pub values: [&'static str; ROWS],
}

const fn col(
    name: &'static str,
    ddl: &'static str,
    source_type: &'static str,
    ferry_type: &'static str,
    values: [&'static str; ROWS],
) -> Column {
    Column {
        name,
        ddl,
        source_type,
        ferry_type,
        values,
    }
}

/// Types the table needs besides the built-in ones.
pub const TYPES: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'très 😀');
    CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
    CREATE TYPE pair AS (n integer, label text);";

/// Every column after the key (`id bigint PRIMARY KEY`), with the values of the
/// value rows: row 0 minimums and specials, 1 maximums and Unicode, 2 zeros and BC,
/// 3 subnormals and long values, 4 the ends of the ranges, 5 odd input forms,
/// 6 some columns NULL.
#[rustfmt::skip]
pub const COLUMNS: &[Column] = &[
    col("i2", "smallint", "smallint", "int16",
        ["-32768", "32767", "0", "-1", "1", "12345", "NULL"]),
    col("i4", "integer", "integer", "int32",
        ["-2147483648", "2147483647", "0", "1", "-1", "123456789", "NULL"]),
    col("i8", "bigint", "bigint", "int64",
        ["-9223372036854775808", "9223372036854775807", "0", "-1", "1", "1234567890123456789", "42"]),
    col("n_fixed", "numeric(12,4)", "numeric(12,4)", "decimal(12,4)+special",
        ["'NaN'", "99999999.9999", "-0.0001", "0", "-12345678.1234", "-99999999.9999", "1.5"]),
    col("n_wide", "numeric(1000,500)", "numeric(1000,500)", "decimal(1000,500)+special",
        [r"('-' || repeat('9', 500) || '.' || repeat('9', 500))::numeric",
         r"(repeat('9', 500) || '.' || repeat('9', 500))::numeric",
         r"('0.' || repeat('0', 499) || '1')::numeric",
         r"('-' || repeat('1234567890', 50))::numeric",
         r"('123456789.' || repeat('0', 499) || '1')::numeric",
         "0",
         "NULL"]),
    col("n_free", "numeric", "numeric", "numeric",
        ["'NaN'", "'Infinity'", "'-Infinity'", "'1e100'",
         r"('1.' || repeat('0', 1000))::numeric / 7",
         r"('-0.' || repeat('0', 300) || '1' || repeat('0', 30))::numeric",
         "'12.3400'"]),
    col("f4", "real", "real", "float32",
        ["'NaN'", "'Infinity'", "'-0'", "'1e-45'", "'-Infinity'", "'3.4028235e38'", "'0.1'"]),
    col("f8", "double precision", "double precision", "float64",
        ["'NaN'", "'Infinity'", "'-0'", "'5e-324'", "'-Infinity'", "'1.7976931348623157e308'", "'0.1'"]),
    col("cash", "money", "money", "text",
        ["'-92233720368547758.08'", "'92233720368547758.07'", "'0'", "'0.01'", "'-0.01'", "'1234.5'", "NULL"]),
    col("t", "text", "text", "text",
        ["''",
         r#"E'naïve 日本語 🚀 tab\there "quoted" back\\slash \'single\' ∅'"#,
         "' leading and trailing '",
         "repeat('ab', 400)",
         r"E'line1\nline2\r\n\u0001'",
         "'NULL'",
         "'only some columns are set'"]),
    col("vc", "varchar(10)", "character varying(10)", "text",
        ["''", "'ünïcødé 🚀!'", "'x'", "'1234567890'", "'  '", "'日本語'", "NULL"]),
    col("ch", "char(5)", "character(5)", "text",
        ["''", "'é🚀'", "'ab'", "'xyzzy'", "'     '", "'a b'", "'a'"]),
    col("qc", "\"char\"", "\"char\"", "text",
        ["''", "'z'", r"E'\\001'", "'\"'", "' '", r"E'\\377'", "NULL"]),
    col("nm", "name", "name", "text",
        ["''", "'名前 with spaces'", "'n'", "repeat('n', 63)", "'pg_catalog'", "repeat('é', 31)", "NULL"]),
    col("by", "bytea", "bytea", "bytes",
        [r"'\x'", r"'\x00ff0000'", r"'\x000102feff00'", "decode(repeat('00', 300), 'hex')", r"'\x5c78'",
         "(SELECT decode(string_agg(lpad(to_hex(b), 2, '0'), '' ORDER BY b), 'hex') FROM generate_series(0, 255) b)",
         r"'\x00'"]),
    col("b", "boolean", "boolean", "boolean",
        ["false", "true", "false", "true", "false", "true", "NULL"]),
    col("d", "date", "date", "date",
        ["'-infinity'", "'infinity'", "'4714-11-24 BC'", "'0044-03-15 BC'", "'5874897-12-31'", "'2000-01-01'",
         "'1969-12-31'"]),
    col("tm", "time", "time without time zone", "time",
        ["'00:00:00'", "'24:00:00'", "'23:59:59.999999'", "'12:34:56.789'", "'00:00:00.000001'", "'12:00'", "NULL"]),
    col("ttz", "timetz", "time with time zone", "text",
        ["'00:00:00+15:59'", "'24:00:00-15:59'", "'23:59:59.999999+00'", "'12:34:56.789-03:30'",
         "'00:00:00.000001-00:00:01'", "'12:00:00+05:45'", "NULL"]),
    col("ts", "timestamp", "timestamp without time zone", "timestamp",
        ["'-infinity'", "'infinity'", "'4714-11-24 00:00:00 BC'", "'2024-02-29 23:59:59.999999'",
         "'294247-01-10 04:00:54.775806'", "'1970-01-01 00:00:00'", "'1999-12-31 23:59:59.999999'"]),
    col("tstz", "timestamptz", "timestamp with time zone", "timestamptz",
        ["'-infinity'", "'infinity'", "'4714-11-24 00:00:00+00 BC'", "'1969-12-31 23:59:59.999999+00'",
         "'294247-01-10 04:00:54.775806+00'", "'2024-02-29 13:45:00.123456+05:30'", "'1901-12-13 20:45:52.000001-08'"]),
    col("iv", "interval", "interval", "text",
        ["'-178000000 years'", "'178000000 years 11 months 30 days 23:59:59.999999'",
         "'-1 mons +2 days -00:00:00.000001'", "'P1Y2M3DT4H5M6.789S'", "'PT0S'", "'1 day -24 hours'", "NULL"]),
    col("u", "uuid", "uuid", "uuid",
        ["'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
         "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'123e4567-e89b-12d3-a456-426614174000'",
         "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", "'{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}'", "NULL"]),
    col("js", "json", "json", "text",
        ["'{}'", r#"'{"b": 1,  "a": [1, 2.50, null, "ü\u00e9"], "n": 1e400}'"#, r#"'[1, "two", {"three": [3]}]'"#,
         r#"'"string with \" and \\u0000-free text"'"#, "'null'", r#"'  {"dup": 1, "dup": 2}  '"#, "NULL"]),
    col("jb", "jsonb", "jsonb", "text",
        ["'{}'", r#"'{"b": 1,  "a": [1, 2.50, null, "ü\u00e9"], "n": 1e400}'"#, r#"'[1, "two", {"three": [3]}]'"#,
         r#"'"string with \" and \\u0000-free text"'"#, "'null'", r#"'  {"dup": 1, "dup": 2}  '"#, "NULL"]),
    col("x", "xml", "xml", "text",
        ["''", r#"'<a x="1">ü &amp; <b/></a>'"#, r#"'<?xml version="1.0"?><r/>'"#, "'just text'",
         "'<a><![CDATA[<x>]]></a>'", "'<!-- c --><a/>'", "NULL"]),
    col("ip", "inet", "inet", "text",
        ["'0.0.0.0/0'", "'2001:db8::1/64'", "'192.168.0.1'", "'::ffff:1.2.3.4/128'", "'255.255.255.255/32'",
         "'10.1.2.3/8'", "NULL"]),
    col("net", "cidr", "cidr", "text",
        ["'0.0.0.0/0'", "'2001:db8::/32'", "'10.0.0.0/8'", "'::/0'", "'192.168.100.128/25'", "'10.1'", "NULL"]),
    col("mac", "macaddr", "macaddr", "text",
        ["'00:00:00:00:00:00'", "'ff:ff:ff:ff:ff:ff'", "'08:00:2b:01:02:03'", "'ab:cd:ef:01:23:45'",
         "'08-00-2b-01-02-03'", "'0800.2b01.0203'", "NULL"]),
    col("mac8", "macaddr8", "macaddr8", "text",
        ["'00:00:00:00:00:00:00:00'", "'ff:ff:ff:ff:ff:ff:ff:ff'", "'08:00:2b:01:02:03:04:05'",
         "'ab:cd:ef:01:23:45:67:89'", "'08002b0102030405'", "'08:00:2b:01:02:03'", "NULL"]),
    col("bits", "bit(8)", "bit(8)", "text",
        ["'00000000'", "'11111111'", "'00000001'", "'10000000'", "'01010101'", "B'10101010'", "NULL"]),
    col("vbits", "varbit", "bit varying", "text",
        ["''", "'1010101010101010101'", "'0'", "repeat('10', 50)::varbit", "''", "'1'", "NULL"]),
    col("mood", "mood", "mood", "text",
        ["'sad'", "'très 😀'", "'happy'", "'ok'", "'sad'", "'happy'", "NULL"]),
    col("pos", "positive", "positive", "text",
        ["1", "2147483647", "42", "7", "1", "3", "NULL"]),
    col("ia", "int[]", "integer[]", "text",
        ["'{}'", "'{{1,NULL,3},{NULL,5,6}}'", "'[0:2]={7,8,9}'", "'{1,2,3}'", "'{NULL,NULL}'",
         "'[-3:-2]={-2147483648,NULL}'", "'{{{1}},{{2}}}'"]),
    col("ta", "text[][]", "text[]", "text",
        ["'{}'", r#"'{{"a b",NULL},{"c\"d\\e",""},{"NULL","日本"}}'"#, "'{{NULL}}'", "'{a,b,c}'",
         r#"'{{"{}","}"},{",",","}}'"#, r#"'{{" x ",NULL},{"é",""}}'"#, r#"'{NULL,""}'"#]),
    col("r4", "int4range", "int4range", "text",
        ["'empty'", "'[-2147483648,2147483647)'", "'(1,2]'", "'[5,5]'", "'[-10,-1)'", "'(,)'", "NULL"]),
    col("rtz", "tstzrange", "tstzrange", "text",
        ["'empty'", "'[2024-02-29 13:45:00.123456+05:30,infinity)'",
         "'[1970-01-01 00:00:00+00,2038-01-19 03:14:08+00]'", "'(,)'", "'[-infinity,2000-01-01 00:00:00+00)'",
         "'(4713-01-01 00:00:00+00 BC,)'", "NULL"]),
    col("rn", "numrange", "numrange", "text",
        ["'empty'", "'(-1.5,1e30]'", "'[0.1,0.2)'", "'(,1.000)'", "'[-0.000001,0.000001]'", "'(0,Infinity)'",
         "NULL"]),
    col("pr", "pair", "pair", "text",
        ["'(,)'", r#"'(-1,"x, \"y\" (z)")'"#, "'(2147483647,NULL)'", r#"'(0,"")'"#, r#"'(,"")'"#,
         r#"'(5,"日本 語")'"#, "NULL"]),
    col("pt", "point", "point", "text",
        ["'(0,0)'", "'(1.5,-2.25e-300)'", "'(-0,0)'", "'(-1.7976931348623157e+308,5e-324)'", "'(NaN,Infinity)'",
         "'(0.1,0.2)'", "NULL"]),
    col("bx", "box", "box", "text",
        ["'((0,0),(0,0))'", "'((1,2),(-3,-4.5))'", "'((1e-300,2),(3,4))'", "'((1,1),(1,1))'",
         "'((-Infinity,0),(0,-Infinity))'", "'((0.1,0.2),(0.3,0.4))'", "NULL"]),
    // More floats, dates and timestamps: exponents, the limits of exact integers and
    // of normal numbers, leap days around year 0 (1 BC) and centuries, five-digit years.
    col("f4b", "real", "real", "float32",
        ["'1e-05'", "'16777217'", "'1.17549435e-38'", "'1.1754942e-38'", "'1e+20'", "'-2.5e-10'", "'123456.79'"]),
    col("f8b", "double precision", "double precision", "float64",
        ["'1e-05'", "'9007199254740993'", "'2.2250738585072014e-308'", "'2.225073858507201e-308'", "'1e+20'",
         "'-1.2345678901234567e-100'", "'0.30000000000000004'"]),
    col("d2", "date", "date", "date",
        ["'0001-02-29 BC'", "'0401-02-29 BC'", "'0001-01-01'", "'1582-10-04'", "'10000-01-01'", "'1900-02-28'",
         "'2000-02-29'"]),
    col("ts2", "timestamp", "timestamp without time zone", "timestamp",
        ["'0001-02-29 23:59:59.999999 BC'", "'0401-02-29 12:00:00 BC'", "'0001-01-01 00:00:00'",
         "'1582-10-15 00:00:00'", "'10000-01-01 00:00:00'", "'1900-03-01 00:00:00'", "NULL"]),
    col("tstz2", "timestamptz", "timestamp with time zone", "timestamptz",
        ["'0001-02-29 23:59:59.999999+00 BC'", "'0001-01-01 00:00:00+14'", "'1900-02-28 23:00:00-01'",
         "'2038-01-19 03:14:07.999999+00'", "'2262-04-11 23:47:16.8547758+00'", "'0001-01-01 00:00:00-15:59:59'",
         "NULL"]),
    // More built-in types, carried as text or (oid, xid) as integers.
    col("oid", "oid", "oid", "int64",
        ["0", "4294967295", "1", "'2147483648'", "NULL", "16384", "NULL"]),
    col("xid", "xid", "xid", "int64",
        ["'0'", "'4294967295'", "'3'", "NULL", "'731'", "NULL", "NULL"]),
    col("lsn", "pg_lsn", "pg_lsn", "text",
        ["'0/0'", "'FFFFFFFF/FFFFFFFF'", "'16/B374D848'", "NULL", "'0/1'", "NULL", "NULL"]),
    col("tsv", "tsvector", "tsvector", "text",
        ["''", "'a fat cat sat:1A,2B'", r"'''ünï'' ''x y'':3'", "NULL", "'z'", "NULL", "NULL"]),
    col("tsq", "tsquery", "tsquery", "text",
        ["''", "'fat & (rat | !cat) <-> dog:*'", "'x'", "NULL", "'a <2> b'", "NULL", "NULL"]),
    col("jp", "jsonpath", "jsonpath", "text",
        ["'$'", r#"'$.a[*] ? (@ > 1 && @ like_regex "^x" flag "i")'"#, r#"'strict $."ü"[last]'"#, "NULL",
         "'$.n.double() + 1e400'", "NULL", "NULL"]),
    col("ln", "line", "line", "text",
        ["'{1,-1,0}'", "'{0.1,-1,1e300}'", "'((0,0),(1,2))'", "NULL", "'{-0,1,-0}'", "NULL", "NULL"]),
    col("ls", "lseg", "lseg", "text",
        ["'[(0,0),(1,1)]'", "'[(-1e-300,0.1),(1.5,NaN)]'", "'((0,0),(0,0))'", "NULL", "'[(1,2),(3,4)]'", "NULL",
         "NULL"]),
    col("pa", "path", "path", "text",
        ["'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1))'", "'[(0.1,0.2)]'", "NULL", "'((1,2),(3,4),(5,6))'", "NULL",
         "NULL"]),
    col("pg", "polygon", "polygon", "text",
        ["'((0,0),(1,1),(1,0))'", "'((0.1,0.2))'", "'((-1e300,1e300),(0,0),(1,-1))'", "NULL", "'((1,1))'", "NULL",
         "NULL"]),
    col("ci", "circle", "circle", "text",
        ["'<(0,0),1.5>'", "'<(0.1,-0.2),0>'", "'((1,2),1e-300)'", "NULL", "'<(1,1),Infinity>'", "NULL", "NULL"]),
    col("r8", "int8range", "int8range", "text",
        ["'empty'", "'[-9223372036854775808,9223372036854775807)'", "'(,0]'", "NULL", "'[1,1]'", "NULL", "NULL"]),
    col("rd", "daterange", "daterange", "text",
        ["'empty'", "'[4714-11-24 BC,infinity)'", "'[2024-02-28,2024-03-01]'", "NULL", "'(,5874897-12-30]'", "NULL",
         "NULL"]),
    col("rts", "tsrange", "tsrange", "text",
        ["'empty'", "'(-infinity,294276-12-31 23:59:59.999999]'", "'[2000-01-01,2000-01-02)'", "NULL",
         "'[0044-03-15 12:00 BC,)'", "NULL", "NULL"]),
    col("mr", "int4multirange", "int4multirange", "text",
        ["'{}'", "'{[1,3), [5,7), [2,4)}'", "'{empty}'", "NULL", "'{(,0], [10,)}'", "NULL", "NULL"]),
    col("moods", "mood[]", "mood[]", "text",
        ["'{}'", r#"'{sad,NULL,"très 😀"}'"#, "'{{ok},{happy}}'", "NULL", "'{NULL}'", "NULL", "NULL"]),
    col("nums", "numeric(10,2)[]", "numeric(10,2)[]", "text",
        ["'{}'", "'{1.5,NaN,NULL}'", "'{-99999999.99}'", "NULL", "'{0.004,0.005}'", "NULL", "NULL"]),
    col("tstzs", "timestamptz[]", "timestamp with time zone[]", "text",
        ["'{}'", r#"'{infinity,"2024-02-29 13:45:00+05:30"}'"#, r#"'{"4714-11-24 00:00:00+00 BC"}'"#, "NULL",
         "'{NULL,-infinity}'", "NULL", "NULL"]),
    col("bys", "bytea[]", "bytea[]", "text",
        ["'{}'", r#"'{"\\x00ff",NULL}'"#, r#"'{"\\x"}'"#, "NULL", r#"'{"\\x5c22",""}'"#, "NULL", "NULL"]),
    // Type modifiers: numeric scales an Avro decimal cannot carry, rounded times, bounded strings.
    col("n_negscale", "numeric(5,-2)", "numeric(5,-2)", "numeric",
        ["-9999900", "9999900", "149", "'NaN'", "0", "50", "NULL"]),
    col("n_tiny", "numeric(3,5)", "numeric(3,5)", "numeric",
        ["-0.00999", "0.00999", "0.000001", "'NaN'", "0", "0.000005", "NULL"]),
    col("tm3", "time(3)", "time(3) without time zone", "time",
        ["'00:00:00.0005'", "'23:59:59.9999'", "'12:34:56.7894'", "NULL", "'00:00:00.0004'", "NULL", "NULL"]),
    col("ttz2", "timetz(2)", "time(2) with time zone", "text",
        ["'00:00:00.005-15:59'", "'23:59:59.999+05'", "'12:34:56.784+00'", "NULL", "'24:00:00+00'", "NULL", "NULL"]),
    col("ts0", "timestamp(0)", "timestamp(0) without time zone", "timestamp",
        ["'-infinity'", "'2024-02-29 23:59:59.5'", "'4714-11-24 00:00:00.4 BC'", "NULL", "'1969-12-31 23:59:59.5'",
         "NULL", "NULL"]),
    col("tstz3", "timestamptz(3)", "timestamp(3) with time zone", "timestamptz",
        ["'infinity'", "'2000-01-01 00:00:00.0005+00'", "'1969-12-31 23:59:59.9995-00:30'", "NULL",
         "'294247-01-10 04:00:54.775+00'", "NULL", "NULL"]),
    col("iv2", "interval day to second(2)", "interval day to second(2)", "text",
        ["'1 day 2 hours 3.456 seconds'", "'-0.005 seconds'", "'P1Y'", "NULL", "'PT0.001S'", "NULL", "NULL"]),
    col("vb12", "varbit(12)", "bit varying(12)", "text",
        ["''", "'111111111111'", "'1'", "NULL", "'000000000000'", "NULL", "NULL"]),
    col("vcx", "varchar", "character varying", "text",
        ["''", "'abc  '", "repeat('日本', 100)", "NULL", "' '", "NULL", "NULL"]),
    col("bpc", "bpchar", "bpchar", "text",
        ["''", "'abc  '", "' x '", "NULL", "' '", "NULL", "NULL"]),
];

/// Each row's columns as (name, PostgreSQL's type name, Ferry's type), key first.
pub fn columns() -> impl Iterator<Item = (&'static str, &'static str, DataType)> {
    std::iter::once(("id", "bigint", DataType::Int64)).chain(COLUMNS.iter().map(|c| {
        let ty = c.ferry_type.parse().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        (c.name, c.source_type, ty)
    }))
}

pub fn column_list() -> String {
    COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// SQL for the values of value row `row`, or all NULL for `None`.
pub fn row_values(row: Option<usize>) -> String {
    let value = |c: &Column| row.map_or("NULL", |r| c.values[r]);
    COLUMNS.iter().map(value).collect::<Vec<_>>().join(", ")
}

pub fn insert(id: i64, row: Option<usize>) -> String {
    format!("INSERT INTO every_type VALUES ({id}, {});", row_values(row))
}

pub fn update(id: i64, row: Option<usize>) -> String {
    format!(
        "UPDATE every_type SET ({}) = ROW({}) WHERE id = {id};",
        column_list(),
        row_values(row)
    )
}
