//! The shape of a convolution and the geometry every method of computing
//! it shares: output sizes, which output columns a tap reaches, and the
//! per-thread scratch buffer for lowered patches.

use std::cell::RefCell;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero padding before the first row and column, `[top, left]`.
    pub padding: [usize; 2],
    /// Zero padding after the last row and column, `[bottom, right]`
    /// (TensorFlow's "same" puts the larger half of an odd total here).
    pub padding_end: [usize; 2],
    /// 1 (dense) or `in_channels == out_channels` (depthwise).
    pub groups: usize,
}

/// Positions of a window of `kernel` sliding by `stride` over `size` plus
/// `padding` in all (convolutions and pooling alike; no ceil mode).
pub(crate) fn out_size(size: usize, padding: usize, kernel: usize, stride: usize) -> usize {
    (size + padding - kernel) / stride + 1
}

/// Why a convolution is not one these kernels compute.
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Conv2dShape {
    pub fn out_h(&self) -> usize {
        out_size(
            self.in_h,
            self.padding[0] + self.padding_end[0],
            self.kernel[0],
            self.stride[0],
        )
    }

    pub fn out_w(&self) -> usize {
        out_size(
            self.in_w,
            self.padding[1] + self.padding_end[1],
            self.kernel[1],
            self.stride[1],
        )
    }

    pub(crate) fn depthwise(&self) -> bool {
        self.groups > 1
    }

    /// Rows of the lowered matrix, `C/groups · kh · kw`: the weight's row length.
    pub fn patch(&self) -> usize {
        self.in_channels / self.groups * self.kernel[0] * self.kernel[1]
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch()
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }

    /// Whether these kernels compute this convolution (dense or depthwise,
    /// any stride and padding, no dilation — the caller checks that).
    pub fn check(&self) -> Result<(), Unsupported> {
        let dense = self.groups == 1;
        let depthwise = self.groups == self.in_channels && self.out_channels == self.in_channels;
        if !dense && !depthwise {
            return Err(Unsupported(format!(
                "groups {} with {} → {} channels",
                self.groups, self.in_channels, self.out_channels
            )));
        }
        if self.stride.contains(&0) || self.kernel.contains(&0) {
            return Err(Unsupported("zero stride or kernel".into()));
        }
        if self.in_h + self.padding[0] + self.padding_end[0] < self.kernel[0]
            || self.in_w + self.padding[1] + self.padding_end[1] < self.kernel[1]
            || self.padding[0] >= self.kernel[0]
            || self.padding[1] >= self.kernel[1]
        {
            return Err(Unsupported("kernel larger than the padded input".into()));
        }
        Ok(())
    }

    pub(crate) fn pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.padding_end == [0, 0]
    }
}

thread_local! {
    /// The lowered-patch matrix of one image, reused by every call on this thread.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COL.with(|col| {
        let mut col = col.borrow_mut();
        if col.len() < len {
            col.resize(len, 0.0);
        }
        f(&mut col[..len])
    })
}

/// Output columns `[lo, hi)` whose input column `ox·sw + kx − pw` is inside `0..in_w`.
pub(crate) fn valid_columns(s: &Conv2dShape, kx: usize, ow: usize) -> (usize, usize) {
    let (sw, pw) = (s.stride[1], s.padding[1]);
    let lo = pw.saturating_sub(kx).div_ceil(sw).min(ow);
    let hi = if s.in_w + pw > kx {
        ((s.in_w + pw - kx - 1) / sw + 1).min(ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}
