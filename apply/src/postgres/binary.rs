//! Rows in `COPY`'s binary form, where every column copied allows it.
//!
//! The server reads binary `COPY` with each type's receive function, where
//! the text form goes through its input function's parsing (a third of the
//! server's work of reading the bench's wide rows; see
//! [`ferry_core::pgbinary`], which writes the values).
//!
//! Binary is exact only where Ferry knows the wire form of the target
//! column's type, so a `COPY` is binary only when every column it copies is
//! one of the pairs of [`binary_form`] (the type Ferry carries, the target
//! column's type), and only when every value of the batch has its binary
//! form; anything else (an enum, an array, a domain, a `varchar` column fed
//! numbers, a value out of a narrower column's range) goes in the text form
//! of [`super::text`], where PostgreSQL's input functions judge every value
//! and report any error in their own words. What the receive functions
//! check (lengths of `varchar(n)`, a `numeric(p,s)`'s precision and scale, a
//! date's range) they check as the input functions do.
//!
//! The snapshot's `binary_form` (`capture/src/postgres/binary.rs`) answers
//! another question — which source columns to read in binary, by the
//! source's own type names with their modifiers — so the two lists are kept
//! apart.

use ferry_core::meta::DataType;
use ferry_core::pgbinary::{encode, Binary, HEADER};
use ferry_core::value::Datum;

/// The binary form of values of `data_type` for a target column of type
/// `cast` (`format_type` without modifier), where apply writes one.
pub fn binary_form(data_type: DataType, cast: &str) -> Option<Binary> {
    use DataType as D;
    Some(match (data_type, cast) {
        (D::Boolean, "boolean") => Binary::Bool,
        (D::Int16 | D::Int32 | D::Int64, "smallint") => Binary::Int2,
        (D::Int16 | D::Int32 | D::Int64, "integer") => Binary::Int4,
        (D::Int16 | D::Int32 | D::Int64, "bigint") => Binary::Int8,
        (D::Float32, "real") => Binary::Float4,
        (D::Float64, "double precision") => Binary::Float8,
        (D::Decimal { .. } | D::Numeric, "numeric") => Binary::Numeric,
        (D::Text, "text" | "character varying" | "bpchar" | "json") => Binary::Text,
        (D::Text, "jsonb") => Binary::Jsonb,
        (D::Bytes, "bytea") => Binary::Bytea,
        (D::Date, "date") => Binary::Date,
        (D::Time, "time without time zone") => Binary::Time,
        (D::Timestamp | D::TimestampTz, "timestamp without time zone" | "timestamp with time zone") => {
            Binary::Timestamp
        }
        (D::Uuid, "uuid") => Binary::Uuid,
        _ => return None,
    })
}

/// `rows`' values in the schema columns `columns`, written as `forms` (one
/// per column copied), as binary `COPY` data; `None` when a value has no
/// binary form here (the caller then copies the rows as text).
pub fn copy_binary(rows: &[&[Datum]], columns: &[usize], forms: &[Binary]) -> Option<Vec<u8>> {
    let fields = i16::try_from(columns.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER.len() + rows.len() * (2 + columns.len() * 12) + 2);
    out.extend_from_slice(HEADER);
    let mut digits = Vec::new();
    for row in rows {
        out.extend_from_slice(&fields.to_be_bytes());
        for (&c, &form) in columns.iter().zip(forms) {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            if !encode(&row[c], form, &mut out, &mut digits)? {
                out[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let len = i32::try_from(out.len() - at - 4).ok()?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_nulls_and_framing() {
        let row = [Datum::Int(7), Datum::Null, Datum::Text("é".into())];
        let out = copy_binary(&[&row], &[0, 1, 2], &[Binary::Int8, Binary::Text, Binary::Text]).unwrap();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&8i32.to_be_bytes());
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&(-1i32).to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice("é".as_bytes());
        want.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(copy_binary(&[&row], &[0], &[Binary::Uuid]), None);
    }
}
