//! EfficientNet-Lite0 against the PyTorch reference in
//! tools/gen_efficientnet_fixtures.py, and the real ImageNet weights on two
//! photos.

mod common;
mod parity;

use burn::tensor::Device;
use nabla_dense::NumpyRandom;
use nabla_vision::efficientnet::{EfficientNetConfig, LiteNames};
use nabla_vision::model::Architecture;
use nabla_vision::pretrained::{
    classify_imagenet, imagenet_classes, import_efficientnet_lite0, EFFICIENTNET_LITE0_FILE,
};
use nabla_vision::weights::{load_into, StateDict};
use parity::{fixture, fixture_weights, json, largest_logit_difference};

#[test]
fn efficientnet_lite0_logits_match_the_pytorch_reference_on_the_same_weights() {
    let fx = json("efficientnet_lite0_parity.json");
    let mut rng = NumpyRandom::new(7);
    let dict: StateDict = fixture_weights(&fx, &mut rng).into_iter().collect();
    let device = Device::flex();
    let model = EfficientNetConfig::new(10).init(&device);
    let model = load_into(model, &dict, &LiteNames, &[], "fixture").unwrap();
    let worst = largest_logit_difference(&fx, &mut rng, &device, |x| model.forward(x));
    eprintln!("EfficientNet-Lite0 parity: largest logit difference {worst:e}");
    assert!(worst <= 1e-4, "largest logit difference {worst:e}");
}

#[test]
fn importing_a_file_that_is_not_efficientnet_lite0_lists_what_is_missing() {
    let out = tempfile::tempdir().unwrap();
    let err = import_efficientnet_lite0(&fixture("small_state_dict_legacy.pth"), out.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("small_state_dict_legacy.pth: the weights do not fit"),
        "{err}"
    );
    assert!(
        err.contains("_blocks.15._project_conv.weight [320, 1152, 1, 1]"),
        "{err}"
    );
    assert!(!out.path().join(EFFICIENTNET_LITE0_FILE).exists());
}

fn imported_weights() -> Option<std::path::PathBuf> {
    common::published_weights(EFFICIENTNET_LITE0_FILE, "efficientnet-lite0")
}

#[test]
fn the_imagenet_weights_see_a_cat_and_an_espresso() {
    let Some(weights) = imported_weights() else {
        return;
    };
    let reference = json("efficientnet_lite0_imagenet.json");
    let classes = imagenet_classes();
    assert_eq!(classes.len(), 1000);
    let images = [fixture("chelsea.jpg"), fixture("coffee.jpg")];
    let top =
        classify_imagenet(Architecture::EfficientNetLite0, &weights, &images, 224, 5).unwrap();
    for ((name, ranked), expected) in ["chelsea", "coffee"].iter().zip(&top).zip([
        ["Egyptian cat", "tabby", "tiger cat"],
        ["espresso", "cup", "coffee mug"],
    ]) {
        let named: Vec<(&str, f32)> = ranked.iter().map(|&(i, p)| (classes[i], p)).collect();
        let want = &reference["images"][name][0];
        eprintln!("{name}: {named:?}; PyTorch reference top-1 {want}");
        assert!(expected.contains(&named[0].0), "{name}: {named:?}");
        assert_eq!(named[0].0, want[1].as_str().unwrap(), "{name}");
        let p_ref = want[2].as_f64().unwrap();
        assert!(
            (f64::from(named[0].1) - p_ref).abs() < 0.1,
            "{name}: top-1 probability {} vs PyTorch's {p_ref}",
            named[0].1
        );
    }
}
