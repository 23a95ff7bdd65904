//! `nabla weights` and `--pretrained` argument errors.

mod common;
use common::*;

#[test]
fn unknown_weights_and_misused_pretrained_are_usage_errors() {
    let o = nabla(&["weights", "download", "vgg11"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected resnet34, efficientnet-lite0 or mtcnn"),
        "{}",
        stderr(&o)
    );
    // MTCNN's import takes facenet-pytorch's wheel, and says so.
    let dir = temp_dir("weights-mtcnn");
    let not_a_wheel = dir.join("facenet.whl");
    std::fs::write(&not_a_wheel, b"not a zip").unwrap();
    let o = nabla(&[
        "weights",
        "import",
        "mtcnn",
        not_a_wheel.to_str().unwrap(),
        "--out",
        dir.join("w").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("facenet.whl")
            && stderr(&o).contains("expected facenet-pytorch 2.6.0's wheel"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.join("w/mtcnn.safetensors").exists());

    let o = nabla(&[
        "vision",
        "train",
        "--model",
        "cnn",
        "--pretrained",
        "resnet34.pth",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--pretrained, --freeze-backbone and --backbone-lr-mult need --model resnet34 or efficientnet-lite0"),
        "{}",
        stderr(&o)
    );

    let root = temp_dir("weights");
    image_folder(&root.join("data"));
    let missing = root.join("missing.pth");
    let o = nabla(&[
        "vision",
        "train",
        "--model",
        "resnet34",
        "--image-size",
        "32",
        "--data",
        root.join("data").to_str().unwrap(),
        "--pretrained",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.pth"), "{}", stderr(&o));
}
