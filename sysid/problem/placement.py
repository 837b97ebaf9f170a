"""Where a fit's tensors live: the ``device`` option, and moving a
:class:`~sysid.problem.problem.Problem` (its modules and every tensor its parts hold) there.

A problem is built on the CPU from the data (numpy). :func:`to_device` then moves it as a
whole: the registered parameters and buffers in place (``nn.Module.to``: optimisers and the
trainer keep their references), and the tensors that sysid's own objects hold outside
modules (segments, input signals, noise models, index tensors) by walking their
attributes. The trainer runs the gradient-based phases there and moves the problem back to
the CPU for Levenberg-Marquardt (its dense Jacobian is numpy) and for the result, whose
outputs are xarray on the CPU.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["device_name", "check_device", "to_device", "on_cpu"]


def device_name(device) -> str:
    """``device`` as a string ("cpu", "cuda", "cuda:1"), or a ValueError when it names no
    device a fit can run on. Whether a GPU is there is :func:`check_device`'s question (a
    saved fit's options load on any machine)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"fit option device must be 'cpu' or 'cuda' (or 'cuda:N' for GPU N); "
                         f"received {device!r}.")
    return str(dev)


def check_device(device) -> str:
    """``device`` as a string, or a ValueError that says why a fit cannot run there on
    this machine."""
    name = device_name(device)
    dev = torch.device(name)
    if dev.type == "cuda":
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} asks for a CUDA GPU, but torch {torch.__version__} "
                f"({build}) sees none (torch.cuda.is_available() is False). Fix: "
                f"device='cpu' (the default), or run on a machine with an NVIDIA GPU and a "
                f"CUDA build of torch.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: torch sees {torch.cuda.device_count()} "
                             f"GPU(s), numbered from 0. Fix: device='cuda' or a number below "
                             f"{torch.cuda.device_count()}.")
    return name


def _ours(obj) -> bool:
    return type(obj).__module__.startswith("sysid.") and not isinstance(obj, type)


def to_device(problem, device) -> None:
    """Move ``problem`` and every tensor that its parts hold to ``device``."""
    device = torch.device(device)
    seen: set[int] = set()

    def moved(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, list):
            value[:] = [moved(v) for v in value]
        elif isinstance(value, dict):
            for key in list(value):
                value[key] = moved(value[key])
        elif isinstance(value, tuple):
            items = [moved(v) for v in value]
            return type(value)._make(items) if hasattr(value, "_fields") else tuple(items)
        elif _ours(value) or isinstance(value, nn.Module):
            visit(value)
        return value

    def visit(obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            obj.to(device)                  # registered parameters and buffers, in place
        for key, value in list(vars(obj).items()):
            if key in ("_parameters", "_buffers"):
                continue
            if key == "_modules":
                for module in value.values():
                    if module is not None:
                        visit(module)
                continue
            obj.__dict__[key] = moved(value)

    visit(problem)
    # the native kernel keeps numpy views of the network's buffers: build it again
    problem.field.__dict__.pop("_native_kernel", None)


@contextmanager
def on_cpu(problem):
    """Within the block the problem is on the CPU; afterwards back where it was."""
    device = problem.loc.device
    if device.type == "cpu":
        yield
        return
    to_device(problem, "cpu")
    try:
        yield
    finally:
        to_device(problem, device)
