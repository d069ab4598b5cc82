//! Loading the configuration from defaults, a file and the environment.

use std::path::Path;
use zync_config::{Config, ConfigError, Source};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("zync.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn no_file_no_env_gives_defaults() {
    let config = Config::load_with_env(None, env(&[])).expect("defaults load");
    assert_eq!(config, Config::default());
    assert_eq!(config.http.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(config.database.url, "sqlite://data/zync.db");
}

#[test]
fn example_file_matches_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("zync.example.toml");
    let config = Config::load_with_env(Some(&example), env(&[])).expect("example loads");
    assert_eq!(
        config,
        Config::default(),
        "zync.example.toml must show the defaults"
    );
}

#[test]
fn environment_beats_file_beats_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        &dir,
        "[http]\nbind = \"0.0.0.0:9000\"\n[limits]\nmax_chat_chars = 500\nmax_upload_bytes = 2048\n",
    );
    let config = Config::load_with_env(
        Some(&path),
        env(&[
            ("ZYNC_HTTP_BIND", "127.0.0.1:9100"),
            ("ZYNC_LIMITS_MAX_UPLOAD_BYTES", "4096"),
            ("ZYNC_DATABASE_URL", "postgres://zync@localhost/zync"),
            ("ZYNC_UNRELATED_THING", "ignored: not a section of ours"),
            ("PATH", "/usr/bin"),
        ]),
    )
    .expect("loads");
    assert_eq!(
        config.http.bind.to_string(),
        "127.0.0.1:9100",
        "env wins over file"
    );
    assert_eq!(config.limits.max_upload_bytes, 4096, "env wins over file");
    assert_eq!(config.limits.max_chat_chars, 500, "file wins over default");
    assert_eq!(config.database.url, "postgres://zync@localhost/zync");
    assert_eq!(config.limits.max_room_participants, 100, "default kept");
}

#[test]
fn unknown_key_in_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "[http]\nbnid = \"0.0.0.0:9000\"\n");
    let err = Config::load_with_env(Some(&path), env(&[])).expect_err("typo refused");
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, origin: Source::File(_) } if key == "http.bnid")
    );
    assert!(err.to_string().contains("`http.bnid`"), "{err}");
}

#[test]
fn unknown_section_is_named() {
    let err = Config::from_toml_str("[htp]\nbind = 1\n").expect_err("refused");
    assert!(
        err.to_string().contains("unknown config key `htp`"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_key_and_source() {
    let err = Config::from_toml_str("[limits]\nmax_chat_chars = \"lots\"\n").expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("`limits.max_chat_chars`") && text.contains("expected an integer"),
        "{text}"
    );

    let err = Config::load_with_env(None, env(&[("ZYNC_LIMITS_MAX_CHAT_CHARS", "lots")]))
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("ZYNC_LIMITS_MAX_CHAT_CHARS") && text.contains("limits.max_chat_chars"),
        "{text}"
    );
}

#[test]
fn unparsable_value_names_key() {
    let err = Config::from_toml_str("[http]\nbind = \"not an address\"\n").expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("`http.bind`"), "{text}");
}

#[test]
fn semantic_errors_name_key() {
    for (toml, key) in [
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        (
            "[http]\npublic_url = \"meet.example.com\"\n",
            "http.public_url",
        ),
        (
            "[limits]\nmax_room_participants = 0\n",
            "limits.max_room_participants",
        ),
        ("[limits]\nmax_chat_chars = -5\n", "limits.max_chat_chars"),
        (
            "[websocket]\nping_interval_ms = 5000\nidle_timeout_ms = 1000\n",
            "websocket.idle_timeout_ms",
        ),
        ("[sfu]\nmax_video_layer = \"x\"\n", "sfu.max_video_layer"),
    ] {
        let err = Config::from_toml_str(toml).expect_err(toml);
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
}

#[test]
fn tls_settings_are_checked_together() {
    const CERT: &str = "[http]\ntls_cert = \"/etc/zync/cert.pem\"\n";
    const BOTH: &str = "[http]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
    let redirect = format!("{BOTH}redirect_bind = \"0.0.0.0:80\"\n");
    for (toml, key, reason) in [
        (CERT.to_string(), "http.tls_cert", "tls_key"),
        (
            "[http]\ntls_key = \"k.pem\"\n".to_string(),
            "http.tls_key",
            "tls_cert",
        ),
        (
            "[http]\nredirect_bind = \"0.0.0.0:80\"\n".to_string(),
            "http.redirect_bind",
            "tls_cert",
        ),
        (redirect.clone(), "http.redirect_bind", "public_url"),
        (
            format!("{redirect}public_url = \"https://meet.example.com\"\nbind = \"0.0.0.0:80\"\n"),
            "http.redirect_bind",
            "overlaps",
        ),
        (
            format!("{BOTH}public_url = \"http://meet.example.com\"\n"),
            "http.public_url",
            "https",
        ),
        (
            "[http]\nacme_webroot = \"/var/lib/zync/acme\"\n".to_string(),
            "http.acme_webroot",
            "redirect_bind",
        ),
    ] {
        let err = Config::from_toml_str(&toml).expect_err(&toml).to_string();
        assert!(err.contains(key) && err.contains(reason), "{toml}: {err}");
    }
    let config = Config::from_toml_str(&format!(
        "{redirect}public_url = \"https://meet.example.com\"\nbind = \"0.0.0.0:443\"\n"
    ))
    .expect("a complete TLS setup loads");
    assert!(config.is_https());
    let config = Config::from_toml_str(BOTH).expect("TLS without public_url loads");
    assert_eq!(config.public_origin(), "https://127.0.0.1:8080");
}

#[test]
fn syntax_error_reports_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(&dir, "[http\nbind = 1\n");
    let err = Config::load_with_env(Some(&path), env(&[])).expect_err("refused");
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn missing_file_is_reported() {
    let err = Config::load_with_env(Some(Path::new("/nonexistent/zync.toml")), env(&[]))
        .expect_err("refused");
    assert!(err.to_string().contains("/nonexistent/zync.toml"), "{err}");
}

#[test]
fn https_public_url_means_secure_cookies() {
    let config =
        Config::from_toml_str("[http]\npublic_url = \"https://meet.example.com/\"\n").expect("ok");
    assert!(config.is_https());
    assert_eq!(config.public_origin(), "https://meet.example.com");
}

#[test]
fn cluster_settings_are_checked() {
    const SECRET: &str = "secret = \"0123456789abcdef0123456789abcdef\"\n";
    let good = format!("[cluster]\nredis_url = \"redis://10.0.0.5:6379\"\n{SECRET}");
    let config = Config::from_toml_str(&format!(
        "{good}node_id = \"zync-1\"\nadvertise = \"10.0.0.11:7000\"\n"
    ))
    .expect("a valid cluster section");
    assert!(config.cluster.enabled());
    assert!(!Config::default().cluster.enabled(), "alone by default");
    for (toml, key, reason) in [
        (
            "[cluster]\nredis_url = \"redis://r:6379\"\n".to_string(),
            "cluster.secret",
            "32",
        ),
        (
            format!("[cluster]\nredis_url = \"http://r:6379\"\n{SECRET}"),
            "cluster.redis_url",
            "redis://",
        ),
        (
            format!("{good}node_id = \"zync 1\"\n"),
            "cluster.node_id",
            "letters",
        ),
        (
            format!("{good}advertise = \"10.0.0.11\"\n"),
            "cluster.advertise",
            "host:port",
        ),
    ] {
        let err = Config::from_toml_str(&toml).expect_err(&toml);
        let text = err.to_string();
        assert!(
            text.contains(key) && text.contains(reason),
            "{toml}: {text}"
        );
    }
}
