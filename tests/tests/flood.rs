//! An offer flood from one account against a call on the same media
//! worker: the call goes on, memory stays bounded, the flooding sockets are
//! closed. (Its own test binary: the media tests read process-wide
//! metrics, which this test's server would move.)

use serde_json::json;
use std::time::Duration;
use zync_sfu::Source;
use zync_sfu::testkit::MediaShape;
use zync_tests::participant::TestParticipant;
use zync_tests::{TestServer, offer_with_video_lines};

const WAIT: Duration = Duration::from_secs(15);

/// This process's resident memory, MiB.
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Packets `person` has received from everyone in `others`, audio and video.
fn received_from(person: &TestParticipant, others: &[String]) -> u64 {
    let observed = person.observe();
    others
        .iter()
        .map(|o| {
            observed.packets_from(o, Source::Microphone) + observed.packets_from(o, Source::Camera)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_flood_from_one_account_leaves_a_call_on_the_same_worker_alone()
-> anyhow::Result<()> {
    // One media worker, so the flood and the call share it.
    let server = TestServer::start_with(|c| c.sfu.workers = 1).await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Call").await?;
    let mut people = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        let client = server.user(name).await?;
        people.push(TestParticipant::join(&client, &slug, MediaShape::default()).await?);
    }
    let others: Vec<String> = people[1..].iter().map(|p| p.id.clone()).collect();
    let everyone = others.clone();
    people[0]
        .wait_for("media from the other three", WAIT, move |o| {
            everyone
                .iter()
                .all(|id| o.packets_from(id, Source::Camera) > 20)
        })
        .await?;
    let window = Duration::from_secs(3);
    let before = received_from(&people[0], &others);
    tokio::time::sleep(window).await;
    let normal = received_from(&people[0], &others) - before;

    // Mallory: ten sockets (the most one account may open) in meetings of
    // her own (three tabs each at most), each offering 120 video m-lines
    // every 40 ms.
    let mallory = server.user("mallory").await?;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let own = mallory.create_meeting("").await?;
        for _ in 0..3 {
            if sockets.len() == 10 {
                break;
            }
            let mut ws = mallory.ws().await?;
            ws.join(&own).await?;
            sockets.push(ws);
        }
    }
    let offer = json!({"type": "signal", "pc": "publish",
        "sdp": {"type": "offer", "sdp": offer_with_video_lines(120)}});
    let flood = tokio::spawn(async move {
        let mut closed = 0;
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        while tokio::time::Instant::now() < until {
            tick.tick().await;
            for ws in &mut sockets {
                let _ = ws.send(offer.clone()).await;
            }
        }
        for mut ws in sockets {
            // The server closed it (with "too many refused messages"; the
            // flood's writes after that may surface as a broken pipe
            // instead), rather than leaving it open and silent.
            loop {
                match ws.recv_within(Duration::from_secs(2)).await {
                    Ok(_) => continue,
                    Err(e) if format!("{e:#}").contains("timed out") => break,
                    Err(_) => {
                        closed += 1;
                        break;
                    }
                }
            }
        }
        closed
    });
    let rss_before = resident_mib();
    let during_start = received_from(&people[0], &others);
    tokio::time::sleep(window).await;
    let during = received_from(&people[0], &others) - during_start;
    // Someone joining during the flood is negotiated as usual.
    let eve = server.user("eve").await?;
    let late = TestParticipant::join(&eve, &slug, MediaShape::default()).await?;
    let ann = people[0].id.clone();
    late.wait_for("media from Ann", WAIT, move |o| {
        o.packets_from(&ann, Source::Microphone) > 20
    })
    .await?;

    assert!(
        during * 10 >= normal * 9,
        "the call received {during} packets in {window:?} during the flood, {normal} before"
    );
    assert_eq!(flood.await?, 10, "every flooding socket was disconnected");
    // (The server shares this process with the simulated participants.)
    let grown = resident_mib() - rss_before;
    assert!(
        grown < 64.0,
        "memory grew by {grown:.0} MiB during the flood"
    );
    late.leave().await;
    for p in people {
        p.leave().await;
    }
    server.stop().await
}
