//! Muting over real loopback UDP: a muted microphone sends nothing, so
//! the SFU receives nothing. (Its own test binary: the check reads the
//! process-wide packet counters, which other tests' servers in the same
//! process would move.)

use std::time::Duration;
use zync_sfu::Source;
use zync_sfu::testkit::MediaShape;
use zync_tests::TestServer;
use zync_tests::participant::TestParticipant;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muting_stops_the_packets_and_unmuting_resumes_them() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let host = server.user("host").await?;
    let slug = host.create_meeting("Mute").await?;
    let speaker = TestParticipant::join(
        &server.user("ann").await?,
        &slug,
        MediaShape {
            video: false,
            ..Default::default()
        },
    )
    .await?;
    let listener =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::watcher()).await?;
    let heard = |l: &TestParticipant| l.observe().packets_from(&speaker.id, Source::Microphone);
    listener
        .wait_for("Ann's audio", WAIT, |o| {
            o.packets_from(&speaker.id, Source::Microphone) > 25
        })
        .await?;

    speaker.observe().peer.set_audio_muted(true);
    // Within 500 ms nothing more arrives: what was in flight has landed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_mute = heard(&listener);
    // Workers publish their counters once a second: wait for an export
    // taken after the mute, then check that the next one counts nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let in_while_muted = rtp_packets_in(&server).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(heard(&listener), at_mute, "no packets while muted");
    assert_eq!(
        rtp_packets_in(&server).await?,
        in_while_muted,
        "the SFU receives nothing from a muted microphone"
    );

    speaker.observe().peer.set_audio_muted(false);
    listener
        .wait_for("Ann's audio again", Duration::from_millis(500), |o| {
            o.packets_from(&speaker.id, Source::Microphone) > at_mute + 5
        })
        .await?;
    server.stop().await
}

/// `zync_sfu_rtp_packets_in_total` summed over workers, from `/metrics`.
async fn rtp_packets_in(server: &TestServer) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("zync_sfu_rtp_packets_in_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
