//! The HTTP listener under connections that never finish a request: idle
//! and slow-header connections are closed after `http.header_timeout_secs`,
//! and a process started with the common soft limit of 1,024 open files
//! raises it, so such connections cannot lock everyone out.
//! (Its own test binary: it changes the process's open-file limit.)

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zync_tests::TestServer;

const IDLE_CONNECTIONS: usize = 1_100;

/// Waits until the server closes `stream` (EOF or reset); how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_neither_lock_out_nor_stay() -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < 4 * IDLE_CONNECTIONS as u64 {
        eprintln!("skipped: the hard open-file limit ({hard}) is too low to show the raise");
        return Ok(());
    }
    // The common default soft limit, as a service would start with.
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(1_024),
            maximum: limit.maximum,
        },
    )?;

    let server = TestServer::start_with(|c| c.http.header_timeout_secs = 2).await?;
    assert!(
        getrlimit(Resource::Nofile).current > Some(1_024),
        "zync raised its soft open-file limit at start"
    );

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(TcpStream::connect(server.addr).await?);
    }
    // Someone trickling a request's headers, a byte at a time.
    let mut slow = TcpStream::connect(server.addr).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
    let trickle = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow.write_all(b"X").await.is_err() {
                return Ok::<_, std::io::Error>(true);
            }
        }
        Ok(false)
    });

    // Everyone else is still served, at once.
    let started = Instant::now();
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .timeout(Duration::from_secs(1))
        .send()
        .await?;
    assert!(health.status().is_success());
    assert!(started.elapsed() < Duration::from_secs(1));

    // The idle connections are closed after the header deadline (2 s).
    for stream in idle.iter_mut().step_by(100) {
        let closed = closed_within(stream, Duration::from_secs(6)).await;
        assert!(
            closed.is_some(),
            "an idle connection is closed after the header deadline"
        );
    }
    assert!(
        trickle.await??,
        "a connection trickling its headers is closed within the deadline"
    );
    drop(idle);
    server.stop().await
}
