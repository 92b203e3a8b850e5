#!/usr/bin/env bash
# Compile blipd's ONNX graphs into bmodels with TPU-MLIR, the way sophon-demo's
# scripts/gen_{fp32,fp16}bmodel_mlir_*.sh do (reference/seed-blip.md §7): model_transform.py with the
# graph's static input shapes, then model_deploy.py, single core (no --num_core).
# Not run here: no TPU-MLIR or SOPHON hardware on the build machine. The commands follow the TPU-MLIR
# user guide and tools (model_deploy.py, run_calibration.py) and the sophon-demo scripts; DRY_RUN=1
# prints them. Run it inside the TPU-MLIR docker image (its tools on PATH).
#
# Usage: [PRECISION=f32|f16|bf16|int8] [CALIB_DIR=DIR] compile_bmodel.sh PACKAGE_DIR CHIP OUT_DIR
#   PACKAGE_DIR  `blipd export --layout seed` output (seed graphs: caption/blip_cap.onnx ...), or
#                `python -m blip.export.seed static SRC OUT` output (static-shape split graphs)
#   CHIP         bm1684x | bm1684 | bm1688 | cv186ah   (cv186ah is TPU-MLIR's --chip cv186x)
#   OUT_DIR      seed graphs -> OUT_DIR/<CHIP>/<graph>_<chip>_<prec>_1b.bmodel and OUT_DIR/bert-base-uncased;
#                then: blipd package-seed OUT_DIR --chip CHIP
#                split graphs -> OUT_DIR/<task>/<role>.bmodel (the names `bmodels` expects, whatever
#                the precision: use one OUT_DIR per precision);
#                then: python -m blip.export.seed bmodels PACKAGE_DIR OUT_DIR --chip CHIP
# PRECISION (default f32): BM1684 has F32 and INT8 only; BM1684X, BM1688 and CV186AH add F16 and BF16.
#   int8 quantizes the image side only: split vision graphs and the seed's blip_vqa_venc whole, and the
#   ViT inside blip_cap/blip_itm (the rest of those two stays float through a --quantize_table).
#   Text encoders and decoders stay at the chip's best float (F16; F32 on BM1684): INT8 drifts the
#   logits until greedy decoding picks other words, and calibrating them would need token-id inputs.
# CALIB_DIR (int8 only): `python -m blip.export.calibration --package PACKAGE_DIR ... --out CALIB_DIR`,
#   i.e. CALIB_DIR/<image size>/frame_*.npz holding pixel_values.
# TOLERANCE (int8 only, default 0.85,0.45, the user guide's INT8 example; not tuned for BLIP):
#   cosine,euclidean similarity the INT8 vision graphs must keep against the F32 graph on one frame.
# DRY_RUN=1 prints the commands instead of running them. PYTHON picks the interpreter that has `onnx`.
set -euo pipefail

if [ "$#" -ne 3 ]; then
    sed -n '2,27p' "$0" >&2
    exit 2
fi
die() { echo "compile_bmodel.sh: $*" >&2; exit 2; }
upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }
pkg=$(cd "$1" && pwd)
chip=$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')
out=$3
python=${PYTHON:-python3}
precision=$(printf '%s' "${PRECISION:-f32}" | tr '[:upper:]' '[:lower:]')
tolerance=${TOLERANCE:-0.85,0.45}

# Per chip: TPU-MLIR's --chip name, the precisions it has, the float kept for text under int8.
# BM1684 lowers F32 and INT8 only (tpu-mlir lib/Conversion/TopToTpu/BM1684; sophon-demo's fp16
# scripts refuse bm1684); BM1688 and CV186AH (cv186x) have the BM1684X set.
case "$chip" in
    bm1684) tpu_chip=bm1684; precisions="f32 int8"; text_float=f32 ;;
    bm1684x|bm1688) tpu_chip=$chip; precisions="f32 f16 bf16 int8"; text_float=f16 ;;
    cv186ah) tpu_chip=cv186x; precisions="f32 f16 bf16 int8"; text_float=f16 ;;
    *) die "unknown chip '$2' (bm1684x, bm1684, bm1688, cv186ah)" ;;
esac
case " $precisions " in
    *" $precision "*) ;;
    *) die "PRECISION=$precision is not available on $chip (it has: ${precisions// /, })" ;;
esac
CHIP=$(upper "$chip")
calib=
if [ "$precision" = int8 ]; then
    [ -n "${CALIB_DIR:-}" ] || die "PRECISION=int8 needs CALIB_DIR: python -m blip.export.calibration --package $1 --video CLIP --count 200 --out CALIB_DIR"
    [ -d "$CALIB_DIR" ] || die "CALIB_DIR $CALIB_DIR is not a folder"
    calib=$(cd "$CALIB_DIR" && pwd)
fi

run() {
    if [ "${DRY_RUN:-0}" = 1 ]; then
        printf '%s\n' "$*"
    else
        "$@"
    fi
}

# "SHAPES SIZE TEXT INPUTS": "[[1,3,384,384],[1,35],[1,35]] 384 35 pixel_values,input_ids,attention_mask"
# (SIZE 0 without pixel_values, TEXT 0 without input_ids); fails on a dynamic dim.
graph_info() {
    "$python" - "$1" <<'EOF'
import sys
import onnx
model = onnx.load(sys.argv[1], load_external_data=False)
shapes, size, text = [], 0, 0
for value in model.graph.input:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
    if None in dims or 0 in dims:
        sys.exit("%s: input %s has a dynamic dim: export static shapes first (python -m blip.export.seed static)" % (sys.argv[1], value.name))
    shapes.append("[" + ",".join(str(d) for d in dims) + "]")
    size = dims[-1] if value.name == "pixel_values" else size
    text = dims[-1] if value.name == "input_ids" else text
print("[" + ",".join(shapes) + "]", size, text, ",".join(v.name for v in model.graph.input))
EOF
}

# The npz files of DIR, one path a line, for run_calibration.py --data_list (--dataset would also
# collect the JPEGs a calibration folder may hold, and TPU-MLIR refuses mixed sample types).
write_calibration_list() {  # dir list
    find "$1" -maxdepth 1 -name 'frame_*.npz' -type f | sort >"$2"
}

# blip_itm takes token ids beside the pixels, so each of its samples holds all three inputs. Its
# text side stays float, so the ids only have to be valid: [PAD]=0, one position attended.
write_itm_calibration() {  # src_dir dst_dir text_length
    "$python" - "$@" <<'EOF'
import glob, os, sys
import numpy as np
src, dst, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dst, exist_ok=True)
ids = np.zeros((1, length), np.int64)
mask = np.zeros((1, length), np.int64)
mask[0, 0] = 1
for path in sorted(glob.glob(os.path.join(src, "frame_*.npz"))):
    pixels = np.load(path)["pixel_values"]
    np.savez(os.path.join(dst, os.path.basename(path)), pixel_values=pixels, input_ids=ids, attention_mask=mask)
EOF
}

# Mixed precision for blip_cap / blip_itm: every op of the .mlir outside the vision encoder goes to
# MODE. TPU-MLIR names ops after the ONNX nodes, which carry the torch module path: ours
# `/vision/...`, the seed exporter's (original BLIP) `/visual_encoder/...`.
write_float_qtable() {  # mlir mode qtable
    "$python" - "$@" <<'EOF'
import re, sys
mlir, mode, table = sys.argv[1:4]
names = sorted(set(re.findall(r'loc\("([^"\s]+)"\)', open(mlir, encoding="utf-8").read())))
vision = re.compile(r"(^|[/.])(vision|visual_encoder|vision_model)[/.]")
if not any(vision.search(n) for n in names):
    sys.exit("%s: no op named after the vision encoder (/vision/ or /visual_encoder/): cannot tell "
             "the ViT from the text side; compile this graph with PRECISION=f16" % mlir)
with open(table, "w", encoding="utf-8") as fh:
    fh.write("# op_name quantize_mode: all but the vision encoder stays %s\n" % mode)
    fh.writelines("%s %s\n" % (n, mode) for n in names if not vision.search(n))
EOF
}

# Plan first, so that a missing calibration size or a dynamic graph fails before anything compiles.
# how: float (PRECISION, or the text float under int8) | int8 (whole graph) | int8-vision (ViT
# int8 through a qtable, the rest float).
plan=()
plan_graph() {  # onnx name bmodel how
    local info shapes size text inputs prec
    info=$(graph_info "$1")
    read -r shapes size text inputs <<<"$info"
    prec=$precision
    if [ "$prec" = int8 ] && [ "$4" = float ]; then prec=$text_float; fi
    if [ "$prec" = int8 ]; then
        [ "$size" != 0 ] || die "$1: no pixel_values input to calibrate"
        [ -n "$(find "$calib/$size" -maxdepth 1 -name 'frame_*.npz' -type f 2>/dev/null | head -n 1)" ] \
            || die "CALIB_DIR has no $size/frame_*.npz for $2 (python -m blip.export.calibration --package $pkg ...)"
    fi
    plan+=("$1|$2|${3/<prec>/$prec}|$4|$prec|$shapes|$size|$text|$inputs")
}

# No --quant_input/--quant_output: the runtime feeds float32 pixels and reads float outputs.
compile_one() {  # onnx name bmodel how prec shapes size text inputs
    local onnx=$1 name=$2 bmodel=$3 how=$4 prec=$5 shapes=$6 size=$7 text=$8 inputs=$9
    local work="$out/.work/$name" data count first
    run mkdir -p "$work" "$(dirname "$bmodel")"
    [ "${DRY_RUN:-0}" = 1 ] || cd "$work"
    if [ "$prec" != int8 ]; then
        run model_transform.py --model_name "$name" --model_def "$onnx" --input_shapes "$shapes" --mlir "$name.mlir"
        run model_deploy.py --mlir "$name.mlir" --quantize "$(upper "$prec")" --chip "$tpu_chip" --model "$bmodel"
        return
    fi
    data="$calib/$size"
    count=$(find "$data" -maxdepth 1 -name 'frame_*.npz' -type f | wc -l | tr -d ' ')
    if [ "$how" = int8 ]; then  # one frame checks the INT8 graph against the F32 one (--tolerance)
        first=$(find "$data" -maxdepth 1 -name 'frame_*.npz' -type f | sort | head -n 1)
        run model_transform.py --model_name "$name" --model_def "$onnx" --input_shapes "$shapes" \
            --test_input "$first" --test_result "${name}_top_outputs.npz" --mlir "$name.mlir"
    else
        run model_transform.py --model_name "$name" --model_def "$onnx" --input_shapes "$shapes" --mlir "$name.mlir"
    fi
    if [ "$inputs" != pixel_values ]; then  # blip_itm: ids beside the pixels
        data="$work/calibration"
        run write_itm_calibration "$calib/$size" "$data" "$text"
    fi
    run write_calibration_list "$data" "${name}_cali_list.txt"
    run run_calibration.py "$name.mlir" --data_list "${name}_cali_list.txt" --input_num "$count" -o "${name}_cali_table"
    if [ "$how" = int8 ]; then
        run model_deploy.py --mlir "$name.mlir" --quantize INT8 --calibration_table "${name}_cali_table" \
            --chip "$tpu_chip" --test_input "${name}_in_f32.npz" --test_reference "${name}_top_outputs.npz" \
            --tolerance "$tolerance" --model "$bmodel"
    else
        run write_float_qtable "$name.mlir" "$(upper "$text_float")" "${name}_qtable"
        run model_deploy.py --mlir "$name.mlir" --quantize INT8 --calibration_table "${name}_cali_table" \
            --quantize_table "${name}_qtable" --chip "$tpu_chip" --model "$bmodel"
    fi
}

mkdir -p "$out"
out=$(cd "$out" && pwd)
seed=0
while IFS= read -r onnx; do
    rel=${onnx#"$pkg"/}
    base=$(basename "$onnx" .onnx)
    case "$base" in
        blip_vqa_venc) seed=1; plan_graph "$onnx" "$base" "$out/$CHIP/${base}_${chip}_<prec>_1b.bmodel" int8 ;;
        blip_cap|blip_itm) seed=1; plan_graph "$onnx" "$base" "$out/$CHIP/${base}_${chip}_<prec>_1b.bmodel" int8-vision ;;
        blip_vqa_tenc|blip_vqa_tdec) seed=1; plan_graph "$onnx" "$base" "$out/$CHIP/${base}_${chip}_<prec>_1b.bmodel" float ;;
        vision) plan_graph "$onnx" "$(dirname "$rel" | tr '/' '_')_$base" "$out/${rel%.onnx}.bmodel" int8 ;;
        *) plan_graph "$onnx" "$(dirname "$rel" | tr '/' '_')_$base" "$out/${rel%.onnx}.bmodel" float ;;
    esac
done < <(find "$pkg" -name '*.onnx' -type f | sort)
[ "${#plan[@]}" -gt 0 ] || { echo "compile_bmodel.sh: no .onnx file under $pkg" >&2; exit 1; }

for entry in "${plan[@]}"; do
    IFS='|' read -r -a fields <<<"$entry"
    (compile_one "${fields[@]}")  # a subshell: compile_one changes into the graph's work folder
done

# package-seed looks for the seed's tokenizer folder name next to the chip folder
tokenizer=$(sed -n 's/^tokenizer: *//p' "$pkg/manifest.yaml" | head -n 1)
if [ "$seed" = 1 ] && [ -n "$tokenizer" ]; then
    run cp -r "$pkg/$tokenizer" "$out/bert-base-uncased"
fi
