//! The fence on state subjects, against the real state stream: what it does when the
//! subject's last message is not the one this poller stored.

use std::sync::Arc;

use async_nats::jetstream;
use bytes::Bytes;
use pulse_poller::fence::Fence;
use pulse_poller::publisher::{Outgoing, PublishError, publish_all};
use pulse_poller::seq::SeqClock;
use pulse_proto::{Subject, TenantId};
use pulse_test_support::nats::PrivateNats;
use serde_json::{Value, json};

use crate::helpers::*;

/// A NATS server of its own with the streams set up, a state subject, and a fence with its
/// clock. Not the shared server: a test here stores a `seq` an hour ahead, and a poller of
/// another test becoming active there would take it for its predecessor's newest and number
/// its own an hour ahead.
async fn setup(
    label: &str,
) -> (
    PrivateNats,
    jetstream::Context,
    Subject,
    Fence,
    Arc<SeqClock>,
) {
    let nats = PrivateNats::start().await;
    let js = jetstream::new(pulse_test_support::nats::connect(&nats.url).await.unwrap());
    ensure_streams(&js).await;
    let tenant = TenantId::parse(unique(label)).unwrap();
    let clock = Arc::new(SeqClock::new());
    (
        nats,
        js,
        Subject::Alerts(tenant),
        Fence::new(clock.clone()),
        clock,
    )
}

/// Publishes `{"seq": seq}` on `subject` through the fence; the keys acknowledged and the
/// error.
async fn through_fence(
    js: &jetstream::Context,
    fence: &mut Fence,
    subject: &Subject,
    seq: u64,
) -> (Vec<u64>, Option<PublishError>) {
    let out = Outgoing::new(seq, subject.clone(), seq, &json!({ "seq": seq })).unwrap();
    publish_all(js, vec![out], Some(fence)).await
}

/// Publishes `{"seq": seq}` on `subject` through the fence and checks that it went in:
/// acknowledged without an error, and now the subject's value in the state stream.
async fn goes_in(js: &jetstream::Context, fence: &mut Fence, subject: &Subject, seq: u64) {
    let (done, err) = through_fence(js, fence, subject, seq).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(done, [seq]);
    assert_eq!(stored_seq(js, subject).await, seq);
}

/// Another publisher's message on `subject` (a deposed poller's, say), stored unfenced.
async fn behind_its_back(js: &jetstream::Context, subject: &Subject, seq: u64) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(pulse_proto::headers::SEQ, seq.to_string().as_str());
    let body = Bytes::from(json!({ "seq": seq, "by": "another" }).to_string());
    js.publish_with_headers(subject.to_string(), headers, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The `seq` of the subject's current value in the state stream.
async fn stored_seq(js: &jetstream::Context, subject: &Subject) -> u64 {
    let stream = js.get_stream("PULSE_STATE").await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject(&subject.to_string())
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&last.payload).unwrap();
    body["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn an_older_message_stored_behind_the_fences_back_is_replaced() {
    let (_nats, js, subject, mut fence, clock) = setup("fence-older").await;
    let first = clock.next();
    assert_eq!(
        through_fence(&js, &mut fence, &subject, first).await.0,
        [first]
    );
    behind_its_back(&js, &subject, first - 1).await;

    let second = clock.next();
    goes_in(&js, &mut fence, &subject, second).await;
    // The fence knows the sequence it stored again: the next publish goes straight in.
    let third = clock.next();
    assert_eq!(
        through_fence(&js, &mut fence, &subject, third).await.0,
        [third]
    );
    assert_eq!(stored_seq(&js, &subject).await, third);
}

#[tokio::test]
async fn our_own_message_stored_without_our_knowing_counts_as_done() {
    let (_nats, js, subject, mut fence, clock) = setup("fence-own").await;
    let first = clock.next();
    through_fence(&js, &mut fence, &subject, first).await;
    // As when an acknowledgement is lost: the message went in, the fence did not hear of it.
    let second = clock.next();
    behind_its_back(&js, &subject, second).await;

    goes_in(&js, &mut fence, &subject, second).await;
}

#[tokio::test]
async fn a_newer_message_wins_and_the_next_publish_is_numbered_past_it() {
    let (_nats, js, subject, mut fence, clock) = setup("fence-newer").await;
    let first = clock.next();
    through_fence(&js, &mut fence, &subject, first).await;
    // A poller with its clock an hour ahead published meanwhile.
    let ahead = first + 3_600_000_000;
    behind_its_back(&js, &subject, ahead).await;

    let mine = clock.next();
    let (done, err) = through_fence(&js, &mut fence, &subject, mine).await;
    assert!(done.is_empty(), "an older snapshot replaced a newer one");
    assert!(
        matches!(err, Some(PublishError::Superseded { theirs, ours, .. }) if theirs == ahead && ours == mine),
        "{err:?}"
    );
    assert_eq!(stored_seq(&js, &subject).await, ahead);

    // The cycle that retries numbers its snapshot past the newer one, and it goes in.
    let retry = clock.next();
    assert!(retry > ahead);
    goes_in(&js, &mut fence, &subject, retry).await;
}
