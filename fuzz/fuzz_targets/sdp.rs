//! SDP from a browser during a call, through the checks and str0m's parser
//! as signaling calls them: a publish offer (with what each m-line is
//! labelled) or a subscribe answer. A malformed or unacceptable one is
//! refused with a reason, or at worst ends that participant's connection.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use zync_sfu::api::{Command, PublishOffer, Source, TrackLabel, parse_answer};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, sdp)) = data.split_first() else {
        return;
    };
    let Ok(sdp) = std::str::from_utf8(sdp) else {
        return;
    };
    common::with_call(|sim| {
        let participant = sim.peers[usize::from(pick & 1)].id;
        let command = if pick & 2 == 0 {
            // Labels as the web client sends them, for the usual mids.
            let labels = [
                ("0", Source::Microphone),
                ("1", Source::Camera),
                ("2", Source::Screen),
            ]
            .into_iter()
            .take(usize::from(pick >> 2 & 3))
            .map(|(mid, source)| TrackLabel {
                mid: mid.into(),
                source,
            })
            .collect();
            match PublishOffer::parse(sdp, labels) {
                Ok(offer) => Command::PublishOffer { participant, offer },
                Err(refused) => {
                    assert!(!refused.to_string().is_empty(), "a refusal says why");
                    return;
                }
            }
        } else {
            match parse_answer(sdp) {
                Ok(answer) => Command::SubscribeAnswer {
                    participant,
                    answer,
                },
                Err(_) => return,
            }
        };
        sim.core.handle_command(sim.now, command);
    });
});
