"""Cross-entropy of the tied LM head without materializing the full (N, vocab) logits.

A plain training loop writes N × 50257 float logits, a log-softmax of the same size, and its
gradient: gigabytes of memory traffic per step that dominate a small model's cost. Here the logits
are made one chunk of rows at a time, their loss and gradients are taken immediately, and only the
gradients with respect to the hidden states and the head weight are kept for backward.
"""

import torch


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, group):
        # hidden (N, C), weight (V, C), targets (N,)
        n_rows, vocab_size = hidden.size(0), weight.size(0)
        # the three head matmuls run in autocast's dtype when autocast is on (bf16 units make them
        # several times faster)
        device_type = hidden.device.type
        on = torch.is_autocast_enabled(device_type)
        compute_dtype = torch.get_autocast_dtype(device_type) if on else hidden.dtype
        with torch.autocast(device_type, enabled=False):
            weight_c = weight.to(compute_dtype)  # (V, C)
            weight_t = weight_c.t().contiguous()  # (C, V): the layout the logits matmul reads fastest
            hidden_c = hidden.to(compute_dtype)
            grad_hidden = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            # The gradient of the summed loss with respect to a row of logits is softmax - onehot,
            # = exp(l) / sum_exp - onehot. Only exp(l) is written to the big buffer: the division and
            # the onehot are applied to the (rows, C) results of the two gradient matmuls instead, which
            # saves two passes over (rows, V). Chunks of `chunk_size` rows fill a buffer of `group`
            # chunks; the gradient matmuls then run once per group. Buffers are reused: faulting in
            # fresh (rows, V) pages per chunk costs more than the arithmetic. Under bf16 autocast the
            # exponentials are bf16 too: the logits come out of the matmul rounded to bf16 and go back
            # into one in bf16, so float32 in between would only add two copies.
            group_rows = min(chunk_size * group, n_rows)
            exp_buf = torch.empty((group_rows, vocab_size), dtype=compute_dtype, device=hidden.device)
            inv_sum_buf = torch.empty((group_rows, 1), dtype=torch.float32, device=hidden.device)
            weight_buf = torch.empty_like(weight_c)  # each group's (V, C) product, before the float32 sum
            for group_start in range(0, n_rows, group_rows):
                group_end = min(group_start + group_rows, n_rows)
                for start in range(group_start, group_end, chunk_size):
                    end = min(start + chunk_size, group_end)
                    rows = slice(start - group_start, end - group_start)
                    logits = torch.mm(hidden_c[start:end], weight_t, out=exp_buf[rows])  # (n, V)
                    target_logit = logits.gather(1, targets[start:end, None]).squeeze(1).float()
                    shift = logits.amax(dim=-1, keepdim=True)
                    if shift.abs().max() < 60:  # exp(l) can neither overflow nor vanish: skip the subtraction
                        shift = shift.new_zeros(())
                    else:
                        logits.sub_(shift)
                    sum_exp = logits.exp_().sum(dim=-1, keepdim=True).float()  # logits now hold exp(l - shift)
                    total += (shift.float() + sum_exp.log()).squeeze(1).sub_(target_logit).sum()
                    torch.reciprocal(sum_exp, out=inv_sum_buf[rows])
                n = group_end - group_start
                exps, inv_sum, t = exp_buf[:n], inv_sum_buf[:n], targets[group_start:group_end]
                h = hidden_c[group_start:group_end]
                # grad_hidden = softmax @ W - W[t];  grad_weight = softmax^T @ h - onehot^T @ h
                grad_hidden[group_start:group_end] = (exps @ weight_c).float().mul_(inv_sum).sub_(weight_c[t])
                grad_weight += torch.mm(exps.t(), (h * inv_sum).to(compute_dtype), out=weight_buf)
                grad_weight.index_add_(0, t, h.float(), alpha=-1.0)
        scale = 1.0 / n_rows
        ctx.save_for_backward(grad_hidden.to(hidden.dtype).mul_(scale), grad_weight.mul_(scale).to(weight.dtype))
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 128, group: int = 4
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`; hidden (..., C), targets (...).

    The softmax runs on `chunk_size` rows at a time, the gradient matmuls on `group` chunks at a time."""
    hidden = hidden.reshape(-1, hidden.size(-1))
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets.reshape(-1), chunk_size, group)


def pool_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, pool: torch.Tensor):
    """Mean cross-entropy over the logits of the `pool` tokens only; every target must be in `pool`.

    For windows made of pool tokens alone (synthetic training windows) this keeps the signal that
    matters, which pool token comes next, at a small share of the full head's cost."""
    position = torch.full((weight.size(0),), -1, dtype=torch.long, device=targets.device)
    position[pool] = torch.arange(pool.numel(), device=targets.device)  # vocabulary id -> row of the pool
    local_targets = position[targets]
    if (local_targets < 0).any():
        raise ValueError("every target must be one of the pool's tokens")
    return chunked_cross_entropy(hidden, weight[pool], local_targets)


@torch.inference_mode()
def validation_token_losses(
    model, tokens: torch.Tensor, block_size: int, batch_size: int = 16, max_windows: int | None = None
) -> torch.Tensor:
    """(windows, block_size) loss in nats of every token of consecutive non-overlapping windows of
    `tokens` (a held-out split), each window's logits made one at a time."""
    model.eval()
    n_windows = (len(tokens) - 1) // block_size
    if max_windows:
        n_windows = min(n_windows, max_windows)
    if n_windows == 0:
        raise ValueError(f"the split has {len(tokens)} tokens, fewer than one window of {block_size + 1}")
    windows = tokens[: n_windows * block_size + 1]
    inputs = windows[:-1].view(n_windows, block_size)
    targets = windows[1:].view(n_windows, block_size)
    losses = torch.empty(n_windows, block_size)
    head = model.lm_head.weight
    for start in range(0, n_windows, batch_size):
        hidden = model(inputs[start : start + batch_size].to(head.device), return_hidden=True)  # (B, T, C)
        for row, window_hidden in enumerate(hidden, start):
            logits = (window_hidden @ head.t()).float()  # (T, V)
            target = targets[row].to(head.device)
            losses[row] = torch.nn.functional.cross_entropy(logits, target, reduction="none").cpu()
    return losses


def validation_loss(
    model, tokens: torch.Tensor, block_size: int, batch_size: int = 16, max_windows: int | None = None
) -> float:
    """Mean loss in nats per token over consecutive non-overlapping windows of `tokens` (a held-out split)."""
    return validation_token_losses(model, tokens, block_size, batch_size, max_windows).double().mean().item()
