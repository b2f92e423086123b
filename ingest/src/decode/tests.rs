use super::*;

fn ok(s: &str) -> Event<'_> {
    match decode_event(s.as_bytes(), None) {
        Ok(e) => e,
        Err(r) => panic!("{s} was rejected: {r}"),
    }
}

fn reason(s: &str) -> RejectReason {
    match decode_event(s.as_bytes(), None) {
        Ok(e) => panic!("{s} was accepted as {e:?}"),
        Err(r) => r.reason,
    }
}

#[test]
fn far_future_times_are_refused_and_fallbacks_range_checked() {
    let limit = MaxFuture::default();
    assert_eq!(limit.check(1_000 + 3_600_000, 1_000), Ok(()));
    let e = limit.check(2 * 86_400_000, 0).unwrap_err();
    assert_eq!(e.reason, RejectReason::FutureTimestamp);
    assert!(e.detail.contains("2d ahead"), "{}", e.detail);
    let r = decode_event(br#"{"user_id":"u","emoji":"x"}"#, Some(-5)).unwrap_err();
    assert_eq!(r.reason, RejectReason::InvalidTimestamp);
    assert!(r.detail.contains("message timestamp"), "{}", r.detail);
    let r = decode_event(br#"{"user_id":"u","emoji":"x"}"#, Some(MAX_TS_MS + 1));
    assert_eq!(r.unwrap_err().reason, RejectReason::InvalidTimestamp);
}

#[test]
fn canonical_fields_are_read() {
    let e = ok(
        r#"{"user_id":"u1","emoji":"🔥","event_type":"emoji","tier":"pro","amount":2.5,"ts":1000,"extra":[1,{"a":2}]}"#,
    );
    assert_eq!(e.user_id, "u1");
    assert_eq!(e.emoji.as_deref(), Some("🔥"));
    assert_eq!(e.event_type, "emoji");
    assert_eq!(e.tier.as_deref(), Some("pro"));
    assert_eq!(e.amount, Some(2.5));
    assert_eq!(e.ts, 1000);
}

#[test]
fn every_alias_fills_its_field() {
    let e = ok(
        r#"{"user_id":"u","emoji_type":"👍","event":"click","user_tier":"vip","timestamp":"1970-01-01T00:00:01.5Z"}"#,
    );
    assert_eq!(e.emoji.as_deref(), Some("👍"));
    assert_eq!(e.event_type, "click");
    assert_eq!(e.tier.as_deref(), Some("vip"));
    assert_eq!(e.ts, 1500);
    assert_eq!(ok(r#"{"user_id":"u","emoji":"x","timestamp":42}"#).ts, 42);
}

#[test]
fn event_type_defaults_to_emoji_only_with_an_emoji() {
    assert_eq!(
        ok(r#"{"user_id":"u","emoji":"x","ts":1}"#).event_type,
        "emoji"
    );
    assert_eq!(
        reason(r#"{"user_id":"u","ts":1}"#),
        RejectReason::MissingField
    );
}

#[test]
fn escaped_strings_and_offsets_decode() {
    let e = ok(r#"{"user_id":"a\"b","emoji":"\ud83d\udd25","ts":"2026-01-01T01:00:00+01:00"}"#);
    assert_eq!(e.user_id, "a\"b");
    assert_eq!(e.emoji.as_deref(), Some("🔥"));
    assert_eq!(e.ts, 1_767_225_600_000);
}

#[test]
fn null_is_absent() {
    let e = ok(r#"{"user_id":"u","emoji":"x","tier":null,"amount":null,"ts":1}"#);
    assert_eq!(e.tier, None);
    assert_eq!(e.amount, None);
    assert_eq!(
        reason(r#"{"user_id":null,"emoji":"x","ts":1}"#),
        RejectReason::MissingField
    );
}

#[test]
fn fallback_time_is_used_only_when_missing() {
    let line = br#"{"user_id":"u","emoji":"x"}"#;
    assert_eq!(decode_event(line, Some(77)).map(|e| e.ts), Ok(77));
    let line = br#"{"user_id":"u","emoji":"x","ts":5}"#;
    assert_eq!(decode_event(line, Some(77)).map(|e| e.ts), Ok(5));
}

#[test]
fn every_reason_is_reachable() {
    let big = format!(
        r#"{{"user_id":"u","emoji":"x","ts":1,"pad":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES)
    );
    assert_eq!(reason(&big), RejectReason::TooLarge);
    assert_eq!(reason(r#"{"user_id":"u","#), RejectReason::InvalidJson);
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":1} {}"#),
        RejectReason::InvalidJson
    );
    assert_eq!(reason("[1,2]"), RejectReason::NotAnObject);
    assert_eq!(reason("\"hi\""), RejectReason::NotAnObject);
    assert_eq!(
        reason(r#"{"emoji":"x","ts":1}"#),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x"}"#),
        RejectReason::MissingField
    );
    assert_eq!(
        reason(r#"{"user_id":7,"emoji":"x","ts":1}"#),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":1.5}"#),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":1,"amount":"3"}"#),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":true,"ts":1}"#),
        RejectReason::WrongType
    );
    assert_eq!(
        reason(r#"{"user_id":"","emoji":"x","ts":1}"#),
        RejectReason::EmptyField
    );
    let long_user = format!(r#"{{"user_id":"{}","emoji":"x","ts":1}}"#, "u".repeat(129));
    assert_eq!(reason(&long_user), RejectReason::FieldTooLong);
    let long_emoji = format!(r#"{{"user_id":"u","emoji":"{}","ts":1}}"#, "e".repeat(65));
    assert_eq!(reason(&long_emoji), RejectReason::FieldTooLong);
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"a\nb","ts":1}"#),
        RejectReason::ControlCharacter
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":"yesterday"}"#),
        RejectReason::InvalidTimestamp
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":-1}"#),
        RejectReason::InvalidTimestamp
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":18446744073709551615}"#),
        RejectReason::InvalidTimestamp
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","emoji_type":"y","ts":1}"#),
        RejectReason::DuplicateField
    );
    assert_eq!(
        reason(r#"{"user_id":"u","emoji":"x","ts":1,"timestamp":2}"#),
        RejectReason::DuplicateField
    );
}

#[test]
fn a_null_is_absent_beside_its_alias_too() {
    let e = ok(r#"{"user_id":"u","ts":null,"timestamp":7,"emoji":null,"emoji_type":"x"}"#);
    assert_eq!((e.ts, e.emoji.as_deref()), (7, Some("x")));
    let e = ok(r#"{"user_id":"u","emoji":"x","emoji_type":null,"ts":5,"ts":null}"#);
    assert_eq!((e.ts, e.emoji.as_deref()), (5, Some("x")));
    assert_eq!(
        reason(r#"{"user_id":null,"emoji":"x","ts":1}"#),
        RejectReason::MissingField
    );
}

#[test]
fn limits_are_inclusive() {
    let user = "u".repeat(MAX_USER_ID_BYTES);
    let emoji = "e".repeat(MAX_LABEL_BYTES);
    let line = format!(r#"{{"user_id":"{user}","emoji":"{emoji}","ts":{MAX_TS_MS}}}"#);
    assert_eq!(ok(&line).user_id.len(), MAX_USER_ID_BYTES);
}

#[test]
fn invalid_json_after_a_problem_is_still_invalid_json() {
    assert_eq!(reason(r#"{"user_id":7, oops}"#), RejectReason::InvalidJson);
}

#[test]
fn huge_numbers_are_rejected_not_infinite() {
    let r = reason(r#"{"user_id":"u","emoji":"x","ts":1,"amount":1e999}"#);
    assert_eq!(r, RejectReason::InvalidJson);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        let _ = decode_event(&bytes, None);
    }
}
