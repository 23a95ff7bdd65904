//! Mini-batch training with per-iteration weight norm, loss and accuracy.

use ndarray::Array2;

use crate::activation::Activation;
use crate::data::Dataset;
use crate::network::{Grads, Init, Mlp, Workspace};
use crate::optim::{Optimizer, OptimizerState};
use crate::rng::NumpyRandom;

/// Everything a run needs besides the data and the optimizer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub layers: usize,
    pub width: usize,
    pub activation: Activation,
    pub init: Init,
    pub lr: f64,
    pub momentum: f64,
    pub epochs: usize,
    /// 0 means the full training split in every batch.
    pub batch_size: usize,
    pub seed: u32,
    pub shuffle: bool,
}

/// The state after iteration `iteration` (0 = before the first update).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub iteration: usize,
    pub weight_norm: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
}

/// A training loss this many times its initial value (or non-finite) means
/// the run has diverged. Cross-entropy starts near ln(classes); a thousand
/// times that gives the true class a probability below e^-1000, which no
/// run that is learning reaches (at `--lr 1e6` the loss jumps from 2.4 to
/// 7e33 in one step and stays there, ELU's saturated units passing no gradient).
pub const DIVERGENCE_FACTOR: f64 = 1e3;

/// Training stopped because the loss blew up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "training with {optimizer} diverged: the training loss became {loss:.4e} at iteration \
     {iteration} (it started at {initial:.4}); lower --lr"
)]
pub struct Diverged {
    pub optimizer: Optimizer,
    pub iteration: usize,
    pub loss: f64,
    pub initial: f64,
}

/// Trains one network from the seeded initialisation and returns it with
/// its history, or stops at the first iteration whose training loss is
/// non-finite or [`DIVERGENCE_FACTOR`] times its initial value. Runs with
/// the same config see the same initial weights and the same batches.
pub fn train(
    train: &Dataset,
    test: Option<&Dataset>,
    optimizer: Optimizer,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(usize),
) -> Result<(Mlp, Vec<Record>), Diverged> {
    let dims = Mlp::dims(
        train.x.ncols(),
        config.layers,
        config.width,
        train.class_names.len(),
    );
    let mut net = Mlp::initialize(&dims, config.init, config.activation, config.seed);
    let mut opt = OptimizerState::new(optimizer, config.lr, config.momentum, &net);
    let train_x = train.columns();
    let test_x = test.map(Dataset::columns);
    let record = |net: &Mlp, iteration: usize| {
        let (train_loss, train_accuracy) = net.evaluate(&train_x, &train.y);
        let (test_loss, test_accuracy) = match (&test_x, test) {
            (Some(x), Some(t)) => {
                let (l, a) = net.evaluate(x, &t.y);
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        Record {
            iteration,
            weight_norm: net.weight_norm(),
            train_loss,
            train_accuracy,
            test_loss,
            test_accuracy,
        }
    };
    let mut history = vec![record(&net, 0)];
    let initial = history[0].train_loss;
    let diverged = |r: &Record| {
        let blown =
            !r.train_loss.is_finite() || r.train_loss > DIVERGENCE_FACTOR * initial.max(1.0);
        blown.then_some(Diverged {
            optimizer,
            iteration: r.iteration,
            loss: r.train_loss,
            initial,
        })
    };
    let mut blown = None;
    let n = train.len();
    let batch = if config.batch_size == 0 {
        n
    } else {
        config.batch_size.min(n)
    };
    // The shuffling stream is separate from the initialisation's.
    let mut rng = NumpyRandom::new(config.seed.wrapping_add(1));
    let mut order: Vec<usize> = (0..n).collect();
    for done in 1..=config.epochs {
        if config.shuffle {
            rng.shuffle(&mut order);
        }
        epoch(
            &mut net,
            &mut opt,
            &train_x,
            &train.y,
            &order,
            batch,
            |net| {
                if blown.is_none() {
                    let r = record(net, history.len());
                    blown = diverged(&r);
                    history.push(r);
                }
            },
        );
        if let Some(d) = blown {
            return Err(d);
        }
        on_epoch(done);
    }
    Ok((net, history))
}

/// One pass over `order` in batches of `batch` columns of `x`, one update
/// per batch; `after_step` sees the network after each update.
pub fn epoch(
    net: &mut Mlp,
    opt: &mut OptimizerState,
    x: &Array2<f64>,
    y: &[usize],
    order: &[usize],
    batch: usize,
    mut after_step: impl FnMut(&Mlp),
) {
    let mut ws = Workspace::default();
    let mut grads = Grads::zeros_like(net);
    for rows in order.chunks(batch.max(1)) {
        ws.load(net, x, y, rows);
        opt.step(net, &mut grads, |at, g| {
            ws.propagate(at);
            ws.backward(at, g);
        });
        after_step(net);
    }
}
