"""Checkpoint files of a fit: what a checkpoint holds, how it is sealed (a checksum over the
bytes, so a truncated or edited file is refused), written atomically and read back, and
the fingerprint of the model, data and options that a resumed fit must match.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import FileFormatError, FitError, LimitError
from ..model.limits import check_torch_file
from ..model.spec import model_to_spec
from ..problem.options import FitOptions, FitStatus


CHECKPOINT_FORMAT = "sysid.checkpoint"


def _sealed(payload: dict) -> dict:
    """The checkpoint as written: its serialised bytes with their SHA-256 digest, so that
    a damaged file (torch.load reads most flipped bytes silently) is recognised."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    raw = buffer.getvalue()
    return {"format": CHECKPOINT_FORMAT, "version": 2, "sha256": hashlib.sha256(raw).hexdigest(),
            "body": torch.frombuffer(bytearray(raw), dtype=torch.uint8)}


def read_checkpoint(path) -> dict:
    """Read a training checkpoint as plain data (no code in the file can run)."""
    try:
        check_torch_file(path, "checkpoint")     # declared sizes before anything is read
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(ckpt, dict) and "body" in ckpt:          # sealed (version 2)
            body = ckpt["body"]
            raw = body.numpy().tobytes() if isinstance(body, torch.Tensor) \
                and body.dtype == torch.uint8 and body.dim() == 1 else b""
            if hashlib.sha256(raw).hexdigest() != ckpt.get("sha256"):
                raise FileFormatError(
                    f"{path} is damaged: its contents do not match the checksum written "
                    f"with them (an incomplete copy, a disk error or an edit). Resume from "
                    f"an intact copy, or start a new fit without resume=.")
            check_torch_file(io.BytesIO(raw), f"checkpoint {path}")
            ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"No checkpoint at {path!r}: check the path given as "
                                f"resume=.") from None
    except (FileFormatError, LimitError):
        raise
    except Exception as err:
        raise FileFormatError(f"{path} is not a sysid checkpoint (or a damaged or truncated "
                              f"one), or it contains objects that sysid refuses to load: "
                              f"{type(err).__name__}: {err}") from None
    keys = ("fingerprint", "done", "pending", "phase", "problem", "best_state", "best_loss",
            "rows", "epoch", "nfe", "continuity", "active", "elapsed")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT \
            or any(k not in ckpt for k in keys):
        raise FileFormatError(f"{path} is not a sysid checkpoint (format marker or entries "
                              f"missing).")
    return ckpt


def fingerprint(model, bundle, opts: FitOptions) -> str:
    """A digest of what determines a fit's steps: model, data and options."""
    h = hashlib.sha256()
    h.update(json.dumps(model_to_spec(model), sort_keys=True).encode())
    settings = {k: v for k, v in opts.to_dict().items() if k not in _RESUMABLE
                and not (k == "max_step" and v is None)      # (files before max_step)
                and not (k == "physics_first" and v is False)}   # (and physics_first)
    # patience as the steps see it (files from before its default was None wrote 30)
    settings["patience"] = opts.adam_patience(opts.epochs)
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for arr in (bundle.times, bundle.y, bundle.mask, bundle.u):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# options that do not change a fit's steps: a resumed fit may change them (compiled: the
# same steps in C or in PyTorch, equal to rounding; grow_horizon: what follows the
# checkpointed whole-record fit)
_RESUMABLE = ("checkpoint", "checkpoint_every", "resume", "progress", "throw", "compiled",
              "device", "grow_horizon")


class Checkpointing:
    """Writing and restoring the checkpoint of a running :class:`~sysid.training.trainer._Trainer`
    (mixed into it)."""

    # -- checkpoints --------------------------------------------------------------------
    def _save(self, inner: dict | None, force: bool = False) -> None:
        path = self.opts.checkpoint
        now = time.perf_counter()
        if not path or (not force and now - self._last_write < self.opts.checkpoint_every):
            return
        payload = {
            "format": CHECKPOINT_FORMAT, "version": 1, "fingerprint": self.fingerprint,
            "done": {k: [v.code, v.detail] for k, v in self.done.items()},
            "pending": inner, "phase": self.phase,
            "problem": self.problem.state_dict(), "best_state": self.best_state,
            "best_loss": self.best_loss, "rows": self.rows, "epoch": self.epoch,
            "nfe": int(self.problem.field.nfe), "continuity": self.problem.continuity,
            "active": self.problem.active, "elapsed": self.elapsed + now - self._started,
            "penalty": self.penalty, "anchor": self.anchor,
        }
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(_sealed(payload), f)
                f.flush()
                os.fsync(f.fileno())    # on disk before it replaces the previous one
            os.replace(tmp, path)       # the previous checkpoint stays whole until this
        except (OSError, RuntimeError) as err:   # a full disk, a missing folder: go on
            self.checkpoint_warning = (f"the checkpoint {path} could not be written ({err}); "
                                       f"the previous one, if any, is intact")
        finally:                        # also when interrupted mid-write
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self._last_write = now

    def restore_checkpoint(self, path) -> None:
        ckpt = read_checkpoint(path)
        if ckpt["fingerprint"] != self.fingerprint:
            raise FitError(
                f"The checkpoint {path} was written by a fit of a different model, data or "
                f"options; resume needs the same ones (only "
                f"{', '.join(_RESUMABLE[:-1])} and {_RESUMABLE[-1]} may change). Start a new "
                f"fit without resume=.")
        p = self.problem
        try:
            p.continuity = float(ckpt["continuity"])
            p.use_windows(bool(ckpt["active"]))
            p.load_state_dict(ckpt["problem"])
            p.field.nfe = int(ckpt["nfe"])
            self.best_state = ckpt["best_state"]
            self.best_loss = float(ckpt["best_loss"])
            self.rows = list(ckpt["rows"])
            self.epoch = int(ckpt["epoch"])
            self.done = {k: FitStatus(*v) for k, v in ckpt["done"].items()}
            self.pending = ckpt["pending"]
            self.phase = ckpt["phase"]
            self.elapsed = float(ckpt["elapsed"])
            self.penalty = float(ckpt.get("penalty", self.penalty))
            self.anchor = ckpt.get("anchor")
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as err:
            why = " ".join(str(err).split())
            raise FileFormatError(f"{path}: the checkpoint's entries do not fit this fit "
                                  f"({type(err).__name__}: {why}); it was edited or damaged. "
                                  f"Start a new fit without resume=.") from None
