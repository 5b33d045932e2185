//! The latent contract's truncation across binaries: a checkpoint's `trainer sample
//! --truncation` and its export's `runtime gen --truncation` draw the same images.

use wgan_gp::run_ok as run;

#[test]
fn trainer_sample_and_runtime_gen_draw_the_same_truncated_images() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    run(
        "trainer",
        &[
            "train",
            "--preset",
            "tiny",
            "--batch-size",
            "16",
            "--n-critic",
            "1",
            "--steps",
            "40",
            "--out",
            "run",
        ],
        d,
    );
    run(
        "export",
        &["onnx", "--checkpoint", "run", "--out", "g.onnx"],
        d,
    );
    let grids: Vec<image::GrayImage> = [
        (
            "trainer",
            vec!["sample", "--checkpoint", "run", "--out", "sample.png"],
        ),
        (
            "runtime",
            vec!["gen", "--model", "g.onnx", "--grid", "gen.png"],
        ),
        (
            "runtime",
            vec!["gen", "--model", "g.onnx", "--grid", "plain.png"],
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (bin, mut args))| {
        args.extend(["--seed", "11", "--n", "9"]);
        if i < 2 {
            args.extend(["--truncation", "0.6"]);
        }
        run(bin, &args, d);
        image::open(
            d.join(
                args[args
                    .iter()
                    .position(|a| *a == "--out" || *a == "--grid")
                    .unwrap()
                    + 1],
            ),
        )
        .unwrap()
        .to_luma8()
    })
    .collect();
    let levels = |a: &image::GrayImage, b: &image::GrayImage| {
        assert_eq!(a.dimensions(), b.dimensions());
        a.pixels()
            .zip(b.pixels())
            .map(|(x, y)| x.0[0].abs_diff(y.0[0]))
            .max()
            .unwrap()
    };
    assert!(
        levels(&grids[0], &grids[1]) <= 1,
        "trainer and runtime agree on truncated latents"
    );
    let changed = levels(&grids[1], &grids[2]);
    assert!(
        changed > 8,
        "truncation at 0.6 changes the images: {changed} levels"
    );
}
