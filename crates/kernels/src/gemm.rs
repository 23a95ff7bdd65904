//! Single-precision matrix product `C (+)= A · B`, blocked for the caches.
//! (Over 600 lines: the three micro-kernels and their tests belong beside
//! the blocking and packing they serve.)
//!
//! The layout is the classic one of BLIS and of every fast CPU GEMM: `B` is
//! copied ("packed") in blocks of `KC × NC` into panels `NR` columns wide, `A`
//! in blocks of `MC × KC` into panels `MR` rows tall, and a register-blocked
//! micro-kernel multiplies one `MR`-panel by one `NR`-panel, keeping the
//! `MR × NR` tile of `C` in vector registers for all `KC` steps. An `A` block
//! (96 × 256 floats, 96 KiB) stays in L2, a `B` panel (256 × 16..32 floats)
//! in L1. Packing makes any strides of `A` and `B` cost the same, so
//! transposed operands are free: the convolution passes use that.
//!
//! Micro-kernels: AVX-512 12 × 32, AVX2 + FMA 6 × 16 (12 of the 16 ymm
//! registers hold the tile), portable 4 × 16.

use crate::isa::{active, Isa};
use crate::transpose::transpose_rows;
use std::cell::RefCell;

/// Depth of a packed block.
const KC: usize = 256;
/// Rows of an `A` block (a multiple of every `MR`).
const MC: usize = 96;
/// Columns of a `B` block (a multiple of every `NR`).
pub(crate) const NC: usize = 2048;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(last < data.len(), "matrix view past the end of its data");
        }
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// One micro-kernel: `c[i * ldc + j] (+)= Σ_p a[p * MR + i] · b[p * NR + j]`
/// for a full `MR × NR` tile.
type MicroKernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool);

#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    run: MicroKernel,
}

fn kernel(isa: Isa) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Kernel {
            mr: 12,
            nr: 32,
            run: x86::kernel_12x32,
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kernel {
            mr: 6,
            nr: 16,
            run: x86::kernel_6x16,
        },
        _ => Kernel {
            mr: 4,
            nr: 16,
            run: portable_4x16,
        },
    }
}

thread_local! {
    /// Packing buffers, one pair per thread, grown once and reused by every call.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `C = A · B` (or `C += A · B` when `accumulate`), `C` row-major with row
/// stride `ldc`, on the calling thread, with the active instruction set.
pub fn gemm(a: MatRef, b: impl PackB, c: &mut [f32], ldc: usize, accumulate: bool) {
    gemm_with(active(), a, b, c, ldc, accumulate)
}

/// [`gemm`] with a chosen instruction set (which the CPU must have).
pub fn gemm_with(isa: Isa, a: MatRef, b: impl PackB, c: &mut [f32], ldc: usize, accumulate: bool) {
    assert!(
        isa <= Isa::detected(),
        "{} is not available on this CPU",
        isa.name()
    );
    let (m, k, n) = (a.rows, a.cols, b.cols());
    assert_eq!(b.rows(), k, "inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && (m - 1) * ldc + n <= c.len(), "C is too small");
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let kern = kernel(isa);
    PACKS.with(|packs| {
        let mut packs = packs.borrow_mut();
        let (pa, pb) = &mut *packs;
        // Equal depth blocks: k = 288 as 144 + 144, not 256 + a thin 32.
        let kc_max = k.div_ceil(k.div_ceil(KC));
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                let acc = accumulate || pc > 0;
                let len = nc.div_ceil(kern.nr) * kern.nr * kc;
                if pb.len() < len {
                    pb.resize(len, 0.0);
                }
                b.pack(kern.nr, pc, kc, jc, nc, &mut pb[..len]);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack_a(&kern, a, ic, mc, pc, kc, pa);
                    macro_tile(&kern, pa, pb, mc, nc, kc, &mut c[ic * ldc + jc..], ldc, acc);
                }
            }
        }
    });
}

/// `C (+)= A · B` split over the rayon pool when the product is large
/// enough to pay for it; otherwise [`gemm`]. It is split by columns unless
/// `C` is more than twice as tall as wide, so that each thread packs only
/// its share of the operand that costs more to pack: `B` is often a lowered
/// image, gathered element by element, where `A` is copied in runs (ResNet34's
/// 4 × 4-plane convolutions, 512 × 4608 · 4608 × 256 at batch 16, made 3 %
/// faster steps split by columns; a much taller product split by columns
/// would pack all of `A` on every thread). Either way each element is
/// computed as [`gemm`] computes it.
pub fn gemm_par(a: MatRef, b: impl PackB, c: &mut [f32], ldc: usize, accumulate: bool) {
    use rayon::prelude::*;
    let (m, k, n) = (a.rows, a.cols, b.cols());
    let threads = rayon::current_num_threads();
    let work = m * k * n;
    if threads < 2 || work < (1 << 21) || m.max(n) < 64 {
        return gemm(a, b, c, ldc, accumulate);
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    let c_len = c.len();
    if m > 2 * n {
        // Row blocks of whole MR-panels (a multiple of 12 fits every kernel).
        let per = m.div_ceil(threads).next_multiple_of(12);
        (0..m.div_ceil(per)).into_par_iter().for_each(|t| {
            let i0 = t * per;
            let mb = per.min(m - i0);
            let asub = MatRef {
                data: &a.data[i0 * a.rs..],
                rows: mb,
                ..a
            };
            // SAFETY: each task writes only rows i0..i0+mb of C, disjoint
            // from every other task's, and C outlives the scope.
            let off = i0 * ldc;
            let csub = unsafe { std::slice::from_raw_parts_mut(c_ptr.get().add(off), c_len - off) };
            gemm(asub, b, csub, ldc, accumulate);
        });
        return;
    }
    // Column blocks of whole NR-panels (a multiple of 32 fits every kernel).
    let per = n.div_ceil(threads).next_multiple_of(32);
    (0..n.div_ceil(per)).into_par_iter().for_each(|t| {
        let j0 = t * per;
        let nb = per.min(n - j0);
        let bsub = b.columns(j0, nb);
        // SAFETY: each task writes only columns j0..j0+nb of C, disjoint
        // from every other task's, and C outlives the scope.
        let csub = unsafe { std::slice::from_raw_parts_mut(c_ptr.get().add(j0), c_len - j0) };
        gemm(a, bsub, csub, ldc, accumulate);
    });
}

/// `C (+)= A · Bᵀ` for row-major `A` (m × k) and `B` (n × k), `C` row-major
/// m × n, when `C` is small and `k` long — the weight gradient of a layer
/// with few channels over a large image, where packing would copy more than
/// the product computes. Dot products of 3 × 3 row pairs in eight lanes,
/// over blocks of `k` that keep all rows in L2.
pub fn gemm_nt_small(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if !accumulate {
        c[..m * n].fill(0.0);
    }
    match active() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active()` only returns instruction sets the CPU has.
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::nt_small_fma(a, b, m, n, k, c) },
        _ => nt_small(a, b, m, n, k, c),
    }
}

/// Rows of `k` per block of [`gemm_nt_small`].
const NT_BLOCK: usize = 1024;

fn nt_small(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, c: &mut [f32]) {
    for k0 in (0..k).step_by(NT_BLOCK) {
        let kb = NT_BLOCK.min(k - k0);
        let full = kb / 8 * 8;
        for i0 in (0..m).step_by(3) {
            let ih = 3.min(m - i0);
            for j0 in (0..n).step_by(3) {
                let jw = 3.min(n - j0);
                let mut acc = [[[0f32; 8]; 3]; 3];
                // Rows past the edge repeat the last one; their sums are dropped.
                let ar: [&[f32]; 3] = std::array::from_fn(|t| {
                    let r = i0 + t.min(ih - 1);
                    &a[r * k + k0..r * k + k0 + kb]
                });
                let br: [&[f32]; 3] = std::array::from_fn(|t| {
                    let r = j0 + t.min(jw - 1);
                    &b[r * k + k0..r * k + k0 + kb]
                });
                for p in (0..full).step_by(8) {
                    let av: [[f32; 8]; 3] =
                        std::array::from_fn(|t| ar[t][p..p + 8].try_into().unwrap());
                    let bv: [[f32; 8]; 3] =
                        std::array::from_fn(|t| br[t][p..p + 8].try_into().unwrap());
                    for ti in 0..3 {
                        for tj in 0..3 {
                            for l in 0..8 {
                                acc[ti][tj][l] += av[ti][l] * bv[tj][l];
                            }
                        }
                    }
                }
                for ti in 0..ih {
                    for tj in 0..jw {
                        let mut sum = acc[ti][tj].iter().sum::<f32>();
                        for p in full..kb {
                            sum += ar[ti][p] * br[tj][p];
                        }
                        c[(i0 + ti) * n + j0 + tj] += sum;
                    }
                }
            }
        }
    }
}

/// A raw pointer that may cross threads; the caller proves the writes are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// The right operand of a product: anything that can copy a block of
/// itself into `NR`-wide panels. A matrix in memory is one; the lowered
/// image of a convolution, produced block by block and never stored whole,
/// is another.
pub trait PackB: Copy + Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Columns `j0..j0 + n` of this operand.
    fn columns(self, j0: usize, n: usize) -> Self;
    /// Writes `B[pc..pc+kc, jc..jc+nc]` into `out` (`nc.div_ceil(nr) · nr ·
    /// kc` floats) as `nr`-wide panels, each `kc` rows of `nr`, the last
    /// zero-padded.
    fn pack(&self, nr: usize, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]);
}

impl PackB for MatRef<'_> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn cols(&self) -> usize {
        self.cols
    }

    fn columns(self, j0: usize, n: usize) -> Self {
        MatRef {
            data: &self.data[j0 * self.cs..],
            cols: n,
            ..self
        }
    }

    fn pack(&self, nr: usize, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
        let b = *self;
        let panels = nc.div_ceil(nr);
        if b.cs == 1 {
            // Row-major B: read each row once, front to back (reading one panel
            // at a time would stride by whole rows and thrash one cache set).
            for kk in 0..kc {
                let src = &b.data[(pc + kk) * b.rs + jc..(pc + kk) * b.rs + jc + nc];
                panel_row(src, nr, kc, kk, out);
            }
        } else if b.rs == 1 {
            // Column-major B (a transposed operand): each column is contiguous
            // in k, so eight columns at a time are transposed into the panel.
            for p in 0..panels {
                let j0 = jc + p * nr;
                let w = nr.min(jc + nc - j0);
                let panel = &mut out[p * nr * kc..(p + 1) * nr * kc];
                for j in (0..w).step_by(8) {
                    let col = &b.data[(j0 + j) * b.cs + pc..];
                    transpose_rows(col, b.cs, 8.min(w - j), kc, &mut panel[j..], nr);
                }
                for j in w..nr {
                    panel_column_zero(nr, j, kc, panel);
                }
            }
        } else {
            for p in 0..panels {
                let j0 = jc + p * nr;
                let w = nr.min(jc + nc - j0);
                let panel = &mut out[p * nr * kc..(p + 1) * nr * kc];
                for kk in 0..kc {
                    let row = &mut panel[kk * nr..kk * nr + nr];
                    let base = (pc + kk) * b.rs + j0 * b.cs;
                    for (j, r) in row[..w].iter_mut().enumerate() {
                        *r = b.data[base + j * b.cs];
                    }
                    row[w..].fill(0.0);
                }
            }
        }
    }
}

/// Spreads row `kk` of a B block (`src`, the block's `nc` columns) over the
/// panels, zero-padding the last.
pub(crate) fn panel_row(src: &[f32], nr: usize, kc: usize, kk: usize, out: &mut [f32]) {
    for (p, seg) in src.chunks(nr).enumerate() {
        let row = &mut out[p * nr * kc + kk * nr..p * nr * kc + kk * nr + nr];
        match (nr, seg.len()) {
            // Whole panels as fixed-size moves rather than calls to memcpy.
            (16, 16) => row.copy_from_slice(&seg[..16]),
            (32, 32) => row.copy_from_slice(&seg[..32]),
            _ => {
                row[..seg.len()].copy_from_slice(seg);
                row[seg.len()..].fill(0.0);
            }
        }
    }
}

/// Zeroes column `j` of one panel: a column past the operand's edge.
pub(crate) fn panel_column_zero(nr: usize, j: usize, kc: usize, panel: &mut [f32]) {
    for kk in 0..kc {
        panel[kk * nr + j] = 0.0;
    }
}

/// Copies `A[ic..ic+mc, pc..pc+kc]` into `MR`-tall panels, zero-padding the last.
fn pack_a(
    kern: &Kernel,
    a: MatRef,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    out: &mut Vec<f32>,
) {
    let len = mc.div_ceil(kern.mr) * kern.mr * kc;
    if out.len() < len {
        out.resize(len, 0.0);
    }
    let out = &mut out[..len];
    // The panel height as a constant, so the copies below are fixed-size
    // moves and unrolled gathers rather than calls to memcpy of 6 floats.
    match kern.mr {
        12 => pack_a_panels::<12>(a, ic, mc, pc, kc, out),
        6 => pack_a_panels::<6>(a, ic, mc, pc, kc, out),
        4 => pack_a_panels::<4>(a, ic, mc, pc, kc, out),
        mr => unreachable!("no micro-kernel is {mr} rows tall"),
    }
}

fn pack_a_panels<const MR: usize>(
    a: MatRef,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    out: &mut [f32],
) {
    for (p, panel) in out.chunks_exact_mut(MR * kc).enumerate() {
        let i0 = ic + p * MR;
        let h = MR.min(ic + mc - i0);
        let steps = panel.chunks_exact_mut(MR);
        if a.rs == 1 {
            // Column-major A (a transposed operand): each k is a contiguous run of rows.
            for (kk, dst) in steps.enumerate() {
                let base = i0 + (pc + kk) * a.cs;
                if h == MR {
                    dst.copy_from_slice(&a.data[base..base + MR]);
                } else {
                    dst[..h].copy_from_slice(&a.data[base..base + h]);
                    dst[h..].fill(0.0);
                }
            }
        } else if a.cs == 1 {
            // Row-major A: each row is contiguous in k, so eight rows at a
            // time are transposed into the panel.
            if h < MR {
                panel.fill(0.0);
            }
            for i in (0..h).step_by(8) {
                let src = &a.data[(i0 + i) * a.rs + pc..];
                transpose_rows(src, a.rs, 8.min(h - i), kc, &mut panel[i..], MR);
            }
        } else {
            // Any other strides: gather one element of each of the MR rows per k.
            let rows: [usize; MR] = std::array::from_fn(|i| (i0 + i.min(h - 1)) * a.rs + pc * a.cs);
            for (kk, dst) in steps.enumerate() {
                let off = kk * a.cs;
                if h == MR {
                    for i in 0..MR {
                        dst[i] = a.data[rows[i] + off];
                    }
                } else {
                    for i in 0..MR {
                        dst[i] = if i < h { a.data[rows[i] + off] } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// All micro-tiles of one packed `A` block times one packed `B` block.
#[allow(clippy::too_many_arguments)]
fn macro_tile(
    kern: &Kernel,
    pa: &[f32],
    pb: &[f32],
    mc: usize,
    nc: usize,
    kc: usize,
    c: &mut [f32],
    ldc: usize,
    acc: bool,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let mut edge = [0f32; 12 * 32];
    for jr in (0..nc).step_by(nr) {
        let w = nr.min(nc - jr);
        let bp = pb[(jr / nr) * nr * kc..].as_ptr();
        for ir in (0..mc).step_by(mr) {
            let h = mr.min(mc - ir);
            let ap = pa[(ir / mr) * mr * kc..].as_ptr();
            let off = ir * ldc + jr;
            if w == nr && h == mr {
                assert!(off + (mr - 1) * ldc + nr <= c.len());
                // SAFETY: the panels hold kc·MR and kc·NR floats and the
                // tile lies inside C (checked above); the ISA was checked
                // against the CPU in `gemm_with`.
                unsafe { (kern.run)(kc, ap, bp, c[off..].as_mut_ptr(), ldc, acc) };
            } else {
                // SAFETY: as above, with the tile in a local MR × NR buffer.
                unsafe { (kern.run)(kc, ap, bp, edge.as_mut_ptr(), nr, false) };
                for i in 0..h {
                    let row = &mut c[off + i * ldc..off + i * ldc + w];
                    let src = &edge[i * nr..i * nr + w];
                    if acc {
                        row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    } else {
                        row.copy_from_slice(src);
                    }
                }
            }
        }
    }
}

/// The portable micro-kernel, 4 × 16, in plain Rust.
///
/// # Safety
/// `a` holds `kc · 4` floats, `b` `kc · 16`, and `c` a 4 × 16 tile with row stride `ldc`.
unsafe fn portable_4x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    let a = std::slice::from_raw_parts(a, kc * 4);
    let b = std::slice::from_raw_parts(b, kc * 16);
    let mut t = [[0f32; 16]; 4];
    for p in 0..kc {
        let bp: &[f32; 16] = b[p * 16..p * 16 + 16].try_into().unwrap();
        for i in 0..4 {
            let ai = a[p * 4 + i];
            for j in 0..16 {
                t[i][j] = ai.mul_add(bp[j], t[i][j]);
            }
        }
    }
    for (i, row) in t.iter().enumerate() {
        let dst = std::slice::from_raw_parts_mut(c.add(i * ldc), 16);
        for j in 0..16 {
            dst[j] = if acc { dst[j] + row[j] } else { row[j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::nt_small`] with AVX2 + FMA, the nine sums in named ymm
    /// registers: compiled from the portable loop, LLVM stored every sum
    /// back to the stack on every step (the store was half the kernel's
    /// time). The portable loop's sums in its order, each step fused.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds `m · k` floats, `b` `n · k`, `c` `m · n`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn nt_small_fma(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, c: &mut [f32]) {
        let (a, b) = (a.as_ptr(), b.as_ptr());
        for k0 in (0..k).step_by(super::NT_BLOCK) {
            let kb = super::NT_BLOCK.min(k - k0);
            let full = kb / 8 * 8;
            for i0 in (0..m).step_by(3) {
                let ih = 3.min(m - i0);
                // Rows past the edge repeat the last one; their sums are dropped.
                let ar: [*const f32; 3] =
                    std::array::from_fn(|t| a.add((i0 + t.min(ih - 1)) * k + k0));
                for j0 in (0..n).step_by(3) {
                    let jw = 3.min(n - j0);
                    let br: [*const f32; 3] =
                        std::array::from_fn(|t| b.add((j0 + t.min(jw - 1)) * k + k0));
                    let (a0, a1, a2) = (ar[0], ar[1], ar[2]);
                    let (b0, b1, b2) = (br[0], br[1], br[2]);
                    let z = _mm256_setzero_ps();
                    let (mut c00, mut c01, mut c02) = (z, z, z);
                    let (mut c10, mut c11, mut c12) = (z, z, z);
                    let (mut c20, mut c21, mut c22) = (z, z, z);
                    let mut p = 0;
                    while p < full {
                        let (x0, x1, x2) = (
                            _mm256_loadu_ps(a0.add(p)),
                            _mm256_loadu_ps(a1.add(p)),
                            _mm256_loadu_ps(a2.add(p)),
                        );
                        let (y0, y1, y2) = (
                            _mm256_loadu_ps(b0.add(p)),
                            _mm256_loadu_ps(b1.add(p)),
                            _mm256_loadu_ps(b2.add(p)),
                        );
                        c00 = _mm256_fmadd_ps(x0, y0, c00);
                        c01 = _mm256_fmadd_ps(x0, y1, c01);
                        c02 = _mm256_fmadd_ps(x0, y2, c02);
                        c10 = _mm256_fmadd_ps(x1, y0, c10);
                        c11 = _mm256_fmadd_ps(x1, y1, c11);
                        c12 = _mm256_fmadd_ps(x1, y2, c12);
                        c20 = _mm256_fmadd_ps(x2, y0, c20);
                        c21 = _mm256_fmadd_ps(x2, y1, c21);
                        c22 = _mm256_fmadd_ps(x2, y2, c22);
                        p += 8;
                    }
                    let sums = [[c00, c01, c02], [c10, c11, c12], [c20, c21, c22]];
                    for (ti, row) in sums.iter().enumerate().take(ih) {
                        for (tj, &v) in row.iter().enumerate().take(jw) {
                            let mut lanes = [0f32; 8];
                            _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                            let mut sum = lanes.iter().sum::<f32>();
                            for p in full..kb {
                                sum = (*ar[ti].add(p)).mul_add(*br[tj].add(p), sum);
                            }
                            c[(i0 + ti) * n + j0 + tj] += sum;
                        }
                    }
                }
            }
        }
    }

    /// AVX2 + FMA micro-kernel: a 6 × 16 tile in 12 ymm registers; per step
    /// two loads of `B`, six broadcasts of `A`, twelve FMAs.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds `kc · 6` floats, `b` `kc · 16`,
    /// and `c` a 6 × 16 tile with row stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_6x16(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        let mut t = [[_mm256_setzero_ps(); 2]; 6];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in t.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(6);
            b = b.add(16);
        }
        for (i, row) in t.iter().enumerate() {
            let p = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if acc {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(p));
                r1 = _mm256_add_ps(r1, _mm256_loadu_ps(p.add(8)));
            }
            _mm256_storeu_ps(p, r0);
            _mm256_storeu_ps(p.add(8), r1);
        }
    }

    /// AVX-512 micro-kernel: a 12 × 32 tile in 24 zmm registers; per step two
    /// loads of `B`, twelve broadcasts of `A`, twenty-four FMAs.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `a` holds `kc · 12` floats, `b` `kc · 32`, and
    /// `c` a 12 × 32 tile with row stride `ldc`.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn kernel_12x32(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: bool,
    ) {
        let mut t = [[_mm512_setzero_ps(); 2]; 12];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in t.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(12);
            b = b.add(32);
        }
        for (i, row) in t.iter().enumerate() {
            let p = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if acc {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(p));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(p.add(16)));
            }
            _mm512_storeu_ps(p, r0);
            _mm512_storeu_ps(p.add(16), r1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product in f64, element by element: the reference.
    fn naive(a: MatRef, b: MatRef) -> Vec<f64> {
        let mut c = vec![0f64; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0f64;
                for p in 0..a.cols {
                    s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                }
                c[i * b.cols + j] = s;
            }
        }
        c
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn check(isa: Isa, m: usize, k: usize, n: usize, ta: bool, tb: bool, accumulate: bool) {
        let ad = values(m * k, (m * 31 + k) as u64);
        let bd = values(k * n, (k * 17 + n) as u64);
        let a = if ta {
            MatRef::new(&ad, k, m).t()
        } else {
            MatRef::new(&ad, m, k)
        };
        let b = if tb {
            MatRef::new(&bd, n, k).t()
        } else {
            MatRef::new(&bd, k, n)
        };
        let ldc = n + 3;
        let init = values(m * ldc, 7);
        let mut c = init.clone();
        gemm_with(isa, a, b, &mut c, ldc, accumulate);
        let want = naive(a, b);
        for i in 0..m {
            for j in 0..n {
                let w = want[i * n + j]
                    + if accumulate {
                        init[i * ldc + j] as f64
                    } else {
                        0.0
                    };
                let got = c[i * ldc + j] as f64;
                let tol = 1e-5 * (k as f64).sqrt().max(1.0) * (1.0 + w.abs());
                assert!(
                    (got - w).abs() <= tol,
                    "{isa:?} {m}x{k}x{n} ta={ta} tb={tb} acc={accumulate}: c[{i},{j}] = {got}, want {w}"
                );
            }
            // Padding columns of C are never touched.
            for j in n..ldc {
                assert_eq!(c[i * ldc + j], init[i * ldc + j]);
            }
        }
    }

    #[test]
    fn every_path_matches_the_f64_product_on_awkward_shapes() {
        let shapes = [
            (1, 1, 1),
            (5, 3, 7),
            (6, 16, 16),
            (13, 300, 33),
            (97, 257, 50),
            (12, 27, 2100),
            (200, 9, 17),
        ];
        for isa in Isa::available() {
            for &(m, k, n) in &shapes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    check(isa, m, k, n, ta, tb, false);
                }
                check(isa, m, k, n, false, false, true);
            }
        }
    }

    #[test]
    fn parallel_product_equals_the_serial_one() {
        // Wide (split by columns) and tall (split by rows), on three threads.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, k, n) in [(70, 300, 530), (530, 300, 70)] {
            let ad = values(m * k, 1);
            let bd = values(k * n, 2);
            let (a, b) = (MatRef::new(&ad, m, k), MatRef::new(&bd, k, n));
            let mut serial = vec![0f32; m * n];
            let mut par = vec![1f32; m * n];
            gemm(a, b, &mut serial, n, false);
            pool.install(|| gemm_par(a, b, &mut par, n, false));
            assert_eq!(serial, par, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn small_transposed_product_matches_the_f64_one() {
        for &(m, n, k) in &[(32, 27, 3000), (5, 7, 9), (1, 1, 1030), (4, 2, 2049)] {
            let ad = values(m * k, 3);
            let bd = values(n * k, 4);
            let want = naive(MatRef::new(&ad, m, k), MatRef::new(&bd, n, k).t());
            crate::isa::on_each_available(|isa| {
                let mut c = vec![1f32; m * n];
                gemm_nt_small(&ad, &bd, m, n, k, &mut c, true);
                for (i, (&g, &w)) in c.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (k as f64).sqrt() * (1.0 + w.abs());
                    assert!(
                        (g as f64 - 1.0 - w).abs() <= tol,
                        "{isa:?} {m}x{n}x{k} [{i}]: {g} vs {w}"
                    );
                }
            });
        }
    }

    #[test]
    fn empty_inner_dimension_clears_or_keeps_c() {
        let a = MatRef::new(&[], 2, 0);
        let b = MatRef::new(&[], 0, 3);
        let mut c = vec![5f32; 6];
        gemm(a, b, &mut c, 3, true);
        assert_eq!(c, vec![5.0; 6]);
        gemm(a, b, &mut c, 3, false);
        assert_eq!(c, vec![0.0; 6]);
    }
}
