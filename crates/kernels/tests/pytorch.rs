//! Every kernel against PyTorch's own results on the same inputs
//! (fixtures/pytorch.json, written by tools/gen_kernel_fixtures.py), on
//! every instruction set this CPU has: relative error ≤ 1e-4.

use nabla_kernels::conv::{conv2d_backward, conv2d_forward, Conv2dShape, ConvGrads};
use nabla_kernels::isa::{on_each_available, Isa};
use nabla_kernels::norm::{
    batch_norm_train_backward, batch_norm_train_forward, Activation, NormShape,
};
use nabla_kernels::pool::{max_pool2d_backward, max_pool2d_forward, PoolShape};
use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = include_str!("fixtures/pytorch.json");
    let doc: Value = serde_json::from_str(text).expect("fixture is JSON");
    doc["cases"].as_array().expect("cases").clone()
}

fn floats(v: &Value, key: &str) -> Vec<f32> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture field {key}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn usize_of(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("fixture field {key}")) as usize
}

fn pair(v: &Value, key: &str) -> [usize; 2] {
    let a = v[key].as_array().unwrap();
    [
        a[0].as_u64().unwrap() as usize,
        a[1].as_u64().unwrap() as usize,
    ]
}

fn shape4(v: &Value) -> [usize; 4] {
    let a = v["shape"].as_array().unwrap();
    std::array::from_fn(|i| a[i].as_u64().unwrap() as usize)
}

/// |got − want| ≤ 1e-4 · max(1, max |want|), element by element.
fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale,
            "{what}[{i}]: {g} vs PyTorch {w}"
        );
    }
}

fn conv(case: &Value, isa: Isa) {
    let [batch, in_channels, in_h, in_w] = shape4(case);
    let k = usize_of(case, "kernel");
    let st = usize_of(case, "stride");
    let s = Conv2dShape {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels: usize_of(case, "out_channels"),
        kernel: [k, k],
        stride: [st, st],
        padding: pair(case, "padding"),
        padding_end: pair(case, "padding_end"),
        groups: usize_of(case, "groups"),
    };
    s.check().unwrap();
    let what = format!("{isa:?} conv {s:?}");
    let (x, w, r) = (floats(case, "x"), floats(case, "weight"), floats(case, "r"));
    let bias = case.get("bias").map(|_| floats(case, "bias"));
    let mut out = vec![0f32; s.output_len()];
    conv2d_forward(&s, &x, &w, bias.as_deref(), &mut out);
    close(&format!("{what} out"), &out, &floats(case, "out"));
    let mut dx = vec![0f32; s.input_len()];
    let mut dw = vec![0f32; s.weight_len()];
    let mut db = vec![0f32; s.out_channels];
    conv2d_backward(
        &s,
        &x,
        &w,
        &r,
        ConvGrads {
            input: Some(&mut dx),
            weight: Some(&mut dw),
            bias: bias.is_some().then_some(&mut db[..]),
        },
    );
    close(&format!("{what} dx"), &dx, &floats(case, "dx"));
    close(&format!("{what} dweight"), &dw, &floats(case, "dweight"));
    if bias.is_some() {
        close(&format!("{what} dbias"), &db, &floats(case, "dbias"));
    }
}

fn norm(case: &Value) {
    let [batch, channels, h, w] = shape4(case);
    let s = NormShape {
        batch,
        channels,
        spatial: h * w,
    };
    let act = match case["activation"].as_str().unwrap() {
        "identity" => Activation::Identity,
        "relu" => Activation::Relu,
        "relu6" => Activation::Relu6,
        other => panic!("activation {other}"),
    };
    let eps = case["epsilon"].as_f64().unwrap();
    let (x, gamma, beta, r) = (
        floats(case, "x"),
        floats(case, "gamma"),
        floats(case, "beta"),
        floats(case, "r"),
    );
    let mut y = vec![0f32; s.len()];
    let (mean, var) = batch_norm_train_forward(&s, &x, &gamma, &beta, None, eps, act, &mut y);
    close("batch_norm out", &y, &floats(case, "out"));
    close("batch_norm mean", &mean, &floats(case, "mean"));
    close("batch_norm var", &var, &floats(case, "var"));
    // The output gradient r, overwritten with dx.
    let mut dx = r.clone();
    let (dgamma, dbeta) =
        batch_norm_train_backward(&s, &x, &y, &gamma, &mean, &var, eps, act, &mut dx, None);
    close("batch_norm dx", &dx, &floats(case, "dx"));
    close("batch_norm dgamma", &dgamma, &floats(case, "dgamma"));
    close("batch_norm dbeta", &dbeta, &floats(case, "dbeta"));
}

fn pool(case: &Value) {
    let [n, c, h, w] = shape4(case);
    let (k, st, p) = (
        usize_of(case, "kernel"),
        usize_of(case, "stride"),
        usize_of(case, "padding"),
    );
    let s = PoolShape {
        planes: n * c,
        in_h: h,
        in_w: w,
        kernel: [k, k],
        stride: [st, st],
        padding: [p, p],
    };
    let relu = case["relu"].as_bool().unwrap();
    let x = floats(case, "x");
    let mut y = vec![0f32; s.output_len()];
    let arg = max_pool2d_forward(&s, &x, relu, &mut y);
    close("max_pool out", &y, &floats(case, "out"));
    let mut dx = vec![0f32; x.len()];
    max_pool2d_backward(&s, &floats(case, "r"), &y, &arg, relu, &mut dx);
    close("max_pool dx", &dx, &floats(case, "dx"));
}

#[test]
fn kernels_match_pytorch_on_every_instruction_set() {
    let cases = cases();
    assert!(cases.len() >= 15);
    on_each_available(|isa| {
        for case in &cases {
            match case["kind"].as_str().unwrap() {
                "conv2d" => conv(case, isa),
                "batch_norm" => norm(case),
                "max_pool2d" => pool(case),
                other => panic!("unknown case {other}"),
            }
        }
    });
}
