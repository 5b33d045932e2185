//! Exported generators against independent references: `onnx.checker.check_model(full_check=True)`
//! and onnxruntime (Python) must accept every file and give candle's images (max abs diff
//! ≤ 1e-4) for batch sizes 1 and 5 with one file; each file has the IR version ONNX pairs with
//! its opset (8 for 13–18, 9 for 19–20, 10 for 21). Needs the project's test environment:
//! `eval "$(scripts/test-env.sh)"` (fails, never skips, without it).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use wgan_export::{candle_images, export_onnx, BatchDim, BuildOptions, ExportOptions, TOLERANCE};
use wgan_models::latent::latents;
use wgan_models::Generator;

/// Checks every model, runs onnxruntime on every input listed in `manifest.json`, writes the
/// outputs as raw f32, and checks the test-data sets with onnxruntime too.
const SCRIPT: &str = r#"
import json, sys, os
import numpy as np
import onnx, onnxruntime as ort
from onnx import numpy_helper

jobs = json.load(open(sys.argv[1]))
for job in jobs:
    path = job["model"]
    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path)
    assert m.ir_version == job["ir_version"], (m.ir_version, job["ir_version"])
    assert [(o.domain, o.version) for o in m.opset_import] == [("", job["opset"])], m.opset_import
    meta = {p.key: p.value for p in m.metadata_props}
    for k, v in job["metadata"].items():
        assert meta.get(k) == v, (k, meta.get(k), v)
    assert meta["wgan.producer"].startswith("wgan-export "), meta
    [inp], [out] = m.graph.input, m.graph.output
    assert (inp.name, out.name) == ("z", "image")
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert dims(inp) == job["input_dims"], dims(inp)
    assert dims(out) == job["output_dims"], dims(out)
    ops = sorted({n.op_type for n in m.graph.node})
    assert set(ops) <= {"ConvTranspose", "BatchNormalization", "Relu", "Tanh"}, ops
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for run in job["runs"]:
        z = np.fromfile(run["z"], dtype="<f4").reshape(run["shape"])
        (img,) = sess.run(["image"], {"z": z})
        assert img.dtype == np.float32 and list(img.shape[:2]) == [run["shape"][0], job["output_dims"][1]], img.shape
        img.astype("<f4").tofile(run["out"])
    if job.get("test_data"):
        d = job["test_data"]
        z = numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "input_0.pb")))
        want = numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "output_0.pb")))
        (img,) = sess.run(None, {"z": z})
        diff = float(np.abs(img - want).max())
        assert diff <= 1e-4, diff
        print(f"test_data {path}: onnxruntime vs output_0.pb {diff:.2e}")
    print(f"checked {path}: {ops}")
"#;

struct Case {
    label: String,
    model: PathBuf,
    generator_index: usize,
    opset: i64,
    batch: BatchDim,
    runs: Vec<(u64, usize)>,
    test_data: Option<PathBuf>,
}

fn run_python(dir: &Path, manifest: &serde_json::Value) {
    let script = dir.join("check.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let manifest_path = dir.join("manifest.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(manifest).unwrap(),
    )
    .unwrap();
    let out = Command::new(python())
        .arg(&script)
        .arg(&manifest_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python checker/onnxruntime failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

#[test]
fn checker_and_onnxruntime_match_candle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let presets = [
        ("tiny", 1usize, 11u64),
        ("small", 3, 12),
        ("dcgan64", 3, 13),
    ];
    let mut generators: Vec<Generator> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    for (gi, &(name, channels, seed)) in presets.iter().enumerate() {
        let ckpt = dir.join(format!("ckpt-{name}"));
        generators.push(make_checkpoint(&ckpt, name, channels, seed));
        // Default export (folded BatchNorm, symbolic batch): batch sizes 1 and 5 with one file,
        // plus the test-data set.
        let model_dir = dir.join(format!("model-{name}"));
        std::fs::create_dir_all(&model_dir).unwrap();
        let out = model_dir.join("model.onnx");
        let mut options = ExportOptions::new(&out);
        options.test_data = true;
        let report = export_onnx(&ckpt, &options).unwrap();
        cases.push(Case {
            label: format!("{name} folded"),
            model: out,
            generator_index: gi,
            opset: 17,
            batch: BatchDim::Dynamic,
            runs: vec![(1, 1), (2, 5)],
            test_data: report.test_data,
        });
        // BatchNorm kept as nodes.
        let out = dir.join(format!("{name}-keep-bn.onnx"));
        let options = ExportOptions {
            build: BuildOptions {
                fold_bn: false,
                ..Default::default()
            },
            ..ExportOptions::new(&out)
        };
        export_onnx(&ckpt, &options).unwrap();
        cases.push(Case {
            label: format!("{name} kept BN"),
            model: out,
            generator_index: gi,
            opset: 17,
            batch: BatchDim::Dynamic,
            runs: vec![(1, 1), (2, 5)],
            test_data: None,
        });
    }
    // Other opsets and a fixed batch, on the tiny preset.
    for (opset, batch) in [
        (13, BatchDim::Dynamic),
        (19, BatchDim::Dynamic),
        (21, BatchDim::Dynamic),
        (17, BatchDim::Fixed(5)),
    ] {
        let out = dir.join(format!("tiny-opset{opset}-{batch:?}.onnx"));
        let options = ExportOptions {
            build: BuildOptions {
                opset,
                batch,
                fold_bn: true,
            },
            ..ExportOptions::new(&out)
        };
        export_onnx(&dir.join("ckpt-tiny"), &options).unwrap();
        let runs = if batch == BatchDim::Dynamic {
            vec![(1, 1), (2, 5)]
        } else {
            vec![(2, 5)]
        };
        cases.push(Case {
            label: format!("tiny opset {opset} batch {batch}"),
            model: out,
            generator_index: 0,
            opset,
            batch,
            runs,
            test_data: None,
        });
    }

    // Candle references and the manifest.
    let mut expected: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut jobs = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let g = &mut generators[case.generator_index];
        let (name, channels, _) = presets[case.generator_index];
        let p = wgan_models::preset(name, channels).unwrap();
        let batch_dim = match case.batch {
            BatchDim::Dynamic => serde_json::json!("N"),
            BatchDim::Fixed(n) => serde_json::json!(n),
        };
        let mut runs = Vec::new();
        let mut refs = Vec::new();
        for (ri, &(seed, n)) in case.runs.iter().enumerate() {
            let z = latents(seed, n, p.z_dim);
            let zp = dir.join(format!("z-{ci}-{ri}.f32"));
            write_f32(&zp, &z);
            refs.push(candle_images(g, &z, n).unwrap());
            runs.push(serde_json::json!({
                "z": zp, "shape": [n, p.z_dim, 1, 1], "out": dir.join(format!("ort-{ci}-{ri}.f32")),
            }));
        }
        expected.push(refs);
        jobs.push(serde_json::json!({
            "model": case.model,
            "opset": case.opset,
            // As ONNX pairs them; written out here, not taken from the exporter.
            "ir_version": match case.opset { 13..=18 => 8, 19 | 20 => 9, 21 => 10, o => panic!("opset {o}") },
            "input_dims": [batch_dim, p.z_dim, 1, 1],
            "output_dims": [batch_dim, p.channels, p.image_size, p.image_size],
            "metadata": {
                "wgan.z_dim": p.z_dim.to_string(),
                "wgan.channels": p.channels.to_string(),
                "wgan.image_size": p.image_size.to_string(),
                "wgan.preset": name,
                "wgan.step": "1234",
                "wgan.dataset": "synthetic test data",
                "wgan.output_range": "-1,1",
                "wgan.latent": "xoshiro256++/splitmix64 box-muller v1",
            },
            "runs": runs,
            "test_data": case.test_data,
        }));
    }
    run_python(dir, &serde_json::Value::Array(jobs));

    let mut worst = 0f32;
    for (ci, case) in cases.iter().enumerate() {
        for (ri, &(_, n)) in case.runs.iter().enumerate() {
            let got = read_f32(&dir.join(format!("ort-{ci}-{ri}.f32")));
            let want = &expected[ci][ri];
            assert_eq!(got.len(), want.len(), "{}: batch {n}", case.label);
            let diff = wgan_export::verify::max_abs_diff(&got, want);
            let (_, std) = mean_std(want);
            println!("onnxruntime vs candle, {:<28} batch {n}: max abs diff {diff:.2e} (image std {std:.3})", case.label);
            assert!(
                std > 0.02,
                "{}: candle's images are nearly constant (std {std}): a weak test",
                case.label
            );
            assert!(
                diff <= TOLERANCE,
                "{}: batch {n}: onnxruntime differs from candle by {diff}",
                case.label
            );
            worst = worst.max(diff);
        }
    }
    println!("worst onnxruntime vs candle: {worst:.2e}");
}
