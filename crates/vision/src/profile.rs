//! Where a step's time goes, without a profiler: the wall time of each of
//! nabla's kernel calls on `flex` (per layer shape and pass), summed on the
//! calling thread while [`record`] runs. `nabla bench vision --profile`
//! prints it. It is how the speed can be read on a machine that is only
//! borrowed and has no `perf` (a GPU machine's host CPU).
//!
//! The kernels run on the rayon pool but are called, and return, on the
//! thread that runs the model, so the time between a call and its return is
//! the step's wall time spent in that kernel. When nothing is recording, a
//! call costs one thread-local read.

use nabla_kernels::Conv2dShape;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One kind of kernel call: what it ran on and how long it took in all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelTime {
    /// The operation and its shape, e.g. `conv 64→64 3×3 @32×32`.
    pub op: String,
    /// `forward`, `backward` or `update`.
    pub pass: &'static str,
    pub calls: u64,
    pub seconds: f64,
}

type Totals = HashMap<(String, &'static str), (u64, Duration)>;

thread_local! {
    static TOTALS: RefCell<Option<Totals>> = const { RefCell::new(None) };
}

/// Runs `work` and returns, beside its result, the time of every kernel
/// call it made on this thread, the longest first. A `record` inside
/// another one takes its calls from the outer one.
pub fn record<R>(work: impl FnOnce() -> R) -> (R, Vec<KernelTime>) {
    let outer = TOTALS.with(|t| t.replace(Some(HashMap::new())));
    let result = work();
    let totals = TOTALS.with(|t| t.replace(outer)).unwrap_or_default();
    let mut times: Vec<KernelTime> = totals
        .into_iter()
        .map(|((op, pass), (calls, time))| KernelTime {
            op,
            pass,
            calls,
            seconds: time.as_secs_f64(),
        })
        .collect();
    times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.op.cmp(&b.op)));
    (result, times)
}

/// `f()`, its wall time added under `op()` and `pass` when recording.
pub(crate) fn timed<R>(
    op: impl FnOnce() -> String,
    pass: &'static str,
    f: impl FnOnce() -> R,
) -> R {
    if !TOTALS.with(|t| t.borrow().is_some()) {
        return f();
    }
    let start = Instant::now();
    let result = f();
    let time = start.elapsed();
    TOTALS.with(|t| {
        if let Some(totals) = t.borrow_mut().as_mut() {
            let entry = totals.entry((op(), pass)).or_default();
            entry.0 += 1;
            entry.1 += time;
        }
    });
    result
}

/// A convolution's name in a profile: `conv 64→128 3×3/2 @32×32`, or
/// `depthwise 96 3×3/2 @64×64` (the input plane's size).
pub(crate) fn conv_name(s: &Conv2dShape) -> String {
    let [kh, kw] = s.kernel;
    let stride = match s.stride {
        [1, 1] => String::new(),
        [a, b] if a == b => format!("/{a}"),
        [a, b] => format!("/{a}×{b}"),
    };
    let at = format!("{kh}×{kw}{stride} @{}×{}", s.in_h, s.in_w);
    if s.groups > 1 {
        format!("depthwise {} {at}", s.in_channels)
    } else {
        format!("conv {}→{} {at}", s.in_channels, s.out_channels)
    }
}

/// A name for an operation on `[n, c, h, w]` inputs: `batch norm 64 @32×32`.
pub(crate) fn plane_name(what: &str, [_, c, h, w]: [usize; 4]) -> String {
    format!("{what} {c} @{h}×{w}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(ci: usize, co: usize, groups: usize, stride: usize) -> Conv2dShape {
        Conv2dShape {
            batch: 2,
            in_channels: ci,
            in_h: 32,
            in_w: 16,
            out_channels: co,
            kernel: [3, 3],
            stride: [stride, stride],
            padding: [1, 1],
            padding_end: [1, 1],
            groups,
        }
    }

    #[test]
    fn names_say_the_layer() {
        assert_eq!(conv_name(&shape(64, 128, 1, 2)), "conv 64→128 3×3/2 @32×16");
        assert_eq!(conv_name(&shape(96, 96, 96, 1)), "depthwise 96 3×3 @32×16");
        assert_eq!(
            plane_name("batch norm", [2, 64, 8, 4]),
            "batch norm 64 @8×4"
        );
    }

    #[test]
    fn records_only_inside_and_sums_by_op_and_pass() {
        let op = || "op".to_string();
        timed(op, "forward", || ());
        let ((), times) = record(|| {
            for _ in 0..3 {
                timed(op, "forward", || {
                    std::thread::sleep(Duration::from_millis(2))
                });
            }
            timed(op, "backward", || ());
            // An inner recording takes its own calls.
            let ((), inner) = record(|| timed(op, "update", || ()));
            assert_eq!(inner.len(), 1);
            assert_eq!((inner[0].pass, inner[0].calls), ("update", 1));
        });
        assert_eq!(times.len(), 2, "{times:?}");
        assert_eq!((times[0].pass, times[0].calls), ("forward", 3));
        assert!(times[0].seconds >= 0.006, "{times:?}");
        assert_eq!((times[1].pass, times[1].calls), ("backward", 1));
        // Nothing is kept once the recording is over.
        let ((), after) = record(|| ());
        assert!(after.is_empty());
    }
}
