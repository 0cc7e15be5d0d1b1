//! The Confluent wire format: byte `0x00`, the schema id as 4 bytes big-endian,
//! then the Avro binary datum. Every Ferry key and value is framed this way, so
//! Confluent's deserializers (and kcat `-s avro`) read Ferry topics as they are.

/// The first byte of every framed message.
pub const MAGIC: u8 = 0;

/// Length of the header before the Avro datum.
pub const HEADER_LEN: usize = 5;

/// A message that is not in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is too short for the 5-byte Confluent header")]
    TooShort(usize),
    #[error("message starts with byte {0:#04x}, not the Confluent magic byte 0x00")]
    BadMagic(u8),
}

/// Frames an Avro datum with its schema id.
pub fn encode(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    frame_into(schema_id, &mut out);
    out.extend_from_slice(datum);
    out
}

/// Appends the header of `schema_id` to `out`, for a datum written straight
/// after it (no second copy of the datum).
pub fn frame_into(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed message into its schema id and Avro datum.
pub fn decode(message: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if message.len() < HEADER_LEN {
        return Err(WireError::TooShort(message.len()));
    }
    if message[0] != MAGIC {
        return Err(WireError::BadMagic(message[0]));
    }
    let id = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    Ok((id, &message[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout() {
        assert_eq!(encode(0x0102_0304, b"xy"), vec![0, 1, 2, 3, 4, b'x', b'y']);
        assert_eq!(decode(&[0, 0, 0, 0, 42]), Ok((42, &[][..])));
        assert_eq!(decode(&[0, 0, 0, 1]), Err(WireError::TooShort(4)));
        assert_eq!(decode(&[]), Err(WireError::TooShort(0)));
        assert_eq!(decode(&[1, 0, 0, 0, 1, 9]), Err(WireError::BadMagic(1)));
    }

    proptest! {
        #[test]
        fn frames_round_trip(id in any::<u32>(), datum in proptest::collection::vec(any::<u8>(), 0..64)) {
            let framed = encode(id, &datum);
            prop_assert_eq!(decode(&framed), Ok((id, &datum[..])));
        }
    }
}
