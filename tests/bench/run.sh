#!/usr/bin/env bash
# Benchmark Sluice against RabbitMQ and NATS JetStream on this machine, side
# by side in one run, and print one table (also written to
# target/bench/results.txt).
#
#   bash tests/bench/run.sh                 # defaults: 20,000 msgs, 3 repetitions
#   bash tests/bench/run.sh --messages 5000 --repetitions 1
#
# Arguments are passed to `sluice-bench` (see `sluice-bench --help`).
#
# What it does:
#   1. installs the Debian packages rabbitmq-server and nats-server if they
#      are missing (apt-get; needs root or sudo);
#   2. builds the host (`cargo build --release -p sluice-host --bin sluice`);
#   3. builds the handler components tests/guests/panics and tests/guests/batch
#      with that `sluice build`;
#   4. builds tests/bench (its own workspace, sharing target/ with the host);
#   5. runs it. Every server listens on 127.0.0.1 only, keeps its data under
#      target/bench/run, and is stopped when the run ends, fails or is
#      interrupted.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/bench"
work="$out/run"
mkdir -p "$out"

bench_pid=""
cleanup() {
    # Stop the benchmark first: it stops its servers itself.
    if [[ -n "$bench_pid" ]] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$bench_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$bench_pid" 2>/dev/null || true
    fi
    # Whatever it could not stop (e.g. it was killed outright): every server
    # ran in a process group of its own, listed one id a line.
    if [[ -f "$work/pids" ]]; then
        while read -r group; do
            [[ "$group" =~ ^[0-9]+$ ]] || continue
            kill -TERM -- "-$group" 2>/dev/null || true
        done <"$work/pids"
        sleep 1
        while read -r group; do
            [[ "$group" =~ ^[0-9]+$ ]] || continue
            kill -KILL -- "-$group" 2>/dev/null || true
        done <"$work/pids"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Debian packages.
missing=()
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
[[ -x /usr/sbin/nats-server ]] || command -v nats-server >/dev/null || missing+=(nats-server)
if ((${#missing[@]})); then
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "installing Debian packages: ${missing[*]} (apt-get)" >&2
    $sudo apt-get update
    # The packages' own service start is not used (and is refused in most
    # containers); the benchmark starts private instances on free ports.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
nats_server="$(command -v nats-server || echo /usr/sbin/nats-server)"
epmd="$(command -v epmd || echo /usr/bin/epmd)"

# 2-4. Builds (the first host build takes several minutes on 2 cores).
echo "building sluice (release)" >&2
cargo build --release -p sluice-host --bin sluice
echo "building the handler component (tests/guests/panics)" >&2
CARGO_TARGET_DIR="$root/target/guests" "$root/target/release/sluice" build tests/guests/panics --out "$out/handler.wasm" >/dev/null
echo "building the batch handler component (tests/guests/batch)" >&2
CARGO_TARGET_DIR="$root/target/guests" "$root/target/release/sluice" build tests/guests/batch --out "$out/batch-handler.wasm" >/dev/null
echo "building sluice-bench (release)" >&2
(cd tests/bench && CARGO_TARGET_DIR="$root/target" cargo build --release)

# 5. Run. The table goes to stdout (and results.txt), progress to stderr.
started=$(date +%s)
"$root/target/release/sluice-bench" \
    --sluice "$root/target/release/sluice" \
    --component "$out/handler.wasm" \
    --batch-component "$out/batch-handler.wasm" \
    --work-dir "$work" \
    --nats-server "$nats_server" \
    --epmd "$epmd" \
    "$@" >"$out/results.txt.partial" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
bench_pid=""
if ((status != 0)); then
    echo "sluice-bench failed (exit $status); servers' logs are under $work" >&2
    exit "$status"
fi
mv "$out/results.txt.partial" "$out/results.txt"
{
    echo "machine: $(nproc) cores, $(uname -sr); rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), nats-server $("$nats_server" --version 2>/dev/null | awk '{print $2}')"
    echo "run.sh wall time (benchmark only): $(($(date +%s) - started)) s"
} >>"$out/results.txt"
cat "$out/results.txt"
echo "written to $out/results.txt" >&2
