"""QuantumMultiheadAttention: a drop-in for ``nn.MultiheadAttention`` with pluggable estimators."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parameter import Parameter

from qtransformers.attention.backends import get_backend
from qtransformers.attention.config import QuantumConfig
from qtransformers.exceptions import DTypeError, InvalidArgumentError, ShapeError
from qtransformers.functional.masks import check_mask_dtype, mha_mask_to_additive


class QuantumMultiheadAttention(nn.Module):
    """Multi-head attention whose rows are estimated by a quantum backend.

    Constructor, parameter names, ``forward`` signature, mask polarity and return values are
    those of :class:`torch.nn.MultiheadAttention`, so a state_dict loads both ways. With
    ``quantum_backend="exact"`` the output equals ``nn.MultiheadAttention``; other backends
    (see :func:`qtransformers.attention.available_backends`) estimate each attention row
    from ``num_samples`` measurement shots.

    Shapes (``batch_first=False``; swap the first two axes when True; drop N when unbatched):
        query (L, N, E), key (S, N, kdim), value (S, N, vdim),
        key_padding_mask (N, S), attn_mask (L, S) or (N * num_heads, L, S)
        -> output (L, N, E), weights (N, L, S) averaged or (N, num_heads, L, S).

    ``head_configs`` (a list of ``num_heads`` dicts of :class:`QuantumConfig` fields, or configs)
    gives each head its own backend and options; heads sharing a configuration run together on
    the module's generator (seeded by ``seed``), and a head whose configuration has a ``seed``
    draws from a generator of its own. Generators follow the module to its device.

    Nested query/key/value (jagged or strided, ``batch_first=True``) give a nested output, each
    sequence computed as if it ran alone; weights are then zero-padded (N, max L, max S).

    Differences from torch: a query row whose keys are all masked out returns zero weights
    (torch returns NaN) on the explicit-weights path; nested tensors are accepted in every mode
    (torch only in its eval-mode fast path, and not jagged ones); and errors are
    :class:`~qtransformers.QTransformersError` subclasses that name the shapes at fault.
    """

    __constants__ = ["batch_first"]

    # nn.TransformerEncoderLayer's fused eval path calls this; torch's version only reads num_heads.
    merge_masks = nn.MultiheadAttention.merge_masks

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
        *,
        quantum_backend: str = "exact",
        num_samples: int = 32,
        adaptive_samples: bool = False,
        control_variate: bool = False,
        top_k: int | None = None,
        seed: int | None = None,
        backend_options: dict[str, Any] | None = None,
        head_configs: list[dict[str, Any] | QuantumConfig] | None = None,
    ) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise InvalidArgumentError(
                f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        if embed_dim % num_heads != 0:
            raise InvalidArgumentError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if not 0.0 <= dropout <= 1.0:
            raise InvalidArgumentError(f"dropout must be in [0, 1], got {dropout}")
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(torch.empty((3 * embed_dim, embed_dim), **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = Parameter(torch.empty((embed_dim, embed_dim), **factory))
            self.k_proj_weight = Parameter(torch.empty((embed_dim, self.kdim), **factory))
            self.v_proj_weight = Parameter(torch.empty((embed_dim, self.vdim), **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.modules.linear.NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k: Parameter | None = Parameter(torch.empty((1, 1, embed_dim), **factory))
            self.bias_v: Parameter | None = Parameter(torch.empty((1, 1, embed_dim), **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self.quantum_config = QuantumConfig(
            backend=quantum_backend,
            num_samples=num_samples,
            adaptive_samples=adaptive_samples,
            control_variate=control_variate,
            top_k=top_k,
            seed=seed,
            options=dict(backend_options or {}),
        )
        self._backend = get_backend(quantum_backend)
        self.head_configs = _head_configs(head_configs, num_heads, self.quantum_config)
        gen_device = torch.device(device) if device is not None else torch.device("cpu")
        self.generator = _seeded_generator(seed, gen_device)
        # A head whose configuration carries a seed draws from a generator of its own.
        self.head_generators = [_seeded_generator(cfg.seed, gen_device) for cfg in (self.head_configs or [])]
        if quantum_backend != "exact" or self.head_configs is not None:
            # nn.TransformerEncoderLayer skips self_attn.forward for a fused kernel in eval mode
            # unless a hook is attached; that kernel would silently compute exact attention.
            self.register_forward_pre_hook(_keep_module_forward)
        self._reset_parameters()

    def _apply(self, fn, recurse: bool = True):
        """Move or cast the parameters as nn.Module does; the generators follow them to their device.

        A generator moved to another device is re-seeded with its seed there (CPU and CUDA
        streams differ), so the same seed gives the same output on each device.
        """
        module = super()._apply(fn, recurse)
        device = self.out_proj.weight.device
        self.generator = _on_device(self.generator, device)
        self.head_generators = [_on_device(g, device) for g in self.head_generators]
        return module

    def _reset_parameters(self) -> None:
        """Initialise as nn.MultiheadAttention does (Xavier-uniform weights, zero biases)."""
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_v)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention, **quantum_options: Any) -> QuantumMultiheadAttention:
        """A QuantumMultiheadAttention with ``mha``'s configuration, state and device/dtype."""
        if not isinstance(mha, nn.MultiheadAttention):
            raise InvalidArgumentError(f"from_torch expects nn.MultiheadAttention, got {type(mha).__name__}")
        ref = mha.out_proj.weight
        module = cls(
            mha.embed_dim,
            mha.num_heads,
            dropout=mha.dropout,
            bias=mha.in_proj_bias is not None,
            add_bias_kv=mha.bias_k is not None,
            add_zero_attn=mha.add_zero_attn,
            kdim=mha.kdim,
            vdim=mha.vdim,
            batch_first=mha.batch_first,
            device=ref.device,
            dtype=ref.dtype,
            **quantum_options,
        )
        module.load_state_dict(mha.state_dict())
        module.train(mha.training)
        return module

    def extra_repr(self) -> str:
        """Summary shown by ``print(module)``."""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"batch_first={self.batch_first}, quantum_backend={self.quantum_config.backend!r}"
        )

    def _check_inputs(self, query, key, value, key_padding_mask, attn_mask, is_causal, need_weights) -> bool:
        """Validate shapes and dtypes like nn.MultiheadAttention; return whether input is batched."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise DTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        check_mask_dtype(key_padding_mask, "key_padding_mask")
        check_mask_dtype(attn_mask, "attn_mask")
        self._check_dtypes(query, key_padding_mask, attn_mask, need_weights)
        if query.dim() not in (2, 3):
            raise ShapeError(f"query must be 2-D (unbatched) or 3-D (batched), got shape {tuple(query.shape)}")
        batched = query.dim() == 3
        want = 3 if batched else 2
        if key.dim() != want or value.dim() != want:
            raise ShapeError(
                f"for {want}-D query {tuple(query.shape)}, key and value must be {want}-D; "
                f"got key {tuple(key.shape)} and value {tuple(value.shape)}"
            )
        if query.size(-1) != self.embed_dim:
            raise ShapeError(
                f"query's last dimension must be embed_dim={self.embed_dim}, got shape {tuple(query.shape)}"
            )
        if key.size(-1) != self.kdim:
            raise ShapeError(f"key's last dimension must be kdim={self.kdim}, got shape {tuple(key.shape)}")
        if value.size(-1) != self.vdim:
            raise ShapeError(f"value's last dimension must be vdim={self.vdim}, got shape {tuple(value.shape)}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ShapeError(f"key {tuple(key.shape)} and value {tuple(value.shape)} differ in length or batch")
        seq_axis, batch_axis = (1, 0) if (batched and self.batch_first) else (0, 1)
        tgt_len, src_len = query.size(seq_axis), key.size(seq_axis)
        bsz = query.size(batch_axis) if batched else 1
        if batched and key.size(batch_axis) != bsz:
            raise ShapeError(f"query {tuple(query.shape)} and key {tuple(key.shape)} have different batch sizes")
        if key_padding_mask is not None:
            expected = (bsz, src_len) if batched else (src_len,)
            if tuple(key_padding_mask.shape) != expected:
                raise ShapeError(f"key_padding_mask must have shape {expected}, got {tuple(key_padding_mask.shape)}")
        if attn_mask is not None:
            allowed = [(tgt_len, src_len), (bsz * self.num_heads, tgt_len, src_len)]
            if tuple(attn_mask.shape) not in allowed:
                raise ShapeError(
                    f"attn_mask must have shape {allowed[0]} or {allowed[1]}, got {tuple(attn_mask.shape)}"
                )
        if is_causal and attn_mask is None:
            raise InvalidArgumentError(
                "is_causal=True is a hint that attn_mask is the causal mask and needs attn_mask "
                "(see nn.Transformer.generate_square_subsequent_mask)"
            )
        return batched

    def _check_dtypes(self, query: Tensor, key_padding_mask, attn_mask, need_weights: bool) -> None:
        """DTypeError where nn.MultiheadAttention fails on mixed dtypes (it runs in the other cases).

        The output projection and ``bias_k``/``bias_v`` must not need a wider dtype than the
        query; float masks must have the query's dtype (or float32 without weights, which SDPA
        accepts). Input projections are checked in :func:`_linear`.
        """
        if _autocasting(query):
            return  # autocast casts the operands itself
        out_params = [("out_proj.weight", self.out_proj.weight), ("out_proj.bias", self.out_proj.bias)]
        for name, p in out_params:
            if p is not None and p.dtype != query.dtype:
                raise DTypeError(f"{name} has dtype {p.dtype} but query has {query.dtype}; they must match")
        for name, bias in (("bias_k", self.bias_k), ("bias_v", self.bias_v)):
            if bias is not None and torch.promote_types(bias.dtype, query.dtype) != query.dtype:
                raise DTypeError(f"{name} has dtype {p.dtype}, wider than the query's {query.dtype}")
        # torch turns boolean masks into the query's dtype, then adds the masks together.
        masks = [m for m in (attn_mask, key_padding_mask) if m is not None]
        if any(m.dtype != torch.bool for m in masks):
            merged = query.dtype if masks[0].dtype == torch.bool else masks[0].dtype
            for m in masks[1:]:
                merged = torch.promote_types(merged, query.dtype if m.dtype == torch.bool else m.dtype)
            if merged != query.dtype and (need_weights or merged != torch.float32):
                allowed = query.dtype if need_weights else f"{query.dtype} or torch.float32 (need_weights=False)"
                raise DTypeError(f"float masks of dtype {merged} need dtype {allowed}")

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input projections of batch-first (N, L, *) tensors, computed as nn.MultiheadAttention does."""
        if self._qkv_same_embed_dim:
            if query is key and key is value:
                q, k, v = _linear(query, self.in_proj_weight, self.in_proj_bias, "query").chunk(3, dim=-1)
                return q, k, v
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        return _linear(query, w_q, b_q, "query"), _linear(key, w_k, b_k, "key"), _linear(value, w_v, b_v, "value")

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend ``query`` to ``key``/``value``; returns (output, weights or None) as nn.MultiheadAttention.

        Nested tensors (jagged or strided, ``batch_first=True``) give a nested output: see
        :meth:`_forward_nested`.
        """
        if any(isinstance(t, Tensor) and t.is_nested for t in (query, key, value)):
            return self._forward_nested(
                query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
            )
        batched = self._check_inputs(query, key, value, key_padding_mask, attn_mask, is_causal, need_weights)
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            same_kv, same_qk = key is value, query is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        bsz, tgt_len, _ = query.shape
        heads, head_dim = self.num_heads, self.head_dim

        kpm = mha_mask_to_additive(key_padding_mask, query.dtype)
        if is_causal and kpm is None and not need_weights:
            mask = None  # the hint says attn_mask is causal: let the backend use is_causal
        else:
            mask = mha_mask_to_additive(attn_mask, query.dtype)
            is_causal = False
        if mask is not None:
            mask = mask.unsqueeze(0) if mask.dim() == 2 else mask.view(bsz, heads, tgt_len, -1)
            if mask.dim() == 3:
                mask = mask.unsqueeze(0)

        q, k, v = self._project(query, key, value)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(bsz, 1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(bsz, 1, -1)], dim=1)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        q, k, v = (t.unflatten(-1, (heads, head_dim)).transpose(1, 2) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = torch.zeros(bsz, heads, 1, head_dim, dtype=k.dtype, device=k.device)
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)
            mask = None if mask is None else F.pad(mask, (0, 1))
            kpm = None if kpm is None else F.pad(kpm, (0, 1))
        if kpm is not None:
            kpm = kpm.view(bsz, 1, 1, -1)
            mask = kpm if mask is None else mask + kpm

        dropout_p = self.dropout if self.training else 0.0
        if self.head_configs is None:
            out, weights = self._backend(
                q,
                k,
                v,
                mask,
                dropout_p,
                is_causal,
                scale=None,
                need_weights=need_weights,
                generator=self.generator,
                config=self.quantum_config,
            )
        else:
            out, weights = self._per_head(q, k, v, mask, dropout_p, is_causal, need_weights)
        out = self.out_proj(out.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, (weights if need_weights else None)

    def _forward_nested(
        self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal
    ) -> tuple[Tensor, Tensor | None]:
        """Nested query (N, L_i, E), key (N, S_i, kdim), value (N, S_i, vdim) -> nested (N, L_i, E).

        Each sequence runs on its own, in order, exactly as ``forward`` on that sequence alone
        (one after the other on the module's generator). The lengths are the mask, so
        ``attn_mask`` and ``key_padding_mask`` are refused. Weights, as for nested input to
        nn.MultiheadAttention, are dense and zero-padded: (N, max L_i, max S'_i) averaged or
        (N, num_heads, max L_i, max S'_i), where S'_i counts ``add_bias_kv``/``add_zero_attn`` keys.
        """
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not (isinstance(t, Tensor) and t.is_nested):
                raise DTypeError(f"query, key and value must all be nested tensors or none; {name} is not")
            if t.dim() != 3:
                raise ShapeError(f"nested {name} must be 3-D (N, length, features), got {t.dim()}-D")
        if not self.batch_first:
            raise InvalidArgumentError("nested tensors need batch_first=True (the ragged axis is the sequence axis)")
        if key_padding_mask is not None or attn_mask is not None:
            raise InvalidArgumentError(
                "nested tensors carry their own lengths: attn_mask and key_padding_mask are not supported with them"
            )
        if is_causal:
            raise InvalidArgumentError("is_causal=True needs attn_mask, which nested tensors do not take")
        if not query.size(0) == key.size(0) == value.size(0):
            raise ShapeError(
                f"nested query, key and value hold {query.size(0)}, {key.size(0)} and {value.size(0)} sequences"
            )
        queries = query.unbind()
        keys = queries if key is query else key.unbind()
        values = keys if value is key else value.unbind()
        outs, weights = [], []
        for q, k, v in zip(queries, keys, values):
            same_qk, same_kv = k is q, v is k
            q = q.unsqueeze(0)
            k = q if same_qk else k.unsqueeze(0)
            v = k if same_kv else v.unsqueeze(0)
            out, weight = self.forward(q, k, v, need_weights=need_weights, average_attn_weights=average_attn_weights)
            outs.append(out[0])
            if weight is not None:
                weights.append(weight)
        out = torch.nested.as_nested_tensor(outs, layout=query.layout)
        if not need_weights:
            return out, None
        rows = max(w.size(-2) for w in weights)
        cols = max(w.size(-1) for w in weights)
        padded = [F.pad(w, (0, cols - w.size(-1), 0, rows - w.size(-2))) for w in weights]
        return out, torch.cat(padded, dim=0)

    def _per_head(self, q, k, v, mask, dropout_p, is_causal, need_weights):
        """Run each group of heads sharing a configuration through its backend; concatenate heads."""
        outs: list[Tensor | None] = [None] * self.num_heads
        weights: list[Tensor | None] = [None] * self.num_heads
        # Heads sharing a configuration run together on the module's generator; a seeded head runs
        # alone on its own generator, so its draws do not depend on the other heads.
        groups: list[tuple[QuantumConfig, list[int], torch.Generator | None]] = []
        for h, cfg in enumerate(self.head_configs):
            match = None if cfg.seed is not None else next((hs for c, hs, _ in groups if c == cfg), None)
            if match is None:
                groups.append((cfg, [h], self.head_generators[h] if cfg.seed is not None else self.generator))
            else:
                match.append(h)
        for cfg, heads, generator in groups:
            sel = torch.tensor(heads, device=q.device)
            head_mask = mask
            if mask is not None and mask.size(1) == self.num_heads:
                head_mask = mask.index_select(1, sel)
            o, w = get_backend(cfg.backend)(
                q.index_select(1, sel),
                k.index_select(1, sel),
                v.index_select(1, sel),
                head_mask,
                dropout_p,
                is_causal,
                scale=None,
                need_weights=need_weights,
                generator=generator,
                config=cfg,
            )
            for i, h in enumerate(heads):
                outs[h] = o[:, i : i + 1]
                weights[h] = None if w is None else w[:, i : i + 1]
        weight = None
        if need_weights and all(w is not None for w in weights):
            weight = torch.cat(weights, dim=1)
        return torch.cat(outs, dim=1), weight


def _head_configs(head_configs, num_heads: int, default: QuantumConfig) -> list[QuantumConfig] | None:
    """Validated per-head configurations (dicts are QuantumConfig fields over the module's default).

    A dict does not inherit the module's ``seed``: a head without a seed of its own draws from
    the module's generator, a head with one from its own generator.
    """
    if head_configs is None:
        return None
    if len(head_configs) != num_heads:
        raise InvalidArgumentError(f"head_configs has {len(head_configs)} entries, expected num_heads={num_heads}")
    configs = []
    for cfg in head_configs:
        if isinstance(cfg, dict):
            fields = {**default.__dict__, "seed": None, **cfg}
            fields["options"] = dict(fields.get("options") or {})
            cfg = QuantumConfig(**fields)
        if not isinstance(cfg, QuantumConfig):
            raise InvalidArgumentError(f"head_configs entries must be dicts or QuantumConfig, got {type(cfg).__name__}")
        get_backend(cfg.backend)
        configs.append(cfg)
    return configs


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, name: str) -> Tensor:
    """F.linear of batch-first ``x`` (N, L, in) -> (N, L, out) on nn.MultiheadAttention's (L, N, in) layout.

    torch's F.linear adds a bias of another dtype (cast to the input's) only on the matmul path
    it takes for a non-contiguous 3-D input; nn.MultiheadAttention projects a sequence-first view,
    so a mixed-dtype ``in_proj_bias`` runs exactly where it runs there and raises DTypeError elsewhere.
    """
    seq_first = x.transpose(0, 1)
    if _autocasting(x):
        return F.linear(seq_first, weight, bias).transpose(0, 1)
    if x.dtype != weight.dtype:
        raise DTypeError(f"{name} has dtype {x.dtype} but its projection weight has {weight.dtype}; they must match")
    if bias is not None and bias.dtype != x.dtype and seq_first.is_contiguous():
        raise DTypeError(
            f"in_proj_bias has dtype {bias.dtype} but {name} has {x.dtype}; torch mixes them only for a "
            f"batch_first batch with more than one sequence and position (here {name} is {tuple(x.shape)})"
        )
    return F.linear(seq_first, weight, bias).transpose(0, 1)


def _autocasting(x: Tensor) -> bool:
    """Whether autocast is on for ``x``'s device type (it then chooses the dtypes)."""
    return torch.is_autocast_enabled(x.device.type)


def _seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` seeded with ``seed``; None when ``seed`` is None."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def _on_device(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """``generator`` itself when already on ``device`` (or None), else a new one there with its seed."""
    if generator is None or generator.device == device or device.type == "meta":
        return generator
    return _seeded_generator(generator.initial_seed(), device)


def _keep_module_forward(module: nn.Module, args: tuple) -> None:
    """No-op forward pre-hook: its presence disables nn.TransformerEncoderLayer's fused fast path."""
    return None
