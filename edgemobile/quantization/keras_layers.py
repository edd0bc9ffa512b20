"""Each op of a converted model named by the Keras layers it computes — the names users know.

The converter fuses a conv, its BatchNorm, its activation and a padding before it into one
TFLite op and names the op's output after all of them (``…/conv_dw_2_relu_1/Relu6;…``).
Here every Keras layer output is found among the calibrated model's tensors by value
(:mod:`.tensor_map`); an op is the layer whose output it writes plus the layers before it whose
outputs no tensor holds (they were fused into it). The name a row carries is the conv/dense
layer among them, else the layer whose output it is.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections import defaultdict
from typing import Iterable, Sequence

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization import graph
from edgemobile.quantization.tensor_map import keras_to_tflite
from edgemobile.runtime.interpreter import model_ops, tensor_inspector

# Ops that only move or reinterpret data (or are the fixed-grid softmax): keeping one float
# removes no rounding, so they are not layers to keep float.
DATA_MOVEMENT_OPS = frozenset({"RESHAPE", "SQUEEZE", "SHAPE", "STRIDED_SLICE", "PACK", "SOFTMAX", "QUANTIZE",
                               "DEQUANTIZE", "PAD", "CONCATENATION", "TRANSPOSE", "GATHER", "EXPAND_DIMS"})
MATCH_IMAGES = 2  # images the Keras and calibrated models are run on to pair their tensors


@dataclasses.dataclass(frozen=True)
class Layer:
    """One op of the converted model that can stay float, in Keras terms."""

    name: str  # the Keras layer users know it by
    fused: tuple[str, ...]  # every Keras layer the op computes (BatchNorms folded into it included)
    op: str  # the TFLite op, e.g. "CONV_2D" (with the ops of its softmax head: "CONV_2D+RESHAPE+SOFTMAX")
    tensors: tuple[str, ...]  # the outputs of its ops (the quantizer keeps an op float by its output's name)

    @property
    def tensor(self) -> str:
        return self.tensors[0]

    def describe(self) -> str:
        others = [n for n in self.fused if n != self.name]
        return f"{self.name} ({self.op}{': + ' + ', '.join(others) if others else ''})"

    def as_dict(self) -> dict:
        return {"layer": self.name, "fused": list(self.fused), "op": self.op, "tensors": list(self.tensors)}


def model_layers(model, calibrated: bytes, x, original=None) -> list[Layer]:
    """The ops of ``calibrated`` (the converter's calibrated float model of Keras ``model``) that
    a Keras layer's output names, in execution order, without data-movement ops.

    Args:
        model: the Keras model the converter was given.
        calibrated: its calibrated float TFLite model.
        x: normalized images (the first :data:`MATCH_IMAGES` are used).
        original: the model before BatchNorm folding, whose BatchNorm names are kept as aliases.
    """
    operations = {op.name: op for op in model.operations}
    found = keras_to_tflite(model, calibrated, x[:MATCH_IMAGES], operations)
    owners: dict[int, list[str]] = defaultdict(list)
    for name in operations:  # model order
        if name in found:
            owners[found[name]].append(name)
    aliases: dict[str, list[str]] = defaultdict(list)
    if original is not None:
        for bn_name, fold in graph.foldable_batchnorms(original).items():
            aliases[fold.linear.name].append(bn_name)
    producers = _producers(model)
    interpreter = tensor_inspector(calibrated)
    names = {int(t["index"]): t["name"] for t in interpreter.get_tensor_details()}
    layers = []
    ops = model_ops(interpreter)
    heads = _softmax_heads(ops)
    for op in ops:
        out = int(op["outputs"][0])
        if op["op_name"] in DATA_MOVEMENT_OPS or out not in owners:
            continue
        head = heads.get(out, [])
        fused: list[str] = []
        for name in owners[out]:
            fused += _fused_before(name, producers, found) + [name]
        fused += [alias for name in fused for alias in aliases.get(name, ())]
        linear = [n for n in fused if n in operations and graph.linear_kind(operations[n]) is not None]
        fused += [name for t, _ in head for name in owners.get(t, ())]
        layers.append(Layer(name=(linear or owners[out])[0], fused=tuple(dict.fromkeys(fused)),
                            op="+".join([op["op_name"]] + [name for _, name in head]),
                            tensors=tuple(names[t] for t in [out] + [t for t, _ in head])))
    return layers


def _softmax_heads(ops: list[dict]) -> dict[int, list[tuple[int, str]]]:
    """Tensor → the reshapes and the softmax that follow it ((tensor, op) pairs), for the tensor
    each softmax reads through reshapes only. They go with that op: kept float, it would
    otherwise have its logits rounded onto the softmax's int8 input grid anyway, where near
    ties between the top classes become exact ones."""
    producer = {int(op["outputs"][0]): op for op in ops if len(op["outputs"])}
    heads = {}
    for op in ops:
        if op["op_name"] != "SOFTMAX":
            continue
        chain = [(int(op["outputs"][0]), "SOFTMAX")]
        source = int(op["inputs"][0])
        while source in producer and producer[source]["op_name"] in ("RESHAPE", "SQUEEZE"):
            chain.append((source, producer[source]["op_name"]))
            source = int(producer[source]["inputs"][0])
        heads[source] = chain[::-1]
    return heads


def _producers(model) -> dict[str, str]:
    """Layer name → the layer whose output is its only input, in ``model``'s own graph (a layer
    shared with the model it was rebuilt from keeps that model's nodes too)."""
    found = {}
    for node in graph.execution_order(model):
        sources = [t._keras_history.operation for t in node.input_tensors]
        if len(sources) == 1 and sources[0] is not None:
            found[node.operation.name] = sources[0].name
    return found


def _fused_before(name: str, producers: dict[str, str], found: dict) -> list[str]:
    """The single-input layers right before ``name`` whose outputs no tensor holds, first first."""
    chain = []
    previous = producers.get(name)
    while previous is not None and previous not in found and previous in producers:
        chain.append(previous)
        previous = producers.get(previous)
    return chain[::-1]


def resolve(names: Iterable[str], layers: Sequence[Layer], all_names: Iterable[str], where: str) -> list[Layer]:
    """The layers ``names`` (Keras layer names) pick, in model order; a one-line error for a
    name that is not a layer of ``where`` (with the nearest names) or has no op of its own."""
    by_name = {n: layer for layer in layers for n in layer.fused}
    known = set(all_names) | set(by_name)
    wanted = set()
    for name in names:
        if name in by_name:
            wanted.add(by_name[name].tensor)
            continue
        require_layers([name], known, where)
        raise EdgeMobileError(f"--keep-float {name}: in {where} this layer only moves data: nothing to keep "
                              f"float; name a conv/dense or activation layer ('edgemobile inspect' lists them)")
    return [layer for layer in layers if layer.tensor in wanted]


def float_tensors(layers: Iterable[Layer]) -> list[str]:
    """The output tensors of every op of ``layers`` (what the quantizer is told to keep float)."""
    return [tensor for layer in layers for tensor in layer.tensors]


def require_layers(names: Iterable[str], known: Iterable[str], where: str) -> None:
    """A one-line error naming the nearest layer names for the first of ``names`` that is not
    one of ``known`` (the Keras model's layer names)."""
    known = sorted(set(known))
    for name in names:
        if name not in known:
            nearest = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hint = f"nearest: {', '.join(nearest)}" if nearest else "'edgemobile inspect' lists the layers"
            raise EdgeMobileError(f"--keep-float {name}: no such layer in {where}; {hint}")
