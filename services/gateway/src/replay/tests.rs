use std::time::Instant;

use super::*;

fn f(seq: u64) -> Frame {
    Frame {
        topic: 1,
        seq,
        snapshot: false,
        text: format!("e{seq}").into(),
        received: Instant::now(),
    }
}

/// A log of `cap` frames with a budget it never reaches.
fn event_log(cap: usize) -> EventLog {
    EventLog::new(cap, CacheBudget::new(usize::MAX, Gauge::default()))
}

fn seqs(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Event(f) => f.seq.to_string(),
            Item::Reset { oldest, reason } => format!("reset({oldest:?},{reason:?})"),
        })
        .collect()
}

fn stored(frames: &[u64]) -> Stored {
    Stored {
        frames: frames.iter().map(|&s| f(s)).collect(),
        ..Default::default()
    }
}

/// What the stream answers when it retains no event of the topic.
fn none_retained() -> Stored {
    Stored {
        none_retained: true,
        ..Default::default()
    }
}

#[test]
fn a_subscriber_is_told_the_head_as_it_joined_not_as_it_is_answered() {
    let (a, b, c, d): (ConnId, ConnId, ConnId, ConnId) = (1, 2, 3, 4);
    let mut log = event_log(4);
    // Joined before anything was known: the first event delivered settles it (it got that one).
    log.await_baseline(a);
    log.advance(&f(10));
    log.advance(&f(11));
    // Joined with the head known: that head, whatever is delivered before the answer.
    log.await_baseline(b);
    log.advance(&f(12));
    assert_eq!(
        (log.take_baseline(a), log.take_baseline(b)),
        (Some(9), Some(11))
    );
    assert_eq!(log.take_baseline(a), None, "taken once");

    // Joined before the read of the newest stored event: the read settles it.
    let mut log = event_log(4);
    log.await_baseline(c);
    log.learn_head(40);
    log.advance(&f(41));
    assert_eq!(log.take_baseline(c), Some(40));
    // A read that found none of the topic's events gives no seq to tell.
    let mut log = event_log(4);
    log.await_baseline(d);
    log.learn_head(0);
    log.advance(&f(1));
    assert_eq!(log.take_baseline(d), None);
}

#[test]
fn live_events_are_ordered_against_the_head() {
    let mut log = event_log(4);
    assert_eq!(
        log.order(7),
        Order::Next,
        "the first one seen sets the head"
    );
    log.advance(&f(7));
    assert_eq!(log.order(8), Order::Next);
    assert_eq!(log.order(7), Order::Duplicate);
    assert_eq!(log.order(3), Order::Duplicate);
    assert_eq!(log.order(10), Order::Gap { head: 7 });
    assert_eq!(
        log.order(0),
        Order::Next,
        "an event without seq is never held back"
    );
}

#[test]
fn memory_serves_a_resume_it_covers() {
    let mut log = event_log(3);
    for seq in 1..=5 {
        log.advance(&f(seq));
    }
    // Recent holds 3, 4, 5.
    let got = |since| {
        log.from_memory(since)
            .map(|v| v.iter().map(|f| f.seq).collect::<Vec<_>>())
    };
    assert_eq!(got(5), Some(vec![]));
    assert_eq!(got(4), Some(vec![5]));
    assert_eq!(got(2), Some(vec![3, 4, 5]));
    assert_eq!(got(1), None, "event 2 is no longer in memory");
    assert_eq!(
        got(9),
        None,
        "a client ahead of this instance is served by the stream"
    );
}

#[test]
fn a_head_learned_after_subscribers_were_answered_delivers_what_they_are_owed() {
    // The read of the newest stored event answered late: event 5 was stored meanwhile,
    // and its live copy is still on its way to subscribers that got no `seq`.
    let mut log = event_log(4);
    log.learn_floor(5);
    assert_eq!(
        log.known_head(),
        None,
        "a floor is never told as a position"
    );
    assert_eq!(log.order(4), Order::Next, "nothing was delivered here yet");
    assert_eq!(
        log.order(5),
        Order::Next,
        "event 5 is owed to the subscribers"
    );
    assert_eq!(log.order(6), Order::Next);
    assert_eq!(
        log.order(8),
        Order::Gap { head: 5 },
        "events 6 and 7 were missed: read back from the floor"
    );
    assert_eq!(log.fill_from(), Some(5));
    log.advance(&f(5));
    assert_eq!(
        log.order(5),
        Order::Duplicate,
        "once delivered, the head rules"
    );
    assert_eq!(log.fill_from(), Some(5));

    // A floor of 0 (the stream held none) still starts at the oldest retained event.
    let mut empty = event_log(4);
    empty.learn_floor(0);
    assert_eq!(empty.order(3), Order::Gap { head: 0 });
    assert!(empty.start_at_retained(3, Some(3)));
    assert_eq!(empty.order(3), Order::Next);

    // Unless the stream still holds events below it: stored after the read that found none,
    // they are owed, and passing them over (the replay limit) is no fresh start.
    let mut limited = event_log(4);
    limited.learn_head(0);
    assert!(!limited.start_at_retained(16, Some(1)));
    assert_eq!(limited.order(16), Order::Gap { head: 0 });

    // A head learned in time is a head.
    let mut timely = event_log(4);
    timely.learn_head(5);
    assert_eq!(timely.order(5), Order::Duplicate);
    timely.learn_floor(9);
    assert_eq!(timely.fill_from(), Some(5), "a floor never moves a head");
}

#[test]
fn the_recent_frames_are_bounded_in_bytes_too() {
    let big = |seq| Frame {
        text: "x".repeat(RECENT_BYTES_MAX / 4).into(),
        ..f(seq)
    };
    let mut log = event_log(256);
    for seq in 1..=10 {
        log.advance(&big(seq));
    }
    let kept: Vec<u64> = log.recent().map(|f| f.seq).collect();
    assert_eq!(
        kept,
        [7, 8, 9, 10],
        "four quarter-MiB frames fit in the bound"
    );
    assert_eq!(log.from_memory(6).map(|v| v.len()), Some(4));
    assert_eq!(
        log.from_memory(5),
        None,
        "older ones are read from the stream"
    );
    // The first small frame over the bound pushes the oldest large one out.
    for seq in 11..=20 {
        log.advance(&f(seq));
    }
    assert_eq!(log.recent().next().map(|f| f.seq), Some(8));
    assert_eq!(log.recent().count(), 13);
}

#[test]
fn a_gap_clears_the_recent_frames() {
    let mut log = event_log(8);
    log.advance(&f(1));
    log.advance(&f(2));
    log.advance(&f(5));
    assert_eq!(log.from_memory(2), None);
    assert_eq!(log.from_memory(4).map(|v| v.len()), Some(1));
}

#[test]
fn splice_joins_stream_and_live_without_gap_or_duplicate() {
    let held = [f(6), f(7), f(8)];
    let out = splice(2, &stored(&[3, 4, 5, 6]), held.iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["3", "4", "5", "6", "7", "8"]);
}

#[test]
fn splice_fills_a_hole_of_the_stream_with_an_event_held_here() {
    // Event 4 went out live before the stream stored it; this instance still holds it.
    let held = [f(4), f(7)];
    let out = splice(2, &stored(&[3, 5, 6]), held.iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["3", "4", "5", "6", "7"]);
}

#[test]
fn splice_waits_for_a_gap_then_reports_it() {
    let held = [f(9)];
    assert!(splice(2, &stored(&[3, 4]), held.iter(), None, false).is_none());
    let out = splice(2, &stored(&[3, 4]), held.iter(), None, true).unwrap();
    assert_eq!(seqs(&out), ["3", "4", "reset(Some(9),Gap)", "9"]);
}

#[test]
fn splice_reports_expired_and_limited_history_first() {
    let mut s = stored(&[10, 11]);
    s.missing_before = Some(10);
    let out = splice(2, &s, [].iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["reset(Some(10),Expired)", "10", "11"]);
    s.limited = true;
    let out = splice(2, &s, [].iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["reset(Some(10),Limit)", "10", "11"]);
}

#[test]
fn splice_reports_events_the_stream_no_longer_holds_as_expired() {
    let none = none_retained();
    let held = [f(8), f(9)];
    assert!(splice(2, &none, held.iter(), Some(9), false).is_none());
    let out = splice(2, &none, held.iter(), Some(9), true).unwrap();
    assert_eq!(seqs(&out), ["reset(Some(8),Expired)", "8", "9"]);
}

#[test]
fn a_replicas_word_alone_that_nothing_is_retained_is_no_expiry() {
    // A replica that is behind may lack every event: what it cannot show is unavailable, not
    // expired.
    let replica = Stored {
        from_replica: true,
        ..none_retained()
    };
    let out = splice(9, &replica, [].iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["reset(None,Unavailable)"]);
    let out = splice(2, &replica, [f(8), f(9)].iter(), Some(9), true).unwrap();
    assert_eq!(seqs(&out), ["reset(Some(8),Unavailable)", "8", "9"]);
    // Events it does hold are taken as they are.
    let out = splice(
        2,
        &Stored {
            from_replica: true,
            ..stored(&[3, 4])
        },
        [].iter(),
        None,
        false,
    )
    .unwrap();
    assert_eq!(seqs(&out), ["3", "4"]);
    // And what it lacks among them is unavailable too, not lost.
    let short = Stored {
        from_replica: true,
        ..stored(&[3, 4])
    };
    let out = splice(2, &short, [f(7)].iter(), Some(7), true).unwrap();
    assert_eq!(seqs(&out), ["3", "4", "reset(Some(7),Unavailable)", "7"]);
}

#[test]
fn splice_leaves_no_client_short_of_the_head_without_a_reset() {
    let none = none_retained();
    assert!(splice(2, &none, [].iter(), Some(9), false).is_none());
    let out = splice(2, &none, [].iter(), Some(9), true).unwrap();
    assert_eq!(seqs(&out), ["reset(None,Expired)"]);
    let out = splice(2, &stored(&[]), [f(3)].iter(), Some(5), true).unwrap();
    assert_eq!(seqs(&out), ["3", "reset(None,Gap)"]);
    let out = splice(9, &none, [].iter(), Some(9), false).unwrap();
    assert!(out.is_empty(), "a client at the head misses nothing");
}

#[test]
fn splice_cannot_vouch_for_a_since_the_stream_and_this_instance_no_longer_know() {
    let none = none_retained();
    let out = splice(9, &none, [].iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["reset(None,Expired)"]);
    let out = splice(9, &none, [f(10)].iter(), None, false).unwrap();
    assert_eq!(
        seqs(&out),
        ["10"],
        "the next event live shows nothing was missed"
    );
    let out = splice(0, &none, [].iter(), None, false).unwrap();
    assert!(out.is_empty(), "since 0 asks only for what is retained");
    let out = splice(9, &stored(&[]), [].iter(), None, false).unwrap();
    assert!(
        out.is_empty(),
        "the stream still holds `since`: nothing after it"
    );
}

/// A room of `n` events, whatever their size.
fn events(n: usize) -> Room {
    Room {
        events: n,
        bytes: usize::MAX,
    }
}

#[test]
fn keep_newest_replaces_the_oldest_events_by_one_limit_reset() {
    let items: Vec<Item> = (3..=8).map(|s| Item::Event(f(s))).collect();
    assert_eq!(seqs(&keep_newest(items.clone(), events(6))).len(), 6);
    assert_eq!(
        seqs(&keep_newest(items.clone(), events(2))),
        ["reset(Some(7),Limit)", "7", "8"]
    );
    // By bytes: each frame is two bytes (`e3`…`e8`); five bytes hold the newest two.
    let bytes = Room {
        events: 100,
        bytes: 5,
    };
    assert_eq!(
        seqs(&keep_newest(items, bytes)),
        ["reset(Some(7),Limit)", "7", "8"]
    );
    let mut items = vec![Item::Reset {
        oldest: Some(3),
        reason: ResetReason::Expired,
    }];
    items.extend((3..=5).map(|s| Item::Event(f(s))));
    items.push(Item::Reset {
        oldest: None,
        reason: ResetReason::Gap,
    });
    assert_eq!(
        seqs(&keep_newest(items, events(1))),
        ["reset(Some(5),Limit)", "5", "reset(None,Gap)"]
    );
}

#[test]
fn splice_skips_what_the_client_already_has() {
    let held = [f(4), f(5)];
    let out = splice(4, &stored(&[]), held.iter(), None, false).unwrap();
    assert_eq!(seqs(&out), ["5"]);
}

fn frame_seqs(frames: Option<Vec<Frame>>) -> Option<Vec<u64>> {
    frames.map(|frames| frames.iter().map(|f| f.seq).collect())
}

/// Topics share the instance's budget: a topic makes room from its own oldest frames, one
/// with none to let go keeps nothing (its resumes read the stream), and what a topic held
/// goes back to the budget when it is let go.
#[test]
fn topics_keep_recent_frames_within_the_instances_budget() {
    let sized = |seq: u64| Frame {
        text: "x".repeat(100).into(),
        ..f(seq)
    };
    let gauge = Gauge::default();
    let budget = CacheBudget::new(250, gauge.clone());
    let mut busy = EventLog::new(10, budget.clone());
    for seq in 1..=5 {
        busy.advance(&sized(seq));
    }
    // Two of 100 bytes fit: the busy topic keeps its newest two.
    assert_eq!(budget.used(), 200);
    assert_eq!(gauge.get(), 200);
    assert_eq!(frame_seqs(busy.from_memory(3)), Some(vec![4, 5]));
    assert_eq!(busy.from_memory(2), None, "older ones come from the stream");

    let mut quiet = EventLog::new(10, budget.clone());
    quiet.advance(&sized(1));
    assert_eq!(
        budget.used(),
        200,
        "no room, and nothing of its own to let go"
    );
    assert_eq!(quiet.from_memory(0), None);
    assert_eq!(quiet.head, Some(1), "delivered all the same");

    drop(busy);
    assert_eq!((budget.used(), gauge.get()), (0, 0));
    quiet.advance(&sized(2));
    assert_eq!(frame_seqs(quiet.from_memory(1)), Some(vec![2]));
    assert_eq!(budget.used(), 100);
}

#[test]
fn the_largest_seq_a_publisher_can_write_orders_without_overflowing() {
    // `Pulse-Seq` is a header any publisher writes: a floor at its top, and a head there.
    let mut log = event_log(4);
    log.learn_floor(u64::MAX);
    assert_eq!(log.order(3), Order::Next);
    assert_eq!(log.order(u64::MAX), Order::Next);
    log.advance(&f(u64::MAX - 1));
    log.advance(&f(u64::MAX));
    assert_eq!(log.order(u64::MAX), Order::Duplicate);
    log.advance(&f(1));
    assert_eq!(log.known_head(), Some(1));
}
