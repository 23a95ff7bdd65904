//! `nabla bench`: speed and memory measurements, run on demand (never as
//! timed tests). `tools/bench_graph.py`, `tools/bench_mlp.py` and
//! `tools/bench_vision.py` run the same work in micrograd, numpy and PyTorch
//! in the same run and print ratios.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use nabla_dense::train::epoch;
use nabla_dense::{Activation, Init, Mlp, NumpyRandom, Optimizer, OptimizerState};
use nabla_graph::{Func, Graph, NodeId};
use ndarray::Array2;
use serde::Serialize;

use burn::module::Module;
use nabla_vision::device::Accelerator;
use nabla_vision::model::{Architecture, ModelConfig};
use nabla_vision::profile::{self, KernelTime};
use nabla_vision::train::{predict, ImageSet, Trainer, VisionTrainConfig};

use crate::output::{number, table, OutputArgs};
use crate::InputError;

#[derive(Subcommand, Debug)]
#[command(after_help = "Example:\n  nabla bench graph --nodes 1000000 --json")]
pub enum BenchCommand {
    /// Forward + backward on a generated graph of about N nodes.
    #[command(
        after_help = "Example:\n  nabla bench graph --nodes 1000000\n  python3 tools/bench_graph.py   # the same graph in micrograd, side by side"
    )]
    Graph(GraphBenchArgs),
    /// One SGD epoch of the sheet's net (L = 5, d = 10) on synthetic data.
    #[command(
        after_help = "Example:\n  nabla bench mlp --samples 100000 --batch-size 32\n  python3 tools/bench_mlp.py   # the same epoch in numpy and PyTorch, side by side\n  NABLA_ISA=avx2 nabla bench mlp   # the AVX2 kernels on an AVX-512 machine"
    )]
    Mlp(MlpBenchArgs),
    /// Training (or evaluation) steps of a Problem 5 model on random images.
    #[command(
        after_help = "Example:\n  nabla bench vision --model cnn-bn --batch-size 32 --image-size 128\n  nabla bench vision --model resnet34 --batch-size 16 --eval\n  nabla bench vision --model resnet34 --batch-size 16 --profile   # where a step goes, per layer\n  python3 tools/bench_vision.py   # the same models in PyTorch, side by side"
    )]
    Vision(VisionBenchArgs),
    /// nabla's convolution kernels on Problem 5's layers, against the CPU's FMA peak.
    #[command(
        after_help = "Example:\n  nabla bench kernels --batch-size 32\n  nabla bench kernels --layer layer4 --repeat 20   # one layer, e.g. to profile it\n  NABLA_ISA=avx2 nabla bench kernels   # force the AVX2 path on an AVX-512 machine"
    )]
    Kernels(KernelBenchArgs),
}

#[derive(Args, Debug)]
pub struct KernelBenchArgs {
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Repetitions of each pass; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Time only the layers whose name contains this text (e.g. `layer4`),
    /// to profile one of them alone.
    #[arg(long)]
    pub layer: Option<String>,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn run_kernels(args: &KernelBenchArgs) -> Result<()> {
    let only = args.layer.as_deref().unwrap_or("");
    let report = nabla_kernels::bench::run(args.batch_size.max(1), args.repeat, only);
    if report.layers.is_empty() {
        anyhow::bail!("--layer {only:?} names none of the benchmark's layers");
    }
    if args.json {
        return OutputArgs::print_json(&report);
    }
    println!(
        "{} · {} · {} threads · FMA peak {:.1} GFLOP/s (measured) · batch {}",
        report.cpu,
        report.isa.name(),
        report.threads,
        report.fma_peak_gflops,
        report.batch
    );
    let rows: Vec<Vec<String>> = report
        .layers
        .iter()
        .map(|l| {
            vec![
                l.layer.clone(),
                format!("{:.2}", l.gflop),
                format!("{:.1}", l.forward_ms),
                format!("{:.1}", l.input_grad_ms),
                format!("{:.1}", l.weight_grad_ms),
                format!("{:.0} %", l.share_of_peak * 100.0),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "layer",
                "GFLOP/pass",
                "forward ms",
                "input grad ms",
                "weight grad ms",
                "of peak"
            ],
            &rows
        )
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct VisionBenchArgs {
    /// `cnn`, `cnn-bn`, `resnet34` or `efficientnet-lite0`.
    #[arg(long, default_value = "cnn-bn")]
    pub model: Architecture,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub image_size: usize,
    /// Timed training steps (after `--warmup` untimed ones).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Time evaluation instead (no gradients, BatchNorm folded into the
    /// convolutions): `--steps` batches through the model.
    #[arg(long)]
    pub eval: bool,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// cpu, cuda or wgpu.
    #[arg(long, default_value = "cpu")]
    pub device: Accelerator,
    /// Also time each of nabla's kernel calls in the timed steps (per layer
    /// and pass) and show where a step goes: a profile that needs no
    /// profiler. Adds two clock reads per call.
    #[arg(long)]
    pub profile: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct VisionBench {
    model: &'static str,
    /// "training" or "evaluation".
    mode: &'static str,
    device: &'static str,
    batch_size: usize,
    image_size: usize,
    steps: usize,
    parameters: usize,
    step_s: f64,
    images_per_s: f64,
    peak_rss_mib: Option<f64>,
    /// With `--profile`: each kind of kernel call over the timed steps, the
    /// longest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<Vec<KernelTime>>,
}

/// Random RGB images with alternating labels.
fn random_images(n: usize, size: usize, rng: &mut NumpyRandom) -> ImageSet {
    ImageSet {
        size,
        pixels: (0..n)
            .map(|_| (0..size * size * 3).map(|_| rng.below(256) as u8).collect())
            .collect(),
        labels: (0..n).map(|i| i % 2).collect(),
        normalization: Default::default(),
    }
}

fn run_vision(args: &VisionBenchArgs) -> Result<()> {
    let plain = args.device.device().map_err(InputError)?;
    let device = plain.clone().autodiff();
    let batch = args.batch_size.max(1);
    let mut rng = NumpyRandom::new(0);
    let config = VisionTrainConfig {
        epochs: 2,
        batch_size: batch,
        ..VisionTrainConfig::plain(ModelConfig::new(args.model, 2).with_image_size(args.image_size))
    };
    let none = ImageSet {
        size: args.image_size,
        ..ImageSet::default()
    };
    let warm = random_images(batch * args.warmup, args.image_size, &mut rng);
    let timed = random_images(batch * args.steps.max(1), args.image_size, &mut rng);
    // Evaluation builds the model alone: a trainer would first ask the
    // device for the long sums only training needs.
    // The timed steps, under the kernel profile when asked for one.
    let measure =
        |steps: &mut dyn FnMut() -> Result<()>| -> Result<(f64, Option<Vec<KernelTime>>)> {
            let t = Instant::now();
            if args.profile {
                let (done, times) = profile::record(&mut *steps);
                done?;
                Ok((t.elapsed().as_secs_f64(), Some(times)))
            } else {
                steps()?;
                Ok((t.elapsed().as_secs_f64(), None))
            }
        };
    let ((seconds, kernel_times), parameters) = if args.eval {
        let model = config.model.init(&plain);
        predict(&model, &warm, batch, &plain);
        let measured = measure(&mut || {
            predict(&model, &timed, batch, &plain);
            Ok(())
        })?;
        (measured, model.num_params())
    } else {
        let mut trainer = Trainer::new(config, &device)?;
        trainer.run_epoch(&warm, &none, &device, &mut |_, _| {})?;
        let measured = measure(&mut || {
            trainer.run_epoch(&timed, &none, &device, &mut |_, _| {})?;
            Ok(())
        })?;
        (measured, trainer.model().num_params())
    };
    let report = VisionBench {
        model: args.model.name(),
        mode: if args.eval { "evaluation" } else { "training" },
        device: args.device.name(),
        batch_size: batch,
        image_size: args.image_size,
        steps: args.steps.max(1),
        parameters,
        step_s: seconds / args.steps.max(1) as f64,
        images_per_s: timed.len() as f64 / seconds,
        peak_rss_mib: peak_rss_mib(),
        profile: kernel_times,
    };
    if args.json {
        return OutputArgs::print_json(&report);
    }
    let rows = vec![
        vec![
            "model".into(),
            format!("{} ({} parameters)", report.model, report.parameters),
        ],
        vec![
            "input".into(),
            format!("{} × 3×{}×{}", batch, report.image_size, report.image_size),
        ],
        vec!["mode".into(), report.mode.into()],
        vec![
            "step (mean)".into(),
            format!("{:.1} ms", report.step_s * 1e3),
        ],
        vec![
            "images per second".into(),
            format!("{:.1}", report.images_per_s),
        ],
        vec![
            "peak memory".into(),
            report
                .peak_rss_mib
                .map_or("unknown".into(), |m| format!("{m:.1} MiB")),
        ],
    ];
    print!("{}", table(&["vision benchmark", ""], &rows));
    if let Some(times) = &report.profile {
        print!("{}", profile_table(times, report.steps, report.step_s));
    }
    Ok(())
}

/// The profile per step: each kind of kernel call, then nabla's kernels in
/// all and the rest of the step (Burn's own ops, the autodiff graph, the
/// loss, assembling the batch).
fn profile_table(times: &[KernelTime], steps: usize, step_s: f64) -> String {
    let per_step = |s: f64| s / steps as f64;
    let share = |s: f64| format!("{:.1} %", 100.0 * per_step(s) / step_s);
    let mut rows: Vec<Vec<String>> = times
        .iter()
        .map(|t| {
            vec![
                t.op.clone(),
                t.pass.into(),
                format!("{:.1}", t.calls as f64 / steps as f64),
                format!("{:.2}", per_step(t.seconds) * 1e3),
                share(t.seconds),
            ]
        })
        .collect();
    let kernels: f64 = times.iter().map(|t| t.seconds).sum();
    let step_total = step_s * steps as f64;
    for (what, s) in [
        ("nabla's kernels, in all", kernels),
        ("the rest of the step", (step_total - kernels).max(0.0)),
    ] {
        rows.push(vec![
            what.into(),
            String::new(),
            String::new(),
            format!("{:.2}", per_step(s) * 1e3),
            share(s),
        ]);
    }
    table(
        &[
            "kernel call",
            "pass",
            "calls/step",
            "ms/step",
            "of the step",
        ],
        &rows,
    )
}

#[derive(Args, Debug)]
pub struct MlpBenchArgs {
    /// Synthetic samples: x ~ np.random.seed(0); randn(5, N), label i mod 3.
    #[arg(long, default_value_t = 100_000)]
    pub samples: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Repetitions of the epoch (each from the same initial weights); the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct MlpBench {
    cpu: String,
    /// The dense kernels' instruction set (`NABLA_ISA` forces a narrower one).
    isa: nabla_kernels::isa::Isa,
    samples: usize,
    batch_size: usize,
    updates: usize,
    epoch_s: f64,
    /// Mean cross-entropy over all samples after the epoch, for cross-checking.
    loss_after: f64,
}

fn run_mlp(args: &MlpBenchArgs) -> Result<()> {
    let n = args.samples.max(1);
    let mut rng = NumpyRandom::new(0);
    let x = Array2::from_shape_vec((5, n), rng.randn_vec(5 * n))?;
    let y: Vec<usize> = (0..n).map(|i| i % 3).collect();
    let order: Vec<usize> = (0..n).collect();
    let dims = Mlp::dims(5, 5, 10, 3);
    let start = Mlp::initialize(&dims, Init::He, Activation::Elu, 42);
    let mut best = f64::INFINITY;
    let mut trained = start.clone();
    for _ in 0..args.repeat.max(1) {
        let mut net = start.clone();
        let mut opt = OptimizerState::new(Optimizer::Sgd, args.lr, 0.0, &net);
        let t = Instant::now();
        epoch(&mut net, &mut opt, &x, &y, &order, args.batch_size, |_| {});
        best = best.min(t.elapsed().as_secs_f64());
        trained = net;
    }
    let report = MlpBench {
        cpu: nabla_kernels::bench::cpu_name(),
        isa: nabla_kernels::isa::active(),
        samples: n,
        batch_size: args.batch_size,
        updates: n.div_ceil(args.batch_size.max(1)),
        epoch_s: best,
        loss_after: trained.evaluate(&x, &y).0,
    };
    if args.json {
        return OutputArgs::print_json(&report);
    }
    let rows = vec![
        vec!["cpu".into(), report.cpu.clone()],
        vec!["instruction set".into(), report.isa.name().into()],
        vec!["samples".into(), report.samples.to_string()],
        vec![
            "updates (batch size)".into(),
            format!("{} ({})", report.updates, report.batch_size),
        ],
        vec!["epoch (best)".into(), format!("{:.1} ms", best * 1e3)],
        vec!["loss after the epoch".into(), number(report.loss_after)],
    ];
    print!("{}", table(&["mlp benchmark", ""], &rows));
    Ok(())
}

#[derive(Args, Debug)]
pub struct GraphBenchArgs {
    /// Approximate number of nodes (rounded to whole neurons, 7 nodes each).
    #[arg(long, default_value_t = 1_000_000)]
    pub nodes: usize,
    /// Repetitions of forward + backward; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct GraphBench {
    nodes: usize,
    neurons: usize,
    build_s: f64,
    forward_s: f64,
    backward_s: f64,
    /// Build + forward + backward, comparable to micrograd's eager build + backward.
    total_s: f64,
    peak_rss_mib: Option<f64>,
    output: f64,
    grad_a0: f64,
    grad_b0: f64,
    grad_c0: f64,
}

/// Input values that both this and the Python script compute the same way.
pub fn bench_inputs(i: usize) -> (f64, f64, f64) {
    let a = ((i * 37) % 101) as f64 / 50.0 - 1.0;
    let b = ((i * 53) % 97) as f64 / 48.0 - 1.0;
    let c = ((i * 11) % 89) as f64 / 88.0 - 0.5;
    (a, b, c)
}

/// `neurons` terms relu(a_i · b_i + c_i), summed by a balanced pairwise tree
/// (shallow, so micrograd's recursive topological sort copes with it).
fn build(neurons: usize) -> (Graph, NodeId, [NodeId; 3]) {
    let mut g = Graph::with_capacity(7 * neurons);
    let mut level = Vec::with_capacity(neurons);
    let mut first = None;
    for i in 0..neurons {
        let (a, b, c) = bench_inputs(i);
        let (a, b, c) = (g.input(a), g.input(b), g.input(c));
        first.get_or_insert([a, b, c]);
        let p = g.mul(a, b);
        let s = g.add(p, c);
        level.push(g.unary(Func::Relu, s));
    }
    while level.len() > 1 {
        let next = level
            .chunks(2)
            .map(|pair| match *pair {
                [x, y] => g.add(x, y),
                [x] => x,
                _ => unreachable!("chunks of two"),
            })
            .collect();
        level = next;
    }
    (g, level[0], first.expect("at least one neuron"))
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Graph(args) => run_graph(args),
        BenchCommand::Mlp(args) => run_mlp(args),
        BenchCommand::Vision(args) => run_vision(args),
        BenchCommand::Kernels(args) => run_kernels(args),
    }
}

fn run_graph(args: &GraphBenchArgs) -> Result<()> {
    let neurons = args.nodes.div_ceil(7).max(1);
    let t = Instant::now();
    let (graph, output, [a0, b0, c0]) = build(neurons);
    let build_s = t.elapsed().as_secs_f64();
    let (mut forward_s, mut backward_s) = (f64::INFINITY, f64::INFINITY);
    let mut last = None;
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let values = graph.forward()?;
        let f = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = graph.backward(&values, output)?;
        let b = t.elapsed().as_secs_f64();
        if f + b < forward_s + backward_s {
            (forward_s, backward_s) = (f, b);
        }
        last = Some((values[output.index()], grads));
    }
    let (out_value, grads) = last.expect("at least one repetition");
    let report = GraphBench {
        nodes: graph.len(),
        neurons,
        build_s,
        forward_s,
        backward_s,
        total_s: build_s + forward_s + backward_s,
        peak_rss_mib: peak_rss_mib(),
        output: out_value,
        grad_a0: grads[a0.index()],
        grad_b0: grads[b0.index()],
        grad_c0: grads[c0.index()],
    };
    if args.json {
        return OutputArgs::print_json(&report);
    }
    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    let rows = vec![
        vec!["nodes".into(), report.nodes.to_string()],
        vec!["build".into(), ms(build_s)],
        vec!["forward (best)".into(), ms(forward_s)],
        vec!["backward (best)".into(), ms(backward_s)],
        vec!["forward + backward".into(), ms(forward_s + backward_s)],
        vec![
            "peak memory".into(),
            report
                .peak_rss_mib
                .map_or("unknown".into(), |m| format!("{m:.1} MiB")),
        ],
        vec!["output".into(), number(out_value)],
    ];
    print!("{}", table(&["graph benchmark", ""], &rows));
    Ok(())
}
