"""The gradient engine of the one-shot methods: what FF, `fisher`, IU and SSD compute from
gradients over a loader, in one place.

- Per-sample gradients (`per_sample_gradient_chunks`, `retain_gradient_stream`): `torch.func`'s
  vmap of grad of a functional call, streamed one chunk at a time, so that memory is set by
  the chunk (--iu_chunk_size), never by the batch. IU folds them into its WoodFisher
  recursion, `fisher` into its per-sample Fisher (`per_sample_fisher`); `summed_gradient`
  sums them in chunk-sized backward passes.
- Squared per-batch gradients (`squared_gradients`): per parameter, the mean over batches of
  the squared gradient of each batch's loss. FF weighs one loss per class by the batch's mean
  probability of it (`fisher_diagonal`, three ways to the same numbers: "loop", "batched",
  "grouped", or the fastest "measured"); SSD takes the loss of the true labels.

All of it runs in eval mode; under torchrun each rank takes a block of the batches and the
sums are added across ranks.
"""

import logging
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from tqdm import tqdm

import distributed
from utils import device_synchronize

log = logging.getLogger("unlearn_sparse")

# ---------------------------------------------------------------- per-sample gradients, streamed by chunk


MAX_CHUNK = 32  # beyond this the batched call stops paying on CPU (bench/iu_grads.py)


MEMORY_SHARE = 0.25  # of the free memory one chunk of per-sample gradients may take


def free_memory_bytes(device):
    """Free memory on the device: CUDA's own count, else the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: MemAvailable counts reclaimable page cache, unlike the free pages
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**30


def default_chunk_size(model):
    """Samples per vmapped gradient call: fits a share of the free memory, at most MAX_CHUNK.

    Each sample's gradient is as large as the model, plus about as much again for the
    activations of the backward pass.
    """
    params = list(model.parameters())
    per_sample = 2 * 4 * sum(p.numel() for p in params)
    budget = MEMORY_SHARE * free_memory_bytes(params[0].device)
    max_chunk = 4 * MAX_CHUNK if params[0].device.type == "cuda" else MAX_CHUNK
    return int(max(1, min(max_chunk, budget // per_sample)))


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def summed_gradient(model, loader, chunk_size=None):
    """Sum over the loader's samples of the per-sample loss gradients (eval mode), flat.

    Each batch goes through the backward pass in parts of `chunk_size` samples, so that its
    activations take no more memory than one chunk of per-sample gradients.
    """
    model.eval()
    params = list(model.parameters())
    device = params[0].device
    chunk_size = chunk_size or default_chunk_size(model)
    total = torch.zeros(sum(p.numel() for p in params), device=device)
    for images, labels in distributed.batch_block(loader):  # under torchrun each rank sums a block, then all of them
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        for part in range(0, len(labels), chunk_size):
            loss = F.cross_entropy(model(images[part : part + chunk_size]), labels[part : part + chunk_size], reduction="sum")
            total += flat(torch.autograd.grad(loss, params))
    return distributed.sum_over_ranks_([total], loader)[0]


def per_sample_gradient_chunks(model, images, labels, chunk_size=None):
    """(chunk, P) matrices of per-sample loss gradients (eval mode), one chunk at a time.

    Only one chunk is alive at a time: each is handed on and dropped before the next is
    computed, so memory is set by `chunk_size`, never by how many samples there are.
    """
    model.eval()
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss_of(param_values, image, label):
        logits = functional_call(model, ({**param_values}, buffers), (image[None],))
        return F.cross_entropy(logits, label[None])

    sample_grad = vmap(grad(loss_of), in_dims=(None, 0, 0))
    chunk_size = chunk_size or default_chunk_size(model)
    for start in range(0, len(labels), chunk_size):
        stop = min(start + chunk_size, len(labels))
        g = sample_grad(params, images[start:stop], labels[start:stop])
        rows = torch.cat([g.pop(name).reshape(stop - start, -1) for name in names], dim=1)
        del g
        yield rows
        del rows  # before the next chunk is computed


def per_sample_gradients(model, images, labels, chunk_size=None):
    """The whole (n, P) matrix of per-sample gradients: for tests and benchmarks; IU streams them."""
    return torch.cat(list(per_sample_gradient_chunks(model, images, labels, chunk_size)))


def retain_gradient_stream(model, loader, chunk_size=None, desc="IU per-sample gradients"):
    """(chunk, P) per-sample gradient matrices over the loader's samples in order, one chunk alive at a time."""
    device = next(model.parameters()).device
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=distributed.no_progress_bar()):
        yield from per_sample_gradient_chunks(model, images.to(device, non_blocking=True), labels.to(device, non_blocking=True), chunk_size)


OLD_FISHER_EPSILON = 1e-8  # added to each per-sample derivative before squaring, as the original


def per_sample_fisher(model, loader, chunk_size=None):
    """Mean over the loader's samples of (d log p_y / d theta + 1e-8)^2, flat (eval mode).

    d log p_y / d theta is minus the per-sample cross-entropy gradient.
    """
    device = next(model.parameters()).device
    total = torch.zeros(sum(p.numel() for p in model.parameters()), device=device)
    n = torch.zeros((), device=device)
    for grads in retain_gradient_stream(model, distributed.batch_block(loader), chunk_size, desc="Fisher per-sample gradients"):
        n += len(grads)
        total.add_(grads.neg_().add_(OLD_FISHER_EPSILON).pow_(2).sum(dim=0))  # in place: no second chunk-sized copy
        del grads  # before the next chunk is computed
    distributed.sum_over_ranks_([total, n], loader)
    return total / max(n.item(), 1)


# ---------------------------------------------------------------- squared per-batch gradients


FISHER_METHODS = ("loop", "batched", "grouped")
# Which method "measured" found fastest, per model class, device, batch shape and class
# count: a second Fisher in the same process (a sweep, a benchmark) skips the trial.
MEASURED_CHOICES = {}


def fisher_diagonal(model, loader, num_classes, method=None):
    """Per parameter, the class-weighted squared gradients averaged over batches.

    Three ways to get the `num_classes` gradients of a batch, equal up to float rounding:
    - "loop": one backward pass per class (the original; fastest on a few CPU cores);
    - "batched": one vmapped backward (`is_grads_batched`); vmap still runs the
      convolution and batch-norm backward once per class;
    - "grouped": the batch repeated once per class through one forward and one backward
      pass, each layer's per-class weight gradients then computed from its kept input
      and output gradient in one call per layer (see `_GroupedFisher`).
    "measured" runs each of them (grouped only where every layer with parameters is a
    Conv2d, eval-mode BatchNorm2d or Linear, run once per forward pass) on a batch to
    warm up and on a second batch timed, then the fastest on the rest; every batch
    counts towards the Fisher.
    `method=None` is "measured" on CUDA, where the fastest depends on the GPU and the
    model, and "loop" elsewhere.
    """
    model.eval()
    params = list(model.parameters())
    device = params[0].device
    if method not in (None, "measured", *FISHER_METHODS):
        raise ValueError(f"unknown Fisher method {method!r}: choose one of measured, {', '.join(FISHER_METHODS)}")
    layers = grouped_layers(model) if method in (None, "measured", "grouped") else None
    if method is None:
        method = "measured" if device.type == "cuda" else "loop"
    if method == "grouped" and layers is None:
        raise ValueError("grouped Fisher needs every layer with parameters to be a Conv2d, eval-mode BatchNorm2d or Linear")
    if method == "measured":
        candidates = [m for m in ("grouped", "batched", "loop") if m != "grouped" or layers is not None]
    else:
        candidates = [method]
    grouped = _GroupedFisher(model, layers) if "grouped" in candidates else None
    chooser = None

    def add_batch(images, labels, sums):
        nonlocal chooser
        chooser = chooser or FastestMethod(candidates, key=(type(model), device, tuple(images.shape), num_classes))
        chooser.run_batch(lambda how, images: accumulate(how, images, sums), images)

    def accumulate(how, images, sums):
        if how == "grouped":
            grouped.add_batch(images, num_classes)
            return
        logits = model(images)
        weights = F.softmax(logits, dim=-1).detach().mean(dim=0)  # mean_batch(p_y) for every class y
        if how == "batched":
            _accumulate_batched(sums, params, logits, weights, num_classes)
        else:
            _accumulate_loop(sums, params, logits, weights, num_classes)

    def add_grouped(sums):
        for p, part in grouped.result().items():
            sums[p].add_(part)

    return mean_over_batches(model, loader, add_batch, "FF Fisher", finish=add_grouped if grouped is not None else None)


def mean_over_batches(model, loader, add_batch, desc, finish=None):
    """Per parameter, what `add_batch(images, labels, sums)` adds to `sums` over the loader's batches
    (eval mode), then `finish(sums)`, divided by the number of batches. Under torchrun each rank
    takes a block of the batches and the sums and counts are added up across ranks."""
    model.eval()
    params = list(model.parameters())
    device = params[0].device
    sums = {p: torch.zeros_like(p) for p in params}
    batches = 0
    for images, labels in tqdm(distributed.batch_block(loader), desc=desc, leave=False, disable=distributed.no_progress_bar()):
        add_batch(images.to(device), labels.to(device) if torch.is_tensor(labels) else labels, sums)
        batches += 1
    if finish is not None:
        finish(sums)
    count = torch.tensor(float(batches), device=device)
    distributed.sum_over_ranks_([*sums.values(), count], loader)
    return [sums[p] / max(count.item(), 1) for p in params]


def true_label_squared_gradients(model, loader, desc="squared gradients"):
    """Per parameter, the mean over the loader's batches of the squared gradient of the batch's
    mean cross-entropy with its true labels (eval mode): SSD's importances (`calc_importance`)."""
    params = list(model.parameters())

    def add_batch(images, labels, sums):
        grads = torch.autograd.grad(F.cross_entropy(model(images), labels), params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                sums[p].add_(g.pow(2))

    return mean_over_batches(model, loader, add_batch, desc)


class FastestMethod:
    """Picks the fastest of `candidates` by trial: each runs one batch to warm up, then one timed.

    With one candidate there is nothing to try; a choice made before under `key` is reused.
    """

    def __init__(self, candidates, key=None):
        self.key, self.seconds, self.trials = key, {}, []
        self.chosen = candidates[0] if len(candidates) == 1 else MEASURED_CHOICES.get(key)
        if self.chosen is None:
            self.trials = list(candidates) * 2  # a warm-up round (cuDNN autotuning, allocations), then the timed one

    def run_batch(self, work, images):
        """`work(method, images)` with the chosen method, or the next on trial."""
        if self.chosen is not None:
            work(self.chosen, images)
            return
        method = self.trials.pop(0)
        device_synchronize(images.device)
        start = time.perf_counter()
        try:
            work(method, images)
        except LayerRunsTwice:  # found in the forward pass, before anything was accumulated
            log.info("FF Fisher: a layer runs twice per forward pass, so grouped is left out")
            self.trials = [m for m in self.trials if m != method]
            self.run_batch(work, images)
            return
        device_synchronize(images.device)
        if method in self.trials:  # its warm-up batch
            return
        self.seconds[method] = time.perf_counter() - start
        if not self.trials:
            self.chosen = MEASURED_CHOICES[self.key] = min(self.seconds, key=self.seconds.get)
            timings = ", ".join(f"{m} {1e3 * s:.1f} ms" for m, s in self.seconds.items())
            log.info("FF Fisher: one batch takes %s; the rest use %s", timings, self.chosen)


def _accumulate_loop(fisher, params, logits, weights, num_classes):
    for y in range(num_classes):
        target = torch.full((len(logits),), y, dtype=torch.long, device=logits.device)
        grads = torch.autograd.grad(F.cross_entropy(logits, target), params, retain_graph=y < num_classes - 1, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                fisher[p].add_(weights[y] * g.pow(2))


def _accumulate_batched(fisher, params, logits, weights, num_classes, budget_bytes=512 * 2**20):
    """The per-class backward passes of one batch, several classes per (vmapped) call."""
    # CE(logits, all targets y) = logsumexp(logits) - mean(logits[:, y]), for every y at once.
    losses = (torch.logsumexp(logits, dim=1)[:, None] - logits).mean(dim=0)
    n_params = sum(p.numel() for p in params)
    per_call = max(1, min(num_classes, budget_bytes // (4 * n_params)))
    eye = torch.eye(num_classes, device=logits.device, dtype=logits.dtype)
    for start in range(0, num_classes, per_call):
        stop = min(start + per_call, num_classes)
        grads = torch.autograd.grad(losses, params, grad_outputs=eye[start:stop], is_grads_batched=True, retain_graph=stop < num_classes)
        w = weights[start:stop]
        for p, g in zip(params, grads):
            fisher[p].add_(torch.tensordot(w, g.pow(2), dims=1))


def grouped_layers(model):
    """The layers that own parameters, if "grouped" can handle them all; else None."""
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    for layer in layers:
        conv = isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
        norm = isinstance(layer, nn.BatchNorm2d) and not layer.training and layer.running_var is not None
        if not (conv or norm or isinstance(layer, nn.Linear)):
            return None
    return layers


class LayerRunsTwice(ValueError):
    """A layer ran twice in one forward pass (shared weights): "grouped" cannot split its gradients."""


class _LayerTaps:
    """Forward hooks keeping each layer's input (one copy of the batch) and its output's gradient."""

    def __init__(self, layers, batch_size):
        self.batch_size, self.inputs, self.grads = batch_size, {}, {}
        self.handles = [layer.register_forward_hook(self._keep_input) for layer in layers]

    def _keep_input(self, layer, inputs, output):
        if layer in self.inputs:
            raise LayerRunsTwice("grouped Fisher needs each layer to run once per forward pass; use --ff_method loop")
        # Every copy of the batch sees the same activations; the clone guards against later in-place ops.
        self.inputs[layer] = inputs[0][: self.batch_size].detach().clone()
        # A tensor hook gets the gradient of the value the layer returned, even if an
        # in-place op (ReLU(inplace=True), `out += shortcut`) changes the tensor later.
        output.register_hook(lambda grad: self.grads.__setitem__(layer, grad))

    def remove(self):
        for handle in self.handles:
            handle.remove()


class _GroupedFisher:
    """Accumulates the Fisher diagonal batch by batch the "grouped" way, in one flat vector.

    The loss of class y is the batch-mean CE with all targets y, so its gradient at the
    logits is (softmax - onehot(y)) / batch. One forward and one backward pass over k
    copies of the batch carry these for k classes (eval mode: the copies do not
    interact). A plain backward would sum the weight gradients over the copies; instead
    each layer's per-class weight gradients are computed from its kept input and output
    gradient in one call per layer, then squared and weighted all at once.
    """

    def __init__(self, model, layers):
        self.model, self.layers, self.per_pass = model, layers, None
        self.params = [(layer, name, p) for layer in layers for name, p in layer.named_parameters(recurse=False)]
        self.flat = torch.zeros(sum(p.numel() for *_, p in self.params), device=self.params[0][2].device)
        # Pruned layers hold weight_orig and weight_mask: d/d weight_orig = mask * d/d weight.
        masks = [
            getattr(layer, name.removesuffix("_orig") + "_mask", None) if name.endswith("_orig") else None for layer, name, _ in self.params
        ]
        self.mask = torch.cat([(m if m is not None else torch.ones_like(p)).reshape(-1) for m, (*_, p) in zip(masks, self.params)])
        self.norm_stats = {
            layer: (layer.running_mean[:, None, None], torch.rsqrt(layer.running_var + layer.eps)[:, None, None])
            for layer in layers
            if isinstance(layer, nn.BatchNorm2d)
        }

    def add_batch(self, images, num_classes):
        batch = len(images)
        self.per_pass = self.per_pass or grouped_classes_per_pass(self.model, images, num_classes)
        for start in range(0, num_classes, self.per_pass):
            classes = torch.arange(start, min(start + self.per_pass, num_classes), device=images.device)
            k = len(classes)
            taps = _LayerTaps(self.layers, batch)
            try:
                copies = images.repeat(k, *([1] * (images.ndim - 1))).requires_grad_()
                logits = self.model(copies)
                prob = F.softmax(logits[:batch].detach(), dim=-1)
                targets = F.one_hot(classes.repeat_interleave(batch), logits.shape[1]).to(prob.dtype)
                torch.autograd.grad(logits, copies, grad_outputs=(prob.repeat(k, 1) - targets) / batch)
            finally:
                taps.remove()
            grads = {layer: self._layer_grads(layer, taps.inputs[layer], taps.grads[layer], k) for layer in self.layers}
            per_class = torch.cat([grads[layer][name.removesuffix("_orig")].reshape(k, -1) for layer, name, _ in self.params], dim=1)
            per_class.mul_(self.mask).pow_(2)
            weights = prob.mean(dim=0)[classes]  # mean_batch(p_y)
            self.flat.add_(weights @ per_class)

    def _layer_grads(self, layer, x, grad_out, k):
        """{"weight": (k, *shape), "bias": (k, *shape)}: `layer`'s gradients for each of k classes.

        `x` is the layer's input for one copy of the batch, `grad_out` (k * batch, ...)
        the gradient of its output for the k copies.
        """
        g = grad_out.reshape(k, -1, *grad_out.shape[1:])
        if isinstance(layer, nn.Linear):
            return {"weight": torch.einsum("cb...o,b...i->coi", g, x), "bias": g.sum(dim=tuple(range(1, g.ndim - 1)))}
        bias = g.sum(dim=(1, 3, 4))
        if isinstance(layer, nn.Conv2d):
            # Stacking the classes along the output channels makes k weight gradients one
            # convolution backward: dW[c * O + o] = sum over b, h, w of g[c, b, o] * input patch.
            batch, out_channels = g.shape[1], g.shape[2]
            stacked = g.transpose(0, 1).reshape(batch, k * out_channels, *g.shape[3:])
            shape = (k * out_channels, *layer.weight.shape[1:])
            weight = torch.nn.grad.conv2d_weight(x, shape, stacked, layer.stride, layer.padding, layer.dilation)
            return {"weight": weight.view(k, *layer.weight.shape), "bias": bias}
        mean, inv_std = self.norm_stats[layer]  # BatchNorm2d in eval mode: y = x_hat * weight + bias
        return {"weight": (g * ((x - mean) * inv_std)).sum(dim=(1, 3, 4)), "bias": bias}

    def result(self):
        """{parameter: its share of the accumulated Fisher diagonal}."""
        return {p: part.view_as(p) for (*_, p), part in zip(self.params, self.flat.split([p.numel() for *_, p in self.params]))}


def grouped_classes_per_pass(model, images, num_classes):
    """Copies of the batch per pass that fit a share of the free memory (at least 1)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, out: sizes.append(out.numel() * out.element_size())) for m in model.modules()]
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for hook in hooks:
            hook.remove()
    # Activations, the graph's saved tensors and the gradients: about three times the
    # outputs (containers' outputs count again: an overestimate); then the flat per-class gradients.
    per_copy = 3 * sum(sizes) * len(images) + 4 * sum(p.numel() for p in model.parameters())
    return int(max(1, min(num_classes, MEMORY_SHARE * free_memory_bytes(images.device) // max(per_copy, 1))))
