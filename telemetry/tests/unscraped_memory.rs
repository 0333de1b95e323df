//! A server nobody scrapes keeps its memory: histogram samples recorded
//! through the global recorder are drained by the upkeep thread, not kept
//! until a render. Its own test binary, so the process's resident memory
//! is this test's alone.

use std::time::{Duration, Instant};

/// Samples recorded in all, over [`SLICES`] × [`SLICE`].
const SAMPLES: u64 = 8_000_000;
/// Recording is paced in slices so that the upkeep (every second) runs
/// several times while it goes on: 80 × 100 ms, 100 000 samples a slice,
/// a million a second.
const SLICES: u64 = 80;
const SLICE: Duration = Duration::from_millis(100);
/// How far resident memory may rise above where it started. Undrained
/// samples cost about 16 bytes each here (measured): all 8 million would
/// be about 128 MB, one second's worth about 16 MB. The bound leaves room
/// for an upkeep delayed a second or two on a busy machine.
const BOUND_BYTES: u64 = 48 << 20;

/// Resident memory of this process, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status =
        std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("/proc/self/status has a VmRSS line in kB");
    kib * 1024
}

#[test]
fn unscraped_histograms_stay_within_a_memory_bound() {
    let handle = parapet_telemetry::prometheus();
    let histogram = metrics::histogram!("parapet_test_unscraped_seconds");
    histogram.record(0.001);
    let start = resident_bytes();

    let per_slice = SAMPLES / SLICES;
    let began = Instant::now();
    let mut peak = start;
    let mut recorded = 1;
    for slice in 0..SLICES {
        for i in 0..per_slice {
            // 0 to 99.9 ms, spread over the buckets.
            histogram.record((i % 1000) as f64 * 1e-4);
        }
        recorded += per_slice;
        peak = peak.max(resident_bytes());
        let deadline = began + SLICE * (slice as u32 + 1);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }

    let growth = peak.saturating_sub(start);
    eprintln!(
        "{recorded} samples in {:.1} s, resident {} MiB at start, {} MiB at peak",
        began.elapsed().as_secs_f64(),
        start >> 20,
        peak >> 20
    );
    assert!(
        growth <= BOUND_BYTES,
        "resident memory rose by {} MiB recording {recorded} unscraped samples (bound {} MiB)",
        growth >> 20,
        BOUND_BYTES >> 20
    );

    // Nothing was lost on the way: the render counts every sample.
    let text = handle.render();
    let count = text
        .lines()
        .find_map(|line| line.strip_prefix("parapet_test_unscraped_seconds_count "))
        .and_then(|value| value.trim().parse::<u64>().ok());
    assert_eq!(count, Some(recorded), "the render's _count, in:\n{text}");
}
