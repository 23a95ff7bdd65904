//! nabla's MTCNN networks against facenet-pytorch's PNet, RNet and ONet on
//! the same weights and inputs (tools/gen_mtcnn_fixtures.py): every output
//! within 1e-4 of PyTorch's, relative to the output's largest value.

mod common;

use nabla_dense::NumpyRandom;
use nabla_vision::mtcnn::{Maps, Net, Stage};
use nabla_vision::weights::{NamedTensor, StateDict};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mtcnn_parity.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn flat(v: &serde_json::Value, out: &mut Vec<f64>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flat(i, out)),
        n => out.push(n.as_f64().unwrap()),
    }
}

/// The generator's scaling of tools/gen_mtcnn_fixtures.py.
fn scaled(name: &str, shape: &[usize], v: Vec<f64>) -> Vec<f32> {
    let fan_in: usize = shape[1..].iter().product();
    v.into_iter()
        .map(|x| {
            if name.ends_with("bias") {
                0.1 * x
            } else if name.starts_with("prelu") {
                0.25 + 0.05 * x
            } else {
                x * (2.0 / fan_in as f64).sqrt()
            }
        })
        .map(|x| x as f32)
        .collect()
}

fn close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0f64, f64::max);
    eprintln!("{what}: worst difference {:e} of {scale:e}", worst);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: {worst:e} against a scale of {scale:e}"
    );
}

/// Runs `net` on its next input from `rng` (the fixture's shape for it)
/// and compares every output with the fixture's `outputs` for it:
/// offsets, then O-Net's landmarks, then the probabilities.
fn check_against(net: &Net, fx: &serde_json::Value, rng: &mut NumpyRandom, label: &str) {
    let name = net.stage.name();
    let shape = usizes(&fx["input_shapes"][name]);
    let data: Vec<f32> = rng
        .randn_vec(shape.iter().product())
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let x = Maps {
        n: shape[0],
        c: shape[1],
        h: shape[2],
        w: shape[3],
        data,
    };
    let out = net.forward(&x).unwrap();
    let want = |i: usize| {
        let mut v = Vec::new();
        flat(&fx["outputs"][name][i], &mut v);
        v
    };
    close(&format!("{label}{name} offsets"), &out.offsets, &want(0));
    let last = if net.stage == Stage::O {
        close(
            &format!("{label}{name} landmarks"),
            &out.landmarks,
            &want(1),
        );
        2
    } else {
        1
    };
    close(
        &format!("{label}{name} probabilities"),
        &out.probabilities,
        &want(last),
    );
}

#[test]
fn the_three_networks_match_facenet_pytorch() {
    let fx = fixture();
    let mut rng = NumpyRandom::new(fx["seed"].as_u64().unwrap() as u32);
    let nets: Vec<Net> = Stage::ALL
        .iter()
        .map(|&stage| {
            let dict: StateDict = fx["keys"][stage.name()]
                .as_array()
                .unwrap()
                .iter()
                .map(|key| {
                    let name = key[0].as_str().unwrap().to_string();
                    let shape = usizes(&key[1]);
                    let data = scaled(&name, &shape, rng.randn_vec(shape.iter().product()));
                    (name, NamedTensor { shape, data })
                })
                .collect();
            Net::from_dict(stage, dict, "fixture").unwrap()
        })
        .collect();
    for net in &nets {
        check_against(net, &fx, &mut rng, "");
    }
}

/// A network's tensors, all zero, in their right shapes.
fn zeros(stage: Stage) -> StateDict {
    stage
        .parameters()
        .into_iter()
        .map(|(name, shape)| {
            let data = vec![0.0; shape.iter().product()];
            (name, NamedTensor { shape, data })
        })
        .collect()
}

#[test]
fn misshapen_weights_are_refused_by_name() {
    let mut dict = zeros(Stage::P);
    dict.insert(
        "conv2.weight".into(),
        NamedTensor {
            shape: vec![16, 11, 3, 3],
            data: vec![0.0; 16 * 11 * 9],
        },
    );
    let e = Net::from_dict(Stage::P, dict, "pnet.pt")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pnet.pt") && e.contains("`conv2.weight` has shape [16, 11, 3, 3]"),
        "{e}"
    );
    let mut short = zeros(Stage::P);
    short.remove("prelu3.weight");
    let e = Net::from_dict(Stage::P, short, "pnet.pt")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tensor `prelu3.weight`"), "{e}");
    let mut extra = zeros(Stage::O);
    extra.insert(
        "dense7.weight".into(),
        NamedTensor {
            shape: vec![1],
            data: vec![0.0],
        },
    );
    let e = Net::from_dict(Stage::O, extra, "onet.pt")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unexpected tensor `dense7.weight`"), "{e}");
    // A crop of the wrong size is an error, not a panic.
    let net = Net::from_dict(Stage::R, zeros(Stage::R), "rnet.pt").unwrap();
    let x = Maps {
        n: 1,
        c: 3,
        h: 20,
        w: 24,
        data: vec![0.0; 3 * 20 * 24],
    };
    let e = net.forward(&x).unwrap_err().to_string();
    assert!(e.contains("rnet takes 3 × 24 × 24"), "{e}");
}

fn imported_weights() -> Option<std::path::PathBuf> {
    common::published_weights(nabla_vision::mtcnn::MTCNN_FILE, "mtcnn")
}

/// The wheel's weights, imported by nabla (restricted pickle reader, names
/// and shapes checked, safetensors written and read back), give
/// facenet-pytorch's outputs.
#[test]
fn the_published_weights_give_facenet_pytorchs_outputs() {
    let Some(path) = imported_weights() else {
        return;
    };
    let mtcnn = nabla_vision::mtcnn::Mtcnn::load(&path).unwrap();
    let fx = &fixture()["pretrained"];
    let mut rng = NumpyRandom::new(fx["seed"].as_u64().unwrap() as u32);
    for net in [&mtcnn.pnet, &mtcnn.rnet, &mtcnn.onet] {
        check_against(net, fx, &mut rng, "published ");
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

/// nabla's faces on `planes` against facenet-pytorch's `boxes` (x1, y1,
/// x2, y2, score) and `points`: as many faces; each of facenet's matched by
/// the one of nabla's that overlaps it most, no face matched twice; boxes
/// with IoU ≥ 0.99 and corners and landmarks within 1e-3 of the image's
/// longer side, scores within 1e-4.
fn same_detections(what: &str, planes: &nabla_vision::detect::Planes, fx: &serde_json::Value) {
    use nabla_vision::detect::{detect, DetectConfig};
    let path = imported_weights().expect("checked by the caller");
    let mtcnn = nabla_vision::mtcnn::Mtcnn::load(&path).unwrap();
    let faces = detect(&mtcnn, planes, &DetectConfig::default()).unwrap();
    let boxes = fx["boxes"].as_array().unwrap();
    let points = fx["points"].as_array().unwrap();
    assert_eq!(
        faces.len(),
        boxes.len(),
        "{what}: {faces:?} against {boxes:?}"
    );
    let tol = 1e-3 * planes.w.max(planes.h) as f64;
    let mut used = vec![false; faces.len()];
    for (b, p) in boxes.iter().zip(points) {
        let want: [f64; 4] = std::array::from_fn(|k| b[k].as_f64().unwrap());
        let (i, face) = faces
            .iter()
            .enumerate()
            .max_by(|x, y| {
                let o = |f: &nabla_vision::detect::Face| iou(f.bbox.map(f64::from), want);
                o(x.1).total_cmp(&o(y.1))
            })
            .unwrap();
        let overlap = iou(face.bbox.map(f64::from), want);
        eprintln!(
            "{what}: face {:?} score {} against {b:?}: IoU {overlap:.5}",
            face.bbox, face.score
        );
        assert!(
            !used[i],
            "{what}: two of facenet's faces match nabla's face {i}"
        );
        used[i] = true;
        assert!(overlap >= 0.99, "{what}: IoU {overlap} with {want:?}");
        for (k, (&got, &want)) in face.bbox.iter().zip(&want).enumerate() {
            assert!(
                (got as f64 - want).abs() <= tol,
                "{what}: box {k}: {got} against {want}"
            );
        }
        let score = b[4].as_f64().unwrap();
        assert!(
            (face.score as f64 - score).abs() <= 1e-4,
            "{what}: score {} against {score}",
            face.score
        );
        for (m, mark) in face.landmarks.iter().enumerate() {
            for (j, &v) in mark.iter().enumerate() {
                let want = p[m][j].as_f64().unwrap();
                assert!(
                    (v as f64 - want).abs() <= tol,
                    "{what}: landmark {m}.{j}: {v} against {want}"
                );
            }
        }
    }
}

/// Whole detections: facenet-pytorch's `detect_face` with its defaults on
/// scikit-image's astronaut (192 × 192).
#[test]
fn detections_match_facenet_pytorch_on_the_astronaut() {
    if imported_weights().is_none() {
        return;
    }
    let png = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/astronaut192.png"
    );
    let img = image::open(png).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    let planes = nabla_vision::detect::Planes::from_rgb(h as usize, w as usize, img.as_raw());
    same_detections("astronaut", &planes, &fixture()["detections"]);
}

/// The face-mask photos: `$NABLA_FACE_MASK`, else `../shared/data/face-mask`
/// beside the workspace; the photos are never committed, so without them
/// the scene test is skipped with a note (`.ci/run` points it at the copy
/// on the machine when there is one).
fn face_mask_folder() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("NABLA_FACE_MASK")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/face-mask")
        });
    if dir.join("with_mask").is_dir() {
        return Some(dir);
    }
    eprintln!(
        "skipped: no face-mask photos at {} (NABLA_FACE_MASK)",
        dir.display()
    );
    None
}

/// Scenes of face-mask photos (PNGs, RGB and RGBA) pasted at their own
/// size on grey, composed as tools/gen_mtcnn_fixtures.py composed them:
/// facenet-pytorch's faces.
#[test]
fn detections_match_facenet_pytorch_on_scenes_of_face_mask_photos() {
    if imported_weights().is_none() {
        return;
    }
    let Some(folder) = face_mask_folder() else {
        return;
    };
    for (s, scene) in fixture()["scenes"].as_array().unwrap().iter().enumerate() {
        let size = usizes(&scene["size"]);
        let (w, h) = (size[0], size[1]);
        let grey = scene["background"].as_u64().unwrap() as u8;
        let mut canvas = image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([grey; 3]));
        for photo in scene["photos"].as_array().unwrap() {
            let file = folder.join(photo["file"].as_str().unwrap());
            let img = nabla_vision::decode::decode(&file).unwrap().to_rgb8();
            assert_eq!(
                [img.width() as usize, img.height() as usize],
                usizes(&photo["size"])[..],
                "{}",
                file.display()
            );
            // PNGs: the same pixels as PIL decoded, so the same scene.
            let sum: u64 = img.as_raw().iter().map(|&v| u64::from(v)).sum();
            let want = photo["pixel_sum"].as_u64().unwrap();
            assert_eq!(sum, want, "{}: not the fixture's pixels", file.display());
            let at = usizes(&photo["at"]);
            image::imageops::replace(&mut canvas, &img, at[0] as i64, at[1] as i64);
        }
        let planes = nabla_vision::detect::Planes::from_rgb(h, w, canvas.as_raw());
        same_detections(&format!("scene {s}"), &planes, scene);
    }
}
