//! The image pipeline on a folder made at test time: every decoding path,
//! unreadable files skipped by name, duplicates, EXIF orientation, the
//! cache, and the stratified split.

use std::fs;
use std::path::{Path, PathBuf};

use image::{ImageBuffer, ImageFormat, Luma, Rgb, RgbImage, Rgba};
use nabla_dense::data::stratified_indices;
use nabla_vision::decode::{decode, decode_all, ImageCache};
use nabla_vision::folder::ImageFolder;
use nabla_vision::inspect::inspect;

/// A fresh directory, removed with its contents when the returned guard drops.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("nabla-vision-{tag}-"))
        .tempdir()
        .unwrap()
}

/// A picture whose left half is red and right half blue, so orientation shows.
fn two_tone(w: u32, h: u32) -> RgbImage {
    ImageBuffer::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Inserts an EXIF APP1 segment with the given orientation after the JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD right after the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn palette_png(path: &Path) {
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(file, 8, 8);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![255, 0, 0, 0, 255, 0]);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[0, 1].repeat(32)).unwrap();
}

/// Class `a`: one file of every kind, good and bad; class `b`: plain JPEGs and a duplicate.
fn make_folder(root: &Path) {
    let (a, b) = (root.join("a"), root.join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    let jpeg = jpeg_bytes(&two_tone(40, 20));
    fs::write(a.join("plain.jpg"), &jpeg).unwrap();
    fs::write(a.join("rotated.jpg"), with_exif_orientation(&jpeg, 6)).unwrap();
    fs::write(a.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    fs::write(a.join("notes.jpg"), b"not an image at all\n").unwrap();
    fs::write(a.join(".hidden"), b"ignored").unwrap();
    ImageBuffer::from_pixel(9, 7, Rgba([10u8, 200, 30, 128]))
        .save(a.join("rgba.png"))
        .unwrap();
    ImageBuffer::from_pixel(9, 7, Luma([77u8]))
        .save(a.join("gray.png"))
        .unwrap();
    palette_png(&a.join("palette.png"));
    two_tone(12, 12).save(a.join("image.bmp")).unwrap();
    two_tone(12, 12).save(a.join("image.gif")).unwrap();
    two_tone(12, 12)
        .save_with_format(a.join("image.webp"), ImageFormat::WebP)
        .unwrap();
    fs::write(b.join("copy-of-plain.jpg"), &jpeg).unwrap();
    for i in 0..6 {
        fs::write(
            b.join(format!("b{i}.jpg")),
            jpeg_bytes(&ImageBuffer::from_pixel(16, 16, Rgb([i * 40, 100, 100]))),
        )
        .unwrap();
    }
}

#[test]
fn every_format_decodes_and_bad_files_are_skipped_by_name() {
    let dir = temp_dir("decode");
    let root = dir.path();
    make_folder(root);
    let folder = ImageFolder::scan(root).unwrap();
    assert_eq!(folder.classes, ["a", "b"]);
    // The copy in b/ is byte-identical to a/plain.jpg: only the first is kept.
    assert_eq!(folder.duplicate_groups.len(), 1);
    assert!(folder.duplicate_groups[0][0].ends_with("a/plain.jpg"));
    assert!(!folder
        .files
        .iter()
        .any(|f| f.path.ends_with("copy-of-plain.jpg")));
    assert!(!folder.files.iter().any(|f| f.path.ends_with(".hidden")));

    let cache = ImageCache {
        dir: root.join("cache"),
    };
    let decoded = decode_all(&folder.files, 8, Some(&cache), &|| {});
    let mut skipped: Vec<String> = decoded
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        ["notes.jpg", "truncated.jpg"],
        "{:?}",
        decoded.skipped
    );
    assert!(decoded.skipped.iter().all(|s| !s.reason.is_empty()));
    assert_eq!(decoded.pixels.len(), folder.files.len() - 2);
    assert!(decoded.pixels.iter().all(|p| p.len() == 8 * 8 * 3));

    // The cache serves the second pass entirely.
    let again = decode_all(&folder.files, 8, Some(&cache), &|| {});
    assert_eq!(again.cached, again.pixels.len());
    assert_eq!(again.pixels, decoded.pixels);

    // Entries torn, altered in place (same length) or in the headerless
    // format of earlier versions are decoded afresh, never used, and rewritten.
    let mut entries: Vec<PathBuf> = fs::read_dir(&cache.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), decoded.pixels.len());
    let torn = fs::read(&entries[0]).unwrap();
    fs::write(&entries[0], &torn[..torn.len() / 2]).unwrap();
    let mut altered = fs::read(&entries[1]).unwrap();
    let end = altered.len().min(60);
    altered[40..end].fill(0xFF);
    fs::write(&entries[1], &altered).unwrap();
    let old = fs::read(&entries[2]).unwrap();
    fs::write(&entries[2], &old[20..]).unwrap();
    let checked = decode_all(&folder.files, 8, Some(&cache), &|| {});
    assert_eq!(checked.cached, checked.pixels.len() - 3);
    assert_eq!(checked.pixels, decoded.pixels);
    let rewritten = decode_all(&folder.files, 8, Some(&cache), &|| {});
    assert_eq!(rewritten.cached, rewritten.pixels.len());

    let report = inspect(&folder);
    assert_eq!(report.unreadable.len(), 2);
    assert_eq!(report.duplicates_removed, 1);
    for format in ["Jpeg", "Png", "WebP", "Bmp", "Gif"] {
        assert!(
            report.formats.contains_key(format),
            "{format}: {:?}",
            report.formats
        );
    }
}

#[test]
fn conversions_to_rgb_keep_the_colours() {
    let dir = temp_dir("colours");
    let root = dir.path();
    make_folder(root);
    let a = root.join("a");
    let gray = decode(&a.join("gray.png")).unwrap().to_rgb8();
    assert_eq!(gray.get_pixel(0, 0).0, [77, 77, 77]);
    let palette = decode(&a.join("palette.png")).unwrap().to_rgb8();
    assert_eq!(palette.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(palette.get_pixel(1, 0).0, [0, 255, 0]);
    let rgba = decode(&a.join("rgba.png")).unwrap().to_rgb8();
    assert_eq!(rgba.get_pixel(0, 0).0, [10, 200, 30]);
}

#[test]
fn exif_orientation_is_applied() {
    let dir = temp_dir("exif");
    let root = dir.path();
    make_folder(root);
    let plain = decode(&root.join("a/plain.jpg")).unwrap().to_rgb8();
    assert_eq!(plain.dimensions(), (40, 20));
    // Orientation 6: rotate 90° clockwise, so the red left half ends up on top.
    let rotated = decode(&root.join("a/rotated.jpg")).unwrap().to_rgb8();
    assert_eq!(rotated.dimensions(), (20, 40));
    let top = rotated.get_pixel(10, 5).0;
    let bottom = rotated.get_pixel(10, 35).0;
    assert!(top[0] > 150 && top[2] < 100, "top {top:?}");
    assert!(bottom[2] > 150 && bottom[0] < 100, "bottom {bottom:?}");
}

#[test]
fn split_is_stratified_disjoint_and_seeded() {
    let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
    let (train, val) = stratified_indices(&labels, 2, 0.2, 7);
    assert_eq!(train.len() + val.len(), 100);
    assert!(train.iter().all(|t| !val.contains(t)));
    assert_eq!(val.iter().filter(|&&i| labels[i] == 1).count(), 5);
    assert_eq!(val.iter().filter(|&&i| labels[i] == 0).count(), 15);
    assert_eq!(stratified_indices(&labels, 2, 0.2, 7), (train, val));
}

#[test]
fn a_folder_without_class_subfolders_is_a_clear_error() {
    let dir = temp_dir("flat");
    let root = dir.path();
    fs::write(root.join("x.jpg"), jpeg_bytes(&two_tone(4, 4))).unwrap();
    let err = ImageFolder::scan(root).unwrap_err().to_string();
    assert!(err.contains("expected one subfolder per class"), "{err}");
    let err = ImageFolder::scan(&root.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn unpacking_takes_only_the_dataset_class_folders() {
    use std::io::Write;
    let dir = temp_dir("zip");
    let root = dir.path();
    let archive = root.join("repo.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&archive).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let jpeg = jpeg_bytes(&two_tone(8, 8));
    let other = jpeg_bytes(&two_tone(10, 10));
    for (name, bytes) in [
        ("repo-master/dataset/with_mask/1.jpg", jpeg.as_slice()),
        ("repo-master/dataset/without_mask/2.jpg", other.as_slice()),
        ("repo-master/README.md", b"readme".as_slice()),
        ("repo-master/dataset/other/3.jpg", jpeg.as_slice()),
        ("../escape/dataset/with_mask/evil.jpg", jpeg.as_slice()),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    let staging = root.join("out");
    nabla_vision::fetch::unpack_dataset(&archive, &staging).unwrap();
    let folder = ImageFolder::scan(&staging).unwrap();
    assert_eq!(folder.classes, ["with_mask", "without_mask"]);
    assert_eq!(folder.class_counts(), [1, 1]);
    assert!(!root.join("escape").exists());
}

/// A PNG whose header claims `w × h` RGB pixels, with one tiny IDAT chunk.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // zlib: an empty stored block.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[test]
fn images_larger_than_the_limits_are_refused_from_their_header() {
    let dir = temp_dir("limits");
    let root = dir.path();
    for (w, h) in [(60_000, 60_000), (20_000, 100), (12_000, 9_000)] {
        let path = root.join(format!("{w}x{h}.png"));
        fs::write(&path, png_header_only(w, h)).unwrap();
        let err = decode(&path).unwrap_err();
        assert!(
            err.contains("larger than nabla decodes (16384 pixels a side, 40 megapixels)")
                || err.contains("larger than nabla decodes (16384 a side, 40 megapixels)"),
            "{w}×{h}: {err}"
        );
    }
    // Within the limits the same header is read and its missing data is the error.
    let path = root.join("small.png");
    fs::write(&path, png_header_only(64, 64)).unwrap();
    let err = decode(&path).unwrap_err();
    assert!(err.starts_with("corrupt Png"), "{err}");
}
