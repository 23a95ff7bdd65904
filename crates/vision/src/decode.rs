//! Decoding photos into square RGB arrays: any of JPEG, PNG, WEBP, BMP,
//! GIF; RGBA, palette and grayscale converted to RGB; EXIF orientation
//! applied; resized to `size × size`. Results are cached on disk so later
//! epochs and later runs decode nothing.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use rayon::prelude::*;

use crate::folder::ImageFile;

/// Why a file could not be used; it is skipped, named and counted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes one file to RGB8 `size × size`, row-major, channels last.
pub fn decode_resized(path: &Path, size: u32) -> Result<Vec<u8>, String> {
    let image = decode(path)?;
    let resized = image
        .resize_exact(size, size, FilterType::Triangle)
        .to_rgb8();
    Ok(resized.into_raw())
}

/// Decodes a file by its content (not its extension), applying EXIF orientation.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let reader = ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let format = reader.format().ok_or("not an image (unknown format)")?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Gif
    ) {
        return Err(format!("unsupported format {format:?}"));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("corrupt {format:?}: {e}"))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| format!("corrupt {format:?}: {e}"))?;
    let mut image =
        DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt {format:?}: {e}"))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The image format guessed from a file's first bytes, if any.
pub fn sniff_format(path: &Path) -> Option<ImageFormat> {
    ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .format()
}

/// A directory of decoded, resized images, one file per (path, size, mtime, image size).
#[derive(Clone, Debug)]
pub struct ImageCache {
    pub dir: PathBuf,
}

impl ImageCache {
    /// The cache under `$XDG_CACHE_HOME/nabla/images` (or `~/.cache/...`), or `fallback`.
    pub fn default_location(fallback: &Path) -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| fallback.to_path_buf());
        Self {
            dir: base.join("nabla").join("images"),
        }
    }

    fn key(file: &ImageFile, size: u32) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let absolute = fs::canonicalize(&file.path).unwrap_or_else(|_| file.path.clone());
        (absolute, file.bytes, file.modified, size).hash(&mut h);
        format!("{:016x}-{size}.rgb", h.finish())
    }

    fn read(&self, file: &ImageFile, size: u32) -> Option<Vec<u8>> {
        let bytes = fs::read(self.dir.join(Self::key(file, size))).ok()?;
        (bytes.len() == (size * size * 3) as usize).then_some(bytes)
    }

    /// Stores `pixels`; a cache that cannot be written only costs a re-decode later.
    fn write(&self, file: &ImageFile, size: u32, pixels: &[u8]) {
        let path = self.dir.join(Self::key(file, size));
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = fs::create_dir_all(&self.dir)
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(pixels))
            .and_then(|()| fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// Decoded images in the order of `files` (only those that decoded), their
/// indices into `files`, and the files skipped with the reason.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub size: u32,
    pub pixels: Vec<Vec<u8>>,
    pub indices: Vec<usize>,
    pub skipped: Vec<Skipped>,
    /// How many came from the cache.
    pub cached: usize,
}

/// Decodes every file (in parallel), through the cache when given one.
pub fn decode_all(
    files: &[ImageFile],
    size: u32,
    cache: Option<&ImageCache>,
    on_done: &(dyn Fn() + Sync),
) -> Decoded {
    let results: Vec<(Result<Vec<u8>, String>, bool)> = files
        .par_iter()
        .map(|f| {
            let out = match cache.and_then(|c| c.read(f, size)) {
                Some(pixels) => (Ok(pixels), true),
                None => {
                    let decoded = decode_resized(&f.path, size);
                    if let (Ok(pixels), Some(c)) = (&decoded, cache) {
                        c.write(f, size, pixels);
                    }
                    (decoded, false)
                }
            };
            on_done();
            out
        })
        .collect();
    let mut decoded = Decoded {
        size,
        pixels: Vec::new(),
        indices: Vec::new(),
        skipped: Vec::new(),
        cached: 0,
    };
    for (i, (result, from_cache)) in results.into_iter().enumerate() {
        match result {
            Ok(pixels) => {
                decoded.pixels.push(pixels);
                decoded.indices.push(i);
                decoded.cached += usize::from(from_cache);
            }
            Err(reason) => decoded.skipped.push(Skipped {
                path: files[i].path.clone(),
                reason,
            }),
        }
    }
    decoded
}
