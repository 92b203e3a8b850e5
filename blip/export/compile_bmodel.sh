#!/usr/bin/env bash
# Compile blipd's ONNX graphs into bmodels with TPU-MLIR, the way sophon-demo's
# scripts/gen_fp32bmodel_mlir_*.sh do (reference/seed-blip.md §7): model_transform.py with the
# graph's static input shapes, then model_deploy.py --quantize F32, single core (no --num_core).
# Run it inside the TPU-MLIR docker image (model_transform.py and model_deploy.py on PATH).
#
# Usage: compile_bmodel.sh PACKAGE_DIR CHIP OUT_DIR
#   PACKAGE_DIR  `blipd export --layout seed` output (seed graphs: caption/blip_cap.onnx ...), or
#                `python -m blip.export.seed static SRC OUT` output (static-shape split graphs)
#   CHIP         bm1684x | bm1684 | bm1688 | cv186ah
#   OUT_DIR      seed graphs -> OUT_DIR/<CHIP>/<graph>_<chip>_f32_1b.bmodel and OUT_DIR/bert-base-uncased;
#                then: blipd package-seed OUT_DIR --chip CHIP
#                split graphs -> OUT_DIR/<task>/<role>.bmodel;
#                then: python -m blip.export.seed bmodels PACKAGE_DIR OUT_DIR --chip CHIP
# DRY_RUN=1 prints the commands instead of running them. PYTHON picks the interpreter that has `onnx`.
set -euo pipefail

if [ "$#" -ne 3 ]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi
pkg=$(cd "$1" && pwd)
chip=$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')
out=$3
python=${PYTHON:-python3}
case "$chip" in
    bm1684x|bm1684|bm1688|cv186ah) ;;
    *) echo "compile_bmodel.sh: unknown chip '$2' (bm1684x, bm1684, bm1688, cv186ah)" >&2; exit 2 ;;
esac
CHIP=$(printf '%s' "$chip" | tr '[:lower:]' '[:upper:]')

run() {
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%s\n' "$*"
    else
        "$@"
    fi
}

# "[[1,3,384,384],[1,35],[1,35]]" from the graph's inputs; fails on a dynamic dim.
input_shapes() {
    "$python" - "$1" <<'EOF'
import sys
import onnx
model = onnx.load(sys.argv[1], load_external_data=False)
shapes = []
for value in model.graph.input:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if None in dims or 0 in dims:
        sys.exit("%s: input %s has a dynamic dim: export static shapes first (python -m blip.export.seed static)" % (sys.argv[1], value.name))
    shapes.append("[" + ",".join(str(d) for d in dims) + "]")
print("[" + ",".join(shapes) + "]")
EOF
}

compile_one() {  # onnx model_name bmodel
    local onnx=$1 name=$2 bmodel=$3 shapes work
    shapes=$(input_shapes "$onnx")
    work="$out/.work/$name"
    run mkdir -p "$work" "$(dirname "$bmodel")"
    (
        [ "${DRY_RUN:-0}" = 1 ] || cd "$work"
        run model_transform.py --model_name "$name" --model_def "$onnx" --input_shapes "$shapes" --mlir "$name.mlir"
        run model_deploy.py --mlir "$name.mlir" --quantize F32 --chip "$chip" --model "$bmodel"
    )
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
found=0
seed=0
while IFS= read -r onnx; do
    found=1
    rel=${onnx#"$pkg"/}
    base=$(basename "$onnx" .onnx)
    case "$base" in
        blip_cap|blip_itm|blip_vqa_venc|blip_vqa_tenc|blip_vqa_tdec)
            seed=1
            compile_one "$onnx" "$base" "$out/$CHIP/${base}_${chip}_f32_1b.bmodel" ;;
        *)
            compile_one "$onnx" "$(dirname "$rel" | tr '/' '_')_$base" "$out/${rel%.onnx}.bmodel" ;;
    esac
done < <(find "$pkg" -name '*.onnx' -type f | sort)
[ "$found" = 1 ] || { echo "compile_bmodel.sh: no .onnx file under $pkg" >&2; exit 1; }

# package-seed looks for the seed's tokenizer folder name next to the chip folder
tokenizer=$(sed -n 's/^tokenizer: *//p' "$pkg/manifest.yaml" | head -n 1)
if [ "$seed" = 1 ] && [ -n "$tokenizer" ]; then
    run cp -r "$pkg/$tokenizer" "$out/bert-base-uncased"
fi
