#!/usr/bin/env bash
# Builds `runtime` for aarch64 (64-bit ARM Linux: Raspberry Pi 4/5, Jetson, Graviton) on an
# x86-64 Debian 12 machine, runs it under qemu on the shipped model and a dcgan64 export, and
# compares its images with the x86-64 build's (max abs diff ≤ 1e-5).
#
#   scripts/cross_aarch64.sh             # native-only runtime (the edge build)
#   TRACT=1 scripts/cross_aarch64.sh     # also a build with tract
#
# Installs (apt, as root): Debian's Rust 1.96 (`rustc-web`, `cargo-web`) with its standard
# library for arm64 by multiarch (`libstd-rust-web-dev:arm64`), the cross linker
# (`gcc-aarch64-linux-gnu`, `libc6-dev:arm64`) and `qemu-user`. rustup is not needed.
# Outputs go to target/aarch64/ (binaries, images) and the comparison is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=target/aarch64
mkdir -p "$out"

packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev:arm64 qemu-user)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  dpkg --add-architecture arm64
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi
qemu-aarch64 --version | head -1
# Debian's Rust: /usr/bin/rustc and /usr/bin/cargo, with the std of every installed
# architecture under /usr/lib/rustlib (a rustup toolchain earlier in PATH is not used here).
rust_bin=/usr/bin
[ -x "$rust_bin/cargo" ] || { echo "Debian's cargo (cargo-web) not found in $rust_bin" >&2; exit 2; }
"$rust_bin/rustc" --version

target=aarch64-unknown-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

build() { # name features
  local name=$1 features=$2
  RUSTC="$rust_bin/rustc" "$rust_bin/cargo" build --release --target "$target" --target-dir target/cross \
    -p wgan-runtime --no-default-features --features "$features" --bin runtime
  cp target/cross/$target/release/runtime "$out/runtime-$name"
  aarch64-linux-gnu-strip "$out/runtime-$name"
  echo "$out/runtime-$name: $(stat -c %s "$out/runtime-$name") bytes stripped ($(file -b "$out/runtime-$name" | cut -d, -f1-2))"
}
build native native,cli
if [ "${TRACT:-0}" = 1 ]; then build tract tract,cli; fi

# The x86-64 reference: the host's release build (the project's own toolchain), native backend;
# HOST_RUNTIME names an already built one.
host="${HOST_RUNTIME:-target/release/runtime}"
if [ -z "${HOST_RUNTIME:-}" ]; then cargo build --release -q -p wgan-runtime --bin runtime; fi
dcgan="$out/dcgan64.onnx"
if [ ! -f "$dcgan" ]; then
  eval "$(scripts/test-env.sh)"
  "$WGAN_TEST_PYTHON" runtime/tests/fixtures/make_fixtures.py --dcgan64 "$dcgan" >/dev/null
fi
# The programs run on the multiarch arm64 libc (libc6:arm64: /lib/ld-linux-aarch64.so.1 and
# /lib/aarch64-linux-gnu), so no `-L`. `-L /usr/aarch64-linux-gnu` would pair the cross
# package's ld.so with the libc.so.6 that the host's ld.so.cache names (libc6:arm64): two
# builds of glibc whose private layout differs, and the first thread spawn then spins forever
# in pthread_create's stack-cache walk. Bounded all the same.
run_arm() {
  timeout -s KILL "${QEMU_TIMEOUT:-900}" qemu-aarch64 "$@" || {
    echo "qemu-aarch64 $* did not finish (status $?): see docs/platforms.md, 'qemu and glibc'" >&2
    return 1
  }
}
# A two-line program that starts one thread: if this hangs, so will runtime.
probe=target/aarch64/thread-probe
printf 'fn main() { println!("threads under qemu: {}", std::thread::spawn(|| "ok").join().unwrap()); }\n' > "$probe.rs"
"$rust_bin/rustc" --target "$target" -C linker=aarch64-linux-gnu-gcc -O "$probe.rs" -o "$probe"
QEMU_TIMEOUT=20 run_arm "$probe" || exit 1

for model in shipped dcgan64; do
  args=()
  [ "$model" = dcgan64 ] && args=(--model "$dcgan")
  "$host" gen "${args[@]}" --backend native --n 8 --seed 3 --save-raw "$out/$model-x86.npy" --grid "$out/$model-x86.png" >/dev/null
  for build in native ${TRACT:+tract}; do
    [ -x "$out/runtime-$build" ] || continue
    start=$(date +%s.%N)
    run_arm "$out/runtime-$build" gen "${args[@]}" --backend "$build" --n 8 --seed 3 \
      --save-raw "$out/$model-arm-$build.npy" --grid "$out/$model-arm-$build.png"
    echo "  qemu wall time $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done

eval "$(scripts/test-env.sh)"
"$WGAN_TEST_PYTHON" - "$out" <<'EOF'
import glob, os, sys
import numpy as np
out = sys.argv[1]
worst = 0.0
for ref in sorted(glob.glob(os.path.join(out, "*-x86.npy"))):
    model = os.path.basename(ref)[:-len("-x86.npy")]
    x = np.load(ref)
    for arm in sorted(glob.glob(os.path.join(out, f"{model}-arm-*.npy"))):
        d = float(np.abs(np.load(arm) - x).max())
        worst = max(worst, d)
        print(f"{model}: aarch64 {arm.rsplit('-', 1)[1][:-4]} vs x86-64 native: max abs diff {d:.2e} over {x.size} values")
sys.exit(0 if worst <= 1e-5 else f"max abs diff {worst} > 1e-5")
EOF
