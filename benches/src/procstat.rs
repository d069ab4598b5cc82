//! CPU time and memory of a process, from `/proc` (Linux); and tying the
//! helper processes' lives to the generator's.

use std::time::Duration;

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Resident memory now, bytes.
    pub rss: u64,
    /// Peak resident memory, bytes.
    pub peak_rss: u64,
}

/// Reads `/proc/<pid>` (`None` when the process is gone or not Linux).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let cpu = Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |v| v * 1024)
    };
    Some(ProcSample {
        cpu,
        rss: kib("VmRSS:"),
        peak_rss: kib("VmHWM:"),
    })
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on
/// every Linux this runs on).
fn clock_ticks() -> u64 {
    100
}

/// For a helper process (the server or the relay, spawned with a piped
/// stdin): exits as soon as stdin reaches end of file, which happens when
/// the parent exits however it dies (a panic, SIGKILL, the OOM killer). An
/// orphaned helper would keep its loopback ports, and keep the parent's
/// inherited stderr open, which hangs whoever waits for that output.
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
}
