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
        n_rows = hidden.size(0)
        compute_dtype = hidden.dtype
        weight_c = weight.to(compute_dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n_rows, chunk_size):
            h = hidden[start : start + chunk_size]
            t = targets[start : start + chunk_size]
            logits = (h @ weight_c.t()).float()  # (n, V)
            log_norm = torch.logsumexp(logits, dim=-1)  # (n,)
            total += (log_norm - logits.gather(1, t[:, None]).squeeze(1)).sum()
            # d(mean loss)/d(logits) = (softmax - onehot) / N, computed in place in the logits buffer
            grad_logits = logits.sub_(log_norm[:, None]).exp_()
            grad_logits[torch.arange(t.numel(), device=t.device), t] -= 1.0
            grad_logits.div_(n_rows)
            grad_logits = grad_logits.to(compute_dtype)
            grad_hidden[start : start + chunk_size] = grad_logits @ weight_c
            grad_weight.addmm_(grad_logits.t().float(), h.float())  # no copies when already float32
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total / n_rows

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`; hidden (..., C), targets (...)."""
    hidden = hidden.reshape(-1, hidden.size(-1))
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets.reshape(-1), chunk_size)
