//! The `zync` binary as an operator runs it: defaults, config files, the
//! environment, and `--check-config`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ZYNC: &str = env!("CARGO_BIN_EXE_zync");

fn zync(dir: &Path) -> Command {
    let mut command = Command::new(ZYNC);
    command.current_dir(dir).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("ZYNC_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn check_config_accepts_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/zync.example.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = zync(dir.path())
        .arg("--check-config")
        .arg(&example)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_config_names_the_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("zync.toml");
    std::fs::write(&file, "[limits]\nmax_room_participants = \"many\"\n").expect("write");
    let out = zync(dir.path())
        .arg("--check-config")
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.max_room_participants"), "{stderr}");

    std::fs::write(&file, "[log]\nlevel = \"loud!!\"\n").expect("write");
    let out = zync(dir.path())
        .arg("--check-config")
        .arg(&file)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.level"));

    std::fs::write(&file, "[http]\n").expect("write");
    let out = zync(dir.path())
        .arg("--check-config")
        .arg(&file)
        .env("ZYNC_HTTP_BIND", "nonsense")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http.bind"), "{stderr}");
}

#[test]
fn bad_config_stops_the_server_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = zync(dir.path())
        .env("ZYNC_DATABASE_URL", "mysql://nope")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
}

/// Starts `zync` with no arguments in an empty directory (port from the
/// environment, so the test does not collide with anything on 8080) and
/// checks it creates its SQLite file under ./data and answers /healthz.
#[test]
fn starts_on_embedded_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        probe.local_addr().expect("addr").port()
    };
    let mut child = zync(dir.path())
        .env("ZYNC_HTTP_BIND", format!("127.0.0.1:{port}"))
        .env("ZYNC_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut lines = BufReader::new(stdout).lines();
    let mut listening = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => {
                listening = true;
                break;
            }
            Some(_) => continue,
            None => break,
        }
    }
    let healthy = listening
        && std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                Ok(answer.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "zync did not report listening");
    assert!(healthy, "healthz did not answer 200");
    assert!(
        dir.path().join("data/zync.db").exists(),
        "SQLite file created under ./data"
    );
}
