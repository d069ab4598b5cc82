//! The HTTP API against a real server: accounts, sessions, throttling,
//! meetings.

use reqwest::StatusCode;
use serde_json::json;
use zync_tests::{PASSWORD, TestServer};

#[tokio::test]
async fn register_login_logout_me() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.client();

    let (status, body) = alice.get("/api/me").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let (status, me) = alice.register("alice", "Alice Liddell", PASSWORD).await?;
    assert_eq!(status, StatusCode::CREATED, "{me}");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "Alice Liddell");
    assert!(
        me["avatar_url"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/api/users/")
    );

    let (status, body) = alice.get("/api/me").await?;
    assert_eq!(status, StatusCode::OK, "registering logs in");
    assert_eq!(body["id"], me["id"]);

    let (status, _) = alice.post("/api/auth/logout", json!({})).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(alice.get("/api/me").await?.0, StatusCode::UNAUTHORIZED);

    let (status, body) = alice.login("ALICE", PASSWORD).await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "usernames are case-insensitive: {body}"
    );
    assert_eq!(body["id"], me["id"]);
    assert_eq!(alice.get("/api/me").await?.0, StatusCode::OK);
    server.stop().await
}

#[tokio::test]
async fn session_cookie_is_http_only_lax_and_cycled_at_login() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let response = client
        .http
        .post(format!("{}/api/auth/register", server.base))
        .json(&json!({"username": "carol", "display_name": "Carol", "password": PASSWORD}))
        .send()
        .await?;
    let set_cookie = response.headers()["set-cookie"].to_str()?.to_string();
    assert!(set_cookie.starts_with("zync_session="), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        !set_cookie.contains("Secure"),
        "plain http origin: no Secure flag"
    );

    let before = client.cookie_header().expect("cookie after register");
    assert_eq!(client.login("carol", PASSWORD).await?.0, StatusCode::OK);
    let after = client.cookie_header().expect("cookie after login");
    assert_ne!(before, after, "session id must change at login");
    server.stop().await
}

#[tokio::test]
async fn logout_destroys_the_session_server_side() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.user("dave").await?;
    let stolen = client.cookie_header().expect("session cookie");
    assert_eq!(
        client.post("/api/auth/logout", json!({})).await?.0,
        StatusCode::NO_CONTENT
    );
    // Replaying the old cookie from elsewhere must not work.
    let replay = reqwest::Client::new()
        .get(format!("{}/api/me", server.base))
        .header("cookie", stolen)
        .send()
        .await?;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    server.stop().await
}

#[tokio::test]
async fn duplicate_and_invalid_registrations_are_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.user("bob").await?;
    let other = server.client();

    let (status, body) = other.register("BOB", "Another Bob", PASSWORD).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "username_taken");

    for bad in [
        "ab",
        "has space",
        "-dash",
        "émile",
        &"x".repeat(33),
        "semi;colon",
    ] {
        let (status, body) = other.register(bad, "Name", PASSWORD).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(body["error"]["code"], "invalid_username", "{bad:?}");
    }
    let (status, body) = other.register("newuser", "Name", "short").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "weak_password");

    let (status, body) = other.register("newuser", "   ", PASSWORD).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_display_name");

    let (status, body) = other
        .post("/api/auth/register", json!({"username": 5}))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].is_string());

    let raw = other
        .http
        .post(format!("{}/api/auth/register", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = raw.json().await?;
    assert_eq!(body["error"]["code"], "invalid_json");
    server.stop().await
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.user("erin").await?;
    let client = server.client();
    let wrong = client.login("erin", "not the password").await?;
    let unknown = client.login("nobody", "not the password").await?;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown, "no hint whether the account exists");
    assert_eq!(client.get("/api/me").await?.0, StatusCode::UNAUTHORIZED);
    server.stop().await
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_username_and_per_ip() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.auth.max_failures_per_username = 3;
        c.auth.max_failures_per_ip = 6;
    })
    .await?;
    server.user("frank").await?;
    let client = server.client();
    for _ in 0..3 {
        assert_eq!(
            client.login("frank", "guess guess").await?.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let response = client
        .http
        .post(format!("{}/api/auth/login", server.base))
        .json(&json!({"username": "frank", "password": PASSWORD}))
        .send()
        .await?;
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(response.headers().contains_key("retry-after"));

    // Other usernames from this IP still work until the IP limit...
    server.user("grace").await?;
    assert_eq!(client.login("grace", PASSWORD).await?.0, StatusCode::OK);
    for name in ["x1", "x2", "x3"] {
        assert_eq!(
            client.login(name, "guess guess").await?.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // ...then the IP is throttled for every username.
    let (status, body) = client.login("grace", PASSWORD).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_requests");
    server.stop().await
}

#[tokio::test]
async fn protected_routes_need_a_session() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let anonymous = server.client();
    for path in [
        "/api/me",
        "/api/meetings",
        "/api/meetings/calm-otter-river-12345",
        "/api/users/1/avatar",
    ] {
        assert_eq!(
            anonymous.get(path).await?.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    assert_eq!(
        anonymous.post("/api/meetings", json!({})).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let health = reqwest::get(format!("{}/healthz", server.base)).await?;
    assert_eq!(health.status(), StatusCode::OK);
    let (status, body) = anonymous.get("/api/no-such-route").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    server.stop().await
}

#[tokio::test]
async fn meetings_are_created_found_and_listed_newest_first() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;

    let (status, first) = alice
        .post("/api/meetings", json!({"title": "  Standup  "}))
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let slug = first["slug"].as_str().unwrap_or_default().to_string();
    let parts: Vec<&str> = slug.split('-').collect();
    assert_eq!(parts.len(), 4, "{slug}");
    assert!(
        parts[3].len() == 5 && parts[3].bytes().all(|b| b.is_ascii_digit()),
        "{slug}"
    );
    assert_eq!(first["title"], "Standup");
    assert_eq!(first["url"], format!("{}/{slug}", server.base));
    assert_eq!(first["created_by"]["display_name"], "Alice Test");
    assert!(
        first["created_at"]
            .as_str()
            .unwrap_or_default()
            .ends_with('Z')
    );

    let (status, untitled) = alice.post("/api/meetings", json!({})).await?;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(untitled["title"], "");
    assert_ne!(untitled["slug"], first["slug"]);

    let (status, found) = bob.get(&format!("/api/meetings/{slug}")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["slug"], first["slug"]);
    let (status, body) = bob.get("/api/meetings/quiet-heron-lake-00000").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");

    let (_, list) = alice.get("/api/meetings").await?;
    let slugs: Vec<&str> = list["meetings"].as_array().map_or(vec![], |a| {
        a.iter().filter_map(|m| m["slug"].as_str()).collect()
    });
    assert_eq!(
        slugs,
        vec![untitled["slug"].as_str().unwrap_or_default(), slug.as_str()]
    );
    let (_, list) = bob.get("/api/meetings").await?;
    assert_eq!(
        list["meetings"],
        json!([]),
        "bob has not joined anything yet"
    );

    let long = "x".repeat(101);
    let (status, body) = alice.post("/api/meetings", json!({"title": long})).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_title");
    server.stop().await
}

#[tokio::test]
async fn display_name_can_be_changed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let response = alice
        .http
        .patch(format!("{}/api/me", server.base))
        .json(&json!({"display_name": " Alice L. "}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(alice.get("/api/me").await?.1["display_name"], "Alice L.");
    server.stop().await
}

#[tokio::test]
async fn the_selected_database_is_the_one_in_use() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let postgres = std::env::var(zync_tests::POSTGRES_ENV).is_ok_and(|v| !v.is_empty());
    let scheme = if postgres { "postgres://" } else { "sqlite://" };
    assert!(
        server.config.database.url.starts_with(scheme),
        "{}",
        server.config.database.url
    );
    server.stop().await
}

/// A login attempt as a client behind a proxy at 127.0.0.1 that says the
/// client is `client`.
async fn login_via_proxy(
    server: &TestServer,
    client: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<StatusCode> {
    Ok(reqwest::Client::new()
        .post(format!("{}/api/auth/login", server.base))
        .header("x-forwarded-for", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await?
        .status())
}

#[tokio::test]
async fn guessing_at_an_account_locks_out_the_guesser_not_the_owner() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.auth.max_failures_per_username = 3;
    })
    .await?;
    server.user("alice").await?;
    const ATTACKER: &str = "203.0.113.66";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(login_via_proxy(&server, ATTACKER, "alice", "wrong password").await?);
    }
    assert_eq!(
        statuses,
        [
            vec![StatusCode::UNAUTHORIZED; 3],
            vec![StatusCode::TOO_MANY_REQUESTS; 3]
        ]
        .concat()
    );
    // Alice, from her own address, still gets in at once.
    let started = std::time::Instant::now();
    let owner = login_via_proxy(&server, "198.51.100.7", "alice", PASSWORD).await?;
    assert_eq!(owner, StatusCode::OK);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    server.stop().await
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_throttled_on_its_own() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.http.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.auth.max_failures_per_ip = 3;
    })
    .await?;
    server.user("bob").await?;
    for name in ["x", "y", "z"] {
        let status = login_via_proxy(&server, "203.0.113.66", name, "nope").await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let locked = login_via_proxy(&server, "203.0.113.66", "bob", PASSWORD).await?;
    assert_eq!(
        locked,
        StatusCode::TOO_MANY_REQUESTS,
        "the guesser's address is locked"
    );
    let other = login_via_proxy(&server, "198.51.100.8", "bob", PASSWORD).await?;
    assert_eq!(
        other,
        StatusCode::OK,
        "someone else behind the same proxy is not"
    );

    // A client cannot dodge its lock by naming itself someone else: the
    // proxy appends the real address, which is what counts.
    let forged = login_via_proxy(&server, "192.0.2.1, 203.0.113.66", "bob", PASSWORD).await?;
    assert_eq!(forged, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await
}

#[tokio::test]
async fn forwarding_headers_are_ignored_without_trusted_proxies() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.auth.max_failures_per_ip = 2).await?;
    for (i, name) in ["x", "y"].iter().enumerate() {
        let claimed = format!("198.51.100.{i}");
        let status = login_via_proxy(&server, &claimed, name, "nope").await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let status = login_via_proxy(&server, "198.51.100.99", "z", "nope").await?;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the peer address counts"
    );
    server.stop().await
}

#[tokio::test]
async fn registrations_and_new_meetings_are_limited_per_address() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.auth.max_registrations_per_ip_per_hour = 2;
        c.auth.max_meetings_per_ip_per_hour = 2;
    })
    .await?;
    let alice = server.user("alice").await?;
    server.user("bob").await?;
    let (status, body) = server.client().register("carol", "Carol", PASSWORD).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    alice.create_meeting("one").await?;
    alice.create_meeting("two").await?;
    let (status, _) = alice
        .post("/api/meetings", json!({"title": "three"}))
        .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await
}

#[tokio::test]
async fn ice_servers_hand_signed_in_users_short_lived_turn_credentials() -> anyhow::Result<()> {
    // Without TURN configured: an empty list, for signed-in users only.
    let server = TestServer::start().await?;
    let (status, _) = server.client().get("/api/ice-servers").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = server.user("erin").await?.get("/api/ice-servers").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"ice_servers": [], "expires_at": 0}));
    server.stop().await?;

    let urls = vec![
        "turn:turn.example.com:3478?transport=udp".to_string(),
        "turns:turn.example.com:443?transport=tcp".to_string(),
    ];
    let server = TestServer::start_with(|config| {
        config.turn.urls = urls.clone();
        config.turn.secret = "0123456789abcdef-secret".into();
        config.turn.credential_ttl_secs = 3600;
    })
    .await?;
    let frank = server.user("frank").await?;
    let (_, me) = frank.get("/api/me").await?;
    let (status, body) = frank.get("/api/ice-servers").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let expires_at = body["expires_at"].as_u64().expect("expires_at");
    assert!(
        (now + 3590..=now + 3610).contains(&expires_at),
        "{expires_at} vs now {now}"
    );
    let expected = zync::turn::credentials(
        &urls,
        "0123456789abcdef-secret",
        me["id"].as_i64().expect("id"),
        expires_at,
    );
    assert_eq!(
        body["ice_servers"],
        json!([{
            "urls": urls,
            "username": format!("{expires_at}:{}", me["id"]),
            "credential": expected.credential,
        }])
    );
    server.stop().await
}
