//! The media plane over real loopback UDP: headless str0m participants log
//! in, join through the WebSocket, negotiate via `signal`, and exchange
//! synthetic Opus and VP8 packets through a running `zync`.

use serde_json::json;
use std::time::Duration;
use zync_sfu::Source;
use zync_sfu::testkit::MediaShape;
use zync_tests::participant::TestParticipant;
use zync_tests::{PASSWORD, TestServer, offer_with_video_lines};

const WAIT: Duration = Duration::from_secs(15);

/// Reads `/metrics` (workers export each second) until the sum of the
/// series `name` (over its labels) satisfies `done`, for at most 5 s.
/// Returns the last text read and that sum.
async fn poll_metric(
    server: &TestServer,
    name: &str,
    done: impl Fn(f64) -> bool,
) -> anyhow::Result<(String, f64)> {
    let mut last = (String::new(), 0.0);
    for _ in 0..50 {
        let metrics = reqwest::get(format!("{}/metrics", server.base))
            .await?
            .text()
            .await?;
        let sum = metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        last = (metrics, sum);
        if done(sum) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_receive_each_others_media_and_see_a_vanished_one_go() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Media").await?;
    let mut people = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        let client = server.user(name).await?;
        people.push(TestParticipant::join(&client, &slug, MediaShape::default()).await?);
    }
    let ids: Vec<String> = people.iter().map(|p| p.id.clone()).collect();
    for (i, person) in people.iter().enumerate() {
        for (j, other) in ids.iter().enumerate().filter(|(j, _)| *j != i) {
            person
                .wait_for(
                    &format!("audio and video from participant {j}"),
                    WAIT,
                    |o| {
                        o.packets_from(other, Source::Microphone) > 20
                            && o.packets_from(other, Source::Camera) > 20
                    },
                )
                .await?;
        }
        let observed = person.observe();
        for r in observed.peer.received.values() {
            assert_eq!(
                r.mislabelled, 0,
                "every packet carries its labelled sender's stamp"
            );
        }
        assert!(
            observed.peer.errors.is_empty(),
            "{:?}",
            observed.peer.errors
        );
    }

    // Dan's machine drops off the network without a goodbye.
    let dan = people.pop().expect("four people");
    let dan_id = dan.id.clone();
    dan.vanish();
    for person in &people {
        person
            .wait_for("Dan's user-left", Duration::from_secs(5), |o| {
                o.left.contains(&dan_id)
            })
            .await?;
        person
            .wait_for(
                "an offer without Dan's tracks",
                Duration::from_secs(5),
                |o| !o.has_tracks_of(&dan_id),
            )
            .await?;
    }
    let before: Vec<u64> = people
        .iter()
        .map(|p| p.observe().packets_from(&dan_id, Source::Camera))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<u64> = people
        .iter()
        .map(|p| p.observe().packets_from(&dan_id, Source::Camera))
        .collect();
    assert_eq!(before, after, "nothing more from Dan");
    // The others still hear each other.
    let ben = ids[1].clone();
    let heard = people[0].observe().packets_from(&ben, Source::Microphone);
    people[0]
        .wait_for("more audio from Ben", WAIT, |o| {
            o.packets_from(&ben, Source::Microphone) > heard + 20
        })
        .await?;

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await?
        .text()
        .await?;
    for name in [
        "zync_sfu_rtp_packets_out_total",
        "zync_sfu_participants",
        "zync_sfu_worker_busy_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics lists {name}");
    }
    // Every datagram the SFU handled has its wait measured: a histogram an
    // operator can graph, most of it (loopback, a debug build) well under
    // 50 ms.
    let delay = |prefix: &str, within: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(within))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = delay("zync_sfu_forward_delay_seconds_count", "");
    assert!(count > 100.0, "forward delay samples: {count}\n{metrics}");
    let within_50ms = delay("zync_sfu_forward_delay_seconds_bucket", "le=\"0.05\"");
    assert!(
        within_50ms >= count / 2.0,
        "{within_50ms} of {count} datagrams forwarded within 50 ms"
    );
    for p in people {
        p.leave().await;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_publishers_are_negotiated_one_offer_at_a_time() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Glare").await?;
    let viewer = TestParticipant::join(&host, &slug, MediaShape::watcher()).await?;
    let (a, b) = (server.user("alice").await?, server.user("bob").await?);
    // Both join and publish at the same moment: the viewer's subscribe
    // connection must end up with all four tracks, with no crossed offers.
    let (pa, pb) = tokio::join!(
        TestParticipant::join(&a, &slug, MediaShape::default()),
        TestParticipant::join(&b, &slug, MediaShape::default())
    );
    let (pa, pb) = (pa?, pb?);
    for from in [&pa.id, &pb.id] {
        viewer
            .wait_for("media from both publishers", WAIT, |o| {
                o.packets_from(from, Source::Camera) > 20
                    && o.packets_from(from, Source::Microphone) > 20
            })
            .await?;
    }
    {
        let observed = viewer.observe();
        assert_eq!(observed.peer.tracks.len(), 4, "{:?}", observed.peer.tracks);
        assert!(
            observed.peer.errors.is_empty(),
            "{:?}",
            observed.peer.errors
        );
    }
    // Each publisher also receives the other.
    pa.wait_for("video from Bob", WAIT, |o| {
        o.packets_from(&pb.id, Source::Camera) > 20
    })
    .await?;
    pb.wait_for("video from Alice", WAIT, |o| {
        o.packets_from(&pa.id, Source::Camera) > 20
    })
    .await?;
    server.stop().await
}

#[tokio::test]
async fn bad_signals_get_errors_and_media_state_is_broadcast() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;

    a.send(json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": "v=0"}}))
        .await?;
    assert_eq!(a.recv().await?["code"], "not_joined");
    let welcome = a.join(&slug).await?;
    let a_id = welcome["self"]["id"].clone();

    for (message, code) in [
        (
            json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": "this is not sdp"}}),
            "invalid_sdp",
        ),
        (
            json!({"type": "signal", "pc": "publish", "sdp": {"type": "answer", "sdp": "v=0"}}),
            "invalid_signal",
        ),
        (
            json!({"type": "signal", "pc": "subscribe", "sdp": {"type": "answer", "sdp": "v=0"}}),
            "no_offer_pending",
        ),
        (
            json!({"type": "signal", "pc": "sideways"}),
            "invalid_message",
        ),
        (json!({"type": "signal", "pc": "publish"}), "invalid_signal"),
        (
            json!({"type": "signal", "pc": "publish", "candidate": "candidate:garbage"}),
            "invalid_candidate",
        ),
        (
            json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": "v=0"}, "tracks": [{"mid": "0", "source": "hologram"}]}),
            "invalid_signal",
        ),
        (
            json!({"type": "media-state", "audio": "yes", "video": false}),
            "invalid_message",
        ),
    ] {
        a.send(message.clone()).await?;
        let error = a.recv_type("error").await?;
        assert_eq!(error["code"], code, "{message} → {error}");
    }
    // An end-of-candidates marker is accepted silently.
    a.send(
        json!({"type": "signal", "pc": "publish", "candidate": {"candidate": "", "sdpMid": "0"}}),
    )
    .await?;

    let mut b = bob.ws().await?;
    b.join(&slug).await?;
    a.recv_type("user-joined").await?;
    a.send(json!({"type": "media-state", "audio": false, "video": true, "screen": false}))
        .await?;
    let update = b.recv_type("media-state").await?;
    assert_eq!(update["participant_id"], a_id);
    assert_eq!(
        update["media"],
        json!({"audio": false, "video": true, "screen": false})
    );
    // A late joiner sees the state in existing-users.
    let carol = server.client();
    carol.register("carol", "Carol", PASSWORD).await?;
    let mut c = carol.ws().await?;
    let welcome = c.join(&slug).await?;
    let alice_entry = welcome["participants"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == a_id))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        alice_entry["media"],
        json!({"audio": false, "video": true, "screen": false})
    );
    server.stop().await
}

#[tokio::test]
async fn a_publisher_may_not_offer_more_than_one_track_of_each_source() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;

    let five = offer_with_video_lines(5);
    a.send(json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": five}}))
        .await?;
    let error = a.recv_type("error").await?;
    assert_eq!(error["code"], "too_many_tracks", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("second camera")),
        "{error}"
    );

    // Two m-lines both labelled as a screen.
    let two = offer_with_video_lines(2);
    let tracks = json!([{"mid": "0", "source": "screen"}, {"mid": "1", "source": "screen"}]);
    a.send(json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": two}, "tracks": tracks}))
        .await?;
    let error = a.recv_type("error").await?;
    assert_eq!(error["code"], "too_many_tracks", "{error}");
    assert!(
        a.recv_within(Duration::from_millis(300)).await.is_err(),
        "no answer follows a refused offer"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stream_arrives_in_order_on_a_clean_network() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Order").await?;
    let mut people = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let client = server.user(name).await?;
        people.push(TestParticipant::join(&client, &slug, MediaShape::default()).await?);
    }
    let ids: Vec<String> = people.iter().map(|p| p.id.clone()).collect();
    for (i, person) in people.iter().enumerate() {
        for other in ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
        {
            person
                .wait_for("a few seconds of video", WAIT, move |o| {
                    o.packets_from(&other, Source::Camera) > 150
                })
                .await?;
        }
    }
    for person in &people {
        let observed = person.observe();
        for ((from, source), r) in &observed.peer.received {
            assert_eq!(
                r.reordered, 0,
                "{source:?} from {from} arrived out of order ({} of {} packets)",
                r.reordered, r.packets
            );
            assert_eq!(
                r.missing(),
                0,
                "{source:?} from {from}: nothing lost on loopback"
            );
        }
    }
    for p in people {
        p.leave().await;
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_off_screen_gets_no_packets_until_it_is_shown_again() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("View").await?;
    let ann =
        TestParticipant::join(&server.user("ann").await?, &slug, MediaShape::default()).await?;
    let ben =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::watcher()).await?;
    let video = |p: &TestParticipant| p.observe().packets_from(&ann.id, Source::Camera);
    let audio = |p: &TestParticipant| p.observe().packets_from(&ann.id, Source::Microphone);
    ben.wait_for("Ann's video", WAIT, |o| {
        o.packets_from(&ann.id, Source::Camera) > 30
    })
    .await?;

    let view = |visible: bool| {
        json!({"type": "track-view", "participant": ann.id, "source": "camera",
               "visible": visible, "width": 320, "height": 180})
    };
    ben.send(view(false));
    // What was in flight lands within 500 ms; then nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (video_hidden, audio_hidden) = (video(&ben), audio(&ben));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(video(&ben), video_hidden, "no video for a tile off screen");
    assert!(audio(&ben) > audio_hidden + 25, "audio goes on");
    // Operators see it: one paused track.
    let (_, seen) = poll_metric(&server, "zync_sfu_paused_tracks", |v| v == 1.0).await?;
    assert_eq!(seen, 1.0, "zync_sfu_paused_tracks");

    ben.send(view(true));
    ben.wait_for("Ann's video again", Duration::from_secs(3), |o| {
        o.packets_from(&ann.id, Source::Camera) > video_hidden + 30
    })
    .await?;
    let errors = ben.observe().errors();
    assert!(errors.is_empty(), "{errors:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_track_view_gets_a_clear_error() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    let view = |participant: &str, source: &str| {
        json!({"type": "track-view", "participant": participant, "source": source,
               "visible": true, "width": 640, "height": 360, "ref": 7})
    };
    a.send(view("0123456789abcdef", "camera")).await?;
    let error = a.recv_type("error").await?;
    assert_eq!(error["code"], "not_joined", "{error}");

    a.join(&slug).await?;
    for (participant, source, says) in [
        ("ann", "camera", "not a participant id"),
        ("0123456789abcdef", "microphone", "unknown video source"),
    ] {
        a.send(view(participant, source)).await?;
        let error = a.recv_type("error").await?;
        assert_eq!(error["code"], "invalid_message", "{error}");
        assert_eq!(error["ref"], 7, "{error}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains(says)),
            "{error}"
        );
    }
    // A view of someone not (or no longer) in the room is accepted and
    // does nothing: the client may be a moment behind.
    a.send(view("0123456789abcdef", "screen")).await?;
    assert!(
        a.recv_within(Duration::from_millis(300)).await.is_err(),
        "no reply to a well-formed view"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_hears_who_the_active_speaker_is() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Speakers").await?;
    // Ann talks (her packets carry -30 dBov); Ben's microphone is muted.
    let ann =
        TestParticipant::join(&server.user("ann").await?, &slug, MediaShape::default()).await?;
    let muted = MediaShape {
        audio_muted: true,
        ..Default::default()
    };
    let ben = TestParticipant::join(&server.user("ben").await?, &slug, muted).await?;
    for person in [&ann, &ben] {
        person
            .wait_for("Ann as the active speaker", WAIT, |o| {
                o.messages.iter().any(|m| {
                    m["type"] == "active-speakers"
                        && m["speakers"][0]["participant_id"] == ann.id.as_str()
                        && m["speakers"][0]["level"].as_u64().is_some_and(|l| l > 20)
                })
            })
            .await?;
    }
    let ben_listed = ben.observe().messages.iter().any(|m| {
        m["type"] == "active-speakers"
            && m["speakers"]
                .as_array()
                .is_some_and(|s| s.iter().any(|e| e["participant_id"] == ben.id.as_str()))
    });
    assert!(
        !ben_listed,
        "a muted microphone is never among the speakers"
    );
    server.stop().await
}

/// With bandwidth estimation on, operators see where their subscribers'
/// downlink estimates lie: a Prometheus histogram with one sample per
/// subscriber per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_estimates_are_a_histogram_in_the_metrics() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.sfu.bandwidth_estimation = true).await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Estimates").await?;
    let ann =
        TestParticipant::join(&server.user("ann").await?, &slug, MediaShape::default()).await?;
    let ben =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::watcher()).await?;
    ben.wait_for("Ann's video", WAIT, |o| {
        o.packets_from(&ann.id, Source::Camera) > 30
    })
    .await?;
    let name = "zync_sfu_subscriber_estimate_bps_count";
    let (metrics, count) = poll_metric(&server, name, |v| v > 0.0).await?;
    assert!(count > 0.0, "estimates sampled:\n{metrics}");
    assert!(
        metrics.contains("# TYPE zync_sfu_subscriber_estimate_bps histogram"),
        "a histogram, not a summary"
    );
    assert!(metrics.contains("zync_sfu_subscriber_estimate_bps_bucket{worker=\""));
    ann.leave().await;
    ben.leave().await;
    server.stop().await
}

/// The SFU's passive ICE-TCP candidate in an SDP it sent, if any.
fn tcp_candidate(sdp: &str) -> Option<std::net::SocketAddr> {
    let line = sdp.lines().find(|l| {
        l.starts_with("a=candidate:") && l.contains(" tcp ") && l.contains("tcptype passive")
    })?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // a=candidate:FOUNDATION COMPONENT tcp PRIORITY IP PORT typ host ...
    format!("{}:{}", fields.get(4)?, fields.get(5)?)
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sfu_offers_ice_tcp_and_closes_connections_that_are_not_rfc_4571() -> anyhow::Result<()>
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("TCP").await?;
    let ann =
        TestParticipant::join(&server.user("ann").await?, &slug, MediaShape::default()).await?;
    let ben =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::default()).await?;
    let ben_id = ben.id.clone();
    ann.wait_for("Ben's audio", WAIT, |o| {
        o.packets_from(&ben_id, Source::Microphone) > 20
    })
    .await?;

    // The answer to a publish offer lists a passive TCP candidate, with
    // a lower priority than the UDP one.
    let mut ws = host.ws().await?;
    ws.join(&slug).await?;
    ws.send(json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": offer_with_video_lines(1)}}))
        .await?;
    let answer = ws.recv_type("signal").await?;
    let sdp = answer["sdp"]["sdp"].as_str().unwrap_or_default();
    let address = tcp_candidate(sdp).ok_or_else(|| anyhow::anyhow!("no TCP candidate in {sdp}"))?;
    let priority = |proto: &str| {
        sdp.lines()
            .find(|l| l.starts_with("a=candidate:") && l.contains(&format!(" {proto} ")))
            .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
    };
    assert!(priority("tcp") < priority("udp"), "{sdp}");

    // Things that are not RFC 4571 framing: each connection is closed.
    let garbage: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: zync\r\n\r\n",
        &[0xff, 0xff, 1, 2, 3],
        &[0, 0],
    ];
    for bytes in garbage {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(bytes).await?;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await?;
        assert!(matches!(read, Ok(0) | Err(_)), "{bytes:?}: {read:?}");
    }
    // A well-framed packet that is no STUN for a known connection is
    // dropped; the connection stays (it may still become one).
    let mut quiet = tokio::net::TcpStream::connect(address).await?;
    quiet.write_all(&[0, 4, 0x80, 0, 0, 1]).await?;
    let (text, bad) = poll_metric(&server, "zync_sfu_tcp_bad_frames_total", |v| v >= 3.0).await?;
    assert_eq!(bad, 3.0, "{text}");

    // The call on the same worker carried on.
    let heard = ann.observe().packets_from(&ben_id, Source::Microphone);
    ann.wait_for("more of Ben's audio", WAIT, |o| {
        o.packets_from(&ben_id, Source::Microphone) > heard + 20
    })
    .await?;
    drop(quiet);
    server.stop().await
}

/// The ICE ufrags of the subscribe offers `observed` received, in order.
fn subscribe_offer_ufrags(observed: &zync_tests::participant::Observed) -> Vec<String> {
    observed
        .messages
        .iter()
        .filter(|m| m["type"] == "signal" && m["pc"] == "subscribe" && m["sdp"]["type"] == "offer")
        .filter_map(|m| {
            let sdp = m["sdp"]["sdp"].as_str()?;
            let ufrag = sdp.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:"))?;
            Some(ufrag.trim().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_renews_the_subscribe_credentials_and_media_carries_on() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Moving").await?;

    // Before joining there is nothing to restart.
    let mut early = host.ws().await?;
    early.send(json!({"type": "ice-restart", "ref": 7})).await?;
    let error = early.recv_type("error").await?;
    assert_eq!(error["code"], "not_joined", "{error}");
    assert_eq!(error["ref"], 7, "{error}");

    let ann =
        TestParticipant::join(&server.user("ann").await?, &slug, MediaShape::default()).await?;
    let ben =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::default()).await?;
    let (ann_id, ben_id) = (ann.id.clone(), ben.id.clone());
    ben.wait_for("Ann's video", WAIT, |o| {
        o.packets_from(&ann_id, Source::Camera) > 20
    })
    .await?;
    let before = subscribe_offer_ufrags(&ben.observe());
    let first = before.first().cloned().unwrap_or_default();
    assert!(
        before.iter().all(|u| *u == first),
        "no restart yet: {before:?}"
    );

    // Ben's network changed: the next subscribe offer carries new
    // credentials, at once, and Ben's (str0m) answer restarts its side.
    ben.send(json!({"type": "ice-restart"}));
    ben.wait_for("a subscribe offer with a new ufrag", WAIT, |o| {
        subscribe_offer_ufrags(o)
            .last()
            .is_some_and(|u| *u != first)
    })
    .await?;
    let heard = ben.observe().packets_from(&ann_id, Source::Camera);
    ben.wait_for("Ann's video after the restart", WAIT, |o| {
        o.packets_from(&ann_id, Source::Camera) > heard + 50
    })
    .await?;
    // Ann's audio still reaches Ben, and nobody saw Ben leave.
    let ann_heard = ann.observe().packets_from(&ben_id, Source::Microphone);
    ann.wait_for("Ben's audio after the restart", WAIT, |o| {
        o.packets_from(&ben_id, Source::Microphone) > ann_heard + 20
    })
    .await?;
    assert!(ann.observe().left.is_empty(), "nobody left");
    let errors = ben.observe().errors();
    assert!(errors.is_empty(), "{errors:?}");
    ann.leave().await;
    ben.leave().await;
    server.stop().await
}
