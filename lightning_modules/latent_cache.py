"""The frozen VAE's posterior of a fixed training set, computed once and sampled at every step
(and, in a second instance, of the validation images, which every validation encodes again).

Training encodes each batch through the VAE encoder (image, depth target, normal target) and draws
z = mean + std * eps from the posterior (FE2E samples it). The encoder is frozen, so for a small
training set the posterior (mean, std) of every encoder input can be kept in memory and only eps
drawn per step: `LatentCache.encode` makes the SAME randn call on the same generator as
`backbone.encode` and applies the same `latent_from_posterior`, so the latents are bit-identical to
direct encoding as long as the cached moments are.

Exactness. Entries are keyed by the encoder input's bytes, or by the bytes of what it is a pure
function of (the quantized depth target: depth and mask, so a cached target skips the quantization
too); the two horizontal flips of a sample are two entries, each flip encoded for real (the latent
of a flipped image is not the flipped latent). Keys include the batch size (some kernels change with the batch size: on CPU the tiny VAE's
moments of a sample differ by ~3e-6 between a batch of 1 and one of 4, but not between batches of 4
of other samples). A batch with any input not yet cached is encoded whole, exactly as without the
cache, and its new inputs stored; the inputs it holds that ARE cached are compared bit for bit with
the fresh moments. A batch whose inputs are all cached is served from memory only after such a
comparison has passed on this device; a mismatch turns the cache off for the rest of the run (logged).

Memory: mean and std are float32 with 16 channels at 1/8 resolution, 2 * 4 * 16 / 64 = 2 bytes per
input pixel: an (H, W) sample costs 2*H*W bytes per encoded target (image, depth, normal) and flip,
e.g. 147 KB for image+depth+normal x 2 flips at 96x128 (the embedded default: ~10 MB for its 49
samples), 9.4 MB at 768x1024. Entries live in host memory. When they would exceed `max_mb`, the
cache is dropped and turned off: a training set that does not fit (e.g. Hypersim at 768x1024, 54K
samples) is then encoded directly, as without the cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

import torch

from lightning_modules.backbones.base import GeometryBackbone

log = logging.getLogger(__name__)


def supports_posterior(backbone) -> bool:
    """True when `backbone` splits `encode` into `posterior` + `latent_from_posterior` and its VAE is frozen."""
    if not isinstance(backbone, GeometryBackbone) or type(backbone).posterior is GeometryBackbone.posterior:
        return False
    vae = getattr(backbone, "vae", None)
    return vae is not None and not any(p.requires_grad for p in vae.parameters())


def input_keys(sources: Sequence[torch.Tensor], tag: str = "") -> list[tuple]:
    """Keys of the B encoder inputs of a batch made from `sources` ((B, ...) tensors whose sample i
    determines input i): (tag, B, every source's per-sample shape and dtype, BLAKE2b-128 digest of
    sample i's bytes in every source)."""
    batch = sources[0].shape[0]
    layout = tuple((tuple(t.shape[1:]), str(t.dtype)) for t in sources)
    arrays = [t.detach().contiguous().cpu().view(torch.uint8).numpy() for t in sources]
    keys = []
    for i in range(batch):
        digest = hashlib.blake2b(digest_size=16)
        for arr in arrays:
            digest.update(arr[i])
        keys.append((tag, batch, layout, digest.digest()))
    return keys


class LatentCache:
    """Memoised VAE posteriors of training inputs (see the module docstring).

    max_mb: host memory budget in MiB (1 MiB = 2**20 bytes); 0 or less = off. what: what it holds (the log's words).
    Counters: `hits` / `misses` (inputs served from memory / encoded), `verified` (a comparison with
    fresh moments has passed), `enabled`.
    """

    def __init__(self, max_mb: float = 1024.0, what: str = "training inputs") -> None:
        self.max_bytes = float(max_mb) * 2**20
        self.what = what
        self.enabled = self.max_bytes > 0
        self.entries: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.nbytes = 0
        self.verified = False
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict:
        """Pickled (spawned DDP workers, checkpoints of the module) without its entries."""
        state = dict(self.__dict__)
        state["entries"], state["nbytes"] = {}, 0
        return state

    def summary(self) -> str:
        """One line for the log: state, inputs served from memory / encoded, memory held."""
        state = "on" if self.enabled else "off"
        return (f"latent cache of {self.what} {state}: {self.hits} inputs served from cached posteriors, "
                f"{self.misses} encoded; "
                f"{len(self.entries)} entries, {self.nbytes / 2**20:.1f} MiB")

    def _turn_off(self, why: str) -> None:
        log.info("latent cache of %s off: %s", self.what, why)
        self.enabled = False
        self.entries.clear()
        self.nbytes = 0

    def encode(self, backbone, x: torch.Tensor | Callable[[], torch.Tensor], sample: bool = True,
               generator: torch.Generator | None = None, sources: Sequence[torch.Tensor] | None = None,
               tag: str = "") -> torch.Tensor:
        """`backbone.encode(x, sample, generator)`, from cached posteriors where that is exact.

        x: the encoder input (B,3,H,W), or a function making it from `sources`, (B, ...) tensors whose
        sample i alone determines input i (e.g. depth and mask for the quantized depth target): x is
        then made only when some input is not cached. `tag` names what x is made from them (e.g.
        "depth:log"), so entries of different recipes never meet.
        """
        make = x if callable(x) else (lambda: x)
        if not self.enabled or not supports_posterior(backbone):
            return backbone.encode(make(), sample=sample, generator=generator)
        keys = input_keys([x] if sources is None else sources, tag)
        cached = [self.entries.get(k) for k in keys]
        if self.verified and all(c is not None for c in cached):
            self.hits += len(keys)
            device = (x if sources is None else sources[0]).device
            mean = torch.stack([c[0] for c in cached]).to(device)
            std = torch.stack([c[1] for c in cached]).to(device)
            return backbone.latent_from_posterior(mean, std, sample=sample, generator=generator)
        mean, std = backbone.posterior(make())
        self.misses += len(keys)
        self._check_and_store(keys, cached, mean, std)
        return backbone.latent_from_posterior(mean, std, sample=sample, generator=generator)

    def _check_and_store(self, keys: list[tuple], cached: list, mean: torch.Tensor, std: torch.Tensor) -> None:
        fresh_mean, fresh_std = mean.detach().cpu(), std.detach().cpu()
        for i, c in enumerate(cached):
            if c is None:
                continue
            if not (torch.equal(c[0], fresh_mean[i]) and torch.equal(c[1], fresh_std[i])):
                diff = float((c[0] - fresh_mean[i]).abs().max())
                self._turn_off(f"a cached posterior differs from a fresh encode of the same input (max |mean "
                               f"difference| {diff:.3g}): this device's VAE kernels depend on the batch's content")
                return
            self.verified = True
        for i, c in enumerate(cached):
            if c is not None or keys[i] in self.entries:  # an input twice in one batch: stored once
                continue
            m, s = fresh_mean[i].clone(), fresh_std[i].clone()
            self.nbytes += m.numel() * m.element_size() + s.numel() * s.element_size()
            if self.nbytes > self.max_bytes:
                self._turn_off(f"the posteriors need more than data.latent_cache_mb="
                               f"{self.max_bytes / 2**20:g} MiB")
                return
            self.entries[keys[i]] = (m, s)
