//! Intsets: the blob of a small set of integers (`RdbType::SetIntset`, code 11).
//!
//! ```text
//! +------------------+----------------+-------------------------------------+
//! | encoding [4 LE]  | length [4 LE]  | length integers, each `encoding`    |
//! | 2, 4 or 8        |                | bytes, signed LE, strictly ascending |
//! +------------------+----------------+-------------------------------------+
//! ```
//! [`parse`] checks what Redis's `intsetValidateIntegrity` checks with deep validation on: a
//! known width, a size of exactly header + length × width, a non-empty set, and strictly
//! ascending members (so no duplicates).

/// Bytes of the header.
const HEADER_SIZE: usize = 8;

/// Checks `blob` and returns its members in ascending order.
pub(crate) fn parse(blob: &[u8]) -> Result<impl ExactSizeIterator<Item = i64> + '_, String> {
    let (Some(width), Some(length)) = (
        blob.get(..4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes),
        blob.get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes),
    ) else {
        return Err(format!(
            "intset of {} bytes is shorter than its header",
            blob.len()
        ));
    };
    let width = match width {
        2 => 2usize,
        4 => 4,
        8 => 8,
        other => return Err(format!("intset has unknown integer width {other}")),
    };
    let body = blob.get(HEADER_SIZE..).unwrap_or_default();
    if u64::from(length).checked_mul(width as u64) != Some(body.len() as u64) {
        return Err(format!(
            "intset says {length} integers of {width} bytes but holds {} bytes after its header",
            body.len()
        ));
    }
    if length == 0 {
        return Err("intset is empty".to_owned());
    }
    let member = move |chunk: &[u8]| -> i64 {
        let raw = chunk
            .iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
        let shift = 64 - 8 * width as u32;
        ((raw << shift) as i64) >> shift
    };
    let mut previous: Option<i64> = None;
    for (index, chunk) in body.chunks_exact(width).enumerate() {
        let value = member(chunk);
        if previous.is_some_and(|previous| previous >= value) {
            return Err(format!(
                "intset member {index} ({value}) is not above the one before it"
            ));
        }
        previous = Some(value);
    }
    Ok(body.chunks_exact(width).map(member))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(width: u32, members: &[i64]) -> Vec<u8> {
        let mut out = width.to_le_bytes().to_vec();
        out.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for member in members {
            out.extend_from_slice(&member.to_le_bytes()[..width as usize]);
        }
        out
    }

    #[test]
    fn redis_bytes_and_every_width_parse() {
        // `SADD set 1 2 3`: the blob of redis-7.0-type-set-intset.rdb.
        let blob = b"\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00";
        assert_eq!(parse(blob).unwrap().collect::<Vec<_>>(), [1, 2, 3]);
        for (width, members) in [
            (2, vec![i64::from(i16::MIN), -1, 0, i64::from(i16::MAX)]),
            (4, vec![i64::from(i32::MIN), 0, i64::from(i32::MAX)]),
            (8, vec![i64::MIN, -5, 7, i64::MAX]),
        ] {
            let blob = build(width, &members);
            assert_eq!(parse(&blob).unwrap().collect::<Vec<_>>(), members);
        }
    }

    #[test]
    fn malformed_intsets_are_refused() {
        let ok = build(4, &[1, 2, 3]);
        for len in 0..ok.len() {
            assert!(parse(&ok[..len]).is_err(), "prefix {len}");
        }
        assert!(
            parse(&build(3, &[1]))
                .err()
                .unwrap()
                .contains("unknown integer width 3")
        );
        assert_eq!(parse(&build(2, &[])).err().unwrap(), "intset is empty");
        assert!(
            parse(&build(2, &[1, 1]))
                .err()
                .unwrap()
                .contains("not above")
        );
        assert!(
            parse(&build(2, &[2, 1]))
                .err()
                .unwrap()
                .contains("not above")
        );
        // A length that lies, including one whose byte size overflows 32 bits.
        let mut lying = ok.clone();
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse(&lying).err().unwrap().contains("4294967295 integers"));
        let mut extra = ok;
        extra.push(0);
        assert!(parse(&extra).is_err());
    }
}
