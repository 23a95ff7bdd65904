//! Decoding photos into square RGB arrays: any of JPEG, PNG, WEBP, BMP,
//! GIF; RGBA, palette and grayscale converted to RGB; EXIF orientation
//! applied; resized to `size × size`. Results are cached on disk so later
//! epochs and later runs decode nothing.
//!
//! Limits: an image of more than [`MAX_SIDE`] pixels on a side or
//! [`MAX_PIXELS`] in all is refused from its header, before any pixel is
//! allocated, and the decoder may allocate at most [`MAX_DECODE_BYTES`].

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
    let bytes = fs::read(path).map_err(|e| format!("cannot open: {e}"))?;
    decode_resized_bytes(&bytes, size)
}

/// [`decode_resized`] of a file's bytes (what the fuzzer drives).
pub fn decode_resized_bytes(bytes: &[u8], size: u32) -> Result<Vec<u8>, String> {
    let image = decode_bytes(bytes)?;
    let resized = image
        .resize_exact(size, size, FilterType::Triangle)
        .to_rgb8();
    Ok(resized.into_raw())
}

/// The longest side nabla decodes (a 16k panorama).
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels nabla decodes: 40 megapixels, more than the photos of
/// Problem 5 by far. Decoders allocate up to about 8 bytes a pixel before
/// reading the pixel data (WebP's lossless decoder, measured by the
/// fuzzer), so a file of a few bytes can cost up to about 320 MB.
pub const MAX_PIXELS: u64 = 40_000_000;
/// What `image`'s decoders are told they may allocate for one image.
pub const MAX_DECODE_BYTES: u64 = 320 * 1024 * 1024;

/// The extent of a GIF's frames (`image` reports only the logical screen,
/// but a frame may claim far more), read from the block structure.
fn gif_extent(bytes: &[u8]) -> Option<(u32, u32)> {
    let u16_at = |i: usize| {
        Some(u32::from(u16::from_le_bytes([
            *bytes.get(i)?,
            *bytes.get(i + 1)?,
        ])))
    };
    let (mut w, mut h) = (u16_at(6)?, u16_at(8)?);
    let packed = *bytes.get(10)?;
    let mut i = 13
        + if packed & 0x80 != 0 {
            3 << ((packed & 7) + 1)
        } else {
            0
        };
    loop {
        match *bytes.get(i)? {
            0x2C => {
                w = w.max(u16_at(i + 1)? + u16_at(i + 5)?);
                h = h.max(u16_at(i + 3)? + u16_at(i + 7)?);
                // Only the first frame is decoded.
                return Some((w, h));
            }
            0x21 => {
                i += 2;
                loop {
                    let n = usize::from(*bytes.get(i)?);
                    i += 1 + n;
                    if n == 0 {
                        break;
                    }
                }
            }
            _ => return Some((w, h)),
        }
    }
}

/// Decodes a file by its content (not its extension), applying EXIF
/// orientation, within the limits above.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot open: {e}"))?;
    decode_bytes(&bytes)
}

/// [`decode`] of a file's bytes (what the fuzzer drives).
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
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
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "{format:?} larger than nabla decodes ({MAX_SIDE} pixels a side, {} megapixels): {e}",
            MAX_PIXELS / 1_000_000
        ),
        e => format!("corrupt {format:?}: {e}"),
    })?;
    let (mut w, mut h) = decoder.dimensions();
    if format == ImageFormat::Gif {
        let (fw, fh) = gif_extent(bytes).unwrap_or((w, h));
        (w, h) = (w.max(fw), h.max(fh));
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!(
            "{format:?} of {w}×{h} pixels is larger than nabla decodes ({MAX_SIDE} a side, {} megapixels)",
            MAX_PIXELS / 1_000_000
        ));
    }
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

/// A cache entry starts with this, then the pixel count (u64) and their
/// CRC-32 (u32), little-endian.
const ENTRY_MAGIC: &[u8; 8] = b"NABLAPX1";
const ENTRY_HEADER: usize = 8 + 8 + 4;

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

    /// The entry's pixels when it is whole and unaltered: its header's magic,
    /// length and CRC-32 all agree with what follows. Anything else (an entry
    /// torn by a crash, altered in place, or of the older headerless format)
    /// is a miss, decoded afresh and rewritten.
    fn read(&self, file: &ImageFile, size: u32) -> Option<Vec<u8>> {
        let bytes = fs::read(self.dir.join(Self::key(file, size))).ok()?;
        let pixels = bytes.get(ENTRY_HEADER..)?;
        let length = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
        let whole = bytes[..8] == ENTRY_MAGIC[..]
            && length == pixels.len() as u64
            && pixels.len() == (size * size * 3) as usize
            && crc32fast::hash(pixels) == crc;
        whole.then(|| pixels.to_vec())
    }

    /// Stores `pixels` behind its header; a cache that cannot be written
    /// only costs a re-decode later. No fsync: a torn entry fails its
    /// checksum and is decoded again.
    fn write(&self, file: &ImageFile, size: u32, pixels: &[u8]) {
        let path = self.dir.join(Self::key(file, size));
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut entry = Vec::with_capacity(ENTRY_HEADER + pixels.len());
        entry.extend_from_slice(ENTRY_MAGIC);
        entry.extend_from_slice(&(pixels.len() as u64).to_le_bytes());
        entry.extend_from_slice(&crc32fast::hash(pixels).to_le_bytes());
        entry.extend_from_slice(pixels);
        let written = fs::create_dir_all(&self.dir)
            .and_then(|()| fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(&entry))
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
