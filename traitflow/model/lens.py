"""The logit lens: a layer's residual stream read through the model's own final norm and unembedding.

Its cost is the unembedding, [tokens, d] @ [d, vocab] per lens layer: at gemma-2-2b's
2304 x 256,000 that is about 7.6x the multiply-adds of one decoder block per token
(docs/benchmarks.md measures it). Nothing else touches the [tokens, vocab] logits more
than it must: the matmul writes into one buffer reused for every chunk and layer, the
soft-cap runs in place, top-k is taken from the logits (soft-cap and softmax are
monotonic) through group maxima, and the probabilities come from a log-sum-exp computed
in place over that buffer, on a CPU a cache-sized block of rows at a time; no softmax
tensor, no float32 copy, all in the model's dtype on its device.

capture.logit_lens_layers chooses the layers: `all`, a list of indices, or {every: N}. The
plan reads this module (plan_lens), so torch is imported only where the lens runs.
"""

from .arch import architecture_for, get_module
from ..core.errors import TraitflowError

# Elements of the [chunk, vocab] logits buffer (a 256k vocabulary: 262 tokens a chunk, 256 MB in float32).
LENS_CHUNK_ELEMENTS = 1 << 26
# Bytes of logits each pass after the matmul covers on a CPU: about an L2 cache, so the passes read memory once.
CACHE_BYTES = 1 << 21
LAYERS_KEY = "config capture.logit_lens_layers"


def lens_layers(value, n_layers):
    """The sorted layer indices of capture.logit_lens_layers: `all`, a list, or {every: N}.

    {every: N} counts back from the last layer, which is always included (its lens is the
    model's own prediction): 26 layers, every 4 -> 1, 5, 9, 13, 17, 21, 25.
    """
    if value == "all":
        return list(range(n_layers))
    if isinstance(value, dict):
        if int(value.get("every", 0)) < 1:
            raise TraitflowError(LAYERS_KEY, f"{value} has no stride of 1 or more", "write {every: N} with N >= 1")
        return list(range(n_layers - 1, -1, -int(value["every"])))[::-1]
    bad = sorted(layer for layer in value if not 0 <= layer < n_layers)
    if bad:
        raise TraitflowError(LAYERS_KEY, f"layer{'s' * (len(bad) > 1)} {', '.join(map(str, bad))} "
                             f"do{'es' * (len(bad) == 1)} not exist (the model has layers 0-{n_layers - 1})",
                             "pick from those, or write `all` or {every: N}")
    return sorted(set(value))


def plan_lens(capture_config, n_layers):
    """(top_k, layers) the capture job gets as params: (0, []) when the lens is off."""
    if not capture_config.get("logit_lens", True):
        return 0, []
    return capture_config.get("logit_lens_top_k", 5), lens_layers(capture_config.get("logit_lens_layers", "all"),
                                                                   n_layers)


class LogitLens:
    """Top-k next tokens and their probabilities from residual streams, at the chosen layers."""

    def __init__(self, model, top_k, layers=None):
        import torch

        arch = architecture_for(model.config)
        self.norm = get_module(model, arch.final_norm)
        self.unembed = get_module(model, arch.unembed)
        self.cap = getattr(model.config, "final_logit_softcapping", None)
        self.k = top_k
        n = model.config.num_hidden_layers
        self.layers = lens_layers("all" if layers is None else layers, n)
        self.row = {layer: j for j, layer in enumerate(self.layers)}  # layer -> index in the lens' layer axis
        # A bias-free Linear (every supported architecture) writes straight into the reused buffer.
        linear = isinstance(self.unembed, torch.nn.Linear) and self.unembed.bias is None
        self.weight = self.unembed.weight if linear else None
        self.vocab = self.unembed.weight.shape[0] if hasattr(self.unembed, "weight") else model.config.vocab_size
        self.buffer = None

    def logits(self, h):
        """h [N, d] -> logits [N, vocab] in the model's dtype (a view of the reused buffer), before the soft-cap."""
        import torch

        x = self.norm(h)
        if self.weight is None:
            return self.unembed(x)
        n = len(x)
        if self.buffer is None or len(self.buffer) < n:
            self.buffer = torch.empty(n, self.vocab, dtype=x.dtype, device=x.device)
        return torch.mm(x, self.weight.T, out=self.buffer[:n])

    def top_k(self, h):
        """h [B, T, d] -> (ids [B, T, k] int64, probabilities [B, T, k] float32), in token chunks."""
        import torch

        flat = h.reshape(-1, h.shape[-1])
        # Chunks of equal size: a short last chunk would stream the whole unembedding once more for a few tokens.
        chunks = -(-len(flat) // max(1, LENS_CHUNK_ELEMENTS // self.vocab))
        step = -(-len(flat) // chunks)
        ids, probs = [], []
        with torch.no_grad():  # out= buffers and in-place ops; the lens is never differentiated
            for start in range(0, len(flat), step):
                logits = self.logits(flat[start:start + step])
                # On a CPU the passes after the matmul run over cache-sized blocks of rows (0.6x the time of
                # passes over the whole chunk, measured); on a GPU each op is one launch over the chunk.
                rows = len(logits) if logits.is_cuda else max(1, CACHE_BYTES // logits[0].nbytes)
                for r in range(0, len(logits), rows):
                    top, p = self._top_k_probs(logits[r:r + rows])
                    ids.append(top)
                    probs.append(p)
        return torch.cat(ids).view(*h.shape[:2], self.k), torch.cat(probs).view(*h.shape[:2], self.k)

    def _top_k_probs(self, logits):
        """Soft-cap, top-k and probabilities of logits [n, vocab], in place: the logits are spent."""
        import torch

        if self.cap:  # Gemma-2's final soft-cap, in the model's dtype and order: its own logits, exactly
            logits.div_(self.cap).tanh_().mul_(self.cap)
        values, top = top_k(logits, self.k)
        peak = values[:, :1]
        # log-sum-exp shifted by the largest logit; no softmax tensor.
        total = logits.sub_(peak).exp_().sum(-1, keepdim=True, dtype=torch.float32)
        return top, (values.float() - peak.float()).exp_().div_(total)

def top_k(x, k, group=256):
    """torch.topk(x, k) over the last axis of a 2-D x, sorted: (values, indices).

    The k largest entries lie in the k groups (of `group` consecutive entries) with the largest
    maxima, so one vectorised max pass plus a top-k over those k groups replaces a full top-k,
    which on a CPU costs several max passes (160 vs 30 ms over [262, 256000] on one thread).
    """
    import torch

    n, v = x.shape
    groups = v // group
    if groups < 4 * k:
        return x.topk(k, dim=-1)
    best = x[:, :groups * group].unflatten(-1, (groups, group)).amax(-1).topk(k, dim=-1).indices
    cols = (best[:, :, None] * group + torch.arange(group, device=x.device)).flatten(1)
    if v > groups * group:  # the last, partial group is always a candidate
        cols = torch.cat([cols, torch.arange(groups * group, v, device=x.device).expand(n, -1)], dim=1)
    top = x.gather(1, cols).topk(k, dim=-1)
    return top.values, cols.gather(1, top.indices)
