//! The linear probe's epoch: the head alone on backbone features computed
//! once per process (evaluation mode, no augmentation) and cached — for
//! `--freeze-backbone`, and for `--fine-tune`'s frozen epochs.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::Linear;
use burn::tensor::Device;

use crate::augment::View;
use crate::images::ImageSet;
use crate::train::{hits, labels_of, train_pass, EpochRecord, Features, Pass, Trainer};
use crate::VisionError;

impl Trainer {
    /// The backbone's features of every training and validation image,
    /// computed once (evaluation mode, no augmentation).
    fn cached_features(
        &mut self,
        train_set: &ImageSet,
        val_set: &ImageSet,
        device: &Device,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> &(Features, Features) {
        if self.features.is_none() {
            let batch = self.config.batch_size.max(1);
            let total = train_set.len().div_ceil(batch) + val_set.len().div_ceil(batch);
            let mut done = 0;
            let model = self.model().valid();
            let mut extract = |set: &ImageSet| {
                let mut data = Vec::new();
                let mut dim = 0;
                let rows: Vec<usize> = (0..set.len()).collect();
                for chunk in rows.chunks(batch) {
                    let views = vec![View::identity(set.size); chunk.len()];
                    let (images, _) = set.batch(chunk, &views, device);
                    let f = model.features(images).expect("checked in Trainer::new");
                    dim = f.dims()[1];
                    data.extend(
                        f.into_data()
                            .convert::<f32>()
                            .try_to_vec::<f32>()
                            .expect("f32 data"),
                    );
                    done += 1;
                    on_batch(done, total);
                }
                Features { data, dim }
            };
            let train = extract(train_set);
            let val = extract(val_set);
            self.features = Some((train, val));
        }
        self.features.as_ref().expect("just filled")
    }

    /// An epoch of the linear probe: the head alone, on cached features.
    pub(crate) fn run_probe_epoch(
        &mut self,
        train_set: &ImageSet,
        val_set: &ImageSet,
        device: &Device,
        on_batch: &mut dyn FnMut(usize, usize),
    ) -> Result<EpochRecord, VisionError> {
        let epoch = self.history.len() + 1;
        let start = Instant::now();
        let (_, order) = self.shuffled(epoch, train_set.len());
        let batch = self.config.batch_size.max(1);
        let batches = order.len().div_ceil(batch);
        let head_lrs: Vec<f64> = (0..batches)
            .map(|i| self.scheduled(epoch, i, batches))
            .collect();
        self.cached_features(train_set, val_set, device, on_batch);
        let (train, val) = self.features.as_ref().expect("cached above");
        debug_assert_eq!(train.data.len(), train_set.len() * train.dim);
        debug_assert_eq!(val.data.len(), val_set.len() * val.dim);
        let model = self.model.take().expect("model present between epochs");
        let head = model.head().expect("checked in Trainer::new").clone();
        let (head, mut tally, finished) = train_pass(
            &mut self.optim,
            head,
            &Pass {
                order: &order,
                batch,
                epoch,
            },
            device,
            &mut |i| head_lrs[i].into(),
            &mut |head: &Linear, rows| {
                (
                    head.forward(train.rows(rows, device)),
                    labels_of(train_set, rows, device),
                )
            },
            on_batch,
        );
        if let Err(e) = finished {
            self.model = Some(model.with_head(head));
            return Err(e);
        }
        tally.lrs = head_lrs;
        let loss_fn = CrossEntropyLossConfig::new().init(device);
        let (mut val_loss, mut val_correct) = (0.0, 0usize);
        let rows: Vec<usize> = (0..val_set.len()).collect();
        let eval_head = head.valid();
        for chunk in rows.chunks(batch) {
            let labels = labels_of(val_set, chunk, device);
            let logits = eval_head.forward(val.rows(chunk, device));
            let loss: f32 = loss_fn
                .forward(logits.clone(), labels.clone())
                .into_scalar();
            val_loss += f64::from(loss) * chunk.len() as f64;
            val_correct += hits(logits, labels);
        }
        self.model = Some(model.with_head(head));
        let n_val = val_set.len().max(1) as f64;
        Ok(self.finish_epoch(
            epoch,
            start,
            &tally,
            train_set.len(),
            val_loss / n_val,
            val_correct as f64 / n_val,
        ))
    }
}
