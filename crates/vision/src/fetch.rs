//! `nabla data fetch face-mask`: the public dataset of the GitHub repository
//! chandrikadeb7/Face-Mask-Detection (its `dataset/with_mask` and
//! `dataset/without_mask` folders), downloaded as the repository's zip
//! archive, unpacked, checked, and moved into place in one rename.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::folder::ImageFolder;
use crate::VisionError;

/// The repository archive holding `dataset/`.
pub const FACE_MASK_ZIP: &str =
    "https://github.com/chandrikadeb7/Face-Mask-Detection/archive/refs/heads/master.zip";

/// Where the face-mask archive is fetched from: `$NABLA_FACE_MASK_URL` when
/// set (a mirror), else [`FACE_MASK_ZIP`].
pub fn face_mask_url() -> String {
    std::env::var("NABLA_FACE_MASK_URL").unwrap_or_else(|_| FACE_MASK_ZIP.to_string())
}

/// The classes of the face-mask data, as folder names.
pub const FACE_MASK_CLASSES: [&str; 2] = ["with_mask", "without_mask"];

/// What to do by hand when the download cannot happen.
pub fn manual_instructions(out: &Path) -> String {
    format!(
        "put the photos in {0}/with_mask/ and {0}/without_mask/ by hand: they are the dataset/with_mask \
and dataset/without_mask folders of the GitHub repository chandrikadeb7/Face-Mask-Detection",
        out.display()
    )
}

/// Downloads and unpacks the face-mask data into `out`, reporting bytes as they arrive.
pub fn fetch_face_mask(out: &Path, on_bytes: &dyn Fn(u64)) -> Result<ImageFolder, VisionError> {
    if out.join(FACE_MASK_CLASSES[0]).is_dir() && out.join(FACE_MASK_CLASSES[1]).is_dir() {
        return Err(VisionError::Fetch(format!(
            "{} already holds with_mask/ and without_mask/; remove it to fetch again",
            out.display()
        )));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|source| VisionError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let archive = parent.join(format!(".face-mask-{}.zip", std::process::id()));
    let staging = parent.join(format!(".face-mask-{}.partial", std::process::id()));
    let result = download(&face_mask_url(), &archive, on_bytes)
        .and_then(|()| unpack_dataset(&archive, &staging))
        .and_then(|()| {
            let folder = ImageFolder::scan(&staging)?;
            if folder.files.is_empty() {
                return Err(VisionError::Fetch(
                    "the archive held no images under dataset/".into(),
                ));
            }
            fs::rename(&staging, out).map_err(|source| VisionError::Io {
                path: out.to_path_buf(),
                source,
            })?;
            ImageFolder::scan(out)
        });
    let _ = fs::remove_file(&archive);
    let _ = fs::remove_dir_all(&staging);
    result.map_err(|e| match e {
        VisionError::Fetch(m) => {
            VisionError::Fetch(format!("{m}; or {}", manual_instructions(out)))
        }
        other => other,
    })
}

pub(crate) fn download(url: &str, to: &Path, on_bytes: &dyn Fn(u64)) -> Result<(), VisionError> {
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| VisionError::Fetch(format!("cannot download {url}: {e}")))?;
    let mut reader = response.body_mut().as_reader();
    let mut file = fs::File::create(to).map_err(|source| VisionError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| VisionError::Fetch(format!("download of {url} broke off: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .map_err(|source| VisionError::Io {
                path: to.to_path_buf(),
                source,
            })?;
        total += n as u64;
        on_bytes(total);
    }
    file.sync_all().map_err(|source| VisionError::Io {
        path: to.to_path_buf(),
        source,
    })
}

/// Extracts `*/dataset/<class>/<file>` entries of the archive into `staging/<class>/<file>`.
pub fn unpack_dataset(archive: &Path, staging: &Path) -> Result<(), VisionError> {
    let bad = |e: zip::result::ZipError| {
        VisionError::Fetch(format!(
            "{}: not a usable zip archive: {e}",
            archive.display()
        ))
    };
    let file = fs::File::open(archive).map_err(|source| VisionError::Io {
        path: archive.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(bad)?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        // enclosed_name refuses absolute paths and `..`, so nothing lands outside `staging`.
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let parts: Vec<String> = name
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let Some(at) = parts.iter().position(|p| p == "dataset") else {
            continue;
        };
        let rest = &parts[at + 1..];
        if entry.is_dir() || rest.len() != 2 || !FACE_MASK_CLASSES.contains(&rest[0].as_str()) {
            continue;
        }
        let dir = staging.join(&rest[0]);
        fs::create_dir_all(&dir).map_err(|source| VisionError::Io {
            path: dir.clone(),
            source,
        })?;
        let target: PathBuf = dir.join(&rest[1]);
        let mut out = fs::File::create(&target).map_err(|source| VisionError::Io {
            path: target.clone(),
            source,
        })?;
        io::copy(&mut entry, &mut out).map_err(|source| VisionError::Io {
            path: target.clone(),
            source,
        })?;
    }
    Ok(())
}

/// torchvision's ImageNet weights for ResNet34 (`ResNet34_Weights.IMAGENET1K_V1`).
pub const RESNET34_URL: &str = "https://download.pytorch.org/models/resnet34-b627a593.pth";

/// Downloads a torchvision weights file into `dir` and checks it the way
/// `torch.hub` does: the file name's 8-hex suffix must begin the SHA-256 of
/// its contents. The file appears under its final name only after the check.
pub fn fetch_weights(
    url: &str,
    dir: &Path,
    on_bytes: &dyn Fn(u64),
) -> Result<PathBuf, VisionError> {
    let name = url.rsplit('/').next().unwrap_or("weights.pth").to_string();
    let prefix = name
        .rsplit_once('-')
        .and_then(|(_, tail)| tail.split('.').next())
        .filter(|h| h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| VisionError::Fetch(format!("{name}: no hash in the file name")))?
        .to_string();
    fs::create_dir_all(dir).map_err(|source| VisionError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let dest = dir.join(&name);
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let manual = || {
        format!(
            "without network, download {url} elsewhere and put it at {}",
            dest.display()
        )
    };
    download(url, &partial, on_bytes).map_err(|e| {
        let _ = fs::remove_file(&partial);
        VisionError::Fetch(format!("{e}; {}", manual()))
    })?;
    let digest = sha256_hex(&partial)?;
    if !digest.starts_with(&prefix) {
        let _ = fs::remove_file(&partial);
        return Err(VisionError::Fetch(format!(
            "{url}: SHA-256 {digest} does not begin with {prefix}; the download is corrupt or not the published file"
        )));
    }
    fs::rename(&partial, &dest).map_err(|source| VisionError::Io {
        path: dest.clone(),
        source,
    })?;
    Ok(dest)
}

/// The SHA-256 of a file, in lowercase hex.
pub fn sha256_hex(path: &Path) -> Result<String, VisionError> {
    use sha2::{Digest, Sha256};
    let mut file = fs::File::open(path).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_text() {
        let dir = std::env::temp_dir().join(format!("nabla-sha-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("abc"), b"abc").unwrap();
        assert_eq!(
            sha256_hex(&dir.join("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_network_the_error_says_where_to_put_the_file() {
        let dir = std::env::temp_dir().join(format!("nabla-weights-{}", std::process::id()));
        // Port 9 (discard) on localhost refuses the connection at once.
        let e = fetch_weights("http://127.0.0.1:9/resnet34-b627a593.pth", &dir, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot download"), "{e}");
        assert!(
            e.contains(&format!(
                "put it at {}",
                dir.join("resnet34-b627a593.pth").display()
            )),
            "{e}"
        );
        assert!(!dir.join("resnet34-b627a593.pth").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
