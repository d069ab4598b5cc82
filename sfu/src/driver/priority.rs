//! Media first: the threads that do everything else (HTTP, WebSockets,
//! parsing and printing SDP) run at a lower CPU priority than the media
//! workers, so that when the machine is busy, work such as a burst of joins
//! waits rather than the packets of people already talking.

/// How much nicer than the media workers other threads are. Under full
/// contention a thread 10 nice levels below another gets about a tenth of
/// its CPU time; with CPU to spare it runs as fast as ever.
const NICE_BELOW_MEDIA: i32 = 10;
/// The largest nice value Linux has.
const NICEST: i32 = 19;

/// Lowers the calling thread's priority by [`NICE_BELOW_MEDIA`] from where
/// it is (the process's nice value, which media workers keep, so an
/// operator's `nice` or systemd `Nice=` still applies to everything). Best
/// effort: lowering one's own priority needs no privilege, but a sandbox may
/// forbid it. Call from every thread that is not a media worker, e.g. in the
/// async runtime's `on_thread_start`.
pub fn yield_to_media() {
    // On Linux the nice value belongs to the thread named by its id.
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread).and_then(|now| {
        rustix::process::setpriority_process(thread, (now + NICE_BELOW_MEDIA).min(NICEST))
    });
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "cannot lower this thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("own priority")
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            yield_to_media();
            own_nice()
        })
        .join()
        .expect("thread ran");
        assert_eq!(lowered, (before + NICE_BELOW_MEDIA).min(NICEST));
        assert_eq!(own_nice(), before, "other threads keep their priority");
    }
}
