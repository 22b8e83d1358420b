"""Language: a pre-norm Transformer encoder classifier over token ids, padding-aware."""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from asap.nn import attention_layer, key_padding_mask

PAD_ID = 0


class TextClassifier(nn.Module):
    """Token + learned position embeddings, timm pre-norm blocks, pooling, linear head.

    Token id 0 is padding: padded tokens are masked out of every attention layer and of the pooling.
    ``pool="mean"`` averages the valid tokens; ``pool="cls"`` prepends a learned class token and reads it out,
    as LRA does for ListOps, where the answer hinges on a few tokens that a mean would dilute; ``pool="first"``
    reads out the first input token, for tasks that put their question there (associative recall's query).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        attention: str = "softmax",
        attention_options: dict[str, Any] | None = None,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if pool not in ("mean", "cls", "first"):
            raise ValueError(f"pool must be 'mean', 'cls' or 'first', got {pool!r}")
        self.pool = pool
        self.max_len = max_len
        self.token_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, max_len + (pool == "cls"), embed_dim) * 0.02)
        self.drop = nn.Dropout(dropout)
        layer = attention_layer(attention, **(attention_options or {}))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, proj_drop=dropout, attn_layer=layer)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens (B, L)`` of ids (0 = padding), ``L <= max_len`` -> logits ``(B, num_classes)``."""
        if tokens.ndim != 2 or tokens.dtype != torch.long:
            raise ValueError(f"tokens must be a long tensor (B, L), got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds the model's max_len {self.max_len}")
        valid = tokens != PAD_ID
        if not valid.any(dim=1).all():
            raise ValueError("every sequence needs at least one non-padding token")
        x = self.token_embed(tokens)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
            valid = torch.cat([valid.new_ones(len(x), 1), valid], dim=1)
        x = self.drop(x + self.pos_embed[:, : x.shape[1]])
        mask = key_padding_mask(valid)
        for block in self.blocks:
            x = block(x, attn_mask=mask)
        x = self.norm(x)
        if self.pool != "mean":  # the class token, or the first input token
            return self.head(x[:, 0])
        weights = valid.unsqueeze(-1).to(x.dtype)
        return self.head((x * weights).sum(dim=1) / weights.sum(dim=1))
