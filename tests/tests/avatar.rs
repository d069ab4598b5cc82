//! Avatar upload and serving against a real server.

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use reqwest::StatusCode;
use std::io::Cursor;
use zync_tests::{Client, TestServer};

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

async fn upload(
    client: &Client,
    bytes: Vec<u8>,
    content_type: &str,
) -> anyhow::Result<(StatusCode, serde_json::Value)> {
    let r = client
        .http
        .put(format!("{}/api/me/avatar", client.base))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await?;
    Ok((r.status(), r.json().await.unwrap_or_default()))
}

async fn fetch(client: &Client, url: &str) -> anyhow::Result<reqwest::Response> {
    Ok(client
        .http
        .get(format!("{}{url}", client.base))
        .send()
        .await?)
}

/// A PNG whose header claims 100000×100000 pixels (40 GB decoded) but whose
/// file is a few dozen bytes: a decompression bomb.
fn png_bomb() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn png_and_jpeg_uploads_become_256_square() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let before = alice.get("/api/me").await?.1["avatar_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    for (bytes, kind) in [
        (encoded(640, 480, ImageFormat::Png), "image/png"),
        (encoded(300, 900, ImageFormat::Jpeg), "image/jpeg"),
        (encoded(320, 200, ImageFormat::WebP), "image/webp"),
        (encoded(100, 60, ImageFormat::Gif), "image/gif"),
    ] {
        let (status, me) = upload(&alice, bytes, kind).await?;
        assert_eq!(status, StatusCode::OK, "{kind}: {me}");
        let url = me["avatar_url"].as_str().unwrap_or_default().to_string();
        assert_ne!(url, before, "the URL changes so caches refresh");
        let response = fetch(&alice, &url).await?;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        assert!(
            response.headers()["cache-control"]
                .to_str()?
                .contains("max-age")
        );
        let etag = response.headers()["etag"].to_str()?.to_string();
        let image = image::load_from_memory(&response.bytes().await?)?;
        assert_eq!((image.width(), image.height()), (256, 256), "{kind}");

        let again = alice
            .http
            .get(format!("{}{url}", alice.base))
            .header("if-none-match", &etag)
            .send()
            .await?;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    server.stop().await
}

#[tokio::test]
async fn users_without_upload_get_initials() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let alice = server.user("alice").await?;
    let bob = server.user("bob").await?;
    let url = alice.get("/api/me").await?.1["avatar_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let response = fetch(&bob, &url).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await?;
    assert!(svg.contains(">AT</text>"), "Alice Test → AT: {svg}");
    assert_eq!(
        fetch(&bob, "/api/users/999999/avatar").await?.status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await
}

#[tokio::test]
async fn bad_uploads_get_clear_errors_and_keep_the_old_avatar() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.limits.max_upload_bytes = 200_000).await?;
    let alice = server.user("alice").await?;
    let (status, me) = upload(&alice, encoded(64, 64, ImageFormat::Png), "image/png").await?;
    assert_eq!(status, StatusCode::OK);
    let good_url = me["avatar_url"].as_str().unwrap_or_default().to_string();

    let (status, body) = upload(&alice, b"GIF? no, plain text".to_vec(), "image/gif").await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_media_type");

    let mut truncated = encoded(400, 400, ImageFormat::Png);
    truncated.truncate(truncated.len() / 3);
    let (status, body) = upload(&alice, truncated, "image/png").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "corrupt_image");

    let (status, body) = upload(&alice, vec![0x89; 300_000], "image/png").await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "upload_too_large");

    let bomb = png_bomb();
    assert!(bomb.len() < 100);
    let (status, body) = upload(&alice, bomb, "image/png").await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "image_too_large");

    let (status, body) = upload(&alice, Vec::new(), "image/png").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let me = alice.get("/api/me").await?.1;
    assert_eq!(
        me["avatar_url"],
        good_url.as_str(),
        "failed uploads change nothing"
    );
    assert_eq!(fetch(&alice, &good_url).await?.status(), StatusCode::OK);
    server.stop().await
}
