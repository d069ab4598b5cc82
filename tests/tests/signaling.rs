//! WebSocket signaling against a real server: upgrade checks, presence,
//! chat, persistence and every kind of bad input.

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use zync_tests::{TestServer, WsClient};

fn refused_status(result: Result<WsClient, WsError>) -> StatusCode {
    match result {
        Err(WsError::Http(response)) => {
            StatusCode::from_u16(response.status().as_u16()).unwrap_or_default()
        }
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected the upgrade to be refused"),
    }
}

#[tokio::test]
async fn upgrade_needs_a_session_and_the_right_origin() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let cookie = alice.cookie_header();

    let no_session = WsClient::connect(&server.base, None, Some(&server.base)).await;
    assert_eq!(refused_status(no_session), StatusCode::UNAUTHORIZED);

    let wrong_origin = WsClient::connect(
        &server.base,
        cookie.as_deref(),
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(refused_status(wrong_origin), StatusCode::FORBIDDEN);

    let no_origin = WsClient::connect(&server.base, cookie.as_deref(), None).await;
    assert_eq!(refused_status(no_origin), StatusCode::FORBIDDEN);

    let localhost = format!("http://localhost:{}", server.addr.port());
    let ok = WsClient::connect(&server.base, cookie.as_deref(), Some(&localhost)).await;
    assert!(
        ok.is_ok(),
        "loopback alias of the derived origin is accepted"
    );
    let ok = WsClient::connect(&server.base, cookie.as_deref(), Some(&server.base)).await;
    assert!(ok.is_ok());
    server.stop().await
}

#[tokio::test]
async fn three_participants_see_each_other_arrive_and_leave() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob, carol) = (
        server.user("alice").await?,
        server.user("bob").await?,
        server.user("carol").await?,
    );
    let slug = alice.create_meeting("Planning").await?;

    let mut a = alice.ws().await?;
    let welcome = a.join(&slug).await?;
    assert_eq!(welcome["meeting"]["slug"], slug.as_str());
    assert_eq!(welcome["meeting"]["title"], "Planning");
    assert_eq!(welcome["participants"], json!([]));
    assert_eq!(welcome["self"]["display_name"], "Alice Test");
    assert_eq!(
        welcome["self"]["media"],
        json!({"audio": false, "video": false, "screen": false})
    );
    let a_id = welcome["self"]["id"].clone();

    let mut b = bob.ws().await?;
    let welcome = b.join(&slug).await?;
    assert_eq!(welcome["participants"].as_array().map(Vec::len), Some(1));
    assert_eq!(welcome["participants"][0]["id"], a_id);
    let b_id = welcome["self"]["id"].clone();
    let joined = a.recv().await?;
    assert_eq!(joined["type"], "user-joined");
    assert_eq!(joined["participant"]["id"], b_id);
    assert_eq!(joined["participant"]["display_name"], "Bob Test");
    assert!(joined["participant"]["avatar_url"].is_string());

    let mut c = carol.ws().await?;
    let welcome = c.join(&slug).await?;
    let ids: Vec<&Value> = welcome["participants"]
        .as_array()
        .map_or(vec![], |p| p.iter().map(|p| &p["id"]).collect());
    assert_eq!(ids, vec![&a_id, &b_id], "in order of arrival");
    let c_id = welcome["self"]["id"].clone();
    assert_eq!(a.recv().await?["participant"]["id"], c_id);
    assert_eq!(b.recv().await?["participant"]["id"], c_id);

    let (_, meeting) = alice.get(&format!("/api/meetings/{slug}")).await?;
    assert_eq!(meeting["participant_count"], 3);

    // A polite close, an explicit leave, and a vanished TCP connection.
    b.close().await?;
    for ws in [&mut a, &mut c] {
        let left = ws.recv().await?;
        assert_eq!(left, json!({"type": "user-left", "participant_id": b_id}));
    }
    c.send(json!({"type": "leave-meeting"})).await?;
    assert_eq!(a.recv().await?["participant_id"], c_id);
    c.send(json!({"type": "chat-message", "text": "still here?"}))
        .await?;
    assert_eq!(
        c.recv().await?["code"],
        "not_joined",
        "left, but the connection stays usable"
    );
    a.vanish();
    // Carol can rejoin and finds an empty room once Alice is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let welcome = c.join(&slug).await?;
    assert_eq!(welcome["participants"], json!([]));

    // Joining makes the meeting show up in Bob's list.
    let (_, list) = bob.get("/api/meetings").await?;
    assert_eq!(list["meetings"][0]["slug"], slug.as_str());
    server.stop().await
}

#[tokio::test]
async fn same_user_in_two_tabs_is_two_participants() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut tab1 = alice.ws().await?;
    let mut tab2 = alice.ws().await?;
    let first = tab1.join(&slug).await?;
    let second = tab2.join(&slug).await?;
    assert_ne!(first["self"]["id"], second["self"]["id"]);
    assert_eq!(
        second["participants"][0]["user_id"],
        first["self"]["user_id"]
    );
    assert_eq!(
        tab1.recv().await?["participant"]["id"],
        second["self"]["id"]
    );
    server.stop().await
}

#[tokio::test]
async fn chat_is_broadcast_in_order_and_survives_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob) = (server.user("alice").await?, server.user("bob").await?);
    let slug = alice.create_meeting("Chat").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;
    let mut b = bob.ws().await?;
    b.join(&slug).await?;
    a.recv_type("user-joined").await?;

    let texts: Vec<String> = (0..8)
        .map(|i| format!("message {i} <b>not bold</b>"))
        .collect();
    for (i, text) in texts.iter().enumerate() {
        let sender = if i % 2 == 0 { &mut a } else { &mut b };
        sender
            .send(json!({"type": "chat-message", "text": text}))
            .await?;
    }
    let mut seen_by = Vec::new();
    for ws in [&mut a, &mut b] {
        let mut got = Vec::new();
        for _ in 0..texts.len() {
            let m = ws.recv_type("chat-message").await?;
            got.push(m);
        }
        seen_by.push(got);
    }
    assert_eq!(
        seen_by[0], seen_by[1],
        "everyone sees the same messages in the same order"
    );
    let ids: Vec<i64> = seen_by[0].iter().filter_map(|m| m["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    // Two connections race each other, but each sender's own messages keep
    // their order, and nothing is lost or altered.
    let order: Vec<&str> = seen_by[0]
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    for parity in [0, 1] {
        let sent: Vec<&str> = texts
            .iter()
            .skip(parity)
            .step_by(2)
            .map(String::as_str)
            .collect();
        let got: Vec<&str> = order.iter().copied().filter(|t| sent.contains(t)).collect();
        assert_eq!(got, sent, "text is kept verbatim and in order per sender");
    }
    let first = seen_by[0]
        .iter()
        .find(|m| m["text"] == texts[0].as_str())
        .expect("first message");
    assert_eq!(first["user"]["display_name"], "Alice Test");
    assert!(
        first["user"]["avatar_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("/api/users/"))
    );
    assert!(first["sent_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    // Restart the server on the same database: history is still there.
    let server = server.restart().await?;
    let alice = server.client();
    assert_eq!(
        alice.login("alice", zync_tests::PASSWORD).await?.0,
        StatusCode::OK
    );
    let mut late = alice.ws().await?;
    let welcome = late.join(&slug).await?;
    let history: Vec<&str> = welcome["history"].as_array().map_or(vec![], |h| {
        h.iter().filter_map(|m| m["text"].as_str()).collect()
    });
    assert_eq!(
        history, order,
        "history on join, oldest first, as broadcast"
    );
    server.stop().await
}

#[tokio::test]
async fn history_is_paged_newest_first() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.limits.chat_burst = 100).await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;
    for i in 0..60 {
        a.send(json!({"type": "chat-message", "text": format!("m{i}")}))
            .await?;
    }
    for _ in 0..60 {
        a.recv_type("chat-message").await?;
    }
    let path = format!("/api/meetings/{slug}/messages");
    let (status, page) = alice.get(&format!("{path}?limit=25")).await?;
    assert_eq!(status, StatusCode::OK);
    let texts = |page: &Value| -> Vec<String> {
        page["messages"].as_array().map_or(vec![], |m| {
            m.iter()
                .filter_map(|m| m["text"].as_str().map(String::from))
                .collect()
        })
    };
    let first = texts(&page);
    assert_eq!(first.len(), 25);
    assert_eq!(first[0], "m59");
    assert_eq!(first[24], "m35");
    assert_eq!(page["has_more"], true);
    let mut collected = first;
    let mut before = page["messages"][24]["id"].as_i64().unwrap_or_default();
    loop {
        let (_, page) = alice
            .get(&format!("{path}?limit=25&before={before}"))
            .await?;
        let texts = texts(&page);
        collected.extend(texts.iter().cloned());
        if page["has_more"] == false {
            break;
        }
        before = page["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["id"].as_i64())
            .unwrap_or_default();
    }
    let expected: Vec<String> = (0..60).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(collected, expected);

    let (_, welcome_history) = {
        let mut b = alice.ws().await?;
        let welcome = b.join(&slug).await?;
        ((), welcome["history"].as_array().map_or(0, Vec::len))
    };
    assert_eq!(welcome_history, 50, "join carries the last 50");

    assert_eq!(
        alice.get(&format!("{path}?limit=0")).await?.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        alice.get(&format!("{path}?limit=abc")).await?.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        alice
            .get("/api/meetings/no-such-meeting-11111/messages")
            .await?
            .0,
        StatusCode::NOT_FOUND
    );
    server.stop().await
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_stays_usable() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.limits.max_ws_message_bytes = 4096;
        c.limits.max_sdp_bytes = 8192;
        c.limits.max_chat_chars = 100;
    })
    .await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;

    let cases: Vec<(Message, &str)> = vec![
        (Message::text("{not json"), "invalid_json"),
        (Message::text("[1,2,3]"), "invalid_message"),
        (Message::text(r#"{"type": 7}"#), "invalid_message"),
        (
            Message::text(r#"{"type": "launch-rockets"}"#),
            "unknown_type",
        ),
        (
            Message::text(r#"{"type": "chat-message", "text": "hi"}"#),
            "not_joined",
        ),
        (Message::text(r#"{"type": "leave-meeting"}"#), "not_joined"),
        (
            Message::text(r#"{"type": "join-meeting"}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type": "join-meeting", "slug": "no-such-meeting-12345"}"#),
            "meeting_not_found",
        ),
        (
            Message::text(r#"{"type": "join-meeting", "slug": "../../etc/passwd"}"#),
            "meeting_not_found",
        ),
        (
            Message::text(format!(
                r#"{{"type": "chat-message", "text": "{}"}}"#,
                "x".repeat(10_000)
            )),
            "message_too_large",
        ),
        (Message::binary(vec![1, 2, 3]), "binary_not_supported"),
    ];
    for (frame, code) in cases {
        a.send_frame(frame).await?;
        let error = a.recv().await?;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["code"], code, "{error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // `ref` comes back so a client can match the error to its request.
    a.send(json!({"type": "join-meeting", "slug": "no-such-meeting-12345", "ref": 42}))
        .await?;
    assert_eq!(a.recv().await?["ref"], 42);

    // Still usable: join and chat work.
    a.join(&slug).await?;
    a.send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    assert_eq!(a.recv().await?["code"], "already_joined");
    // SDPs have their own limit, larger than chat's: a 6 KB offer passes
    // the message limit (and fails as SDP), a 10 KB one is too large.
    let offer = |bytes: usize| json!({"type": "signal", "pc": "publish", "sdp": {"type": "offer", "sdp": "v".repeat(bytes)}});
    a.send(offer(6_000)).await?;
    assert_eq!(a.recv().await?["code"], "invalid_sdp");
    a.send(offer(10_000)).await?;
    let error = a.recv().await?;
    assert_eq!(error["code"], "sdp_too_large", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_sdp_bytes"))
    );
    a.send(json!({"type": "chat-message", "text": "x".repeat(101)}))
        .await?;
    assert_eq!(a.recv().await?["code"], "chat_too_long");
    a.send(json!({"type": "chat-message", "text": "   "}))
        .await?;
    assert_eq!(a.recv().await?["code"], "invalid_message");
    a.send(json!({"type": "chat-message", "text": "hello after all that"}))
        .await?;
    let message = a.recv().await?;
    assert_eq!(message["type"], "chat-message");
    assert_eq!(message["text"], "hello after all that");
    server.stop().await
}

#[tokio::test]
async fn chat_floods_are_refused_without_disconnecting() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.limits.chat_burst = 5;
        c.limits.chat_per_minute = 60;
    })
    .await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;
    for i in 0..8 {
        a.send(json!({"type": "chat-message", "text": format!("spam {i}")}))
            .await?;
    }
    let mut delivered = 0;
    let mut limited = 0;
    for _ in 0..8 {
        let m = a.recv().await?;
        match m["type"].as_str() {
            Some("chat-message") => delivered += 1,
            Some("error") if m["code"] == "rate_limited" => limited += 1,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!((delivered, limited), (5, 3));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send(json!({"type": "chat-message", "text": "after a pause"}))
        .await?;
    assert_eq!(a.recv().await?["text"], "after a pause");
    server.stop().await
}

#[tokio::test]
async fn a_full_room_refuses_the_next_participant() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.limits.max_room_participants = 2).await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut one = alice.ws().await?;
    one.join(&slug).await?;
    let mut two = alice.ws().await?;
    two.join(&slug).await?;
    let mut three = alice.ws().await?;
    three
        .send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    let error = three.recv().await?;
    assert_eq!(error["code"], "room_full", "{error}");
    two.close().await?;
    one.recv_type("user-joined").await?;
    one.recv_type("user-left").await?;
    three.join(&slug).await?;
    server.stop().await
}

#[tokio::test]
async fn sockets_that_join_but_never_connect_media_lose_their_places() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.limits.max_room_participants = 2;
        c.sfu.join_media_timeout_secs = 2;
    })
    .await?;
    let (alice, mallory) = (server.user("alice").await?, server.user("mallory").await?);
    let slug = alice.create_meeting("").await?;
    // Mallory fills Alice's meeting with sockets that answer pings but never
    // negotiate media.
    let mut squatters = Vec::new();
    for _ in 0..2 {
        let mut ws = mallory.ws().await?;
        ws.join(&slug).await?;
        squatters.push(ws);
    }
    let mut owner = alice.ws().await?;
    owner
        .send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    assert_eq!(owner.recv().await?["code"], "room_full");

    for squatter in &mut squatters {
        let error = squatter.recv_type("error").await?;
        assert_eq!(error["code"], "media_failed", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("no media connection within 2 s")),
            "{error}"
        );
    }
    owner.join(&slug).await?;
    server.stop().await
}

#[tokio::test]
async fn logging_out_closes_the_sessions_websockets() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (alice, bob) = (server.user("alice").await?, server.user("bob").await?);
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    let a_id = a.join(&slug).await?["self"]["id"].clone();
    let mut b = bob.ws().await?;
    b.join(&slug).await?;
    a.recv_type("user-joined").await?;

    let (status, _) = alice.post("/api/auth/logout", json!({})).await?;
    assert_eq!(status, 204);
    let closed = a.recv_type("error").await.expect_err("the socket closes");
    assert!(format!("{closed:#}").contains("logged out"), "{closed:#}");
    let left = b.recv_type("user-left").await?;
    assert_eq!(left["participant_id"], a_id);
    // Bob's session, and his socket, are untouched.
    b.send(json!({"type": "chat-message", "text": "still here"}))
        .await?;
    assert_eq!(b.recv_type("chat-message").await?["text"], "still here");
    server.stop().await
}

#[tokio::test]
async fn a_client_that_keeps_sending_refused_messages_is_disconnected() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;
    // An answer with no offer outstanding is refused without being parsed;
    // twenty are tolerated, the next closes the connection.
    let answer =
        json!({"type": "signal", "pc": "subscribe", "sdp": {"type": "answer", "sdp": "v=0"}});
    for _ in 0..20 {
        a.send(answer.clone()).await?;
        assert_eq!(a.recv_type("error").await?["code"], "no_offer_pending");
    }
    a.send(answer).await?;
    assert_eq!(a.recv_type("error").await?["code"], "no_offer_pending");
    let closed = a.recv().await.expect_err("closed");
    assert!(
        format!("{closed:#}").contains("too many refused messages"),
        "{closed:#}"
    );
    server.stop().await
}

#[tokio::test]
async fn one_account_is_bounded_in_sockets_tabs_and_chat() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.limits.max_sockets_per_user = 4;
        c.limits.max_participants_per_user = 3;
        c.limits.chat_burst = 5;
        c.limits.chat_per_minute = 6;
    })
    .await?;
    let (alice, bob) = (server.user("alice").await?, server.user("bob").await?);
    let slug = alice.create_meeting("").await?;
    let mut b = bob.ws().await?;
    b.join(&slug).await?;

    let mut tabs = Vec::new();
    for _ in 0..4 {
        tabs.push(alice.ws().await?);
    }
    let Err(refused) = alice.ws().await else {
        panic!("a fifth socket is refused");
    };
    assert!(format!("{refused:#}").contains("429"), "{refused:#}");

    for tab in tabs.iter_mut().take(3) {
        tab.join(&slug).await?;
    }
    tabs[3]
        .send(json!({"type": "join-meeting", "slug": slug}))
        .await?;
    assert_eq!(tabs[3].recv_type("error").await?["code"], "too_many_tabs");

    // Three tabs chatting at once share one budget of five.
    for (i, tab) in tabs.iter_mut().take(3).enumerate() {
        for n in 0..4 {
            tab.send(json!({"type": "chat-message", "text": format!("tab {i} #{n}")}))
                .await?;
        }
    }
    let mut delivered = 0;
    while let Ok(m) = b.recv_within(Duration::from_millis(500)).await {
        if m["type"] == "chat-message" {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 5, "Bob sees the account's burst, not three");

    // A closed socket frees its place.
    tabs.pop().expect("four").close().await?;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = alice.ws().await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a socket opens again once one closed");
    server.stop().await
}

#[tokio::test]
async fn heartbeat_drops_a_silent_client() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.websocket.ping_interval_ms = 100;
        c.websocket.idle_timeout_ms = 400;
    })
    .await?;
    let (alice, bob) = (server.user("alice").await?, server.user("bob").await?);
    let slug = alice.create_meeting("").await?;
    let mut a = alice.ws().await?;
    a.join(&slug).await?;
    let mut b = bob.ws().await?;
    let b_id = b.join(&slug).await?["self"]["id"].clone();
    a.recv_type("user-joined").await?;

    // Bob's client hangs: it stops reading, so it never answers pings.
    let frozen = b.into_inner();
    let left = a.recv_type("user-left").await?;
    assert_eq!(left["participant_id"], b_id);
    // Alice, who keeps reading (and so answers pings), is still connected.
    a.expect_silence(Duration::from_millis(800)).await?;
    a.send(json!({"type": "chat-message", "text": "still here"}))
        .await?;
    assert_eq!(a.recv().await?["text"], "still here");
    drop(frozen.into_future());
    server.stop().await
}

#[tokio::test]
async fn existing_users_says_whether_to_send_simulcast_layers() -> anyhow::Result<()> {
    for simulcast in [true, false] {
        let server = TestServer::start_with(|c| c.sfu.simulcast = simulcast).await?;
        let alice = server.user("alice").await?;
        let slug = alice.create_meeting("Layers").await?;
        let mut ws = alice.ws().await?;
        let welcome = ws.join(&slug).await?;
        assert_eq!(welcome["publishing"]["simulcast"], simulcast, "{welcome}");
        server.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_stopping_server_tells_clients_it_is_restarting() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let slug = alice.create_meeting("Upgrade").await?;
    let mut ws = alice.ws().await?;
    ws.join(&slug).await?;

    let stopping = tokio::spawn(server.shut_down());
    let notice = ws.recv_type("server-restarting").await?;
    assert_eq!(notice["retry_after_ms"], 1000, "{notice}");
    // Then a close with 1012 (Service Restart), not a network failure.
    let mut inner = ws.into_inner();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), inner.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => anyhow::bail!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");
    drop(inner);
    stopping.await??.destroy().await;
    Ok(())
}
