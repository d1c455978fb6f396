#!/usr/bin/env bash
# Regenerates gen/ from protos/: messages, .pyi stubs, gRPC stubs and typed gRPC stubs (mypy-protobuf).
# Writes into a temporary tree first and swaps it in, so a concurrent import never sees a half tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
include=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
tmp=$(mktemp -d gen.tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mapfile -t protos < <(find protos -name '*.proto' | sort)
bindir=$(dirname "$PY")
"$PY" -m grpc_tools.protoc -Iprotos -I"$include" \
  --plugin=protoc-gen-mypy="$bindir/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bindir/protoc-gen-mypy_grpc" \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  --mypy_out="$tmp" --mypy_grpc_out="$tmp" \
  "${protos[@]}"
# The generated tree must stay a PEP 420 namespace: no __init__.py anywhere under gen/payhub.
find "$tmp" -name '__init__.py' -delete
mkdir -p gen
rm -rf gen/payhub.old
[ -d gen/payhub ] && mv gen/payhub gen/payhub.old
mv "$tmp/payhub" gen/payhub
rm -rf gen/payhub.old
