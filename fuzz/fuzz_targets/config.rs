//! An operator's config file: any text is a valid configuration or a clear
//! error naming what is wrong.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = zync_config::Config::from_toml_str(text) {
        assert!(!e.to_string().is_empty(), "an error says what is wrong");
    }
});
