#!/usr/bin/env bash
# A two-node Ray cluster on loopback and a paretune job on it; run by test_ray_cluster.py as
#   unshare --net --pid --fork --mount-proc --kill-child bash two_node_cluster.sh WORK PORT SPEC
# In the fresh network namespace the only interface is lo, so no address but 127.0.0.1 can
# carry traffic; in the fresh PID namespace every process started here dies with it.
set -euo pipefail
work=$1 port=$2 spec=$3
bin=$(dirname "$(readlink -f "$0")")/../../.venv/bin
ip link set lo up
# Multi-node needs the cluster switch on (a worker `ray start` refuses otherwise); token
# authentication off, since the nodes do not share a token.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
node=(--node-ip-address 127.0.0.1 --num-cpus 1 --object-store-memory 80000000
      --disable-usage-stats --temp-dir "$work/ray")
cleanup() { "$bin/ray" stop --force >/dev/null 2>&1 || true; }  # sees this namespace only
trap cleanup EXIT
"$bin/ray" start --head --port "$port" --include-dashboard=false "${node[@]}" >"$work/head.log" 2>&1
"$bin/ray" start --address "127.0.0.1:$port" "${node[@]}" >"$work/worker.log" 2>&1
RAY_ADDRESS="127.0.0.1:$port" "$bin/paretune" tune "$spec" --db "sqlite:///$work/jobs.db" \
    >"$work/tune.log" 2>&1
RAY_ADDRESS="127.0.0.1:$port" "$bin/python" - "$work/cluster.json" <<'PY' 2>>"$work/tune.log"
import json, subprocess, sys
from tuner.dispatch import ensure_ray
import ray
ensure_ray()
nodes = [{"id": n["NodeID"], "address": n["NodeManagerAddress"], "alive": n["Alive"]}
         for n in ray.nodes()]
gcs = ray.get_runtime_context().gcs_address
listening = [line.split()[3] for line in subprocess.run(
    ["ss", "-tln"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]]
interfaces = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
json.dump({"nodes": nodes, "gcs": gcs, "listening": listening, "interfaces": interfaces},
          open(sys.argv[1], "w"))
PY
