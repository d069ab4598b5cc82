//! A WebSocket text frame from the browser, as `ws::connection` parses it
//! before dispatch: any bytes are a message or a clear refusal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use zync::ws::protocol::parse_client_message;
use zync_config::{Config, LimitsConfig};

static LIMITS: LazyLock<LimitsConfig> = LazyLock::new(|| Config::default().limits);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(refused) = parse_client_message(text, &LIMITS) {
        assert!(!refused.message.is_empty(), "a refusal says why");
    }
});
