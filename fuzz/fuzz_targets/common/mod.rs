//! A call for the targets that feed the SFU core: two simulated browsers
//! (str0m peers, simulcast camera and microphone) joined, connected and
//! sending, in simulated time.

use std::cell::RefCell;
use std::time::Duration;
use zync_sfu::testkit::MediaShape;
use zync_sfu::testkit::sim::{Link, Sim};

/// Inputs fed to one call before a fresh one is set up, so that state
/// piled up by earlier inputs does not hide what a new call would do.
const INPUTS_PER_CALL: u32 = 5_000;

thread_local! {
    static CALL: RefCell<(Sim, u32)> = RefCell::new((call(), 0));
}

/// Two people in a room, media flowing both ways.
fn call() -> Sim {
    let mut sim = Sim::with_config(Link::default(), 7, |_| {});
    for _ in 0..2 {
        let shape = MediaShape {
            simulcast: true,
            video_bitrate: 1_500_000,
            ..MediaShape::default()
        };
        let i = sim.add_peer(shape);
        sim.join(i, "room");
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.core.participant_count(), 2, "the call is up");
    sim
}

/// Runs `feed` on the current call, then lets the call go on a little;
/// starts a new call when this one has been fed enough or lost someone
/// (a participant whose connection fails is removed: that is allowed, it
/// only ends the coverage that participant gave).
pub fn with_call(feed: impl FnOnce(&mut Sim)) {
    CALL.with_borrow_mut(|(sim, inputs)| {
        if *inputs >= INPUTS_PER_CALL || sim.core.participant_count() < 2 {
            *sim = call();
            *inputs = 0;
        }
        *inputs += 1;
        feed(sim);
        sim.exchange();
        if *inputs % 16 == 0 {
            sim.step();
        }
    });
}
