//! `export triton` writes a model repository Triton accepts: `config.pbtxt` is parsed with the
//! `ModelConfig` schema of Triton's own client package (`tritonclient`), and every field is
//! checked against the ONNX model written beside it (read with `onnx`). Nothing here runs
//! Triton itself. Needs the project's test environment: `eval "$(scripts/test-env.sh)"`.

mod common;

use common::*;
use std::process::Command;

const CHECK: &str = r#"
import importlib.util, os, sys
import onnx, tritonclient
from google.protobuf import text_format

spec = importlib.util.spec_from_file_location(
    "model_config_pb2",
    os.path.join(os.path.dirname(tritonclient.__file__), "grpc", "model_config_pb2.py"))
mc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mc)

repo, name, max_batch, preferred, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
config = text_format.Parse(open(os.path.join(repo, name, "config.pbtxt")).read(), mc.ModelConfig())
model = onnx.load(os.path.join(repo, name, "1", "model.onnx"))
onnx.checker.check_model(model, full_check=True)
dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
[inp], [out] = model.graph.input, model.graph.output
assert config.name == name, config.name
assert config.platform == "onnxruntime_onnx", config.platform
assert config.max_batch_size == max_batch, config.max_batch_size
# Triton's batch dimension is the model's symbolic first one; the rest must match exactly.
assert isinstance(dims(inp)[0], str) and isinstance(dims(out)[0], str), (dims(inp), dims(out))
[ci], [co] = config.input, config.output
assert (ci.name, co.name) == (inp.name, out.name), (ci.name, co.name)
assert ci.data_type == mc.TYPE_FP32 and co.data_type == mc.TYPE_FP32
assert list(ci.dims) == dims(inp)[1:], (list(ci.dims), dims(inp))
assert list(co.dims) == dims(out)[1:], (list(co.dims), dims(out))
assert list(config.dynamic_batching.preferred_batch_size) == [int(b) for b in preferred.split(",")]
assert all(b <= max_batch for b in config.dynamic_batching.preferred_batch_size)
assert config.dynamic_batching.max_queue_delay_microseconds > 0
[group] = config.instance_group
assert group.count == 1 and group.kind == getattr(mc.ModelInstanceGroup, kind), group
print("ok", name, list(ci.dims), list(co.dims))
"#;

fn export(args: &[&str]) -> std::process::Output {
    Command::new(binary("export"))
        .arg("triton")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_repository_passes_tritons_own_schema_and_matches_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    make_checkpoint(&ck, "small", 3, 7);
    let repo = tmp.path().join("repo");
    for (name, extra, preferred, kind) in [
        ("wgan_generator", vec![], "8,16,32,64", "KIND_CPU"),
        (
            "gen-gpu",
            vec![
                "--gpu",
                "--max-batch-size",
                "16",
                "--preferred-batch-sizes",
                "4,16",
            ],
            "4,16",
            "KIND_GPU",
        ),
    ] {
        let mut args = vec![
            "--checkpoint",
            ck.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
            "--name",
            name,
        ];
        args.extend(extra.iter().copied());
        let o = export(&args);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(text.contains("tritonserver --model-repository"), "{text}");
        let max = if kind == "KIND_GPU" { "16" } else { "64" };
        let check = Command::new(python())
            .args([
                "-c",
                CHECK,
                repo.to_str().unwrap(),
                name,
                max,
                preferred,
                kind,
            ])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&check.stdout).trim(),
            format!("ok {name} [100, 1, 1] [3, 32, 32]")
        );
    }
}

#[test]
fn bad_triton_options_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    make_checkpoint(&ck, "tiny", 1, 3);
    let (c, r) = (ck.to_str().unwrap(), tmp.path().join("repo"));
    let r = r.to_str().unwrap();
    let missing = tmp.path().join("missing");
    for (extra, fragment) in [
        (
            vec!["--checkpoint", missing.to_str().unwrap()],
            "does not exist",
        ),
        (
            vec!["--max-batch-size", "0"],
            "--max-batch-size must be between 1 and 2147483647",
        ),
        (
            vec!["--preferred-batch-sizes", "128"],
            "128 is not between 1 and --max-batch-size 64",
        ),
        (vec!["--name", "../x"], "not a usable model folder name"),
        (
            vec!["--instances", "0"],
            "--instances must be between 1 and 2147483647",
        ),
    ] {
        // A case that names its own --checkpoint replaces the good one.
        let mut args = vec!["--repo", r];
        if !extra.contains(&"--checkpoint") {
            args.extend(["--checkpoint", c]);
        }
        args.extend(extra.iter().copied());
        let o = export(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("error: ") && err.contains(fragment),
            "{err}"
        );
    }
    assert!(!tmp.path().join("repo").exists());
}
