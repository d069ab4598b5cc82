//! WebSocket frames through a running server: a real `zync` on loopback
//! (SQLite, its SFU workers), an account logged in, a meeting to join.
//! Each input is one connection's frames (split at newlines; text when
//! UTF-8, binary otherwise; `$SLUG` stands for the meeting's slug), sent
//! through parsing, limits and dispatch into the room and the media plane.
//! Then a last message must still be answered: the connection neither
//! panics nor hangs, and whatever it sent, the server goes on serving.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use zync_tests::{Client, Message, TestServer};

/// Accounts the inputs take turns with, so that per-account limits (chat
/// rate, participants per meeting) bind less often.
const ACCOUNTS: usize = 8;
/// Frames sent per input at most.
const MAX_FRAMES: usize = 32;
/// How long the last message may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

struct Harness {
    runtime: tokio::runtime::Runtime,
    _server: TestServer,
    accounts: Vec<Client>,
    slug: String,
}

static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (server, accounts, slug) = runtime.block_on(async {
        let server = TestServer::start().await.expect("a server");
        let mut accounts = Vec::new();
        for i in 0..ACCOUNTS {
            accounts.push(server.user(&format!("fuzz{i}")).await.expect("an account"));
        }
        let slug = accounts[0].create_meeting("Fuzzing").await.expect("a meeting");
        (server, accounts, slug)
    });
    Harness {
        runtime,
        _server: server,
        accounts,
        slug,
    }
});

static NEXT: AtomicUsize = AtomicUsize::new(0);

fuzz_target!(|data: &[u8]| {
    let harness = &*HARNESS;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let account = &harness.accounts[n % ACCOUNTS];
    harness.runtime.block_on(async {
        let mut ws = account.ws().await.expect("the server accepts a WebSocket");
        for frame in data.split(|b| *b == b'\n').take(MAX_FRAMES) {
            let message = match std::str::from_utf8(frame) {
                Ok(text) => Message::text(text.replace("$SLUG", &harness.slug)),
                Err(_) => Message::binary(frame.to_vec()),
            };
            if ws.send_frame(message).await.is_err() {
                // The server closed the connection (an abusive client).
                return;
            }
        }
        let sentinel = format!("end-{n}");
        let last = format!(r#"{{"type":"fuzz-end","ref":"{sentinel}"}}"#);
        if ws.send_raw(last).await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ws.recv_within(left).await {
                Ok(message) if message["ref"] == sentinel.as_str() => break,
                Ok(_) => {}
                Err(e) if e.to_string().contains("timed out") => {
                    panic!("the server did not answer within {ANSWER_WITHIN:?}")
                }
                // Closed by the server: a refusal it is allowed to make.
                Err(_) => return,
            }
        }
        let _ = ws.close().await;
    });
});
