//! Process probes without extra crates: getrusage(2) for our own CPU time
//! (declared here; libc is linked by std anyway), setrlimit(2) for the fd
//! limit, and /proc for the broker's CPU time and RSS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[repr(C)]
#[derive(Default)]
struct Timeval {
    sec: i64,
    usec: i64,
}

#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: Timeval,
    stime: Timeval,
    rest: [i64; 14],
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    fn sysconf(name: i32) -> i64;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

const RUSAGE_SELF: i32 = 0;
const RLIMIT_NOFILE: i32 = 7;
const SC_CLK_TCK: i32 = 2;

/// User + system CPU time of this process, µs.
pub fn self_cpu_us() -> u64 {
    let mut r = Rusage::default();
    // SAFETY: `r` is a valid, writable struct of the kernel's layout on 64-bit Linux.
    if unsafe { getrusage(RUSAGE_SELF, &mut r) } != 0 {
        return 0;
    }
    let us = |t: &Timeval| t.sec as u64 * 1_000_000 + t.usec as u64;
    us(&r.utime) + us(&r.stime)
}

/// IP_BIND_ADDRESS_NO_PORT on a socket about to be bound to a source address
/// with port 0: the port is then chosen at connect() time for the whole
/// 4-tuple, instead of by bind() among ports free on that address (which is
/// slow once thousands are in use or in TIME_WAIT).
pub fn bind_address_no_port(fd: i32) {
    const SOL_IP: i32 = 0;
    const IP_BIND_ADDRESS_NO_PORT: i32 = 24;
    let one: i32 = 1;
    // SAFETY: valid fd owned by the caller; option value is a live i32.
    unsafe {
        setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one as *const i32 as *const _, 4);
    }
}

/// Raise the soft open-files limit to the hard limit.
pub fn raise_nofile() {
    let mut l = Rlimit { cur: 0, max: 0 };
    // SAFETY: plain syscalls on a stack struct of the kernel's layout.
    unsafe {
        if getrlimit(RLIMIT_NOFILE, &mut l) == 0 && l.cur < l.max {
            l.cur = l.max;
            setrlimit(RLIMIT_NOFILE, &l);
        }
    }
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { sysconf(SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of process `pid` (all threads), µs (resolution 1/CLK_TCK s).
pub fn proc_cpu_us(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": index 0 is field 3 (state); utime is field 14, stime 15.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000 / clk_tck())
}

/// VmRSS of process `pid`, KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub struct BrokerDelta {
    pub cpu_us: u64,
    pub rss_start_kb: u64,
    pub rss_max_kb: u64,
    pub rss_end_kb: u64,
    /// VmRSS once a second during the run.
    pub rss_series_kb: Vec<u64>,
}

/// Samples a broker's RSS every second (on a plain thread, so it also works
/// while the runtime is saturated) and its CPU time at start and stop.
pub struct BrokerProbe {
    pid: u32,
    cpu0: u64,
    rss0: u64,
    stop: Arc<AtomicBool>,
    series: Arc<Mutex<Vec<u64>>>,
    thread: std::thread::JoinHandle<()>,
}

impl BrokerProbe {
    pub fn start(pid: u32) -> BrokerProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let series = Arc::new(Mutex::new(Vec::new()));
        let (st, se) = (stop.clone(), series.clone());
        let thread = std::thread::spawn(move || {
            let mut ticks = 0u32;
            // Bounded: one hour at most.
            while !st.load(Ordering::Relaxed) && ticks < 36_000 {
                std::thread::sleep(Duration::from_millis(100));
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    if let Some(r) = rss_kb(pid) {
                        se.lock().unwrap().push(r);
                    }
                }
            }
        });
        BrokerProbe {
            pid,
            cpu0: proc_cpu_us(pid).unwrap_or(0),
            rss0: rss_kb(pid).unwrap_or(0),
            stop,
            series,
            thread,
        }
    }

    pub async fn stop(self) -> BrokerDelta {
        let cpu1 = proc_cpu_us(self.pid).unwrap_or(self.cpu0);
        let rss1 = rss_kb(self.pid).unwrap_or(0);
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        let series = std::mem::take(&mut *self.series.lock().unwrap());
        let rss_max = series.iter().copied().chain([self.rss0, rss1]).max().unwrap_or(0);
        BrokerDelta {
            cpu_us: cpu1.saturating_sub(self.cpu0),
            rss_start_kb: self.rss0,
            rss_max_kb: rss_max,
            rss_end_kb: rss1,
            rss_series_kb: series,
        }
    }
}

/// Machine-wide CPU time from the first line of /proc/stat, µs.
#[derive(Clone, Copy, Default)]
pub struct HostCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// irq + softirq: with IRQ time accounting, loopback TCP receive work done in
    /// softirq context is charged here rather than to the processes.
    pub irq: u64,
    /// Time the hypervisor ran something else.
    pub steal: u64,
}

impl HostCpu {
    pub fn now() -> HostCpu {
        let Ok(s) = std::fs::read_to_string("/proc/stat") else {
            return HostCpu::default();
        };
        let Some(line) = s.lines().next() else {
            return HostCpu::default();
        };
        let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        if f.len() < 8 {
            return HostCpu::default();
        }
        let us = |t: u64| t * 1_000_000 / clk_tck();
        HostCpu {
            busy: us(f[0] + f[1] + f[2] + f[5] + f[6] + f[7]),
            irq: us(f[5] + f[6]),
            steal: us(f[7]),
        }
    }

    pub fn since(self, earlier: HostCpu) -> HostCpu {
        HostCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            irq: self.irq.saturating_sub(earlier.irq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}
