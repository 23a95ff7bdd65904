//! The fuzz targets: each one of nabla's readers of untrusted bytes, driven
//! through the same function the commands use, and its seed corpus.

use std::io::Read;
use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// One reader of untrusted bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The graph language: parsed, compiled, evaluated, differentiated,
    /// checked by finite differences and drawn, as `nabla graph` does.
    Graph,
    /// `mlp train --data FILE.csv`: the CSV reader, the first column as target.
    Csv,
    /// Image decoding and resizing, as training and `data inspect` decode.
    Image,
    /// The restricted pickle reader of torch checkpoints.
    Pickle,
    /// torch's legacy (pre-1.6) `.pth` format.
    Pth,
    /// torch's zip `.pth` and zip archives (wheels) holding one.
    Zip,
    /// `.safetensors` weights.
    Safetensors,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Graph,
        Target::Csv,
        Target::Image,
        Target::Pickle,
        Target::Pth,
        Target::Zip,
        Target::Safetensors,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Graph => "graph",
            Target::Csv => "csv",
            Target::Image => "image",
            Target::Pickle => "pickle",
            Target::Pth => "pth",
            Target::Zip => "zip",
            Target::Safetensors => "safetensors",
        }
    }

    /// Runs the reader on `input`; true when it accepted it. Errors are the
    /// expected outcome of most inputs; what must never happen is a panic,
    /// a hang or an unbounded allocation.
    pub fn run(self, input: &[u8]) -> bool {
        match self {
            Target::Graph => {
                let Ok(text) = std::str::from_utf8(input) else {
                    return false;
                };
                let Ok(program) = nabla_graph::Program::compile(text, &[], None) else {
                    return false;
                };
                let Ok(eval) = program.evaluate() else {
                    return false;
                };
                let report =
                    nabla_graph::report::GraphReport::new("fuzz", &program, &eval, true, true);
                let drawn = nabla_graph::render::to_svg(&program, &eval);
                report.is_ok() && drawn.is_ok()
            }
            Target::Csv => {
                let Ok(text) = std::str::from_utf8(input) else {
                    return false;
                };
                let target = text.split([',', '\n']).next().unwrap_or("").trim();
                nabla_dense::data::parse_csv(text, "fuzz.csv", target).is_ok()
            }
            Target::Image => nabla_vision::decode::decode_resized_bytes(input, 16).is_ok(),
            Target::Pickle => nabla_vision::pickle::read(input).is_ok(),
            Target::Pth | Target::Zip => {
                nabla_vision::weights::read_state_dict_bytes(Path::new("fuzz.pth"), input).is_ok()
            }
            Target::Safetensors => {
                nabla_vision::weights::read_state_dict_bytes(Path::new("fuzz.safetensors"), input)
                    .is_ok()
            }
        }
    }

    /// Words of the format that byte mutations rarely make.
    pub fn tokens(self) -> &'static [&'static [u8]] {
        match self {
            Target::Graph => &[
                b"(",
                b")",
                b" = ",
                b"\n",
                b"sigmoid(",
                b"exp(",
                b"log(",
                b"tanh(",
                b"relu(",
                b"sqrt(",
                b"^",
                b" * ",
                b" / ",
                b" - ",
                b" + ",
                b"1e308",
                b"-0",
                b"0",
                b"x",
                b"#",
                b",",
                b"output ",
                b"input ",
                b"nan",
                b"inf",
                b"((((((((",
            ],
            Target::Csv => &[
                b",", b"\n", b"\"", b"\"\"", b"nan", b"inf", b"-", b"1e999", b"\r\n", b",,",
                b"species", b"\xff",
            ],
            Target::Pickle | Target::Pth | Target::Zip => &[
                b"\x80\x02",
                b"c",
                b"torch._utils\n_rebuild_tensor_v2\n",
                b"collections\nOrderedDict\n",
                b"X\x05\x00\x00\x00",
                b"K\x00",
                b"M\xff\xff",
                b"J\xff\xff\xff\x7f",
                b"(",
                b"t",
                b"R",
                b"q\x00",
                b"h\x00",
                b"}",
                b"]",
                b"e",
                b"s",
                b"u",
                b".",
            ],
            Target::Safetensors => &[
                b"\"dtype\":\"F32\"",
                b"\"shape\":[",
                b"\"data_offsets\":[",
                b"4611686018427387904",
                b"]",
                b"}",
                b"{",
                b",",
                b"\"__metadata__\":{}",
                b"\"F16\"",
                b"\"BF16\"",
                b"\"I64\"",
            ],
            Target::Image => &[
                b"\xff\xd8\xff",
                b"\xff\xd9",
                b"IHDR",
                b"IDAT",
                b"IEND",
                b"VP8L",
                b"GIF89a",
            ],
        }
    }
}

/// The real files each target starts from: the repository's fixtures and
/// examples, and small images of every format and colour type made here.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../vision/tests/fixtures/");
    let fixture = |name: &str| {
        std::fs::read(format!("{FIXTURES}{name}")).expect("the fixture is in the repository")
    };
    match target {
        Target::Graph => [
            include_str!("../../../examples/graphs/sheet-problem1.graph"),
            include_str!("../../../examples/graphs/shared-nodes.graph"),
            include_str!("../../../examples/graphs/sigmoid-neuron.graph"),
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect(),
        Target::Csv => {
            // The bundled penguins' species and numeric columns, complete rows.
            let penguins = include_str!("../../dense/data/penguins.csv");
            let mut lines = penguins.lines();
            let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
            let keep: Vec<usize> = header
                .iter()
                .enumerate()
                .filter(|(_, h)| **h == "species" || h.ends_with("_mm") || h.ends_with("_g"))
                .map(|(i, _)| i)
                .collect();
            let row = |fields: &[&str]| {
                keep.iter()
                    .map(|&i| fields[i])
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut head = row(&header) + "\n";
            for line in lines.step_by(6) {
                let fields: Vec<&str> = line.split(',').collect();
                if fields.len() == header.len() && !keep.iter().any(|&i| fields[i] == "NA") {
                    head += &(row(&fields) + "\n");
                }
            }
            vec![
                head.into_bytes(),
                b"label,a,b\nx,1,2\ny,3,4\nx,5,6\ny,7,8\n".to_vec(),
            ]
        }
        Target::Image => images(),
        Target::Pickle => {
            let zip = fixture("small_state_dict.pth");
            let mut archive =
                zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip fixture");
            let name = archive
                .file_names()
                .find(|n| n.ends_with("data.pkl"))
                .expect("a torch zip has data.pkl")
                .to_string();
            let mut pickle = Vec::new();
            archive
                .by_name(&name)
                .and_then(|mut f| f.read_to_end(&mut pickle).map_err(Into::into))
                .expect("data.pkl reads");
            vec![pickle]
        }
        Target::Pth => vec![fixture("small_state_dict_legacy.pth")],
        Target::Zip => vec![
            fixture("small_state_dict.pth"),
            fixture("small_state_dict_legacy.zip"),
        ],
        Target::Safetensors => vec![fixture("small_state_dict.safetensors")],
    }
}

/// 12×10 pictures in every format nabla decodes, in RGB, RGBA, grey and
/// palette, and a JPEG with an EXIF orientation.
fn images() -> Vec<Vec<u8>> {
    let rgb = RgbImage::from_fn(12, 10, |x, y| Rgb([(x * 20) as u8, (y * 25) as u8, 128]));
    let rgba = RgbaImage::from_fn(12, 10, |x, y| {
        Rgba([(x * 20) as u8, 90, (y * 25) as u8, (x * y) as u8])
    });
    let encode = |image: &DynamicImage, format: ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, format)
            .expect("small images encode");
        out.into_inner()
    };
    let rgb = DynamicImage::ImageRgb8(rgb);
    let mut seeds = vec![
        encode(&rgb, ImageFormat::Png),
        encode(&DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png),
        encode(&rgb.grayscale(), ImageFormat::Png),
        encode(&rgb, ImageFormat::Jpeg),
        encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::WebP),
        encode(&rgb, ImageFormat::Gif),
        encode(&rgb, ImageFormat::Bmp),
    ];
    seeds.push(palette_png());
    seeds.push(jpeg_with_orientation(&seeds[3], 6));
    seeds
}

/// A 2×1 palette PNG (red, green): `image` writes direct colour only.
fn palette_png() -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, 2, 1);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(vec![255, 0, 0, 0, 255, 0]);
    let mut writer = encoder.write_header().expect("a palette header");
    writer.write_image_data(&[0, 1]).expect("two indices");
    writer.finish().expect("the PNG ends");
    out
}

/// `jpeg` with an EXIF APP1 segment giving `orientation`, after its SOI.
fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are real inputs: each reader takes its own without error.
    #[test]
    fn every_seed_is_read_by_its_reader() {
        for target in Target::ALL {
            let seeds = seeds(target);
            assert!(!seeds.is_empty());
            for (i, seed) in seeds.iter().enumerate() {
                assert!(target.run(seed), "{} seed {i} is not read", target.name());
            }
        }
    }
}
