//! MariaDB column types as `ferry_capture::mysql::types` reads them, against the
//! real server.
//!
//! - [`information_schema_and_table_map_agree`]: a table with a column of every
//!   type is described by `information_schema.COLUMNS` and by the table map event
//!   of a row written to it (read from the binlog as a replica would); both
//!   descriptions have the same names, kinds and key, so a stream that starts
//!   after a snapshot registers no new schema version.
//! - [`snapshot_and_binlog_read_the_same_values`]: edge values of every type are
//!   written once (session time zone +05:30, zero dates allowed) and read back
//!   twice, by a text-protocol `SELECT` as the snapshot does and from the rows
//!   event in the binlog; both must give the expected [`Datum`] written down here.
//! - [`unsupported_types_are_refused_by_name`]: MariaDB's `UUID` and `INET6`
//!   are a clear error naming the column.

// Helpers of a test file unwrap like its tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferry_capture::mysql::types::{self, Kind, SourceColumn};
use ferry_core::meta::DataType;
use ferry_core::value::Datum;
use ferry_tests::mariadb::MariaDatabase;
use futures::StreamExt;
use mysql_async::binlog::events::{EventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::prelude::Queryable;
use mysql_async::BinlogStreamRequest;

/// A server id no other replica of the development server uses.
fn server_id() -> u32 {
    1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u32
}

/// The binlog's current end: where a reader starts to see what is written next.
async fn binlog_end(conn: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
    (row.get::<String, _>(0).unwrap(), row.get::<u64, _>(1).unwrap())
}

/// The table map of `table` and the after images of the first `rows` rows
/// written to it from `(file, pos)` on, read from the binlog as a replica.
async fn binlog_rows(
    db: &MariaDatabase,
    table: &str,
    (file, pos): (String, u64),
    rows: usize,
) -> (TableMapEvent<'static>, Vec<Vec<BinlogValue<'static>>>) {
    let mut conn = db.conn().await;
    conn.query_drop("SET @mariadb_slave_capability=4").await.unwrap();
    let request = BinlogStreamRequest::new(server_id())
        .with_filename(file.as_bytes())
        .with_pos(pos);
    let mut stream = conn.get_binlog_stream(request).await.unwrap();
    let read = async {
        let mut tme: Option<TableMapEvent<'static>> = None;
        let mut out = Vec::new();
        while out.len() < rows {
            let event = stream.next().await.expect("binlog stream ended").unwrap();
            match event.read_data() {
                Ok(Some(EventData::TableMapEvent(t))) if t.database_name() == db.name && t.table_name() == table => {
                    tme = Some(t.into_owned());
                }
                Ok(Some(EventData::RowsEvent(rows_event))) => {
                    let Some(t) = tme.as_ref().filter(|t| t.table_id() == rows_event.table_id()) else {
                        continue;
                    };
                    for row in rows_event.rows(t) {
                        let (_, after) = row.unwrap();
                        out.push(after.expect("an insert has an after image").unwrap());
                    }
                }
                _ => {}
            }
        }
        (tme.expect("a table map before the rows"), out)
    };
    let got = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("timed out reading {rows} rows of {table} from the binlog"));
    stream.close().await.ok();
    got
}

/// The columns and primary key of `table` as `information_schema` describes them.
async fn schema_columns(conn: &mut mysql_async::Conn, db: &str, table: &str) -> (Vec<SourceColumn>, Vec<usize>) {
    type Row = (String, String, String, Option<String>, String, Option<String>, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_KEY \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .unwrap();
    let mut key = Vec::new();
    let columns = rows
        .into_iter()
        .enumerate()
        .map(
            |(i, (name, column_type, data_type, charset, nullable, default, column_key))| {
                if column_key == "PRI" {
                    key.push(i);
                }
                types::from_information_schema(
                    &name,
                    &column_type,
                    &data_type,
                    charset.as_deref(),
                    nullable == "YES",
                    default,
                )
                .unwrap_or_else(|e| panic!("{e}"))
            },
        )
        .collect();
    (columns, key)
}

/// One column of the every-type table: its DDL type, and values as SQL
/// literals with the Datum each must read as. Row `i` holds value `i`; a
/// column with fewer values is NULL in later rows (or repeats its last value
/// when `NOT NULL`).
struct Col {
    name: &'static str,
    ddl: &'static str,
    values: Vec<(String, Datum)>,
}

fn col(name: &'static str, ddl: &'static str, values: Vec<(&str, Datum)>) -> Col {
    Col {
        name,
        ddl,
        values: values.into_iter().map(|(sql, d)| (sql.to_owned(), d)).collect(),
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

fn date(y: i64, m: i64, d: i64) -> Datum {
    Datum::Date(i32::try_from(days(y, m, d)).unwrap())
}

fn ts(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> Datum {
    Datum::Timestamp(((days(y, mo, d) * 24 + h) * 60 + mi) * 60_000_000 + s * 1_000_000 + us)
}

fn dec(s: &str) -> Datum {
    Datum::Decimal(s.parse().unwrap())
}

fn text(s: &str) -> Datum {
    Datum::Text(s.to_owned())
}

fn time(neg: bool, h: i64, m: i64, s: i64, us: i64) -> Datum {
    let t = ((h * 60 + m) * 60 + s) * 1_000_000 + us;
    Datum::Time(if neg { -t } else { t })
}

/// MySQL's latin1 (cp1252, holes as C1 controls) as Unicode, written out.
const LATIN1_HIGH: &str = "€\u{81}‚ƒ„…†‡ˆ‰Š‹Œ\u{8d}Ž\u{8f}\u{90}‘’“”•–—˜™š›œ\u{9d}žŸ\u{a0}¡¢£¤¥¦§¨©ª«¬\u{ad}®¯°±²³´µ¶·¸¹º»¼½¾¿ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ";

fn every_type() -> Vec<Col> {
    let nines = |n: usize| "9".repeat(n);
    let d65 = format!("{}.{}", nines(35), nines(30));
    let d65_neg = format!("-{}", nines(65));
    let latin1_hex: String = (0x80..=0xffu8).map(|b| format!("{b:02X}")).collect();
    let ascii_printable: String = (0x20..0x7fu8).map(char::from).collect();
    let ascii_hex: String = (0x20..0x7fu8).map(|b| format!("{b:02X}")).collect();
    let long_text = "ü".repeat(3000);
    // POINT(1 2) with SRID 4326 as EWKB (little-endian, SRID flag, SRID, x, y).
    let point_ewkb = vec![
        1, 1, 0, 0, 0x20, 0xe6, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40,
    ];
    // POLYGON((0 0,1 0,1 1,0 0)), SRID 0, as plain WKB.
    let mut polygon_wkb = vec![1, 3, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0];
    for (x, y) in [(0.0f64, 0.0f64), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)] {
        polygon_wkb.extend_from_slice(&x.to_le_bytes());
        polygon_wkb.extend_from_slice(&y.to_le_bytes());
    }
    vec![
        col(
            "ti",
            "tinyint",
            vec![
                ("-128", Datum::Int(-128)),
                ("127", Datum::Int(127)),
                ("0", Datum::Int(0)),
            ],
        ),
        col(
            "tb",
            "tinyint(1)",
            vec![("1", Datum::Int(1)), ("0", Datum::Int(0)), ("-5", Datum::Int(-5))],
        ),
        col(
            "tu",
            "tinyint unsigned",
            vec![("0", Datum::Int(0)), ("255", Datum::Int(255))],
        ),
        col(
            "si",
            "smallint",
            vec![("-32768", Datum::Int(-32768)), ("32767", Datum::Int(32767))],
        ),
        col("su", "smallint unsigned", vec![("65535", Datum::Int(65535))]),
        col(
            "mi",
            "mediumint",
            vec![("-8388608", Datum::Int(-8_388_608)), ("8388607", Datum::Int(8_388_607))],
        ),
        col("mu", "mediumint unsigned", vec![("16777215", Datum::Int(16_777_215))]),
        col(
            "i",
            "int",
            vec![
                ("-2147483648", Datum::Int(-2_147_483_648)),
                ("2147483647", Datum::Int(2_147_483_647)),
            ],
        ),
        col("iu", "int unsigned", vec![("4294967295", Datum::Int(4_294_967_295))]),
        col(
            "bi",
            "bigint",
            vec![
                ("-9223372036854775808", Datum::Int(i64::MIN)),
                ("9223372036854775807", Datum::Int(i64::MAX)),
            ],
        ),
        col(
            "bu",
            "bigint unsigned",
            vec![("18446744073709551615", dec("18446744073709551615")), ("0", dec("0"))],
        ),
        Col {
            name: "d65",
            ddl: "decimal(65,30)",
            values: vec![
                (d65.clone(), dec(&d65)),
                (
                    "-0.000000000000000000000000000001".into(),
                    dec("-0.000000000000000000000000000001"),
                ),
                ("0".into(), dec("0.000000000000000000000000000000")),
            ],
        },
        Col {
            name: "d65_0",
            ddl: "decimal(65,0)",
            values: vec![(d65_neg.clone(), dec(&d65_neg))],
        },
        col(
            "d10_2",
            "decimal(10,2) unsigned",
            vec![("12345678.90", dec("12345678.90")), ("1.5", dec("1.50"))],
        ),
        col(
            "f",
            "float",
            vec![
                ("0.1", Datum::Float32(0.1)),
                ("3.4028234e38", Datum::Float32(f32::MAX)),
                ("-1.17549435e-38", Datum::Float32(-f32::MIN_POSITIVE)),
                ("16777217", Datum::Float32(16_777_216.0)),
                ("1.0000001", Datum::Float32(1.000_000_1)),
            ],
        ),
        col("f72", "float(7,2)", vec![("2.71828", Datum::Float32(2.72))]),
        col(
            "db",
            "double",
            vec![
                ("0.1", Datum::Float64(0.1)),
                ("1.7976931348623157e308", Datum::Float64(f64::MAX)),
                ("5e-324", Datum::Float64(5e-324)),
                ("123456789.123456789", Datum::Float64(123_456_789.123_456_79)),
            ],
        ),
        // DOUBLE(10,3) rounds on the way in, and keeps a double just below 1.235.
        col(
            "dd",
            "double(10,3)",
            vec![("1.23456", Datum::Float64(1.234_999_999_999_999_9))],
        ),
        col(
            "b1",
            "bit(1)",
            vec![("b'1'", Datum::Bool(true)), ("b'0'", Datum::Bool(false))],
        ),
        col("b5", "bit(5)", vec![("b'10101'", Datum::Bytes(vec![0x15]))]),
        col(
            "b64",
            "bit(64)",
            vec![
                ("0xFFFFFFFFFFFFFFFF", Datum::Bytes(vec![0xff; 8])),
                ("b'1'", Datum::Bytes(vec![0, 0, 0, 0, 0, 0, 0, 1])),
            ],
        ),
        col(
            "c",
            "char(5)",
            vec![("'ab'", text("ab")), ("''", text("")), ("'🚀'", text("🚀"))],
        ),
        col(
            "vc",
            "varchar(20)",
            vec![("'🚀 émoji ☃'", text("🚀 émoji ☃")), ("''", text(""))],
        ),
        Col {
            name: "tx",
            ddl: "text",
            values: vec![(format!("'{long_text}'"), text(&long_text))],
        },
        Col {
            name: "l1",
            ddl: "varchar(300) character set latin1",
            values: vec![
                (format!("X'{latin1_hex}'"), text(LATIN1_HIGH)),
                (format!("X'{ascii_hex}'"), text(&ascii_printable)),
                ("'é'".into(), text("é")),
            ],
        },
        col("l1c", "char(3) character set latin1", vec![("X'80FF'", text("€ÿ"))]),
        col(
            "u3",
            "varchar(10) character set utf8mb3",
            vec![("'héllo ☃'", text("héllo ☃"))],
        ),
        col("asc1", "varchar(5) character set ascii", vec![("'abc'", text("abc"))]),
        col("mt", "mediumtext", vec![("'m'", text("m"))]),
        col("lt", "longtext character set latin1", vec![("X'E9'", text("é"))]),
        col(
            "j",
            "json",
            vec![
                (
                    "'{\"a\": [1, 2.5, \"x\"], \"b\": null}'",
                    text("{\"a\": [1, 2.5, \"x\"], \"b\": null}"),
                ),
                ("'[]'", text("[]")),
            ],
        ),
        col("bn", "binary(4)", vec![("X'00FF'", Datum::Bytes(vec![0, 0xff, 0, 0]))]),
        col(
            "vb",
            "varbinary(10)",
            vec![("X''", Datum::Bytes(vec![])), ("X'00'", Datum::Bytes(vec![0]))],
        ),
        col(
            "bl",
            "blob",
            vec![("X'DEADBEEF'", Datum::Bytes(vec![0xde, 0xad, 0xbe, 0xef]))],
        ),
        col("tbl", "tinyblob", vec![("X'00'", Datum::Bytes(vec![0]))]),
        col(
            "dt",
            "date",
            vec![
                ("'1000-01-01'", date(1000, 1, 1)),
                ("'9999-12-31'", date(9999, 12, 31)),
                ("'2024-02-29'", date(2024, 2, 29)),
                ("'1969-12-31'", date(1969, 12, 31)),
                ("'0000-01-01'", date(0, 1, 1)),
            ],
        ),
        col(
            "dtz",
            "date null",
            vec![
                ("'0000-00-00'", Datum::Null),
                ("'2020-00-15'", Datum::Null),
                ("'2020-02-30'", Datum::Null),
                ("'2020-01-00'", Datum::Null),
            ],
        ),
        col("dtz_nn", "date not null", vec![("'0000-00-00'", Datum::Date(0))]),
        col(
            "dtm",
            "datetime",
            vec![
                ("'1000-01-01 00:00:00'", ts(1000, 1, 1, 0, 0, 0, 0)),
                ("'9999-12-31 23:59:59'", ts(9999, 12, 31, 23, 59, 59, 0)),
            ],
        ),
        col(
            "dtm6",
            "datetime(6)",
            vec![
                ("'2024-02-29 23:59:59.999999'", ts(2024, 2, 29, 23, 59, 59, 999_999)),
                ("'1969-12-31 23:59:59.000001'", ts(1969, 12, 31, 23, 59, 59, 1)),
                ("'9999-12-31 23:59:59.999999'", ts(9999, 12, 31, 23, 59, 59, 999_999)),
            ],
        ),
        col(
            "dtm3",
            "datetime(3)",
            vec![("'2000-01-01 00:00:00.5'", ts(2000, 1, 1, 0, 0, 0, 500_000))],
        ),
        col(
            "dtmz",
            "datetime null",
            vec![
                ("'0000-00-00 00:00:00'", Datum::Null),
                ("'2020-00-01 10:00:00'", Datum::Null),
            ],
        ),
        col(
            "dtmz_nn",
            "datetime not null",
            vec![("'0000-00-00 00:00:00'", Datum::Timestamp(0))],
        ),
        // Written in a +05:30 session: the instants are 5 h 30 min earlier in UTC.
        col(
            "tsp",
            "timestamp null",
            vec![
                ("'2024-01-01 05:30:00'", ts(2024, 1, 1, 0, 0, 0, 0)),
                ("'1970-01-01 05:30:01'", Datum::Timestamp(1_000_000)),
                ("'2038-01-19 08:44:07'", Datum::Timestamp(2_147_483_647_000_000)),
            ],
        ),
        col(
            "ts6",
            "timestamp(6) null",
            vec![("'2024-06-01 12:00:00.123456'", ts(2024, 6, 1, 6, 30, 0, 123_456))],
        ),
        col("tsz", "timestamp null", vec![("'0000-00-00 00:00:00'", Datum::Null)]),
        col(
            "tsz_nn",
            "timestamp not null default '2000-01-01 00:00:00'",
            vec![("'0000-00-00 00:00:00'", Datum::Timestamp(0))],
        ),
        col(
            "tm",
            "time",
            vec![
                ("'-838:59:59'", time(true, 838, 59, 59, 0)),
                ("'838:59:59'", time(false, 838, 59, 59, 0)),
                ("'00:00:00'", time(false, 0, 0, 0, 0)),
            ],
        ),
        col(
            "tm6",
            "time(6)",
            vec![
                ("'-838:59:59.000000'", time(true, 838, 59, 59, 0)),
                ("'-00:00:00.5'", time(true, 0, 0, 0, 500_000)),
                ("'12:34:56.000001'", time(false, 12, 34, 56, 1)),
                ("'100:00:00'", time(false, 100, 0, 0, 0)),
            ],
        ),
        col(
            "y",
            "year",
            vec![
                ("0", Datum::Int(0)),
                ("1901", Datum::Int(1901)),
                ("2155", Datum::Int(2155)),
            ],
        ),
        col(
            "e",
            "enum('a','b''c','x\\\\y','é') character set latin1",
            vec![
                ("'b''c'", text("b'c")),
                ("'é'", text("é")),
                ("'x\\\\y'", text("x\\y")),
                ("'nope'", text("")),
            ],
        ),
        col(
            "s",
            "set('r','g','b')",
            vec![("'b,r'", text("r,b")), ("''", text("")), ("'r,g,b'", text("r,g,b"))],
        ),
        Col {
            name: "p",
            ddl: "point",
            values: vec![("ST_GeomFromText('POINT(1 2)', 4326)".into(), Datum::Bytes(point_ewkb))],
        },
        Col {
            name: "pg",
            ddl: "polygon",
            values: vec![(
                "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')".into(),
                Datum::Bytes(polygon_wkb),
            )],
        },
        col("g", "geometry", vec![]),
        // Last, so a charset read for the wrong column would show here.
        col("l1_last", "varchar(5) character set latin1", vec![("X'A3'", text("£"))]),
        // After YEAR: MariaDB gives YEAR no signedness bit, MySQL does.
        col(
            "tail_u",
            "int unsigned",
            vec![("4294967295", Datum::Int(4_294_967_295))],
        ),
        col("tail_m", "mediumint", vec![("-1", Datum::Int(-1))]),
        col("tail_d", "decimal(5,2)", vec![("-1.5", dec("-1.50"))]),
    ]
}

const ROWS: usize = 5;

fn not_null(c: &Col) -> bool {
    c.ddl.contains("not null")
}

/// Row `row`'s SQL literal and expected Datum for column `c`.
fn cell(c: &Col, row: usize) -> (String, Datum) {
    match c.values.get(row) {
        Some(v) => v.clone(),
        None if not_null(c) => c.values.last().cloned().unwrap(),
        None => ("NULL".into(), Datum::Null),
    }
}

async fn create_every_type(db: &MariaDatabase) -> Vec<Col> {
    let cols = every_type();
    let ddl: Vec<String> = cols.iter().map(|c| format!("`{}` {}", c.name, c.ddl)).collect();
    db.execute(&format!(
        "CREATE TABLE every_type (id int NOT NULL, {}, PRIMARY KEY (id))",
        ddl.join(", ")
    ))
    .await;
    cols
}

async fn insert_every_type(conn: &mut mysql_async::Conn, cols: &[Col]) {
    let rows: Vec<String> = (0..ROWS)
        .map(|r| {
            let values: Vec<String> = cols.iter().map(|c| cell(c, r).0).collect();
            format!("({r}, {})", values.join(", "))
        })
        .collect();
    let names: Vec<String> = cols.iter().map(|c| format!("`{}`", c.name)).collect();
    conn.query_drop(format!(
        "INSERT INTO every_type (id, {}) VALUES {}",
        names.join(", "),
        rows.join(", ")
    ))
    .await
    .unwrap();
}

/// A connection that may write zero and invalid dates, in a +05:30 session.
async fn permissive_conn(db: &MariaDatabase) -> mysql_async::Conn {
    let mut conn = db.conn().await;
    conn.query_drop("SET time_zone = '+05:30', sql_mode = 'ALLOW_INVALID_DATES'")
        .await
        .unwrap();
    conn
}

#[tokio::test]
async fn information_schema_and_table_map_agree() {
    let db = MariaDatabase::create().await;
    let cols = create_every_type(&db).await;
    db.execute("CREATE TABLE two_keys (b varchar(3) NOT NULL, a int NOT NULL, v text, PRIMARY KEY (a, b))")
        .await;
    let mut conn = permissive_conn(&db).await;
    let start = binlog_end(&mut conn).await;
    insert_every_type(&mut conn, &cols).await;
    conn.query_drop("INSERT INTO two_keys VALUES ('x', 1, 'v')")
        .await
        .unwrap();

    let (schema, schema_key) = schema_columns(&mut conn, &db.name, "every_type").await;
    let (tme, _) = binlog_rows(&db, "every_type", start.clone(), ROWS).await;
    let (streamed, streamed_key) = types::from_table_map(&tme).unwrap();
    assert_eq!(schema.len(), cols.len() + 1);
    for (s, b) in schema.iter().zip(&streamed) {
        assert_eq!(s.name, b.name);
        assert_eq!(
            s.kind, b.kind,
            "column {}: {} vs {}",
            s.name, s.source_type, b.source_type
        );
        assert_eq!(s.nullable, b.nullable, "column {}", s.name);
        assert_eq!(types::column(s).data_type, types::column(b).data_type);
    }
    assert!(types::same_shape(&schema, &streamed));
    assert_eq!(schema_key, vec![0]);
    assert_eq!(streamed_key, vec![0]);

    // Where the server's text has no display width, the table map's is the same.
    for (s, b) in schema.iter().zip(&streamed) {
        let plain = [
            "varchar(20)",
            "char(5)",
            "decimal(65,30)",
            "datetime(6)",
            "time(6)",
            "bit(64)",
            "point",
        ];
        if plain.contains(&s.source_type.as_str()) || matches!(s.kind, Kind::Enum { .. } | Kind::Set { .. }) {
            assert_eq!(s.source_type, b.source_type, "column {}", s.name);
        }
    }
    // The mapping, column by column.
    let by_name = |n: &str| types::column(schema.iter().find(|c| c.name == n).unwrap());
    for (name, ty) in [
        ("tb", DataType::Int16),
        ("su", DataType::Int32),
        ("iu", DataType::Int64),
        ("f", DataType::Float32),
        ("b1", DataType::Boolean),
        ("b64", DataType::Bytes),
        ("l1", DataType::Text),
        ("j", DataType::Text),
        ("bl", DataType::Bytes),
        ("dtm6", DataType::Timestamp),
        ("ts6", DataType::TimestampTz),
        ("tm6", DataType::Duration),
        ("y", DataType::Int32),
        ("e", DataType::Text),
        ("p", DataType::Bytes),
    ] {
        assert_eq!(by_name(name).data_type, ty, "{name}");
    }
    assert_eq!(
        by_name("bu").data_type,
        DataType::Decimal {
            precision: 20,
            scale: 0,
            special: false
        }
    );
    assert_eq!(by_name("j").source_type, "longtext");

    // A composite key in key order, not column order.
    let (_, schema_key) = schema_columns(&mut conn, &db.name, "two_keys").await;
    let (tme, _) = binlog_rows(&db, "two_keys", start, 1).await;
    let (streamed, streamed_key) = types::from_table_map(&tme).unwrap();
    assert_eq!(
        streamed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["b", "a", "v"]
    );
    assert_eq!(streamed_key, vec![1, 0]);
    assert_eq!(schema_key.len(), 2);
}

#[tokio::test]
async fn snapshot_and_binlog_read_the_same_values() {
    let db = MariaDatabase::create().await;
    let cols = create_every_type(&db).await;
    let mut conn = permissive_conn(&db).await;
    let start = binlog_end(&mut conn).await;
    insert_every_type(&mut conn, &cols).await;

    let (schema, _) = schema_columns(&mut conn, &db.name, "every_type").await;
    // The snapshot's session: UTC, each column selected as select_expr says.
    let mut snap = db.conn().await;
    snap.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let exprs: Vec<String> = schema.iter().map(types::select_expr).collect();
    let rows: Vec<mysql_async::Row> = snap
        .query(format!("SELECT {} FROM every_type ORDER BY id", exprs.join(", ")))
        .await
        .unwrap();
    assert_eq!(rows.len(), ROWS);
    let (tme, binlog) = binlog_rows(&db, "every_type", start, ROWS).await;
    let (streamed, _) = types::from_table_map(&tme).unwrap();

    let mut checked = 0;
    for (r, (row, binlog_row)) in rows.iter().zip(&binlog).enumerate() {
        for (i, c) in schema.iter().enumerate() {
            let expected = if i == 0 {
                Datum::Int(i64::try_from(r).unwrap())
            } else {
                cell(&cols[i - 1], r).1
            };
            let snapshot = match row.as_ref(i).unwrap() {
                mysql_async::Value::NULL => Datum::Null,
                mysql_async::Value::Bytes(b) => {
                    types::from_text(&c.kind, b).unwrap_or_else(|e| panic!("row {r} column {}: snapshot: {e}", c.name))
                }
                other => panic!("row {r} column {}: text protocol gave {other:?}", c.name),
            };
            let streamed_value = types::from_binlog(&streamed[i].kind, &binlog_row[i])
                .unwrap_or_else(|e| panic!("row {r} column {}: binlog: {e}", c.name));
            assert_eq!(
                snapshot, expected,
                "row {r} column {} ({}) from the snapshot",
                c.name, c.source_type
            );
            assert_eq!(
                streamed_value, expected,
                "row {r} column {} ({}) from the binlog",
                c.name, c.source_type
            );
            checked += 1;
        }
    }
    assert_eq!(checked, ROWS * schema.len());
}

#[tokio::test]
async fn unsupported_types_are_refused_by_name() {
    let db = MariaDatabase::create().await;
    db.execute("CREATE TABLE odd (id int PRIMARY KEY, who uuid, addr inet6)")
        .await;
    let mut conn = db.conn().await;
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'odd' AND COLUMN_NAME <> 'id'",
            (&db.name,),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (name, column_type, data_type) in rows {
        let err = types::from_information_schema(&name, &column_type, &data_type, None, true, None).unwrap_err();
        assert!(err.0.contains(&name) && err.0.contains(&column_type), "{err}");
    }
}
