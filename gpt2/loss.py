"""Cross-entropy of the tied LM head without materializing the full (N, vocab) logits.

A plain training loop writes N × 50257 float logits, a log-softmax of the same size, and its
gradient: gigabytes of memory traffic per step that dominate a small model's cost. Here the logits
are made one chunk of rows at a time, their loss and gradients are taken immediately, and only the
gradients with respect to the hidden states and the head weight are kept for backward.
"""

import torch


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size):
        # hidden (N, C), weight (V, C), targets (N,)
        n_rows, vocab_size = hidden.size(0), weight.size(0)
        # the three head matmuls run in autocast's dtype when autocast is on (bf16 units make them
        # several times faster); the softmax and the loss are always float32
        device_type = hidden.device.type
        on = torch.is_autocast_enabled(device_type)
        compute_dtype = torch.get_autocast_dtype(device_type) if on else hidden.dtype
        with torch.autocast(device_type, enabled=False):
            weight_c = weight.to(compute_dtype)
            grad_hidden = torch.empty(hidden.shape, dtype=compute_dtype, device=hidden.device)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            # one logits buffer for every chunk (and a low-precision twin under autocast): allocating
            # and faulting in a fresh (chunk, V) buffer per chunk costs more than the arithmetic
            rows = min(chunk_size, n_rows)
            logits_buf = torch.empty((rows, vocab_size), dtype=torch.float32, device=hidden.device)
            low_buf = (
                logits_buf if compute_dtype == torch.float32 else torch.empty_like(logits_buf, dtype=compute_dtype)
            )
            for start in range(0, n_rows, chunk_size):
                h = hidden[start : start + chunk_size].to(compute_dtype)
                t = targets[start : start + chunk_size]
                logits, low = logits_buf[: h.size(0)], low_buf[: h.size(0)]  # (n, V)
                torch.mm(h, weight_c.t(), out=low)
                if low is not logits:
                    logits.copy_(low)
                target_logit = logits.gather(1, t[:, None]).squeeze(1)
                row_max = logits.amax(dim=-1, keepdim=True)
                sum_exp = logits.sub_(row_max).exp_().sum(dim=-1, keepdim=True)  # logits now hold exp(l - max)
                total += (row_max + sum_exp.log()).squeeze(1).sub_(target_logit).sum()
                # d(mean loss)/d(logits) = (softmax - onehot) / N, in place
                grad_logits = logits.div_(sum_exp * n_rows)
                grad_logits[torch.arange(t.numel(), device=t.device), t] -= 1.0 / n_rows
                if low is not logits:
                    grad_logits = low.copy_(grad_logits)
                grad_hidden[start : start + chunk_size] = grad_logits @ weight_c
                grad_weight += grad_logits.t() @ h  # float32 accumulation of each chunk's product
        ctx.save_for_backward(grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype))
        return total / n_rows

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 512
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`; hidden (..., C), targets (...)."""
    hidden = hidden.reshape(-1, hidden.size(-1))
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets.reshape(-1), chunk_size)
