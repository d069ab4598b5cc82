//! Cluster mode's node registry against a real Redis (Debian's
//! `redis-server`, started here on a free loopback port) and real `zync`
//! processes: nodes see each other, a killed node drops out of the others'
//! view within 10 s, a stopped one at once, and a Redis outage is reported
//! and survived.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECRET: &str = "a-cluster-secret-of-at-least-32-characters";

/// A free TCP port on loopback (the listener is closed again).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `redis-server` on 127.0.0.1, in memory only; stopped on drop.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian: apt-get install redis-server; scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }

    fn start() -> Self {
        Self::start_on(free_port())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `zync` process in cluster mode on loopback; killed on drop.
struct Node {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(redis_url: &str, id: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut child = spawn_node(redis_url, id, &dir);
        let stdout = child.stdout.take().expect("piped stdout");
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    let rest = &line[at + "listening on ".len()..];
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = found.send(url.to_string());
                }
            }
        });
        let base = listening
            .recv_timeout(Duration::from_secs(20))
            .expect("zync starts and says where it listens");
        Self {
            child,
            base,
            _dir: dir,
        }
    }

    /// SIGKILL: no goodbye, as when a machine dies.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a normal stop, as for an upgrade.
    fn terminate(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }

    async fn get(&self, path: &str) -> (u16, String) {
        match reqwest::get(format!("{}{path}", self.base)).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    async fn cluster(&self) -> Value {
        let (status, body) = self.get("/api/cluster").await;
        assert_eq!(status, 200, "GET /api/cluster: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Polls this node's view until `done` holds; returns it and how long
    /// it took, or fails after `within`.
    async fn wait_for(&self, within: Duration, done: impl Fn(&Value) -> bool) -> (Value, Duration) {
        let start = Instant::now();
        loop {
            let view = self.cluster().await;
            if done(&view) {
                return (view, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "not within {within:?}; the view is {view}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_node(redis_url: &str, id: &str, dir: &tempfile::TempDir) -> Child {
    Command::new(env!("CARGO_BIN_EXE_zync"))
        .current_dir(dir.path())
        .env("ZYNC_HTTP_BIND", "127.0.0.1:0")
        .env(
            "ZYNC_DATABASE_URL",
            format!("sqlite://{}/zync.db", dir.path().display()),
        )
        .env("ZYNC_SFU_BIND_IP", "127.0.0.1")
        .env("ZYNC_SFU_UDP_PORT_MIN", "0")
        .env("ZYNC_SFU_UDP_PORT_MAX", "0")
        .env("ZYNC_SFU_TCP_PORT_MIN", "0")
        .env("ZYNC_SFU_TCP_PORT_MAX", "0")
        .env("ZYNC_SFU_WORKERS", "1")
        .env("ZYNC_LOG_LEVEL", "warn,zync=info")
        .env("RUST_LOG", "")
        .env("ZYNC_CLUSTER_REDIS_URL", redis_url)
        .env("ZYNC_CLUSTER_NODE_ID", id)
        .env("ZYNC_CLUSTER_ADVERTISE", format!("{id}.internal:7000"))
        .env("ZYNC_CLUSTER_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the zync binary runs")
}

fn ids(view: &Value) -> Vec<String> {
    view["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn nodes_see_each_other_and_a_killed_node_drops_out_within_10_s() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "node-a");
    let mut b = Node::start(&redis.url(), "node-b");
    let mut c = Node::start(&redis.url(), "node-c");

    let (view, _) = a
        .wait_for(Duration::from_secs(5), |v| ids(v).len() == 3)
        .await;
    assert_eq!(view["node_id"], "node-a");
    assert_eq!(view["redis"], "up");
    assert_eq!(ids(&view), ["node-a", "node-b", "node-c"]);
    let b_entry = &view["nodes"][1];
    assert_eq!(b_entry["advertise"], "node-b.internal:7000");
    assert_eq!(b_entry["public_url"].as_str(), Some(b.base.as_str()));
    for key in [
        "meetings",
        "participants",
        "cpu_percent",
        "forwarded_packets_per_second",
        "started_at",
    ] {
        assert!(b_entry[key].is_number(), "{key} in {b_entry}");
    }
    assert!(
        b_entry.get("secret").is_none(),
        "the secret is never published"
    );
    let (status, metrics) = a.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("zync_cluster_nodes 3"), "{metrics}");
    assert!(metrics.contains("zync_cluster_redis_up 1"));

    // Killed: no goodbye. The others drop it once its entry expires.
    b.kill();
    let (view, took) = a
        .wait_for(Duration::from_secs(10), |v| ids(v).len() == 2)
        .await;
    assert_eq!(ids(&view), ["node-a", "node-c"]);
    eprintln!("a killed node left the view after {took:?}");

    // Stopped normally: it removes itself at once; the others see it at
    // their next beat.
    c.terminate();
    let (view, took) = a
        .wait_for(Duration::from_secs(3), |v| ids(v).len() == 1)
        .await;
    assert_eq!(ids(&view), ["node-a"]);
    eprintln!("a stopped node left the view after {took:?}");
}

#[tokio::test]
async fn a_redis_outage_is_reported_and_survived() {
    let mut redis = Redis::start();
    let port = redis.port;
    let a = Node::start(&redis.url(), "node-a");
    a.wait_for(Duration::from_secs(5), |v| v["redis"] == "up")
        .await;

    redis.stop();
    let (view, _) = a
        .wait_for(Duration::from_secs(5), |v| v["redis"] == "unavailable")
        .await;
    assert!(view["error"].is_string(), "{view}");
    assert_eq!(a.get("/healthz").await.0, 200, "the node serves on");
    let (_, metrics) = a.get("/metrics").await;
    assert!(metrics.contains("zync_cluster_redis_up 0"), "{metrics}");

    // Redis is back (empty: it kept nothing): the node writes itself again.
    let _redis = Redis::start_on(port);
    let (view, _) = a
        .wait_for(Duration::from_secs(10), |v| {
            v["redis"] == "up" && ids(v) == ["node-a"]
        })
        .await;
    assert!(view.get("error").is_none(), "{view}");
}

#[tokio::test]
async fn a_second_process_with_the_same_node_id_is_refused() {
    let redis = Redis::start();
    let _a = Node::start(&redis.url(), "twin");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    let output = spawn_node(&redis.url(), "twin", &dir)
        .wait_with_output()
        .expect("it runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cluster.node_id \"twin\" is in use by another running node"),
        "{stderr}"
    );
    // It waited for the entry to expire in case the id was its own from
    // before a restart, and no longer.
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn an_unreachable_redis_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("redis://127.0.0.1:{}", free_port());
    let output = spawn_node(&url, "lonely", &dir)
        .wait_with_output()
        .expect("it runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cluster: cannot reach Redis at {url}")),
        "{stderr}"
    );
}
