//! tract runs exported generators and gives candle's images (max abs diff ≤ 1e-4).

mod common;

use common::*;
use wgan_export::{
    export_onnx, verify_with_tract, BatchDim, BuildOptions, ExportOptions, TOLERANCE,
};

#[test]
fn tract_matches_candle() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, channels, seed) in [("tiny", 1, 21), ("small", 1, 22), ("dcgan64", 3, 23)] {
        let ckpt = tmp.path().join(format!("ckpt-{name}"));
        let mut g = make_checkpoint(&ckpt, name, channels, seed);
        let variants: Vec<(&str, BuildOptions, Vec<usize>)> = vec![
            ("folded", BuildOptions::default(), vec![1, 5]),
            (
                "kept BN",
                BuildOptions {
                    fold_bn: false,
                    ..Default::default()
                },
                vec![1, 5],
            ),
            (
                "fixed batch 5",
                BuildOptions {
                    batch: BatchDim::Fixed(5),
                    ..Default::default()
                },
                vec![5],
            ),
        ];
        for (label, build, batches) in variants {
            if name == "dcgan64" && label == "fixed batch 5" {
                continue; // same graph code as the other variants; keeps the test time modest
            }
            let out = tmp
                .path()
                .join(format!("{name}-{}.onnx", label.replace(' ', "_")));
            export_onnx(
                &ckpt,
                &ExportOptions {
                    build,
                    ..ExportOptions::new(&out)
                },
            )
            .unwrap();
            let report = verify_with_tract(&out, &mut g, 99, &batches).unwrap();
            for (n, diff) in &report.batches {
                println!(
                    "tract vs candle, {name:<8} {label:<14} batch {n}: max abs diff {diff:.2e}"
                );
            }
            assert!(
                report.passed() && report.max_abs_diff <= TOLERANCE,
                "{name} {label}: {report:?}"
            );
        }
    }
}

/// `--verify` through the library: the report is attached and within tolerance.
#[test]
fn export_with_verify_reports_the_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    make_checkpoint(&ckpt, "tiny", 3, 5);
    let out = tmp.path().join("g.onnx");
    let options = ExportOptions {
        verify: true,
        samples: Some(3),
        ..ExportOptions::new(&out)
    };
    let report = export_onnx(&ckpt, &options).unwrap();
    let v = report.verify.expect("verify report");
    assert_eq!(v.batches.iter().map(|b| b.0).collect::<Vec<_>>(), [1, 3]);
    assert!(v.passed(), "{v:?}");
    assert!(out.exists());
}
