//! The lowered ("im2col") matrix of a convolution as the right operand of
//! a matrix product, produced block by block while the product packs it and
//! never stored whole. Lowering into a buffer first would write and re-read
//! `kh·kw` copies of the image (2.4 MB for one 64-channel 32 × 32 image at
//! 3 × 3, more than L2 holds); here each packed block reads the image,
//! which stays in cache.

use crate::gemm::{panel_column_zero, panel_row, PackB, NC};
use crate::shape::{valid_columns, Conv2dShape};
use crate::transpose::{every_other, transpose_rows};

/// The lowered matrix `L` of `imgs` consecutive images side by side — rows
/// `(c, ky, kx)`, columns `(image, oy, ox)` — or its transpose `Lᵀ` (the
/// weight gradient's operand); of the operand's columns, the window
/// `j0 .. j0 + n`.
#[derive(Clone, Copy)]
pub(crate) struct Lowered<'a> {
    s: &'a Conv2dShape,
    x: &'a [f32],
    imgs: usize,
    transposed: bool,
    j0: usize,
    n: usize,
}

impl<'a> Lowered<'a> {
    /// `L` of the images in `x` (whole NCHW images, as many as `imgs`).
    pub(crate) fn new(s: &'a Conv2dShape, x: &'a [f32], imgs: usize) -> Self {
        assert!(x.len() >= imgs * s.in_channels * s.in_h * s.in_w);
        Lowered {
            s,
            x,
            imgs,
            transposed: false,
            j0: 0,
            n: imgs * s.out_h() * s.out_w(),
        }
    }

    /// `Lᵀ` of the same images.
    pub(crate) fn t(self) -> Self {
        Lowered {
            transposed: true,
            j0: 0,
            n: self.s.patch(),
            ..self
        }
    }

    /// Writes `L[r, q0 .. q0 + dst.len()]`: one lowered row, across images.
    pub(crate) fn segment(&self, r: usize, q0: usize, dst: &mut [f32]) {
        let s = self.s;
        let (oh, ow) = (s.out_h(), s.out_w());
        let [kh, kw] = s.kernel;
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let in_img = s.in_channels * s.in_h * s.in_w;
        let plane = c * s.in_h * s.in_w;
        if oh * ow <= SMALL_PLANE {
            return self.small_plane_segment(ky, kx, plane, q0, dst);
        }
        let [sh, sw] = s.stride;
        let [ph, pw] = s.padding;
        let (lo, hi) = valid_columns(s, kx, ow);
        let (mut img, p) = (q0 / (oh * ow), q0 % (oh * ow));
        let (mut oy, mut ox) = (p / ow, p % ow);
        let mut at = 0;
        while at < dst.len() {
            let run = (ow - ox).min(dst.len() - at);
            let out = &mut dst[at..at + run];
            at += run;
            let iy = (oy * sh + ky) as isize - ph as isize;
            if iy < 0 || iy as usize >= s.in_h {
                out.fill(0.0);
            } else {
                let row = img * in_img + plane + iy as usize * s.in_w;
                let src = &self.x[row..row + s.in_w];
                // Output columns ox .. ox + run, of which a .. b read the image.
                let (a, b) = (lo.clamp(ox, ox + run), hi.clamp(ox, ox + run));
                out[..a - ox].fill(0.0);
                out[b - ox..].fill(0.0);
                if a < b {
                    let x0 = a * sw + kx - pw;
                    let inside = &mut out[a - ox..b - ox];
                    match sw {
                        1 => inside.copy_from_slice(&src[x0..x0 + b - a]),
                        // ResNet's stem and strided convolutions.
                        2 => every_other(&src[x0..], inside),
                        _ => inside
                            .iter_mut()
                            .zip(src[x0..].iter().step_by(sw))
                            .for_each(|(v, &x)| *v = x),
                    }
                }
            }
            // The next run starts the next output row.
            ox = 0;
            oy += 1;
            if oy == oh {
                oy = 0;
                img += 1;
            }
        }
    }

    /// [`Self::segment`] for planes of at most [`SMALL_PLANE`] outputs
    /// (ResNet34's 4 × 4 and 8 × 8), whose rows are too short to copy as
    /// runs: a table of where in the input plane each output position of
    /// this tap reads (or that it reads padding), then one lookup per value.
    fn small_plane_segment(&self, ky: usize, kx: usize, plane: usize, q0: usize, dst: &mut [f32]) {
        let s = self.s;
        let (oh, ow, hw) = (s.out_h(), s.out_w(), s.out_h() * s.out_w());
        let [sh, sw] = s.stride;
        let [ph, pw] = s.padding;
        let (h, w) = (s.in_h, s.in_w);
        let mut at = [u32::MAX; SMALL_PLANE];
        for oy in 0..oh {
            for ox in 0..ow {
                let (iy, ix) = (oy * sh + ky, ox * sw + kx);
                if (ph..h + ph).contains(&iy) && (pw..w + pw).contains(&ix) {
                    at[oy * ow + ox] = ((iy - ph) * w + ix - pw) as u32;
                }
            }
        }
        let in_img = s.in_channels * h * w;
        let (mut img, mut p) = (q0 / hw, q0 % hw);
        let mut rest = dst;
        while !rest.is_empty() {
            let n = (hw - p).min(rest.len());
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            let src = &self.x[img * in_img + plane..][..h * w];
            for (v, &i) in out.iter_mut().zip(&at[p..p + n]) {
                *v = if i == u32::MAX { 0.0 } else { src[i as usize] };
            }
            (img, p) = (img + 1, 0);
        }
    }
}

/// Output planes up to this many positions are lowered by table
/// ([`Lowered::small_plane_segment`]).
const SMALL_PLANE: usize = 64;

impl PackB for Lowered<'_> {
    fn rows(&self) -> usize {
        if self.transposed {
            self.imgs * self.s.out_h() * self.s.out_w()
        } else {
            self.s.patch()
        }
    }

    fn cols(&self) -> usize {
        self.n
    }

    fn columns(self, j0: usize, n: usize) -> Self {
        Lowered {
            j0: self.j0 + j0,
            n,
            ..self
        }
    }

    fn pack(&self, nr: usize, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
        let mut buf = [0f32; NC];
        if !self.transposed {
            // B rows are L rows: one segment per row of the block.
            assert!(nc <= NC);
            for kk in 0..kc {
                self.segment(pc + kk, self.j0 + jc, &mut buf[..nc]);
                panel_row(&buf[..nc], nr, kc, kk, out);
            }
            return;
        }
        // B columns are L rows: eight segments at a time, each a column of
        // the block, transposed into the panel.
        assert!(8 * kc <= NC);
        for (p, panel) in out.chunks_exact_mut(nr * kc).enumerate() {
            let w = nr.min(nc - p * nr);
            for j in (0..w).step_by(8) {
                let cnt = 8.min(w - j);
                for (t, seg) in buf.chunks_exact_mut(kc).take(cnt).enumerate() {
                    self.segment(self.j0 + jc + p * nr + j + t, pc, seg);
                }
                transpose_rows(&buf, kc, cnt, kc, &mut panel[j..], nr);
            }
            for j in w..nr {
                panel_column_zero(nr, j, kc, panel);
            }
        }
    }
}
