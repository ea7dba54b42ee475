"""Skip the one block of work no result reads: the last layer's output at every position but the first.

The engine reads each layer's attention weights (computed *before* a layer's output projection and feed-forward
block) and a classifier's logits, which BERT-family heads compute from the final hidden state at position 0 only
([CLS], ``<s>``). So inside :func:`first_position_only`, the last layer's attention-output projection and
feed-forward block run at position 0 alone: for a 6-layer encoder about an eighth less work per pass, forward and
backward. Attention weights ``[layer, batch, head, query, key]``, logits and the gradients of a logit equal the full
pass's to float32 rounding; the hook is installed only when a probe input shows exactly that
(:func:`install_first_position_hook`), so an architecture it does not fit keeps full passes.

Final hidden states are *not* whole inside the context (``[batch, 1, hidden]``): never read them there.
"""

from __future__ import annotations

# Lazy imports (torch, transformers): loaded on first use, so `import attention` stays light (PEP 562 names).
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Per thread (and task): one web request's context never changes another's passes.
_ACTIVE: ContextVar[bool] = ContextVar("attention_flows_first_position_only", default=False)
PROBE_TOLERANCE = 1e-4  # float32 rounding of a 6–24-layer pass is ~1e-6; a head reading other positions is ~1e-1


@contextmanager
def first_position_only() -> Iterator[None]:
    """Passes inside compute the last layer's output at position 0 only (models with the hook installed)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _keep_first_position(module, args: tuple):
    """Forward pre-hook of the last layer's attention-output block ``(hidden_states, input_tensor)``: both cut to
    ``[batch, 1, hidden]`` while :func:`first_position_only` is active."""
    if not _ACTIVE.get() or len(args) != 2:
        return None
    return tuple(tensor[:, :1] for tensor in args)


def _last_attention_output(network):
    """The last layer's attention-output module of a BERT-style encoder (``encoder.layer[-1].attention.output``),
    or None for another layout."""
    encoder = getattr(getattr(network, "base_model", network), "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not layers:
        return None
    return getattr(getattr(layers[-1], "attention", None), "output", None)


def install_first_position_hook(network, tokenizer) -> bool:
    """Register the hook on ``network``'s last layer if it fits: a probe input's logits (or, for a bare encoder,
    its position-0 output) and attention weights must match the full pass within :data:`PROBE_TOLERANCE`.
    Returns whether it was installed."""
    import torch

    target = _last_attention_output(network)
    if target is None:
        return False
    handle = target.register_forward_pre_hook(_keep_first_position)
    try:
        probe = tokenizer("the probe", "checks the shortcut", return_tensors="pt")
        with torch.inference_mode():
            full = network(**probe, output_attentions=True)
            with first_position_only():
                cut = network(**probe, output_attentions=True)
        fits = _same(full, cut)
    except Exception:  # any failure of the cut pass only means full passes for this model, never a failed load
        fits = False
    if not fits:
        handle.remove()
    return fits


def _same(full, cut) -> bool:
    import torch

    if not full.attentions or len(full.attentions) != len(cut.attentions):
        return False
    pairs = list(zip(full.attentions, cut.attentions, strict=True))
    if getattr(full, "logits", None) is not None:
        pairs.append((full.logits, cut.logits))
    else:
        pairs.append((full.last_hidden_state[:, 0], cut.last_hidden_state[:, 0]))
    return all(a.shape == b.shape and torch.allclose(a, b, atol=PROBE_TOLERANCE, rtol=0) for a, b in pairs)
