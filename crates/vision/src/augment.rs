//! Training-time augmentation on the cached square images: a random
//! horizontal flip and, optionally, torchvision-style random resized crops
//! (a random area fraction and aspect ratio, resampled bilinearly back to the
//! full side). Both are drawn from the run's seeded generator, so a run and
//! its resumption see the same views.

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
        }
    }
}

impl Augmentation {
    pub const NONE: Augmentation = Augmentation {
        flip: false,
        crop_min_scale: None,
    };

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
        view
    }
}

/// Writes the view of `image` (RGB8, `size × size`, channels last) into
/// `out` as `[3, size, size]` floats scaled to [−1, 1], sampling the window
/// bilinearly (pixel centres aligned, edges clamped).
pub fn render(image: &[u8], size: usize, view: &View, out: &mut [f32]) {
    let plane = size * size;
    let identity = view.width == size as f64 && view.height == size as f64;
    let (sx, sy) = (view.width / size as f64, view.height / size as f64);
    let max = (size - 1) as f64;
    for y in 0..size {
        for x in 0..size {
            let xo = if view.flip { size - 1 - x } else { x };
            for c in 0..3 {
                let v = if identity {
                    f64::from(image[(y * size + xo) * 3 + c])
                } else {
                    let fx = (view.x0 + (xo as f64 + 0.5) * sx - 0.5).clamp(0.0, max);
                    let fy = (view.y0 + (y as f64 + 0.5) * sy - 0.5).clamp(0.0, max);
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
            flip: false,
            x0: 2.0,
            y0: 1.0,
            width: 4.0,
            height: 4.0,
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
}
