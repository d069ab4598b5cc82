//! An uploaded avatar (`PUT /api/me/avatar`): any bytes are a small JPEG or
//! a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(jpeg) = zync::avatar::make_avatar(data) {
        assert!(jpeg.starts_with(b"\xff\xd8"), "avatars are stored as JPEG");
    }
});
