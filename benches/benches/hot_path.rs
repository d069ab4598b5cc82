//! Micro-benchmarks of the SFU's per-packet work, without sockets:
//! routing a datagram to its participant, the forwarding decision and
//! header rewrite for one packet to N subscribers, and str0m's write and
//! protect step (SRTP) for one outgoing packet; and the SFU core's whole
//! turn (receive, forward, timers, write and encrypt) in a simulated
//! meeting, per forwarded packet.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Input, Output, Rtc};
use zync_sfu::core::{Rewriter, local_ufrag};
use zync_sfu::testkit::MediaShape;
use zync_sfu::testkit::sim::{Link, Sim};

/// A STUN binding request with USERNAME `srv:cli`, as a browser sends.
fn stun_request() -> Vec<u8> {
    let user = b"k2hs7Tqy:Zb3x";
    let mut attrs = vec![0x00, 0x06, 0x00, user.len() as u8];
    attrs.extend_from_slice(user);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut packet = vec![0x00, 0x01, 0x00, attrs.len() as u8, 0x21, 0x12, 0xa4, 0x42];
    packet.extend_from_slice(&[3; 12]);
    packet.extend_from_slice(&attrs);
    packet
}

fn demux(c: &mut Criterion) {
    let mut group = c.benchmark_group("demux");
    group.throughput(Throughput::Elements(1));
    let routes: HashMap<SocketAddr, u64> = (0..1000u64)
        .map(|i| {
            (
                SocketAddr::from((
                    [127, 0, (i / 250) as u8, (i % 250) as u8],
                    40_000 + i as u16,
                )),
                i,
            )
        })
        .collect();
    let known = SocketAddr::from(([127, 0, 2, 17], 40_517));
    group.bench_function("by address (1000 flows)", |b| {
        b.iter(|| routes.get(black_box(&known)).copied())
    });
    let stun = stun_request();
    group.bench_function("STUN username (new flow)", |b| {
        b.iter(|| local_ufrag(black_box(&stun)).map(str::len))
    });
    group.finish();
}

fn forward_decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward decision + rewrite");
    for n in [1usize, 10, 100] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            let mut subscribers: Vec<(Rewriter, Vec<(Pt, Pt)>)> = (0..n)
                .map(|i| {
                    (
                        Rewriter::new(i as u16),
                        vec![
                            (Pt::from(111), Pt::from(111)),
                            (Pt::from(96), Pt::from(100)),
                        ],
                    )
                })
                .collect();
            let mut seq = 10_000u64;
            b.iter(|| {
                seq += 1;
                let incoming = Pt::from(96);
                let mut sum = 0u64;
                for (rewriter, pts) in &mut subscribers {
                    let Some(&(_, pt)) = pts.iter().find(|(from, _)| *from == incoming) else {
                        continue;
                    };
                    if let Some((s, t)) = rewriter.map(seq, (seq * 3000) as u32) {
                        sum += s + u64::from(t) + u64::from(*pt);
                    }
                }
                black_box(sum)
            });
        });
    }
    group.finish();
}

/// Two str0m peers connected in memory; the left one sends video.
fn connected_pair() -> (Rtc, Rtc, str0m::media::Mid, Pt, Instant) {
    let mut now = Instant::now();
    let build = |lite: bool| {
        Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(lite)
            .clear_codecs()
            .enable_vp8(true)
            .set_stats_interval(None)
            .build(Instant::now())
    };
    let (mut l, mut r) = (build(false), build(true));
    let la: SocketAddr = "10.0.0.1:1000".parse().expect("addr");
    let ra: SocketAddr = "10.0.0.2:2000".parse().expect("addr");
    l.add_local_candidate(Candidate::host(la, "udp").expect("candidate"));
    r.add_local_candidate(Candidate::host(ra, "udp").expect("candidate"));
    let mut api = l.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("sdp");
    let answer = r.sdp_api().accept_offer(offer).expect("answer");
    l.sdp_api().accept_answer(pending, answer).expect("accept");
    for _ in 0..10_000 {
        pump(&mut l, &mut r, now);
        pump(&mut r, &mut l, now);
        if l.is_connected()
            && r.is_connected()
            && l.direct_api().stream_tx_by_mid(mid, None).is_some()
        {
            break;
        }
        now += Duration::from_millis(5);
        l.handle_input(Input::Timeout(now)).expect("timeout");
        r.handle_input(Input::Timeout(now)).expect("timeout");
    }
    let pt = l
        .codec_config()
        .find(|p| p.spec().codec == Codec::Vp8)
        .expect("vp8")
        .pt();
    (l, r, mid, pt, now)
}

/// Delivers everything `from` wants to send to `to`.
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant) {
    loop {
        match from.poll_output().expect("poll") {
            Output::Timeout(_) => break,
            Output::Transmit(t) => {
                let contents = t.contents.to_vec();
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: t.source,
                        destination: t.destination,
                        contents: contents.as_slice().try_into().expect("datagram"),
                    },
                );
                to.handle_input(input).expect("input");
            }
            Output::Event(_) => {}
        }
    }
}

fn protect(c: &mut Criterion) {
    let (mut l, _r, mid, pt, now) = connected_pair();
    let payload: std::sync::Arc<[u8]> = vec![0x5a; 1100].into();
    let mut group = c.benchmark_group("str0m write + protect");
    group.throughput(Throughput::Elements(1));
    let mut seq = 1u64;
    group.bench_function("1100-byte video packet", |b| {
        b.iter(|| {
            seq += 1;
            let mut api = l.direct_api();
            let stream = api.stream_tx_by_mid(mid, None).expect("stream");
            stream.write_rtp(
                RtpWrite::new(
                    pt,
                    SeqNo::from(seq),
                    (seq * 3000) as u32,
                    now,
                    payload.clone(),
                )
                .nackable(true),
            );
            let mut bytes = 0;
            while let Ok(out) = l.poll_output() {
                match out {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => bytes += t.contents.len(),
                    Output::Event(_) => {}
                }
            }
            black_box(bytes)
        });
    });
    // The path the SFU forwards on: written, encrypted and appended to an
    // outbox at once (the vendored str0m's `send_rtp_now`).
    let ssrc = l
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .expect("stream")
        .ssrc();
    let mut outbox = Vec::with_capacity(64 * 1024);
    group.bench_function("1100-byte video packet, send_rtp_now", |b| {
        b.iter(|| {
            seq += 1;
            if outbox.len() > 60 * 1024 {
                outbox.clear();
            }
            let write = RtpWrite::new(
                pt,
                SeqNo::from(seq),
                (seq * 3000) as u32,
                now,
                payload.clone(),
            );
            let sent = l.direct_api().send_rtp_now(ssrc, &write, now, &mut outbox);
            black_box(sent.is_some())
        });
    });
    group.finish();
}

/// Participants in the simulated meeting (all publishing), as `zync-load
/// --preset meeting`.
const MEETING: usize = 25;
/// Simulated time per worker turn: about two incoming datagrams, as the
/// worker sees in `meeting` on loopback.
const TURN: Duration = Duration::from_micros(500);

/// The core's CPU per forwarded packet in a simulated meeting of 25: str0m
/// peers publish audio and 1 Mbit/s video over a lossless simulated network,
/// and only the core's work is timed (receive and decrypt, forward, timers,
/// write and encrypt for every subscriber), without sockets, so this is the
/// user-space part of `zync-load`'s figure with much less noise.
fn room_turn(c: &mut Criterion) {
    let link = Link {
        loss: 0.0,
        delay: Duration::from_millis(1),
    };
    let mut sim = Sim::new(link, 7);
    for _ in 0..MEETING {
        let i = sim.add_peer(MediaShape::default());
        sim.join(i, "bench");
    }
    // Negotiated, connected, past the first keyframes.
    sim.run_for(Duration::from_secs(3));
    let forwarded = |sim: &Sim| sim.core.stats().rtp_out;
    assert!(forwarded(&sim) > 0, "the simulated meeting forwards media");

    let mut group = c.benchmark_group("room turn");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("meeting of 25, per forwarded packet", |b| {
        b.iter_custom(|iters| {
            let (busy, out) = (sim.core_busy, forwarded(&sim));
            while forwarded(&sim) - out < iters {
                sim.tick(TURN);
            }
            // Turns forward whole packets to everyone: scale to `iters`.
            let spent = sim.core_busy - busy;
            spent.mul_f64(iters as f64 / (forwarded(&sim) - out) as f64)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = demux, forward_decision, protect, room_turn
}
criterion_main!(benches);
