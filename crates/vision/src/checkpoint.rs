//! Checkpoints: a run's model, optimizer state, configuration and history
//! saved after every epoch so that it resumes to the same numbers, and the
//! best model saved on its own for `eval` and `predict`.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use crate::model::Network;
use crate::train::{EpochRecord, ModelCard, Trainer, VisionTrainConfig};
use crate::VisionError;

/// The file in a checkpoint directory that says what it holds.
const STATE_FILE: &str = "state.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    config: VisionTrainConfig,
    history: Vec<EpochRecord>,
    /// The run's identity ([`crate::identity`]); none in runs from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
}

impl Trainer {
    /// Writes model, optimizer state, configuration and history to
    /// `run/checkpoints/epoch-NNNN/`. The directory is filled under a
    /// temporary name, synced and renamed into place, and older checkpoints
    /// are removed only afterwards, so a run killed at any moment leaves its
    /// previous complete checkpoint loadable.
    pub fn save_checkpoint(&self, run: &Path, id: Option<&str>) -> Result<PathBuf, VisionError> {
        let root = run.join("checkpoints");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VisionError::Io { path, source }
        };
        fs::create_dir_all(&root).map_err(io(&root))?;
        let name = format!("epoch-{:04}", self.epochs_done());
        let tmp = root.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io(&tmp))?;
        let written = self.fill_checkpoint(&tmp, id);
        if written.is_err() {
            // A checkpoint that cannot be finished leaves nothing behind.
            let _ = fs::remove_dir_all(&tmp);
        }
        written?;
        let dest = root.join(&name);
        if dest.exists() {
            fs::remove_dir_all(&dest).map_err(io(&dest))?;
        }
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync(&root).map_err(io(&root))?;
        for (epoch, dir) in checkpoints(&root) {
            if epoch < self.epochs_done() {
                let _ = fs::remove_dir_all(dir);
            }
        }
        Ok(dest)
    }

    /// Model, optimizer state, configuration and history into `tmp`, synced.
    fn fill_checkpoint(&self, tmp: &Path, id: Option<&str>) -> Result<(), VisionError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| VisionError::Io { path, source }
        };
        let store = |what: &str, source| VisionError::Record {
            path: tmp.join(what),
            what: "cannot save",
            source,
        };
        self.model()
            .clone()
            .save_file(tmp.join("model.bpk"))
            .map_err(|e| store("model.bpk", e))?;
        self.optim
            .save(tmp.join("optimizer.bpk"))
            .map_err(|e| store("optimizer.bpk", e))?;
        let state = CheckpointState {
            config: self.config.clone(),
            history: self.history.clone(),
            run: id.map(String::from),
        };
        let json = serde_json::to_vec_pretty(&state).expect("plain data serialises");
        fs::write(tmp.join(STATE_FILE), json).map_err(io(&tmp.join(STATE_FILE)))?;
        for file in ["model.bpk", "optimizer.bpk", STATE_FILE] {
            sync(&tmp.join(file)).map_err(io(&tmp.join(file)))?;
        }
        Ok(())
    }

    /// Continues the run saved under `run` from its latest complete checkpoint.
    pub fn resume(run: &Path, device: &Device) -> Result<Self, VisionError> {
        let root = run.join("checkpoints");
        let (_, dir) = checkpoints(&root)
            .pop()
            .ok_or_else(|| VisionError::Layout {
                path: run.to_path_buf(),
                message: "no checkpoint to resume from (expected checkpoints/epoch-NNNN/)".into(),
            })?;
        let state: CheckpointState = crate::identity::read_json(&dir.join(STATE_FILE))?;
        // A resumed run keeps its checkpoint's batch and image size.
        let c = &state.config;
        crate::device::check_training_device(device, c.batch_size, c.model.image_size).map_err(|e| {
            VisionError::Setup(format!(
                "{e} — a resumed run keeps its batch and image size, so resume {} with --device cpu",
                run.display()
            ))
        })?;
        let model = state
            .config
            .model
            .init(device)
            .try_load_file(dir.join("model.bpk"))
            .map_err(|source| VisionError::Record {
                path: dir.join("model.bpk"),
                what: "cannot load the model",
                source,
            })?;
        let optim = state
            .config
            .optimizer()
            .load(dir.join("optimizer.bpk"))
            .map_err(|source| VisionError::Record {
                path: dir.join("optimizer.bpk"),
                what: "cannot load the optimizer state",
                source,
            })?;
        Ok(Trainer {
            config: state.config,
            model: Some(model),
            optim,
            history: state.history,
            features: None,
        })
    }
}

/// The latest complete checkpoint's state file and the run it names, if
/// there is a checkpoint.
pub(crate) fn latest_checkpoint_run(
    run: &Path,
) -> Result<Option<(PathBuf, Option<String>)>, VisionError> {
    let Some((_, dir)) = checkpoints(&run.join("checkpoints")).pop() else {
        return Ok(None);
    };
    let path = dir.join(STATE_FILE);
    let state: CheckpointState = crate::identity::read_json(&path)?;
    Ok(Some((path, state.run)))
}

/// Whether the run directory `run` holds a complete checkpoint to resume from.
pub fn has_checkpoint(run: &Path) -> bool {
    !checkpoints(&run.join("checkpoints")).is_empty()
}

/// Complete checkpoints under `root` (those with a state file), oldest first.
fn checkpoints(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut found: Vec<(usize, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let epoch = name.strip_prefix("epoch-")?.parse().ok()?;
            let dir = entry.path();
            dir.join(STATE_FILE).is_file().then_some((epoch, dir))
        })
        .collect();
    found.sort();
    found
}

/// Flushes a file or directory to disk.
fn sync(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Writes the model's parameters to `path` (burnpack) through a temporary
/// file, a sync and a rename, so an interrupted save never leaves a torn file.
pub fn save_model(model: &Network, path: &Path) -> Result<(), VisionError> {
    let tmp = path.with_extension(format!("partial{}", std::process::id()));
    let io = |source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let saved = model
        .clone()
        .save_file(&tmp)
        .map_err(|source| VisionError::Record {
            path: tmp.clone(),
            what: "cannot save the model",
            source,
        })
        .and_then(|()| sync(&tmp).map_err(io))
        .and_then(|()| fs::rename(&tmp, path).map_err(io));
    if saved.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    saved
}

/// Rebuilds the model described by `card` and loads its parameters from `path`.
pub fn load_model(card: &ModelCard, path: &Path, device: &Device) -> Result<Network, VisionError> {
    card.model
        .init(device)
        .try_load_file(path)
        .map_err(|source| VisionError::Record {
            path: path.to_path_buf(),
            what: "cannot load the model",
            source,
        })
}
