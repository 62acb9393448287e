//! UUIDv7 ids for events and sessions: time-ordered, so a database index on them is append-only.

use uuid::Uuid;

use crate::Timestamp;

/// A fresh UUIDv7 taken from the wall clock, for live events.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// A UUIDv7 whose time bits come from `time` and whose remaining bits come from `entropy`.
///
/// Replays of a capture must produce the same ids, so the sensor derives `entropy` from the
/// packet (flow key, sequence) instead of the random number generator.
pub fn new_id_at(time: Timestamp, entropy: [u8; 10]) -> Uuid {
    let millis = u64::try_from(time.as_micros().div_euclid(1000)).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &entropy).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_at_is_deterministic_and_version_7() {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let a = new_id_at(t, [7; 10]);
        assert_eq!(a, new_id_at(t, [7; 10]));
        assert_eq!(a.get_version_num(), 7);
        assert!(a.to_string().starts_with("018bcfe5-687b-7"), "{a}");
    }

    #[test]
    fn live_ids_are_version_7_and_ordered() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
    }
}
