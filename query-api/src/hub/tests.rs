//! The hub against what its subscribers must see.
use super::*;
use std::time::Duration;

fn event(p: i32, o: i64, emoji: &str) -> ShownEvent {
    ShownEvent {
        ts: 1_000 + o,
        partition: p,
        offset: o,
        user_id: format!("u{o}"),
        emoji: Some(emoji.into()),
        event_type: "emoji".into(),
        tier: None,
        amount: None,
    }
}

/// Filter "f" of these tests: the first filter the run started with.
const FIRE: FilterNo = FilterNo::Initial(0);

/// `events` as the workers deliver them, matched against "f" as a reader would.
fn delivery(events: Vec<ShownEvent>, positions: &[(i32, i64)]) -> Delivery {
    let events = events
        .into_iter()
        .map(|e| {
            let hit = fire().matches(&e.as_event());
            let filters: Vec<FilterNo> = if hit { vec![FIRE] } else { vec![] };
            (e, said(0, filters))
        })
        .collect();
    Delivery {
        as_of: 1,
        positions: positions.iter().copied().collect(),
        events,
        backfilled: Vec::new(),
    }
}

/// What a reader that had applied filter changes up to `applied` says `filters` matched.
fn said(applied: u64, filters: Vec<FilterNo>) -> Matched {
    Matched {
        applied,
        filters: filters.into(),
    }
}

fn fire() -> FilterSpec {
    FilterSpec {
        emojis: Some(vec!["🔥".into()]),
        ..FilterSpec::default()
    }
}

const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn drain(sub: &mut Subscription) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    while let Some(outs) = sub.next(Duration::from_millis(20), 100).await {
        let mut quiet = true;
        for o in outs {
            if let Out::Event(e, _) = o {
                got.push((e.event.partition, e.event.offset));
                quiet = false;
            }
        }
        if quiet {
            break;
        }
    }
    got
}

#[test]
fn cursors_round_trip_and_refuse_nonsense() {
    let c = Cursor::parse("0:15, 1:7").unwrap_or_default();
    assert_eq!(c.render(), "0:15,1:7");
    assert!(Cursor::parse("0-15").is_err());
    assert!(Cursor::parse("0:-1").is_err());
    assert_eq!(Cursor::parse("").map(|c| c.render()), Ok(String::new()));
}

#[tokio::test]
async fn a_resumed_subscriber_misses_nothing_and_gets_nothing_twice() {
    let hub = Hub::new([(0, 0), (1, 0)].into(), None, HubLimits::default());
    hub.add_filter("f", fire(), FIRE);
    let mut live = hub.subscribe(Some("f"), None, ADDR).unwrap();
    hub.deliver(delivery(
        vec![event(0, 0, "🔥"), event(1, 0, "👍"), event(1, 1, "🔥")],
        &[(0, 1), (1, 2)],
    ));
    assert_eq!(drain(&mut live).await, vec![(0, 0), (1, 1)]);
    let resume = Cursor::parse(&live.cursor()).unwrap_or_default();
    drop(live);
    hub.deliver(delivery(
        vec![event(0, 1, "🔥"), event(1, 2, "🔥")],
        &[(0, 2), (1, 3)],
    ));
    let mut back = hub.subscribe(Some("f"), Some(resume), ADDR).unwrap();
    hub.deliver(delivery(vec![event(0, 2, "🔥")], &[(0, 3), (1, 3)]));
    assert_eq!(drain(&mut back).await, vec![(0, 1), (1, 2), (0, 2)]);
}

#[tokio::test]
async fn the_hub_delivers_what_readers_matched_and_matches_only_what_they_had_not_applied() {
    let hub = Hub::new([(0, 0)].into(), None, HubLimits::default());
    // Added by filter change 3 while the run read.
    let added = FilterNo::Added(3);
    hub.add_filter("f", fire(), added);
    let mut sub = hub.subscribe(Some("f"), None, ADDR).unwrap();
    let events = vec![
        // Read before its reader applied change 3: the hub matches it by the definition.
        (event(0, 0, "🔥"), said(2, vec![])),
        (event(0, 1, "👍"), said(2, vec![])),
        // Read after: the reader's word stands (it counted these the same way).
        (event(0, 2, "🔥"), said(3, vec![added])),
        (event(0, 3, "🔥"), said(3, vec![])),
        (event(0, 4, "👍"), said(4, vec![added])),
        // A filter the hub does not know (deleted meanwhile) is passed over.
        (event(0, 5, "🔥"), said(4, vec![FilterNo::Added(1)])),
    ];
    hub.deliver(Delivery {
        as_of: 1,
        positions: [(0, 6)].into(),
        events,
        backfilled: Vec::new(),
    });
    assert_eq!(drain(&mut sub).await, vec![(0, 0), (0, 2), (0, 4)]);
    assert_eq!(hub.since("f"), Some(3));
    let recent: Vec<i64> = hub.recent("f", 10).iter().map(|e| e.event.offset).collect();
    assert_eq!(recent, vec![4, 2, 0], "newest first");
}

#[tokio::test]
async fn a_cursor_ahead_of_the_views_skips_what_it_had() {
    // After a restart the views read the topic again from its start: a client that
    // resumes before they catch up must not get again what it had.
    let hub = Hub::new([(0, 0)].into(), None, HubLimits::default());
    hub.add_filter("f", fire(), FIRE);
    let mut sub = hub
        .subscribe(Some("f"), Cursor::parse("0:2").ok(), ADDR)
        .unwrap();
    let events = (0..4).map(|o| event(0, o, "🔥")).collect();
    hub.deliver(delivery(events, &[(0, 4)]));
    assert_eq!(drain(&mut sub).await, vec![(0, 2), (0, 3)]);
}

#[tokio::test]
async fn live_from_now_starts_where_the_client_has_read_when_the_hub_lags() {
    // The views a client read (`seen`) cover partition 0 up to offset 2, and partition 1 the
    // hub has not heard of yet; the hub's delivery of them comes after the client subscribed.
    let hub = Hub::new([(0, 0)].into(), None, HubLimits::default());
    hub.add_filter("f", fire(), FIRE);
    let from = hub.live_cursor(&[(0, 2), (1, 1)].into());
    assert_eq!((from.next(0), from.next(1)), (2, 1));
    let mut sub = hub.subscribe(Some("f"), Some(from), ADDR).unwrap();
    let events = vec![
        event(0, 0, "🔥"),
        event(0, 1, "🔥"),
        event(0, 2, "🔥"),
        event(1, 0, "🔥"),
        event(1, 1, "🔥"),
    ];
    hub.deliver(delivery(events, &[(0, 3), (1, 2)]));
    assert_eq!(drain(&mut sub).await, vec![(0, 2), (1, 1)]);
    // Where the hub is ahead of what the client read, it starts where the hub is.
    let ahead = hub.live_cursor(&[(0, 1)].into());
    assert_eq!((ahead.next(0), ahead.next(1)), (3, 2));
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_and_told_where_to_resume() {
    let limits = HubLimits {
        buffer: 2,
        ..HubLimits::default()
    };
    let hub = Hub::new([(0, 0)].into(), None, limits);
    hub.add_filter("f", fire(), FIRE);
    let mut slow = hub.subscribe(Some("f"), None, ADDR).unwrap();
    let mut other = hub.subscribe(Some("f"), None, ADDR).unwrap();
    hub.deliver(delivery(
        vec![event(0, 0, "🔥"), event(0, 1, "🔥")],
        &[(0, 2)],
    ));
    assert_eq!(drain(&mut other).await.len(), 2);
    hub.deliver(delivery(vec![event(0, 2, "🔥")], &[(0, 3)]));
    assert_eq!(
        hub.stats().cut_off,
        1,
        "the full buffer is cut off, not waited for"
    );
    let mut last = Vec::new();
    while let Some(outs) = slow.next(Duration::from_millis(20), 100).await {
        last = outs;
    }
    match last.as_slice() {
        [Out::Closed { reason, cursor }] => {
            assert!(reason.contains("too slowly"), "{reason}");
            assert_eq!(cursor, "0:2");
        }
        other => panic!("expected a final message, got {other:?}"),
    }
    assert_eq!(drain(&mut other).await, vec![(0, 2)]);
}

#[tokio::test]
async fn without_the_log_an_old_cursor_is_answered_with_a_reset() {
    let limits = HubLimits {
        memory_events: 2,
        ..HubLimits::default()
    };
    let hub = Hub::new([(0, 0)].into(), None, limits);
    hub.add_filter("f", fire(), FIRE);
    let events = (0..5).map(|o| event(0, o, "🔥")).collect();
    hub.deliver(delivery(events, &[(0, 5)]));
    let mut sub = hub
        .subscribe(Some("f"), Cursor::parse("0:1").ok(), ADDR)
        .unwrap();
    let first = sub
        .next(Duration::from_millis(20), 100)
        .await
        .unwrap_or_default();
    assert!(
        matches!(
            first.as_slice(),
            [Out::Reset {
                requested: 1,
                restart: 3,
                ..
            }]
        ),
        "{first:?}"
    );
    assert_eq!(drain(&mut sub).await, vec![(0, 3), (0, 4)]);
}

#[test]
fn caps_refuse_subscribers_past_them() {
    let limits = HubLimits {
        max_per_address: 1,
        ..HubLimits::default()
    };
    let hub = Hub::new(BTreeMap::new(), None, limits);
    let first = hub.subscribe(None, None, ADDR);
    assert!(first.is_ok());
    assert!(matches!(
        hub.subscribe(None, None, ADDR),
        Err(SubscribeError::Busy(_))
    ));
    drop(first);
    assert!(
        hub.subscribe(None, None, ADDR).is_ok(),
        "a leaving subscriber frees its place"
    );
    assert!(matches!(
        hub.subscribe(Some("nope"), None, ADDR),
        Err(SubscribeError::NoFilter(_))
    ));
}
