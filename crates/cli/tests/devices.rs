//! `--device` tells the truth: `nabla devices` lists the backends this
//! build has; without the `wgpu` feature `--device wgpu` is an error naming
//! the feature (exit 2); with it (`.ci/run` builds it and runs this on Mesa's
//! lavapipe, a software Vulkan device), `vision eval` and `vision predict`
//! on wgpu give the CPU's numbers for a model trained on the CPU.

mod common;
use common::*;

#[test]
fn devices_lists_the_backends_of_this_build() {
    let o = nabla(&["devices", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = json(&o);
    let backends = doc.as_array().unwrap();
    let find = |name: &str| {
        backends
            .iter()
            .find(|b| b["device"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {doc}"))
    };
    assert_eq!(find("cpu")["compiled_in"], true);
    assert_eq!(find("wgpu")["compiled_in"], cfg!(feature = "wgpu"));
    assert_eq!(find("cuda")["compiled_in"], cfg!(feature = "cuda"));
    let table = stdout(&nabla(&["devices"]));
    assert!(
        table.contains("--device") && table.contains("wgpu"),
        "{table}"
    );
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_without_the_feature_is_an_error_naming_it() {
    let root = temp_dir("devices-nofeature");
    image_folder(&root.join("data"));
    let run = tiny_run(&root, "cnn-bn");
    let o = nabla(&[
        "vision",
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        root.join("data").to_str().unwrap(),
        "--device",
        "wgpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--features wgpu"), "{}", stderr(&o));
}

#[cfg(feature = "wgpu")]
#[test]
fn eval_and_predict_on_wgpu_give_the_cpus_numbers() {
    let o = nabla(&["devices", "--json"]);
    let doc = json(&o);
    let wgpu = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "wgpu")
        .unwrap()
        .clone();
    eprintln!("wgpu: {wgpu}");
    assert!(
        !wgpu["adapters"].as_array().unwrap().is_empty(),
        "no wgpu adapter: {wgpu}"
    );
    let root = temp_dir("devices-wgpu");
    image_folder(&root.join("data"));
    let run = tiny_run(&root, "cnn-bn");
    let data = root.join("data");
    // No adapter (the Vulkan and EGL loaders pointed at nothing): exit 2
    // naming the cause, not Burn's panic on the first tensor.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args(["vision", "eval", "--checkpoint", run.to_str().unwrap()])
        .args(["--data", data.to_str().unwrap(), "--device", "wgpu"])
        .env("VK_ICD_FILENAMES", "/nonexistent")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no wgpu adapter"), "{}", stderr(&o));
    // Training at the defaults (batch 32, 128 px) on lavapipe, whose long
    // sums are wrong, is refused before the first step (elsewhere the
    // device answers for itself: tools/gpu-check.sh).
    let lavapipe = wgpu["adapters"].as_array().unwrap().iter().all(|a| {
        a["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("llvmpipe"))
    });
    if lavapipe {
        let o = nabla(&[
            "vision",
            "train",
            "--data",
            data.to_str().unwrap(),
            "--model",
            "cnn-bn",
            "--epochs",
            "1",
            "--device",
            "wgpu",
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("long sums"), "{}", stderr(&o));
    }
    let eval = |device: &str| {
        let o = nabla(&[
            "vision",
            "eval",
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--device",
            device,
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{device}: {}", stderr(&o));
        json(&o)
    };
    let (cpu, gpu) = (eval("cpu"), eval("wgpu"));
    eprintln!("eval: cpu {cpu}\n      wgpu {gpu}");
    assert_eq!(cpu["accuracy"], gpu["accuracy"]);
    assert_eq!(cpu["confusion"], gpu["confusion"]);
    let loss = |v: &serde_json::Value| v["loss"].as_f64().unwrap();
    assert!(
        (loss(&cpu) - loss(&gpu)).abs() <= 1e-3,
        "{cpu} against {gpu}"
    );
    let images: Vec<String> = std::fs::read_dir(data.join("dark"))
        .unwrap()
        .take(3)
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let predict = |device: &str| {
        let mut args = vec!["vision", "predict", "--checkpoint", run.to_str().unwrap()];
        args.extend(images.iter().map(String::as_str));
        args.extend(["--device", device, "--json"]);
        let o = nabla(&args);
        assert_eq!(o.status.code(), Some(0), "{device}: {}", stderr(&o));
        json(&o)
    };
    let (cpu, gpu) = (predict("cpu"), predict("wgpu"));
    let (cpu, gpu) = (cpu.as_array().unwrap(), gpu.as_array().unwrap());
    assert_eq!(cpu.len(), images.len());
    for (a, b) in cpu.iter().zip(gpu) {
        assert_eq!(a["class"], b["class"], "{a} against {b}");
        let p = |v: &serde_json::Value| v["probability"].as_f64().unwrap();
        assert!((p(a) - p(b)).abs() <= 1e-3, "{a} against {b}");
    }
}
