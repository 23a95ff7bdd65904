//! Training-time augmentation on the cached square images: a random
//! horizontal flip; optionally torchvision-style random resized crops (a
//! random area fraction and aspect ratio, resampled bilinearly back to the
//! full side); Keras-style random affine maps (rotation, zoom, shift, shear
//! about the centre, edges extended as Keras's `fill_mode="nearest"`); and
//! torchvision-style colour jitter (brightness, contrast, saturation). All
//! are drawn from the run's seeded generator, so a run and its resumption
//! see the same views; with the new options off the draws are the old ones.

use nabla_dense::NumpyRandom;

/// What the training views may do to an image.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Mirror left–right with probability ½.
    pub flip: bool,
    /// Random resized crops keeping at least this fraction of the area
    /// (`None`: no cropping). torchvision's default is 0.08; on 128-pixel
    /// faces 0.5 keeps the mask in view.
    pub crop_min_scale: Option<f64>,
    /// Largest rotation, in degrees either way (Keras's `rotation_range`).
    #[serde(default)]
    pub rotation: f64,
    /// Zoom factors drawn in [1 − zoom, 1 + zoom] per axis (`zoom_range`).
    #[serde(default)]
    pub zoom: f64,
    /// Largest shift, as a fraction of the side, per axis
    /// (`width_shift_range`, `height_shift_range`).
    #[serde(default)]
    pub shift: f64,
    /// Largest shear angle, in degrees either way (Keras's `shear_range` is
    /// in degrees too).
    #[serde(default)]
    pub shear: f64,
    /// Brightness, contrast and saturation factors drawn in
    /// [1 − jitter, 1 + jitter] (torchvision's `ColorJitter(j, j, j)`).
    #[serde(default)]
    pub color_jitter: f64,
}

/// An affine map of output pixel positions to source positions, about the
/// image's centre: `src = c + m · (dst − c) + t`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub m: [[f64; 2]; 2],
    pub t: [f64; 2],
}

impl Affine {
    /// Keras's `apply_affine_transform` composition: rotation · shear · zoom,
    /// then the shift; angles in degrees, shift in pixels.
    pub fn new(rotation: f64, shear: f64, zoom: [f64; 2], shift: [f64; 2]) -> Self {
        let (r, sh) = (rotation.to_radians(), shear.to_radians());
        let rot = [[r.cos(), -r.sin()], [r.sin(), r.cos()]];
        let shm = [[1.0, -sh.sin()], [0.0, sh.cos()]];
        let mul = |a: [[f64; 2]; 2], b: [[f64; 2]; 2]| {
            [
                [
                    a[0][0] * b[0][0] + a[0][1] * b[1][0],
                    a[0][0] * b[0][1] + a[0][1] * b[1][1],
                ],
                [
                    a[1][0] * b[0][0] + a[1][1] * b[1][0],
                    a[1][0] * b[0][1] + a[1][1] * b[1][1],
                ],
            ]
        };
        let m = mul(mul(rot, shm), [[zoom[0], 0.0], [0.0, zoom[1]]]);
        Affine { m, t: shift }
    }

    fn apply(&self, x: f64, y: f64, centre: f64) -> (f64, f64) {
        let (dx, dy) = (x - centre, y - centre);
        (
            centre + self.m[0][0] * dx + self.m[0][1] * dy + self.t[0],
            centre + self.m[1][0] * dx + self.m[1][1] * dy + self.t[1],
        )
    }
}

/// One drawn view: the source window (in pixels of the cached image) and
/// whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub flip: bool,
    pub x0: f64,
    pub y0: f64,
    pub width: f64,
    pub height: f64,
    /// Applied to the output position before the window is sampled.
    pub affine: Option<Affine>,
    /// Brightness, contrast and saturation factors, applied in that order.
    pub color: Option<[f64; 3]>,
}

impl View {
    /// The whole image, unmirrored: what evaluation sees.
    pub fn identity(size: usize) -> Self {
        View {
            flip: false,
            x0: 0.0,
            y0: 0.0,
            width: size as f64,
            height: size as f64,
            affine: None,
            color: None,
        }
    }
}

impl Augmentation {
    pub const NONE: Augmentation = Augmentation {
        flip: false,
        crop_min_scale: None,
        rotation: 0.0,
        zoom: 0.0,
        shift: 0.0,
        shear: 0.0,
        color_jitter: 0.0,
    };

    /// The face-mask dataset repository's Keras recipe: rotation 20°, zoom
    /// 0.15, shifts 0.2, shear 0.15 (degrees, as Keras reads it), flips.
    pub const FACE_MASK: Augmentation = Augmentation {
        flip: true,
        crop_min_scale: None,
        rotation: 20.0,
        zoom: 0.15,
        shift: 0.2,
        shear: 0.15,
        color_jitter: 0.0,
    };

    fn affine(&self) -> bool {
        self.rotation > 0.0 || self.zoom > 0.0 || self.shift > 0.0 || self.shear > 0.0
    }

    /// Draws a view of a `size × size` image. Like torchvision's
    /// `RandomResizedCrop`: area fraction uniform in [min, 1], log aspect
    /// ratio uniform in [ln ¾, ln 4⁄3], ten tries, then the whole image.
    pub fn draw(&self, rng: &mut NumpyRandom, size: usize) -> View {
        let mut view = View::identity(size);
        if let Some(min_scale) = self.crop_min_scale {
            let side = size as f64;
            for _ in 0..10 {
                let area = side * side * (min_scale + (1.0 - min_scale) * rng.random_sample());
                let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
                let ratio = (lo + (hi - lo) * rng.random_sample()).exp();
                let (w, h) = ((area * ratio).sqrt(), (area / ratio).sqrt());
                if w <= side && h <= side {
                    view.width = w;
                    view.height = h;
                    view.x0 = (side - w) * rng.random_sample();
                    view.y0 = (side - h) * rng.random_sample();
                    break;
                }
            }
        }
        view.flip = self.flip && rng.random_sample() < 0.5;
        let mut between = |half: f64| half * (2.0 * rng.random_sample() - 1.0);
        if self.affine() {
            let rotation = between(self.rotation);
            let shift = [
                between(self.shift) * size as f64,
                between(self.shift) * size as f64,
            ];
            let shear = between(self.shear);
            let zoom = [1.0 + between(self.zoom), 1.0 + between(self.zoom)];
            view.affine = Some(Affine::new(rotation, shear, zoom, shift));
        }
        if self.color_jitter > 0.0 {
            let j = self.color_jitter;
            view.color =
                Some([1.0 + between(j), 1.0 + between(j), 1.0 + between(j)].map(|f| f.max(0.0)));
        }
        view
    }
}

/// Writes the view of `image` (RGB8, `size × size`, channels last) into
/// `out` as `[3, size, size]` floats scaled to [−1, 1], sampling the window
/// bilinearly (pixel centres aligned, edges clamped).
pub fn render(image: &[u8], size: usize, view: &View, out: &mut [f32]) {
    let plane = size * size;
    let identity = view.width == size as f64 && view.height == size as f64 && view.affine.is_none();
    let (sx, sy) = (view.width / size as f64, view.height / size as f64);
    let max = (size - 1) as f64;
    let centre = size as f64 / 2.0;
    for y in 0..size {
        for x in 0..size {
            let xo = if view.flip { size - 1 - x } else { x };
            // The output pixel's centre, moved by the affine map.
            let (px, py) = match &view.affine {
                Some(a) => a.apply(xo as f64 + 0.5, y as f64 + 0.5, centre),
                None => (xo as f64 + 0.5, y as f64 + 0.5),
            };
            for c in 0..3 {
                let v = if identity {
                    f64::from(image[(y * size + xo) * 3 + c])
                } else {
                    let fx = (view.x0 + px * sx - 0.5).clamp(0.0, max);
                    let fy = (view.y0 + py * sy - 0.5).clamp(0.0, max);
                    let (x1, y1) = (fx.floor() as usize, fy.floor() as usize);
                    let (x2, y2) = ((x1 + 1).min(size - 1), (y1 + 1).min(size - 1));
                    let (tx, ty) = (fx - x1 as f64, fy - y1 as f64);
                    let p = |xx: usize, yy: usize| f64::from(image[(yy * size + xx) * 3 + c]);
                    (p(x1, y1) * (1.0 - tx) + p(x2, y1) * tx) * (1.0 - ty)
                        + (p(x1, y2) * (1.0 - tx) + p(x2, y2) * tx) * ty
                };
                out[c * plane + y * size + x] = (v / 127.5 - 1.0) as f32;
            }
        }
    }
    if let Some(factors) = view.color {
        jitter(out, plane, factors);
    }
}

/// torchvision's `adjust_brightness`, `adjust_contrast` and
/// `adjust_saturation` on `[3, plane]` values in [−1, 1]: each a blend with
/// black, the mean grey of the image, and each pixel's grey, clamped.
fn jitter(out: &mut [f32], plane: usize, [brightness, contrast, saturation]: [f64; 3]) {
    let unit = |v: f32| (f64::from(v) + 1.0) / 2.0;
    let back = |v: f64| (v.clamp(0.0, 1.0) * 2.0 - 1.0) as f32;
    let grey = |o: &[f32], i: usize| {
        0.299 * unit(o[i]) + 0.587 * unit(o[plane + i]) + 0.114 * unit(o[2 * plane + i])
    };
    for v in out.iter_mut() {
        *v = back(unit(*v) * brightness);
    }
    let mean = (0..plane).map(|i| grey(out, i)).sum::<f64>() / plane as f64;
    for v in out.iter_mut() {
        *v = back(contrast * unit(*v) + (1.0 - contrast) * mean);
    }
    for i in 0..plane {
        let g = grey(out, i);
        for c in 0..3 {
            let v = &mut out[c * plane + i];
            *v = back(saturation * unit(*v) + (1.0 - saturation) * g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(size: usize) -> Vec<u8> {
        (0..size * size * 3)
            .map(|i| ((i / 3) % size * 10 + (i / 3) / size) as u8)
            .collect()
    }

    #[test]
    fn identity_view_copies_and_flip_mirrors() {
        let size = 8;
        let img = gradient(size);
        let mut out = vec![0f32; 3 * size * size];
        render(&img, size, &View::identity(size), &mut out);
        assert_eq!(out[3], f32::from(img[3 * 3]) / 127.5 - 1.0);
        let flipped = View {
            flip: true,
            ..View::identity(size)
        };
        let mut mirrored = vec![0f32; 3 * size * size];
        render(&img, size, &flipped, &mut mirrored);
        assert_eq!(mirrored[0], out[size - 1]);
        assert_eq!(mirrored[2 * size + 1], out[2 * size + size - 2]);
    }

    #[test]
    fn a_crop_samples_its_window_bilinearly() {
        // The image is linear in x and y, so bilinear resampling of a window
        // reproduces the linear function at the mapped coordinates exactly.
        let size = 8;
        let img = gradient(size);
        let view = View {
            x0: 2.0,
            y0: 1.0,
            width: 4.0,
            height: 4.0,
            ..View::identity(size)
        };
        let mut out = vec![0f32; 3 * size * size];
        render(&img, size, &view, &mut out);
        for (x, y) in [(0usize, 0usize), (3, 5), (7, 7)] {
            let fx = (2.0 + (x as f64 + 0.5) * 0.5 - 0.5).clamp(0.0, 7.0);
            let fy = (1.0 + (y as f64 + 0.5) * 0.5 - 0.5).clamp(0.0, 7.0);
            let expected = (fx * 10.0 + fy) / 127.5 - 1.0;
            let got = f64::from(out[y * size + x]);
            assert!(
                (got - expected).abs() < 1e-6,
                "({x},{y}): {got} vs {expected}"
            );
        }
    }

    #[test]
    fn drawn_crops_respect_the_scale_and_ratio_bounds() {
        let aug = Augmentation {
            flip: true,
            crop_min_scale: Some(0.5),
            ..Augmentation::NONE
        };
        let mut rng = NumpyRandom::new(1);
        let mut flips = 0;
        for _ in 0..2000 {
            let v = aug.draw(&mut rng, 64);
            let area = v.width * v.height / (64.0 * 64.0);
            let ratio = v.width / v.height;
            assert!((0.5 - 1e-9..=1.0 + 1e-9).contains(&area), "{v:?}");
            assert!((0.75 - 1e-9..=4.0 / 3.0 + 1e-9).contains(&ratio), "{v:?}");
            assert!(v.x0 >= 0.0 && v.x0 + v.width <= 64.0 + 1e-9);
            assert!(v.y0 >= 0.0 && v.y0 + v.height <= 64.0 + 1e-9);
            flips += usize::from(v.flip);
        }
        assert!((900..1100).contains(&flips), "{flips} flips of 2000");
        assert_eq!(Augmentation::NONE.draw(&mut rng, 64), View::identity(64));
    }

    fn rendered(img: &[u8], size: usize, view: &View) -> Vec<f32> {
        let mut out = vec![0f32; 3 * size * size];
        render(img, size, view, &mut out);
        out
    }

    #[test]
    fn a_quarter_turn_is_a_transpose_and_a_flip_and_no_shift_is_the_identity() {
        let size = 8;
        let img = gradient(size);
        let turned = View {
            affine: Some(Affine::new(90.0, 0.0, [1.0, 1.0], [0.0, 0.0])),
            ..View::identity(size)
        };
        let out = rendered(&img, size, &turned);
        // src = c + R(90°)(dst − c): output (x, y) reads source (size−1−y, x).
        for y in 0..size {
            for x in 0..size {
                for c in 0..3 {
                    let source = f32::from(img[(x * size + (size - 1 - y)) * 3 + c]) / 127.5 - 1.0;
                    let got = out[c * size * size + y * size + x];
                    assert!(
                        (got - source).abs() < 1e-5,
                        "({x},{y},{c}): {got} vs {source}"
                    );
                }
            }
        }
        let still = View {
            affine: Some(Affine::new(0.0, 0.0, [1.0, 1.0], [0.0, 0.0])),
            ..View::identity(size)
        };
        assert_eq!(
            rendered(&img, size, &still),
            rendered(&img, size, &View::identity(size))
        );
        // A whole-pixel shift moves the picture by that many pixels.
        let shifted = View {
            affine: Some(Affine::new(0.0, 0.0, [1.0, 1.0], [2.0, 0.0])),
            ..View::identity(size)
        };
        let (a, b) = (
            rendered(&img, size, &shifted),
            rendered(&img, size, &View::identity(size)),
        );
        assert_eq!(a[3 * size + 1], b[3 * size + 3]);
    }

    #[test]
    fn jitter_of_one_changes_nothing_and_zero_saturation_is_grey() {
        let size = 4;
        let img = gradient(size);
        let plain = rendered(&img, size, &View::identity(size));
        let same = View {
            color: Some([1.0, 1.0, 1.0]),
            ..View::identity(size)
        };
        let out = rendered(&img, size, &same);
        assert!(plain.iter().zip(&out).all(|(a, b)| (a - b).abs() < 1e-6));
        let grey = View {
            color: Some([1.0, 1.0, 0.0]),
            ..View::identity(size)
        };
        let g = rendered(&img, size, &grey);
        let plane = size * size;
        for i in 0..plane {
            assert!((g[i] - g[plane + i]).abs() < 1e-6 && (g[i] - g[2 * plane + i]).abs() < 1e-6);
        }
    }

    #[test]
    fn the_recipe_draws_within_its_ranges_and_none_draws_nothing_new() {
        let mut rng = NumpyRandom::new(4);
        for _ in 0..200 {
            let v = Augmentation::FACE_MASK.draw(&mut rng, 64);
            let a = v.affine.expect("the recipe is affine");
            assert!(a.t.iter().all(|t| t.abs() <= 0.2 * 64.0));
            let det = a.m[0][0] * a.m[1][1] - a.m[0][1] * a.m[1][0];
            assert!(
                (0.85f64.powi(2) * 0.99..=1.15f64.powi(2)).contains(&det),
                "{det}"
            );
        }
        let v = Augmentation::NONE.draw(&mut rng, 64);
        assert!(v.affine.is_none() && v.color.is_none());
    }
}
