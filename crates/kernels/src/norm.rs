//! BatchNorm over NCHW arrays in training mode, with the activation that
//! follows it fused: one pass for the statistics and one for the output
//! forward, one for the reductions and one for the input gradient backward
//! (Burn composes the same from about eight and twelve tensor passes).
//!
//! The statistics are those of Burn's `batch_norm_train` (the biased
//! variance over batch and space), summed in f64 per channel so a channel of
//! 10⁶ values loses nothing to rounding.

use rayon::prelude::*;

/// The activation applied after the affine step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Relu,
    /// min(max(x, 0), 6), MobileNet's and EfficientNet-Lite's.
    Relu6,
}

/// Shape of the input: `[batch, channels, spatial]` with spatial = H·W.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

impl NormShape {
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn plane(&self, n: usize, c: usize) -> std::ops::Range<usize> {
        let start = (n * self.channels + c) * self.spatial;
        start..start + self.spatial
    }
}

/// Lanes of a blocked sum: f32 partial sums in 16 lanes (which the compiler
/// keeps in vector registers) flushed into f64 every 512 elements, so a long
/// plane is summed fast and loses nothing a plain f64 sum would keep.
const LANES: usize = 16;
const BLOCK: usize = 512;

/// Σ f(x) over `x`.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(BLOCK) {
        let mut acc = [0f32; LANES];
        let chunks = block.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
        for ch in chunks {
            for i in 0..LANES {
                acc[i] += f(ch[i]);
            }
        }
        total += acc.iter().sum::<f32>() as f64 + tail as f64;
    }
    total
}

/// (Σ f(a, b, c).0, Σ f(a, b, c).1) over three slices of one length.
#[inline(always)]
fn lane_sums2(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f64, f64) {
    let (mut t0, mut t1) = (0f64, 0f64);
    for start in (0..a.len()).step_by(BLOCK) {
        let end = (start + BLOCK).min(a.len());
        let (a, b, c) = (&a[start..end], &b[start..end], &c[start..end]);
        let (mut s0, mut s1) = ([0f32; LANES], [0f32; LANES]);
        let full = a.len() / LANES * LANES;
        for j in (0..full).step_by(LANES) {
            for i in 0..LANES {
                let (u, v) = f(a[j + i], b[j + i], c[j + i]);
                s0[i] += u;
                s1[i] += v;
            }
        }
        for j in full..a.len() {
            let (u, v) = f(a[j], b[j], c[j]);
            s0[0] += u;
            s1[0] += v;
        }
        t0 += s0.iter().sum::<f32>() as f64;
        t1 += s1.iter().sum::<f32>() as f64;
    }
    (t0, t1)
}

/// Per-channel mean and biased variance of `x`.
pub fn channel_stats(s: &NormShape, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), s.len());
    let count = (s.batch * s.spatial) as f64;
    let stats: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let mut sum = 0f64;
            for n in 0..s.batch {
                sum += lane_sum(&x[s.plane(n, c)], |v| v);
            }
            let mean = sum / count;
            let m = mean as f32;
            let mut sq = 0f64;
            for n in 0..s.batch {
                sq += lane_sum(&x[s.plane(n, c)], |v| (v - m) * (v - m));
            }
            // The centring used the rounded mean; remove what that shifted.
            let shift = mean - m as f64;
            (m, (sq / count - shift * shift).max(0.0) as f32)
        })
        .collect();
    stats.into_iter().unzip()
}

/// `y = act((x − mean) / √(var + eps) · gamma + beta [+ residual])` with the
/// batch's own statistics, which are returned `(mean, var)`. The residual is
/// ResNet's shortcut, added before the block's last ReLU in the same pass
/// (Burn's sum and ReLU would be two more passes forward and two backward).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_forward(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    eps: f64,
    act: Activation,
    y: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (mean, var) = channel_stats(s, x);
    normalize(s, x, gamma, beta, &mean, &var, residual, eps, act, y);
    (mean, var)
}

/// The affine step with given statistics (also evaluation with running ones).
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    s: &NormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    residual: Option<&[f32]>,
    eps: f64,
    act: Activation,
    y: &mut [f32],
) {
    assert_eq!(x.len(), s.len());
    assert_eq!(y.len(), s.len());
    if let Some(r) = residual {
        assert_eq!(r.len(), s.len());
    }
    let scale: Vec<f32> = (0..s.channels)
        .map(|c| gamma[c] / ((var[c] as f64 + eps).sqrt() as f32))
        .collect();
    let shift: Vec<f32> = (0..s.channels)
        .map(|c| beta[c] - mean[c] * scale[c])
        .collect();
    y.par_chunks_mut(s.spatial)
        .zip(x.par_chunks(s.spatial))
        .enumerate()
        .for_each(|(p, (yo, xi))| {
            let c = p % s.channels;
            let (a, b) = (scale[c], shift[c]);
            let plane = residual.map(|r| &r[p * s.spatial..(p + 1) * s.spatial]);
            match act {
                Activation::Identity => affine_plane(yo, xi, plane, a, b, |v| v),
                Activation::Relu => affine_plane(yo, xi, plane, a, b, |v| v.max(0.0)),
                Activation::Relu6 => affine_plane(yo, xi, plane, a, b, |v| v.clamp(0.0, 6.0)),
            }
        });
}

/// One plane of [`normalize`], a loop per case so each compiles to vectors.
#[inline(always)]
fn affine_plane(
    yo: &mut [f32],
    xi: &[f32],
    residual: Option<&[f32]>,
    a: f32,
    b: f32,
    act: impl Fn(f32) -> f32,
) {
    match residual {
        None => yo
            .iter_mut()
            .zip(xi)
            .for_each(|(o, &v)| *o = act(v.mul_add(a, b))),
        Some(r) => yo
            .iter_mut()
            .zip(xi.iter().zip(r))
            .for_each(|(o, (&v, &rv))| *o = act(v.mul_add(a, b) + rv)),
    }
}

/// Gradients of [`batch_norm_train_forward`]: `dx` written over the output
/// gradient `grad` (it holds `dy` on entry), and `(dgamma, dbeta)` returned,
/// from the input `x`, the output `y` (for the activation's mask) and the
/// batch statistics; with `dresidual`, the residual's gradient too (`dy`
/// through the activation), written in the same pass as `dx`. In place, so
/// the caller needs no second zeroed buffer of the activation's size.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    s: &NormShape,
    x: &[f32],
    y: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Activation,
    grad: &mut [f32],
    dresidual: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(grad.len(), s.len());
    if let Some(dr) = &dresidual {
        assert_eq!(dr.len(), s.len());
    }
    // The activation's mask as a closure chosen once, so the loops over
    // elements compile to vector selects rather than a match per element.
    // At the kinks (y = 0, y = 6) the derivative is 0, as in PyTorch.
    let args = (s, x, y, gamma, mean, var, eps);
    match act {
        Activation::Identity => backward_masked(args, |_| true, grad, dresidual),
        Activation::Relu => backward_masked(args, |y| y > 0.0, grad, dresidual),
        Activation::Relu6 => backward_masked(args, |y| y > 0.0 && y < 6.0, grad, dresidual),
    }
}

type BackwardArgs<'a> = (
    &'a NormShape,
    &'a [f32],
    &'a [f32],
    &'a [f32],
    &'a [f32],
    &'a [f32],
    f64,
);

#[inline(always)]
fn backward_masked(
    (s, x, y, gamma, mean, var, eps): BackwardArgs,
    passes: impl Fn(f32) -> bool + Sync,
    grad: &mut [f32],
    dresidual: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let dy: &[f32] = grad;
    let inv_std: Vec<f32> = (0..s.channels)
        .map(|c| (1.0 / (var[c] as f64 + eps).sqrt()) as f32)
        .collect();
    // Σ dz and Σ dz·x̂ per channel, dz = dy · act'(y).
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (m, is) = (mean[c], inv_std[c]);
            let (mut sdz, mut sdzx) = (0f64, 0f64);
            for n in 0..s.batch {
                let r = s.plane(n, c);
                let (a, b) = lane_sums2(&dy[r.clone()], &y[r.clone()], &x[r], |g, yv, xv| {
                    let dz = if passes(yv) { g } else { 0.0 };
                    (dz, dz * (xv - m))
                });
                sdz += a;
                sdzx += b * is as f64;
            }
            (sdz, sdzx)
        })
        .collect();
    let count = (s.batch * s.spatial) as f32;
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    // `d` holds a plane of dy and gets the same plane of dx.
    let plane = |p: usize, d: &mut [f32], dr: Option<&mut [f32]>| {
        let c = p % s.channels;
        let r = p * s.spatial..(p + 1) * s.spatial;
        let (m, is) = (mean[c], inv_std[c]);
        let k = gamma[c] * is;
        let (mb, mg) = (dbeta[c] / count, dgamma[c] / count);
        let (y, x) = (&y[r.clone()], &x[r]);
        let dx_of = |g: f32, yv: f32, xv: f32| {
            let dz = if passes(yv) { g } else { 0.0 };
            (dz, k * (dz - mb - (xv - m) * is * mg))
        };
        match dr {
            None => {
                for ((o, &yv), &xv) in d.iter_mut().zip(y).zip(x) {
                    *o = dx_of(*o, yv, xv).1;
                }
            }
            Some(dr) => {
                for ((o, ro), (&yv, &xv)) in d.iter_mut().zip(dr).zip(y.iter().zip(x)) {
                    (*ro, *o) = dx_of(*o, yv, xv);
                }
            }
        }
    };
    match dresidual {
        None => grad
            .par_chunks_mut(s.spatial)
            .enumerate()
            .for_each(|(p, d)| plane(p, d, None)),
        Some(dr) => grad
            .par_chunks_mut(s.spatial)
            .zip(dr.par_chunks_mut(s.spatial))
            .enumerate()
            .for_each(|(p, (d, dr))| plane(p, d, Some(dr))),
    }
    (dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut st = seed.wrapping_add(0x2545F4914F6CDD1D);
        (0..n)
            .map(|_| {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                ((st >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 1.5
            })
            .collect()
    }

    /// The loss L = Σ y · r for a fixed r, in f64, and its finite differences;
    /// `y = act(bn(x) + res)`, `res` zero when there is no residual.
    #[allow(clippy::too_many_arguments)]
    fn loss(
        s: &NormShape,
        x: &[f64],
        g: &[f64],
        b: &[f64],
        res: &[f64],
        r: &[f64],
        eps: f64,
        act: Activation,
    ) -> f64 {
        let mut total = 0.0;
        for c in 0..s.channels {
            let vals: Vec<f64> = (0..s.batch)
                .flat_map(|n| x[s.plane(n, c)].to_vec())
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for n in 0..s.batch {
                for i in s.plane(n, c) {
                    let z = (x[i] - mean) / (var + eps).sqrt() * g[c] + b[c] + res[i];
                    let y = match act {
                        Activation::Identity => z,
                        Activation::Relu => z.max(0.0),
                        Activation::Relu6 => z.clamp(0.0, 6.0),
                    };
                    total += y * r[i];
                }
            }
        }
        total
    }

    #[test]
    fn forward_and_gradients_match_finite_differences() {
        let s = NormShape {
            batch: 3,
            channels: 4,
            spatial: 5,
        };
        let eps = 1e-5;
        let acts = [Activation::Identity, Activation::Relu, Activation::Relu6];
        for (act, with_residual) in acts.into_iter().flat_map(|a| [(a, false), (a, true)]) {
            let x = values(s.len(), 1);
            let gamma: Vec<f32> = values(4, 2).iter().map(|v| v + 3.0).collect();
            let beta = values(4, 3);
            let r = values(s.len(), 4);
            let res = if with_residual {
                values(s.len(), 5)
            } else {
                vec![0.0; s.len()]
            };
            let residual = with_residual.then_some(res.as_slice());
            let mut y = vec![0f32; s.len()];
            let (mean, var) =
                batch_norm_train_forward(&s, &x, &gamma, &beta, residual, eps, act, &mut y);
            let mut dx = r.clone();
            let mut dres = with_residual.then(|| vec![0f32; s.len()]);
            let (dg, db) = batch_norm_train_backward(
                &s,
                &x,
                &y,
                &gamma,
                &mean,
                &var,
                eps,
                act,
                &mut dx,
                dres.as_deref_mut(),
            );
            let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let (x64, g64, b64, res64, r64) = (f(&x), f(&gamma), f(&beta), f(&res), f(&r));
            let want_y = |i: usize| {
                // ∂L/∂r[i] of L = Σ y·r is y[i]: the forward value, in f64.
                let mut rs = r64.clone();
                rs[i] += 1.0;
                loss(&s, &x64, &g64, &b64, &res64, &rs, eps, act)
                    - loss(&s, &x64, &g64, &b64, &res64, &r64, eps, act)
            };
            for (i, &got) in y.iter().enumerate() {
                let want = want_y(i);
                assert!(
                    (got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{act:?} residual {with_residual} y[{i}] {got} vs {want}"
                );
            }
            let h = 1e-6;
            let fd = |which: usize, i: usize| {
                let mut vs = [x64.clone(), g64.clone(), b64.clone(), res64.clone()];
                vs[which][i] += h;
                let up = loss(&s, &vs[0], &vs[1], &vs[2], &vs[3], &r64, eps, act);
                vs[which][i] -= 2.0 * h;
                let down = loss(&s, &vs[0], &vs[1], &vs[2], &vs[3], &r64, eps, act);
                (up - down) / (2.0 * h)
            };
            let tag = format!("{act:?} residual {with_residual}");
            for (i, &got) in dx.iter().enumerate() {
                let want = fd(0, i);
                assert!(
                    (got as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{tag} dx[{i}] {got} vs {want}"
                );
            }
            for (i, &got) in dres.iter().flatten().enumerate() {
                let want = fd(3, i);
                assert!(
                    (got as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "{tag} dresidual[{i}] {got} vs {want}"
                );
            }
            for c in 0..4 {
                let (wg, wb) = (fd(1, c), fd(2, c));
                assert!(
                    (dg[c] as f64 - wg).abs() < 1e-3 * (1.0 + wg.abs()),
                    "{tag} dgamma"
                );
                assert!(
                    (db[c] as f64 - wb).abs() < 1e-3 * (1.0 + wb.abs()),
                    "{tag} dbeta"
                );
            }
        }
    }
}
