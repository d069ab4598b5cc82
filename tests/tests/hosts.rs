//! Meeting hosts against a real server: who is a host, removing someone
//! (for the rest of the meeting), ending the meeting for everyone, and
//! every host action refused to everyone else.

use serde_json::{Value, json};
use std::time::Duration;
use zync_tests::{TestServer, WsClient};

/// Reads until the server closes the connection; fails on a timeout.
async fn expect_closed(ws: &mut WsClient) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv_within(left).await {
            Ok(_) => continue,
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("closed") || text.contains("ended"),
                    "expected the server to close the connection: {text}"
                );
                return;
            }
        }
    }
}

fn role_of(participants: &Value, name: &str) -> Value {
    participants
        .as_array()
        .and_then(|all| all.iter().find(|p| p["display_name"] == name))
        .map_or(Value::Null, |p| p["role"].clone())
}

#[tokio::test]
async fn the_owner_removes_someone_who_then_cannot_come_back() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (ada, bob, cy) = (
        server.user("ada").await?,
        server.user("bob").await?,
        server.user("cyd").await?,
    );
    let slug = ada.create_meeting("Standup").await?;
    let mut a = ada.ws().await?;
    let welcome = a.join(&slug).await?;
    assert_eq!(welcome["self"]["role"], "host", "the owner is a host");
    let mut b = bob.ws().await?;
    let welcome = b.join(&slug).await?;
    assert_eq!(welcome["self"]["role"], "participant");
    assert_eq!(role_of(&welcome["participants"], "Ada Test"), "host");
    let bob_id = welcome["self"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.recv_type("user-joined").await?;
    let mut c = cy.ws().await?;
    let welcome = c.join(&slug).await?;
    let cy_id = welcome["self"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    a.recv_type("user-joined").await?;
    b.recv_type("user-joined").await?;

    // A participant may do neither.
    c.send(json!({"type": "remove-participant", "participant_id": bob_id, "ref": 1}))
        .await?;
    let refused = c.recv_type("error").await?;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["ref"], 1);
    c.send(json!({"type": "end-meeting", "ref": 2})).await?;
    let refused = c.recv_type("error").await?;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["ref"], 2);
    b.expect_silence(Duration::from_millis(300)).await?;

    // The host removes Cy: Cy is told by whom, and disconnected; the
    // others see Cy leave.
    a.send(json!({"type": "remove-participant", "participant_id": cy_id}))
        .await?;
    let removed = c.recv_type("removed").await?;
    assert_eq!(removed["by"], "Ada Test");
    expect_closed(&mut c).await;
    for ws in [&mut a, &mut b] {
        let left = ws.recv_type("user-left").await?;
        assert_eq!(left["participant_id"], cy_id.as_str());
        // The chat records it, as a line of the meeting's own.
        let line = ws.recv_type("chat-message").await?;
        assert_eq!(line["system"], true, "{line}");
        assert_eq!(line["text"], "Ada Test removed Cyd Test");
        assert_eq!(line["user"]["display_name"], "Ada Test");
    }

    // Cy's account stays out while the meeting lasts, from any socket.
    let mut again = cy.ws().await?;
    again
        .send(json!({"type": "join-meeting", "slug": slug, "ref": "j"}))
        .await?;
    let refused = again.recv_type("error").await?;
    assert_eq!(refused["code"], "removed");
    assert_eq!(refused["ref"], "j");

    // A host cannot be removed, and nobody who is not there.
    let host_id = welcome["participants"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["role"] == "host"))
        .map(|p| p["id"].clone())
        .unwrap_or_default();
    a.send(json!({"type": "remove-participant", "participant_id": host_id}))
        .await?;
    assert_eq!(a.recv_type("error").await?["code"], "forbidden");
    a.send(json!({"type": "remove-participant", "participant_id": "nobody"}))
        .await?;
    assert_eq!(a.recv_type("error").await?["code"], "not_found");
    server.stop().await
}

#[tokio::test]
async fn a_host_ends_the_meeting_for_everyone() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (ada, bob) = (server.user("ada").await?, server.user("bob").await?);
    let slug = ada.create_meeting("Review").await?;
    let mut a = ada.ws().await?;
    a.join(&slug).await?;
    let mut b = bob.ws().await?;
    b.join(&slug).await?;
    a.recv_type("user-joined").await?;

    a.send(json!({"type": "end-meeting"})).await?;
    for ws in [&mut a, &mut b] {
        let ended = ws.recv_type("meeting-ended").await?;
        assert_eq!(ended["by"], "Ada Test");
        expect_closed(ws).await;
    }
    // Over: nobody is in it, and it can be started again; its history
    // says how it ended.
    let (_, meeting) = ada.get(&format!("/api/meetings/{slug}")).await?;
    assert_eq!(meeting["participant_count"], 0, "{meeting}");
    let mut b = bob.ws().await?;
    let welcome = b.join(&slug).await?;
    assert_eq!(welcome["participants"], json!([]));
    let last = &welcome["history"][0];
    assert_eq!(last["text"], "Ada Test ended the meeting", "{welcome}");
    assert_eq!(last["system"], true);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mutes_someone_whose_browser_keeps_sending_and_the_sfu_stops_forwarding()
-> anyhow::Result<()> {
    use zync_sfu::Source;
    use zync_sfu::testkit::MediaShape;
    use zync_tests::participant::TestParticipant;
    const WAIT: Duration = Duration::from_secs(15);

    let server = TestServer::start().await?;
    let ada = server.user("ada").await?;
    let slug = ada.create_meeting("Panel").await?;
    let mut host = ada.ws().await?;
    host.join(&slug).await?;
    let speaker = TestParticipant::join(
        &server.user("ann").await?,
        &slug,
        MediaShape {
            video: false,
            ..Default::default()
        },
    )
    .await?;
    speaker.send(json!({"type": "media-state", "audio": true, "video": false}));
    let listener =
        TestParticipant::join(&server.user("ben").await?, &slug, MediaShape::watcher()).await?;
    let heard = |l: &TestParticipant| l.observe().packets_from(&speaker.id, Source::Microphone);
    listener
        .wait_for("Ann's audio", WAIT, |o| {
            o.packets_from(&speaker.id, Source::Microphone) > 25
        })
        .await?;

    // Not a host: refused, nothing changes.
    listener.send(json!({"type": "mute-participant", "participant_id": speaker.id, "ref": "m"}));
    listener
        .wait_for("forbidden", WAIT, |o| {
            o.errors()
                .iter()
                .any(|e| e["code"] == "forbidden" && e["ref"] == "m")
        })
        .await?;

    // The host mutes Ann. Her simulated browser ignores it and keeps
    // sending: the SFU stops forwarding anyway, within 500 ms.
    host.send(json!({"type": "mute-participant", "participant_id": speaker.id}))
        .await?;
    speaker
        .wait_for("muted-by-host", WAIT, |o| {
            o.messages
                .iter()
                .any(|m| m["type"] == "muted-by-host" && m["by"] == "Ada Test")
        })
        .await?;
    listener
        .wait_for("Ann shown muted", WAIT, |o| {
            o.messages.iter().any(|m| {
                m["type"] == "media-state"
                    && m["participant_id"] == speaker.id.as_str()
                    && m["media"]["audio"] == false
            })
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_mute = heard(&listener);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        heard(&listener),
        at_mute,
        "nothing of Ann's is forwarded while held"
    );
    assert!(
        speaker.observe().peer.is_publishing(),
        "Ann's browser kept sending"
    );

    // Ann turns her microphone on again herself: forwarded again.
    speaker.send(json!({"type": "media-state", "audio": true, "video": false}));
    listener
        .wait_for("Ann's audio again", Duration::from_secs(2), |o| {
            o.packets_from(&speaker.id, Source::Microphone) > at_mute + 10
        })
        .await?;
    server.stop().await
}

#[tokio::test]
async fn a_host_turns_off_someones_camera_and_screen_share() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (ada, bob) = (server.user("ada").await?, server.user("bob").await?);
    let slug = ada.create_meeting("Demo").await?;
    let mut a = ada.ws().await?;
    a.join(&slug).await?;
    let mut b = bob.ws().await?;
    let bob_id = b.join(&slug).await?["self"]["id"].clone();
    a.recv_type("user-joined").await?;
    b.send(json!({"type": "media-state", "audio": false, "video": true, "screen": true}))
        .await?;
    a.recv_type("media-state").await?;

    // Not a host: refused.
    b.send(json!({"type": "stop-video", "participant_id": bob_id, "source": "camera", "ref": 5}))
        .await?;
    assert_eq!(b.recv_type("error").await?["code"], "forbidden");

    for (source, field) in [("camera", "video"), ("screen", "screen")] {
        a.send(json!({"type": "stop-video", "participant_id": bob_id, "source": source}))
            .await?;
        let notice = b.recv_type("video-stopped-by-host").await?;
        assert_eq!(notice["by"], "Ada Test");
        assert_eq!(notice["source"], source);
        let state = a.recv_type("media-state").await?;
        assert_eq!(state["participant_id"], bob_id);
        assert_eq!(state["media"][field], false, "{state}");
    }
    // Only cameras and screens.
    a.send(
        json!({"type": "stop-video", "participant_id": bob_id, "source": "microphone", "ref": 6}),
    )
    .await?;
    let refused = a.recv_type("error").await?;
    assert_eq!(refused["code"], "invalid_message");
    server.stop().await
}

#[tokio::test]
async fn a_co_host_can_act_as_a_host_and_stays_one_after_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (ada, bob, cyd) = (
        server.user("ada").await?,
        server.user("bob").await?,
        server.user("cyd").await?,
    );
    let slug = ada.create_meeting("Board").await?;
    let mut a = ada.ws().await?;
    a.join(&slug).await?;
    let mut b = bob.ws().await?;
    let bob_id = b.join(&slug).await?["self"]["id"].clone();
    a.recv_type("user-joined").await?;
    let mut c = cyd.ws().await?;
    let cyd_id = c.join(&slug).await?["self"]["id"].clone();

    // Only hosts may make hosts.
    c.send(json!({"type": "make-host", "participant_id": cyd_id, "ref": 1}))
        .await?;
    assert_eq!(c.recv_type("error").await?["code"], "forbidden");

    a.send(json!({"type": "make-host", "participant_id": bob_id}))
        .await?;
    for ws in [&mut a, &mut b, &mut c] {
        let changed = ws.recv_type("role-changed").await?;
        assert_eq!(changed["participant_id"], bob_id);
        assert_eq!(changed["role"], "host");
    }
    // Bob now acts as a host.
    b.send(json!({"type": "mute-participant", "participant_id": cyd_id}))
        .await?;
    c.recv_type("muted-by-host").await?;

    // Stored: after a restart Bob joins as a host.
    drop((a, b, c));
    let server = server.restart().await?;
    let bob = server.client();
    bob.login("bob", zync_tests::PASSWORD).await?;
    let mut b = bob.ws().await?;
    assert_eq!(b.join(&slug).await?["self"]["role"], "host");
    let cyd = server.client();
    cyd.login("cyd", zync_tests::PASSWORD).await?;
    let mut c = cyd.ws().await?;
    assert_eq!(c.join(&slug).await?["self"]["role"], "participant");
    server.stop().await
}

#[tokio::test]
async fn a_locked_meeting_keeps_newcomers_in_the_lobby_until_a_host_decides() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let (ada, bob, dee, eve) = (
        server.user("ada").await?,
        server.user("bob").await?,
        server.user("dee").await?,
        server.user("eve").await?,
    );
    let slug = ada.create_meeting("Interviews").await?;
    let mut a = ada.ws().await?;
    assert_eq!(a.join(&slug).await?["locked"], false);
    let mut b = bob.ws().await?;
    b.join(&slug).await?;
    a.recv_type("user-joined").await?;

    // Only hosts lock.
    b.send(json!({"type": "lock-meeting", "locked": true, "ref": 1}))
        .await?;
    assert_eq!(b.recv_type("error").await?["code"], "forbidden");
    a.send(json!({"type": "lock-meeting", "locked": true}))
        .await?;
    for ws in [&mut a, &mut b] {
        let locked = ws.recv_type("meeting-locked").await?;
        assert_eq!(locked["locked"], true);
        assert_eq!(locked["by"], "Ada Test");
    }

    // Dee knocks: she waits (no existing-users, no media); the host sees
    // her in the lobby, the others do not.
    let mut d = dee.ws().await?;
    d.send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    let waiting = d.recv().await?;
    assert_eq!(waiting["type"], "lobby-waiting", "{waiting}");
    let lobby = a.recv_type("lobby").await?;
    assert_eq!(lobby["waiting"][0]["display_name"], "Dee Test");
    let dee_id = lobby["waiting"][0]["id"].clone();
    b.send(json!({"type": "admit", "participant_id": dee_id, "ref": 2}))
        .await?;
    assert_eq!(b.recv_type("error").await?["code"], "forbidden");

    // Admitted, she joins like anyone.
    a.send(json!({"type": "admit", "participant_id": dee_id}))
        .await?;
    assert_eq!(d.recv().await?["type"], "admitted");
    assert_eq!(a.recv_type("lobby").await?["waiting"], json!([]));
    let welcome = d.join(&slug).await?;
    assert_eq!(welcome["locked"], true);
    assert_eq!(
        a.recv_type("user-joined").await?["participant"]["display_name"],
        "Dee Test"
    );

    // Eve is sent away.
    let mut e = eve.ws().await?;
    e.send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    assert_eq!(e.recv().await?["type"], "lobby-waiting");
    let lobby = a.recv_type("lobby").await?;
    let eve_id = lobby["waiting"][0]["id"].clone();
    a.send(json!({"type": "deny", "participant_id": eve_id}))
        .await?;
    let denied = e.recv_type("denied").await?;
    assert_eq!(denied["by"], "Ada Test");
    assert_eq!(a.recv_type("lobby").await?["waiting"], json!([]));
    // She may knock again (a host may change their mind); closing the
    // page takes her out of the lobby.
    e.send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    assert_eq!(e.recv_type("lobby-waiting").await?["type"], "lobby-waiting");
    assert_eq!(
        a.recv_type("lobby").await?["waiting"][0]["display_name"],
        "Eve Test"
    );
    e.close().await?;
    assert_eq!(a.recv_type("lobby").await?["waiting"], json!([]));

    // Unlocking lets in whoever waits.
    let mut e = eve.ws().await?;
    e.send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    e.recv_type("lobby-waiting").await?;
    a.send(json!({"type": "lock-meeting", "locked": false}))
        .await?;
    assert_eq!(e.recv_type("admitted").await?["type"], "admitted");
    let welcome = e.join(&slug).await?;

    // The chat's history records the decisions.
    let lines: Vec<&str> = welcome["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|m| m["system"] == true)
                .filter_map(|m| m["text"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        lines,
        [
            "Ada Test locked the meeting",
            "Ada Test let Dee Test in",
            "Ada Test turned Eve Test away",
            "Ada Test unlocked the meeting",
        ]
    );
    server.stop().await
}
